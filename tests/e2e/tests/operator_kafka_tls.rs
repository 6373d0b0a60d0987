//! Kafka over TLS, from `kubectl apply` to rows: SSL with the cluster's CA,
//! SASL_SSL with SCRAM-SHA-512 and with SCRAM-SHA-256, and mutual TLS, each with Secrets shaped as
//! Strimzi writes them (the cluster CA Secret's `ca.crt`; a KafkaUser's
//! Secret named after the user, with `password`, or with `user.crt`,
//! `user.key` and the clients CA as `ca.crt`). A CA that did not sign the
//! brokers' certificates is a `TlsFailed` condition, and no key or password
//! shows up in the status, an Event, a ConfigMap or the operator's log.

mod operator_common;

use std::path::PathBuf;

use anyhow::Context as _;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario, world_file};
use serde_json::{Value, json};

const ROWS: i64 = 200;

/// The world's TLS listeners and the files of its CAs and users.
struct KafkaTlsWorld {
    ssl: String,
    sasl_ssl: String,
    mtls: String,
    dir: PathBuf,
    tls_user: String,
    scram_user: String,
    scram_password: String,
}

impl KafkaTlsWorld {
    fn of(s: &Scenario) -> anyhow::Result<Self> {
        let var = |name: &str| s.world_var(name);
        Ok(Self {
            ssl: var("MILLRACE_KAFKA_SSL_BOOTSTRAP")?,
            sasl_ssl: var("MILLRACE_KAFKA_SASL_SSL_BOOTSTRAP")?,
            mtls: var("MILLRACE_KAFKA_MTLS_BOOTSTRAP")?,
            dir: PathBuf::from(var("MILLRACE_KAFKA_TLS_DIR")?),
            tls_user: var("MILLRACE_KAFKA_TLS_USER")?,
            scram_user: var("MILLRACE_KAFKA_SASL_USERNAME")?,
            scram_password: var("MILLRACE_KAFKA_SASL_PASSWORD")?,
        })
    }

    fn file(&self, name: &str) -> anyhow::Result<String> {
        world_file(&self.dir, name)
    }
}

/// The seed pipeline `name` on its own topic and table, generating `ROWS`
/// users into `bootstrap` with the given TLS and login.
fn pipeline(s: &Scenario, name: &str, bootstrap: &str, kafka: Value) -> anyhow::Result<Value> {
    let mut sp = s.own_seed_pipeline(name, ROWS)?;
    let spec = &mut sp["spec"];
    spec["kafka"]["bootstrapServers"] = json!(bootstrap);
    for (k, v) in kafka.as_object().context("kafka settings")? {
        spec["kafka"][k] = v.clone();
    }
    Ok(sp)
}

#[tokio::test]
async fn ssl_sasl_ssl_with_both_scram_mechanisms_and_mutual_tls_each_carry_records_to_rows()
-> anyhow::Result<()> {
    let s = Scenario::new("op-ktls").await?;
    let tls = KafkaTlsWorld::of(&s)?;
    let cluster_ca = tls.file("cluster-ca.crt")?;
    let user_key = tls.file(&format!("{}.key", tls.tls_user))?;

    // Strimzi's Secrets: the cluster CA, a SCRAM KafkaUser's (named after
    // the user, only `password`), and a TLS KafkaUser's (named after the
    // user, with the clients CA as its ca.crt).
    s.create_secret("my-cluster-cluster-ca-cert", json!({"ca.crt": cluster_ca}))
        .await?;
    s.create_secret(&tls.scram_user,
        json!({
            "password": tls.scram_password,
            "sasl.jaas.config": format!(
                "org.apache.kafka.common.security.scram.ScramLoginModule required username=\"{}\" password=\"{}\";",
                tls.scram_user, tls.scram_password
            ),
        }),
    )
    .await?;
    s.create_secret(
        &tls.tls_user,
        json!({
            "ca.crt": tls.file("clients-ca.crt")?,
            "user.crt": tls.file(&format!("{}.crt", tls.tls_user))?,
            "user.key": user_key,
        }),
    )
    .await?;

    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let ca = json!({"caSecretRef": {"name": "my-cluster-cluster-ca-cert"}});
    let modes = [
        ("ssl", tls.ssl.clone(), json!({"tls": ca})),
        (
            "sasl-ssl",
            tls.sasl_ssl.clone(),
            json!({"tls": ca, "credentialsSecretRef": {"name": tls.scram_user, "mechanism": "SCRAM-SHA-512"}}),
        ),
        (
            "sasl-ssl-256",
            tls.sasl_ssl.clone(),
            json!({"tls": ca, "credentialsSecretRef": {"name": tls.scram_user, "mechanism": "SCRAM-SHA-256"}}),
        ),
        (
            "mtls",
            tls.mtls.clone(),
            json!({"tls": {"caSecretRef": {"name": "my-cluster-cluster-ca-cert"},
                           "clientCertSecretRef": {"name": tls.tls_user}}}),
        ),
    ];
    let started = std::time::Instant::now();
    for (name, bootstrap, kafka) in &modes {
        s.apply(&pipeline(&s, name, bootstrap, kafka.clone())?)
            .await?;
    }
    for (name, _, _) in &modes {
        s.wait_condition(name, "Ready", "True", None, 240).await?;
        let table = name.replace('-', "_");
        poll_until(
            &format!("{ROWS} rows through {name}"),
            Deadline::secs(180),
            || async { Ok((s.row_count(&table).await? == ROWS).then_some(())) },
        )
        .await?;
        println!("{name}: {ROWS} rows, {:?} after apply", started.elapsed());
    }

    // The runner gets TLS material by secretKeyRef only.
    for (var, secret) in [
        ("MILLRACE_KAFKA_CA_PEM", "my-cluster-cluster-ca-cert"),
        ("MILLRACE_KAFKA_CLIENT_CERT_PEM", tls.tls_user.as_str()),
        ("MILLRACE_KAFKA_CLIENT_KEY_PEM", tls.tls_user.as_str()),
    ] {
        assert_eq!(s.env_secret("mtls-sink", var).await?, secret);
    }

    // No key or password anywhere it could be read, the runners' logs too.
    let key_body: String = user_key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .take(3)
        .collect();
    s.assert_secrets_unseen(&op, &[&key_body, &tls.scram_password])
        .await?;

    for (name, _, _) in &modes {
        s.delete_pipeline(name, 60).await?;
    }
    op.stop().await?;
    s.drop_own_topics(&["ssl", "sasl-ssl", "sasl-ssl-256", "mtls"])
        .await;
    s.cleanup().await
}

#[tokio::test]
async fn a_ca_that_did_not_sign_the_brokers_is_a_tls_failed_condition() -> anyhow::Result<()> {
    let s = Scenario::new("op-ktls-bad").await?;
    let tls = KafkaTlsWorld::of(&s)?;
    s.create_secret("wrong-ca", json!({"ca.crt": tls.file("other-ca.crt")?}))
        .await?;
    s.create_secret("cluster-ca", json!({"ca.crt": tls.file("cluster-ca.crt")?}))
        .await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;

    let name = "wrong-ca";
    let sp = pipeline(
        &s,
        name,
        &tls.ssl,
        json!({"tls": {"caSecretRef": {"name": "wrong-ca"}}}),
    )?;
    s.apply(&sp).await?;
    let (_, failed) = s
        .wait_condition(name, "TopicReady", "False", Some("TlsFailed"), 90)
        .await?;
    println!("TopicReady: {}", failed.message);
    assert!(
        failed.message.contains("certificate verify failed"),
        "{}",
        failed.message
    );
    assert!(
        failed.message.contains("spec.kafka.tls"),
        "{}",
        failed.message
    );

    // Pointed at the right CA, it recovers.
    s.merge(
        name,
        json!({"spec": {"kafka": {"tls": {"caSecretRef": {"name": "cluster-ca"}}}}}),
    )
    .await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;
    let table = name.replace('-', "_");
    poll_until(&format!("{ROWS} rows"), Deadline::secs(180), || async {
        Ok((s.row_count(&table).await? == ROWS).then_some(()))
    })
    .await?;

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.drop_own_topics(&[name]).await;
    s.cleanup().await
}
