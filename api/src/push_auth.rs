//! Where a push source's tokens are: the Secret (named in the spec, or made
//! by the operator) and the directory the runner reads them from. The
//! runner checks requests against them (`runner/src/ingest/push_auth.rs`).
//! And where the push endpoint's TLS material is (`spec.runner.pushTls`):
//! the directory the operator mounts the certificate and client CA Secrets
//! under and the runner reads them from (`runner/src/ingest/push_tls.rs`).

use std::path::{Path, PathBuf};

/// The directory holding one directory per push source (its name), each
/// with one file per token: the source's tokens Secret, mounted. It is not
/// under the pipeline's ConfigMap mount (`/etc/millrace`): a volume nested
/// in a read-only ConfigMap volume needs a mount point made inside it, which
/// a read-only volume cannot take and the ConfigMap's writer would remove.
pub const TOKENS_DIR: &str = "/var/run/secrets/millrace.io/push-tokens";
/// Overrides [`TOKENS_DIR`] (a runner run outside Kubernetes).
pub const TOKENS_DIR_ENV: &str = "MILLRACE_PUSH_TOKENS_DIR";

/// The key of the one token in a Secret the operator makes.
pub const GENERATED_TOKEN_KEY: &str = "token";

/// Random bytes in a token the operator makes (256 bits, hex-encoded).
pub const GENERATED_TOKEN_BYTES: usize = 32;

/// The Secret the operator makes for pipeline `pipeline`'s push sources
/// that name none.
pub fn generated_secret_name(pipeline: &str) -> String {
    format!("{pipeline}-push-tokens")
}

/// The directory holding the push endpoint's TLS material: the server
/// certificate Secret at [`TLS_CERT_SUBDIR`] and the client CA at
/// [`TLS_CLIENT_CA_SUBDIR`]. Not under the pipeline's ConfigMap mount
/// (`/etc/millrace`): a volume nested in a read-only ConfigMap volume needs
/// a mount point made inside it, which a read-only volume cannot take.
pub const TLS_DIR: &str = "/var/run/secrets/millrace.io/push-tls";
/// Overrides [`TLS_DIR`] (a runner run outside Kubernetes).
pub const TLS_DIR_ENV: &str = "MILLRACE_PUSH_TLS_DIR";
/// Where, under [`TLS_DIR`], the certificate Secret (`kubernetes.io/tls`)
/// is mounted whole.
pub const TLS_CERT_SUBDIR: &str = "cert";
/// Where, under [`TLS_DIR`], the client CA Secret's key is mounted, as
/// [`CLIENT_CA_FILE`].
pub const TLS_CLIENT_CA_SUBDIR: &str = "client-ca";
/// The certificate chain's key in a `kubernetes.io/tls` Secret.
pub const TLS_CERT_KEY: &str = "tls.crt";
/// The private key's key in a `kubernetes.io/tls` Secret.
pub const TLS_KEY_KEY: &str = "tls.key";
/// The client CA bundle's file name in [`TLS_CLIENT_CA_SUBDIR`], whatever
/// its key in the Secret.
pub const CLIENT_CA_FILE: &str = "ca.crt";

/// The files the runner reads its push TLS material from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, the server's certificate first.
    pub cert: PathBuf,
    /// PEM private key of the certificate.
    pub key: PathBuf,
    /// PEM bundle of the CAs client certificates must chain to; `None`
    /// without `clientCaSecretRef`.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    /// The files under `dir` (the mounts the operator makes under
    /// [`TLS_DIR`]).
    pub fn under(dir: &Path, client_ca: bool) -> Self {
        let cert_dir = dir.join(TLS_CERT_SUBDIR);
        Self {
            cert: cert_dir.join(TLS_CERT_KEY),
            key: cert_dir.join(TLS_KEY_KEY),
            client_ca: client_ca.then(|| dir.join(TLS_CLIENT_CA_SUBDIR).join(CLIENT_CA_FILE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_files_are_where_the_operator_mounts_them() {
        let files = TlsFiles::under(Path::new(TLS_DIR), true);
        assert_eq!(
            files.cert,
            Path::new("/var/run/secrets/millrace.io/push-tls/cert/tls.crt")
        );
        assert_eq!(
            files.key,
            Path::new("/var/run/secrets/millrace.io/push-tls/cert/tls.key")
        );
        assert_eq!(
            files.client_ca.as_deref(),
            Some(Path::new(
                "/var/run/secrets/millrace.io/push-tls/client-ca/ca.crt"
            ))
        );
        assert_eq!(TlsFiles::under(Path::new("/x"), false).client_ca, None);
    }
}
