//! Who may push, against the real Kafka and Cassandra: a push source takes
//! bearer tokens by default (401 without one, 403 with a wrong one, 202
//! with a right one); a token is rotated while a client keeps pushing, and
//! not one of its requests is refused; metrics are on their own port and
//! not on the push port; and `auth.type: None` is open, deliberately.

mod runner;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use millrace_testsupport::{Deadline, poll_until};
use runner::{Fixture, Runner, fixture_user as user, randomuser_table};
use serde_json::{Value, json};
use tokio::sync::Mutex;

async fn send(
    runner: &Runner,
    client: &reqwest::Client,
    authorization: Option<&str>,
    record: &Value,
) -> anyhow::Result<(u16, reqwest::header::HeaderMap, String)> {
    let mut request = client
        .post(runner.url("/v1/records"))
        .header("content-type", "application/json")
        .body(record.to_string());
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    let response = request.send().await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    Ok((status, headers, response.text().await?))
}

#[tokio::test(flavor = "multi_thread")]
async fn pushes_need_a_token_and_a_token_rotates_without_a_refused_request() -> anyhow::Result<()> {
    let fx = Fixture::new("push-auth", 2, randomuser_table("users")).await?;
    let pipeline = fx.pipeline(json!([{"name": "events", "httpPush": {}}]));
    let mut ingest = fx.start("ingest", &pipeline, "ingest")?;
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(60)).await?;
    let client = reqwest::Client::new();
    let token_a = ingest.push_token.clone();

    // Without a token, with a wrong one, with the right one.
    let (status, headers, body) = send(&ingest, &client, None, &user(0)).await?;
    println!("no token: {status} {body}");
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer realm=\"millrace\"")
    );
    let (status, _, body) = send(&ingest, &client, Some("Basic dXNlcjpwYXNz"), &user(0)).await?;
    assert_eq!(status, 401, "another scheme is no token: {body}");
    let wrong = format!("Bearer {token_a}x");
    let (status, _, body) = send(&ingest, &client, Some(&wrong), &user(0)).await?;
    println!("wrong token: {status} {body}");
    assert_eq!(status, 403, "{body}");
    assert!(
        !body.contains(&token_a),
        "the answer shows no token: {body}"
    );
    let right = format!("Bearer {token_a}");
    let (status, _, body) = send(&ingest, &client, Some(&right), &user(1)).await?;
    println!("right token: {status} {body}");
    assert_eq!((status, body.as_str()), (202, r#"{"accepted":1}"#));
    fx.wait_for_rows(1, Deadline::secs(60)).await?;

    // Metrics are on their own port: the push port has none, and the
    // metrics port counts the refusals, per request.
    let on_push_port = client.get(ingest.url("/metrics")).send().await?.status();
    assert_eq!(on_push_port, 404, "the push port serves no metrics");
    let unauthenticated = ingest
        .metric(r#"millrace_records_rejected_total{source="events",reason="unauthenticated"}"#)
        .await?;
    let forbidden = ingest
        .metric(r#"millrace_records_rejected_total{source="events",reason="forbidden"}"#)
        .await?;
    assert_eq!((unauthenticated, forbidden), (2.0, 1.0));

    // Rotation: a client pushes one record at a time without pause, with
    // whatever token it holds. Token B is added to the Secret's files, the
    // client moves to it once the runner takes it, and token A is removed.
    let tokens_dir = ingest.log.with_extension("push-tokens").join("events");
    let held = Arc::new(Mutex::new(right.clone()));
    let stop = Arc::new(AtomicBool::new(false));
    let pusher = {
        let (held, stop, client) = (held.clone(), stop.clone(), client.clone());
        let url = ingest.url("/v1/records");
        tokio::spawn(async move {
            let mut answers = Vec::new();
            let mut n = 100;
            while !stop.load(Ordering::Relaxed) {
                let authorization = held.lock().await.clone();
                let response = client
                    .post(&url)
                    .header("authorization", authorization)
                    .body(user(n).to_string())
                    .send()
                    .await?;
                answers.push(response.status().as_u16());
                n += 1;
            }
            anyhow::Ok(answers)
        })
    };
    let token_b = format!("rotated-{}", uuid::Uuid::new_v4().simple());
    // As the kubelet does: the new file appears whole.
    std::fs::write(tokens_dir.join(".b.tmp"), &token_b)?;
    std::fs::rename(tokens_dir.join(".b.tmp"), tokens_dir.join("token-b"))?;
    let with_b = format!("Bearer {token_b}");
    let probe = user(1000);
    poll_until("the runner to take token B", Deadline::secs(30), || async {
        let (status, _, _) = send(&ingest, &client, Some(&with_b), &probe).await?;
        Ok((status == 202).then_some(()))
    })
    .await?;
    *held.lock().await = with_b.clone();
    std::fs::remove_file(tokens_dir.join("token"))?;
    // One record (one key) for every try: until the runner reads the
    // Secret again, token A still works and the record lands.
    let old_probe = user(2000);
    let old_probe_landed = AtomicBool::new(false);
    poll_until("the runner to drop token A", Deadline::secs(30), || async {
        let (status, _, _) = send(&ingest, &client, Some(&right), &old_probe).await?;
        if status == 202 {
            old_probe_landed.store(true, Ordering::Relaxed);
        }
        Ok((status == 403).then_some(()))
    })
    .await?;
    stop.store(true, Ordering::Relaxed);
    let answers = pusher.await??;
    let refused: Vec<&u16> = answers.iter().filter(|s| **s != 202).collect();
    println!(
        "rotation: {} pushes during it, {} not 202: {refused:?}",
        answers.len(),
        refused.len()
    );
    assert!(
        answers.len() >= 10,
        "the client pushed throughout: {answers:?}"
    );
    assert!(refused.is_empty(), "refused during rotation: {refused:?}");
    // Every accepted record lands: the first, the probe, the rotation's,
    // and the old token's probe if it was taken before token A went.
    let accepted = 1 + 1 + answers.len() + usize::from(old_probe_landed.load(Ordering::Relaxed));
    fx.wait_for_rows(accepted, Deadline::secs(90)).await?;
    assert_eq!(fx.row_count().await?, accepted);

    let log = format!("{}{}", ingest.log_text(), sink.log_text());
    for token in [&token_a, &token_b] {
        assert!(!log.contains(token.as_str()), "a token is in a log");
    }
    drop(ingest);
    drop(sink);
    fx.cleanup().await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_push_source_takes_pushes_without_a_token_and_a_missing_token_stops_the_runner()
-> anyhow::Result<()> {
    let fx = Fixture::new("push-open", 1, randomuser_table("users")).await?;
    let open = fx.pipeline(json!([{"name": "events", "httpPush": {"auth": {"type": "None"}}}]));
    let mut ingest = fx.start("ingest", &open, "open")?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    let client = reqwest::Client::new();
    let (status, _, body) = send(&ingest, &client, None, &user(0)).await?;
    assert_eq!(status, 202, "{body}");
    assert!(
        ingest
            .log_text()
            .contains("accepts pushes without authentication"),
        "an open source is logged"
    );
    drop(ingest);

    // A source that takes tokens, with none where they should be: the
    // runner does not start an endpoint nobody can use or that was meant
    // to be closed, and says why.
    let closed = fx.pipeline(json!([{"name": "events", "httpPush": {}}]));
    let path = fx.write_pipeline("closed.json", &closed)?;
    let mut env = fx.runner_env();
    env.push((
        millrace_api::push_auth::TOKENS_DIR_ENV.to_owned(),
        fx.dir.join("no-tokens-here").display().to_string(),
    ));
    let mut closed = Runner::start("ingest", &path, &env, &fx.dir.join("closed.log"))?;
    let status = closed.wait_exit(Deadline::secs(60)).await?;
    let log = closed.log_text();
    println!(
        "without tokens: {status}; {}",
        log.lines().last().unwrap_or("")
    );
    assert!(!status.success());
    assert!(
        log.contains("push source events: cannot read its tokens from"),
        "{log}"
    );
    drop(closed);
    fx.cleanup().await
}
