//! What the agent knows about a Pod's containers, and the Pod status it
//! reports from that (a pure function, so it is unit-tested).

use serde_json::{Value, json};

pub type Time = chrono::DateTime<chrono::Utc>;

pub fn rfc3339(t: &Time) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[derive(Debug, Clone, PartialEq)]
pub enum State {
    Waiting {
        reason: String,
        message: String,
    },
    Running {
        started_at: Time,
    },
    Terminated {
        exit_code: i32,
        reason: String,
        started_at: Time,
        finished_at: Time,
    },
}

#[derive(Debug, Clone)]
pub struct ContainerRuntime {
    pub name: String,
    pub image: String,
    pub state: State,
    pub last: Option<State>,
    pub ready: bool,
    pub restart_count: u32,
    /// No restart follows the current termination.
    pub finished: bool,
}

impl ContainerRuntime {
    pub fn new(name: &str, image: &str, restart_count: u32) -> Self {
        Self {
            name: name.into(),
            image: image.into(),
            state: State::Waiting {
                reason: "ContainerCreating".into(),
                message: String::new(),
            },
            last: None,
            ready: false,
            restart_count,
            finished: false,
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct PodRuntime {
    pub pod_ip: String,
    pub host_ip: String,
    pub start_time: Option<Time>,
    /// Why the Pod cannot run here at all (see `spec::unsupported`).
    pub unsupported: Vec<String>,
    pub init: Vec<ContainerRuntime>,
    pub init_done: bool,
    pub containers: Vec<ContainerRuntime>,
}

fn state_json(s: &State) -> Value {
    match s {
        State::Waiting { reason, message } => {
            let mut w = json!({ "reason": reason });
            if !message.is_empty() {
                w["message"] = json!(message);
            }
            json!({ "waiting": w })
        }
        State::Running { started_at } => json!({ "running": { "startedAt": rfc3339(started_at) } }),
        State::Terminated {
            exit_code,
            reason,
            started_at,
            finished_at,
        } => json!({ "terminated": {
            "exitCode": exit_code, "reason": reason,
            "startedAt": rfc3339(started_at), "finishedAt": rfc3339(finished_at),
        }}),
    }
}

fn container_json(c: &ContainerRuntime) -> Value {
    json!({
        "name": c.name,
        "image": c.image,
        "imageID": format!("process://{}", c.image),
        "containerID": format!("process://{}", c.name),
        "ready": c.ready,
        "started": matches!(c.state, State::Running { .. }),
        "restartCount": c.restart_count,
        "state": state_json(&c.state),
        "lastState": c.last.as_ref().map(state_json).unwrap_or_else(|| json!({})),
    })
}

/// The phase as the kubelet computes it from the containers.
pub fn phase(rt: &PodRuntime) -> &'static str {
    if !rt.unsupported.is_empty() || !rt.init_done {
        return if rt
            .init
            .iter()
            .any(|c| c.finished && terminated_with_failure(&c.state))
        {
            "Failed"
        } else {
            "Pending"
        };
    }
    let all_finished = rt.containers.iter().all(|c| c.finished);
    if all_finished && !rt.containers.is_empty() {
        if rt
            .containers
            .iter()
            .all(|c| !terminated_with_failure(&c.state))
        {
            "Succeeded"
        } else {
            "Failed"
        }
    } else if rt.containers.iter().any(|c| {
        matches!(c.state, State::Running { .. }) || c.restart_count > 0 || c.last.is_some()
    }) {
        "Running"
    } else {
        "Pending"
    }
}

fn terminated_with_failure(s: &State) -> bool {
    matches!(s, State::Terminated { exit_code, .. } if *exit_code != 0)
}

/// The Pod's `status`, for a merge patch.
pub fn pod_status(rt: &PodRuntime, since: &Time) -> Value {
    let cond = |kind: &str, ok: bool, reason: &str, message: &str| {
        let mut c = json!({
            "type": kind, "status": if ok { "True" } else { "False" },
            "lastTransitionTime": rfc3339(since),
        });
        if !ok && !reason.is_empty() {
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        c
    };
    let ready = rt.unsupported.is_empty() && rt.init_done && rt.containers.iter().all(|c| c.ready);
    let (reason, message) = if !rt.unsupported.is_empty() {
        (
            "Unsupported".to_string(),
            format!(
                "the millrace node agent cannot run this Pod: {}",
                rt.unsupported.join("; ")
            ),
        )
    } else {
        let not_ready: Vec<&str> = rt
            .containers
            .iter()
            .filter(|c| !c.ready)
            .map(|c| c.name.as_str())
            .collect();
        (
            "ContainersNotReady".to_string(),
            format!("containers with unready status: [{}]", not_ready.join(" ")),
        )
    };
    let mut status = json!({
        "phase": phase(rt),
        "hostIP": rt.host_ip,
        "hostIPs": [{ "ip": rt.host_ip }],
        "conditions": [
            cond("PodReadyToStartContainers", rt.unsupported.is_empty(), &reason, &message),
            cond("Initialized", rt.init_done, "ContainersNotInitialized", "init containers have not completed"),
            cond("ContainersReady", ready, &reason, &message),
            cond("Ready", ready, &reason, &message),
            cond("PodScheduled", true, "", ""),
        ],
        "containerStatuses": rt.containers.iter().map(container_json).collect::<Vec<_>>(),
    });
    if !rt.init.is_empty() {
        status["initContainerStatuses"] = rt.init.iter().map(container_json).collect();
    }
    if !rt.pod_ip.is_empty() {
        status["podIP"] = json!(rt.pod_ip);
        status["podIPs"] = json!([{ "ip": rt.pod_ip }]);
    }
    if let Some(t) = &rt.start_time {
        status["startTime"] = json!(rfc3339(t));
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(state: State, ready: bool, finished: bool) -> PodRuntime {
        let mut c = ContainerRuntime::new("main", "millrace-testpod", 0);
        c.state = state;
        c.ready = ready;
        c.finished = finished;
        PodRuntime {
            pod_ip: "127.10.0.2".into(),
            host_ip: "127.0.0.1".into(),
            init_done: true,
            containers: vec![c],
            ..Default::default()
        }
    }

    #[test]
    fn a_running_ready_container_makes_a_ready_pod() {
        let now = chrono::Utc::now();
        let s = pod_status(&rt(State::Running { started_at: now }, true, false), &now);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "127.10.0.2");
        let ready = s["conditions"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
            .cloned();
        assert_eq!(ready.map(|r| r["status"].clone()), Some(json!("True")));
    }

    #[test]
    fn exits_decide_the_final_phase() {
        let now = chrono::Utc::now();
        let done = |code| State::Terminated {
            exit_code: code,
            reason: "x".into(),
            started_at: now,
            finished_at: now,
        };
        assert_eq!(phase(&rt(done(0), false, true)), "Succeeded");
        assert_eq!(phase(&rt(done(2), false, true)), "Failed");
        assert_eq!(
            phase(&rt(
                State::Waiting {
                    reason: "ContainerCreating".into(),
                    message: String::new()
                },
                false,
                false
            )),
            "Pending"
        );
    }

    #[test]
    fn unsupported_pods_say_why() {
        let now = chrono::Utc::now();
        let mut r = rt(
            State::Waiting {
                reason: "Unsupported".into(),
                message: String::new(),
            },
            false,
            false,
        );
        r.unsupported = vec!["volume \"data\" of kind hostPath is not supported".into()];
        let s = pod_status(&r, &now);
        assert_eq!(s["phase"], "Pending");
        let text = s.to_string();
        assert!(
            text.contains("hostPath") && text.contains("Unsupported"),
            "{text}"
        );
    }
}
