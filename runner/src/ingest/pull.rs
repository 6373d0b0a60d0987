//! The scheduled pull (`httpPull`), the seed's Airflow job.
//!
//! One task per source runs the schedule, so two runs of a source never
//! overlap: a run that outlasts its slot makes the next one start at the
//! first slot after it. A run fetches the URL with retries (exponential
//! back-off with jitter, honouring `Retry-After` on 429 and 503), takes the
//! records at `recordsPath`, produces those that fit the table and
//! dead-letters the rest.

use std::sync::Arc;
use std::time::Duration;

use millrace_api::{HttpPullSource, JsonPointer, LastPull, Schedule};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use serde_json::Value;
use tokio::sync::watch;
use tracing::{info, warn};

use super::Ingest;
use super::lease::PullLease;

/// Base of the retry back-off; doubled per attempt.
const RETRY_BASE: Duration = Duration::from_millis(500);
const RETRY_CAP: Duration = Duration::from_secs(60);

pub struct Puller {
    ingest: Arc<Ingest>,
    name: String,
    spec: HttpPullSource,
    schedule: Schedule,
    records_at: Option<JsonPointer>,
    client: reqwest::Client,
    lease: Option<PullLease>,
}

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {0}")]
    Status(StatusCode),
    #[error("the response is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the response has no array of records at {0:?}")]
    NoRecords(String),
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
        let mut headers = HeaderMap::new();
        let all = spec
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(secret_headers(&name));
        for (k, v) in all {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| anyhow::anyhow!("source {name}: header {k:?}: {e}"))?;
            let mut value = HeaderValue::from_str(&v).map_err(|_| {
                anyhow::anyhow!(
                    "source {name}: header {k:?} has a value that is not a valid header value"
                )
            })?;
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(spec.timeout_seconds.max(1) as u64))
            .user_agent(concat!("millrace-runner/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            ingest,
            name,
            spec,
            schedule,
            records_at,
            client,
            lease,
        })
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
            let last = tokio::select! {
                last = self.run_once() => last,
                _ = shutdown.wait_for(|stop| *stop) => return,
            };
            let succeeded = last.succeeded();
            self.ingest.metrics.pull_run(
                &self.name,
                succeeded,
                jiff::Timestamp::now().as_millisecond() as f64 / 1000.0,
            );
            if let Some(lease) = &self.lease
                && let Err(e) = lease.record(&last).await
            {
                warn!(source = %self.name, error = %e, "cannot record the run on the pull Lease");
            }
        }
    }

    /// One run: fetch, then produce or dead-letter every record.
    pub async fn run_once(&self) -> LastPull {
        let time = jiff::Timestamp::now().to_string();
        let records = match self.fetch().await {
            Ok(records) => records,
            Err(e) => {
                warn!(source = %self.name, error = %e, "pull failed");
                return LastPull {
                    time,
                    records: 0,
                    outcome: LastPull::FAILED.to_owned(),
                    message: Some(e.to_string()),
                };
            }
        };
        let mut produced = 0u64;
        let mut dead = 0u64;
        let mut failed = 0u64;
        let mut sends = Vec::with_capacity(records.len());
        for record in &records {
            match self.ingest.key_and_payload(record) {
                Ok((key, payload)) => sends.push(async move {
                    self.ingest
                        .producer
                        .send_waiting(&key, &payload, Duration::from_secs(30))
                        .await
                }),
                Err(reason) => {
                    self.ingest.dead_letter(&self.name, record, &reason).await;
                    dead += 1;
                }
            }
        }
        for result in futures::future::join_all(sends).await {
            match result {
                Ok(()) => produced += 1,
                Err(e) => {
                    warn!(source = %self.name, error = %e, "a pulled record was not acknowledged");
                    failed += 1;
                }
            }
        }
        self.ingest.metrics.ingested(&self.name, produced);
        let outcome = if failed == 0 {
            LastPull::SUCCEEDED
        } else {
            LastPull::FAILED
        };
        info!(source = %self.name, produced, dead_lettered = dead, failed, "pull run finished");
        LastPull {
            time,
            records: produced,
            outcome: outcome.to_owned(),
            message: Some(format!(
                "{produced} records produced, {dead} dead-lettered, {failed} not acknowledged by kafka"
            )),
        }
    }

    /// GETs the URL until it answers 2xx, at most `maxRetries` retries.
    async fn fetch(&self) -> Result<Vec<Value>, FetchError> {
        let max_retries = u32::try_from(self.spec.max_retries).unwrap_or(0);
        let mut attempt: u32 = 0;
        loop {
            let (error, retry_after) = match self.fetch_once().await {
                Ok(records) => return Ok(records),
                Err(failure) => failure,
            };
            let may_retry = match &error {
                FetchError::Status(status) => retryable(*status),
                FetchError::Http(_) => true,
                FetchError::NotJson(_) | FetchError::NoRecords(_) => false,
            };
            if !may_retry || attempt >= max_retries {
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
    async fn fetch_once(&self) -> Result<Vec<Value>, (FetchError, Option<Duration>)> {
        let response = self
            .client
            .get(&self.spec.url)
            .send()
            .await
            .map_err(|e| (FetchError::Http(e.without_url()), None))?;
        let status = response.status();
        if !status.is_success() {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            return Err((FetchError::Status(status), retry_after));
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| (FetchError::Http(e.without_url()), None))?;
        let doc: Value =
            serde_json::from_slice(&body).map_err(|e| (FetchError::NotJson(e), None))?;
        records_of(doc, self.records_at.as_ref()).map_err(|e| (e, None))
    }
}

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// `Retry-After` in seconds, or as an HTTP date; capped so a hostile server
/// cannot stall the source for days.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let delay = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
        jiff::Timestamp::now()
            .duration_until(at)
            .try_into()
            .unwrap_or(Duration::ZERO)
    };
    Some(delay.min(Duration::from_secs(300)))
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
    fn only_overload_and_server_errors_are_retried() {
        assert!(retryable(StatusCode::TOO_MANY_REQUESTS));
        assert!(retryable(StatusCode::SERVICE_UNAVAILABLE));
        assert!(retryable(StatusCode::INTERNAL_SERVER_ERROR));
        assert!(!retryable(StatusCode::NOT_FOUND));
        assert!(!retryable(StatusCode::UNAUTHORIZED));
    }
}
