//! Where a push source's tokens are: the Secret (named in the spec, or made
//! by the operator) and the directory the runner reads them from. The
//! runner checks requests against them (`runner/src/ingest/push_auth.rs`).

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
