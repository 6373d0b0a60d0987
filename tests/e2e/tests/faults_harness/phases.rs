//! A phase of the suite as data (a fault, then the checks that must hold
//! after it) and the loop that runs a list of them.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use millrace_testsupport::kube_helpers::pod_ip;
use millrace_testsupport::{Deadline, poll_until};
use serde_json::{Value, json};

use super::readback::{sink_caught_up, smallest_isr};
use super::{Continue, Harness, TABLE, launch_operator, now_ms, signal};
use crate::operator_common::{Operator, describe_topic};

/// One window of the run: its fault, what is checked once the fault is in,
/// and how long the stream then flows before the next one.
pub struct FaultPhase {
    pub name: &'static str,
    pub what: &'static str,
    pub fault: Fault,
    /// Made in order, after the fault; skipped if the fault could not be
    /// injected (which is itself the phase's failure).
    pub checks: Vec<Check>,
    /// Fault-free flow after the checks, so windows do not run into each
    /// other; `None` for the last phase.
    pub steady_secs: Option<u64>,
}

pub enum Fault {
    /// No fault; recovery is timed from the phase's start.
    None,
    /// kill -9 of the runner process of one ready Pod of `component`; the
    /// node agent must start it again.
    KillRunner { component: &'static str },
    /// kill -9 of the operator, started again `down_secs` later.
    KillOperator { down_secs: u64 },
    /// `spec.runner.sinkReplicas` raised to `up`, held for `hold_secs`,
    /// lowered to `down`; each step waited for (`ingest` ingest Pods
    /// throughout) for up to `replicas_secs`.
    ScaleSinks {
        ingest: usize,
        up: usize,
        hold_secs: u64,
        down: usize,
        replicas_secs: u64,
    },
    /// `column` added to the table and the topic's partitions raised to
    /// `partitions`, by server-side apply of the whole resource.
    EditPipeline { column: Value, partitions: i32 },
    /// kill -9 of daemons of the world (one Kafka broker, two Cassandra
    /// nodes, ...), all at once, and `tests/env/restart` of them together
    /// after `down_secs` (counted from the kill); `while_down` is checked
    /// meanwhile. The sink's write retries over the whole fault are noted.
    KillDaemon {
        daemons: &'static [&'static str],
        down_secs: u64,
        while_down: Option<Check>,
    },
    /// SIGSTOP of one of the world's daemons, SIGCONT after `stopped_secs`.
    StopDaemon {
        daemon: &'static str,
        stopped_secs: u64,
    },
    /// No more input: the push clients stopped, the ingest scaled to 0.
    Drain,
}

pub enum Check {
    /// End-to-end recovery: a record accepted after the phase began is a
    /// row, and the pipeline is Ready; timed from the injection.
    Recovered { secs: u64 },
    /// The table has `column` and the topic `partitions` partitions.
    PipelineEdited {
        column: &'static str,
        partitions: i32,
        secs: u64,
    },
    /// Every runner Pod runs the resource's current generation, ready.
    Rolled { secs: u64 },
    /// An ingest Pod's `/readyz` answers 503 (while Kafka is down).
    IngestUnready { secs: u64 },
    /// No ingest Pod is left.
    IngestGone { secs: u64 },
    /// The sink group's committed offsets are at the topic's end.
    SinkCaughtUp { secs: u64 },
    /// The sink waits for the cluster: its `millrace_writes_waiting` gauge
    /// for `reason` is above 0 and its write retries for `reason` grew
    /// since the fault (the runner's /metrics).
    SinkWaiting { reason: &'static str, secs: u64 },
    /// The sink's write retries for `reason` did not grow over the fault.
    NoSinkRetries { reason: &'static str },
    /// A push client was answered `status` after the fault.
    PushRefused { status: u16, secs: u64 },
    /// Every partition of the topic has `replicas` replicas in sync again
    /// (a broker back from a fault has caught up).
    TopicInSync { replicas: usize, secs: u64 },
}

impl Harness {
    /// Runs `phases` in order, each in a window of its own; the last
    /// window closes when its checks are done.
    pub async fn run(&mut self, phases: &[FaultPhase]) -> anyhow::Result<()> {
        for phase in phases {
            self.begin(phase.name, phase.what);
            let since = now_ms();
            if let Some(injected) = self.inject(&phase.fault).await? {
                for check in &phase.checks {
                    self.check(check, injected, since).await;
                }
                if self.phase().sink_before.is_some() && self.phase().sink_retries.is_none() {
                    self.measure_sink_retries().await;
                }
            }
            if let Some(secs) = phase.steady_secs {
                self.steady(secs).await;
            }
        }
        self.phase().end_ms = now_ms();
        Ok(())
    }

    /// Injects `fault`; the time it took effect, or `None` (and the phase
    /// failed) if it could not be injected. An error is one the suite
    /// cannot go on after.
    async fn inject(&mut self, fault: &Fault) -> anyhow::Result<Option<Instant>> {
        match fault {
            Fault::None => Ok(Some(Instant::now())),
            Fault::KillRunner { component } => match self.kill_runner(component).await {
                Ok((pod, before)) => {
                    let t = self.injected();
                    self.wait_pod_restarted(&pod, before).await;
                    Ok(Some(t))
                }
                Err(e) => self.failed(e),
            },
            Fault::KillOperator { down_secs } => {
                let Some(pid) = self.operator.as_ref().and_then(Operator::pid) else {
                    self.fail("no operator pid".into());
                    return Ok(None);
                };
                let t = self.injected();
                signal(&pid.to_string(), "KILL")?;
                self.note(format!("kill -9 {pid} (operator)"));
                drop(self.operator.take());
                // The operator stays down while the stream goes on: its Pods'
                // Deployment would start it again after a back-off.
                tokio::time::sleep(Duration::from_secs(*down_secs)).await;
                match launch_operator(&self.world, &self.world_dir, &self.sc.ns.name).await {
                    Ok(op) => {
                        self.operator = Some(op);
                        self.note("operator started again");
                    }
                    Err(e) => self.fail(format!("starting the operator again: {e:#}")),
                }
                Ok(Some(t))
            }
            Fault::ScaleSinks {
                ingest,
                up,
                hold_secs,
                down,
                replicas_secs,
            } => {
                let t = self.injected();
                if let Err(e) = self
                    .merge(json!({"spec": {"runner": {"sinkReplicas": up}}}))
                    .await
                {
                    return self.failed(e);
                }
                self.wait_replicas(*ingest, *up, *replicas_secs).await;
                self.steady(*hold_secs).await;
                match self
                    .merge(json!({"spec": {"runner": {"sinkReplicas": down}}}))
                    .await
                {
                    Ok(()) => self.wait_replicas(*ingest, *down, *replicas_secs).await,
                    Err(e) => self.fail(format!("{e:#}")),
                }
                Ok(Some(t))
            }
            Fault::EditPipeline { column, partitions } => {
                let t = self.injected();
                self.pipeline["spec"]["cassandra"]["table"]["columns"]
                    .as_array_mut()
                    .context("columns")?
                    .push(column.clone());
                self.pipeline["spec"]["kafka"]["topic"]["partitions"] = json!(partitions);
                match self.sc.apply(&self.pipeline).await {
                    Ok(_) => Ok(Some(t)),
                    Err(e) => self.failed(e),
                }
            }
            Fault::KillDaemon {
                daemons,
                down_secs,
                while_down,
            } => {
                let mut pids = Vec::new();
                for daemon in *daemons {
                    match self.daemon_pid(daemon) {
                        Ok(pid) => pids.push(pid),
                        Err(e) => return self.failed(e),
                    }
                }
                let before = self.sink_metrics().await.ok();
                self.phase().sink_before = before;
                for pid in &pids {
                    signal(pid, "KILL")?;
                }
                let t = self.injected();
                self.note(format!(
                    "kill -9 {} ({})",
                    pids.join(" "),
                    daemons.join(" ")
                ));
                if let Some(check) = while_down {
                    self.check(check, t, now_ms()).await;
                }
                tokio::time::sleep(Duration::from_secs(*down_secs).saturating_sub(t.elapsed()))
                    .await;
                match self.restart_daemons(daemons).await {
                    Ok(_) => Ok(Some(t)),
                    Err(e) => self.failed(e),
                }
            }
            Fault::StopDaemon {
                daemon,
                stopped_secs,
            } => {
                let pid = match self.daemon_pid(daemon) {
                    Ok(pid) => pid,
                    Err(e) => return self.failed(e),
                };
                signal(&pid, "STOP")?;
                let guard = Continue(pid.clone());
                let t = self.injected();
                self.note(format!("kill -STOP {pid} ({daemon})"));
                tokio::time::sleep(Duration::from_secs(*stopped_secs)).await;
                drop(guard);
                self.note(format!("kill -CONT {pid}"));
                Ok(Some(t))
            }
            Fault::Drain => {
                self.stop_pushing().await;
                self.merge(json!({"spec": {"runner": {"ingestReplicas": 0}}}))
                    .await?;
                Ok(Some(Instant::now()))
            }
        }
    }

    /// The sink's write retries since the fault was injected, by reason,
    /// kept in the phase and noted.
    async fn measure_sink_retries(&mut self) {
        let before = self.phase().sink_before.clone().unwrap_or_default();
        match self.sink_metrics().await {
            Ok(now) => {
                let grew = Self::retries_since(&before, &now);
                self.note(format!("sink write retries since the fault: {grew:?}"));
                self.phase().sink_retries = Some(grew);
            }
            Err(e) => self.fail(format!("reading the sink's metrics: {e:#}")),
        }
    }

    /// The phase failed with `e`; its checks are skipped.
    fn failed(&mut self, e: anyhow::Error) -> anyhow::Result<Option<Instant>> {
        self.fail(format!("{e:#}"));
        Ok(None)
    }

    /// Makes `check`; a check that does not hold fails the phase (with a
    /// note), the run goes on.
    async fn check(&mut self, check: &Check, injected: Instant, since: i64) {
        match check {
            Check::Recovered { secs } => self.wait_recovered(injected, since, *secs).await,
            Check::PipelineEdited {
                column,
                partitions,
                secs,
            } => {
                let r = poll_until(
                    "the new column and partitions",
                    Deadline::secs(*secs),
                    || async {
                        let cols = self.sc.table_columns(TABLE).await?;
                        let topic = describe_topic(&self.world, &self.sc.topic).await?;
                        let ok = cols.iter().any(|c| c.name == *column)
                            && topic.is_some_and(|t| t.partitions == *partitions as usize);
                        Ok(ok.then_some(()))
                    },
                )
                .await;
                match r {
                    Ok(()) => self.note(format!(
                        "table has `{column}`; topic has {partitions} partitions"
                    )),
                    Err(e) => self.fail(format!("{e:#}")),
                }
            }
            Check::Rolled { secs } => self.wait_rolled(*secs).await,
            Check::IngestUnready { secs } => {
                let probe = poll_until(
                    "an ingest /readyz to answer 503",
                    Deadline::secs(*secs),
                    || async {
                        let eps = {
                            let pods = self.runner_pods("ingest").await?;
                            pods.iter().filter_map(pod_ip).collect::<Vec<_>>()
                        };
                        for ip in eps {
                            if let Ok(r) = reqwest::get(format!(
                                "http://{ip}:{}/readyz",
                                millrace_api::ports::METRICS
                            ))
                            .await
                                && r.status() == 503
                            {
                                return Ok(Some(()));
                            }
                        }
                        Ok(None)
                    },
                )
                .await;
                match probe {
                    Ok(()) => self.note("ingest /readyz answered 503 while Kafka was down"),
                    Err(e) => self.fail(format!("{e:#}")),
                }
            }
            Check::IngestGone { secs } => {
                let r = poll_until(
                    "the ingest Pods to be gone",
                    Deadline::secs(*secs),
                    || async { Ok(self.runner_pods("ingest").await?.is_empty().then_some(())) },
                )
                .await;
                if let Err(e) = r {
                    self.fail(format!("{e:#}"));
                }
            }
            Check::SinkWaiting { reason, secs } => {
                let before = self.phase().sink_before.clone().unwrap_or_default();
                let r = poll_until(
                    &format!("the sink to wait for the cluster ({reason})"),
                    Deadline::secs(*secs),
                    || async {
                        let now = self.sink_metrics().await?;
                        // The gauge is labelled by a write's first failure,
                        // which may be a timeout before the nodes are
                        // known to be down.
                        let waiting: f64 = now
                            .iter()
                            .filter(|(k, _)| k.starts_with("millrace_writes_waiting{"))
                            .map(|(_, v)| v)
                            .sum();
                        let retried = Self::retries_since(&before, &now)
                            .get(*reason)
                            .copied()
                            .unwrap_or(0.0);
                        Ok((waiting > 0.0 && retried > 0.0).then_some((waiting, retried)))
                    },
                )
                .await;
                match r {
                    Ok((waiting, retried)) => self.note(format!(
                        "sink waiting after {:.1}s: {waiting} writes waiting, {retried} retries ({reason}) so far",
                        injected.elapsed().as_secs_f64()
                    )),
                    Err(e) => self.fail(format!("{e:#}")),
                }
            }
            Check::NoSinkRetries { reason } => {
                self.measure_sink_retries().await;
                let grew = self
                    .phase()
                    .sink_retries
                    .as_ref()
                    .and_then(|r| r.get(*reason).copied());
                if let Some(n) = grew {
                    self.fail(format!("the sink retried {n} writes ({reason})"));
                }
            }
            Check::PushRefused { status, secs } => {
                let from = self.phase().injected_ms.unwrap_or(since);
                let push = self.push.clone();
                let r = poll_until(
                    &format!("a push answered {status}"),
                    Deadline::secs(*secs),
                    || async {
                        let l = push.lock().unwrap_or_else(|p| p.into_inner());
                        Ok(l.refusals
                            .iter()
                            .find(|(at, s, _)| *at >= from && s == status)
                            .map(|(at, _, _)| *at))
                    },
                )
                .await;
                match r {
                    Ok(at) => self.note(format!(
                        "first push answered {status} {:.1}s after the fault",
                        (at - from) as f64 / 1000.0
                    )),
                    Err(e) => self.fail(format!("{e:#}")),
                }
            }
            Check::TopicInSync { replicas, secs } => {
                let (w, tp, n) = (self.world.clone(), self.sc.topic.clone(), *replicas);
                let r = poll_until(
                    &format!("{n} in-sync replicas of every partition"),
                    Deadline::secs(*secs),
                    || {
                        let (w, tp) = (w.clone(), tp.clone());
                        async move {
                            let isr = tokio::task::spawn_blocking(move || smallest_isr(&w, &tp))
                                .await??;
                            Ok((isr >= n).then_some(()))
                        }
                    },
                )
                .await;
                match r {
                    Ok(()) => self.note(format!(
                        "every partition has {n} replicas in sync {:.1}s after the fault",
                        injected.elapsed().as_secs_f64()
                    )),
                    Err(e) => self.fail(format!("{e:#}")),
                }
            }
            Check::SinkCaughtUp { secs } => {
                let (w, g, tp) = (
                    self.world.clone(),
                    self.group.clone(),
                    self.sc.topic.clone(),
                );
                let caught_up = poll_until(
                    "the sink group's committed offsets at the topic's end",
                    Deadline::secs(*secs),
                    || {
                        let (w, g, tp) = (w.clone(), g.clone(), tp.clone());
                        async move {
                            let lag =
                                tokio::task::spawn_blocking(move || sink_caught_up(&w, &g, &tp))
                                    .await??
                                    .unwrap_or(i64::MAX);
                            if lag > 0 {
                                bail!("{lag} records not committed yet");
                            }
                            Ok(Some(()))
                        }
                    },
                )
                .await;
                if let Err(e) = caught_up {
                    self.fail(format!("{e:#}"));
                }
            }
        }
    }
}
