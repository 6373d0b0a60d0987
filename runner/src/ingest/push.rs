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

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use tracing::{debug, warn};

use super::Ingest;
use crate::kafka::SendError;
use crate::metrics::Reason;

/// Records accepted but not yet acknowledged by Kafka, across all requests;
/// above this the endpoint answers 429.
pub const MAX_PENDING_RECORDS: usize = 50_000;

/// Adds a route for each push source of the pipeline.
pub fn routes(mut router: Router, ingest: &Arc<Ingest>) -> Router {
    for (name, spec) in &ingest.push_sources {
        let state = Arc::new(PushState {
            source: name.clone(),
            max_body: usize::try_from(spec.max_body_bytes).unwrap_or(usize::MAX),
            ingest: ingest.clone(),
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
    response
}

impl PushState {
    async fn handle(&self, headers: &HeaderMap, body: Body) -> Response {
        let metrics = &self.ingest.metrics;
        let too_large = || {
            metrics.rejected(&self.source, Reason::TooLarge, 1);
            reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({"accepted": 0, "error": format!("the body is larger than {} bytes", self.max_body)}),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > self.max_body) {
            return too_large();
        }
        if !self.ingest.producer.ready() {
            return reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"accepted": 0, "error": "kafka is unavailable; retry later"}),
            );
        }
        let bytes = match axum::body::to_bytes(body, self.max_body).await {
            Ok(bytes) => bytes,
            Err(e) => {
                let limit = std::error::Error::source(&e)
                    .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
                if limit {
                    return too_large();
                }
                debug!(error = %e, "reading a push body");
                return reply(
                    StatusCode::BAD_REQUEST,
                    json!({"accepted": 0, "error": format!("cannot read the body: {e}")}),
                );
            }
        };
        let records = match parse_body(&bytes) {
            Ok(records) => records,
            Err(problem) => {
                metrics.rejected(&self.source, Reason::NotJson, 1);
                return reply(StatusCode::BAD_REQUEST, problem.to_json());
            }
        };

        let mut keyed = Vec::with_capacity(records.len());
        let mut errors = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match self.ingest.key_and_payload(record) {
                Ok(kp) => keyed.push(kp),
                Err(reason) => errors.push(json!({"index": index, "reason": reason})),
            }
        }
        if !errors.is_empty() {
            metrics.rejected(&self.source, Reason::Unmappable, errors.len() as u64);
            return reply(
                StatusCode::UNPROCESSABLE_ENTITY,
                json!({"accepted": 0, "rejected": errors.len(), "errors": errors}),
            );
        }

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
}

/// Why a body is not JSON records.
#[derive(Debug, PartialEq)]
pub enum BodyProblem {
    Empty,
    NotRecords(&'static str),
    /// NDJSON lines (1-based) that are not JSON.
    Lines(Vec<(usize, String)>),
}

impl BodyProblem {
    fn to_json(&self) -> Value {
        match self {
            Self::Empty => json!({"accepted": 0, "error": "the body is empty"}),
            Self::NotRecords(what) => json!({"accepted": 0, "error": format!(
                "expected a JSON object, an array of objects, or NDJSON (one object per line); got {what}"
            )}),
            Self::Lines(lines) => json!({
                "accepted": 0,
                "error": "the body is neither JSON nor NDJSON",
                "errors": lines.iter().map(|(line, reason)| json!({"line": line, "reason": reason})).collect::<Vec<_>>(),
            }),
        }
    }
}

/// The records of a body: one object, an array, or NDJSON.
pub fn parse_body(bytes: &[u8]) -> Result<Vec<Value>, BodyProblem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyProblem::Empty);
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
            let mut problems = Vec::new();
            let mut lines = 0;
            for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                lines += 1;
                match serde_json::from_slice::<Value>(line) {
                    Ok(v) => records.push(v),
                    Err(e) => problems.push((i + 1, e.to_string())),
                }
            }
            if lines <= 1 {
                return Err(BodyProblem::Lines(vec![(1, whole.to_string())]));
            }
            if problems.is_empty() {
                Ok(records)
            } else {
                Err(BodyProblem::Lines(problems))
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
            Err(BodyProblem::Lines(lines)) => {
                assert_eq!(lines.iter().map(|l| l.0).collect::<Vec<_>>(), [2, 3]);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(parse_body(b"{oops"), Err(BodyProblem::Lines(l)) if l.len() == 1));
    }
}
