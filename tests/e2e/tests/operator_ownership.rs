//! One topic and one table, one owner: a second pipeline that names another
//! pipeline's topic and table gets `ResourceConflict`, changes nothing, and
//! deleting it with `deletionPolicy: Delete` leaves the owner's data alone,
//! across an operator restart. A table or topic dropped by hand under its
//! pipeline is reported, not silently re-created.

mod operator_common;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ListParams;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario, condition};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use serde_json::json;

const ROWS: i64 = 500;

async fn table_comment(s: &Scenario, table: &str) -> anyhow::Result<Option<String>> {
    let session = s.world.cassandra_session().await?;
    let rows = session
        .query_unpaged(
            "SELECT comment FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?",
            (s.keyspace.as_str(), table),
        )
        .await?
        .into_rows_result()?;
    Ok(rows
        .maybe_first_row::<(Option<String>,)>()?
        .and_then(|(c,)| c))
}

fn topic_records(s: &Scenario, topic: &str) -> anyhow::Result<i64> {
    operator_common::topic_records(&s.world, topic)
}

#[tokio::test]
async fn a_second_pipeline_on_the_same_topic_and_table_gets_a_conflict_and_its_delete_keeps_the_owners_data()
-> anyhow::Result<()> {
    let s = Scenario::new("op-owner").await?;
    let mut op = Operator::start(&s.world, &s.ns.name, &[]).await?;

    // A: the owner, Retain (the default), 500 generated users.
    let mut a = s.seed_pipeline("owner-a")?;
    a["spec"]["sources"] = json!([{
        "name": "synthetic",
        "generator": {"profile": "randomuser", "recordsPerSecond": 200, "limit": ROWS}
    }]);
    s.apply(&a).await?;
    s.wait_condition("owner-a", "Ready", "True", None, 180)
        .await?;
    poll_until("A's 500 rows", Deadline::secs(120), || async {
        Ok((s.row_count("created_users").await? == ROWS).then_some(()))
    })
    .await?;
    let comment = table_comment(&s, "created_users").await?;
    println!("table comment: {comment:?}");
    assert_eq!(
        comment.as_deref(),
        Some(format!("[millrace owner={}/owner-a]", s.ns.name).as_str()),
        "the owner is recorded in the table's comment"
    );
    let topic_before = topic_records(&s, &s.topic)?;
    assert!(topic_before >= ROWS, "topic holds {topic_before}");
    let claims =
        s.ns.api::<ConfigMap>()
            .list(&ListParams::default().labels("millrace.io/claim=topic"))
            .await?;
    assert_eq!(
        claims.items.len(),
        2,
        "topic and dead-letter topic are recorded as A's"
    );

    // B names the same topic and table, with Delete.
    let mut b = s.seed_pipeline("intruder-b")?;
    b["spec"]["deletionPolicy"] = json!("Delete");
    b["spec"]["sources"] = json!([]);
    s.apply(&b).await?;
    let (_, conflict) = s
        .wait_condition("intruder-b", "Ready", "False", Some("ResourceConflict"), 60)
        .await?;
    println!("B Ready: {}", conflict.message);
    let owner = format!("{}/owner-a", s.ns.name);
    assert!(conflict.message.contains(&owner), "{}", conflict.message);
    assert!(
        s.ns.api::<k8s_openapi::api::apps::v1::Deployment>()
            .get_opt("intruder-b-sink")
            .await?
            .is_none(),
        "B's sink never runs on A's topic"
    );

    // The conflict is recorded outside the operator: it holds after a
    // restart, and A keeps working.
    op.stop().await?;
    op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    poll_until(
        "the restarted operator to reconcile both pipelines",
        Deadline::secs(60),
        || async {
            let n = op.metric("millrace_operator_reconciles_total").await?;
            Ok((n >= 2.0).then_some(()))
        },
    )
    .await?;
    let sp = s.pipelines().get("intruder-b").await?;
    let ready = condition(&sp, "Ready").expect("Ready");
    assert_eq!(
        (ready.status.as_str(), ready.reason.as_str()),
        ("False", "ResourceConflict"),
        "{}",
        ready.message
    );
    let sp = s.pipelines().get("owner-a").await?;
    assert_eq!(
        condition(&sp, "Ready").map(|c| c.status),
        Some("True".into())
    );

    // Deleting B (Delete) removes nothing of A's.
    let took = s.delete_pipeline("intruder-b", 90).await?;
    println!("B deleted in {took:?}");
    assert_eq!(
        s.row_count("created_users").await?,
        ROWS,
        "A's rows are all there"
    );
    assert!(
        s.kafka_topic(&s.topic).await?.is_some(),
        "A's topic is there"
    );
    assert!(
        s.kafka_topic(&format!("{}.dlq", s.topic)).await?.is_some(),
        "A's dead-letter topic is there"
    );
    assert_eq!(topic_records(&s, &s.topic)?, topic_before, "A's records");
    let reasons = s.event_reasons("intruder-b").await?;
    println!("B's Events: {reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|(r, m)| r == "LeftInPlace" && m.contains(&owner)),
        "{reasons:?}"
    );
    let sp = s.pipelines().get("owner-a").await?;
    assert_eq!(
        condition(&sp, "Ready").map(|c| c.status),
        Some("True".into())
    );

    // A, deleted with Delete, removes its own topic and table.
    s.merge("owner-a", json!({"spec": {"deletionPolicy": "Delete"}}))
        .await?;
    s.wait_finalizer("owner-a", true, 60).await?;
    s.delete_pipeline("owner-a", 90).await?;
    assert!(
        s.kafka_topic(&s.topic).await?.is_none(),
        "the owner deletes its topic"
    );
    assert!(
        s.table_columns("created_users").await?.is_empty(),
        "the owner drops its table"
    );
    let claims =
        s.ns.api::<ConfigMap>()
            .list(&ListParams::default().labels("millrace.io/claim=topic"))
            .await?;
    assert!(claims.items.is_empty(), "the ownership records go too");
    op.stop().await?;
    s.cleanup().await
}

#[tokio::test]
async fn a_table_or_topic_deleted_by_hand_is_reported_when_it_is_made_again() -> anyhow::Result<()>
{
    let s = Scenario::new("op-vanish").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "vanish";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    let session = s.world.cassandra_session().await?;
    session
        .query_unpaged(format!("DROP TABLE {}.created_users", s.keyspace), &[])
        .await?;
    let (_, table) = poll_until(
        "TableReady to say the table was made again",
        Deadline::secs(60),
        || async {
            let sp = s.pipelines().get(name).await?;
            Ok(condition(&sp, "TableReady")
                .filter(|c| {
                    c.message
                        .contains("dropped outside millrace and created again")
                })
                .map(|c| ((), c)))
        },
    )
    .await?;
    println!("TableReady: {}", table.message);

    let admin: AdminClient<DefaultClientContext> = s.world.kafka_config().create()?;
    for r in admin
        .delete_topics(&[s.topic.as_str()], &AdminOptions::new())
        .await?
    {
        r.map_err(|(t, e)| anyhow::anyhow!("deleting {t}: {e}"))?;
    }
    poll_until("a TopicRecreated Event", Deadline::secs(90), || async {
        let reasons = s.event_reasons(name).await?;
        Ok(reasons.iter().find(|(r, _)| r == "TopicRecreated").cloned())
    })
    .await?;
    let reasons = s.event_reasons(name).await?;
    println!("Events: {reasons:?}");
    assert!(
        reasons
            .iter()
            .any(|(r, m)| r == "TableRecreated" && m.contains("the rows it held are lost")),
        "{reasons:?}"
    );
    op.stop().await?;
    s.cleanup().await
}
