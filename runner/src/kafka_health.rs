//! Whether each of the runner's Kafka clients still knows its cluster, for
//! the liveness probe (`/healthz`).
//!
//! librdkafka (2.10 and later) drops every broker a metadata response does
//! not list. A broker that the KRaft controller fenced for a moment is in no
//! response: a client that asks just then is left without a broker, and no
//! later re-bootstrap brings one back (confluentinc/librdkafka#5301). We
//! saw it on kind: the controller stalled for 8 s under load, fenced its
//! broker for under two seconds, and the demo's ingest and sink then kept
//! zero connections to a healthy broker, for as long as their Pods lived.
//! A client's statistics say so: no broker learned from the cluster. A
//! runner one of whose clients has been so for [`LOST_AFTER`] fails
//! `/healthz`, and the kubelet restarts it with fresh clients; what it had
//! not handed to Kafka or Cassandra yet is read or sent again, as after any
//! restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::statistics::Statistics;
use tracing::{debug, error};

/// How long a client may know no broker before the runner is not live, by
/// default (`--kafka-lost-after-seconds`): longer than librdkafka's own
/// re-bootstrap trigger (5 minutes), so that it gets its chance, and than a
/// client's first metadata request takes.
pub const LOST_AFTER: Duration = Duration::from_secs(360);

/// The statistics interval the watched clients are created with.
pub const STATISTICS_INTERVAL_MS: &str = "5000";

/// One Kafka client's view of its cluster, fed by its statistics.
pub struct ClientWatch {
    name: &'static str,
    started: Instant,
    /// When its statistics last listed a broker learned from the cluster,
    /// in milliseconds since `started` (0: never, which counts from start).
    last_known_ms: AtomicU64,
}

impl ClientWatch {
    /// Takes in one statistics report of the client.
    pub fn observe(&self, stats: &Statistics) {
        debug!(
            client = self.name,
            brokers = ?stats
                .brokers
                .values()
                .map(|b| (&b.name, &b.source, &b.state))
                .collect::<Vec<_>>(),
            "kafka client statistics"
        );
        if knows_cluster(stats) {
            self.known_at(self.started.elapsed());
        }
    }

    fn known_at(&self, since_start: Duration) {
        let ms = u64::try_from(since_start.as_millis()).unwrap_or(u64::MAX);
        self.last_known_ms.fetch_max(ms, Ordering::Relaxed);
    }

    /// How long the client has known no broker, at `since_start` after it
    /// was made.
    fn lost_for(&self, since_start: Duration) -> Duration {
        since_start.saturating_sub(Duration::from_millis(
            self.last_known_ms.load(Ordering::Relaxed),
        ))
    }
}

/// Whether a client knows any broker of the cluster: one it learned from a
/// metadata response. The bootstrap servers and the logical coordinator
/// handles are not the cluster's brokers.
pub fn knows_cluster(stats: &Statistics) -> bool {
    stats.brokers.values().any(|b| b.source == "learned")
}

/// The watches of all the runner's Kafka clients.
pub struct ClientHealth {
    clients: Mutex<Vec<Arc<ClientWatch>>>,
    lost_after: Duration,
}

impl Default for ClientHealth {
    fn default() -> Self {
        Self::new(LOST_AFTER)
    }
}

impl ClientHealth {
    /// Health that calls a client lost once it has known no broker for
    /// `lost_after`.
    pub fn new(lost_after: Duration) -> Self {
        Self {
            clients: Mutex::default(),
            lost_after,
        }
    }

    /// A watch for a new client, named for the log and `/healthz`.
    pub fn watch(&self, name: &'static str) -> Arc<ClientWatch> {
        let watch = Arc::new(ClientWatch {
            name,
            started: Instant::now(),
            last_known_ms: AtomicU64::new(0),
        });
        self.clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(watch.clone());
        watch
    }

    /// `Err` naming a client that has known no broker for `lost_after`.
    pub fn check(&self) -> Result<(), String> {
        let clients = self
            .clients
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for client in clients.iter() {
            let lost = client.lost_for(client.started.elapsed());
            if lost >= self.lost_after {
                let why = format!(
                    "the {} Kafka client has known no broker for {} s: the runner needs a restart for a fresh client",
                    client.name,
                    lost.as_secs()
                );
                error!("{why}");
                return Err(why);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(brokers: &[(&str, &str, i32)]) -> Statistics {
        let brokers: serde_json::Map<String, serde_json::Value> = brokers
            .iter()
            .map(|(source, state, nodeid)| {
                (
                    format!("b{nodeid}{source}"),
                    serde_json::json!({
                        "name": format!("kafka:9092/{nodeid}"), "nodeid": nodeid,
                        "nodename": "kafka:9092", "source": source, "state": state,
                        "stateage": 0, "outbuf_cnt": 0, "outbuf_msg_cnt": 0,
                        "waitresp_cnt": 0, "waitresp_msg_cnt": 0, "tx": 0, "txbytes": 0,
                        "txerrs": 0, "txretries": 0, "txidle": 0, "req_timeouts": 0,
                        "rx": 0, "rxbytes": 0, "rxerrs": 0, "rxcorriderrs": 0,
                        "rxpartial": 0, "rxidle": 0, "zbuf_grow": 0, "buf_grow": 0,
                        "wakeups": 0, "connects": 0, "disconnects": 0, "req": {}, "toppars": {},
                    }),
                )
            })
            .collect();
        serde_json::from_value(serde_json::json!({
            "name": "rdkafka#producer-1", "client_id": "rdkafka", "type": "producer",
            "ts": 0, "time": 0, "age": 0, "replyq": 0, "msg_cnt": 0, "msg_size": 0,
            "msg_max": 0, "msg_size_max": 0, "tx": 0, "tx_bytes": 0, "rx": 0,
            "rx_bytes": 0, "txmsgs": 0, "txmsg_bytes": 0, "rxmsgs": 0, "rxmsg_bytes": 0,
            "simple_cnt": 0, "metadata_cache_cnt": 0, "brokers": brokers, "topics": {},
        }))
        .expect("librdkafka's statistics shape")
    }

    #[test]
    fn only_a_broker_learned_from_the_cluster_counts() {
        assert!(knows_cluster(&stats(&[
            ("configured", "UP", -1),
            ("learned", "DOWN", 1)
        ])));
        // What the wedged clients had: a bootstrap handle, and the group
        // coordinator's logical one, but no broker of the cluster.
        assert!(!knows_cluster(&stats(&[
            ("configured", "UP", -1),
            ("logical", "UP", -1)
        ])));
        assert!(!knows_cluster(&stats(&[])));
    }

    #[test]
    fn a_client_is_lost_only_after_knowing_no_broker_for_the_whole_while() {
        let health = ClientHealth::default();
        let watch = health.watch("ingest");
        let at = Duration::from_secs;
        // Never knew one: counted from its start.
        assert_eq!(watch.lost_for(at(10)), at(10));
        watch.known_at(at(100));
        assert_eq!(watch.lost_for(at(100)), Duration::ZERO);
        assert_eq!(watch.lost_for(at(100) + LOST_AFTER), LOST_AFTER);
        // A later report wins; an earlier one arriving late does not.
        watch.known_at(at(400));
        watch.known_at(at(300));
        assert_eq!(watch.lost_for(at(500)), at(100));
        assert!(health.check().is_ok(), "a client just made is not lost");
    }

    #[test]
    fn the_statistics_of_a_client_that_knows_its_cluster_keep_it_live() {
        let health = ClientHealth::default();
        let watch = health.watch("sink");
        watch.observe(&stats(&[("learned", "UP", 1)]));
        assert!(watch.last_known_ms.load(Ordering::Relaxed) <= 1_000);
        let before = watch.last_known_ms.load(Ordering::Relaxed);
        watch.observe(&stats(&[("configured", "UP", -1)]));
        assert_eq!(watch.last_known_ms.load(Ordering::Relaxed), before);
    }
}
