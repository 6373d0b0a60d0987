//! Report: conditions with reasons and messages a person can act on,
//! `observedGeneration`, and what was created. The status is patched only
//! when it changes, and each meaningful transition becomes one Event
//! (handed back for the controller to publish). [`flow`] adds the data-flow figures.

pub mod flow;
pub mod replay;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use millrace_api::{StreamPipeline, StreamPipelineStatus, condition_type};
use serde_json::json;

use crate::context::Context;
use crate::desired::FIELD_MANAGER;
use crate::error::{Error, Result};
use crate::events::Notice;
use crate::metrics::Target;

pub const RUNNER_READY: &str = "RunnerReady";
pub const SUSPENDED: &str = "Suspended";

pub mod reasons {
    pub use millrace_api::condition_reason::*;
    pub const WAITING_FOR_DEPENDENCIES: &str = "WaitingForDependencies";
    pub const RESUMED: &str = "Resumed";
    pub const DELETION_BLOCKED: &str = "DeletionBlocked";
}

/// One condition as the reconcile decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub ready: bool,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(type_: &'static str, ready: bool, reason: &str, message: impl Into<String>) -> Self {
        Self {
            type_,
            ready,
            reason: reason.to_owned(),
            message: message.into(),
        }
    }
}

/// `Ready` from the parts: true only when topic, table and runner are, and
/// not suspended; otherwise the first part that is not, with its reason.
pub fn ready(parts: &[&Cond], suspended: bool) -> Cond {
    if suspended {
        return Cond::new(
            condition_type::READY,
            false,
            reasons::SUSPENDED,
            "the pipeline is suspended: topic and table are kept, ingest and sink are scaled to zero",
        );
    }
    match parts.iter().find(|c| !c.ready) {
        None => Cond::new(
            condition_type::READY,
            true,
            reasons::RECONCILED,
            "topic, table and runner are ready, and records flow",
        ),
        Some(c) => Cond::new(
            condition_type::READY,
            false,
            &c.reason,
            format!("{}: {}", c.type_, c.message),
        ),
    }
}

pub fn suspended(suspend: bool) -> Cond {
    if suspend {
        Cond::new(
            SUSPENDED,
            true,
            reasons::SUSPENDED,
            "spec.suspend is true: ingest and sink are scaled to zero",
        )
    } else {
        Cond::new(
            SUSPENDED,
            false,
            reasons::RESUMED,
            "the runner follows spec.runner",
        )
    }
}

/// The condition `type_` as the last reconcile decided it.
pub fn previous(old: &[Condition], type_: &'static str) -> Option<Cond> {
    old.iter()
        .find(|c| c.type_ == type_)
        .map(|c| Cond::new(type_, c.status == "True", &c.reason, c.message.clone()))
}

/// Metav1 conditions, keeping a condition's `lastTransitionTime` while its
/// status does not change, and any condition types not decided now.
pub fn merge(old: &[Condition], new: &[Cond], generation: i64, now: &Time) -> Vec<Condition> {
    let mut out: Vec<Condition> = new
        .iter()
        .map(|c| {
            let status = if c.ready { "True" } else { "False" }.to_owned();
            let last = old
                .iter()
                .find(|o| o.type_ == c.type_ && o.status == status)
                .map(|o| o.last_transition_time.clone())
                .unwrap_or_else(|| now.clone());
            Condition {
                type_: c.type_.to_owned(),
                status,
                reason: c.reason.clone(),
                message: c.message.clone(),
                observed_generation: Some(generation),
                last_transition_time: last,
            }
        })
        .collect();
    for o in old {
        if !out.iter().any(|c| c.type_ == o.type_) {
            out.push(o.clone());
        }
    }
    out
}

/// Conditions whose status or reason changed, for Events.
pub fn changed<'a>(old: &[Condition], new: &'a [Condition]) -> Vec<&'a Condition> {
    new.iter()
        .filter(|c| {
            !old.iter()
                .any(|o| o.type_ == c.type_ && o.status == c.status && o.reason == c.reason)
        })
        .collect()
}

/// Writes the status if it differs from the one the object has (or, with
/// `hold`, keeps it for the next reconcile instead: [`crate::hold`]), and returns
/// the Events its transitions call for. `sp` carries the status the
/// reconcile started from, which is a held one while there is one.
pub async fn update(
    ctx: &Context,
    sp: &StreamPipeline,
    new: StreamPipelineStatus,
    hold: bool,
) -> Result<Vec<Notice>> {
    let old = sp.status.clone().unwrap_or_default();
    let notices = condition_events(&old.conditions, &new.conditions);
    let stored = ctx
        .held
        .release(&sp.uid().unwrap_or_default())
        .unwrap_or_else(|| sp.status.clone());
    if hold {
        ctx.held.hold(sp, stored, new);
        return Ok(notices);
    }
    if stored.unwrap_or_default() == new {
        return Ok(notices);
    }
    let namespace = sp
        .namespace()
        .ok_or(Error::MissingMetadata("metadata.namespace"))?;
    let api: Api<StreamPipeline> = Api::namespaced(ctx.client.clone(), &namespace);
    let body = json!({
        "apiVersion": "millrace.io/v1alpha1",
        "kind": "StreamPipeline",
        "status": new,
    });
    api.patch_status(
        &sp.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await?;
    ctx.metrics.write(Target::Kubernetes);
    Ok(notices)
}

/// The Events a status change calls for: one meaningful transition, one
/// Event. `Ready` changing is announced with its reason (which names the
/// part at fault); a part going wrong while `Ready` does not change (it
/// was already false for another reason) is announced on its own. Steps
/// on the way to ready, and parts recovering, are not: `Ready` becoming
/// true says it for all of them.
fn condition_events(old: &[Condition], new: &[Condition]) -> Vec<Notice> {
    let steps = [reasons::PROGRESSING, reasons::WAITING_FOR_DEPENDENCIES];
    let user_actions = [reasons::SUSPENDED, reasons::RESUMED];
    let changed = changed(old, new);
    let mut out = Vec::new();
    let ready = changed
        .iter()
        .find(|c| c.type_ == condition_type::READY && !steps.contains(&c.reason.as_str()));
    if let Some(c) = ready {
        let note = format!("{} is {}: {}", c.type_, c.status, c.message);
        out.push(
            if c.status == "True" || user_actions.contains(&c.reason.as_str()) {
                Notice::normal(&c.reason, note)
            } else {
                Notice::warning(&c.reason, note)
            },
        );
    }
    for c in &changed {
        let announced = ready.is_some_and(|r| r.reason == c.reason);
        if c.type_ == condition_type::READY
            || c.status == "True"
            || announced
            || steps.contains(&c.reason.as_str())
            || user_actions.contains(&c.reason.as_str())
        {
            continue;
        }
        let note = format!("{} is {}: {}", c.type_, c.status, c.message);
        out.push(Notice::warning(&c.reason, note));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::jiff::Timestamp;

    fn at(secs: i64) -> Time {
        Time(Timestamp::from_second(secs).expect("time"))
    }

    fn reasons_of(old: &[Condition], conds: &[Cond]) -> (Vec<Condition>, Vec<String>) {
        let new = merge(old, conds, 1, &at(1));
        let events = condition_events(old, &new)
            .into_iter()
            .map(|n| n.reason)
            .collect();
        (new, events)
    }

    #[test]
    fn a_new_pipeline_is_announced_once_when_ready() {
        let parts = |ready: bool, runner: bool| {
            vec![
                Cond::new(
                    "Ready",
                    ready,
                    if ready { "Reconciled" } else { "Progressing" },
                    "x",
                ),
                Cond::new("TopicReady", true, "Reconciled", "ok"),
                Cond::new("TableReady", true, "Reconciled", "ok"),
                Cond::new(
                    "RunnerReady",
                    runner,
                    if runner { "Reconciled" } else { "Progressing" },
                    "x",
                ),
            ]
        };
        let (first, events) = reasons_of(&[], &parts(false, false));
        assert!(events.is_empty(), "steps on the way are quiet: {events:?}");
        let (_, events) = reasons_of(&first, &parts(true, true));
        assert_eq!(events, ["Reconciled"], "one Event for Ready, none per part");
    }

    #[test]
    fn a_part_going_wrong_is_announced_once() {
        let ok = [
            Cond::new("Ready", true, "Reconciled", "ok"),
            Cond::new("TableReady", true, "Reconciled", "ok"),
            Cond::new("Flowing", true, "Flowing", "ok"),
        ];
        let (ready, _) = reasons_of(&[], &ok);
        // The table refuses a change; Flowing as given.
        let table_refused = |flowing: Cond| {
            [
                Cond::new(
                    "Ready",
                    false,
                    "NotSupported",
                    "TableReady: gender changed type",
                ),
                Cond::new("TableReady", false, "NotSupported", "gender changed type"),
                flowing,
            ]
        };
        let (broken_status, events) = reasons_of(
            &ready,
            &table_refused(Cond::new("Flowing", true, "Flowing", "ok")),
        );
        assert_eq!(events, ["NotSupported"], "Ready carries the part's reason");
        // Ready stays false for the same reason; another part goes wrong.
        let worse = table_refused(Cond::new("Flowing", false, "SinkStalled", "no progress"));
        let (_, events) = reasons_of(&broken_status, &worse);
        assert_eq!(events, ["SinkStalled"]);
    }

    #[test]
    fn ready_names_the_first_part_that_is_not() {
        let topic = Cond::new("TopicReady", true, "Reconciled", "ok");
        let table = Cond::new("TableReady", false, "NotSupported", "gender changed type");
        let runner = Cond::new("RunnerReady", true, "Reconciled", "ok");
        let r = ready(&[&topic, &table, &runner], false);
        assert!(!r.ready);
        assert_eq!(r.reason, "NotSupported");
        assert_eq!(r.message, "TableReady: gender changed type");
        assert!(ready(&[&topic, &runner], false).ready);
        assert_eq!(ready(&[&topic, &runner], true).reason, "Suspended");
    }

    #[test]
    fn transition_time_moves_only_when_the_status_does() {
        let first = merge(
            &[],
            &[Cond::new("TopicReady", false, "Unavailable", "down")],
            1,
            &at(10),
        );
        let same = merge(
            &first,
            &[Cond::new("TopicReady", false, "Unavailable", "still down")],
            2,
            &at(20),
        );
        assert_eq!(same[0].last_transition_time, at(10));
        assert_eq!(same[0].observed_generation, Some(2));
        assert!(
            changed(&first, &same).is_empty(),
            "same status and reason: no Event"
        );
        let up = merge(
            &same,
            &[Cond::new("TopicReady", true, "Reconciled", "up")],
            2,
            &at(30),
        );
        assert_eq!(up[0].last_transition_time, at(30));
        assert_eq!(changed(&same, &up).len(), 1);
    }

    #[test]
    fn an_unchanged_reconcile_gives_an_identical_status() {
        let conds = [Cond::new("Ready", true, "Reconciled", "ok")];
        let a = merge(&[], &conds, 3, &at(1));
        let b = merge(&a, &conds, 3, &at(99));
        assert_eq!(a, b);
    }
}
