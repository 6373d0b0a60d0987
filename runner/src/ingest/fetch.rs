//! One GET of a pull, with the rules of [`millrace_api::pull_network`]:
//! credential headers only to the configured URL's origin, every address
//! connected to checked against `allowedAddresses`, and the body read
//! within `maxResponseBytes`.
//!
//! Redirects are followed here, not by reqwest. Its redirect policy can
//! only follow or stop; it cannot change the next request's headers, and
//! on a hop to another host it drops only the headers it knows
//! (`Authorization`, `Cookie`...), so an `X-Api-Key` from a Secret would go
//! along. Following by hand lets each hop decide its headers by its
//! origin and check an IP-address host, which reqwest connects to without
//! asking the resolver.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use millrace_api::pull_network::{AddressRefused, is_credential_header, redacted, same_origin};
use millrace_api::{AllowedAddresses, HttpPullSource};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, LINK, LOCATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};

/// Most redirects one request follows, as browsers and reqwest's default.
pub const MAX_REDIRECTS: usize = 10;

/// Why a fetch failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("GET {url} failed: {reason}")]
    Http { url: String, reason: String },
    #[error("the server answered {status}{}", withheld_note(.withheld))]
    Status {
        status: StatusCode,
        /// The URL that answered, when it was another origin than the
        /// configured URL's, so that the credentials were not sent to it.
        withheld: Option<String>,
    },
    #[error("not connecting to {url}: {refused}")]
    Refused {
        url: String,
        refused: AddressRefused,
    },
    #[error(
        "the response from {url} is larger than maxResponseBytes ({limit} bytes): {seen}; none of it was used"
    )]
    TooLarge {
        url: String,
        limit: u64,
        seen: String,
    },
    #[error("{url} redirected more than {} times", MAX_REDIRECTS)]
    TooManyRedirects { url: String },
    #[error("{url} redirected to {location:?}, which is not an http or https URL")]
    BadRedirect { url: String, location: String },
    #[error("the response is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the response has no array of records at {0:?}")]
    NoRecords(String),
    #[error(transparent)]
    Paging(#[from] millrace_api::PagingError),
}

fn withheld_note(withheld: &Option<String>) -> String {
    withheld.as_ref().map_or_else(String::new, |url| {
        format!(
            " from {url}, which is not the configured URL's origin, so the credential headers were not sent to it"
        )
    })
}

impl FetchError {
    /// Whether trying the same request again may succeed.
    pub fn may_retry(&self) -> bool {
        match self {
            Self::Status { status, .. } => retryable(*status),
            Self::Http { .. } => true,
            Self::Refused { .. }
            | Self::TooLarge { .. }
            | Self::TooManyRedirects { .. }
            | Self::BadRedirect { .. }
            | Self::NotJson(_)
            | Self::NoRecords(_)
            | Self::Paging(_) => false,
        }
    }
}

pub fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// A fetched body and its `Link` header.
pub struct Fetched {
    pub body: Vec<u8>,
    pub link: Option<String>,
}

/// The HTTP client of one pull source.
pub struct PullClient {
    client: reqwest::Client,
    /// Sent with every request.
    headers: HeaderMap,
    /// Sent only to the configured URL's origin.
    credentials: HeaderMap,
    allowed: AllowedAddresses,
    limit: BodyLimit,
    /// `timeoutSeconds`, for a request with all its redirects and its body,
    /// as reqwest's own timeout covered them when it followed redirects:
    /// the pull Lease's duration is reckoned from it.
    timeout: Duration,
}

impl PullClient {
    /// The client for `spec`, with `secret_headers` (from
    /// `headersFromSecret`) as credentials.
    pub fn new(
        source: &str,
        spec: &HttpPullSource,
        secret_headers: Vec<(String, String)>,
    ) -> anyhow::Result<Self> {
        let mut headers = HeaderMap::new();
        let mut credentials = HeaderMap::new();
        let all = spec
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), is_credential_header(k)))
            .chain(secret_headers.into_iter().map(|(k, v)| (k, v, true)));
        for (k, v, credential) in all {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|e| anyhow::anyhow!("source {source}: header {k:?}: {e}"))?;
            let mut value = HeaderValue::from_str(&v).map_err(|_| {
                anyhow::anyhow!(
                    "source {source}: header {k:?} has a value that is not a valid header value"
                )
            })?;
            value.set_sensitive(true);
            if credential {
                credentials.insert(name, value);
            } else {
                headers.insert(name, value);
            }
        }
        let allowed = spec.allowed_addresses;
        let timeout = Duration::from_secs(spec.timeout_seconds.max(1) as u64);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(CheckedResolver { allowed }))
            // Through a proxy the address connected to would be the
            // proxy's, and the checks would say nothing about the target;
            // the runner's Pods get no proxy settings anyway.
            .no_proxy()
            .timeout(timeout)
            .user_agent(concat!("millrace-runner/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            headers,
            credentials,
            allowed,
            limit: BodyLimit(u64::try_from(spec.max_response_bytes).unwrap_or(0)),
            timeout,
        })
    }

    /// GETs `url`, following redirects; `home` is the configured URL, the
    /// origin the credentials belong to. On failure, the error and the
    /// server's `Retry-After`.
    pub async fn get(
        &self,
        url: &Url,
        home: &Url,
    ) -> Result<Fetched, (FetchError, Option<Duration>)> {
        match tokio::time::timeout(self.timeout, self.follow(url, home)).await {
            Ok(result) => result,
            Err(_) => Err((
                FetchError::Http {
                    url: redacted(url),
                    reason: format!(
                        "no complete answer within timeoutSeconds ({} s)",
                        self.timeout.as_secs()
                    ),
                },
                None,
            )),
        }
    }

    async fn follow(
        &self,
        url: &Url,
        home: &Url,
    ) -> Result<Fetched, (FetchError, Option<Duration>)> {
        let mut at = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            self.allowed.permits_url(&at).map_err(|refused| {
                (
                    FetchError::Refused {
                        url: redacted(&at),
                        refused,
                    },
                    None,
                )
            })?;
            let trusted = same_origin(home, &at);
            let mut headers = self.headers.clone();
            if trusted {
                headers.extend(self.credentials.clone());
            }
            let response = self
                .client
                .get(at.clone())
                .headers(headers)
                .send()
                .await
                .map_err(|e| (transport(&at, e), None))?;
            let status = response.status();
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|v| v.to_str().ok());
            if let (true, Some(location)) = (is_redirect(status), location) {
                at = redirect_target(&at, location).map_err(|e| (e, None))?;
                continue;
            }
            if !status.is_success() {
                let retry_after = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                let withheld = (!trusted && !self.credentials.is_empty()).then(|| redacted(&at));
                return Err((FetchError::Status { status, withheld }, retry_after));
            }
            let link = response
                .headers()
                .get(LINK)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = self.read_body(response, &at).await.map_err(|e| (e, None))?;
            return Ok(Fetched { body, link });
        }
        Err((FetchError::TooManyRedirects { url: redacted(url) }, None))
    }

    /// The body, chunk by chunk, never holding more than the limit: a
    /// `Content-Length` above it is refused before reading, and a body
    /// without one (or with a false one) is cut off when it passes it.
    async fn read_body(
        &self,
        mut response: reqwest::Response,
        url: &Url,
    ) -> Result<Vec<u8>, FetchError> {
        let too_large = |seen: String| FetchError::TooLarge {
            url: redacted(url),
            limit: self.limit.0,
            seen,
        };
        let declared = response.content_length();
        self.limit.check_declared(declared).map_err(too_large)?;
        let mut body = Vec::with_capacity(self.limit.initial_capacity(declared));
        while let Some(chunk) = response.chunk().await.map_err(|e| transport(url, e))? {
            self.limit
                .check_received(body.len() as u64 + chunk.len() as u64)
                .map_err(too_large)?;
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// `maxResponseBytes`, as the checks of a body being read.
#[derive(Clone, Copy, Debug)]
pub struct BodyLimit(pub u64);

impl BodyLimit {
    /// A declared length above the limit is refused from the headers alone.
    pub fn check_declared(self, declared: Option<u64>) -> Result<(), String> {
        match declared {
            Some(n) if n > self.0 => Err(format!("its Content-Length is {n} bytes")),
            _ => Ok(()),
        }
    }

    /// `received` bytes so far, counting the chunk just arrived.
    pub fn check_received(self, received: u64) -> Result<(), String> {
        if received > self.0 {
            Err(format!("stopped reading at {received} bytes"))
        } else {
            Ok(())
        }
    }

    /// What to reserve for a body: its declared length, within the limit.
    pub fn initial_capacity(self, declared: Option<u64>) -> usize {
        usize::try_from(declared.unwrap_or(0).min(self.0)).unwrap_or(0)
    }
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

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

/// Where a redirect from `from` to `location` goes: resolved against
/// `from` (RFC 3986), and only to http or https.
pub fn redirect_target(from: &Url, location: &str) -> Result<Url, FetchError> {
    let bad = || FetchError::BadRedirect {
        url: redacted(from),
        location: location.chars().take(200).collect(),
    };
    let next = from.join(location).map_err(|_| bad())?;
    if matches!(next.scheme(), "http" | "https") && next.has_host() {
        Ok(next)
    } else {
        Err(bad())
    }
}

/// A transport error, with its causes (reqwest's own text is only "error
/// sending request"), or the refusal when the resolver refused the name.
fn transport(url: &Url, error: reqwest::Error) -> FetchError {
    let error = error.without_url();
    let mut causes = Vec::new();
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(e) = cause {
        if let Some(refused) = e.downcast_ref::<AddressRefused>() {
            return FetchError::Refused {
                url: redacted(url),
                refused: refused.clone(),
            };
        }
        let text = e.to_string();
        if causes.last() != Some(&text) {
            causes.push(text);
        }
        cause = e.source();
    }
    FetchError::Http {
        url: redacted(url),
        reason: causes.join(": "),
    }
}

/// The system resolver, keeping only the addresses `allowedAddresses`
/// permits: a name that resolves to refused addresses alone is refused,
/// so a name cannot smuggle in what an address in the URL could not.
struct CheckedResolver {
    allowed: AllowedAddresses,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        Box::pin(resolve_checked(self.allowed, name.as_str().to_owned()))
    }
}

async fn resolve_checked(
    allowed: AllowedAddresses,
    host: String,
) -> Result<reqwest::dns::Addrs, Box<dyn std::error::Error + Send + Sync>> {
    let found = tokio::net::lookup_host((host.as_str(), 0)).await?;
    let mut refused = None;
    let permitted: Vec<SocketAddr> = found
        .filter(|addr| match allowed.permits(addr.ip()) {
            Ok(()) => true,
            Err(e) => {
                refused.get_or_insert(e);
                false
            }
        })
        .collect();
    if let (true, Some(mut refused)) = (permitted.is_empty(), refused) {
        refused.host = Some(host);
        return Err(Box::new(refused));
    }
    Ok(Box::new(permitted.into_iter()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use axum::Router;
    use axum::http::HeaderMap as Received;
    use axum::response::{IntoResponse, Redirect};
    use axum::routing::get;

    use super::*;

    /// Serves `app` on `ip` (any port), for as long as the test runs.
    async fn serve(ip: &str, app: Router) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    type Seen = Arc<Mutex<Vec<(String, Option<String>, Option<String>, Option<String>)>>>;

    /// A route that records the credential and plain headers it gets.
    fn recording(seen: &Seen, name: &'static str, answer: &'static str) -> Router {
        let seen = seen.clone();
        Router::new().route(
            "/",
            get(move |h: Received| async move {
                let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                seen.lock().unwrap().push((
                    name.to_owned(),
                    get("x-api-key"),
                    get("authorization"),
                    get("accept"),
                ));
                answer
            }),
        )
    }

    fn client(url: &str, change: impl FnOnce(&mut HttpPullSource)) -> PullClient {
        let mut spec = HttpPullSource::new(url, "1m");
        spec.timeout_seconds = 2;
        spec.headers
            .insert("Accept".into(), "application/json".into());
        spec.headers
            .insert("Authorization".into(), "Bearer in-the-spec".into());
        change(&mut spec);
        PullClient::new(
            "api",
            &spec,
            vec![("X-Api-Key".into(), "from-a-secret".into())],
        )
        .unwrap()
    }

    #[tokio::test]
    async fn credentials_go_to_the_configured_origin_only() {
        let seen = Seen::default();
        let other = serve("127.0.0.2", recording(&seen, "other", "[]")).await;
        let same = seen.clone();
        let home_app = Router::new().route(
            "/records",
            get(move |h: Received| async move {
                let get = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                same.lock().unwrap().push((
                    "home".into(),
                    get("x-api-key"),
                    get("authorization"),
                    get("accept"),
                ));
                Redirect::to(&format!("http://{other}/"))
            }),
        );
        let home = serve("127.0.0.1", home_app).await;
        let configured = Url::parse(&format!("http://{home}/records?page=1")).unwrap();
        let c = client(configured.as_str(), |_| {});
        let fetched = c.get(&configured, &configured).await.unwrap();
        assert_eq!(fetched.body, b"[]");
        let seen = seen.lock().unwrap().clone();
        let key = Some("from-a-secret".to_owned());
        let auth = Some("Bearer in-the-spec".to_owned());
        let accept = Some("application/json".to_owned());
        assert_eq!(
            seen,
            [
                ("home".into(), key, auth, accept.clone()),
                ("other".into(), None, None, accept),
            ],
            "credentials at home, plain headers everywhere"
        );
    }

    #[tokio::test]
    async fn a_redirect_home_keeps_the_credentials_and_a_page_elsewhere_says_they_were_not_sent() {
        let seen = Seen::default();
        let home_app = recording(&seen, "home", "{}")
            .route("/moved", get(|| async { Redirect::permanent("/") }));
        let home = serve("127.0.0.1", home_app).await;
        let refusing = Router::new().route(
            "/",
            get(|| async { (StatusCode::UNAUTHORIZED, "who are you").into_response() }),
        );
        let other = serve("127.0.0.2", refusing).await;
        let configured = Url::parse(&format!("http://{home}/")).unwrap();
        let c = client(configured.as_str(), |_| {});
        let moved = Url::parse(&format!("http://{home}/moved")).unwrap();
        c.get(&moved, &configured).await.unwrap();
        assert_eq!(seen.lock().unwrap()[0].1.as_deref(), Some("from-a-secret"));
        let elsewhere = Url::parse(&format!("http://{other}/?next=abc")).unwrap();
        let (error, _) = c.get(&elsewhere, &configured).await.err().unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "the server answered 401 Unauthorized from http://{other}/?..., which is not the configured URL's origin, \
                 so the credential headers were not sent to it"
            )
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_with_or_without_its_length() {
        let big = "x".repeat(4096);
        let sized = big.clone();
        let app = Router::new()
            .route("/sized", get(move || async move { sized }))
            .route(
                "/chunked",
                get(move || async move {
                    let chunks = (0..8).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 512]));
                    axum::body::Body::from_stream(futures::stream::iter(chunks))
                }),
            )
            .route("/small", get(|| async { "x".repeat(1024) }));
        let addr = serve("127.0.0.1", app).await;
        let base = Url::parse(&format!("http://{addr}/")).unwrap();
        let c = client(base.as_str(), |s| s.max_response_bytes = 1024);
        let sized = base.join("sized").unwrap();
        let (error, _) = c.get(&sized, &base).await.err().unwrap();
        assert_eq!(
            error.to_string(),
            format!(
                "the response from http://{addr}/sized is larger than maxResponseBytes (1024 bytes): \
                 its Content-Length is 4096 bytes; none of it was used"
            )
        );
        let chunked = base.join("chunked").unwrap();
        let (error, _) = c.get(&chunked, &base).await.err().unwrap();
        // Where it stops depends on how the chunks arrive, but never
        // past one chunk over the limit.
        assert!(
            error.to_string().contains(": stopped reading at 1"),
            "{error}"
        );
        assert!(!error.may_retry());
        let small = base.join("small").unwrap();
        assert_eq!(c.get(&small, &base).await.unwrap().body.len(), 1024);
    }

    #[tokio::test]
    async fn refused_addresses_are_not_connected_to() {
        let metadata = Url::parse("http://169.254.169.254/latest/meta-data/").unwrap();
        let c = client(metadata.as_str(), |_| {});
        let (error, _) = c.get(&metadata, &metadata).await.err().unwrap();
        assert!(matches!(error, FetchError::Refused { .. }), "{error}");
        assert!(!error.may_retry());
        assert_eq!(
            error.to_string(),
            "not connecting to http://169.254.169.254/latest/meta-data/: 169.254.169.254 is a link-local \
             address (cloud metadata endpoints live there), which this source may not connect to \
             (allowedAddresses.linkLocal: true would allow it)"
        );

        // A redirect there is refused at its hop.
        let app = Router::new().route(
            "/",
            get(|| async { Redirect::temporary("http://[::ffff:169.254.169.254]/") }),
        );
        let addr = serve("127.0.0.1", app).await;
        let home = Url::parse(&format!("http://{addr}/")).unwrap();
        let (error, _) = c.get(&home, &home).await.err().unwrap();
        assert!(matches!(error, FetchError::Refused { .. }), "{error}");

        // A name is checked on what it resolves to.
        let closed = client(home.as_str(), |s| s.allowed_addresses.loopback = false);
        let named = Url::parse(&format!("http://localhost:{}/", addr.port())).unwrap();
        let (error, _) = closed.get(&named, &named).await.err().unwrap();
        assert!(
            matches!(&error, FetchError::Refused { refused, .. } if refused.host.as_deref() == Some("localhost")),
            "{error}"
        );
        let (error, _) = closed.get(&home, &home).await.err().unwrap();
        assert!(matches!(error, FetchError::Refused { .. }), "{error}");
    }

    #[test]
    fn a_body_is_held_to_its_limit() {
        let limit = BodyLimit(1024);
        assert!(limit.check_declared(None).is_ok());
        assert!(limit.check_declared(Some(1024)).is_ok());
        assert_eq!(
            limit.check_declared(Some(1025)).unwrap_err(),
            "its Content-Length is 1025 bytes"
        );
        assert!(limit.check_received(1024).is_ok());
        assert_eq!(
            limit.check_received(1025).unwrap_err(),
            "stopped reading at 1025 bytes"
        );
        assert_eq!(limit.initial_capacity(None), 0);
        assert_eq!(limit.initial_capacity(Some(100)), 100);
        assert_eq!(
            limit.initial_capacity(Some(1 << 40)),
            1024,
            "a lie costs no more"
        );
    }

    #[test]
    fn redirects_go_to_http_urls_only() {
        let from = Url::parse("https://api.example.com/v1/users?page=1").unwrap();
        assert_eq!(
            redirect_target(&from, "/v2/users").unwrap().as_str(),
            "https://api.example.com/v2/users"
        );
        assert_eq!(
            redirect_target(&from, "http://127.0.0.2:8080/x")
                .unwrap()
                .as_str(),
            "http://127.0.0.2:8080/x"
        );
        for bad in [
            "file:///etc/passwd",
            "gopher://x/",
            "data:text/plain,x",
            "http://",
        ] {
            assert!(
                matches!(
                    redirect_target(&from, bad),
                    Err(FetchError::BadRedirect { .. })
                ),
                "{bad}"
            );
        }
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
