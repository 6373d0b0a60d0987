//! Two operator processes at once: only the holder of the leader Lease
//! reconciles; when it stops, the other takes over.

mod operator_common;

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
