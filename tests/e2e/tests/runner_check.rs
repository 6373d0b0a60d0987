//! `millrace-runner check` and a bad configuration at start: a clear error,
//! a non-zero exit, before anything connects.

mod runner;

use std::process::Command;

use runner::runner_binary;

const GOOD: &str = r#"
apiVersion: millrace.io/v1alpha1
kind: StreamPipeline
metadata: {name: users, namespace: team-a}
spec:
  kafka: {bootstrapServers: "127.0.0.1:1", topic: {name: users_created}}
  cassandra:
    contactPoints: ["127.0.0.1:1"]
    keyspace: {name: ks, replication: {class: SimpleStrategy, replicationFactor: 1}}
    table:
      name: t
      columns: [{name: id, type: uuid, from: /id}]
      partitionKey: [id]
  sources:
    - {name: events, httpPush: {}}
"#;

fn run(args: &[&str], pipeline: &str) -> anyhow::Result<(bool, String)> {
    let dir = std::env::temp_dir().join(millrace_testsupport::unique_name("check"));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("pipeline.yaml");
    std::fs::write(&path, pipeline)?;
    let out = Command::new(runner_binary())
        .args(args)
        .arg("--pipeline")
        .arg(&path)
        .env_clear()
        .output()?;
    std::fs::remove_dir_all(&dir)?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), text))
}

#[test]
fn check_accepts_a_good_pipeline_and_explains_a_bad_one() -> anyhow::Result<()> {
    let (ok, text) = run(&["check"], GOOD)?;
    assert!(ok, "{text}");
    assert!(text.contains("pipeline team-a/users is valid"), "{text}");

    for (what, pipeline, reason) in [
        (
            "an unknown column type",
            GOOD.replace("type: uuid", "type: uuidx"),
            "uuidx",
        ),
        (
            "a partition key that is not a column",
            GOOD.replace("partitionKey: [id]", "partitionKey: [nope]"),
            "nope",
        ),
        (
            "a bad schedule",
            GOOD.replace(
                "{name: events, httpPush: {}}",
                "{name: api, httpPull: {url: 'http://x/', schedule: 'every day'}}",
            ),
            "every day",
        ),
        ("not YAML at all", "{{{".to_owned(), "not a StreamPipeline"),
        (
            "no name",
            GOOD.replace("name: users, ", ""),
            "no metadata.name",
        ),
    ] {
        let (ok, text) = run(&["check"], &pipeline)?;
        assert!(!ok, "{what}: accepted");
        assert!(text.contains(reason), "{what}: {text}");
        // The roles refuse it the same way, before connecting anywhere.
        let (ok, sink_text) = run(&["sink"], &pipeline)?;
        assert!(!ok && sink_text.contains(reason), "{what}: {sink_text}");
    }
    Ok(())
}
