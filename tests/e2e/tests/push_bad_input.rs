//! The push endpoint against hostile clients, with the real Kafka behind
//! it: malformed, mistyped, invalid UTF-8, deeply nested and oversized
//! bodies; clients that trickle their headers or body; more clients than
//! the runner serves at once. Each is answered with a status and a reason
//! (or closed, for a client that never finishes its headers), the runner
//! never crashes, fast clients keep being served during an attack, and the
//! runner's peak memory stays under the bound `docs/security.md` states.

mod runner;

use std::path::Path;
use std::time::{Duration, Instant};

use millrace_testsupport::{Deadline, poll_until};
use runner::{Fixture, Runner, randomuser_table};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEADER_TIMEOUT: Duration = Duration::from_secs(2);
// Long enough that the 256 requests held open to show the concurrency bound
// are all still held when the next push arrives, on a busy machine too.
const BODY_TIMEOUT: Duration = Duration::from_secs(8);
const MAX_CONNECTIONS: usize = 400;
const MAX_CONCURRENT_PUSHES: usize = 256;
const MAX_BODY: usize = 1024 * 1024;

fn record(i: usize) -> Value {
    json!({
        "login": {"uuid": uuid::Uuid::new_v4().to_string(), "username": format!("u{i}")},
        "name": {"first": "Maja", "last": "Berg"},
        "email": "maja@example.org",
        "registered": {"date": "2015-05-03T10:00:00Z"},
    })
}

/// What a raw HTTP exchange ended with.
#[derive(Debug)]
struct Answer {
    status: Option<u16>,
    head: String,
    body: String,
    took: Duration,
}

/// Opens a push that holds a request permit: its head and the first byte
/// of a body that never comes.
async fn hold_a_push(port: u16) -> anyhow::Result<TcpStream> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
    s.write_all(post_head(Some(1000), "").as_bytes()).await?;
    s.write_all(b"[").await?;
    Ok(s)
}

/// Replaces each holder the runner has already answered or closed,
/// counting what they got (status line and body, or "closed").
async fn replace_answered(
    holders: &mut [TcpStream],
    port: u16,
    got: &mut std::collections::BTreeMap<String, usize>,
) -> anyhow::Result<()> {
    for holder in holders.iter_mut() {
        let mut buf = [0u8; 1024];
        let answer = match holder.try_read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Ok(0) | Err(_) => "closed".to_owned(),
            Ok(n) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                let status = text.lines().next().unwrap_or_default();
                let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
                format!("{status} {body}")
            }
        };
        *got.entry(answer).or_default() += 1;
        *holder = hold_a_push(port).await?;
    }
    Ok(())
}

/// Sends `head` then `body` on a new connection and reads until the server
/// closes it or `wait` passes.
async fn exchange(port: u16, head: &str, body: &[u8], wait: Duration) -> anyhow::Result<Answer> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(head.as_bytes()).await?;
    // The server may answer (and stop reading) before the body is sent.
    let _ = stream.write_all(body).await;
    Ok(read_answer(&mut stream, wait, start).await)
}

async fn read_answer(stream: &mut TcpStream, wait: Duration, start: Instant) -> Answer {
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(wait, async {
        let mut chunk = [0u8; 8192];
        loop {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if complete(&buf) {
                break;
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Answer {
        status: head.split_whitespace().nth(1).and_then(|s| s.parse().ok()),
        head: head.to_owned(),
        body: body.to_owned(),
        took: start.elapsed(),
    }
}

/// Whether `buf` holds a whole response with a Content-Length.
fn complete(buf: &[u8]) -> bool {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        return false;
    };
    head.lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .and_then(|v| v.trim().parse::<usize>().ok())
        })
        .is_some_and(|len| body.len() >= len)
}

/// The push source's one token (the runner reads it from [`tokens_dir`]).
const TOKEN: &str = "push-bad-input-token";

/// A tokens directory holding [`TOKEN`] for the source `events`.
fn tokens_dir(dir: &std::path::Path) -> anyhow::Result<std::path::PathBuf> {
    let tokens = dir.join("push-tokens");
    std::fs::create_dir_all(tokens.join("events"))?;
    std::fs::write(tokens.join("events").join("token"), TOKEN)?;
    Ok(tokens)
}

fn post_head(length: Option<usize>, extra: &str) -> String {
    let length = length.map_or_else(
        || "transfer-encoding: chunked\r\n".to_owned(),
        |n| format!("content-length: {n}\r\n"),
    );
    format!(
        "POST /v1/records HTTP/1.1\r\nhost: runner\r\nauthorization: Bearer {TOKEN}\r\ncontent-type: application/json\r\n{length}{extra}\r\n"
    )
}

async fn push(port: u16, body: &[u8]) -> anyhow::Result<Answer> {
    exchange(
        port,
        &post_head(Some(body.len()), "connection: close\r\n"),
        body,
        Duration::from_secs(20),
    )
    .await
}

/// The runner's pid, found by the pipeline file on its command line.
fn pid_of(pipeline: &Path) -> anyhow::Result<u32> {
    let wanted = pipeline.to_string_lossy().into_owned();
    for entry in std::fs::read_dir("/proc")?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.first().is_some_and(|a| a.ends_with("millrace-runner")) && args.contains(&wanted) {
            return Ok(pid);
        }
    }
    anyhow::bail!("no runner process with {wanted}")
}

/// The runner's default `--push-max-buffered-bytes`.
const DEFAULT_BODY_BUDGET: usize = 8 << 20;
/// docs/security.md: a body that declares at most this many bytes may use
/// the small-body reserve, which is 1 MiB beside the default budget.
const SMALL_BODY: usize = 64 * 1024;
const SMALL_BODY_RESERVE: usize = 1 << 20;

fn cpus() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get().max(2))
}

/// docs/security.md's bound of the push path above the runner's baseline,
/// in MiB: (body budget + small-body reserve) × 4 + connections × 64 KiB +
/// CPUs × 2 × maxBodyBytes.
fn memory_bound_mib(budget: usize, connections: usize, max_body: usize) -> f64 {
    let held = budget + SMALL_BODY_RESERVE;
    let bytes = held * 4 + connections * 64 * 1024 + cpus() * 2 * max_body;
    bytes as f64 / f64::from(1 << 20)
}

/// (current RSS, peak RSS) in MiB, from /proc.
fn rss_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .ok_or_else(|| anyhow::anyhow!("no {field}"))?;
        Ok(line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0))
    };
    Ok((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

/// A client that sends `head_part` and then one byte of `trickle` every
/// 500 ms, until the server answers or closes the connection.
async fn trickler(port: u16, head_part: String, trickle: u8) -> anyhow::Result<Answer> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(head_part.as_bytes()).await?;
    let mut buf = [0u8; 4096];
    let mut got = Vec::new();
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    got.extend_from_slice(&buf[..n]);
                    if complete(&got) { break; }
                }
            },
            _ = tokio::time::sleep(Duration::from_millis(500)) => {
                if stream.write_all(&[trickle]).await.is_err() {
                    // Closed: read what the server said, if anything.
                    let _ = tokio::time::timeout(Duration::from_millis(500), stream.read_to_end(&mut got)).await;
                    break;
                }
            }
        }
        anyhow::ensure!(
            start.elapsed() < Duration::from_secs(30),
            "a slow client was held for 30 s"
        );
    }
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    Ok(Answer {
        status: head.split_whitespace().nth(1).and_then(|s| s.parse().ok()),
        head: head.to_owned(),
        body: body.to_owned(),
        took: start.elapsed(),
    })
}

/// Sends a chunked body of `total` bytes as fast as the server takes it.
async fn huge_chunked(port: u16, total: usize) -> anyhow::Result<Answer> {
    let start = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    stream.write_all(post_head(None, "").as_bytes()).await?;
    let chunk = vec![b' '; 64 * 1024];
    let mut sent = 0;
    while sent < total {
        let frame = [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
        if stream.write_all(&frame).await.is_err() {
            break;
        }
        sent += chunk.len();
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    Ok(read_answer(&mut stream, Duration::from_secs(10), start).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hostile_pushes_are_answered_and_memory_stays_bounded() -> anyhow::Result<()> {
    let fx = Fixture::new("push-bad", 2, randomuser_table("users")).await?;
    let pipeline = fx.pipeline(json!([{"name": "events", "httpPush": {"maxBodyBytes": MAX_BODY}}]));
    let path = fx.write_pipeline("ingest.json", &pipeline)?;
    let mut env = fx.runner_env();
    for (k, v) in [
        (
            "MILLRACE_HTTP_HEADER_TIMEOUT_SECONDS",
            HEADER_TIMEOUT.as_secs().to_string(),
        ),
        (
            "MILLRACE_HTTP_BODY_TIMEOUT_SECONDS",
            BODY_TIMEOUT.as_secs().to_string(),
        ),
        ("MILLRACE_HTTP_MAX_CONNECTIONS", MAX_CONNECTIONS.to_string()),
        (
            millrace_api::push_auth::TOKENS_DIR_ENV,
            tokens_dir(&fx.dir)?.display().to_string(),
        ),
        (
            "MILLRACE_PUSH_MAX_CONCURRENT",
            MAX_CONCURRENT_PUSHES.to_string(),
        ),
    ] {
        env.push((k.to_owned(), v));
    }
    let mut ingest = Runner::start("ingest", &path, &env, &fx.dir.join("ingest.log"))?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    let port = ingest.port;
    let pid = pid_of(&path)?;
    let (baseline, _) = rss_mib(pid)?;

    // One bad body at a time: the status and the words of the reason.
    let mut wrong_type = record(0);
    wrong_type["login"]["uuid"] = json!(12345);
    let mut nested_record = record(1);
    nested_record["name"]["first"] = json!([[[[[[["deep but legal"]]]]]]]);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        (
            "malformed JSON",
            b"{\"a\": }".to_vec(),
            400,
            "neither JSON nor NDJSON",
        ),
        (
            "truncated JSON",
            b"[{\"a\": 1}".to_vec(),
            400,
            "EOF while parsing",
        ),
        ("a JSON string", b"\"hello\"".to_vec(), 400, "got a string"),
        (
            "wrong type for a column",
            wrong_type.to_string().into_bytes(),
            422,
            "expected a UUID string, found a number",
        ),
        (
            "an array for a text column",
            nested_record.to_string().into_bytes(),
            202,
            "accepted",
        ),
        (
            "invalid UTF-8",
            b"{\"name\": \"\xc3\x28\"}".to_vec(),
            400,
            "not UTF-8: invalid byte at offset 10",
        ),
        (
            "100 000 nested arrays",
            deep.into_bytes(),
            400,
            "recursion limit exceeded",
        ),
        (
            "many bad NDJSON lines",
            "x\n".repeat(100_000).into_bytes(),
            400,
            "100000 bad lines",
        ),
    ];
    for (what, body, want, words) in cases {
        let answer = push(port, &body).await?;
        assert_eq!(answer.status, Some(want), "{what}: {answer:?}");
        assert!(
            answer.body.contains(words),
            "{what}: {} lacks {words}",
            answer.body
        );
        assert!(
            answer.body.len() < 8192,
            "{what}: a {} byte answer",
            answer.body.len()
        );
        println!(
            "{what}: {want} {}",
            answer.body.chars().take(160).collect::<String>()
        );
    }

    // Too large, declared: refused from the headers alone, body never sent.
    let answer = exchange(
        port,
        &post_head(Some(512 * 1024 * 1024), ""),
        b"",
        Duration::from_secs(5),
    )
    .await?;
    assert_eq!(answer.status, Some(413), "{answer:?}");
    assert!(
        answer.body.contains("larger than 1048576 bytes"),
        "{answer:?}"
    );
    assert!(answer.took < Duration::from_secs(2), "{answer:?}");
    // Too large, undeclared (chunked): refused once past the limit.
    let answer = huge_chunked(port, 8 * MAX_BODY).await?;
    assert_eq!(answer.status, Some(413), "{answer:?}");
    println!("chunked 8 MiB: 413 after {:?}", answer.took);

    // A client that trickles its headers is closed; one that trickles its
    // body is answered 408.
    let slow_head = trickler(
        port,
        "POST /v1/records HTTP/1.1\r\nhost: runner\r\nx-slow: ".into(),
        b'a',
    )
    .await?;
    assert!(slow_head.status.is_none_or(|s| s == 408), "{slow_head:?}");
    assert!(
        slow_head.took < HEADER_TIMEOUT + Duration::from_secs(3),
        "{slow_head:?}"
    );
    let slow_body = trickler(port, post_head(Some(100_000), ""), b' ').await?;
    assert_eq!(slow_body.status, Some(408), "{slow_body:?}");
    assert!(
        slow_body.body.contains(&format!(
            "did not arrive within {} s",
            BODY_TIMEOUT.as_secs()
        )),
        "{slow_body:?}"
    );
    assert!(
        slow_body.took < BODY_TIMEOUT + Duration::from_secs(3),
        "{slow_body:?}"
    );
    // A kept-alive connection left idle is closed too. Its one request
    // also shows that the push port serves no metrics: those are on the
    // metrics port, for Prometheus alone.
    let mut idle = TcpStream::connect(("127.0.0.1", port)).await?;
    idle.write_all(b"GET /metrics HTTP/1.1\r\nhost: runner\r\n\r\n")
        .await?;
    let first = read_answer(&mut idle, Duration::from_secs(5), Instant::now()).await;
    assert_eq!(first.status, Some(404), "{first:?}");
    let closed = read_answer(
        &mut idle,
        HEADER_TIMEOUT + Duration::from_secs(10),
        Instant::now(),
    )
    .await;
    assert!(
        closed.took < HEADER_TIMEOUT + Duration::from_secs(3),
        "idle connection held: {closed:?}"
    );
    println!(
        "slow headers closed after {:?}; slow body 408 after {:?}; idle keep-alive closed after {:?}",
        slow_head.took, slow_body.took, closed.took
    );

    // Large bodies that stop one byte short hold the whole body budget
    // until their timeout: a body of unknown or large size is refused, and
    // a small push is still taken, from the reserve only small bodies use.
    // All at once: one after the other, the first could reach its body
    // timeout, and give its share back, before the last had sent.
    let holding_since = Instant::now();
    let mut holders = Vec::new();
    for _ in 0..(DEFAULT_BODY_BUDGET / MAX_BODY + 1) {
        holders.push(tokio::spawn(async move {
            let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
            s.write_all(post_head(Some(MAX_BODY), "").as_bytes())
                .await?;
            // A refused holder is closed by the runner: what it still
            // writes is lost, which is all right.
            let _ = s.write_all(&vec![b' '; MAX_BODY - 1]).await;
            anyhow::Ok(s)
        }));
    }
    let mut large_holders = Vec::new();
    for holder in holders {
        large_holders.push(holder.await??);
    }
    let sent_in = holding_since.elapsed();
    anyhow::ensure!(
        sent_in < BODY_TIMEOUT / 2,
        "sending the held bodies took {sent_in:?}: they time out {BODY_TIMEOUT:?} after they \
         began, too soon for the check below"
    );
    let large = vec![b' '; 2 * SMALL_BODY];
    // Holders that find the budget spent half-way through are refused and
    // give back what they had taken, which can leave room for a large push.
    // Bodies smaller than that push, held the same way, fill such a gap.
    let filler = SMALL_BODY + SMALL_BODY / 2;
    let deadline = Instant::now() + BODY_TIMEOUT / 2;
    let refused = loop {
        let answer = push(port, &large).await?;
        if answer.status == Some(503) {
            break answer;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the held bodies never spent the budget; last, a large push was answered {answer:?}"
        );
        let mut s = TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(post_head(Some(MAX_BODY), "").as_bytes())
            .await?;
        let _ = s.write_all(&vec![b' '; filler]).await;
        large_holders.push(s);
    };
    assert!(
        refused.body.contains("too many request bodies"),
        "{refused:?}"
    );
    let batch: Vec<Value> = (0..10).map(record).collect();
    let small = push(port, Value::from(batch).to_string().as_bytes()).await?;
    assert_eq!(
        small.status,
        Some(202),
        "a small push while large bodies hold the budget: {small:?}"
    );
    println!("budget held by large bodies: a large push {refused:?}; a small one {small:?}");
    drop(large_holders);
    poll_until(
        "the budget to be free again",
        Deadline::secs(BODY_TIMEOUT.as_secs() + 5),
        || async {
            let answer = push(port, &large).await?;
            if answer.status != Some(503) {
                return Ok(Some(()));
            }
            anyhow::bail!("still refused: {answer:?}")
        },
    )
    .await?;

    // The attack mix: 200 clients at once, while a fast client keeps
    // pushing and must be served promptly.
    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..200 {
        match i % 4 {
            0 => {
                attackers.spawn(trickler(
                    port,
                    "POST /v1/records HTTP/1.1\r\nhost: r\r\nx: ".into(),
                    b'a',
                ));
            }
            1 => {
                attackers.spawn(trickler(port, post_head(Some(MAX_BODY), ""), b' '));
            }
            2 => {
                attackers.spawn(huge_chunked(port, 2 * MAX_BODY));
            }
            _ => {
                let body = format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)).into_bytes();
                attackers.spawn(async move { push(port, &body).await });
            }
        }
    }
    let mut slowest = Duration::ZERO;
    let mut accepted = 0;
    let attack_started = Instant::now();
    while attack_started.elapsed() < BODY_TIMEOUT + Duration::from_secs(1) {
        let batch: Vec<Value> = (0..10).map(record).collect();
        let answer = push(port, Value::from(batch).to_string().as_bytes()).await?;
        assert_eq!(
            answer.status,
            Some(202),
            "a fast client during the attack: {answer:?}"
        );
        slowest = slowest.max(answer.took);
        accepted += 10;
    }
    let mut outcomes = std::collections::BTreeMap::<String, usize>::new();
    while let Some(result) = attackers.join_next().await {
        let answer = result??;
        *outcomes
            .entry(answer.status.map_or("closed".into(), |s| s.to_string()))
            .or_default() += 1;
    }
    let (after, peak) = rss_mib(pid)?;
    println!(
        "attack of 200: outcomes {outcomes:?}; fast client: {accepted} records accepted, slowest push {slowest:?}; \
         runner RSS baseline {baseline:.1} MiB, peak {peak:.1} MiB, after {after:.1} MiB"
    );
    assert!(
        slowest < Duration::from_secs(2),
        "fast pushes slowed to {slowest:?}"
    );
    assert!(!outcomes.contains_key("500"), "{outcomes:?}");
    // docs/security.md's bound of the push path, at this runner's settings
    // (the default body budget).
    let bound = memory_bound_mib(DEFAULT_BODY_BUDGET, MAX_CONNECTIONS, MAX_BODY);
    println!(
        "memory: peak {peak:.1} MiB - baseline {baseline:.1} MiB = {:.1} MiB above the baseline; \
         bound {bound:.1} MiB (budget 8 MiB, {MAX_CONNECTIONS} connections, {} CPUs, maxBodyBytes 1 MiB)",
        peak - baseline,
        cpus()
    );
    assert!(
        peak - baseline < bound,
        "peak RSS {peak:.1} MiB is past the bound"
    );
    let log = ingest.log_text();
    assert!(!log.contains("panicked"), "the runner panicked:\n{log}");
    drop(ingest);

    // Overload, in a runner of its own: more push requests than it handles
    // at once get 503 with Retry-After; more connections than it serves get
    // 503 and are closed. Its body budget is large, so that every held
    // request holds a request permit and none is refused by the budget
    // instead: this phase tests the request and connection bounds.
    let path = fx.write_pipeline("overload.json", &pipeline)?;
    env.push((
        "MILLRACE_PUSH_MAX_BUFFERED_BYTES".to_owned(),
        (64u64 << 20).to_string(),
    ));
    let mut ingest = Runner::start("ingest", &path, &env, &fx.dir.join("overload.log"))?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    let port = ingest.port;
    let mut holders = Vec::new();
    for _ in 0..MAX_CONCURRENT_PUSHES {
        holders.push(hold_a_push(port).await?);
    }
    // A holder the runner answered before its body timed out (refused as one
    // connection too many while the attack's connections were still
    // closing, say) holds no permit: it is replaced, and what it got is
    // reported, so the bound is tested with all of them held.
    let holders = tokio::sync::Mutex::new(holders);
    let replaced = tokio::sync::Mutex::new(std::collections::BTreeMap::<String, usize>::new());
    let busy = poll_until(
        "a push to be refused as busy",
        Deadline::secs(20),
        || async {
            replace_answered(&mut holders.lock().await, port, &mut *replaced.lock().await).await?;
            let answer = push(port, record(9).to_string().as_bytes()).await?;
            if answer.status == Some(503) {
                return Ok(Some(answer));
            }
            anyhow::bail!(
                "answered {answer:?}; holders answered early and replaced: {:?}",
                replaced.lock().await
            )
        },
    )
    .await?;
    println!(
        "overload: holders answered early and replaced: {:?}",
        replaced.lock().await
    );
    let mut holders = holders.into_inner();
    assert!(
        busy.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{busy:?}"
    );
    assert!(busy.body.contains("too many push requests"), "{busy:?}");
    for _ in 0..(MAX_CONNECTIONS - MAX_CONCURRENT_PUSHES + 10) {
        holders.push(TcpStream::connect(("127.0.0.1", port)).await?);
    }
    let refused = poll_until(
        "a connection over the cap to be refused",
        Deadline::secs(10),
        || async {
            let answer = push(port, record(10).to_string().as_bytes()).await?;
            Ok(
                (answer.status == Some(503) && answer.body.contains("too many connections"))
                    .then_some(answer),
            )
        },
    )
    .await?;
    assert!(
        refused.head.to_ascii_lowercase().contains("retry-after: 1"),
        "{refused:?}"
    );
    // The slow ones time out and the runner serves again, unharmed.
    poll_until(
        "pushes to be accepted again",
        Deadline::secs(20),
        || async {
            let answer = push(port, record(11).to_string().as_bytes()).await?;
            Ok((answer.status == Some(202)).then_some(()))
        },
    )
    .await?;
    drop(holders);
    let ready = reqwest::get(ingest.metrics_url("/readyz")).await?;
    assert_eq!(ready.status(), 200);
    let log = ingest.log_text();
    assert!(!log.contains("panicked"), "the runner panicked:\n{log}");
    println!("overload: {:?} / {:?}", busy.body, refused.body);

    drop(ingest);
    fx.cleanup().await
}
