//! TLS on the push endpoint, against the real Kafka and Cassandra, with a
//! CA, server and client certificates made for the test: a bearer-token
//! source over HTTPS (202 with its token, 401 without), plain HTTP to the
//! TLS port fails, a `ClientCertificate` source (401 without a certificate,
//! the handshake refused for a certificate of another CA, 403 for one not
//! valid for its allowedDnsNames, 202 and a row in Cassandra for the right
//! one), the certificate rotated by replacing its files while the runner
//! runs, and a runner whose TLS files are unusable refuses to start.

mod runner;

use std::path::{Path, PathBuf};
use std::time::Instant;

use millrace_testsupport::{Deadline, poll_until};
use runner::{Ca, Fixture, Runner, fixture_user as user, randomuser_table};
use serde_json::{Value, json};

/// Writes a file as the kubelet updates a mounted Secret: whole, by a
/// rename, never half-written.
fn replace(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(tmp, path)?;
    Ok(())
}

/// The TLS directory as the operator mounts it: `cert/tls.crt`,
/// `cert/tls.key`, `client-ca/ca.crt`.
fn write_tls(dir: &Path, (cert, key): &(String, String), client_ca: &str) -> anyhow::Result<()> {
    let files = millrace_api::push_auth::TlsFiles::under(dir, true);
    std::fs::create_dir_all(files.cert.parent().expect("cert dir"))?;
    let ca = files.client_ca.expect("client CA");
    std::fs::create_dir_all(ca.parent().expect("ca dir"))?;
    replace(&files.cert, cert)?;
    replace(&files.key, key)?;
    replace(&ca, client_ca)
}

/// A new client (no pooled connection: each request is a new handshake)
/// trusting only `server_ca`, presenting `identity` if given.
fn client(server_ca: &str, identity: Option<&(String, String)>) -> anyhow::Result<reqwest::Client> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(server_ca.as_bytes())?)
        .pool_max_idle_per_host(0);
    if let Some((cert, key)) = identity {
        builder = builder.identity(reqwest::Identity::from_pem(
            format!("{cert}\n{key}").as_bytes(),
        )?);
    }
    Ok(builder.build()?)
}

/// POSTs a record over HTTPS: the status and body, or the error of a
/// connection that did not get that far.
async fn push(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    n: u32,
) -> Result<(u16, String), reqwest::Error> {
    let mut request = client.post(url).body(user(n).to_string());
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// The whole chain of an error, for the log and for assertions.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn start_ingest(
    fx: &Fixture,
    pipeline: &Value,
    label: &str,
    tls_dir: &Path,
) -> anyhow::Result<Runner> {
    let path = fx.write_pipeline(&format!("{label}.json"), pipeline)?;
    let mut env = fx.runner_env();
    env.push((
        millrace_api::push_auth::TLS_DIR_ENV.to_owned(),
        tls_dir.display().to_string(),
    ));
    Runner::start("ingest", &path, &env, &fx.dir.join(format!("{label}.log")))
}

#[tokio::test(flavor = "multi_thread")]
async fn push_over_tls_with_tokens_and_client_certificates_and_a_rotated_certificate()
-> anyhow::Result<()> {
    let fx = Fixture::new("push-tls", 1, randomuser_table("users")).await?;
    let server_ca = Ca::new("push server CA")?;
    let clients_ca = Ca::new("push clients CA")?;
    let stranger_ca = Ca::new("another CA")?;
    let partner = clients_ca.issue(&["partner.example"])?;
    let other_client = clients_ca.issue(&["other.example"])?;
    let stranger = stranger_ca.issue(&["partner.example"])?;

    let tls_dir: PathBuf = fx.dir.join("push-tls");
    write_tls(
        &tls_dir,
        &server_ca.issue(&["127.0.0.1", "localhost"])?,
        &clients_ca.pem,
    )?;
    let mut pipeline = fx.pipeline(json!([
        {"name": "events", "httpPush": {}},
        {"name": "partners", "httpPush": {
            "path": "/v1/partners",
            "auth": {"type": "ClientCertificate", "allowedDnsNames": ["partner.example"]}
        }},
    ]));
    pipeline["spec"]["runner"]["pushTls"] = json!({
        "certificateSecretRef": {"name": "push-cert"},
        "clientCaSecretRef": {"name": "push-clients-ca"},
    });
    let mut ingest = start_ingest(&fx, &pipeline, "ingest", &tls_dir)?;
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(60)).await?;
    let events = format!("https://127.0.0.1:{}/v1/records", ingest.port);
    let partners = format!("https://127.0.0.1:{}/v1/partners", ingest.port);
    let token = ingest.push_token.clone();
    let anonymous = client(&server_ca.pem, None)?;

    // A token source over HTTPS: the token is still needed.
    let answer = push(&anonymous, &events, Some(&token), 1).await?;
    println!("https, token: {answer:?}");
    assert_eq!(answer, (202, r#"{"accepted":1}"#.to_owned()));
    let answer = push(&anonymous, &events, None, 0).await?;
    println!("https, no token: {answer:?}");
    assert_eq!(answer.0, 401, "{}", answer.1);
    // A client certificate does not stand in for a token, nor get in its way.
    let answer = push(
        &client(&server_ca.pem, Some(&partner))?,
        &events,
        Some(&token),
        2,
    )
    .await?;
    assert_eq!(
        answer.0, 202,
        "a token source, a client with a certificate: {}",
        answer.1
    );

    // Plain HTTP to the TLS port gets no answer.
    let plain = reqwest::Client::new()
        .post(ingest.url("/v1/records"))
        .bearer_auth(&token)
        .body(user(0).to_string())
        .send()
        .await;
    match &plain {
        Ok(r) => panic!("plain HTTP to the TLS port was answered {}", r.status()),
        Err(e) => println!("plain HTTP: refused ({})", chain(e)),
    }

    // The ClientCertificate source.
    let answer = push(&anonymous, &partners, None, 0).await?;
    println!("client certificate source, no certificate: {answer:?}");
    assert_eq!(answer.0, 401, "{}", answer.1);
    let answer = push(&anonymous, &partners, Some(&token), 0).await?;
    assert_eq!(
        answer.0, 401,
        "a bearer token is no certificate: {}",
        answer.1
    );
    let refused = push(
        &client(&server_ca.pem, Some(&stranger))?,
        &partners,
        None,
        0,
    )
    .await;
    match &refused {
        Ok(answer) => panic!("a certificate of another CA was answered {answer:?}"),
        Err(e) => println!(
            "client certificate of another CA: handshake refused ({})",
            chain(e)
        ),
    }
    let answer = push(
        &client(&server_ca.pem, Some(&other_client))?,
        &partners,
        None,
        0,
    )
    .await?;
    println!("client certificate not in allowedDnsNames: {answer:?}");
    assert_eq!(answer.0, 403, "{}", answer.1);
    let answer = push(&client(&server_ca.pem, Some(&partner))?, &partners, None, 3).await?;
    println!("the partner's certificate: {answer:?}");
    assert_eq!(answer, (202, r#"{"accepted":1}"#.to_owned()));

    let rejected = |source: &str, reason: &str| {
        format!(r#"millrace_records_rejected_total{{source="{source}",reason="{reason}"}}"#)
    };
    assert_eq!(
        (
            ingest
                .metric(&rejected("partners", "unauthenticated"))
                .await?,
            ingest.metric(&rejected("partners", "forbidden")).await?,
            ingest
                .metric(&rejected("events", "unauthenticated"))
                .await?,
        ),
        (2.0, 1.0, 1.0)
    );
    // Three records were accepted: two by token, one by certificate.
    fx.wait_for_rows(3, Deadline::secs(90)).await?;
    let names: Vec<String> = fx
        .session
        .query_unpaged(
            format!("SELECT first_name FROM {}", fx.qualified_table()),
            (),
        )
        .await?
        .into_rows_result()?
        .rows::<(Option<String>,)>()?
        .filter_map(|r| r.ok().and_then(|(n,)| n))
        .collect();
    assert!(names.contains(&"user-3".to_owned()), "{names:?}");

    // Rotation: a certificate from a new server CA replaces the files, as
    // cert-manager renewing into the Secret and the kubelet updating the
    // mount would. New connections get it within the reload period.
    let new_ca = Ca::new("renewed push server CA")?;
    write_tls(
        &tls_dir,
        &new_ca.issue(&["127.0.0.1", "localhost"])?,
        &clients_ca.pem,
    )?;
    let rotated = Instant::now();
    poll_until(
        "new connections to get the new certificate",
        Deadline::secs(30),
        || {
            let new_ca = new_ca.pem.clone();
            let (events, token) = (events.clone(), token.clone());
            async move {
                Ok(push(&client(&new_ca, None)?, &events, Some(&token), 4)
                    .await
                    .ok()
                    .filter(|(status, _)| *status == 202)
                    .map(|_| ()))
            }
        },
    )
    .await?;
    println!(
        "rotation: the new certificate served after {} ms",
        rotated.elapsed().as_millis()
    );
    let old = push(&client(&server_ca.pem, None)?, &events, Some(&token), 0).await;
    assert!(old.is_err(), "a client trusting only the old CA: {old:?}");
    let answer = push(&client(&new_ca.pem, Some(&partner))?, &partners, None, 5).await?;
    assert_eq!(
        answer.0, 202,
        "client certificates after the rotation: {}",
        answer.1
    );
    fx.wait_for_rows(5, Deadline::secs(90)).await?;

    // A runner whose key is not its certificate's refuses to start, and
    // says which files.
    let broken_dir = fx.dir.join("push-tls-broken");
    let (cert, _) = server_ca.issue(&["127.0.0.1"])?;
    let (_, other_key) = server_ca.issue(&["127.0.0.1"])?;
    write_tls(&broken_dir, &(cert, other_key), &clients_ca.pem)?;
    let mut broken = start_ingest(&fx, &pipeline, "broken", &broken_dir)?;
    let status = broken.wait_exit(Deadline::secs(60)).await?;
    let log = broken.log_text();
    println!("a key that is not the certificate's: {status}");
    assert!(!status.success());
    assert!(
        log.contains("push TLS: the certificate and key cannot be used"),
        "{log}"
    );
    std::fs::remove_dir_all(broken_dir.join("cert"))?;
    let mut missing = start_ingest(&fx, &pipeline, "missing", &broken_dir)?;
    let status = missing.wait_exit(Deadline::secs(60)).await?;
    let log = missing.log_text();
    assert!(!status.success());
    assert!(
        log.contains("push TLS: cannot read") && log.contains("tls.crt"),
        "{log}"
    );

    drop(ingest);
    drop(sink);
    fx.cleanup().await
}
