//! The Helm charts: lint-clean, their values schemas refuse bad values, and
//! what they render is accepted by the real apiserver (server-side dry run).
//! Uses the helm and kubectl the test world built.

use std::process::{Command, Output, Stdio};

use anyhow::Context;
use millrace_testsupport::{World, repo_root};

fn run(cmd: &mut Command) -> anyhow::Result<Output> {
    let out = cmd
        .current_dir(repo_root())
        .output()
        .with_context(|| format!("running {cmd:?}"))?;
    Ok(out)
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `helm template` of the dev back-ends chart in namespace `data`, each of
/// `sets` given to `--set`: whether it rendered, and what it said.
fn render_dev_backends(world: &World, sets: &[&str]) -> anyhow::Result<(bool, String)> {
    let mut cmd = Command::new(world.tool("helm"));
    cmd.args([
        "template",
        "t",
        "charts/millrace-dev-backends",
        "--namespace",
        "data",
        "--kube-version",
        "1.36.3",
    ]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = run(&mut cmd)?;
    Ok((out.status.success(), text(&out)))
}

/// Each of `sets`, alone, makes the dev back-ends chart refuse to render,
/// naming the value's path (which contains `path`).
fn refused_by_the_schema(world: &World, sets: &[&str], path: &str) -> anyhow::Result<()> {
    let refusals: Vec<(&str, &str)> = sets.iter().map(|set| (*set, path)).collect();
    refused_saying(world, &refusals)
}

/// Each `(set, says)`, alone, makes the dev back-ends chart refuse to
/// render, saying `says`.
fn refused_saying(world: &World, refusals: &[(&str, &str)]) -> anyhow::Result<()> {
    for (bad, says) in refusals {
        let (ok, said) = render_dev_backends(world, &[bad])?;
        assert!(!ok, "--set {bad} was accepted:\n{said}");
        assert!(said.contains(says), "--set {bad}: {said}");
    }
    Ok(())
}

/// The documents a render gave, to look one up by kind and name.
struct Rendered(Vec<serde_json::Value>);

impl Rendered {
    fn parse(out: &str) -> Self {
        Self(
            out.split("\n---")
                .filter_map(|d| serde_yaml::from_str::<serde_json::Value>(d).ok())
                .filter(|d| d.is_object())
                .collect(),
        )
    }

    fn find(&self, kind: &str, name: &str) -> anyhow::Result<&serde_json::Value> {
        self.0
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .with_context(|| format!("no {kind} {name}"))
    }
}

/// Each of `keys` of a rendered Secret's `data`, decoded, written as a file
/// of that name in `dir`.
fn write_secret_keys(
    secret: &serde_json::Value,
    keys: &[&str],
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    use base64::Engine as _;
    for key in keys {
        let encoded = secret["data"][key]
            .as_str()
            .with_context(|| format!("no {key} in {}", secret["metadata"]["name"]))?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(encoded)?;
        std::fs::write(dir.join(key), bytes)?;
    }
    Ok(())
}

/// `openssl` with `args`, which must succeed: what it printed.
fn openssl(args: &[&str]) -> anyhow::Result<String> {
    let out = run(Command::new("openssl").args(args))?;
    assert!(out.status.success(), "openssl {args:?}: {}", text(&out));
    Ok(String::from_utf8(out.stdout)?)
}

/// The names of the files in `dir`, sorted.
fn files_in(dir: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<anyhow::Result<_>>()?;
    names.sort();
    Ok(names)
}

#[test]
fn charts_are_lint_clean() -> anyhow::Result<()> {
    let world = World::discover()?;
    for chart in ["charts/millrace", "charts/millrace-dev-backends"] {
        let out = run(Command::new(world.tool("helm")).args(["lint", "--strict", chart]))?;
        assert!(out.status.success(), "helm lint {chart}:\n{}", text(&out));
    }
    Ok(())
}

#[test]
fn the_chart_ships_the_generated_crd() -> anyhow::Result<()> {
    let generated =
        std::fs::read_to_string(repo_root().join("crds/millrace.io_streampipelines.yaml"))?;
    let shipped = std::fs::read_to_string(
        repo_root().join("charts/millrace/crds/millrace.io_streampipelines.yaml"),
    )?;
    assert!(
        generated == shipped,
        "charts/millrace/crds is stale: run `make crds`"
    );
    Ok(())
}

#[test]
fn values_schema_refuses_bad_values() -> anyhow::Result<()> {
    let world = World::discover()?;
    let cases = [
        ("replicaCount=-1", "/replicaCount"),
        ("image.pullPolicy=Sometimes", "/image/pullPolicy"),
        ("logFormat=xml", "/logFormat"),
        ("watchNamespace=Bad_NS", "/watchNamespace"),
        ("metrics.port=80", "/metrics/port"),
        (
            "replicaCount=2,leaderElection.enabled=false",
            "/leaderElection/enabled",
        ),
        ("image.repository=", "/image/repository"),
        (
            "metrics.serviceMonitor.interval=often",
            "/metrics/serviceMonitor/interval",
        ),
        (
            "metrics.runnerPodMonitor.interval=often",
            "/metrics/runnerPodMonitor/interval",
        ),
        (
            "metrics.grafanaDashboard.label=Bad/Label/x",
            "/metrics/grafanaDashboard/label",
        ),
        ("unknownSetting=1", "additional properties"),
    ];
    for (set, expected) in cases {
        let out = run(Command::new(world.tool("helm")).args([
            "template",
            "t",
            "charts/millrace",
            "--kube-version",
            "1.36.3",
            "--set",
            set,
        ]))?;
        let said = text(&out);
        assert!(!out.status.success(), "--set {set} was accepted");
        assert!(
            said.contains(expected),
            "--set {set}: expected the error to name {expected}, got:\n{said}"
        );
    }
    Ok(())
}

/// `helm template | kubectl apply --dry-run=server`: every object the charts
/// render, in both RBAC modes, is valid for the real apiserver.
#[test]
fn rendered_manifests_pass_a_server_side_dry_run() -> anyhow::Result<()> {
    let world = World::discover()?;
    let kubeconfig = world.kubeconfig.clone().context("KUBECONFIG")?;
    // The PrometheusRule and PodMonitor need the Prometheus Operator's
    // CRDs, which the world does not have; tests/check-observability
    // checks them. The dashboard ConfigMap is core, so it is dry-run here.
    let renders: [(&str, &[&str]); 7] = [
        (
            "charts/millrace",
            &[
                "--include-crds",
                "--set",
                "metrics.grafanaDashboard.enabled=true",
            ],
        ),
        (
            "charts/millrace",
            &["--set", "watchNamespace=default", "--set", "replicaCount=2"],
        ),
        ("charts/millrace-dev-backends", &[]),
        // Ports unlike make test-kind's, which a kind cluster already holds.
        (
            "charts/millrace-dev-backends",
            &["--set", "kafka.external.nodePort=32092"],
        ),
        (
            "charts/millrace-dev-backends",
            &[
                "--set",
                "kafka.sasl.enabled=true,kafka.external.saslNodePort=32094,cassandra.auth.enabled=true",
            ],
        ),
        (
            "charts/millrace-dev-backends",
            &[
                "--set",
                "schemaRegistry.enabled=true,schemaRegistry.tls.enabled=true",
            ],
        ),
        (
            "charts/millrace-dev-backends",
            &[
                "--set",
                "kafka.sasl.enabled=true,kafka.tls.enabled=true,kafka.external.sslNodePort=32097,\
                 kafka.external.saslSslNodePort=32098,kafka.external.mtlsNodePort=32099",
            ],
        ),
    ];
    for (chart, extra) in renders {
        let rendered = run(Command::new(world.tool("helm"))
            .args([
                "template",
                "millrace",
                chart,
                "--namespace",
                "default",
                "--kube-version",
                "1.36.3",
            ])
            .args(extra))?;
        assert!(
            rendered.status.success(),
            "helm template {chart}: {}",
            text(&rendered)
        );
        let mut apply = Command::new(world.tool("kubectl"))
            .args(["--kubeconfig"])
            .arg(&kubeconfig)
            .args(["apply", "--dry-run=server", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        use std::io::Write;
        apply
            .stdin
            .take()
            .context("stdin")?
            .write_all(&rendered.stdout)?;
        let out = apply.wait_with_output()?;
        assert!(
            out.status.success(),
            "server dry run of {chart} {extra:?}:\n{}",
            text(&out)
        );
        assert!(text(&out).contains("(server dry run)"), "{}", text(&out));
    }
    Ok(())
}

/// The dev Kafka is reachable from outside the cluster only when asked: a
/// NodePort Service, and an EXTERNAL listener on the node port's number,
/// advertised as the node's IP (or the host given) and the node port.
#[test]
fn dev_backends_reach_outside_only_when_asked() -> anyhow::Result<()> {
    let world = World::discover()?;
    let render = |sets: &[&str]| render_dev_backends(&world, sets);

    let (ok, plain) = render(&[])?;
    assert!(ok, "{plain}");
    assert!(!plain.contains("NodePort"), "{plain}");
    assert!(!plain.contains("EXTERNAL"), "{plain}");
    assert!(
        plain.contains("PLAINTEXT://kafka-0.kafka.data.svc:9092"),
        "{plain}"
    );

    let (ok, open) = render(&["kafka.external.nodePort=30092"])?;
    assert!(ok, "{open}");
    assert!(open.contains("name: kafka-external"), "{open}");
    assert!(open.contains("nodePort: 30092"), "{open}");
    // CQL gets none: drivers reconnect to the node's own address.
    assert_eq!(open.matches("type: NodePort").count(), 1, "{open}");
    assert!(
        open.contains("PLAINTEXT://kafka-0.kafka.data.svc:9092,EXTERNAL://$(EXTERNAL_HOST):30092"),
        "{open}"
    );
    assert!(open.contains("fieldPath: status.hostIP"), "{open}");
    // The broker listens on the NodePort's number, so a runner's egress
    // rule for the advertised port holds after the Service's translation.
    assert!(open.contains("EXTERNAL://:30092"), "{open}");
    assert!(
        open.contains("{name: external, containerPort: 30092}"),
        "{open}"
    );
    // $(EXTERNAL_HOST) expands only from a variable defined before it.
    let host_at = open.find("name: EXTERNAL_HOST").expect("EXTERNAL_HOST");
    let listeners_at = open.find("KAFKA_ADVERTISED_LISTENERS").expect("listeners");
    assert!(host_at < listeners_at, "{open}");

    let (ok, named) = render(&["kafka.external.nodePort=30092,kafka.external.host=localhost"])?;
    assert!(ok, "{named}");
    assert!(
        named.contains(r#"name: EXTERNAL_HOST, value: "localhost""#),
        "{named}"
    );
    assert!(!named.contains("status.hostIP"), "{named}");

    refused_by_the_schema(
        &world,
        &[
            "kafka.external.nodePort=9094",
            "kafka.external.nodePort=40000",
            "kafka.external.host=a b",
        ],
        "/external/",
    )?;
    Ok(())
}

/// The dev Schema Registry only when asked, HTTPS only when asked too; its
/// certificate and CA made by the chart, in a Secret the Pod mounts. That
/// the certificate is valid for its names is shown on kind, where the
/// runner's Avro tests read the registry over HTTPS with that CA.
#[test]
fn dev_backends_schema_registry_only_when_asked() -> anyhow::Result<()> {
    let world = World::discover()?;
    let render = |sets: &[&str]| render_dev_backends(&world, sets);

    let (ok, plain) = render(&[])?;
    assert!(ok, "{plain}");
    assert!(!plain.contains("schema-registry"), "{plain}");

    let (ok, http) = render(&["schemaRegistry.enabled=true"])?;
    assert!(ok, "{http}");
    for present in [
        "name: schema-registry",
        "image: apicurio/apicurio-registry-mem:2.4.2.Final",
        "jdbc:h2:file:/var/lib/registry/registry",
        "mountPath: /var/lib/registry",
        "path: /health/ready",
    ] {
        assert!(http.contains(present), "no {present}:\n{http}");
    }
    for absent in ["schema-registry-tls", "8443", "QUARKUS_HTTP_SSL"] {
        assert!(!http.contains(absent), "{absent} without tls:\n{http}");
    }

    let (ok, https) = render(&["schemaRegistry.enabled=true,schemaRegistry.tls.enabled=true"])?;
    assert!(ok, "{https}");
    for present in [
        "name: schema-registry-tls",
        "ca.crt: ",
        "tls.crt: ",
        "tls.key: ",
        "{name: https, containerPort: 8443}",
        "QUARKUS_HTTP_SSL_CERTIFICATE_FILES, value: /etc/schema-registry/tls/tls.crt",
        "secretName: schema-registry-tls",
        "checksum/tls: ",
    ] {
        assert!(https.contains(present), "no {present}:\n{https}");
    }

    refused_by_the_schema(
        &world,
        &[
            "schemaRegistry.heap=lots",
            "schemaRegistry.storage=1G",
            "schemaRegistry.tls.enabled=yes",
            "schemaRegistry.port=8081",
        ],
        "/schemaRegistry",
    )?;
    Ok(())
}

/// Authentication in the dev back-ends only when asked: SCRAM on a second
/// Kafka listener, passwords in Cassandra, each with a Secret the chart
/// makes; a password never on a command line or in plain text.
#[test]
fn dev_backends_authenticate_only_when_asked() -> anyhow::Result<()> {
    let world = World::discover()?;
    let render = |set: &str| render_dev_backends(&world, &[set]);

    let (ok, plain) = render_dev_backends(&world, &[])?;
    assert!(ok, "{plain}");
    for absent in [
        "kind: Secret",
        "SASL",
        "PasswordAuthenticator",
        "CQL_PASSWORD",
    ] {
        assert!(!plain.contains(absent), "{absent} without asking:\n{plain}");
    }

    let (ok, auth) = render(
        "kafka.sasl.enabled=true,kafka.external.nodePort=30092,\
         kafka.external.saslNodePort=30094,cassandra.auth.enabled=true",
    )?;
    assert!(ok, "{auth}");
    for present in [
        "name: kafka-credentials",
        "name: cassandra-credentials",
        "SASL://kafka-0.kafka.data.svc:9095",
        "EXTERNAL_SASL://$(EXTERNAL_HOST):30094",
        "SASL:SASL_PLAINTEXT,EXTERNAL_SASL:SASL_PLAINTEXT",
        r#"KAFKA_SASL_ENABLED_MECHANISMS, value: "SCRAM-SHA-512,SCRAM-SHA-256""#,
        "KAFKA_LISTENER_NAME_EXTERNAL__SASL_SCRAM___SHA___256_SASL_JAAS_CONFIG",
        "for mechanism in SCRAM-SHA-512 SCRAM-SHA-256",
        "KAFKA_LISTENER_NAME_EXTERNAL__SASL_SCRAM___SHA___512_SASL_JAAS_CONFIG",
        "nodePort: 30094",
        "-Dcassandra.settings.authenticator=PasswordAuthenticator",
        "--add-config-file",
        "--credentials=",
    ] {
        assert!(auth.contains(present), "no {present}:\n{auth}");
    }
    // The passwords come from the Secrets: no literal one in an env value.
    assert!(!auth.contains("name: CQL_PASSWORD, value"), "{auth}");
    assert!(!auth.contains("name: SCRAM_PASSWORD, value"), "{auth}");
    // Cassandra and its roles container, and the SCRAM user container.
    assert_eq!(auth.matches("key: password").count(), 3, "{auth}");

    refused_saying(
        &world,
        &[
            ("kafka.external.saslNodePort=30094", "kafka.sasl.enabled"),
            ("cassandra.auth.username=Bad-Name", "/cassandra/auth"),
            ("kafka.sasl.username=a b", "/kafka/sasl"),
        ],
    )
}

/// Kafka's TLS listeners in the dev back-ends only when asked: one-way TLS,
/// SCRAM over TLS and mutual TLS, inside the cluster and on node ports; the
/// CAs and certificates made by the chart, in Strimzi's Secret shapes, the
/// CAs' keys in a Secret no client is pointed at. That the broker takes
/// them and clients get through is shown on kind (`operator_kafka_tls`).
#[test]
fn dev_backends_kafka_tls_only_when_asked() -> anyhow::Result<()> {
    let world = World::discover()?;
    let render = |sets: &[&str]| render_dev_backends(&world, sets);

    let (ok, plain) = render(&["kafka.sasl.enabled=true"])?;
    assert!(ok, "{plain}");
    for absent in [
        "SSL",
        "kafka-tls",
        "kafka-cluster-ca-cert",
        "initContainers",
    ] {
        assert!(!plain.contains(absent), "{absent} without tls:\n{plain}");
    }

    let (ok, tls) = render(&[
        "kafka.sasl.enabled=true,kafka.tls.enabled=true,kafka.external.sslNodePort=30097,\
         kafka.external.saslSslNodePort=30098,kafka.external.mtlsNodePort=30099",
    ])?;
    assert!(ok, "{tls}");
    for present in [
        "name: kafka-cluster-ca-cert",
        "name: millrace-tls",
        "user.crt: ",
        "user.key: ",
        "name: kafka-tls",
        "cluster-ca.key: ",
        "SSL://kafka-0.kafka.data.svc:9097,SASL_SSL://kafka-0.kafka.data.svc:9098,MTLS://kafka-0.kafka.data.svc:9099",
        "EXTERNAL_SSL://$(EXTERNAL_HOST):30097,EXTERNAL_SASL_SSL://$(EXTERNAL_HOST):30098,EXTERNAL_MTLS://$(EXTERNAL_HOST):30099",
        "MTLS:SSL,EXTERNAL_SSL:SSL,EXTERNAL_SASL_SSL:SASL_SSL,EXTERNAL_MTLS:SSL",
        "KAFKA_LISTENER_NAME_EXTERNAL__SASL__SSL_SCRAM___SHA___256_SASL_JAAS_CONFIG",
        "KAFKA_LISTENER_NAME_MTLS_SSL_CLIENT_AUTH, value: required",
        "KAFKA_LISTENER_NAME_EXTERNAL__MTLS_SSL_CLIENT_AUTH, value: required",
        "KAFKA_SSL_KEYSTORE_LOCATION, value: /etc/kafka/tls/broker.pem",
        "nodePort: 30097",
        "nodePort: 30098",
        "nodePort: 30099",
        "checksum/tls: ",
    ] {
        assert!(tls.contains(present), "no {present}:\n{tls}");
    }
    // Only the broker's certificate, key and the clients CA reach the Pod.
    assert!(!tls.contains("key: cluster-ca.key,"), "{tls}");
    assert!(!tls.contains("key: clients-ca.key,"), "{tls}");

    refused_saying(
        &world,
        &[
            ("kafka.external.sslNodePort=30097", "kafka.tls.enabled"),
            ("kafka.external.mtlsNodePort=30099", "kafka.tls.enabled"),
            (
                "kafka.tls.enabled=true,kafka.external.saslSslNodePort=30098",
                "kafka.sasl.enabled",
            ),
            ("kafka.tls.user=Bad_Name", "/kafka/tls"),
            ("kafka.tls.user=kafka-tls", "/kafka/tls"),
            ("kafka.external.mtlsNodePort=9099", "/kafka/external"),
        ],
    )
}

/// The broker-key init container turns the chart's PKCS#1 key into the
/// PKCS#8 one Kafka reads, with `sh` as a Pod runs it: openssl reads the
/// result as the same key as the certificate's, and the certificate chains
/// to the cluster CA the chart hands clients.
#[test]
fn dev_backends_kafka_broker_key_is_pkcs8_of_the_certificates_key() -> anyhow::Result<()> {
    let world = World::discover()?;
    let (ok, out) = render_dev_backends(&world, &["kafka.tls.enabled=true"])?;
    assert!(ok, "{out}");
    let docs = Rendered::parse(&out);
    let private = docs.find("Secret", "kafka-tls")?;
    let cluster_ca = docs.find("Secret", "kafka-cluster-ca-cert")?;
    let kafka = docs.find("StatefulSet", "kafka")?;
    let script = kafka["spec"]["template"]["spec"]["initContainers"][0]["command"][2]
        .as_str()
        .context("the broker-key script")?;

    let dir = ScratchDir::new("broker-key")?;
    let (tls_in, out_dir) = (dir.path().join("tls-in"), dir.path().join("out"));
    std::fs::create_dir_all(&tls_in)?;
    std::fs::create_dir_all(&out_dir)?;
    write_secret_keys(private, &["tls.crt", "tls.key", "clients-ca.crt"], &tls_in)?;
    write_secret_keys(cluster_ca, &["ca.crt"], dir.path())?;
    let script = script
        .replace("/tls-in", &tls_in.display().to_string())
        .replace("out=/etc/kafka/tls", &format!("out={}", out_dir.display()));
    let ran = run(Command::new("sh").args(["-c", &script]))?;
    assert!(ran.status.success(), "{}", text(&ran));

    let pem = std::fs::read_to_string(out_dir.join("broker.pem"))?;
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.contains("-----BEGIN CERTIFICATE-----"), "{pem}");
    let broker_pem = out_dir.join("broker.pem").display().to_string();
    let crt = tls_in.join("tls.crt").display().to_string();
    let from_key = openssl(&["pkey", "-in", &broker_pem, "-pubout"])?;
    let from_cert = openssl(&["x509", "-in", &crt, "-noout", "-pubkey"])?;
    assert_eq!(
        from_key, from_cert,
        "the PKCS#8 key is not the certificate's"
    );
    let ca = dir.path().join("ca.crt").display().to_string();
    openssl(&["verify", "-CAfile", &ca, &crt])?;
    // Nothing but the key and chain, and the clients CA, are left behind.
    assert_eq!(files_in(&out_dir)?, ["broker.pem", "clients-ca.crt"]);
    Ok(())
}

/// Client encryption in the dev Cassandra only when asked: the CA made by
/// the chart (its key only in `cassandra-ca`, which only the Cassandra Pod
/// mounts), the client user in cert-manager's Secret shape, and
/// cassandra.yaml's `client_encryption_options` as system properties. That
/// Cassandra takes them and drivers get through is shown on kind
/// (`operator_cassandra_tls`).
#[test]
fn dev_backends_cassandra_tls_only_when_asked() -> anyhow::Result<()> {
    let world = World::discover()?;
    let render = |sets: &[&str]| render_dev_backends(&world, sets);

    let (ok, plain) = render(&["cassandra.auth.enabled=true"])?;
    assert!(ok, "{plain}");
    for absent in [
        "client_encryption_options",
        "cassandra-ca",
        "initContainers",
        "--ssl",
    ] {
        assert!(!plain.contains(absent), "{absent} without tls:\n{plain}");
    }

    let (ok, tls) = render(&["cassandra.auth.enabled=true,cassandra.tls.enabled=true"])?;
    assert!(ok, "{tls}");
    for present in [
        "name: cassandra-ca",
        "name: millrace-cassandra-client",
        "type: kubernetes.io/tls",
        "client_encryption_options.enabled=true",
        "client_encryption_options.optional=true",
        "client_encryption_options.require_client_auth=true",
        "ssl_context_factory.class_name=org.apache.cassandra.security.PEMBasedSslContextFactory",
        "client_encryption_options.keystore=/tls/node.pem",
        "name: certs",
        "fieldPath: status.podIP",
        "secretName: cassandra-ca",
    ] {
        assert!(tls.contains(present), "no {present}:\n{tls}");
    }
    // Plaintext stays, so the Pod's own cqlsh needs no TLS.
    assert!(!tls.contains("--ssl"), "{tls}");

    let (ok, only) = render(
        &["cassandra.tls.enabled=true,cassandra.tls.plaintext=false,\
         cassandra.tls.requireClientAuth=false,cassandra.tls.user=reader"],
    )?;
    assert!(ok, "{only}");
    for present in [
        "client_encryption_options.optional=false",
        "client_encryption_options.require_client_auth=false",
        "name: reader",
        r#"cqlsh --ssl --cqlshrc=/tls/cqlshrc -e "SELECT release_version FROM system.local""#,
    ] {
        assert!(only.contains(present), "no {present}:\n{only}");
    }

    refused_saying(
        &world,
        &[
            ("cassandra.tls.user=Bad_Name", "/cassandra/tls"),
            ("cassandra.tls.user=cassandra-ca", "/cassandra/tls"),
            ("cassandra.tls.plaintext=no", "/cassandra/tls"),
        ],
    )
}

/// The certs init container, run with `sh` as a Pod runs it, against the
/// CA the chart made: the node's certificate chains to the CA clients are
/// given, names the Pod's IP (what a driver checks when it reconnects to
/// the node), and sits with its key in the one PEM file Cassandra reads;
/// the probe's client certificate and the user's chain to that CA too.
#[test]
fn dev_backends_cassandra_node_certificate_names_the_pod_ip() -> anyhow::Result<()> {
    let world = World::discover()?;
    let (ok, out) = render_dev_backends(&world, &["cassandra.tls.enabled=true"])?;
    assert!(ok, "{out}");
    let docs = Rendered::parse(&out);
    let ca_secret = docs.find("Secret", "cassandra-ca")?;
    let user = docs.find("Secret", "millrace-cassandra-client")?;
    let cassandra = docs.find("StatefulSet", "cassandra")?;
    let init = &cassandra["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(init["name"], "certs");
    let script = init["command"][2].as_str().context("the certs script")?;

    let dir = ScratchDir::new("cassandra-certs")?;
    let (ca_in, tls) = (dir.path().join("ca-in"), dir.path().join("tls"));
    std::fs::create_dir_all(&ca_in)?;
    std::fs::create_dir_all(&tls)?;
    write_secret_keys(ca_secret, &["tls.crt", "tls.key"], &ca_in)?;
    let user_dir = dir.path().join("user");
    std::fs::create_dir_all(&user_dir)?;
    write_secret_keys(user, &["ca.crt", "tls.crt"], &user_dir)?;
    let client_ca = user_dir.join("ca.crt");
    let (tls_s, ca_s) = (tls.display().to_string(), ca_in.display().to_string());
    let script = script
        .replace("cd /tls", &format!("cd {tls_s}"))
        .replace("/tls/", &format!("{tls_s}/"))
        .replace("/ca/", &format!("{ca_s}/"));
    let ran = run(Command::new("sh")
        .args(["-c", &script])
        .env("POD_IP", "10.244.1.7")
        .env("POD_NAME", "cassandra-0")
        .env("NAMESPACE", "data"))?;
    assert!(ran.status.success(), "{}", text(&ran));

    let at = |name: &str| tls.join(name).display().to_string();
    let pem = std::fs::read_to_string(tls.join("node.pem"))?;
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    let ca = client_ca.display().to_string();
    openssl(&[
        "verify",
        "-CAfile",
        &ca,
        "-purpose",
        "sslserver",
        &at("node.pem"),
    ])?;
    let sans = openssl(&[
        "x509",
        "-in",
        &at("node.pem"),
        "-noout",
        "-ext",
        "subjectAltName",
    ])?;
    for name in [
        "IP Address:10.244.1.7",
        "IP Address:127.0.0.1",
        "DNS:cassandra-0.cassandra.data.svc",
        "DNS:cassandra.data.svc",
    ] {
        assert!(sans.contains(name), "no {name} in {sans}");
    }
    let from_key = openssl(&["pkey", "-in", &at("node.pem"), "-pubout"])?;
    let from_cert = openssl(&["x509", "-in", &at("node.pem"), "-noout", "-pubkey"])?;
    assert_eq!(
        from_key, from_cert,
        "node.pem's key is not its certificate's"
    );
    openssl(&[
        "verify",
        "-CAfile",
        &ca,
        "-purpose",
        "sslclient",
        &at("probe.crt"),
    ])?;
    let user_crt = user_dir.join("tls.crt").display().to_string();
    openssl(&["verify", "-CAfile", &ca, "-purpose", "sslclient", &user_crt])?;
    assert_eq!(
        std::fs::read(tls.join("ca.crt"))?,
        std::fs::read(&client_ca)?
    );
    let cqlshrc = std::fs::read_to_string(tls.join("cqlshrc"))?;
    assert!(
        cqlshrc.contains(&format!("certfile = {tls_s}/ca.crt")),
        "{cqlshrc}"
    );
    // The CA's key never leaves its Secret's volume.
    assert_eq!(
        files_in(&tls)?,
        [
            "ca.crt",
            "cqlshrc",
            "node.crt",
            "node.pem",
            "probe.crt",
            "probe.key"
        ]
    );
    Ok(())
}

/// A directory of this test's own under the system's temporary one, removed
/// when dropped.
struct ScratchDir(std::path::PathBuf);

impl ScratchDir {
    fn new(what: &str) -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("millrace-chart-{what}-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
