//! The push clients: two loops sending batches of records with ids of their
//! own to the Service's ready Pods, retrying each batch until a 202, and the
//! log of what they were answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::Api;
use millrace_testsupport::kube_helpers::{pod_ip, pod_ready, pods};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::{PIPELINE, now_ms};

/// The high 64 bits of every pushed record's id; generated records have
/// random (v4) ids, so the two never mix.
const PUSH_ID_HI: u64 = 0xfa17_5eed_0000_4000;
pub const PUSH_CLIENTS: usize = 2;
const PUSH_BATCH: usize = 50;
/// The updater's keys are push ids from this number on, far above any id
/// the push clients reach.
const UPDATE_KEYS_FROM: u64 = 1 << 40;
/// How many keys the updater rewrites, a batch of `PUSH_BATCH` at a time.
const UPDATE_KEYS: u64 = 500;

pub fn push_id(n: u64) -> uuid::Uuid {
    uuid::Uuid::from_u128((u128::from(PUSH_ID_HI) << 64) | u128::from(n))
}

pub fn is_push_id(id: u128) -> bool {
    (id >> 64) as u64 == PUSH_ID_HI
}

fn push_record(n: u64) -> Value {
    json!({
        "gender": if n.is_multiple_of(2) { "female" } else { "male" },
        "name": {"first": format!("Ægir{n}"), "last": "Jónsson"},
        "location": {"street": {"number": n % 9999, "name": "Mill Lane"}, "city": "Truro",
                     "state": "Cornwall", "country": "United Kingdom", "postcode": "TR1 2AB"},
        "email": format!("push{n}@example.com"),
        "login": {"uuid": push_id(n).to_string(), "username": format!("push{n}")},
        "registered": {"date": "2016-03-01T08:00:00.000Z"},
        "phone": "01872 654321",
        "picture": {"medium": "https://randomuser.me/api/portraits/med/men/3.jpg"},
    })
}

/// What the push clients saw, shared between them.
#[derive(Default)]
pub struct PushLog {
    /// The updater's keys (id number) with the version and time of their
    /// latest 202.
    pub updates_accepted: HashMap<u64, (u64, i64)>,
    /// The updater's keys with the latest version ever sent (accepted or not).
    pub updates_sent: HashMap<u64, u64>,
    /// (first id number, count, time of the 202 in ms)
    pub accepted: Vec<(u64, u32, i64)>,
    /// Every id number ever sent.
    pub sent_upto: u64,
    /// (time ms, status) of every non-202 answer, and connection errors as 0.
    pub refusals: Vec<(i64, u16, bool)>,
    pub gave_up: Vec<(u64, u32)>,
}

/// The Service's endpoints, as kube-proxy would route: the ready Pods its
/// selector matches, else (a client keeps its last addresses) the others.
/// Read from the Pods, not EndpointSlices: the test world's Pod addresses
/// are loopback addresses, which the EndpointSlice controller leaves out.
async fn endpoints(client: &kube::Client, ns: &str, service: &str) -> Vec<String> {
    let services: Api<Service> = Api::namespaced(client.clone(), ns);
    let Ok(svc) = services.get(service).await else {
        return Vec::new();
    };
    let selector = svc
        .spec
        .and_then(|s| s.selector)
        .unwrap_or_default()
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    let api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let Ok(list) = pods(&api, &selector).await else {
        return Vec::new();
    };
    let (mut ready, mut other) = (Vec::new(), Vec::new());
    for pod in list {
        let Some(ip) = pod_ip(&pod) else { continue };
        let addr = format!("{ip}:{}", millrace_api::ports::PUSH);
        if pod_ready(&pod) {
            ready.push(addr);
        } else if pod.metadata.deletion_timestamp.is_none() {
            other.push(addr);
        }
    }
    if ready.is_empty() { other } else { ready }
}

pub async fn resolver(
    client: kube::Client,
    ns: String,
    into: Arc<Mutex<Vec<String>>>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let eps = endpoints(&client, &ns, PIPELINE).await;
        *into.lock().unwrap_or_else(|p| p.into_inner()) = eps;
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One push client: a batch of `PUSH_BATCH` new records every
/// `PUSH_BATCH / rate` seconds, each sent until a 202.
pub async fn push_client(
    n: usize,
    rate: f64,
    next: Arc<AtomicU64>,
    eps: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<PushLog>>,
    mut stop: watch::Receiver<bool>,
) {
    let http = http_client();
    let period = Duration::from_secs_f64(PUSH_BATCH as f64 / rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = n;
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let first = next.fetch_add(PUSH_BATCH as u64, Ordering::SeqCst);
        {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            l.sent_upto = l.sent_upto.max(first + PUSH_BATCH as u64);
        }
        let body: String = (first..first + PUSH_BATCH as u64)
            .map(|i| format!("{}\n", push_record(i)))
            .collect();
        match send_until_accepted(&http, &eps, &body, &log, &stop, &mut turn).await {
            Some(at) => log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .accepted
                .push((first, PUSH_BATCH as u32, at)),
            None => log
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .gave_up
                .push((first, PUSH_BATCH as u32)),
        }
    }
}

/// The updater: the same `UPDATE_KEYS` keys written again and again, a
/// batch of `PUSH_BATCH` every `PUSH_BATCH / rate` seconds, each time with
/// a higher `version`. A batch is sent until a 202 before the next, so a
/// key's versions reach Kafka in order, and the table must end with the
/// latest version accepted of every key (or a later one sent but not
/// answered 202).
pub async fn update_client(
    rate: f64,
    eps: Arc<Mutex<Vec<String>>>,
    log: Arc<Mutex<PushLog>>,
    mut stop: watch::Receiver<bool>,
) {
    let http = http_client();
    let period = Duration::from_secs_f64(PUSH_BATCH as f64 / rate);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut turn = 0;
    let mut round: u64 = 0;
    while !*stop.borrow() {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        let batches = UPDATE_KEYS / PUSH_BATCH as u64;
        let first = UPDATE_KEYS_FROM + (round % batches) * PUSH_BATCH as u64;
        let version = round / batches + 1;
        round += 1;
        let keys = first..first + PUSH_BATCH as u64;
        {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            for k in keys.clone() {
                l.updates_sent.insert(k, version);
            }
        }
        let body: String = keys
            .clone()
            .map(|k| {
                let mut r = push_record(k);
                r["version"] = json!(version);
                format!("{r}\n")
            })
            .collect();
        if let Some(at) = send_until_accepted(&http, &eps, &body, &log, &stop, &mut turn).await {
            let mut l = log.lock().unwrap_or_else(|p| p.into_inner());
            for k in keys {
                l.updates_accepted.insert(k, (version, at));
            }
        }
    }
}

/// Whether `id` is one of the updater's keys.
pub fn is_update_id(id: u128) -> bool {
    is_push_id(id) && {
        let n = id as u64;
        (UPDATE_KEYS_FROM..UPDATE_KEYS_FROM + UPDATE_KEYS).contains(&n)
    }
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

/// Sends `body` to the Service's Pods, the same records until a 202 (at
/// least once; the table dedups by key), for at most two minutes after the
/// test asks the clients to stop. The time of the 202, or `None` if it
/// gave up. Every other answer is logged as a refusal.
async fn send_until_accepted(
    http: &reqwest::Client,
    eps: &Mutex<Vec<String>>,
    body: &str,
    log: &Mutex<PushLog>,
    stop: &watch::Receiver<bool>,
    turn: &mut usize,
) -> Option<i64> {
    let mut give_up: Option<Instant> = None;
    loop {
        if give_up.is_none() && *stop.borrow() {
            give_up = Some(Instant::now() + Duration::from_secs(120));
        }
        if give_up.is_some_and(|t| Instant::now() > t) {
            return None;
        }
        let target = {
            let eps = eps.lock().unwrap_or_else(|p| p.into_inner());
            *turn += 1;
            (!eps.is_empty()).then(|| eps[*turn % eps.len()].clone())
        };
        let Some(target) = target else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let sent = http
            .post(format!("http://{target}/v1/records"))
            .header("content-type", "application/x-ndjson")
            .body(body.to_owned())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().as_u16() == 202 => return Some(now_ms()),
            Ok(r) => {
                let status = r.status().as_u16();
                let retry_after = r.headers().contains_key("retry-after");
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .refusals
                    .push((now_ms(), status, retry_after));
                if status != 429 && status != 503 {
                    eprintln!(
                        "push refused with {status}: {}",
                        r.text().await.unwrap_or_default()
                    );
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) => {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .refusals
                    .push((now_ms(), 0, false));
                eprintln!("push to {target} failed ({e}); retrying the same records");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
}
