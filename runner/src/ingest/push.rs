//! The push endpoint (`httpPush`): `POST` one JSON object, an array of
//! them, or NDJSON.
//!
//! Every record is checked first: against the table's columns, and against
//! the largest record the producer takes (`message.max.bytes`). A single
//! bad one refuses the request, `422` (does not fit the columns) or `413`
//! (too large), with the index and reason per record, and nothing is
//! produced. Good requests are answered `202` only after Kafka has
//! acknowledged every record (acks=all); when too many records are already
//! waiting, `429`.
//!
//! When Kafka does not take every record (it is down, does not acknowledge
//! within the delivery timeout, or finds a record larger than the topic's
//! `max.message.bytes`), the answer says exactly which records it took, as
//! runs of consecutive 0-based indexes, and why each other one was not:
//!
//! ```json
//! {"accepted": 8, "rejected": 2, "error": "...",
//!  "acceptedRecords": [{"index": 0, "count": 5}, {"index": 6, "count": 2}, {"index": 9, "count": 1}],
//!  "errors": [{"index": 5, "count": 1, "status": 413, "reason": "..."},
//!             {"index": 8, "count": 1, "status": 424, "reason": "..."}]}
//! ```
//!
//! The status is `413` when a record is too large, else `503` (Kafka) or
//! `429` (the producer's queue). The client sends again only the records in
//! `errors`, in their order (a `413` one only once made smaller). Records
//! of one key are produced one after another: a record is sent only after
//! Kafka acknowledged the request's previous record of its key, and when
//! that one was not accepted it is not sent at all (`424`), so sending again
//! what was not accepted never puts an older version of a key after a
//! newer one.
//!
//! What clients can make the runner hold is bounded (see
//! `docs/security.md`): at most [`HttpLimits::max_concurrent_pushes`]
//! requests at once; body bytes are counted against one shared budget
//! ([`HttpLimits::max_buffered_body_bytes`], and a small reserve only small
//! bodies may draw on: [`small_reserve`]) as they arrive and kept until
//! Kafka has answered, so a slow client holds only what it has sent; a body
//! is never read past `maxBodyBytes` (413) nor for longer than
//! [`HttpLimits::body_timeout`] (408); and bodies are parsed a few at a
//! time, since a parsed body takes several times its size.

use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures::StreamExt;
use millrace_api::serve::TlsPeer;
use millrace_api::{HttpPushSource, PushAuthType};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tracing::{debug, info, warn};

use super::Ingest;
use super::push_auth::{PushTokens, TokensError, Verdict};
use super::push_tls::ClientCertificates;
use crate::http::HttpLimits;
use crate::kafka::SendError;
use crate::metrics::Reason;

/// Records accepted but not yet acknowledged by Kafka, across all requests;
/// above this the endpoint answers 429.
pub const MAX_PENDING_RECORDS: usize = 20_000;

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
    /// Bytes only small bodies may take once `body_bytes` is spent
    /// ([`small_reserve`]).
    small_bodies: Arc<Semaphore>,
    /// Bodies being parsed and checked.
    parsing: Semaphore,
}

/// Adds a route for each push source of the pipeline. A source with
/// bearer tokens reads them from `tokens_dir/SOURCE` now, and again while
/// the runner runs, until `stop`. A `ClientCertificate` source takes the
/// client certificate the TLS handshake verified ([`TlsPeer`], put into
/// each request by the server when `spec.runner.pushTls` is set).
///
/// [`TlsPeer`]: millrace_api::serve::TlsPeer
pub fn routes(
    mut router: Router,
    ingest: &Arc<Ingest>,
    limits: HttpLimits,
    tokens_dir: &Path,
    stop: &watch::Receiver<bool>,
) -> Result<Router, TokensError> {
    let parsers = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let budget = body_budget(&limits, &ingest.push_sources);
    let shared = Arc::new(Shared {
        limits,
        requests: Arc::new(Semaphore::new(limits.max_concurrent_pushes.max(1))),
        body_bytes: Arc::new(Semaphore::new(budget.clamp(1, Semaphore::MAX_PERMITS))),
        small_bodies: Arc::new(Semaphore::new(small_reserve(budget))),
        parsing: Semaphore::new(parsers),
    });
    for (name, spec) in &ingest.push_sources {
        let auth = if spec.tokens_secret(&ingest.pipeline.name).is_some() {
            let tokens = PushTokens::load(name, tokens_dir.join(name))?;
            tokens.keep_current(stop.clone());
            Auth::Tokens(tokens)
        } else if spec.auth_type() == PushAuthType::ClientCertificate {
            let names = spec
                .auth
                .as_ref()
                .and_then(|a| a.allowed_dns_names.as_deref());
            info!(source = %name, allowed_dns_names = ?names, "push source takes client certificates");
            Auth::ClientCertificate(ClientCertificates::new(names))
        } else {
            warn!(
                source = %name,
                "push source accepts pushes without authentication (auth.type None)"
            );
            Auth::None
        };
        let state = Arc::new(PushState {
            source: name.clone(),
            auth,
            max_body: usize::try_from(spec.max_body_bytes).unwrap_or(usize::MAX),
            ingest: ingest.clone(),
            shared: shared.clone(),
        });
        router = router.route(
            &spec.path,
            post(move |request: axum::extract::Request| {
                let state = state.clone();
                async move {
                    let (parts, body) = request.into_parts();
                    let peer = parts.extensions.get::<TlsPeer>();
                    state.handle(&parts.headers, peer, body).await
                }
            }),
        );
    }
    Ok(router)
}

/// Bodies up to this size are read and dropped before an early refusal.
const DRAIN_MAX_BYTES: usize = 64 * 1024;
/// How long a refused body may take to arrive before the connection is
/// closed anyway.
const DRAIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

/// Answers a request refused before its body was read. Closing a socket
/// with unread bytes in it makes the kernel send a reset, which can destroy
/// the answer in flight: under load the client then sees a dropped
/// connection instead of the 503 and its `Retry-After`. So a small body
/// (the common push) is read and dropped first, briefly and outside every
/// budget, and the connection stays usable; a large or unknown one is not
/// read, and the answer says `Connection: close`.
async fn refuse_unread(body: Body, declared: Option<usize>, mut refusal: Response) -> Response {
    if declared.is_some_and(|len| len <= DRAIN_MAX_BYTES) {
        let mut frames = body.into_data_stream();
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            let mut read = 0usize;
            while let Some(Ok(frame)) = frames.next().await {
                read += frame.len();
                if read > DRAIN_MAX_BYTES {
                    return false;
                }
            }
            true
        })
        .await;
        if drained == Ok(true) {
            return refusal;
        }
    }
    refusal
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    refusal
}

/// A body that declares at most this many bytes (`Content-Length`) may
/// draw on the small-body reserve: the common push of a few records.
pub const SMALL_BODY_BYTES: usize = 64 * 1024;

/// The small-body reserve beside a body budget: an eighth of it, between
/// one small body and 1 MiB. Large bodies (and ones of unknown length),
/// which are what a client holding the budget on purpose sends, can spend
/// the whole budget; then ordinary pushes still find room here instead of
/// all being refused until the large ones time out. A slow client that
/// declares a small body holds at most [`SMALL_BODY_BYTES`] of it.
pub fn small_reserve(budget: usize) -> usize {
    (budget / 8).clamp(SMALL_BODY_BYTES, 1 << 20)
}

/// What a request's body holds of the budget and of the reserve, kept
/// until Kafka has answered.
struct BodyPermits {
    _budget: OwnedSemaphorePermit,
    _reserve: Option<OwnedSemaphorePermit>,
}

/// The shared body budget: the configured one, raised to the largest
/// `maxBodyBytes` of the pipeline's push sources, since a budget below a
/// source's own limit would refuse that source's largest bodies forever.
fn body_budget(limits: &HttpLimits, sources: &[(String, HttpPushSource)]) -> usize {
    let largest = sources
        .iter()
        .map(|(_, spec)| usize::try_from(spec.max_body_bytes).unwrap_or(usize::MAX))
        .max()
        .unwrap_or(0);
    if largest > limits.max_buffered_body_bytes {
        info!(
            configured = limits.max_buffered_body_bytes,
            budget = largest,
            "push body budget raised to the largest maxBodyBytes"
        );
    }
    limits.max_buffered_body_bytes.max(largest)
}

/// How a source's requests prove they may push.
enum Auth {
    /// `auth.type: None`.
    None,
    Tokens(Arc<PushTokens>),
    ClientCertificate(ClientCertificates),
}

struct PushState {
    source: String,
    auth: Auth,
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

/// A reply to a request whose body was read to its end: the connection
/// stays usable whatever the status.
fn reply_after_read(status: StatusCode, body: Value) -> Response {
    let mut response = reply(status, body);
    response.headers_mut().remove(header::CONNECTION);
    response
}

fn busy(error: &str) -> Response {
    reply(
        StatusCode::SERVICE_UNAVAILABLE,
        json!({"accepted": 0, "error": error}),
    )
}

impl PushState {
    /// 401 without a bearer token (with the challenge RFC 6750 asks
    /// for) or client certificate, 403 with a wrong one.
    fn refused(&self, verdict: Verdict) -> Response {
        let certificate = matches!(self.auth, Auth::ClientCertificate(_));
        let (status, reason, error) = match (verdict == Verdict::Missing, certificate) {
            (true, false) => (
                StatusCode::UNAUTHORIZED,
                Reason::Unauthenticated,
                "this endpoint needs 'Authorization: Bearer TOKEN' with a token from the source's tokens Secret",
            ),
            (false, false) => (
                StatusCode::FORBIDDEN,
                Reason::Forbidden,
                "the bearer token is not one this source accepts",
            ),
            (true, true) => (
                StatusCode::UNAUTHORIZED,
                Reason::Unauthenticated,
                "this endpoint needs HTTPS with a client certificate issued by the pipeline's client CA (spec.runner.pushTls.clientCaSecretRef)",
            ),
            (false, true) => (
                StatusCode::FORBIDDEN,
                Reason::Forbidden,
                "the client certificate is not valid for any of this source's allowedDnsNames",
            ),
        };
        self.ingest.metrics.rejected(&self.source, reason, 1);
        let mut response = reply(status, json!({"accepted": 0, "error": error}));
        if status == StatusCode::UNAUTHORIZED && !certificate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"millrace\""),
            );
        }
        response
    }

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
    async fn read_body(
        &self,
        body: Body,
        declared: Option<usize>,
    ) -> Result<(Vec<u8>, BodyPermits), Response> {
        let deadline = tokio::time::Instant::now() + self.shared.limits.body_timeout;
        let mut frames = body.into_data_stream();
        // With a Content-Length the buffer is sized once: growing it by
        // doubling would hold up to twice the bytes charged to the budget.
        // Reserved pages only take memory as the bytes arrive.
        let mut bytes = Vec::with_capacity(declared.unwrap_or(0).min(self.max_body));
        let mut held = self
            .shared
            .body_bytes
            .clone()
            .try_acquire_many_owned(0)
            .map_err(|_| busy("the runner is shutting down"))?;
        let small = declared.is_some_and(|len| len <= SMALL_BODY_BYTES);
        let mut reserve: Option<OwnedSemaphorePermit> = None;
        loop {
            let frame = match tokio::time::timeout_at(deadline, frames.next()).await {
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => {
                    let permits = BodyPermits {
                        _budget: held,
                        _reserve: reserve,
                    };
                    return Ok((bytes, permits));
                }
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
            let n = u32::try_from(frame.len()).ok();
            let from_budget = n.and_then(|n| {
                self.shared
                    .body_bytes
                    .clone()
                    .try_acquire_many_owned(n)
                    .ok()
            });
            if let Some(more) = from_budget {
                held.merge(more);
                bytes.extend_from_slice(&frame);
                continue;
            }
            let from_reserve = n
                .filter(|_| small && bytes.len() + frame.len() <= SMALL_BODY_BYTES)
                .and_then(|n| {
                    self.shared
                        .small_bodies
                        .clone()
                        .try_acquire_many_owned(n)
                        .ok()
                });
            let Some(more) = from_reserve else {
                // The rest of the body is not read: the connection cannot be
                // reused.
                let mut refusal =
                    busy("the runner holds too many request bodies at once; retry later");
                refusal
                    .headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
                return Err(refusal);
            };
            match reserve.as_mut() {
                Some(r) => r.merge(more),
                None => reserve = Some(more),
            }
            bytes.extend_from_slice(&frame);
        }
    }

    async fn handle(&self, headers: &HeaderMap, peer: Option<&TlsPeer>, body: Body) -> Response {
        let metrics = &self.ingest.metrics;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        // Before anything else: a client without a valid token learns
        // nothing about the endpoint, not even its limits.
        let verdict = match &self.auth {
            Auth::None => Verdict::Allowed,
            Auth::Tokens(tokens) => tokens.check(headers.get(header::AUTHORIZATION)),
            Auth::ClientCertificate(allowed) => allowed.check(peer),
        };
        if verdict != Verdict::Allowed {
            return refuse_unread(body, declared, self.refused(verdict)).await;
        }
        if declared.is_some_and(|len| len > self.max_body) {
            return self.too_large();
        }
        let Ok(_request) = self.shared.requests.clone().try_acquire_owned() else {
            let refusal = busy("too many push requests at once; retry later");
            return refuse_unread(body, declared, refusal).await;
        };
        if !self.ingest.producer.ready() {
            let refusal = reply(
                StatusCode::SERVICE_UNAVAILABLE,
                json!({"accepted": 0, "error": "kafka is unavailable; retry later"}),
            );
            return refuse_unread(body, declared, refusal).await;
        }
        // Held until Kafka has answered: the payloads sent are copies of
        // about the body's size.
        let (bytes, _body_permit) = match self.read_body(body, declared).await {
            Ok(read) => read,
            Err(response) => return response,
        };

        let checked = {
            let Ok(_parsing) = self.shared.parsing.acquire().await else {
                return busy("the runner is shutting down");
            };
            self.check(&bytes)
        };
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
        let total = keyed.len();
        let fates = self.produce(&keyed).await;
        // librdkafka held its own copies while they were in flight.
        drop(keyed);
        drop(bytes);
        let accepted = fates.iter().filter(|f| f.is_accepted()).count();
        if accepted > 0 {
            metrics.ingested(&self.source, accepted as u64);
        }
        let too_large = fates
            .iter()
            .filter(|f| matches!(f, Fate::Refused { status, .. } if *status == StatusCode::PAYLOAD_TOO_LARGE))
            .count();
        if too_large > 0 {
            metrics.rejected(&self.source, Reason::TooLarge, too_large as u64);
        }
        if accepted < total {
            warn!(source = %self.source, accepted, total, "kafka did not take every pushed record");
        }
        let (status, body) = outcome(&fates);
        reply_after_read(status, body)
    }

    /// Produces a request's records, the first record of every key at once,
    /// then the second of every key, and so on ([`Waves`]): a record is sent
    /// only after Kafka acknowledged the one before it of its key, so a
    /// client that sends again what was not accepted never puts an older
    /// version of a key after a newer one. Returns each record's fate.
    async fn produce(&self, keyed: &[(String, &[u8])]) -> Vec<Fate> {
        let producer = &self.ingest.producer;
        let mut fates = vec![Fate::Accepted; keyed.len()];
        let mut waves = Waves::new(keyed.iter().map(|(key, _)| key.as_str()));
        loop {
            let wave = waves.next_wave();
            if wave.is_empty() {
                return fates;
            }
            let mut acks = Vec::with_capacity(wave.len());
            for &i in &wave {
                let (key, payload) = &keyed[i];
                match producer.enqueue(key, payload) {
                    Ok(ack) => acks.push(async move { (i, ack.await) }),
                    Err(e) => fates[i] = Fate::refused(&e),
                }
            }
            let mut too_large = Vec::new();
            for (i, result) in futures::future::join_all(acks).await {
                match result {
                    Ok(()) => {}
                    // Kafka refuses a whole batch when it is larger than the
                    // topic takes, the records that fit with the one that
                    // does not: each is sent again alone to learn which.
                    Err(SendError::TooLarge(_)) => too_large.push(i),
                    Err(e) => fates[i] = Fate::refused(&e),
                }
            }
            too_large.sort_unstable();
            for i in too_large {
                let (key, payload) = &keyed[i];
                let alone = match producer.enqueue(key, payload) {
                    Ok(ack) => ack.await,
                    Err(e) => Err(e),
                };
                if let Err(e) = alone {
                    fates[i] = Fate::refused(&e);
                }
            }
            for &i in &wave {
                if !fates[i].is_accepted() {
                    for later in waves.abandon_key_of(i) {
                        fates[later] = Fate::Refused {
                            status: StatusCode::FAILED_DEPENDENCY,
                            reason: format!(
                                "not sent: an earlier record of its key (index {i}) was not accepted; send it again after that one"
                            ),
                        };
                    }
                }
            }
        }
    }

    /// Splits the body and checks every record against the table: each
    /// record's Kafka key and its text within the body, or the refusal.
    #[allow(clippy::result_large_err)]
    fn check<'b>(&self, bytes: &'b [u8]) -> Result<Vec<(String, &'b [u8])>, Response> {
        let metrics = &self.ingest.metrics;
        let records = match parse_body(bytes) {
            Ok(records) => records,
            Err(problem) => {
                metrics.rejected(&self.source, Reason::NotJson, 1);
                return Err(reply(StatusCode::BAD_REQUEST, problem.to_json()));
            }
        };
        let max = self.ingest.producer.max_message_bytes();
        let mut keyed = Vec::with_capacity(records.len());
        let mut errors = Vec::new();
        let (mut unmappable, mut too_large) = (0usize, 0usize);
        for (index, record) in records.into_iter().enumerate() {
            let checked = match self.ingest.key_of_raw(record) {
                Ok(key) if key.len() + record.len() > max => Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "the record is {} bytes with its key; kafka takes at most {max}",
                        key.len() + record.len()
                    ),
                )),
                Ok(key) => Ok(key),
                Err(reason) => Err((StatusCode::UNPROCESSABLE_ENTITY, reason)),
            };
            match checked {
                Ok(key) if unmappable + too_large == 0 => keyed.push((key, record)),
                Ok(_) => {}
                Err((status, reason)) => {
                    if status == StatusCode::PAYLOAD_TOO_LARGE {
                        too_large += 1;
                    } else {
                        unmappable += 1;
                    }
                    keyed = Vec::new();
                    if errors.len() < MAX_REPORTED_ERRORS {
                        errors.push(json!({"index": index, "count": 1, "status": status.as_u16(), "reason": reason}));
                    }
                }
            }
        }
        if unmappable > 0 {
            metrics.rejected(&self.source, Reason::Unmappable, unmappable as u64);
        }
        if too_large > 0 {
            metrics.rejected(&self.source, Reason::TooLarge, too_large as u64);
        }
        if unmappable + too_large > 0 {
            // A record too large cannot be sent again as it is, whatever
            // else is wrong: that answer comes first.
            let status = if too_large > 0 {
                StatusCode::PAYLOAD_TOO_LARGE
            } else {
                StatusCode::UNPROCESSABLE_ENTITY
            };
            return Err(reply_after_read(
                status,
                json!({"accepted": 0, "rejected": unmappable + too_large, "errors": errors}),
            ));
        }
        Ok(keyed)
    }
}

/// What became of one record of a request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fate {
    /// Kafka acknowledged it.
    Accepted,
    /// Not in Kafka (as far as the runner knows): the status a request of
    /// this record alone would get, and why.
    Refused { status: StatusCode, reason: String },
}

impl Fate {
    fn is_accepted(&self) -> bool {
        matches!(self, Self::Accepted)
    }

    fn refused(error: &SendError) -> Self {
        let status = match error {
            SendError::QueueFull => StatusCode::TOO_MANY_REQUESTS,
            SendError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            SendError::Kafka(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Self::Refused {
            status,
            reason: error.to_string(),
        }
    }
}

/// The order in which a request's records are produced: in waves, each the
/// first not yet sent record of every key still going, in request order.
pub struct Waves {
    /// Each key's records not yet sent, in request order.
    chains: Vec<std::collections::VecDeque<usize>>,
    /// The chain of each record.
    chain_of: Vec<usize>,
}

impl Waves {
    pub fn new<'k>(keys: impl IntoIterator<Item = &'k str>) -> Self {
        let mut by_key = std::collections::HashMap::new();
        let mut chains: Vec<std::collections::VecDeque<usize>> = Vec::new();
        let mut chain_of = Vec::new();
        for (i, key) in keys.into_iter().enumerate() {
            let chain = *by_key.entry(key).or_insert_with(|| {
                chains.push(std::collections::VecDeque::new());
                chains.len() - 1
            });
            chains[chain].push_back(i);
            chain_of.push(chain);
        }
        Self { chains, chain_of }
    }

    /// The records to send now; empty when all are sent or abandoned.
    pub fn next_wave(&mut self) -> Vec<usize> {
        let mut wave: Vec<usize> = self
            .chains
            .iter_mut()
            .filter_map(std::collections::VecDeque::pop_front)
            .collect();
        wave.sort_unstable();
        wave
    }

    /// Record `i` was not accepted: the later records of its key are not
    /// to be sent; returns them.
    pub fn abandon_key_of(&mut self, i: usize) -> Vec<usize> {
        self.chain_of
            .get(i)
            .and_then(|&chain| self.chains.get_mut(chain))
            .map(|chain| chain.drain(..).collect())
            .unwrap_or_default()
    }
}

/// The answer to a request whose records were produced: `202` and
/// `{"accepted": N}` when Kafka took every one; otherwise which were taken
/// and which not, as runs of consecutive indexes (see the module doc).
pub fn outcome(fates: &[Fate]) -> (StatusCode, Value) {
    let accepted = fates.iter().filter(|f| f.is_accepted()).count();
    if accepted == fates.len() {
        return (StatusCode::ACCEPTED, json!({"accepted": accepted}));
    }
    let mut accepted_runs: Vec<(usize, usize)> = Vec::new();
    let mut refused_runs: Vec<(usize, usize, StatusCode, &str)> = Vec::new();
    for (i, fate) in fates.iter().enumerate() {
        match fate {
            Fate::Accepted => match accepted_runs.last_mut() {
                Some((first, count)) if *first + *count == i => *count += 1,
                _ => accepted_runs.push((i, 1)),
            },
            Fate::Refused { status, reason } => match refused_runs.last_mut() {
                Some((first, count, s, r))
                    if *first + *count == i && s == status && r == reason =>
                {
                    *count += 1
                }
                _ => refused_runs.push((i, 1, *status, reason.as_str())),
            },
        }
    }
    // One status for the whole: a record too large cannot be sent again as
    // it is, so that comes first; then Kafka's trouble, then back-pressure.
    let status = [
        StatusCode::PAYLOAD_TOO_LARGE,
        StatusCode::SERVICE_UNAVAILABLE,
        StatusCode::TOO_MANY_REQUESTS,
    ]
    .into_iter()
    .find(|wanted| refused_runs.iter().any(|(_, _, s, _)| s == wanted))
    .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    let body = json!({
        "accepted": accepted,
        "rejected": fates.len() - accepted,
        "error": format!(
            "kafka took {accepted} of {} records; send again only those in errors, in their order",
            fates.len()
        ),
        "acceptedRecords": accepted_runs
            .iter()
            .map(|(index, count)| json!({"index": index, "count": count}))
            .collect::<Vec<_>>(),
        "errors": refused_runs
            .iter()
            .map(|(index, count, status, reason)| json!({
                "index": index, "count": count, "status": status.as_u16(), "reason": reason,
            }))
            .collect::<Vec<_>>(),
    });
    (status, body)
}

/// Why a body is not JSON records.
#[derive(Debug, PartialEq)]
pub enum BodyProblem {
    Empty,
    /// The body is not UTF-8 (JSON must be); the offset of the first bad byte.
    NotUtf8(usize),
    NotRecords(&'static str),
    /// Nested deeper than [`MAX_DEPTH`]: where, 1-based.
    TooDeep {
        line: usize,
        column: usize,
    },
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
            Self::TooDeep { line, column } => json!({"accepted": 0, "error": format!(
                "recursion limit exceeded at line {line} column {column}: JSON nested deeper than {MAX_DEPTH} levels"
            )}),
            Self::Lines { first, total } => json!({
                "accepted": 0,
                "error": format!("the body is neither JSON nor NDJSON ({total} bad lines)"),
                "errors": first.iter().map(|(line, reason)| json!({"line": line, "reason": reason})).collect::<Vec<_>>(),
            }),
        }
    }
}

/// How deep a body may nest arrays and objects: serde_json's own recursion
/// limit, which a full parse of a record (a column that takes the whole
/// record, or any other consumer of the topic) would hit.
pub const MAX_DEPTH: usize = 127;

/// Where a body first nests deeper than [`MAX_DEPTH`], if it does. One pass
/// over the bytes: skipping a value does not check its depth in serde_json
/// (it needs no recursion to), and such a record is refused at the door.
fn too_deep(bytes: &[u8]) -> Option<BodyProblem> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for (offset, &b) in bytes.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_DEPTH {
                    let before = &bytes[..offset];
                    let line_start = before
                        .iter()
                        .rposition(|&c| c == b'\n')
                        .map_or(0, |i| i + 1);
                    return Some(BodyProblem::TooDeep {
                        line: before.iter().filter(|&&c| c == b'\n').count() + 1,
                        column: offset - line_start + 1,
                    });
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            // A new NDJSON line starts at depth 0 whatever the last one did.
            b'\n' => depth = 0,
            _ => {}
        }
    }
    None
}

/// Splits a body into its records, as JSON text: one object, an array of
/// them, or NDJSON (one per line; blank lines are skipped). Every record is
/// checked to be JSON but not built into a value: each is parsed once, by
/// the table's mapping, in [`PushState::check`], and its text is sent as it
/// came. serde_json's recursion limit (128) holds for skipped values too.
pub fn parse_body(bytes: &[u8]) -> Result<Vec<&[u8]>, BodyProblem> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(BodyProblem::Empty);
    }
    // serde_json would say "invalid unicode code point" or "expected value"
    // at some column; the offset of the byte says more.
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(BodyProblem::NotUtf8(e.valid_up_to()));
    }
    if let Some(problem) = too_deep(bytes) {
        return Err(problem);
    }
    match serde_json::from_slice::<&RawValue>(bytes) {
        Ok(whole) => {
            let text = whole.get();
            match text.as_bytes().first() {
                Some(b'[') => {
                    let items: Vec<&RawValue> =
                        serde_json::from_str(text).map_err(|e| BodyProblem::Lines {
                            first: vec![(1, e.to_string())],
                            total: 1,
                        })?;
                    if items.is_empty() {
                        return Err(BodyProblem::NotRecords("an empty array"));
                    }
                    Ok(items.into_iter().map(|i| i.get().as_bytes()).collect())
                }
                Some(b'{') => Ok(vec![text.as_bytes()]),
                Some(b'"') => Err(BodyProblem::NotRecords("a string")),
                Some(b't' | b'f') => Err(BodyProblem::NotRecords("a boolean")),
                Some(b'n') => Err(BodyProblem::NotRecords("null")),
                _ => Err(BodyProblem::NotRecords("a number")),
            }
        }
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
                match serde_json::from_slice::<&RawValue>(line) {
                    Ok(v) if total == 0 => records.push(v.get().as_bytes()),
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
    fn the_small_body_reserve_is_an_eighth_of_the_budget_within_bounds() {
        assert_eq!(small_reserve(8 << 20), 1 << 20);
        assert_eq!(small_reserve(4 << 20), 512 << 10);
        assert_eq!(small_reserve(1024), SMALL_BODY_BYTES);
        assert_eq!(small_reserve(1 << 30), 1 << 20);
    }

    #[test]
    fn the_body_budget_fits_the_largest_body_a_source_accepts() {
        let limits = HttpLimits::default();
        let source = |max| {
            (
                "s".to_owned(),
                HttpPushSource {
                    path: "/v1/records".to_owned(),
                    max_body_bytes: max,
                    auth: None,
                },
            )
        };
        assert_eq!(body_budget(&limits, &[]), limits.max_buffered_body_bytes);
        assert_eq!(
            body_budget(&limits, &[source(1 << 20)]),
            limits.max_buffered_body_bytes
        );
        assert_eq!(
            body_budget(&limits, &[source(1 << 20), source(32 << 20)]),
            32 << 20
        );
    }

    #[test]
    fn a_key_has_one_record_in_flight_and_a_refused_one_stops_its_key() {
        let mut waves = Waves::new(["a", "b", "a", "c", "a", "b"]);
        assert_eq!(waves.next_wave(), [0, 1, 3]);
        // 0 (a) was not accepted: a's later records are never sent.
        assert_eq!(waves.abandon_key_of(0), [2, 4]);
        assert_eq!(waves.next_wave(), [5]);
        assert!(waves.next_wave().is_empty());

        let mut distinct = Waves::new(["x", "y", "z"]);
        assert_eq!(distinct.next_wave(), [0, 1, 2], "one wave when keys differ");
        assert!(distinct.next_wave().is_empty());
    }

    #[test]
    fn a_partly_taken_request_lists_what_was_taken_and_why_not_the_rest() {
        let refused = |status: StatusCode, reason: &str| Fate::Refused {
            status,
            reason: reason.to_owned(),
        };
        let all = vec![Fate::Accepted; 3];
        assert_eq!(
            outcome(&all),
            (StatusCode::ACCEPTED, json!({"accepted": 3}))
        );

        let mut fates = vec![Fate::Accepted; 10];
        fates[5] = refused(StatusCode::SERVICE_UNAVAILABLE, "timed out");
        fates[6] = refused(StatusCode::SERVICE_UNAVAILABLE, "timed out");
        fates[8] = refused(StatusCode::PAYLOAD_TOO_LARGE, "too large");
        let (status, body) = outcome(&fates);
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "413 comes first");
        assert_eq!(body["accepted"], 7);
        assert_eq!(body["rejected"], 3);
        assert_eq!(
            body["acceptedRecords"],
            json!([{"index": 0, "count": 5}, {"index": 7, "count": 1}, {"index": 9, "count": 1}])
        );
        assert_eq!(
            body["errors"],
            json!([
                {"index": 5, "count": 2, "status": 503, "reason": "timed out"},
                {"index": 8, "count": 1, "status": 413, "reason": "too large"},
            ])
        );

        let queue = vec![
            refused(StatusCode::TOO_MANY_REQUESTS, "queue full"),
            refused(StatusCode::FAILED_DEPENDENCY, "after 0"),
        ];
        let (status, body) = outcome(&queue);
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(body["accepted"], 0);
        assert_eq!(body["acceptedRecords"], json!([]));
    }

    #[test]
    fn objects_arrays_and_ndjson_are_records() {
        let a: &[u8] = br#"{"a":1}"#;
        let b: &[u8] = br#"{"a": 2}"#;
        assert_eq!(parse_body(br#" {"a":1} "#).unwrap(), [a]);
        assert_eq!(parse_body(br#"[{"a":1}, {"a": 2}]"#).unwrap(), [a, b]);
        assert_eq!(parse_body(b"{\"a\":1}\n\n{\"a\": 2}\r\n").unwrap(), [a, b]);
        // Not records, but JSON: refused per record by the check.
        assert_eq!(parse_body(b"[1]").unwrap(), [b"1"]);
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
        let problem = parse_body(deep.as_bytes()).unwrap_err();
        assert_eq!(
            problem,
            BodyProblem::TooDeep {
                line: 1,
                column: 128
            }
        );
        assert!(
            problem
                .to_json()
                .to_string()
                .contains("recursion limit exceeded at line 1 column 128"),
            "{problem:?}"
        );
        // serde_json's own limit is the same: one level less parses.
        let at = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
        assert!(serde_json::from_str::<Value>(&at(MAX_DEPTH + 1)).is_err());
        assert!(serde_json::from_str::<Value>(&at(MAX_DEPTH)).is_ok());
        // Deep in an unmapped field of the second NDJSON line, and brackets
        // inside strings are text, not nesting.
        let hidden = format!("{{\"a\":\"[[[\\\"[[\"}}\n{{\"b\":{}}}", at(MAX_DEPTH));
        assert_eq!(
            parse_body(hidden.as_bytes()),
            Err(BodyProblem::TooDeep {
                line: 2,
                column: 132
            })
        );
        // Within the limit, nesting is just data.
        let ok = format!("{{\"a\":{}}}", at(100));
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
