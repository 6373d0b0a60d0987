//! Cassandra over TLS, from `kubectl apply` to rows, against the world's
//! nodes with client encryption on (and client certificates required): the
//! CA and a client certificate from Secrets shaped as cert-manager writes
//! them (`ca.crt`, `tls.crt`, `tls.key`). A CA that did not sign the nodes'
//! certificates, a missing client certificate and one from another CA are
//! each a `TlsFailed` condition naming what to check, not a crash loop; and
//! no key shows up in the status, an Event, a ConfigMap or a log. With only
//! a CA, rows reach the world's TLS-only Cassandra, a cluster of its own
//! that asks for no client certificate.

mod operator_common;

use std::path::PathBuf;

use millrace_api::cassandra_client::tls_context;
use millrace_api::{CassandraCredentialValues, CassandraTls};
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario, world_file};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
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

/// A session to the world's TLS-only Cassandra (its own one-node cluster,
/// which asks for no client certificate), trusting only `ca` (the CA its
/// node's certificate chains to, `tls-only-ca.crt`).
async fn tls_only_session(contact: &str, ca: &str) -> anyhow::Result<Session> {
    let tls: CassandraTls = serde_json::from_value(json!({"caSecretRef": {"name": "ca"}}))?;
    let values = CassandraCredentialValues {
        ca_pem: Some(ca.to_owned()),
        ..CassandraCredentialValues::default()
    };
    Ok(SessionBuilder::new()
        .known_node(contact)
        .user(TLS_ONLY_LOGIN.0, TLS_ONLY_LOGIN.1)
        .tls_context(tls_context(Some(&tls), &values)?)
        .build()
        .await?)
}

/// The TLS-only Cassandra's login: its default superuser.
const TLS_ONLY_LOGIN: (&str, &str) = ("cassandra", "cassandra");

#[tokio::test]
async fn tls_with_only_the_ca_carries_records_to_rows() -> anyhow::Result<()> {
    let s = Scenario::new("op-ctls-ca").await?;
    let tls = CassandraTlsWorld::of(&s)?;
    let contact = s.world_var("MILLRACE_CASSANDRA_TLS_ONLY_CONTACT_POINT")?;
    let ca = tls.file("tls-only-ca.crt")?;
    s.create_secret("cassandra-ca", json!({ "ca.crt": ca }))
        .await?;
    s.create_secret(
        "tls-only-login",
        json!({"username": TLS_ONLY_LOGIN.0, "password": TLS_ONLY_LOGIN.1}),
    )
    .await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;

    let name = "ctls-ca";
    let mut sp = pipeline(&s, name, json!({"caSecretRef": {"name": "cassandra-ca"}}))?;
    sp["spec"]["cassandra"]["contactPoints"] = json!([contact]);
    sp["spec"]["cassandra"]["credentialsSecretRef"] = json!({"name": "tls-only-login"});
    let started = std::time::Instant::now();
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 240).await?;
    let session = tls_only_session(&contact, &ca).await?;
    let count = format!(
        "SELECT COUNT(*) FROM {}.{}",
        s.keyspace,
        name.replace('-', "_")
    );
    poll_until(
        &format!("{ROWS} rows over TLS with only the CA"),
        Deadline::secs(180),
        || async {
            let rows = session
                .query_unpaged(count.as_str(), &[])
                .await?
                .into_rows_result()?;
            Ok((rows.single_row::<(i64,)>()?.0 == ROWS).then_some(()))
        },
    )
    .await?;
    println!(
        "{ROWS} rows over TLS with only the CA, {:?} after apply",
        started.elapsed()
    );
    // The sink got the CA by secretKeyRef, and no client certificate.
    let sink = format!("{name}-sink");
    assert_eq!(
        s.env_secret(&sink, "MILLRACE_CASSANDRA_CA_PEM").await?,
        "cassandra-ca"
    );
    assert!(
        s.env_secret(&sink, "MILLRACE_CASSANDRA_CLIENT_CERT_PEM")
            .await
            .is_err(),
        "a client certificate the spec does not name"
    );

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.drop_own_topics(&[name]).await;
    // The keyspace is on the TLS-only cluster: the scenario's cleanup
    // reaches only the world's.
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {}", s.keyspace), &[])
        .await?;
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
