//! Who may push: the bearer tokens of a push source, read from its mounted
//! tokens Secret (one file per key) and read again every
//! [`RELOAD_INTERVAL`], so a token can be added and the old one removed
//! without a restart and without refusing a request in between.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time:
//! the digests have one length whatever the tokens' lengths, and every
//! token is compared with no early exit, so the time of an answer tells
//! nothing about how close a guess was. No token is ever logged.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::HeaderValue;
use subtle::ConstantTimeEq;
use tokio::sync::watch;
use tracing::{info, warn};

/// How often the tokens are read again. Kubernetes updates a mounted
/// Secret within about a minute of a change; this adds little to it.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

type Digest = [u8; 32];

fn digest(bytes: &[u8]) -> Digest {
    let d = ring::digest::digest(&ring::digest::SHA256, bytes);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// What a request's `Authorization` header is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allowed,
    /// No bearer token: 401.
    Missing,
    /// A bearer token that is not one of the source's: 403.
    Wrong,
}

/// A set of accepted tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenSet {
    digests: Vec<Digest>,
}

impl TokenSet {
    /// Each value is one token; surrounding whitespace (the newline a file
    /// written by `echo` ends with) is not part of it, and empty values
    /// are no token.
    pub fn new<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Self {
        let mut digests: Vec<Digest> = values
            .into_iter()
            .map(<[u8]>::trim_ascii)
            .filter(|v| !v.is_empty())
            .map(digest)
            .collect();
        digests.sort_unstable();
        digests.dedup();
        Self { digests }
    }

    pub fn len(&self) -> usize {
        self.digests.len()
    }

    pub fn is_empty(&self) -> bool {
        self.digests.is_empty()
    }

    /// Checks a request's `Authorization` header.
    pub fn check(&self, authorization: Option<&HeaderValue>) -> Verdict {
        let Some(token) = authorization.and_then(|v| bearer(v.as_bytes())) else {
            return Verdict::Missing;
        };
        let presented = digest(token);
        let matched = self
            .digests
            .iter()
            .fold(subtle::Choice::from(0), |any, d| any | d.ct_eq(&presented));
        if bool::from(matched) {
            Verdict::Allowed
        } else {
            Verdict::Wrong
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value (the scheme is
/// case-insensitive, RFC 9110 §11.1), or `None` for another scheme.
fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(6)?;
    if !scheme.eq_ignore_ascii_case(b"bearer") || rest.first().is_none_or(|b| *b != b' ') {
        return None;
    }
    Some(rest.trim_ascii()).filter(|t| !t.is_empty())
}

#[derive(Debug, thiserror::Error)]
pub enum TokensError {
    #[error(
        "push source {name}: cannot read its tokens from {dir}: {error} (the operator mounts the \
         source's tokens Secret there; outside Kubernetes set MILLRACE_PUSH_TOKENS_DIR, or set \
         auth.type None to accept pushes without tokens)"
    )]
    Unreadable {
        name: String,
        dir: PathBuf,
        error: std::io::Error,
    },
    #[error("push source {name}: {dir} holds no token (each key of the tokens Secret is one)")]
    Empty { name: String, dir: PathBuf },
}

/// Every file in `dir` whose name does not start with `.` is one token.
/// A mounted Secret's files are links into a hidden directory that the
/// kubelet swaps at once, so one read sees one version of the Secret.
fn read_dir(dir: &Path) -> std::io::Result<TokenSet> {
    let mut values = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_file() {
            values.push(std::fs::read(&path)?);
        }
    }
    Ok(TokenSet::new(values.iter().map(Vec::as_slice)))
}

/// The tokens of one push source, as last read.
pub struct PushTokens {
    source: String,
    dir: PathBuf,
    current: RwLock<Arc<TokenSet>>,
}

impl PushTokens {
    /// Reads `dir`; a missing directory or one without a token is an
    /// error, so a runner never starts with an endpoint nobody can use or
    /// that was meant to be closed.
    pub fn load(source: &str, dir: PathBuf) -> Result<Arc<Self>, TokensError> {
        let set = read_dir(&dir).map_err(|error| TokensError::Unreadable {
            name: source.to_owned(),
            dir: dir.clone(),
            error,
        })?;
        if set.is_empty() {
            return Err(TokensError::Empty {
                name: source.to_owned(),
                dir,
            });
        }
        info!(
            source,
            tokens = set.len(),
            "push source: bearer tokens loaded"
        );
        Ok(Arc::new(Self {
            source: source.to_owned(),
            dir,
            current: RwLock::new(Arc::new(set)),
        }))
    }

    pub fn check(&self, authorization: Option<&HeaderValue>) -> Verdict {
        let set = self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        set.check(authorization)
    }

    /// Reads the directory again. A failed read keeps the tokens as they
    /// were (the Secret is being swapped, or briefly unreadable); a
    /// directory read without tokens takes them all away, as the Secret
    /// says.
    pub fn reload(&self) {
        match read_dir(&self.dir) {
            Ok(set) => {
                let mut current = self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if **current != set {
                    info!(
                        source = %self.source,
                        tokens = set.len(),
                        "push source: bearer tokens changed"
                    );
                    if set.is_empty() {
                        warn!(source = %self.source, "push source: no token left; every push is refused 403");
                    }
                    *current = Arc::new(set);
                }
            }
            Err(error) => {
                warn!(source = %self.source, dir = %self.dir.display(), %error, "push source: cannot read the tokens again; keeping the last ones");
            }
        }
    }

    /// Reads the tokens again every [`RELOAD_INTERVAL`] until `stop`.
    pub fn keep_current(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tokens = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => tokens.reload(),
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(v: &str) -> HeaderValue {
        HeaderValue::from_str(v).unwrap()
    }

    #[test]
    fn a_request_needs_one_of_the_tokens() {
        let set = TokenSet::new([b"old-token\n".as_slice(), b"new-token", b"", b"  "]);
        assert_eq!(set.len(), 2, "blank values are no token");
        assert_eq!(set.check(None), Verdict::Missing);
        assert_eq!(
            set.check(Some(&header("Basic b2xkLXRva2Vu"))),
            Verdict::Missing
        );
        assert_eq!(set.check(Some(&header("Bearer"))), Verdict::Missing);
        assert_eq!(set.check(Some(&header("Bearer "))), Verdict::Missing);
        assert_eq!(set.check(Some(&header("Bearertoken"))), Verdict::Missing);
        assert_eq!(
            set.check(Some(&header("Bearer old-token"))),
            Verdict::Allowed
        );
        assert_eq!(
            set.check(Some(&header("bearer new-token"))),
            Verdict::Allowed
        );
        assert_eq!(
            set.check(Some(&header("BEARER  new-token "))),
            Verdict::Allowed
        );
        assert_eq!(set.check(Some(&header("Bearer new-toke"))), Verdict::Wrong);
        assert_eq!(
            set.check(Some(&header("Bearer new-token2"))),
            Verdict::Wrong
        );
        assert_eq!(
            TokenSet::default().check(Some(&header("Bearer x"))),
            Verdict::Wrong,
            "no token: nothing is allowed"
        );
    }

    #[test]
    fn tokens_are_read_again_from_the_directory() {
        let dir = std::env::temp_dir().join(format!("millrace-push-tokens-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("..data")).unwrap();
        assert!(matches!(
            PushTokens::load("events", dir.join("absent")),
            Err(TokensError::Unreadable { .. })
        ));
        assert!(matches!(
            PushTokens::load("events", dir.clone()),
            Err(TokensError::Empty { .. })
        ));
        std::fs::write(dir.join("a"), "token-a\n").unwrap();
        std::fs::write(dir.join("..data").join("hidden"), "token-h").unwrap();
        let tokens = PushTokens::load("events", dir.clone()).unwrap();
        let check = |t: &str| tokens.check(Some(&header(&format!("Bearer {t}"))));
        assert_eq!(check("token-a"), Verdict::Allowed);
        assert_eq!(
            check("token-h"),
            Verdict::Wrong,
            "hidden files are no token"
        );

        std::fs::write(dir.join("b"), "token-b").unwrap();
        tokens.reload();
        assert_eq!(
            (check("token-a"), check("token-b")),
            (Verdict::Allowed, Verdict::Allowed)
        );
        std::fs::remove_file(dir.join("a")).unwrap();
        tokens.reload();
        assert_eq!(
            (check("token-a"), check("token-b")),
            (Verdict::Wrong, Verdict::Allowed)
        );

        std::fs::remove_dir_all(&dir).unwrap();
        tokens.reload();
        assert_eq!(
            check("token-b"),
            Verdict::Allowed,
            "an unreadable directory keeps the tokens"
        );
    }
}
