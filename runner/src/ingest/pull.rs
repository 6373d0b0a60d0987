//! The scheduled pull (`httpPull`), the seed's Airflow job.
//!
//! One task per source runs the schedule, so two runs of a source never
//! overlap: a run that outlasts its slot makes the next one start at the
//! first slot after it. A run fetches the URL with retries (exponential
//! back-off with jitter, honouring `Retry-After` on 429 and 503), takes the
//! records at `recordsPath`, produces those that fit the table and
//! dead-letters the rest. Each GET goes through [`super::fetch`]: the
//! credential headers only to the configured URL's origin, only to the
//! addresses `allowedAddresses` permits, and at most `maxResponseBytes`.
//!
//! A run is done when Kafka has acknowledged every record it fetched: what
//! Kafka did not acknowledge is sent again with capped back-off, each key's
//! records from its first unacknowledged one on and in their fetched order,
//! so no key's versions are reordered. It keeps trying until its schedule's
//! next slot, and at least [`MIN_PRODUCE_PATIENCE`]; a run that still has
//! records Kafka did not take is recorded `Failed` with how many, and
//! `records` counts only the acknowledged ones.
//!
//! A run covers a time window and walks the API's pages (see
//! [`millrace_api::pull_paging`]): each page's records are acknowledged by
//! Kafka before the next page is requested, and the window's end becomes
//! the watermark on the pull Lease only when every page was. A run killed
//! midway leaves the watermark where it was, so the next run asks for that
//! window again (at least once; a key's rows are upserts, so the table ends
//! the same). A run that reaches `maxPages` records where it stopped, and
//! the next one goes on there. A backfill's windows run after the
//! scheduled run of a slot, one after another, with the same limits.

use std::sync::Arc;
use std::time::Duration;

use millrace_api::pull_paging::{
    PageSeen, PartialWindow, after_backfill_run, after_run, backfill_windows, plan_backfill,
    plan_run,
};
use millrace_api::{
    HttpPullSource, JsonPointer, LastPull, PagePosition, Paging, PullState, RunEnd, Schedule,
    TimeFormat, UrlTemplate, Window,
};
use reqwest::Url;
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use super::Ingest;
use super::fetch::PullClient;
pub use super::fetch::{FetchError, parse_retry_after};
use super::lease::PullLease;
use crate::kafka::SendError;

/// Base of the retry back-off; doubled per attempt.
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(60);

/// Back-off between attempts to get a run's records acknowledged.
const PRODUCE_RETRY_BASE: Duration = Duration::from_secs(1);
const PRODUCE_RETRY_CAP: Duration = Duration::from_secs(30);
/// A run tries to get its records acknowledged at least this long, and
/// until its schedule's next slot when that is later: records fetched from
/// an API can rarely be fetched again, and runs never overlap, so waiting
/// only delays the next run.
pub const MIN_PRODUCE_PATIENCE: Duration = Duration::from_secs(300);

pub struct Puller {
    ingest: Arc<Ingest>,
    name: String,
    spec: HttpPullSource,
    schedule: Schedule,
    records_at: Option<JsonPointer>,
    client: PullClient,
    lease: Option<PullLease>,
    url: UrlTemplate,
    paging: Paging,
    max_pages: u64,
    time_format: TimeFormat,
    initial_start: Option<jiff::Timestamp>,
    /// The state between runs without a Lease (a standalone runner): kept
    /// in memory only, so a restart starts from `initialStart` again.
    memory: std::sync::Mutex<PullState>,
}

/// One fetched page.
struct Page {
    records: Vec<Value>,
    doc: Value,
    link: Option<String>,
}

/// Extra headers from the environment, for credentials the operator maps
/// from `headersFromSecret`: each variable `MILLRACE_PULL_HEADER_<SOURCE>_<Header-Name>`
/// (SOURCE upper-cased, `-` as `_`) is the header `Header-Name`.
fn secret_headers(source: &str) -> Vec<(String, String)> {
    let prefix = format!(
        "MILLRACE_PULL_HEADER_{}_",
        source.to_uppercase().replace('-', "_")
    );
    std::env::vars()
        .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|h| (h.to_owned(), v)))
        .collect()
}

impl Puller {
    pub fn new(
        ingest: Arc<Ingest>,
        name: String,
        spec: HttpPullSource,
        lease: Option<PullLease>,
    ) -> anyhow::Result<Self> {
        let schedule = Schedule::parse(&spec.schedule)?;
        let records_at = if spec.records_path.is_empty() {
            None
        } else {
            Some(JsonPointer::parse(&spec.records_path)?)
        };
        let client = PullClient::new(&name, &spec, secret_headers(&name))?;
        let url = UrlTemplate::parse(&spec.url)?;
        let paging = Paging::from_spec(spec.pagination.as_ref())?;
        let max_pages = spec
            .pagination
            .as_ref()
            .map_or(1, |p| u64::try_from(p.max_pages).unwrap_or(1).max(1));
        let time_format = spec.window.as_ref().map(|w| w.format).unwrap_or_default();
        let initial_start = spec
            .window
            .as_ref()
            .and_then(|w| w.initial_start.as_deref())
            .map(millrace_api::pull_paging::parse_time)
            .transpose()?;
        if let Some(backfill) = &spec.backfill {
            backfill_windows(backfill, &schedule, jiff::Timestamp::now())
                .map_err(|e| anyhow::anyhow!("source {name}: {e}"))?;
        }
        Ok(Self {
            ingest,
            name,
            spec,
            schedule,
            records_at,
            client,
            lease,
            url,
            paging,
            max_pages,
            time_format,
            initial_start,
            memory: std::sync::Mutex::new(PullState::default()),
        })
    }

    /// The state the last run left: on the Lease, or in memory without one.
    async fn load_state(&self) -> Result<PullState, super::lease::StateError> {
        match &self.lease {
            Some(lease) => lease.state().await,
            None => Ok(self
                .memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()),
        }
    }

    /// Records a run and the state after it.
    async fn save(&self, last: &LastPull, state: &PullState) {
        self.ingest.metrics.pull_run(
            &self.name,
            last.succeeded(),
            jiff::Timestamp::now().as_millisecond() as f64 / 1000.0,
        );
        match &self.lease {
            Some(lease) => {
                if let Err(e) = lease.record(last, state).await {
                    warn!(source = %self.name, error = %e, "cannot record the run on the pull Lease");
                }
            }
            None => *self.memory.lock().unwrap_or_else(|e| e.into_inner()) = state.clone(),
        }
    }

    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        info!(source = %self.name, schedule = %self.schedule, lease = ?self.lease.as_ref().map(PullLease::name), "pull scheduled");
        loop {
            let now = jiff::Timestamp::now();
            let Some(next) = self.schedule.next_after(now) else {
                warn!(source = %self.name, "the schedule never fires again");
                return;
            };
            let wait = now.duration_until(next).unsigned_abs();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
            if let Some(lease) = &self.lease {
                match lease.acquire().await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        warn!(source = %self.name, error = %e, "cannot read or take the pull Lease; skipping this run");
                        continue;
                    }
                }
            }
            let state = match self.load_state().await {
                Ok(state) => state,
                Err(e) => {
                    warn!(source = %self.name, error = %e, "cannot read the pull state on the Lease; skipping this run");
                    continue;
                }
            };
            let now = jiff::Timestamp::now();
            let (window, partial) = plan_run(&state, self.initial_start, &self.schedule, now);
            let (mut last, end) = tokio::select! {
                done = self.run_window(window, partial, now) => done,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let state = after_run(&state, window, &end);
            if let Some(progress) = &state.backfill {
                append(&mut last, &backfill_summary(progress));
            }
            self.save(&last, &state).await;
            if self.spec.backfill.is_some() {
                tokio::select! {
                    _ = self.backfill(state) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return,
                }
            }
        }
    }

    /// Runs the backfill's next windows one after another until it is done,
    /// a run fails or this replica no longer holds the Lease; a later slot
    /// goes on from the progress recorded.
    async fn backfill(&self, mut state: PullState) {
        let Some(backfill) = &self.spec.backfill else {
            return;
        };
        let windows = match backfill_windows(backfill, &self.schedule, jiff::Timestamp::now()) {
            Ok(windows) => windows,
            Err(e) => {
                warn!(source = %self.name, error = %e, "the backfill cannot run");
                return;
            }
        };
        while let Some((progress, window, partial)) = plan_backfill(&state, backfill, &windows) {
            if self.lease.as_ref().is_some_and(|l| !l.held()) {
                return;
            }
            let started = jiff::Timestamp::now();
            let (mut last, end) = self.run_window(window, partial, started).await;
            state = after_backfill_run(&state, progress, window, &end, last.records);
            if let Some(progress) = &state.backfill {
                let index = windows.iter().position(|w| *w == window).unwrap_or(0) + 1;
                last.message = Some(format!(
                    "backfill window {index} of {}: {}; {}",
                    windows.len(),
                    last.message.as_deref().unwrap_or_default(),
                    backfill_summary(progress)
                ));
            }
            self.save(&last, &state).await;
            if end == RunEnd::Failed {
                return;
            }
            if let Some(lease) = &self.lease
                && !matches!(lease.acquire().await, Ok(true))
            {
                return;
            }
        }
    }

    /// One run over `window` (from `partial`'s page when a run left it
    /// unfinished): its pages until the last, or until `maxPages`.
    async fn run_window(
        &self,
        window: Window,
        partial: Option<PartialWindow>,
        started: jiff::Timestamp,
    ) -> (LastPull, RunEnd) {
        let time = started.to_string();
        let base = self.url.render(window, self.time_format);
        // The origin the credential headers belong to: the configured URL's.
        let home = Url::parse(&base);
        let pages_before = partial.as_ref().map_or(0, |p| p.pages);
        let mut position = match partial {
            Some(p) => Some(p.next),
            None => self.paging.first_position(),
        };
        let (mut produced, mut dead, mut pages) = (0u64, 0u64, 0u64);
        let failed = |produced: u64, dead: u64, pages: u64, message: String| LastPull {
            time: time.clone(),
            records: produced,
            outcome: LastPull::FAILED.to_owned(),
            message: Some(format!(
                "window {window}: {message} ({produced} records produced, {dead} dead-lettered in {pages} pages before it); the window is pulled again"
            )),
        };
        loop {
            let url = match self.paging.request_url(&base, position.as_ref()) {
                Ok(url) => url,
                Err(e) => return (failed(produced, dead, pages, e.to_string()), RunEnd::Failed),
            };
            let page = match &home {
                Ok(home) => self.fetch(&url, home).await,
                Err(e) => Err(FetchError::Http {
                    url: "the configured URL".into(),
                    reason: e.to_string(),
                }),
            };
            let page = match page {
                Ok(page) => page,
                Err(e) => {
                    warn!(source = %self.name, error = %e, %window, page = pages_before + pages + 1, "pull failed");
                    return (failed(produced, dead, pages, e.to_string()), RunEnd::Failed);
                }
            };
            let next = self.paging.next(PageSeen {
                url: &url,
                body: &page.doc,
                link: page.link.as_deref(),
                records: page.records.len(),
                position: position.as_ref(),
            });
            drop(page.doc);
            match self.produce_page(page.records, started).await {
                Ok((acked, dead_lettered)) => {
                    produced += acked;
                    dead += dead_lettered;
                }
                Err((acked, message)) => {
                    produced += acked;
                    warn!(source = %self.name, produced, %window, "pull run failed: {message}");
                    return (failed(produced, dead, pages, message), RunEnd::Failed);
                }
            }
            pages += 1;
            // A long run keeps its Lease, and stops once it is lost: another
            // replica may be pulling by now.
            if let Some(lease) = &self.lease {
                if let Err(e) = lease.acquire().await {
                    warn!(source = %self.name, error = %e, "cannot renew the pull Lease between pages");
                }
                if next.is_some() && !lease.held() {
                    return (
                        failed(produced, dead, pages, "lost the pull Lease".into()),
                        RunEnd::Failed,
                    );
                }
            }
            let summary = format!(
                "{produced} records produced, {dead} dead-lettered, {pages} pages, window {window}"
            );
            match next {
                None => {
                    info!(source = %self.name, produced, dead_lettered = dead, pages, %window, "pull run finished");
                    let last = LastPull {
                        time,
                        records: produced,
                        outcome: LastPull::SUCCEEDED.to_owned(),
                        message: Some(summary),
                    };
                    return (last, RunEnd::Complete);
                }
                Some(next) if pages >= self.max_pages => {
                    let at = describe(&next);
                    info!(source = %self.name, produced, pages, %window, next = %at, "pull run stopped at maxPages");
                    let last = LastPull {
                        time,
                        records: produced,
                        outcome: LastPull::SUCCEEDED.to_owned(),
                        message: Some(format!(
                            "{summary}; stopped at maxPages ({}): the next run goes on at {at} in this window",
                            self.max_pages
                        )),
                    };
                    let pages = pages_before + pages;
                    return (last, RunEnd::Bounded { next, pages });
                }
                Some(next) => position = Some(next),
            }
        }
    }

    /// Dead-letters the page's records that do not fit and produces the
    /// rest until Kafka acknowledged each: `(acknowledged, dead-lettered)`,
    /// or the acknowledged and why the others were not.
    async fn produce_page(
        &self,
        records: Vec<Value>,
        started: jiff::Timestamp,
    ) -> Result<(u64, u64), (u64, String)> {
        let mut keyed = Vec::with_capacity(records.len());
        let mut dead = 0u64;
        for record in &records {
            match self.ingest.key_and_payload(record) {
                Ok(key_and_payload) => keyed.push(key_and_payload),
                Err(reason) => {
                    self.ingest.dead_letter(&self.name, record, &reason).await;
                    dead += 1;
                }
            }
        }
        drop(records);
        let delivery = self
            .produce_all(&keyed, give_up_at(&self.schedule, jiff::Timestamp::now()))
            .await;
        let produced = delivery.acknowledged;
        self.ingest.metrics.ingested(&self.name, produced);
        match delivery.error {
            None => Ok((produced, dead)),
            Some(error) => {
                let missing = keyed.len() as u64 - produced;
                Err((
                    produced,
                    format!(
                        "kafka did not acknowledge {missing} of {} fetched records after {} attempts over {} s, the last failure: {error}; \
                         they are not counted as produced",
                        keyed.len(),
                        delivery.attempts,
                        started.duration_until(jiff::Timestamp::now()).as_secs(),
                    ),
                ))
            }
        }
    }

    /// Produces `keyed` until Kafka has acknowledged every record or
    /// `give_up_at` has passed. After a failure, each key's records from its
    /// first unacknowledged one on are sent again in their first order (see
    /// [`resend_plan`]), so a key's versions reach its partition in the
    /// order they were fetched.
    async fn produce_all(
        &self,
        keyed: &[(String, Vec<u8>)],
        give_up_at: jiff::Timestamp,
    ) -> Delivery {
        let producer = &self.ingest.producer;
        let mut acked = vec![false; keyed.len()];
        let mut attempts = 0u32;
        loop {
            let plan = resend_plan(keyed.iter().map(|(key, _)| key.as_str()), &acked);
            if plan.is_empty() {
                return Delivery {
                    acknowledged: keyed.len() as u64,
                    attempts,
                    error: None,
                };
            }
            if attempts > 0 {
                self.ingest
                    .metrics
                    .produce_retried(&self.name, plan.len() as u64);
            }
            attempts += 1;
            // Enqueued one by one in order, so that within a partition the
            // producer (idempotent, hence ordered) keeps the fetched order.
            // A full queue stops the attempt: what follows is left for the
            // next one rather than enqueued out of order.
            let mut waits = Vec::with_capacity(plan.len());
            let mut error = None;
            for &i in &plan {
                let (key, payload) = &keyed[i];
                match producer.enqueue(key, payload) {
                    Ok(ack) => waits.push(async move { (i, ack.await) }),
                    Err(e) => {
                        error = Some(e);
                        break;
                    }
                }
            }
            for &i in &plan {
                acked[i] = false;
            }
            // Sending again helps unless every failure was a record Kafka
            // found too large.
            let mut retry_may_help =
                matches!(error, Some(ref e) if !matches!(e, SendError::TooLarge(_)));
            for (i, result) in futures::future::join_all(waits).await {
                match result {
                    Ok(()) => acked[i] = true,
                    Err(e) => {
                        retry_may_help |= !matches!(e, SendError::TooLarge(_));
                        error = Some(e);
                    }
                }
            }
            let Some(error) = error else { continue };
            let now = jiff::Timestamp::now();
            if now >= give_up_at || !retry_may_help {
                return Delivery {
                    acknowledged: acked.iter().filter(|a| **a).count() as u64,
                    attempts,
                    error: Some(error),
                };
            }
            let pause = crate::backoff::delay(attempts - 1, PRODUCE_RETRY_BASE, PRODUCE_RETRY_CAP)
                .min(now.duration_until(give_up_at).unsigned_abs());
            let missing = acked.iter().filter(|a| !**a).count();
            warn!(source = %self.name, error = %error, missing, attempts, ?pause, "kafka did not acknowledge every pulled record; sending them again");
            tokio::time::sleep(pause).await;
            // A long run keeps its Lease, so that no other replica pulls
            // while this one still holds records; a run whose Lease was
            // not renewed within its renew deadline (or was taken) stops,
            // as another replica may be pulling by now.
            if let Some(lease) = &self.lease {
                if let Err(e) = lease.acquire().await {
                    warn!(source = %self.name, error = %e, "cannot renew the pull Lease while producing");
                }
                if !lease.held() {
                    warn!(source = %self.name, missing, "lost the pull Lease: stopping this run");
                    return Delivery {
                        acknowledged: acked.iter().filter(|a| **a).count() as u64,
                        attempts,
                        error: Some(error),
                    };
                }
            }
        }
    }

    /// GETs `url` until it answers 2xx, at most `maxRetries` retries.
    async fn fetch(&self, url: &str, home: &Url) -> Result<Page, FetchError> {
        let max_retries = u32::try_from(self.spec.max_retries).unwrap_or(0);
        let mut attempt: u32 = 0;
        loop {
            let (error, retry_after) = match self.fetch_once(url, home).await {
                Ok(records) => return Ok(records),
                Err(failure) => failure,
            };
            if !error.may_retry() || attempt >= max_retries {
                return Err(error);
            }
            let pause = retry_after
                .unwrap_or_else(|| crate::backoff::delay(attempt, RETRY_BASE, RETRY_CAP));
            warn!(source = %self.name, error = %error, attempt, ?pause, "pull attempt failed; retrying");
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }

    /// One GET; on failure, the error and the server's `Retry-After`.
    async fn fetch_once(
        &self,
        url: &str,
        home: &Url,
    ) -> Result<Page, (FetchError, Option<Duration>)> {
        let parsed = Url::parse(url).map_err(|e| {
            (
                FetchError::Http {
                    url: "the page's URL".into(),
                    reason: e.to_string(),
                },
                None,
            )
        })?;
        let fetched = self.client.get(&parsed, home).await?;
        let doc: Value =
            serde_json::from_slice(&fetched.body).map_err(|e| (FetchError::NotJson(e), None))?;
        drop(fetched.body);
        let records = records_of(doc.clone(), self.records_at.as_ref()).map_err(|e| (e, None))?;
        Ok(Page {
            records,
            doc,
            link: fetched.link,
        })
    }
}

/// Where a run stopped, for its message.
fn describe(position: &PagePosition) -> String {
    match position {
        PagePosition::Url(url) => format!("the page {url}"),
        PagePosition::Cursor(c) => format!("cursor {c:?}"),
        PagePosition::Page(n) => format!("page {n}"),
        PagePosition::Offset(n) => format!("offset {n}"),
    }
}

fn backfill_summary(progress: &millrace_api::pull_paging::BackfillProgress) -> String {
    if progress.finished() {
        format!(
            "backfill from {} to {} done: {} windows, {} records",
            progress.from, progress.to, progress.windows_done, progress.records
        )
    } else {
        format!(
            "backfill from {} to {}: {} windows done, up to {}",
            progress.from, progress.to, progress.windows_done, progress.done_until
        )
    }
}

fn append(last: &mut LastPull, text: &str) {
    last.message = Some(match last.message.take() {
        Some(m) => format!("{m}; {text}"),
        None => text.to_owned(),
    });
}

/// What became of a run's records.
struct Delivery {
    /// Records whose last send Kafka acknowledged.
    acknowledged: u64,
    attempts: u32,
    /// The last failure, when some records were never acknowledged.
    error: Option<SendError>,
}

/// When a run started at `started` stops trying to get its records
/// acknowledged: its schedule's next slot, but not before
/// [`MIN_PRODUCE_PATIENCE`].
pub fn give_up_at(schedule: &Schedule, started: jiff::Timestamp) -> jiff::Timestamp {
    let patience = started
        .checked_add(MIN_PRODUCE_PATIENCE)
        .unwrap_or(jiff::Timestamp::MAX);
    schedule
        .next_after(started)
        .map_or(patience, |next| next.max(patience))
}

/// The records to send (again), in their first order: for each key, every
/// record from its first unacknowledged one on. A later record of a key is
/// sent again after an earlier one even when Kafka has it already, so the
/// key's last version stays last in its partition.
pub fn resend_plan<'k>(keys: impl IntoIterator<Item = &'k str>, acked: &[bool]) -> Vec<usize> {
    let mut behind = std::collections::HashSet::new();
    let mut plan = Vec::new();
    for (i, key) in keys.into_iter().enumerate() {
        if !acked.get(i).copied().unwrap_or(false) || behind.contains(key) {
            behind.insert(key);
            plan.push(i);
        }
    }
    plan
}

/// The records at `pointer` (the whole document when none): an array's
/// elements, or one object.
pub fn records_of(doc: Value, pointer: Option<&JsonPointer>) -> Result<Vec<Value>, FetchError> {
    let at = match pointer {
        Some(p) => p
            .get(&doc)
            .cloned()
            .ok_or_else(|| FetchError::NoRecords(p.as_str().to_owned()))?,
        None => doc,
    };
    match at {
        Value::Array(items) => Ok(items),
        object @ Value::Object(_) => Ok(vec![object]),
        _ => Err(FetchError::NoRecords(
            pointer.map(|p| p.as_str().to_owned()).unwrap_or_default(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn records_are_found_at_the_pointer() {
        let doc = json!({"results": [{"a": 1}, {"a": 2}], "info": {"page": 1}});
        let p = JsonPointer::parse("/results").unwrap();
        assert_eq!(records_of(doc.clone(), Some(&p)).unwrap().len(), 2);
        assert_eq!(records_of(doc.clone(), None).unwrap().len(), 1);
        let missing = JsonPointer::parse("/nope").unwrap();
        assert!(matches!(
            records_of(doc.clone(), Some(&missing)),
            Err(FetchError::NoRecords(p)) if p == "/nope"
        ));
        let page = JsonPointer::parse("/info/page").unwrap();
        assert!(records_of(doc, Some(&page)).is_err());
    }

    #[test]
    fn retry_after_is_seconds_or_a_date() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("100000"), Some(Duration::from_secs(300)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date in the past"
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn a_key_is_sent_again_from_its_first_unacknowledged_record_on() {
        let keys = ["a", "b", "a", "c", "b", "a"];
        assert_eq!(resend_plan(keys, &[false; 6]), [0, 1, 2, 3, 4, 5]);
        assert!(resend_plan(keys, &[true; 6]).is_empty());
        // b's first record failed: b's later one, acknowledged, goes again
        // after it; a and c are done.
        assert_eq!(
            resend_plan(keys, &[true, false, true, true, true, true]),
            [1, 4]
        );
        // a's second failed: its third follows; b's second alone.
        assert_eq!(
            resend_plan(keys, &[true, true, false, true, false, true]),
            [2, 4, 5]
        );
    }

    #[test]
    fn a_run_keeps_trying_until_its_next_slot_but_at_least_the_patience() {
        let start: jiff::Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let every_second = Schedule::parse("1s").unwrap();
        assert_eq!(
            give_up_at(&every_second, start),
            start.checked_add(MIN_PRODUCE_PATIENCE).unwrap()
        );
        let hourly = Schedule::parse("0 * * * *").unwrap();
        assert_eq!(
            give_up_at(&hourly, start),
            "2026-01-01T01:00:00Z".parse::<jiff::Timestamp>().unwrap()
        );
    }
}
