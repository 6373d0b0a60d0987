//! Two operator processes at once: only the holder of the leader Lease
//! reconciles; when it stops, the other takes over.

mod operator_common;

use anyhow::Context as _;
use k8s_openapi::api::coordination::v1::Lease;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario};
use serde_json::json;

#[tokio::test]
async fn only_the_leader_reconciles_and_a_standby_takes_over() -> anyhow::Result<()> {
    let s = Scenario::new("op-leader").await?;
    let args = ["--leader-election", "--lease-namespace", &s.ns.name];
    let a = Operator::start(&s.world, &s.ns.name, &args).await?;
    let b = Operator::start(&s.world, &s.ns.name, &args).await?;
    let leader_of = |op: &Operator| {
        let addr = op.metrics_addr.clone();
        async move {
            let text = operator_common::http_get(&addr, "/metrics").await?;
            anyhow::Ok(text.lines().any(|l| l == "millrace_operator_leader 1"))
        }
    };
    let (leader, standby) = poll_until("one leader", Deadline::secs(60), || async {
        Ok(match (leader_of(&a).await?, leader_of(&b).await?) {
            (true, false) => Some(true),
            (false, true) => Some(false),
            _ => None,
        })
    })
    .await
    .map(|a_leads| if a_leads { (a, b) } else { (b, a) })?;

    let name = "randomuser";
    s.apply(&s.seed_pipeline(name)?).await?;
    s.wait_condition(name, "TopicReady", "True", None, 60)
        .await?;
    s.wait_condition(name, "TableReady", "True", None, 60)
        .await?;
    assert!(leader.metric("millrace_operator_reconciles_total").await? > 0.0);
    assert_eq!(
        standby.metric("millrace_operator_reconciles_total").await?,
        0.0,
        "the standby does not reconcile"
    );
    assert_eq!(
        standby.writes().await?,
        [0.0; 3],
        "the standby writes nothing"
    );
    assert!(!leader_of(&standby).await?);
    let lease = s.ns.api::<Lease>().get("millrace-operator").await?;
    println!(
        "lease holder: {:?}",
        lease.spec.and_then(|s| s.holder_identity)
    );

    // The leader stops (and gives up its Lease); the standby takes over
    // and reconciles the next change.
    leader.stop().await?;
    poll_until("the standby to lead", Deadline::secs(60), || async {
        Ok(leader_of(&standby).await?.then_some(()))
    })
    .await?;
    s.merge(
        name,
        json!({"spec": {"kafka": {"topic": {"config": {"retention.ms": "3600000"}}}}}),
    )
    .await?;
    s.wait_condition(name, "TopicReady", "True", None, 60)
        .await?;
    let t = s.kafka_topic(&s.topic).await?.expect("topic");
    assert_eq!(
        t.config.get("retention.ms").map(String::as_str),
        Some("3600000")
    );
    assert!(
        standby.writes().await?[1] >= 1.0,
        "the new leader wrote the change"
    );

    s.delete_pipeline(name, 60).await?;
    standby.stop().await?;
    s.cleanup().await
}

/// Short Lease timings, so a handover takes seconds: the standby takes the
/// Lease 6 s after it last saw it change; the leader stops 4 s after its
/// last renewal went out.
const FAST_LEASE: [&str; 6] = [
    "--lease-duration-seconds",
    "6",
    "--renew-deadline-seconds",
    "4",
    "--retry-period-seconds",
    "1",
];

/// The Lease's holder, if any.
async fn lease_holder(s: &Scenario) -> anyhow::Result<Option<String>> {
    let lease = s.ns.api::<Lease>().get_opt("millrace-operator").await?;
    Ok(lease
        .and_then(|l| l.spec)
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty()))
}

/// Whether `holder` is the identity of `op` (`HOSTNAME-PID` or `operator-PID`).
fn is_of(holder: &str, op: &Operator) -> bool {
    op.pid()
        .is_some_and(|pid| holder.ends_with(&format!("-{pid}")))
}

fn signal(op: &Operator, sig: &str) -> anyhow::Result<()> {
    let pid = op.pid().context("the operator has exited")?;
    let status = std::process::Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill {sig} {pid}: {status}");
    Ok(())
}

fn total(writes: [f64; 3]) -> f64 {
    writes.iter().sum()
}

/// Waits until the topic has `retention.ms` = `value`.
async fn wait_retention(s: &Scenario, value: &str, secs: u64) -> anyhow::Result<()> {
    poll_until(
        &format!("retention.ms={value}"),
        Deadline::secs(secs),
        || async {
            let topic = s.kafka_topic(&s.topic).await?;
            let now = topic.and_then(|t| t.config.get("retention.ms").cloned());
            Ok((now.as_deref() == Some(value)).then_some(()))
        },
    )
    .await
}

/// The leader is frozen (SIGSTOP) with the Lease: the standby takes the
/// Lease only once it has seen it unchanged for the lease duration, and
/// does the work; the old leader, resumed, knows its renew deadline has
/// passed, says it lost leadership and writes nothing (not to Kubernetes,
/// Kafka or Cassandra) until it holds the Lease again, which it does when
/// the new leader goes.
#[tokio::test]
async fn a_frozen_leader_writes_nothing_once_resumed_until_it_leads_again() -> anyhow::Result<()> {
    let s = Scenario::new("op-handover").await?;
    let mut args = vec!["--leader-election", "--lease-namespace", s.ns.name.as_str()];
    args.extend(FAST_LEASE);
    let a = Operator::start(&s.world, &s.ns.name, &args).await?;
    let b = Operator::start(&s.world, &s.ns.name, &args).await?;
    let (old, new) = poll_until("a Lease holder", Deadline::secs(60), || async {
        Ok(match lease_holder(&s).await? {
            Some(h) if is_of(&h, &a) => Some(true),
            Some(h) if is_of(&h, &b) => Some(false),
            _ => None,
        })
    })
    .await
    .map(|a_leads| if a_leads { (a, b) } else { (b, a) })?;

    let name = "randomuser";
    s.apply(&s.seed_pipeline(name)?).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;
    assert_eq!(total(new.writes().await?), 0.0, "the standby wrote");
    // Settled: the leader's resyncs (every 3 s) write nothing for a while,
    // so nothing of its own is in flight when it is frozen.
    let last = std::cell::Cell::new((total(old.writes().await?), std::time::Instant::now()));
    poll_until("the leader to settle", Deadline::secs(90), || async {
        let now = total(old.writes().await?);
        if now != last.get().0 {
            last.set((now, std::time::Instant::now()));
        }
        Ok((last.get().1.elapsed() >= std::time::Duration::from_secs(8)).then_some(()))
    })
    .await?;
    let before = old.writes().await?;
    let frozen_at = std::time::Instant::now();
    signal(&old, "-STOP")?;

    // A change while the leader is frozen: only a new leader can make it.
    s.merge(
        name,
        json!({"spec": {"kafka": {"topic": {"config": {"retention.ms": "3600000"}}}}}),
    )
    .await?;
    poll_until(
        "the standby to take the Lease",
        Deadline::secs(60),
        || async {
            Ok(lease_holder(&s)
                .await?
                .filter(|h| is_of(h, &new))
                .map(|_| ()))
        },
    )
    .await?;
    // The leader's last renewal went out at most a retry period (1 s)
    // before it froze, and the standby may take the Lease 6 s after it saw
    // that renewal: never before the frozen leader's 4 s renew deadline.
    let taken_after = frozen_at.elapsed();
    println!("the standby took the Lease {taken_after:?} after the leader froze");
    assert!(
        taken_after > std::time::Duration::from_secs(4),
        "the standby took the Lease {taken_after:?} after the leader froze, before its renew deadline"
    );
    wait_retention(&s, "3600000", 60).await?;
    s.wait_condition(name, "TopicReady", "True", None, 60)
        .await?;
    assert!(
        new.writes().await?[1] >= 1.0,
        "the new leader altered the topic"
    );

    // Resumed, the old leader finds its renew deadline long past.
    signal(&old, "-CONT")?;
    poll_until(
        "the old leader to step down",
        Deadline::secs(30),
        || async {
            let leader = old.metric("millrace_operator_leader").await?;
            Ok((leader == 0.0 && old.log_text().contains("lost leadership")).then_some(()))
        },
    )
    .await?;
    assert_eq!(
        old.writes().await?,
        before,
        "the old leader wrote after it resumed"
    );
    // Another change, made by the new leader while the old one runs.
    s.merge(
        name,
        json!({"spec": {"kafka": {"topic": {"config": {"retention.ms": "7200000"}}}}}),
    )
    .await?;
    wait_retention(&s, "7200000", 60).await?;
    s.wait_condition(name, "TopicReady", "True", None, 60)
        .await?;
    assert_eq!(
        old.writes().await?,
        before,
        "the old leader wrote while another held the Lease"
    );
    assert_eq!(old.metric("millrace_operator_leader").await?, 0.0);
    assert!(
        lease_holder(&s).await?.is_some_and(|h| is_of(&h, &new)),
        "the Lease changed hands again"
    );

    // The new leader goes (and releases the Lease): the old one leads
    // again, and only now writes.
    new.stop().await?;
    poll_until(
        "the old leader to lead again",
        Deadline::secs(30),
        || async {
            let holds = lease_holder(&s).await?.is_some_and(|h| is_of(&h, &old));
            let leader = old.metric("millrace_operator_leader").await? == 1.0;
            Ok((holds && leader).then_some(()))
        },
    )
    .await?;
    s.merge(
        name,
        json!({"spec": {"kafka": {"topic": {"config": {"retention.ms": "10800000"}}}}}),
    )
    .await?;
    wait_retention(&s, "10800000", 60).await?;
    assert!(
        old.writes().await?[1] > before[1],
        "the old leader, leading again, made the change"
    );

    s.delete_pipeline(name, 60).await?;
    old.stop().await?;
    s.cleanup().await
}
