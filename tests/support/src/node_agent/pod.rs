//! One Pod's life on the node: volumes, containers as processes, probes,
//! restarts, status, and graceful deletion.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use nix::sys::signal::Signal;
use tokio::sync::{Mutex, Notify, watch};
use tracing::{Instrument, info, warn};

use super::process::{Launch, Mount, PODMAN_ANNOTATION, Podman, is_file, signal_group};
use super::status::{ContainerRuntime, PodRuntime, State, pod_status};
use super::volumes::{self, Materialized};
use super::{AgentCtx, spec};

/// What the supervisor is told: the newest Pod object, or `None` once the
/// Pod is gone from the apiserver (force-deleted) or the agent shuts down.
pub type PodUpdates = watch::Receiver<Option<Pod>>;

/// How a container loop is asked to stop: `None` while it should run.
type StopSignal = watch::Receiver<Option<Duration>>;

struct Shared {
    rt: Mutex<PodRuntime>,
    changed: Notify,
}

impl Shared {
    async fn update(&self, f: impl FnOnce(&mut PodRuntime)) {
        f(&mut *self.rt.lock().await);
        self.changed.notify_one();
    }
}

fn ids(pod: &Pod) -> (String, String, String) {
    let m = &pod.metadata;
    (
        m.namespace.clone().unwrap_or_else(|| "default".into()),
        m.name.clone().unwrap_or_default(),
        m.uid.clone().unwrap_or_default(),
    )
}

/// Runs the Pod until it is deleted (or the agent stops). `shutdown` is set
/// when the agent itself stops: processes are stopped, the Pod is kept.
pub async fn supervise(ctx: Arc<AgentCtx>, updates: PodUpdates, shutdown: watch::Receiver<bool>) {
    let Some(pod) = updates.borrow().clone() else {
        return;
    };
    let (ns, name, _) = ids(&pod);
    let span = tracing::info_span!("pod", pod = %format!("{ns}/{name}"));
    supervise_pod(ctx, pod, updates, shutdown)
        .instrument(span)
        .await
}

async fn supervise_pod(
    ctx: Arc<AgentCtx>,
    pod: Pod,
    mut updates: PodUpdates,
    shutdown: watch::Receiver<bool>,
) {
    let (ns, name, uid) = ids(&pod);
    let terminal = matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded") | Some("Failed")
    );
    let pod_dir = ctx.state_dir.join("pods").join(&uid);
    let pod_ip = ctx.ips.lock().await.allocate(&uid, &pod, &pod_dir);
    let spec = pod.spec.clone().unwrap_or_default();
    let previous = pod.status.clone().unwrap_or_default();
    let restarts_of = |name: &str| -> u32 {
        previous
            .container_statuses
            .iter()
            .flatten()
            .find(|s| s.name == name)
            .map(|s| u32::try_from(s.restart_count).unwrap_or(0))
            .unwrap_or(0)
    };
    let shared = Arc::new(Shared {
        rt: Mutex::new(PodRuntime {
            pod_ip: pod_ip.clone(),
            host_ip: ctx.host_ip.clone(),
            start_time: Some(chrono::Utc::now()),
            unsupported: spec::unsupported(&pod),
            init: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| ContainerRuntime::new(&c.name, c.image.as_deref().unwrap_or(""), 0))
                .collect(),
            init_done: spec.init_containers.as_ref().is_none_or(Vec::is_empty),
            containers: spec
                .containers
                .iter()
                .map(|c| {
                    ContainerRuntime::new(
                        &c.name,
                        c.image.as_deref().unwrap_or(""),
                        restarts_of(&c.name),
                    )
                })
                .collect(),
        }),
        changed: Notify::new(),
    });

    let (stop_tx, stop_rx) = watch::channel::<Option<Duration>>(None);
    let writer = tokio::spawn(status_writer(ctx.clone(), pod.clone(), shared.clone()));
    let unsupported = shared.rt.lock().await.unsupported.clone();
    let runner = if terminal {
        None
    } else if !unsupported.is_empty() {
        warn!(reasons = ?unsupported, "pod not started: unsupported features");
        ctx.event(
            &pod,
            true,
            "Unsupported",
            &format!(
                "the millrace node agent cannot run this Pod: {}",
                unsupported.join("; ")
            ),
        )
        .await;
        shared
            .update(|rt| {
                for c in &mut rt.containers {
                    c.state = State::Waiting {
                        reason: "Unsupported".into(),
                        message: rt.unsupported.join("; "),
                    };
                }
            })
            .await;
        None
    } else {
        Some(tokio::spawn(run_pod(
            ctx.clone(),
            pod.clone(),
            pod_dir.clone(),
            pod_ip.clone(),
            shared.clone(),
            stop_rx,
        )))
    };

    // Wait for deletion (graceful or forced) or for the agent to stop.
    let mut shutdown = shutdown;
    let graceful_delete = loop {
        let current = updates.borrow().clone();
        match current {
            None => break false,
            Some(p) if p.metadata.deletion_timestamp.is_some() => {
                let grace = p
                    .metadata
                    .deletion_grace_period_seconds
                    .or(p
                        .spec
                        .as_ref()
                        .and_then(|s| s.termination_grace_period_seconds))
                    .unwrap_or(30);
                let _ = stop_tx.send(Some(Duration::from_secs(grace.max(0).unsigned_abs())));
                info!(grace, "pod deleted; stopping containers");
                break true;
            }
            Some(_) => {}
        }
        tokio::select! {
            r = updates.changed() => if r.is_err() { break false },
            _ = shutdown.changed() => break false,
        }
    };
    if !graceful_delete {
        // Forced deletion or agent shutdown: the kubelet would not wait long.
        let _ = stop_tx.send(Some(Duration::from_secs(2)));
    }
    if let Some(r) = runner {
        let _ = r.await;
    }
    writer.abort();
    let agent_stopping = *shutdown.borrow();
    if graceful_delete && !agent_stopping {
        // Every container has stopped: the kubelet's final, zero-grace delete.
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid.clone()),
                resource_version: None,
            }),
            ..Default::default()
        };
        if let Err(e) = api.delete(&name, &dp).await {
            warn!(error = %e, "final delete of the pod failed");
        }
    }
    if !agent_stopping {
        ctx.ips.lock().await.release(&uid);
        let _ = std::fs::remove_dir_all(&pod_dir);
    }
}

/// Patches the Pod's status whenever the runtime changes, skipping patches
/// that would write what is already there.
async fn status_writer(ctx: Arc<AgentCtx>, pod: Pod, shared: Arc<Shared>) {
    let (ns, name, _) = ids(&pod);
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let since = chrono::Utc::now();
    let mut last_sent = serde_json::Value::Null;
    loop {
        let status = pod_status(&*shared.rt.lock().await, &since);
        if status != last_sent {
            match api
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(serde_json::json!({ "status": status })),
                )
                .await
            {
                Ok(_) => last_sent = status,
                Err(e) => {
                    warn!(error = %e, "pod status patch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
        }
        shared.changed.notified().await;
    }
}

async fn run_pod(
    ctx: Arc<AgentCtx>,
    pod: Pod,
    pod_dir: PathBuf,
    pod_ip: String,
    shared: Arc<Shared>,
    stop: StopSignal,
) {
    let spec = pod.spec.clone().unwrap_or_default();
    let policy = spec.restart_policy.clone();
    // Volumes first: a missing ConfigMap or Secret keeps the containers
    // waiting, as on a real node, until it appears.
    let volumes = loop {
        let src = volumes::Sources {
            client: &ctx.client,
            pod: &pod,
            pod_ip: &pod_ip,
            host_ip: &ctx.host_ip,
        };
        match volumes::materialize(&src, &pod_dir).await {
            Ok(v) => break v,
            Err(e) => {
                shared
                    .update(|rt| {
                        for c in rt.containers.iter_mut().chain(rt.init.iter_mut()) {
                            c.state = State::Waiting {
                                reason: "CreateContainerConfigError".into(),
                                message: e.clone(),
                            };
                        }
                    })
                    .await;
                if wait_or_stop(&stop, Duration::from_secs(2)).await {
                    return;
                }
            }
        }
    };
    let volumes = Arc::new(volumes);

    for (i, c) in spec.init_containers.iter().flatten().enumerate() {
        // Init containers run one at a time, to success; "Always" means
        // "OnFailure" for them, as in Kubernetes.
        let init_policy = if policy.as_deref() == Some("Never") {
            "Never"
        } else {
            "OnFailure"
        };
        let ok = run_container(
            ctx.clone(),
            pod.clone(),
            pod_dir.clone(),
            pod_ip.clone(),
            volumes.clone(),
            c.clone(),
            Slot::Init(i),
            Some(init_policy.to_string()),
            shared.clone(),
            stop.clone(),
        )
        .await;
        if !ok {
            return;
        }
    }
    shared.update(|rt| rt.init_done = true).await;

    let tasks: Vec<_> = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| {
            tokio::spawn(run_container(
                ctx.clone(),
                pod.clone(),
                pod_dir.clone(),
                pod_ip.clone(),
                volumes.clone(),
                c.clone(),
                Slot::Main(i),
                policy.clone(),
                shared.clone(),
                stop.clone(),
            ))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
}

#[derive(Clone, Copy)]
enum Slot {
    Init(usize),
    Main(usize),
}

impl Slot {
    fn get<'a>(&self, rt: &'a mut PodRuntime) -> Option<&'a mut ContainerRuntime> {
        match *self {
            Slot::Init(i) => rt.init.get_mut(i),
            Slot::Main(i) => rt.containers.get_mut(i),
        }
    }
}

/// Sleeps `d`, or returns `true` early when a stop is requested.
async fn wait_or_stop(stop: &StopSignal, d: Duration) -> bool {
    let mut stop = stop.clone();
    if stop.borrow().is_some() {
        return true;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = stop.changed() => true,
    }
}

/// Runs one container, restarting it by the policy, until it finishes for
/// good or a stop is requested. Returns whether it ended successfully.
#[allow(clippy::too_many_arguments)]
async fn run_container(
    ctx: Arc<AgentCtx>,
    pod: Pod,
    pod_dir: PathBuf,
    pod_ip: String,
    volumes: Arc<Materialized>,
    c: Container,
    slot: Slot,
    policy: Option<String>,
    shared: Arc<Shared>,
    stop: StopSignal,
) -> bool {
    let (ns, name, _) = ids(&pod);
    let log = ctx.log_path(&ns, &name, &c.name);
    loop {
        if stop.borrow().is_some() {
            return false;
        }
        let launch = match prepare(&ctx, &pod, &c, &pod_dir, &pod_ip, &volumes, &log).await {
            Ok(l) => l,
            Err((reason, message)) => {
                shared
                    .update(|rt| {
                        if let Some(s) = slot.get(rt) {
                            s.state = State::Waiting {
                                reason: reason.clone(),
                                message: message.clone(),
                            }
                        }
                    })
                    .await;
                if wait_or_stop(&stop, Duration::from_secs(2)).await {
                    return false;
                }
                continue;
            }
        };
        let mut child = match launch.spawn() {
            Ok(child) => child,
            Err(e) => {
                let msg = format!("starting {}: {e}", launch.program.display());
                shared
                    .update(|rt| {
                        if let Some(s) = slot.get(rt) {
                            s.state = State::Waiting {
                                reason: "RunContainerError".into(),
                                message: msg.clone(),
                            }
                        }
                    })
                    .await;
                if wait_or_stop(&stop, Duration::from_secs(2)).await {
                    return false;
                }
                continue;
            }
        };
        let pid = child.id().unwrap_or(0);
        ctx.record_pid(&pod_dir, &c.name, pid);
        let started_at = chrono::Utc::now();
        let started = Instant::now();
        info!(container = %c.name, pid, "container started");
        ctx.event(
            &pod,
            false,
            "Started",
            &format!("Started container {} as process {pid}", c.name),
        )
        .await;
        shared
            .update(|rt| {
                if let Some(s) = slot.get(rt) {
                    s.state = State::Running { started_at };
                    s.ready = c.readiness_probe.is_none();
                }
            })
            .await;

        let probes = tokio::spawn(probe_loop(
            ctx.clone(),
            pod.clone(),
            c.clone(),
            pod_ip.clone(),
            pid,
            slot,
            shared.clone(),
        ));
        let mut stop_rx = stop.clone();
        let exit = tokio::select! {
            status = child.wait() => status.ok(),
            _ = async { while stop_rx.borrow().is_none() { if stop_rx.changed().await.is_err() { break } } } => {
                let grace = (*stop_rx.borrow()).unwrap_or(Duration::from_secs(2));
                signal_group(pid, Signal::SIGTERM);
                match tokio::time::timeout(grace, child.wait()).await {
                    Ok(status) => status.ok(),
                    Err(_) => {
                        warn!(container = %c.name, ?grace, "did not stop in its grace period; killing");
                        signal_group(pid, Signal::SIGKILL);
                        child.wait().await.ok()
                    }
                }
            }
        };
        probes.abort();
        // Anything the container left in its group goes with it.
        signal_group(pid, Signal::SIGKILL);
        launch.cleanup().await;
        let code = exit.map(exit_code).unwrap_or(-1);
        let stopping = stop.borrow().is_some();
        let restart = !stopping && spec::should_restart(policy.as_deref(), code);
        let finished_at = chrono::Utc::now();
        let reason = if code == 0 { "Completed" } else { "Error" }.to_string();
        info!(container = %c.name, code, restart, "container exited");
        shared
            .update(|rt| {
                if let Some(s) = slot.get(rt) {
                    s.ready = false;
                    s.state = State::Terminated {
                        exit_code: code,
                        reason,
                        started_at,
                        finished_at,
                    };
                    s.finished = !restart;
                }
            })
            .await;
        if !restart {
            return code == 0;
        }
        if started.elapsed() >= spec::BACKOFF_RESET_AFTER {
            shared.update(|_| {}).await;
        }
        let restarts = {
            let mut rt = shared.rt.lock().await;
            let Some(s) = slot.get(&mut rt) else {
                return false;
            };
            s.last = Some(s.state.clone());
            s.restart_count += 1;
            s.restart_count
        };
        let backoff = if started.elapsed() >= spec::BACKOFF_RESET_AFTER {
            spec::restart_backoff(0)
        } else {
            spec::restart_backoff(restarts.saturating_sub(1))
        };
        let msg = format!(
            "back-off {backoff:?} restarting failed container={} pod={name}",
            c.name
        );
        ctx.event(&pod, true, "BackOff", &msg).await;
        shared
            .update(|rt| {
                if let Some(s) = slot.get(rt) {
                    s.state = State::Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: msg.clone(),
                    }
                }
            })
            .await;
        if wait_or_stop(&stop, backoff).await {
            return false;
        }
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Readiness and liveness probing for one run of a container. A liveness
/// failure kills the run; the restart loop does the rest.
async fn probe_loop(
    ctx: Arc<AgentCtx>,
    pod: Pod,
    c: Container,
    pod_ip: String,
    pid: u32,
    slot: Slot,
    shared: Arc<Shared>,
) {
    let readiness = c.readiness_probe.clone();
    let liveness = c.liveness_probe.clone();
    if readiness.is_none() && liveness.is_none() {
        return;
    }
    let period = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.period_seconds)
            .unwrap_or(10)
            .max(1)
            .unsigned_abs()
    };
    let delay = |p: &Option<k8s_openapi::api::core::v1::Probe>| {
        p.as_ref()
            .and_then(|p| p.initial_delay_seconds)
            .unwrap_or(0)
            .max(0)
            .unsigned_abs()
    };
    let started = Instant::now();
    let tick = Duration::from_millis(250);
    let mut next_ready = started + Duration::from_secs(delay(&readiness).into());
    let mut next_live = started + Duration::from_secs(delay(&liveness).into());
    let (mut ready_ok, mut ready_fail, mut live_fail) = (0i32, 0i32, 0i32);
    loop {
        let now = Instant::now();
        if let Some(p) = &readiness
            && now >= next_ready
        {
            next_ready = now + Duration::from_secs(period(&readiness).into());
            let res = super::probe::check(p, &c, &pod_ip).await;
            let was = {
                let mut rt = shared.rt.lock().await;
                slot.get(&mut rt).map(|s| s.ready).unwrap_or(false)
            };
            match res {
                Ok(()) => {
                    ready_ok += 1;
                    ready_fail = 0;
                }
                Err(e) => {
                    ready_fail += 1;
                    ready_ok = 0;
                    if was || ready_fail == 1 {
                        tracing::debug!(container = %c.name, error = %e, "readiness probe failed");
                    }
                }
            }
            let now_ready = if was {
                ready_fail < p.failure_threshold.unwrap_or(3)
            } else {
                ready_ok >= p.success_threshold.unwrap_or(1)
            };
            if now_ready != was {
                shared
                    .update(|rt| {
                        if let Some(s) = slot.get(rt) {
                            s.ready = now_ready
                        }
                    })
                    .await;
            }
        }
        if let Some(p) = &liveness
            && now >= next_live
        {
            next_live = now + Duration::from_secs(period(&liveness).into());
            match super::probe::check(p, &c, &pod_ip).await {
                Ok(()) => live_fail = 0,
                Err(e) => {
                    live_fail += 1;
                    if live_fail >= p.failure_threshold.unwrap_or(3) {
                        let msg = format!(
                            "Container {} failed liveness probe ({e}), will be restarted",
                            c.name
                        );
                        ctx.event(&pod, true, "Unhealthy", &msg).await;
                        signal_group(pid, Signal::SIGTERM);
                        let grace = p
                            .termination_grace_period_seconds
                            .or(pod
                                .spec
                                .as_ref()
                                .and_then(|s| s.termination_grace_period_seconds))
                            .unwrap_or(30)
                            .max(0)
                            .unsigned_abs();
                        tokio::time::sleep(Duration::from_secs(grace)).await;
                        signal_group(pid, Signal::SIGKILL);
                        return;
                    }
                }
            }
        }
        tokio::time::sleep(tick).await;
    }
}

/// Everything needed to start the container; an error is a waiting reason
/// and message for its status.
async fn prepare(
    ctx: &AgentCtx,
    pod: &Pod,
    c: &Container,
    pod_dir: &Path,
    pod_ip: &str,
    volumes: &Materialized,
    log: &Path,
) -> Result<Launch, (String, String)> {
    let image = c.image.clone().unwrap_or_default();
    let env = resolve_env(ctx, pod, c, pod_ip)
        .await
        .map_err(|e| ("CreateContainerConfigError".to_string(), e))?;
    let use_podman = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(PODMAN_ANNOTATION))
        .is_some_and(|v| v == "podman");
    let mut argv: Vec<String> = Vec::new();
    let (program, podman) = if use_podman {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = format!(
            "millrace-{}-{}",
            uid.chars().take(13).collect::<String>(),
            c.name
        );
        let command = c
            .command
            .as_ref()
            .filter(|c| !c.is_empty())
            .map(|cmd| cmd.iter().map(|a| spec::expand(a, &env)).collect());
        (
            PathBuf::new(),
            Some(Podman {
                image: image.clone(),
                name,
                command,
            }),
        )
    } else {
        (program_for(ctx, &image, c, &mut argv)?, None)
    };
    argv.extend(c.args.iter().flatten().cloned());
    let argv = argv.iter().map(|a| spec::expand(a, &env)).collect();

    let mut mounts = Vec::new();
    for m in c.volume_mounts.iter().flatten() {
        let dir = volumes.get(&m.name).ok_or_else(|| {
            (
                "CreateContainerConfigError".to_string(),
                format!("volume mount {:?} names no volume", m.name),
            )
        })?;
        let source = match m.sub_path.as_deref() {
            Some(sub) if !sub.is_empty() => dir.join(sub),
            _ => dir.clone(),
        };
        mounts.push(Mount {
            source,
            target: m.mount_path.clone(),
            read_only: m.read_only.unwrap_or(false),
        });
    }
    let (user, group) = spec::run_as(pod, c);
    Ok(Launch {
        pod_dir: pod_dir.to_path_buf(),
        program,
        args: argv,
        env,
        mounts,
        workdir: c.working_dir.clone(),
        user,
        group,
        read_only_root: spec::read_only_root(c),
        log: log.to_path_buf(),
        podman,
    })
}

/// The local binary an image stands for, and the leading arguments its
/// `command` adds (process mode).
fn program_for(
    ctx: &AgentCtx,
    image: &str,
    c: &Container,
    argv: &mut Vec<String>,
) -> Result<PathBuf, (String, String)> {
    let mapped = ctx.images.resolve(image).cloned().ok_or_else(|| {
        (
            "ErrImageNeverPull".to_string(),
            format!(
                "image {image:?} is not in the node agent's image map (known: {})",
                ctx.images.names().join(", ")
            ),
        )
    })?;
    if !is_file(&mapped) {
        return Err((
            "ErrImageNeverPull".into(),
            format!(
                "image {image:?} maps to {}, which does not exist (build it first)",
                mapped.display()
            ),
        ));
    }
    match c.command.as_deref() {
        None | Some([]) => Ok(mapped),
        Some([first, rest @ ..]) => {
            argv.extend(rest.iter().cloned());
            let base = Path::new(first)
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let mapped_base = mapped
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            if base == mapped_base || base == spec::image_key(image) {
                Ok(mapped)
            } else if Path::new(first).is_absolute() && is_file(Path::new(first)) {
                Ok(PathBuf::from(first))
            } else {
                Err((
                    "RunContainerError".into(),
                    format!(
                        "command {first:?} is neither the image's binary nor a program on the node"
                    ),
                ))
            }
        }
    }
}

/// The container's environment: what every Pod gets, then `envFrom`, then
/// `env` (later wins), with `$(VAR)` references expanded.
async fn resolve_env(
    ctx: &AgentCtx,
    pod: &Pod,
    c: &Container,
    pod_ip: &str,
) -> Result<Vec<(String, String)>, String> {
    let ns = pod
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let mut env: Vec<(String, String)> = vec![
        (
            "HOSTNAME".into(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        ("HOME".into(), "/".into()),
        ("KUBERNETES_SERVICE_HOST".into(), ctx.apiserver_host.clone()),
        (
            "KUBERNETES_SERVICE_PORT".into(),
            ctx.apiserver_port.to_string(),
        ),
        (
            "KUBERNETES_SERVICE_PORT_HTTPS".into(),
            ctx.apiserver_port.to_string(),
        ),
    ];
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let secrets: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    for from in c.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        if let Some(r) = &from.config_map_ref {
            match cms.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(cm) => env.extend(
                    cm.data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (format!("{prefix}{k}"), v)),
                ),
                None if r.optional == Some(true) => {}
                None => return Err(format!("configmap {:?} not found", r.name)),
            }
        }
        if let Some(r) = &from.secret_ref {
            match secrets.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                Some(s) => env.extend(s.data.unwrap_or_default().into_iter().map(|(k, v)| {
                    (
                        format!("{prefix}{k}"),
                        String::from_utf8_lossy(&v.0).into_owned(),
                    )
                })),
                None if r.optional == Some(true) => {}
                None => return Err(format!("secret {:?} not found", r.name)),
            }
        }
    }
    for e in c.env.iter().flatten() {
        let value = if let Some(v) = &e.value {
            spec::expand(v, &env)
        } else if let Some(src) = &e.value_from {
            if let Some(f) = &src.field_ref {
                spec::field_ref(pod, &f.field_path, pod_ip, &ctx.host_ip)?
            } else if let Some(r) = &src.secret_key_ref {
                match secrets.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                    Some(s) => match s.data.unwrap_or_default().get(&r.key) {
                        Some(v) => String::from_utf8_lossy(&v.0).into_owned(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in Secret {}/{}",
                                r.key, ns, r.name
                            ));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("secret {:?} not found", r.name)),
                }
            } else if let Some(r) = &src.config_map_key_ref {
                match cms.get_opt(&r.name).await.map_err(|e| e.to_string())? {
                    Some(cm) => match cm.data.unwrap_or_default().get(&r.key) {
                        Some(v) => v.clone(),
                        None if r.optional == Some(true) => continue,
                        None => {
                            return Err(format!(
                                "couldn't find key {} in ConfigMap {}/{}",
                                r.key, ns, r.name
                            ));
                        }
                    },
                    None if r.optional == Some(true) => continue,
                    None => return Err(format!("configmap {:?} not found", r.name)),
                }
            } else {
                return Err(format!("env {:?}: unsupported valueFrom", e.name));
            }
        } else {
            String::new()
        };
        env.push((e.name.clone(), value));
    }
    Ok(env)
}
