//! The verdict: what was accepted against what is in the topic and the
//! table, per phase's window and over the whole run, written to
//! `results.json` and `results.md`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;

use serde_json::{Value, json};

use super::push::{PushLog, is_push_id, is_update_id, push_id};
use millrace_testsupport::{Deadline, poll_until};

use super::readback::{TopicRecord, read_topic, table_ids};
use super::watch::ConditionChange;
use super::{Harness, Phase, results_dir};

/// What the test asserts on; the rest is in the results files.
pub struct Verdict {
    /// Records accepted over the whole run.
    pub accepted: usize,
    pub failures: Vec<String>,
}

/// Everything read back at the end, for the windows to be judged against.
struct Seen {
    /// When each accepted record was accepted: its 202 (push), or its first
    /// CreateTime in the topic (generator).
    accepted: HashMap<u128, i64>,
    topic_keys: HashMap<u128, TopicRecord>,
    rows: HashMap<u128, u32>,
    push_log: PushLog,
    /// (time, reason) of each dead-lettered record.
    dead: Vec<(i64, String)>,
    changes: Vec<ConditionChange>,
}

impl Harness {
    /// Stops the watchers, reads the topic, the dead-letter topic and the
    /// table, and judges each phase's window; writes and prints the results.
    pub async fn verdict(&mut self) -> anyhow::Result<Verdict> {
        self.stop_watching().await;
        let (w, tp, dq) = (self.world.clone(), self.sc.topic.clone(), self.dlq.clone());
        let (topic_keys, _) = tokio::task::spawn_blocking(move || read_topic(&w, &tp)).await??;
        let w = self.world.clone();
        let (_, dead) = tokio::task::spawn_blocking(move || read_topic(&w, &dq)).await??;
        // A scan of the whole table at LOCAL_QUORUM can time out on a
        // busy machine (a page needs two replicas in time): it is made
        // again, whole, until one completes.
        let rows = poll_until(
            "a complete scan of the table",
            Deadline::secs(600),
            || async { table_ids(&self.session, &self.table).await.map(Some) },
        )
        .await?;
        let push_log = std::mem::take(&mut *self.push.lock().unwrap_or_else(|p| p.into_inner()));
        let changes = self
            .background
            .conditions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();

        let mut accepted: HashMap<u128, i64> = HashMap::new();
        for (first, n, at) in &push_log.accepted {
            for i in *first..*first + u64::from(*n) {
                let id = push_id(i).as_u128();
                let e = accepted.entry(id).or_insert(*at);
                *e = (*e).min(*at);
            }
        }
        let push_accepted = accepted.len();
        for (id, rec) in &topic_keys {
            if !is_push_id(*id) {
                accepted.insert(*id, rec.first_ms);
            }
        }
        let generated = accepted.len() - push_accepted;
        let seen = Seen {
            accepted,
            topic_keys,
            rows,
            push_log,
            dead,
            changes,
        };
        let Seen {
            accepted,
            topic_keys,
            rows,
            push_log,
            dead,
            ..
        } = &seen;
        let sent: HashSet<u128> = (0..push_log.sent_upto)
            .chain(push_log.updates_sent.keys().copied())
            .map(|i| push_id(i).as_u128())
            .collect();
        let unexpected: Vec<u128> = rows
            .keys()
            .filter(|id| !accepted.contains_key(id) && !sent.contains(id))
            .copied()
            .collect();

        let push_not_in_topic = accepted
            .keys()
            .filter(|id| is_push_id(**id) && !topic_keys.contains_key(id))
            .count();

        let mut table_rows = Vec::new();
        let mut failures = Vec::new();
        let updates = self.judge_updates(push_log, &mut failures).await?;
        for p in &self.phases {
            let (row, failed) = judge_window(p, &seen);
            table_rows.push(row);
            failures.extend(failed);
        }
        if !unexpected.is_empty() {
            failures.push(format!("{} rows nobody sent", unexpected.len()));
        }
        if push_not_in_topic > 0 {
            failures.push(format!(
                "{push_not_in_topic} records got a 202 but are not in the topic"
            ));
        }
        if !dead.is_empty() {
            failures.push(format!("{} records dead-lettered", dead.len()));
        }
        if !push_log.gave_up.is_empty() {
            failures.push(format!(
                "{} push batches never got a 202",
                push_log.gave_up.len()
            ));
        }
        // Each lost record is looked up once more by its key, so a scan that
        // missed a row is told apart from a row that is not there.
        let mut lost_records = Vec::new();
        for id in accepted.keys().filter(|id| !rows.contains_key(id)).take(50) {
            let uuid = uuid::Uuid::from_u128(*id);
            let there = self.row_exists(uuid).await.ok();
            let place = topic_keys.get(id);
            lost_records.push(json!({
                "id": uuid.to_string(),
                "source": if is_push_id(*id) { "push" } else { "generator" },
                "accepted_at": chrono::DateTime::from_timestamp_millis(accepted[id]).map(|t| t.to_rfc3339()),
                "topic_partition": place.map(|p| p.partition),
                "topic_offset": place.map(|p| p.offset),
                "copies_in_topic": place.map(|p| p.count),
                "found_by_key_lookup": there,
            }));
        }
        let total_lost = accepted.keys().filter(|id| !rows.contains_key(id)).count();
        let results = json!({
            "finished_at": chrono::Utc::now().to_rfc3339(),
            "duration_s": self.run_started.elapsed().as_secs(),
            "records_accepted": accepted.len(),
            "pushed_202": push_accepted,
            "generated": generated,
            "topic_messages": topic_keys.values().map(|r| u64::from(r.count)).sum::<u64>(),
            "rows": rows.len(),
            "lost": total_lost,
            "unexpected_rows": unexpected.len(),
            "pushed_202_not_in_topic": push_not_in_topic,
            "dead_lettered": dead.len(),
            "dead_letter_reasons": dead.iter().map(|(_, r)| r.clone()).collect::<HashSet<_>>(),
            "push_batches_given_up": push_log.gave_up.len(),
            "lost_records": lost_records,
            "peak_world_rss_mib": self.background.peak_mib.load(Ordering::Relaxed),
            "updates": updates,
            "phases": table_rows,
            "failures": failures,
        });
        write_results(&results)?;
        println!("{}", serde_json::to_string_pretty(&results)?);
        Ok(Verdict {
            accepted: accepted.len(),
            failures,
        })
    }
}

impl Harness {
    /// The updater's keys read back one by one: each must be a row whose
    /// `version` is the latest it was accepted (202) with, or a later one
    /// sent without an answer (Kafka may have taken it). `None` when the
    /// updater did not run.
    async fn judge_updates(
        &self,
        log: &PushLog,
        failures: &mut Vec<String>,
    ) -> anyhow::Result<Option<Value>> {
        if log.updates_sent.is_empty() {
            return Ok(None);
        }
        let read = self
            .session
            .prepare(format!("SELECT version FROM {} WHERE id = ?", self.table))
            .await?;
        let (mut latest, mut ahead, mut stale, mut missing) = (0, 0, 0, 0);
        let mut stale_keys = Vec::new();
        for (key, (accepted, _)) in &log.updates_accepted {
            let id = push_id(*key);
            debug_assert!(is_update_id(id.as_u128()));
            let row = self
                .session
                .execute_unpaged(&read, (id,))
                .await?
                .into_rows_result()?
                .maybe_first_row::<(Option<i64>,)>()?;
            let sent = log.updates_sent.get(key).copied().unwrap_or(*accepted);
            match row.and_then(|(v,)| v).map(|v| v as u64) {
                None => missing += 1,
                Some(v) if v == *accepted => latest += 1,
                Some(v) if v > *accepted && v <= sent => ahead += 1,
                Some(v) => {
                    stale += 1;
                    if stale_keys.len() < 20 {
                        stale_keys.push(json!({"id": id.to_string(), "row_version": v,
                                               "latest_accepted": accepted, "latest_sent": sent}));
                    }
                }
            }
        }
        if missing > 0 {
            failures.push(format!("{missing} updated keys are not rows"));
        }
        if stale > 0 {
            failures.push(format!(
                "{stale} updated keys are rows without their latest accepted version"
            ));
        }
        Ok(Some(json!({
            "keys_accepted": log.updates_accepted.len(),
            "rows_latest": latest,
            "rows_ahead": ahead,
            "rows_stale": stale,
            "rows_missing": missing,
            "stale_examples": stale_keys,
            "highest_version_accepted": log.updates_accepted.values().map(|(v, _)| *v).max(),
        })))
    }
}

/// One phase's row of the results table, and its failures: records
/// accepted in its window that are not rows, or are more than one row;
/// 429/503 answers without Retry-After; the phase's own failures.
fn judge_window(p: &Phase, seen: &Seen) -> (Value, Vec<String>) {
    let Seen {
        accepted,
        topic_keys,
        rows,
        push_log,
        dead,
        changes,
    } = seen;
    let mut failures = Vec::new();
    let ids: Vec<u128> = accepted
        .iter()
        .filter(|(_, at)| **at >= p.start_ms && **at < p.end_ms.max(p.start_ms + 1))
        .map(|(id, _)| *id)
        .collect();
    let found = ids.iter().filter(|id| rows.contains_key(id)).count();
    let lost = ids.len() - found;
    let dup_rows: u32 = ids
        .iter()
        .filter_map(|id| rows.get(id))
        .map(|n| n.saturating_sub(1))
        .sum();
    let resent: u32 = ids
        .iter()
        .filter_map(|id| topic_keys.get(id))
        .map(|r| r.count.saturating_sub(1))
        .sum();
    let pushed = ids.iter().filter(|id| is_push_id(**id)).count();
    let refusals: Vec<_> = push_log
        .refusals
        .iter()
        .filter(|(at, _, _)| *at >= p.start_ms && *at < p.end_ms)
        .collect();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for (_, s, _) in &refusals {
        *by_status.entry(*s).or_default() += 1;
    }
    let busy_without_retry_after = refusals
        .iter()
        .filter(|(_, s, ra)| (*s == 429 || *s == 503) && !ra)
        .count();
    let dead_lettered = dead
        .iter()
        .filter(|(at, _)| *at >= p.start_ms && *at < p.end_ms)
        .count();
    let conditions_seen: Vec<String> = changes
        .iter()
        .filter(|c| c.at_ms >= p.start_ms && c.at_ms < p.end_ms)
        .map(|c| {
            format!(
                "+{:.1}s {}={} ({})",
                (c.at_ms - p.injected_ms.unwrap_or(p.start_ms)) as f64 / 1000.0,
                c.type_,
                c.status,
                c.reason
            )
        })
        .collect();
    if lost > 0 {
        failures.push(format!("{}: {lost} accepted records are not rows", p.name));
    }
    if dup_rows > 0 {
        failures.push(format!("{}: {dup_rows} duplicate rows", p.name));
    }
    if busy_without_retry_after > 0 {
        failures.push(format!(
            "{}: {busy_without_retry_after} 429/503 answers without Retry-After",
            p.name
        ));
    }
    if p.failed {
        failures.push(format!("{}: {}", p.name, p.notes.join("; ")));
    }
    let row = json!({
        "fault": p.name,
        "what": p.what,
        "window_s": (p.end_ms - p.start_ms) as f64 / 1000.0,
        "records_accepted": ids.len(),
        "pushed_202": pushed,
        "generated": ids.len() - pushed,
        "rows_found": found,
        "lost": lost,
        "duplicate_rows": dup_rows,
        "resent_copies_in_topic": resent,
        "dead_lettered": dead_lettered,
        "push_refusals": by_status.iter().map(|(s, n)| (if *s == 0 { "conn-error".to_string() } else { s.to_string() }, *n)).collect::<BTreeMap<_, _>>(),
        "busy_without_retry_after": busy_without_retry_after,
        "recovery_s": p.recovery.map(|d| (d.as_secs_f64() * 10.0).round() / 10.0),
        "sink_write_retries": p.sink_retries,
        "conditions_seen": conditions_seen,
        "notes": p.notes,
        "ok": lost == 0 && dup_rows == 0 && !p.failed && busy_without_retry_after == 0,
    });
    (row, failures)
}

fn write_results(results: &Value) -> anyhow::Result<()> {
    let dir = results_dir();
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("results.json"),
        serde_json::to_vec_pretty(results)?,
    )?;
    let mut md = String::new();
    md.push_str(&format!(
        "Fault suite run finished {} in {} s: {} records accepted ({} pushed with a 202, {} generated), {} rows, {} lost, {} unexpected rows, {} dead-lettered, peak memory of the world {} MiB.\n\n",
        results["finished_at"].as_str().unwrap_or_default(),
        results["duration_s"],
        results["records_accepted"],
        results["pushed_202"],
        results["generated"],
        results["rows"],
        results["lost"],
        results["unexpected_rows"],
        results["dead_lettered"],
        results["peak_world_rss_mib"],
    ));
    md.push_str("| fault | records accepted | rows found | lost | duplicates | recovery time | conditions seen | push refusals | ok |\n|---|---:|---:|---:|---:|---:|---|---|---|\n");
    for p in results["phases"].as_array().into_iter().flatten() {
        let seen: Vec<&str> = p["conditions_seen"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        md.push_str(&format!(
            "| {} | {} ({} push, {} gen) | {} | {} | {} | {} | {} | {} | {} |\n",
            p["fault"].as_str().unwrap_or_default(),
            p["records_accepted"],
            p["pushed_202"],
            p["generated"],
            p["rows_found"],
            p["lost"],
            p["duplicate_rows"],
            p["recovery_s"]
                .as_f64()
                .map(|s| format!("{s:.1} s"))
                .unwrap_or_else(|| "-".into()),
            if seen.is_empty() {
                "none".to_string()
            } else {
                seen.join("; ")
            },
            p["push_refusals"],
            if p["ok"] == json!(true) {
                "yes"
            } else {
                "**no**"
            },
        ));
    }
    if let Some(u) = results["updates"].as_object() {
        md.push_str(&format!(
            "\nUpdated keys (the same keys pushed again with a higher `version`): {} keys accepted, highest version {}; rows with the latest accepted version {}, with a later one sent but not answered 202 {}, stale {}, missing {}.\n",
            u["keys_accepted"], u["highest_version_accepted"], u["rows_latest"], u["rows_ahead"],
            u["rows_stale"], u["rows_missing"],
        ));
    }
    md.push_str("\nNotes:\n\n");
    for p in results["phases"].as_array().into_iter().flatten() {
        let notes: Vec<&str> = p["notes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        md.push_str(&format!(
            "- {}: {}\n",
            p["fault"].as_str().unwrap_or_default(),
            notes.join("; ")
        ));
    }
    let failures: Vec<&str> = results["failures"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if !failures.is_empty() {
        md.push_str("\nFailures:\n\n");
        for f in failures {
            md.push_str(&format!("- {f}\n"));
        }
    }
    std::fs::write(dir.join("results.md"), md)?;
    Ok(())
}
