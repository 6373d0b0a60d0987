//! Where records come from: pulled from an HTTP API, pushed to the
//! pipeline's endpoint, or generated.

use std::collections::BTreeMap;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{limits, patterns};

/// One source of records. Exactly one of `httpPull`, `httpPush` or
/// `generator` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "(has(self.httpPull) ? 1 : 0) + (has(self.httpPush) ? 1 : 0) + (has(self.generator) ? 1 : 0) == 1"
    )
    .message("set exactly one of httpPull, httpPush or generator")
)]
pub struct SourceSpec {
    /// Source name, unique in the pipeline: lower-case letters, digits and
    /// `-`, at most 63 characters. It labels the source's metrics and Events.
    #[schemars(length(min = 1, max = limits::SOURCE_NAME_MAX))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::DNS_LABEL))
        .message("must be lower-case letters, digits and '-', starting and ending with a letter or digit"))]
    pub name: String,

    /// Pull records from an HTTP API on a schedule, as the seed's Airflow DAG
    /// did with randomuser.me.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_pull: Option<HttpPullSource>,

    /// Accept records POSTed to the pipeline's Service: one JSON object, an
    /// array of objects, or newline-delimited JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_push: Option<HttpPushSource>,

    /// Generate synthetic records, for demos and load tests without internet.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generator: Option<GeneratorSource>,
}

/// The kind of a source, for code that handles each kind differently.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SourceKind<'a> {
    HttpPull(&'a HttpPullSource),
    HttpPush(&'a HttpPushSource),
    Generator(&'a GeneratorSource),
}

impl SourceSpec {
    /// The source's kind, or `None` unless exactly one kind is set (which
    /// admission and [`crate::validate_spec`] refuse).
    pub fn kind(&self) -> Option<SourceKind<'_>> {
        match (&self.http_pull, &self.http_push, &self.generator) {
            (Some(pull), None, None) => Some(SourceKind::HttpPull(pull)),
            (None, Some(push), None) => Some(SourceKind::HttpPush(push)),
            (None, None, Some(generator)) => Some(SourceKind::Generator(generator)),
            _ => None,
        }
    }
}

/// Pulls records from an HTTP API on a schedule. A run that is still going
/// when the next is due delays it rather than overlapping it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpPullSource {
    /// `http` or `https` URL to GET, for example
    /// `https://randomuser.me/api/?results=10`.
    #[schemars(length(min = 1, max = limits::URL_MAX))]
    #[x_kube(validation = Rule::new("isURL(self) && url(self).getScheme() in ['http', 'https'] && url(self).getHost() != ''")
        .message("must be an absolute http or https URL"))]
    pub url: String,

    /// When to pull: a five-field cron expression in UTC such as
    /// `*/1 * * * *` (every minute), or an interval such as `30s`, `5m`, `1h`
    /// or `500ms`.
    #[schemars(length(min = 1, max = limits::SCHEDULE_MAX))]
    #[x_kube(validation = Rule::new(format!(
        "(self.matches('{}') && !self.matches('{}')) || self.matches('{}')",
        patterns::INTERVAL,
        patterns::ZERO_INTERVAL,
        patterns::CRON
    ))
    .message("must be a five-field cron expression such as '*/1 * * * *' or a non-zero interval such as '30s', '5m' or '1h'"))]
    pub schedule: String,

    /// JSON pointer to the array of records in the response, for example
    /// `/results`. Empty (default): the response is one record, or an array
    /// of records.
    #[serde(default)]
    #[schemars(length(max = limits::POINTER_MAX))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::JSON_POINTER_OR_EMPTY))
        .message("must be empty or a JSON pointer such as /results"))]
    pub records_path: String,

    /// Extra request headers, for example `Accept: application/json`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = limits::HEADERS_MAX))]
    pub headers: BTreeMap<String, String>,

    /// A Secret whose every key is a header name and value its value, for
    /// headers that carry credentials such as `Authorization`. These, and
    /// `headers` named like credentials (`Authorization`, `Cookie`, names
    /// with `token`, `key`, `secret`, `auth`...), are sent only to the
    /// scheme, host and port of `url`: a redirect or next page elsewhere
    /// goes without them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers_from_secret: Option<SecretReference>,

    /// Seconds before a request is abandoned.
    #[serde(default = "default_timeout_seconds")]
    #[schemars(range(min = limits::TIMEOUT_SECONDS.0, max = limits::TIMEOUT_SECONDS.1))]
    pub timeout_seconds: i32,

    /// Retries after a failed request, with exponential backoff, before the
    /// run is recorded as failed.
    #[serde(default = "default_max_retries")]
    #[schemars(range(min = limits::MAX_RETRIES.0, max = limits::MAX_RETRIES.1))]
    pub max_retries: i32,

    /// Largest response body, in bytes (default 16 MiB). A larger response,
    /// whatever its `Content-Length` says, fails the run and is not read
    /// past the limit; none of its records is produced.
    #[serde(default = "default_max_response_bytes")]
    #[schemars(range(min = limits::MAX_RESPONSE_BYTES.0, max = limits::MAX_RESPONSE_BYTES.1))]
    pub max_response_bytes: i64,

    /// Which kinds of address a pull may connect to, for the URL, every
    /// redirect and every next page, checked on the address a name
    /// resolves to. Public addresses always; private and loopback by
    /// default (in-cluster APIs); link-local addresses, where cloud
    /// metadata endpoints live, only when `linkLocal` is set. Unspecified,
    /// multicast, broadcast and reserved addresses never.
    #[serde(default)]
    pub allowed_addresses: AllowedAddresses,

    /// Follow the API's pages within a run: a next-page link in the body or
    /// in the `Link` header, a cursor, or page or offset parameters. Unset:
    /// one request per run, as before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,

    /// How `{{window.start}}` and `{{window.end}}` in `url` are written, and
    /// where the first window starts. A run's window starts where the last
    /// completed window ended (kept on the pull Lease) and ends when the run
    /// starts. Requires the URL to use a window variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<PullWindow>,

    /// A one-off pull of a past range, split into windows run one after
    /// another with the same limits. Requires the URL to use a window
    /// variable; its progress is kept on the pull Lease. The annotation
    /// `backfill.millrace.io/SOURCE` (this in JSON) asks for one without
    /// editing the spec, and replaces this one while it is there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backfill: Option<Backfill>,
}

fn default_timeout_seconds() -> i32 {
    30
}

fn default_max_retries() -> i32 {
    3
}

fn default_max_response_bytes() -> i64 {
    limits::DEFAULT_MAX_RESPONSE_BYTES
}

fn yes() -> bool {
    true
}

/// Kinds of address beyond the public ones a pull may connect to.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AllowedAddresses {
    /// Link-local addresses (169.254.0.0/16, fe80::/10) and cloud metadata
    /// endpoints elsewhere (fd00:ec2::254, 100.100.100.200). Default
    /// false: the metadata endpoint hands out the node's cloud
    /// credentials, the classic target of a request forged through a URL.
    #[serde(default)]
    pub link_local: bool,
    /// Private addresses (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
    /// 100.64.0.0/10, fc00::/7), where a cluster's Pods and Services are.
    /// Default true.
    #[serde(default = "yes")]
    pub private: bool,
    /// Loopback addresses (127.0.0.0/8, ::1): the runner's own Pod.
    /// Default true.
    #[serde(default = "yes")]
    pub loopback: bool,
}

impl Default for AllowedAddresses {
    fn default() -> Self {
        Self {
            link_local: false,
            private: true,
            loopback: true,
        }
    }
}

impl HttpPullSource {
    /// A pull of `url` on `schedule` with the defaults for everything else.
    pub fn new(url: impl Into<String>, schedule: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schedule: schedule.into(),
            records_path: String::new(),
            headers: BTreeMap::new(),
            headers_from_secret: None,
            timeout_seconds: default_timeout_seconds(),
            max_retries: default_max_retries(),
            max_response_bytes: default_max_response_bytes(),
            allowed_addresses: AllowedAddresses::default(),
            pagination: None,
            window: None,
            backfill: None,
        }
    }
}

/// How a run follows an API's pages. Exactly one of `nextLink`,
/// `linkHeader`, `cursor`, `page` or `offset` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(
        "(has(self.nextLink) ? 1 : 0) + (has(self.linkHeader) && self.linkHeader ? 1 : 0) + (has(self.cursor) ? 1 : 0) + (has(self.page) ? 1 : 0) + (has(self.offset) ? 1 : 0) == 1"
    )
    .message("set exactly one of nextLink, linkHeader: true, cursor, page or offset")
)]
pub struct Pagination {
    /// JSON pointer to the next page's URL in the response, such as
    /// `/info/next`; a relative URL is resolved against the page's own. The
    /// last page has none (missing, null or empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::POINTER_MAX))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::JSON_POINTER))
        .message("must be a JSON pointer such as /info/next"))]
    pub next_link: Option<String>,

    /// Follow the `Link` response header's `rel="next"` URL (RFC 8288), as
    /// GitHub's API pages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link_header: Option<bool>,

    /// A cursor in the response sent back as a query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<CursorPagination>,

    /// A page-number query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<NumberedPagination>,

    /// An offset query parameter, advanced by the records each page had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<NumberedPagination>,

    /// Most pages one run fetches. A run that reaches it says so in its
    /// last-pull message, and the next run goes on from the page after it
    /// in the same window, so nothing is dropped.
    #[serde(default = "default_max_pages")]
    #[schemars(range(min = limits::MAX_PAGES.0, max = limits::MAX_PAGES.1))]
    pub max_pages: i32,
}

fn default_max_pages() -> i32 {
    100
}

/// A cursor taken from each response and sent with the next request.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CursorPagination {
    /// JSON pointer to the next cursor in the response, such as
    /// `/meta/nextCursor`. The last page has none (missing, null or empty).
    #[schemars(length(min = 1, max = limits::POINTER_MAX), pattern(patterns::JSON_POINTER))]
    pub path: String,
    /// Query parameter the cursor is sent as, such as `cursor`.
    #[schemars(length(min = 1, max = limits::QUERY_PARAM_MAX), pattern(patterns::QUERY_PARAM))]
    pub param: String,
}

/// A page number or offset in a query parameter. The pages end at an empty
/// page, or at a page with fewer than `size` records when `size` is set.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NumberedPagination {
    /// Query parameter of the page number or offset, such as `page`.
    #[schemars(length(min = 1, max = limits::QUERY_PARAM_MAX), pattern(patterns::QUERY_PARAM))]
    pub param: String,
    /// The first page's number or offset (default 1 for `page`, 0 for
    /// `offset`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub start: Option<i64>,
    /// Records per page: a shorter page is the last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = limits::PAGE_SIZE.0, max = limits::PAGE_SIZE.1))]
    pub size: Option<i32>,
    /// Query parameter `size` is sent as, such as `per_page`; unset sends
    /// none (the URL may carry it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::QUERY_PARAM_MAX), pattern(patterns::QUERY_PARAM))]
    pub size_param: Option<String>,
}

/// How the window variables are written.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullWindow {
    /// Where the first window starts (RFC 3339) when no run has completed
    /// yet; unset: one schedule interval before the first run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::RFC3339))
        .message("initialStart must be an RFC 3339 time such as 2026-01-01T00:00:00Z"))]
    pub initial_start: Option<String>,
    /// How times are written into the URL.
    #[serde(default)]
    pub format: TimeFormat,
}

/// How a time is written into a URL.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum TimeFormat {
    /// `2026-01-01T00:00:00Z`, fractional seconds only when there are some.
    #[default]
    Rfc3339,
    /// Whole seconds since 1970 (the window's start rounded down, its end
    /// rounded down too, so windows stay contiguous).
    UnixSeconds,
    /// Milliseconds since 1970.
    UnixMillis,
}

/// A past range pulled once, window by window.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new(format!(
        "!self.from.matches('{0}') || !self.to.matches('{0}') || timestamp(self.from) < timestamp(self.to)",
        patterns::RFC3339
    ))
        .message("backfill.from must be before backfill.to")
)]
pub struct Backfill {
    /// Start of the range, RFC 3339.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::RFC3339))
        .message("from must be an RFC 3339 time such as 2026-01-01T00:00:00Z"))]
    pub from: String,
    /// End of the range (excluded), RFC 3339; not in the future.
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}')", patterns::RFC3339))
        .message("to must be an RFC 3339 time such as 2026-01-01T00:00:00Z"))]
    pub to: String,
    /// Length of each window, such as `1h`; unset: the schedule's interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 16))]
    #[x_kube(validation = Rule::new(format!("self.matches('{}') && !self.matches('{}')", patterns::INTERVAL, patterns::ZERO_INTERVAL))
        .message("must be a non-zero interval such as '30s', '5m' or '1h'"))]
    pub window_size: Option<String>,
}

/// A Secret in the StreamPipeline's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253), pattern(patterns::DNS_SUBDOMAIN))]
    pub name: String,
}

/// Accepts records POSTed to the pipeline's Service.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct HttpPushSource {
    /// Path the endpoint accepts records on. A request whose records are
    /// not valid for the table is refused with 4xx and the reason.
    #[serde(default = "default_push_path")]
    #[schemars(length(min = 1, max = 256), pattern(patterns::HTTP_PATH))]
    pub path: String,

    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_body_bytes")]
    #[schemars(range(min = limits::MAX_BODY_BYTES.0, max = limits::MAX_BODY_BYTES.1))]
    pub max_body_bytes: i64,

    /// Who may push. Unset: bearer tokens from a Secret the operator makes
    /// (`NAME-push-tokens`), so a new endpoint is never open by accident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<PushAuth>,
}

/// How a push request proves it may push.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(
    validation = Rule::new("self.type == 'BearerToken' || !has(self.tokensSecretRef)")
        .message("tokensSecretRef is only for type BearerToken"),
    validation = Rule::new("self.type == 'ClientCertificate' || !has(self.allowedDnsNames)")
        .message("allowedDnsNames is only for type ClientCertificate")
)]
pub struct PushAuth {
    /// `BearerToken` (default): every request carries `Authorization:
    /// Bearer TOKEN` with one of the Secret's tokens; without one it is
    /// answered 401, with a wrong one 403. `ClientCertificate`: the request
    /// comes over a TLS connection whose client presented a certificate
    /// issued by `spec.runner.pushTls.clientCaSecretRef` (which must be
    /// set); without one it is answered 401, with one not in
    /// `allowedDnsNames` 403. `None`: anyone who can reach the Service may
    /// push (the operator records a Warning Event).
    #[serde(default, rename = "type")]
    pub type_: PushAuthType,

    /// The Secret holding the accepted tokens: the value of each of its
    /// keys is one token, so a new token can be added before the old one is
    /// removed. The runner reads changes without restarting. Unset: the
    /// operator makes `NAME-push-tokens` with one random token under the
    /// key `token`, and never changes it afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_secret_ref: Option<SecretReference>,

    /// For type `ClientCertificate`: the client certificate must be valid
    /// for one of these DNS names (its subjectAltName DNS entries, as a
    /// server certificate is checked; the subject's CN is not read). Unset:
    /// every certificate the client CA issued may push.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = limits::ALLOWED_DNS_NAMES_MAX))]
    pub allowed_dns_names: Option<Vec<String>>,
}

/// See [`PushAuth::type_`].
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum PushAuthType {
    #[default]
    BearerToken,
    ClientCertificate,
    None,
}

impl HttpPushSource {
    /// The Secret whose values are the tokens this source accepts, or
    /// `None` when it accepts pushes without authentication.
    pub fn tokens_secret(&self, pipeline: &str) -> Option<String> {
        let auth = self.auth.clone().unwrap_or_default();
        match auth.type_ {
            PushAuthType::None | PushAuthType::ClientCertificate => None,
            PushAuthType::BearerToken => Some(auth.tokens_secret_ref.map_or_else(
                || crate::push_auth::generated_secret_name(pipeline),
                |r| r.name,
            )),
        }
    }

    /// How requests to this source prove they may push.
    pub fn auth_type(&self) -> PushAuthType {
        self.auth.as_ref().map(|a| a.type_).unwrap_or_default()
    }

    /// Whether the operator makes this source's tokens Secret.
    pub fn uses_generated_tokens(&self) -> bool {
        let auth = self.auth.clone().unwrap_or_default();
        auth.type_ == PushAuthType::BearerToken && auth.tokens_secret_ref.is_none()
    }
}

fn default_push_path() -> String {
    "/v1/records".to_owned()
}

fn default_max_body_bytes() -> i64 {
    1024 * 1024
}

impl Default for HttpPushSource {
    fn default() -> Self {
        Self {
            path: default_push_path(),
            max_body_bytes: default_max_body_bytes(),
            auth: None,
        }
    }
}

/// Generates synthetic records.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratorSource {
    /// Shape of the records: `randomuser` makes records shaped like
    /// randomuser.me's API results.
    #[serde(default)]
    pub profile: GeneratorProfile,

    /// Records generated per second by each ingest replica.
    #[serde(default = "default_records_per_second")]
    #[schemars(range(min = limits::RECORDS_PER_SECOND.0, max = limits::RECORDS_PER_SECOND.1))]
    pub records_per_second: i32,

    /// Stop after this many records. With a limit the records are a fixed
    /// sequence (see `seed`): a restarted or second ingest replica produces
    /// the same records again, so the table ends with exactly `limit` rows.
    /// Unset generates fresh records for as long as the pipeline runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub limit: Option<i64>,

    /// Seed of the sequence when `limit` is set; unset derives it from the
    /// pipeline's namespace, name and this source's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<i64>,
}

fn default_records_per_second() -> i32 {
    10
}

impl Default for GeneratorSource {
    fn default() -> Self {
        Self {
            profile: GeneratorProfile::default(),
            records_per_second: default_records_per_second(),
            limit: None,
            seed: None,
        }
    }
}

/// Shape of generated records.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum GeneratorProfile {
    #[default]
    Randomuser,
}
