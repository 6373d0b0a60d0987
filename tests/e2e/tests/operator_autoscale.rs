//! The sink scaled by its lag (`spec.runner.autoscale`): a backlog the sink
//! cannot keep up with at its one replica raises it to the topic's
//! partitions (not to `maxReplicas`), the lag drains, and after the
//! cool-down the sink falls back to one; each decision is an Event
//! `kubectl describe sp` shows. The operator reads the lag every 3 s here,
//! so it sees the backlog before one replica could work it off. And the
//! scale subresource: `kubectl scale` and a patch of `/scale` set the
//! sink's replicas, and are refused while `autoscale` is set.

mod operator_common;

use std::cell::Cell;
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Patch, PatchParams};
use millrace_api::StreamPipeline;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

/// A small table, so a large backlog is cheap to produce.
fn pipeline(s: &Scenario, name: &str, partitions: i32) -> anyhow::Result<Value> {
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"] = json!([]);
    sp["spec"]["kafka"]["topic"]["partitions"] = json!(partitions);
    sp["spec"]["cassandra"]["table"] = json!({
        "name": "events",
        "columns": [
            {"name": "id", "type": "uuid", "from": "/id"},
            {"name": "n", "type": "int", "from": "/n"},
        ],
        "partitionKey": ["id"],
    });
    Ok(sp)
}

/// Produces `n` records with distinct keys, all sent before any is
/// awaited, so the backlog arrives faster than one sink replica writes.
async fn produce(s: &Scenario, n: usize) -> anyhow::Result<()> {
    let producer: FutureProducer = s
        .world
        .kafka_config()
        .set("linger.ms", "20")
        .set("queue.buffering.max.messages", "1000000")
        .create()?;
    let mut sends = Vec::with_capacity(n);
    for i in 0..n {
        let id = format!("00000000-0000-4000-8000-{i:012x}");
        let payload = json!({"id": id, "n": i}).to_string();
        let record = FutureRecord::to(&s.topic).key(&id).payload(&payload);
        sends.push(producer.send_result(record).map_err(|(e, _)| e)?);
    }
    for send in sends {
        send.await?
            .map_err(|(e, _)| anyhow::anyhow!("produce: {e}"))?;
    }
    Ok(())
}

/// (spec replicas, status replicas) of the sink Deployment.
async fn sink(s: &Scenario, name: &str) -> anyhow::Result<(i32, i32)> {
    let d =
        s.ns.api::<Deployment>()
            .get(&format!("{name}-sink"))
            .await?;
    Ok((
        d.spec.and_then(|s| s.replicas).unwrap_or(-1),
        d.status.and_then(|s| s.replicas).unwrap_or(0),
    ))
}

fn autoscale_of(sp: &StreamPipeline) -> Option<millrace_api::AutoscaleStatus> {
    sp.status.as_ref()?.autoscale.clone()
}

fn lag_of(sp: &StreamPipeline) -> Option<i64> {
    sp.status.as_ref()?.flow.as_ref()?.sink_lag
}

fn kubectl(s: &Scenario, args: &[&str]) -> anyhow::Result<std::process::Output> {
    let kubeconfig = s.world.kubeconfig.clone().context("KUBECONFIG")?;
    Ok(Command::new(s.world.tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["-n", &s.ns.name])
        .args(args)
        .output()?)
}

#[tokio::test]
async fn lag_scales_the_sink_up_to_the_partitions_and_back_down_after_the_cool_down()
-> anyhow::Result<()> {
    const PARTITIONS: i32 = 4;
    // Enough that one replica is still working them off at the next flow
    // refresh, at most FLOW_REFRESH later: with the default 30 s, a quiet
    // machine drained the whole backlog with one replica in between, and
    // the autoscaler, rightly, never saw a reason to scale.
    const RECORDS: usize = 100_000;
    const FLOW_REFRESH: &str = "--flow-refresh-seconds=3";
    const COOLDOWN: i64 = 30;
    let s = Scenario::new("op-autoscale").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[FLOW_REFRESH]).await?;
    let name = "scaled";
    let mut sp = pipeline(&s, name, PARTITIONS)?;
    // One write in flight per replica: one replica cannot keep up with the
    // backlog, four work it off four times as fast.
    sp["spec"]["runner"] = json!({
        "maxInFlight": 1,
        "autoscale": {
            "minReplicas": 1,
            "maxReplicas": 8,
            "targetLagPerReplica": 500,
            "cooldownSeconds": COOLDOWN,
        },
    });
    s.apply(&sp).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;
    let steady = poll_until(
        "the autoscaler's first decision",
        Deadline::secs(60),
        || async {
            let sp = s.pipelines().get(name).await?;
            Ok(autoscale_of(&sp).filter(|a| a.reason == "Steady"))
        },
    )
    .await?;
    println!("before: {steady:?}");
    assert_eq!(steady.replicas, 1, "minReplicas while there is no lag");
    assert_eq!(sink(&s, name).await?.0, 1);

    // The backlog, with the sink running at one replica.
    let started = Instant::now();
    produce(&s, RECORDS).await?;
    println!("{RECORDS} records produced in {:.1?}", started.elapsed());

    // Up to the partitions (4), never to maxReplicas (8). The status's
    // reason is the latest reconcile's decision: `ScaledUp` lasts only
    // until the next one, a moment later (`Steady`, or `CoolingDown` as the
    // lag falls). The count and the time of the scaling stay; the Event
    // says the decision (checked at the end).
    let most = Cell::new(0);
    let up = poll_until(
        "the sink to be scaled up to the partitions",
        Deadline::secs(120),
        || async {
            let (replicas, _) = sink(&s, name).await?;
            most.set(most.get().max(replicas));
            let sp = s.pipelines().get(name).await?;
            let a = autoscale_of(&sp);
            match a.filter(|a| {
                a.replicas == PARTITIONS && replicas == PARTITIONS && a.last_scale_time.is_some()
            }) {
                Some(a) => Ok(Some(a)),
                None => bail!(
                    "sink replicas {replicas}, lag {:?}, autoscale {:?}",
                    lag_of(&sp),
                    autoscale_of(&sp)
                ),
            }
        },
    )
    .await?;
    println!(
        "scaled up {:.0?} after the backlog: {}",
        started.elapsed(),
        up.message
    );
    assert_eq!(up.replicas, PARTITIONS);
    let scaled_up_at = up.last_scale_time.clone().context("lastScaleTime")?;

    // The lag drains with four replicas; never more than four meanwhile.
    let drained = poll_until("the lag to drain", Deadline::secs(600), || async {
        let (replicas, _) = sink(&s, name).await?;
        most.set(most.get().max(replicas));
        let sp = s.pipelines().get(name).await?;
        let lag = lag_of(&sp);
        let rows = s.row_count("events").await?;
        if lag == Some(0) && rows == RECORDS as i64 {
            Ok(Some(sp))
        } else {
            bail!("lag {lag:?}, rows {rows}, sink replicas {replicas}")
        }
    })
    .await?;
    let drained_at = Instant::now();
    println!(
        "drained {:.0?} after the backlog: {:?}",
        started.elapsed(),
        autoscale_of(&drained).map(|a| a.message)
    );

    // After the cool-down: back to one.
    let down = poll_until(
        "the sink to be scaled back down to one",
        Deadline::secs((COOLDOWN * 4 + 60) as u64),
        || async {
            let (replicas, _) = sink(&s, name).await?;
            most.set(most.get().max(replicas));
            let sp = s.pipelines().get(name).await?;
            let a = autoscale_of(&sp);
            Ok((replicas == 1)
                .then_some(a)
                .flatten()
                .filter(|a| a.replicas == 1))
        },
    )
    .await?;
    println!(
        "scaled down {:.0?} after the lag drained: {} ({})",
        drained_at.elapsed(),
        down.message,
        down.reason
    );
    assert_eq!(most.get(), PARTITIONS, "never past the partitions");
    let scaled_down_at = down.last_scale_time.clone().context("lastScaleTime")?;
    let held = scaled_down_at.0.duration_since(scaled_up_at.0).as_secs();
    assert!(
        held >= COOLDOWN,
        "scaled down {held} s after scaling up, within the {COOLDOWN} s cool-down"
    );
    poll_until("the sink's Pods to go", Deadline::secs(120), || async {
        Ok((sink(&s, name).await?.1 == 1).then_some(()))
    })
    .await?;

    // Each decision, as a person reads it. The Event of the last one is
    // published after the status that the wait above saw: wait for it.
    let said = |events: &[(String, String)], reason: &str| {
        events
            .iter()
            .filter(|(r, _)| r == reason)
            .map(|(_, m)| m.clone())
            .collect::<Vec<_>>()
    };
    let waited = poll_until("the ScaledDown Event to 1", Deadline::secs(30), || async {
        let events = s.event_reasons(name).await?;
        let done = said(&events, "ScaledDown")
            .iter()
            .any(|m| m.contains("to 1") && m.contains("lag"));
        Ok(done.then_some(events))
    })
    .await;
    // Without it, the checks below say what the Events were.
    let events = match waited {
        Ok(events) => events,
        Err(_) => s.event_reasons(name).await?,
    };
    let ups = said(&events, "ScaledUp");
    let downs = said(&events, "ScaledDown");
    println!("ScaledUp: {ups:?}\nScaledDown: {downs:?}");
    ensure!(
        ups.iter()
            .any(|m| m.contains("from 1 to") && m.contains("lag")),
        "ScaledUp Events: {ups:?}"
    );
    ensure!(
        ups.iter()
            .any(|m| m.contains(" to 4: ") && m.contains("lag")),
        "no ScaledUp Event to the 4 partitions: {ups:?}"
    );
    ensure!(
        downs
            .iter()
            .any(|m| m.contains("to 1") && m.contains("lag")),
        "ScaledDown Events: {downs:?}"
    );
    let describe = kubectl(&s, &["describe", "streampipeline", name])?;
    let text = String::from_utf8_lossy(&describe.stdout);
    for words in ["ScaledUp", "ScaledDown", "Autoscale", "Desired Replicas"] {
        assert!(
            text.contains(words),
            "kubectl describe lacks {words}:\n{text}"
        );
    }

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}

#[tokio::test]
async fn kubectl_scale_sets_the_sink_replicas_and_is_refused_while_autoscale_is_set()
-> anyhow::Result<()> {
    let s = Scenario::new("op-scale").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "scaled";
    s.apply(&pipeline(&s, name, 3)?).await?;
    s.wait_condition(name, "Ready", "True", None, 180).await?;

    let sink_pods = |s: &Scenario| {
        let out = kubectl(
            s,
            &[
                "get",
                "pods",
                "-l",
                &format!("app.kubernetes.io/instance={name},app.kubernetes.io/component=sink"),
                "-o",
                "name",
            ],
        );
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
    };
    let before = poll_until("one sink Pod", Deadline::secs(60), || async {
        let pods = sink_pods(&s)?;
        Ok((pods.len() == 1).then_some(pods))
    })
    .await?;

    // kubectl scale, through the scale subresource.
    let out = kubectl(
        &s,
        &["scale", &format!("streampipeline/{name}"), "--replicas=3"],
    )?;
    ensure!(
        out.status.success(),
        "kubectl scale: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sp = s.pipelines().get(name).await?;
    assert_eq!(sp.spec.runner.sink_replicas, 3);
    poll_until(
        "the sink Deployment to follow",
        Deadline::secs(60),
        || async {
            let (spec, status) = sink(&s, name).await?;
            Ok((spec == 3 && status == 3).then_some(()))
        },
    )
    .await?;
    // The scale subresource reads the status the operator fills.
    let scale = poll_until("/scale to show 3 replicas", Deadline::secs(60), || async {
        let scale = s.pipelines().get_scale(name).await?;
        let current = scale.status.as_ref().map_or(0, |st| st.replicas);
        Ok((current == 3).then_some(scale))
    })
    .await?;
    let selector = scale
        .status
        .and_then(|st| st.selector)
        .context("the scale's selector")?;
    println!("/scale selector: {selector}");
    assert!(
        selector.contains("app.kubernetes.io/component=sink")
            && selector.contains(&format!("app.kubernetes.io/instance={name}")),
        "{selector}"
    );
    let found = poll_until(
        "the selector to find the 3 sink Pods",
        Deadline::secs(90),
        || async {
            let pods = kubectl(&s, &["get", "pods", "-l", &selector, "-o", "name"])?;
            let listed: Vec<String> = String::from_utf8_lossy(&pods.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            Ok((listed.len() == 3).then_some(listed))
        },
    )
    .await?;
    // Scaling adds Pods; it does not roll the one already running.
    assert!(
        found.contains(&before[0]),
        "the sink Pod {} was replaced by scaling: {found:?}",
        before[0]
    );

    // A patch of /scale, as an HPA makes it.
    s.pipelines()
        .patch_scale(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 2}})),
        )
        .await?;
    poll_until(
        "the sink Deployment to follow /scale",
        Deadline::secs(60),
        || async { Ok((sink(&s, name).await?.0 == 2).then_some(())) },
    )
    .await?;

    // Autoscale on: a second decider is refused, and says why.
    s.merge(
        name,
        json!({"spec": {"runner": {"autoscale": {
            "maxReplicas": 3, "targetLagPerReplica": 1000, "cooldownSeconds": 0,
        }}}}),
    )
    .await?;
    let out = kubectl(
        &s,
        &["scale", &format!("streampipeline/{name}"), "--replicas=3"],
    )?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("kubectl scale with autoscale set: {stderr}");
    assert!(!out.status.success(), "kubectl scale was accepted");
    assert!(stderr.contains("autoscale"), "{stderr}");
    // The autoscaler owns the sink now: no lag, so minReplicas.
    poll_until(
        "the autoscaler to take the sink to one",
        Deadline::secs(90),
        || async {
            let sp = s.pipelines().get(name).await?;
            let a = autoscale_of(&sp);
            Ok((sink(&s, name).await?.0 == 1)
                .then_some(a)
                .flatten()
                .filter(|a| a.replicas == 1))
        },
    )
    .await?;

    s.delete_pipeline(name, 60).await?;
    op.stop().await?;
    s.cleanup().await
}
