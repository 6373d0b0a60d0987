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
    /// headers that carry credentials such as `Authorization`.
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
}

fn default_timeout_seconds() -> i32 {
    30
}

fn default_max_retries() -> i32 {
    3
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
        }
    }
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
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
