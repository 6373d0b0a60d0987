//! The Schema Registry client of an Avro sink: each writer schema fetched
//! once by id (`GET {url}/schemas/ids/{id}`, the Confluent API) and kept,
//! since an id never changes meaning.
//!
//! What the registry answers decides the record's fate: a schema decodes
//! it; "no such id" (404 with error code 40403) and a schema that is not
//! Avro dead-letter it; anything else (no connection, a timeout, 5xx, a
//! refused login, a 404 that is not the registry's own) is the registry's
//! state, which the sink waits out without touching the record.
//!
//! Decoding is the `apache-avro` crate's; what is written here is only the
//! one request by id. It is kept our own because that request's answer is
//! where this module's policy lives (a 40403 dead-letters, a bare 404, a
//! refused login or a 5xx waits, a failure is never cached, the URL never
//! reaches a log), and a converter crate would put its own error type and
//! cache between the answer and that decision.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use millrace_api::Credentials;
use millrace_api::avro::{
    AvroError, RegistryErrorBody, RegistrySchema, SCHEMA_NOT_FOUND, WriterSchema,
};
use reqwest::StatusCode;
use tokio::sync::OnceCell;

/// How long one request to the registry may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the registry's client cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum RegistrySetupError {
    #[error(
        "format.schemaRegistry.tls.caSecretRef: the Secret's key holds no PEM certificate{}",
        .0.as_ref().map(|e| format!(" ({e})")).unwrap_or_default()
    )]
    Ca(Option<reqwest::Error>),
    #[error("the schema registry's HTTP client: {0}")]
    Client(#[from] reqwest::Error),
}

/// Why a record's writer schema is not at hand.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The registry has no schema with this id: the record cannot be read.
    #[error("unknown schema id {0}")]
    Unknown(u32),
    /// The registry's schema under this id cannot read Avro.
    #[error("schema id {id}: {source}")]
    Invalid { id: u32, source: AvroError },
    /// The registry cannot answer now; the record waits.
    #[error("the schema registry cannot give schema id {id}: {why}")]
    Unavailable { id: u32, why: String },
}

type Slot = Arc<OnceCell<Arc<WriterSchema>>>;

/// A Schema Registry and the writer schemas read from it.
pub struct Registry {
    client: reqwest::Client,
    /// The base URL, without a trailing slash.
    base: String,
    credentials: Option<Credentials>,
    schemas: Mutex<HashMap<u32, Slot>>,
}

impl Registry {
    /// A client of the registry at `url`; with `ca_pem`, only those CAs
    /// are trusted for its certificate (a private CA's registry), else the
    /// public roots the runner carries.
    pub fn new(
        url: &str,
        credentials: Option<Credentials>,
        ca_pem: Option<&str>,
    ) -> Result<Self, RegistrySetupError> {
        let mut builder = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .connect_timeout(Duration::from_secs(5));
        if let Some(pem) = ca_pem {
            let cas = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
                .map_err(|e| RegistrySetupError::Ca(Some(e)))?;
            if cas.is_empty() {
                return Err(RegistrySetupError::Ca(None));
            }
            builder = cas
                .into_iter()
                .fold(builder.tls_built_in_root_certs(false), |b, ca| {
                    b.add_root_certificate(ca)
                });
        }
        let client = builder.build()?;
        Ok(Self {
            client,
            base: url.trim_end_matches('/').to_owned(),
            credentials,
            schemas: Mutex::default(),
        })
    }

    /// The writer schema `id`, from the cache or the registry. Concurrent
    /// asks for one id make a single request; a failed one is not kept.
    pub async fn schema(&self, id: u32) -> Result<Arc<WriterSchema>, RegistryError> {
        let slot = {
            let mut schemas = self.schemas.lock().unwrap_or_else(PoisonError::into_inner);
            schemas.entry(id).or_default().clone()
        };
        slot.get_or_try_init(|| self.fetch(id)).await.cloned()
    }

    async fn fetch(&self, id: u32) -> Result<Arc<WriterSchema>, RegistryError> {
        let unavailable = |why: String| RegistryError::Unavailable { id, why };
        let mut request = self
            .client
            .get(format!("{}/schemas/ids/{id}", self.base))
            .header(
                reqwest::header::ACCEPT,
                "application/vnd.schemaregistry.v1+json, application/json",
            );
        if let Some(c) = &self.credentials {
            request = request.basic_auth(&c.username, Some(&c.password));
        }
        let response = request.send().await.map_err(|e| unavailable(reason(e)))?;
        let status = response.status();
        let body = response.bytes().await.map_err(|e| unavailable(reason(e)))?;
        match status {
            StatusCode::OK => {
                let answer: RegistrySchema = serde_json::from_slice(&body).map_err(|e| {
                    unavailable(format!(
                        "its answer is not a schema ({e}): is the URL the registry's Confluent API?"
                    ))
                })?;
                answer
                    .parse()
                    .map(Arc::new)
                    .map_err(|source| RegistryError::Invalid { id, source })
            }
            StatusCode::NOT_FOUND => {
                let code = serde_json::from_slice::<RegistryErrorBody>(&body)
                    .ok()
                    .and_then(|b| b.error_code);
                if code == Some(SCHEMA_NOT_FOUND) {
                    Err(RegistryError::Unknown(id))
                } else {
                    // A wrong path answers 404 too: dead-lettering every
                    // record for it would empty the topic into the DLQ.
                    Err(unavailable(
                        "HTTP 404 without the registry's error code 40403: is the URL the registry's Confluent API?".to_owned(),
                    ))
                }
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(unavailable(format!(
                "HTTP {}: the registry refused the credentials of format.schemaRegistry.credentialsSecretRef",
                status.as_u16()
            ))),
            other => Err(unavailable(format!("HTTP {}", other.as_u16()))),
        }
    }
}

/// The error and its causes, where a TLS failure says what it is ("invalid
/// peer certificate: UnknownIssuer"), without the URL: it may carry a login
/// in its user part.
fn reason(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const SCHEMA: &str = r#"{"type":"record","name":"R","fields":[{"name":"id","type":"string"}]}"#;

    /// A local stand-in for the registry's HTTP API: answers each request
    /// with `answer(path, authorization)` and counts them.
    async fn serve(
        answer: impl Fn(&str, Option<&str>) -> (u16, String) + Send + Sync + 'static,
    ) -> (String, Arc<AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/apis/ccompat/v7/", listener.local_addr().unwrap());
        let count = Arc::new(AtomicUsize::new(0));
        let (answer, counted) = (Arc::new(answer), count.clone());
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let (answer, counted) = (answer.clone(), counted.clone());
                tokio::spawn(async move {
                    let mut buf = vec![0u8; 8192];
                    let n = socket.read(&mut buf).await.unwrap();
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    let path = text.split(' ').nth(1).unwrap_or_default().to_owned();
                    let auth = text
                        .lines()
                        .find_map(|l| l.strip_prefix("authorization: "))
                        .map(str::to_owned);
                    counted.fetch_add(1, Ordering::SeqCst);
                    let (status, body) = answer(&path, auth.as_deref());
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(reply.as_bytes()).await;
                });
            }
        });
        (url, count)
    }

    #[tokio::test]
    async fn a_schema_is_fetched_once_by_id_with_basic_auth() {
        let (url, count) = serve(|path, auth| {
            assert_eq!(path, "/apis/ccompat/v7/schemas/ids/7");
            // "u:p" in base64.
            assert_eq!(auth, Some("Basic dTpw"));
            (200, serde_json::json!({ "schema": SCHEMA }).to_string())
        })
        .await;
        let registry = Registry::new(
            &url,
            Some(Credentials {
                username: "u".into(),
                password: "p".into(),
            }),
            None,
        )
        .unwrap();
        let asks = (0..8).map(|_| registry.schema(7));
        for schema in futures::future::join_all(asks).await {
            schema.unwrap();
        }
        registry.schema(7).await.unwrap();
        assert_eq!(count.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn unknown_ids_dead_letter_and_outages_wait() {
        let (url, count) = serve(|path, _| match path.rsplit('/').next() {
            Some("1") => (
                404,
                r#"{"error_code":40403,"message":"Schema not found"}"#.into(),
            ),
            Some("2") => (404, "<html>no such page</html>".into()),
            Some("3") => (503, String::new()),
            Some("4") => (401, String::new()),
            Some("5") => (
                200,
                serde_json::json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF"})
                    .to_string(),
            ),
            _ => (500, String::new()),
        })
        .await;
        let registry = Registry::new(&url, None, None).unwrap();
        let e = registry.schema(1).await.unwrap_err();
        assert!(matches!(e, RegistryError::Unknown(1)));
        assert_eq!(e.to_string(), "unknown schema id 1");
        for id in [2, 3, 4] {
            let e = registry.schema(id).await.unwrap_err();
            assert!(matches!(e, RegistryError::Unavailable { .. }), "{id}: {e}");
        }
        assert!(matches!(
            registry.schema(5).await.unwrap_err(),
            RegistryError::Invalid { id: 5, .. }
        ));
        // Failures are not kept: a second ask asks again.
        let before = count.load(Ordering::SeqCst);
        registry.schema(3).await.unwrap_err();
        assert_eq!(count.load(Ordering::SeqCst), before + 1);

        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let down = Registry::new(&format!("http://{addr}"), None, None).unwrap();
        assert!(matches!(
            down.schema(1).await.unwrap_err(),
            RegistryError::Unavailable { .. }
        ));
    }

    #[test]
    fn a_ca_secret_without_a_certificate_is_named() {
        let e = Registry::new("https://registry:8443", None, Some("not a certificate"))
            .err()
            .unwrap();
        assert!(matches!(e, RegistrySetupError::Ca(_)), "{e}");
        assert!(
            e.to_string().starts_with(
                "format.schemaRegistry.tls.caSecretRef: the Secret's key holds no PEM certificate"
            ),
            "{e}"
        );
    }
}
