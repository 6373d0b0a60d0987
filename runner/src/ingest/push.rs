//! The push endpoint (`httpPush`): `POST` one JSON object, an array of
//! them, or NDJSON.
//!
//! A request is all or nothing: every record is checked against the table's
//! columns first, and a single bad one refuses the request (`422`, with the
//! reason per record) so a client never has to work out which half went
//! through. Good requests are answered `202` only after Kafka has
//! acknowledged every record (acks=all); when Kafka is down or does not
//! acknowledge, `503`; when too many records are already waiting, `429`.
//! Either way the client should retry: the endpoint is at-least-once.
//!
//! What clients can make the runner hold is bounded (see
//! `docs/security.md`): at most [`HttpLimits::max_concurrent_pushes`]
//! requests at once; body bytes are counted against one shared budget
//! ([`HttpLimits::max_buffered_body_bytes`]) as they arrive and kept until
//! Kafka has answered, so a slow client holds only what it has sent; a body
//! is never read past `maxBodyBytes` (413) nor for longer than
//! [`HttpLimits::body_timeout`] (408); and bodies are parsed a few at a
//! time, since a parsed body takes several times its size.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::Ingest;
use crate::http::HttpLimits;
use crate::kafka::SendError;
use crate::metrics::Reason;

/// Records accepted but not yet acknowledged by Kafka, across all requests;
/// above this the endpoint answers 429.
pub const MAX_PENDING_RECORDS: usize = 50_000;

/// Per-line or per-record reasons in one reply; the count says how many
/// there were in all. A body of a million bad lines gets a short answer.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// What every push route shares: the bounds across all requests.
struct Shared {
    limits: HttpLimits,
    /// One permit per request being handled.
    requests: Arc<Semaphore>,
    /// One permit per body byte held.
    body_bytes: Arc<Semaphore>,
    /// Bodies being parsed and checked.
    parsing: Semaphore,
}

/// Adds a route for each push source of the pipeline.
pub fn routes(mut router: Router, ingest: &Arc<Ingest>, limits: HttpLimits) -> Router {
    let parsers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let shared = Arc::new(Shared {
        limits,
        requests: Arc::new(Semaphore::new(limits.max_concurrent_pushes.max(1))),
        body_bytes: Arc::new(Semaphore::new(
            limits
                .max_buffered_body_bytes
                .clamp(1, Semaphore::MAX_PERMITS),
        )),
        parsing: Semaphore::new(parsers),
    });
    for (name, spec) in &ingest.push_sources {
        let state = Arc::new(PushState {
            source: name.clone(),
            max_body: usize::try_from(spec.max_body_bytes).unwrap_or(usize::MAX),
            ingest: ingest.clone(),
            shared: shared.clone(),
        });
        router = router.route(
            &spec.path,
            post(move |headers: HeaderMap, body: Body| {
                let state = state.clone();
                async move { state.handle(&headers, body).await }
            }),
        );
    }
    router
}

struct PushState {
    source: String,
    max_body: usize,
    ingest: Arc<Ingest>,
    shared: Arc<Shared>,
}

fn reply(status: StatusCode, body: Value) -> Response {
    let mut response = (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response();
    if matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if matches!(
        status,
        StatusCode::PAYLOAD_TOO_LARGE | StatusCode::REQUEST_TIMEOUT
    ) {
        // The rest of the body is not read: the connection cannot be reused.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

fn busy(error: &str) -> Response {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"accepted": 0, "error": error}),
    )
}

impl PushState {
    fn too_large(&self) -> Response {
        self.ingest
            .metrics
            .rejected(&self.source, Reason::TooLarge, 1);
        reply(
            StatusCode::PAYLOAD_TOO_LARGE,
            json!({"accepted": 0, "error": format!("the body is larger than {} bytes", self.max_body)}),
        )
    }

    /// Reads the body frame by frame, charging each byte to the shared
    /// budget, within the size limit and the body timeout.
    #[allow(clippy::result_large_err)]
    async fn read_body(&self, body: Body) -> Result<(Vec<u8>, OwnedSemaphorePermit), Response> {
        let deadline = tokio::time::Instant::now() + self.shared.limits.body_timeout;
        let mut frames = body.into_data_stream();
        let mut bytes = Vec::new();
        let mut held = self
            .shared
            .body_bytes
            .clone()
            .try_acquire_many_owned(0)
            .map_err(|_| busy("the runner is shutting down"))?;
        loop {
            let frame = match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => return Ok((bytes, held)),
                Ok(Some(Err(e))) => {
                    debug!(error = %e, "reading a push body");
                    return Err(reply(
                        StatusCode::BAD_REQUEST,
                        json!({"accepted": 0, "error": format!("cannot read the body: {e}")}),
                    ));
                }
                Err(_) => {
                    debug!(source = %self.source, received = bytes.len(), "push body too slow");
                    return Err(reply(
                        StatusCode::REQUEST_TIMEOUT,
                        json!({"accepted": 0, "error": format!(
                            "the body did not arrive within {} s ({} bytes received)",
                            self.shared.limits.body_timeout.as_secs(), bytes.len()
                        )}),
                    ));
                }
            };
            if bytes.len() + frame.len() > self.max_body {
                return Err(self.too_large());
            }
            let Ok(more) = u32::try_from(frame.len())
                .ok()
                .and_then(|n| {
                    self.shared
                        .body_bytes
                        .clone()
                        .try_acquire_many_owned(n)
                        .ok()
                })
                .ok_or(())
            else {
                return Err(busy(
                    "the runner holds too many request bodies at once; retry later",
                ));
            };
            held.merge(more);
            bytes.extend_from_slice(&frame);
        }
    }

    async fn handle(&self, headers: &HeaderMap, body: Body) -> Response {
        let metrics = &self.ingest.metrics;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > self.max_body) {
            return self.too_large();
        }
        let Ok(_request) = self.shared.requests.clone().try_acquire_owned() else {
            return busy("too many push requests at once; retry later");
        };
        if !self.ingest.producer.ready() {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"accepted": 0, "error": "kafka is unavailable; retry later"}),
            );
        }
        // Held until Kafka has answered: the payloads sent are copies of
        // about the body's size.
        let (bytes, _body_permit) = match self.read_body(body).await {
            Ok(read) => read,
            Err(response) => return response,
        };

        let checked = {
            let Ok(_parsing) = self.shared.parsing.acquire().await else {
                return busy("the runner is shutting down");
            };
            self.check(&bytes)
        };
        drop(bytes);
        let keyed = match checked {
            Ok(keyed) => keyed,
            Err(response) => return response,
        };

        let wanted = u32::try_from(keyed.len().min(MAX_PENDING_RECORDS)).unwrap_or(u32::MAX);
        let Ok(_permit) = self.ingest.pending.clone().try_acquire_many_owned(wanted) else {
            return reply(
                StatusCode::TOO_MANY_REQUESTS,
                json!({"accepted": 0, "error": "too many records are waiting for kafka; retry later"}),
            );
        };
        let sends = keyed
            .iter()
            .map(|(key, payload)| self.ingest.producer.send(key, payload));
        let results = futures::future::join_all(sends).await;
        let acknowledged = results.iter().filter(|r| r.is_ok()).count();
        if let Some(error) = results.into_iter().find_map(Result::err) {
            warn!(source = %self.source, error = %error, acknowledged, total = keyed.len(), "push not acknowledged by kafka");
            let status = match error {
                SendError::QueueFull => StatusCode::TOO_MANY_REQUESTS,
                SendError::Kafka(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            if acknowledged > 0 {
                metrics.ingested(&self.source, acknowledged as u64);
            }
            return reply(
                status,
                json!({"accepted": 0, "error": format!("kafka did not acknowledge every record ({error}); retry the request")}),
            );
        }
        metrics.ingested(&self.source, keyed.len() as u64);
        reply(StatusCode::ACCEPTED, json!({"accepted": keyed.len()}))
    }

    /// Parses the body and checks every record against the table: the
    /// records' Kafka keys and payloads, or the refusal. The parsed values
    /// are dropped before waiting for Kafka.
    #[allow(clippy::result_large_err)]
    fn check(&self, bytes: &[u8]) -> Result<Vec<(String, Vec<u8>)>, Response> {
        let metrics = &self.ingest.metrics;
        let records = match parse_body(bytes) {
            Ok(records) => records,
            Err(problem) => {
                metrics.rejected(&self.source, Reason::NotJson, 1);
                return Err(reply(StatusCode::BAD_REQUEST, problem.to_json()));
            }
        };
        let mut keyed = Vec::with_capacity(records.len());
        let mut errors = Vec::new();
        let mut rejected = 0usize;
        for (index, record) in records.iter().enumerate() {
            match self.ingest.key_and_payload(record) {
                Ok(kp) if rejected == 0 => keyed.push(kp),
                Ok(_) => {}
                Err(reason) => {
                    rejected += 1;
                    keyed = Vec::new();
                    if errors.len() < MAX_REPORTED_ERRORS {
                        errors.push(json!({"index": index, "reason": reason}));
                    }
                }
            }
        }
        if rejected > 0 {
            metrics.rejected(&self.source, Reason::Unmappable, rejected as u64);
            return Err(reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"accepted": 0, "rejected": rejected, "errors": errors}),
            ));
        }
        Ok(keyed)
    }
}

/// Why a body is not JSON records.
#[derive(Debug, PartialEq)]
pub enum BodyProblem {
    Empty,
    /// The body is not UTF-8 (JSON must be); the offset of the first bad byte.
    NotUtf8(usize),
    NotRecords(&'static str),
    /// NDJSON lines (1-based) that are not JSON: the first
    /// [`MAX_REPORTED_ERRORS`] of them, and how many there are.
    Lines {
        first: Vec<(usize, String)>,
        total: usize,
    },
}

impl BodyProblem {
    fn to_json(&self) -> Value {
        match self {
            Self::Empty => json!({"accepted": 0, "error": "the body is empty"}),
            Self::NotUtf8(offset) => json!({"accepted": 0, "error": format!(
                "the body is not UTF-8: invalid byte at offset {offset}"
            )}),
            Self::NotRecords(what) => json!({"accepted": 0, "error": format!(
                "expected a JSON object, an array of objects, or NDJSON (one object per line); got {what}"
            )}),
            Self::Lines { first, total } => json!({
                "accepted": 0,
                "error": format!("the body is neither JSON nor NDJSON ({total} bad lines)"),
                "errors": first.iter().map(|(line, reason)| json!({"line": line, "reason": reason})).collect::<Vec<_>>(),
            }),
        }
    }
}

/// The records of a body: one object, an array, or NDJSON.
pub fn parse_body(bytes: &[u8]) -> Result<Vec<Value>, BodyProblem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyProblem::Empty);
    }
    // serde_json would say "invalid unicode code point" or "expected value"
    // at some column; the offset of the byte says more.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(BodyProblem::NotUtf8(e.valid_up_to()));
    }
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Array(items)) if items.is_empty() => {
            Err(BodyProblem::NotRecords("an empty array"))
        }
        Ok(Value::Array(items)) => Ok(items),
        Ok(object @ Value::Object(_)) => Ok(vec![object]),
        Ok(Value::String(_)) => Err(BodyProblem::NotRecords("a string")),
        Ok(Value::Number(_)) => Err(BodyProblem::NotRecords("a number")),
        Ok(Value::Bool(_)) => Err(BodyProblem::NotRecords("a boolean")),
        Ok(Value::Null) => Err(BodyProblem::NotRecords("null")),
        Err(whole) => {
            let mut records = Vec::new();
            let mut first = Vec::new();
            let mut total = 0;
            let mut lines = 0;
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                lines += 1;
                match serde_json::from_slice::<Value>(line) {
                    Ok(v) if total == 0 => records.push(v),
                    Ok(_) => {}
                    Err(e) => {
                        // Refused anyway: stop holding the good lines.
                        records = Vec::new();
                        total += 1;
                        if first.len() < MAX_REPORTED_ERRORS {
                            first.push((i + 1, e.to_string()));
                        }
                    }
                }
            }
            if lines <= 1 {
                return Err(BodyProblem::Lines {
                    first: vec![(1, whole.to_string())],
                    total: 1,
                });
            }
            if total == 0 {
                Ok(records)
            } else {
                Err(BodyProblem::Lines { first, total })
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn objects_arrays_and_ndjson_are_records() {
        assert_eq!(parse_body(br#"{"a":1}"#).unwrap(), vec![json!({"a":1})]);
        assert_eq!(
            parse_body(br#"[{"a":1},{"a":2}]"#).unwrap(),
            vec![json!({"a":1}), json!({"a":2})]
        );
        assert_eq!(
            parse_body(b"{\"a\":1}\n\n{\"a\":2}\r\n").unwrap(),
            vec![json!({"a":1}), json!({"a":2})]
        );
    }

    #[test]
    fn bodies_that_are_not_records_are_refused_with_a_reason() {
        assert_eq!(parse_body(b" \n"), Err(BodyProblem::Empty));
        assert_eq!(
            parse_body(b"[]"),
            Err(BodyProblem::NotRecords("an empty array"))
        );
        assert_eq!(parse_body(b"42"), Err(BodyProblem::NotRecords("a number")));
        match parse_body(b"{\"a\":1}\nnot json\n{\"a\":") {
            Err(BodyProblem::Lines { first, total }) => {
                assert_eq!(first.iter().map(|l| l.0).collect::<Vec<_>>(), [2, 3]);
                assert_eq!(total, 2);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            matches!(parse_body(b"{oops"), Err(BodyProblem::Lines { first, .. }) if first.len() == 1)
        );
    }

    #[test]
    fn invalid_utf8_is_refused_with_its_offset() {
        assert_eq!(
            parse_body(b"{\"a\": \"\xff\"}"),
            Err(BodyProblem::NotUtf8(7))
        );
        let reply = BodyProblem::NotUtf8(7).to_json().to_string();
        assert!(
            reply.contains("not UTF-8: invalid byte at offset 7"),
            "{reply}"
        );
    }

    #[test]
    fn deep_nesting_is_refused_by_the_recursion_limit_without_overflowing() {
        // Far deeper than the stack could take if parsing recursed freely.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        match parse_body(deep.as_bytes()) {
            Err(BodyProblem::Lines { first, total: 1 }) => {
                assert!(first[0].1.contains("recursion limit exceeded"), "{first:?}");
            }
            other => panic!("{other:?}"),
        }
        // Within the limit, nesting is just data.
        let ok = format!("{{\"a\":{}{}}}", "[".repeat(100), "]".repeat(100));
        assert_eq!(parse_body(ok.as_bytes()).unwrap().len(), 1);
    }

    #[test]
    fn a_body_of_many_bad_lines_gets_a_short_answer() {
        let body = "x\n".repeat(100_000);
        match parse_body(body.as_bytes()) {
            Err(problem @ BodyProblem::Lines { .. }) => {
                let BodyProblem::Lines { first, total } = &problem else {
                    unreachable!()
                };
                assert_eq!((first.len(), *total), (MAX_REPORTED_ERRORS, 100_000));
                assert!(problem.to_json().to_string().len() < 4096);
            }
            other => panic!("{other:?}"),
        }
    }
}
