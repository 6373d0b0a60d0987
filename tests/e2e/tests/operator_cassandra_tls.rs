//! Cassandra over TLS, from `kubectl apply` to rows, against the world's
//! nodes with client encryption on (and client certificates required): the
//! CA and a client certificate from Secrets shaped as cert-manager writes
//! them (`ca.crt`, `tls.crt`, `tls.key`). A CA that did not sign the nodes'
//! certificates, a missing client certificate and one from another CA are
//! each a `TlsFailed` condition naming what to check, not a crash loop; and
//! no key shows up in the status, an Event, a ConfigMap or a log.

mod operator_common;

use std::path::PathBuf;

use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario, world_file};
use serde_json::{Value, json};

const ROWS: i64 = 200;

/// The world's Cassandra certificates.
struct CassandraTlsWorld {
    dir: PathBuf,
    user: String,
}

impl CassandraTlsWorld {
    fn of(s: &Scenario) -> anyhow::Result<Self> {
        let var = |name: &str| s.world_var(name);
        Ok(Self {
            dir: PathBuf::from(var("MILLRACE_CASSANDRA_TLS_DIR")?),
            user: var("MILLRACE_CASSANDRA_TLS_USER")?,
        })
    }

    fn file(&self, name: &str) -> anyhow::Result<String> {
        world_file(&self.dir, name)
    }

    /// A Secret as cert-manager writes it for a Certificate: the CA, and
    /// the certificate and key as `tls.crt` and `tls.key`.
    fn cert_manager_secret(&self, ca: &str, cert: &str) -> anyhow::Result<Value> {
        Ok(json!({
            "ca.crt": self.file(&format!("{ca}.crt"))?,
            "tls.crt": self.file(&format!("{cert}.crt"))?,
            "tls.key": self.file(&format!("{cert}.key"))?,
        }))
    }
}

/// The seed pipeline `name` on its own topic and table, generating `ROWS`
/// users, with `tls` as its `spec.cassandra.tls`.
fn pipeline(s: &Scenario, name: &str, tls: Value) -> anyhow::Result<Value> {
    let mut sp = s.own_seed_pipeline(name, ROWS)?;
    sp["spec"]["cassandra"]["tls"] = tls;
    Ok(sp)
}

fn client_cert(secret: &str) -> Value {
    json!({"name": secret, "certKey": "tls.crt", "keyKey": "tls.key"})
}

#[tokio::test]
async fn tls_with_the_ca_and_a_client_certificate_carries_records_to_rows() -> anyhow::Result<()> {
    let s = Scenario::new("op-ctls").await?;
    let tls = CassandraTlsWorld::of(&s)?;
    s.create_secret(
        "cassandra-client",
        tls.cert_manager_secret("ca", &tls.user)?,
    )
    .await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;

    let name = "ctls";
    let started = std::time::Instant::now();
    s.apply(&pipeline(
        &s,
        name,
        json!({
            "caSecretRef": {"name": "cassandra-client"},
            "clientCertSecretRef": client_cert("cassandra-client"),
        }),
    )?)
    .await?;
    s.wait_condition(name, "Ready", "True", None, 240).await?;
    poll_until(
        &format!("{ROWS} rows over TLS"),
        Deadline::secs(180),
        || async { Ok((s.row_count(name).await? == ROWS).then_some(())) },
    )
    .await?;
    println!("{ROWS} rows over TLS, {:?} after apply", started.elapsed());

    // The sink got the material by secretKeyRef only.
    for var in [
        "MILLRACE_CASSANDRA_CA_PEM",
        "MILLRACE_CASSANDRA_CLIENT_CERT_PEM",
        "MILLRACE_CASSANDRA_CLIENT_KEY_PEM",
    ] {
        assert_eq!(
            s.env_secret(&format!("{name}-sink"), var).await?,
            "cassandra-client"
        );
    }
    let key = tls.file(&format!("{}.key", tls.user))?;
    let key_body: String = key
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .take(3)
        .collect();
    s.assert_secrets_unseen(&op, &[&key_body]).await?;

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.drop_own_topics(&[name]).await;
    s.cleanup().await
}

#[tokio::test]
async fn a_wrong_ca_or_a_missing_or_untrusted_client_certificate_is_tls_failed()
-> anyhow::Result<()> {
    let s = Scenario::new("op-ctls-bad").await?;
    let tls = CassandraTlsWorld::of(&s)?;
    s.create_secret("good-client", tls.cert_manager_secret("ca", &tls.user)?)
        .await?;
    // cert-manager's shape, with a CA that signed nothing of the world's.
    s.create_secret("wrong-ca", tls.cert_manager_secret("other-ca", &tls.user)?)
        .await?;
    s.create_secret(
        "untrusted-client",
        tls.cert_manager_secret("ca", "untrusted-client")?,
    )
    .await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;

    let cases = [
        (
            "wrong-ca",
            json!({"caSecretRef": {"name": "wrong-ca"}, "clientCertSecretRef": client_cert("good-client")}),
        ),
        (
            "no-client-cert",
            json!({"caSecretRef": {"name": "good-client"}}),
        ),
        (
            "untrusted-client",
            json!({"caSecretRef": {"name": "good-client"}, "clientCertSecretRef": client_cert("untrusted-client")}),
        ),
    ];
    for (name, tls) in &cases {
        s.apply(&pipeline(&s, name, tls.clone())?).await?;
    }
    for (name, _) in &cases {
        let (_, failed) = s
            .wait_condition(name, "TableReady", "False", Some("TlsFailed"), 120)
            .await?;
        println!("{name}: TableReady: {}", failed.message);
        assert!(
            failed.message.contains("spec.cassandra.tls"),
            "{name}: {}",
            failed.message
        );
        if *name == "wrong-ca" {
            assert!(
                failed.message.contains("certificate verify failed"),
                "{name}: {}",
                failed.message
            );
        }
    }

    // Pointed at the right CA, the first recovers and its rows land.
    let name = "wrong-ca";
    s.merge(
        name,
        json!({"spec": {"cassandra": {"tls": {"caSecretRef": {"name": "good-client"}}}}}),
    )
    .await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;
    let table = name.replace('-', "_");
    poll_until(&format!("{ROWS} rows"), Deadline::secs(180), || async {
        Ok((s.row_count(&table).await? == ROWS).then_some(()))
    })
    .await?;

    for (name, _) in &cases {
        s.delete_pipeline(name, 60).await?;
    }
    op.stop().await?;
    s.drop_own_topics(&["wrong-ca", "no-client-cert", "untrusted-client"])
        .await;
    s.cleanup().await
}
