//! What the suite watches while it runs: the pipeline's conditions (every
//! change, with its time) and the world's resident memory (the peak).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::api::Api;
use millrace_api::StreamPipeline;
use tokio::sync::watch;

use super::{PIPELINE, now_ms};

#[derive(Clone, Debug)]
pub struct ConditionChange {
    pub at_ms: i64,
    pub type_: String,
    pub status: String,
    pub reason: String,
}

pub async fn watch_conditions(
    api: Api<StreamPipeline>,
    into: Arc<Mutex<Vec<ConditionChange>>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut last: HashMap<String, (String, String)> = HashMap::new();
    loop {
        if let Ok(sp) = api.get(PIPELINE).await {
            for c in sp.status.map(|s| s.conditions).unwrap_or_default() {
                let now = (c.status.clone(), c.reason.clone());
                if last.get(&c.type_) != Some(&now) {
                    into.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(ConditionChange {
                            at_ms: now_ms(),
                            type_: c.type_.clone(),
                            status: c.status.clone(),
                            reason: c.reason.clone(),
                        });
                    last.insert(c.type_, now);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// Sums the resident memory of the world's daemons and its Pods' processes
/// every few seconds; keeps the peak (MiB).
pub async fn watch_memory(
    world_dir: PathBuf,
    peak: Arc<AtomicU64>,
    mut stop: watch::Receiver<bool>,
) {
    fn rss_kib(pid: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", pid.trim()))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.split_whitespace().next()?.parse().ok())
            })
            .unwrap_or(0)
    }
    fn pid_files(dir: &Path, out: &mut Vec<PathBuf>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                pid_files(&p, out);
            } else if p.parent().is_some_and(|d| d.ends_with("pids")) {
                out.push(p);
            }
        }
    }
    loop {
        let mut files = Vec::new();
        pid_files(&world_dir.join("pids"), &mut files);
        pid_files(&world_dir.join("node/pods"), &mut files);
        let total: u64 = files
            .iter()
            .filter_map(|f| std::fs::read_to_string(f).ok())
            .map(|pid| rss_kib(&pid))
            .sum();
        peak.fetch_max(total / 1024, Ordering::Relaxed);
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            _ = stop.changed() => return,
        }
    }
}
