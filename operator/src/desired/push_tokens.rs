//! Push tokens: the Secret the operator makes for push sources that name
//! none, and the ingest Pod's mounts of each push source's tokens Secret
//! (read by the runner, `runner/src/ingest/push_auth.rs`).
//!
//! The tokens are mounted as files, not passed as variables, so a token
//! added to or removed from the Secret reaches the running runner (the
//! kubelet updates the files) without a restart: rotation drops nothing.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Secret, SecretVolumeSource, Volume, VolumeMount};
use millrace_api::StreamPipelineSpec;
use millrace_api::push_auth::{
    GENERATED_TOKEN_BYTES, GENERATED_TOKEN_KEY, TOKENS_DIR, generated_secret_name,
};

use super::Pipeline;

/// A new random token: [`GENERATED_TOKEN_BYTES`] bytes, hex.
pub fn new_token() -> String {
    let bytes: [u8; GENERATED_TOKEN_BYTES] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The Secret the operator makes once, holding `token`, when a push source
/// of the pipeline names no tokens Secret; `None` when none does.
pub fn generated_secret(p: &Pipeline<'_>, token: &str) -> Option<Secret> {
    let wanted =
        p.sp.spec
            .sources
            .iter()
            .filter_map(|s| s.http_push.as_ref())
            .any(millrace_api::HttpPushSource::uses_generated_tokens);
    wanted.then(|| Secret {
        metadata: p.meta(generated_secret_name(&p.name), Some("ingest")),
        type_: Some("Opaque".to_owned()),
        data: Some(BTreeMap::from([(
            GENERATED_TOKEN_KEY.to_owned(),
            ByteString(token.as_bytes().to_vec()),
        )])),
        ..Secret::default()
    })
}

/// `(source, tokens Secret)` of each push source that takes tokens.
pub fn token_secrets<'a>(spec: &'a StreamPipelineSpec, pipeline: &str) -> Vec<(&'a str, String)> {
    spec.sources
        .iter()
        .filter_map(|s| {
            Some((
                s.name.as_str(),
                s.http_push.as_ref()?.tokens_secret(pipeline)?,
            ))
        })
        .collect()
}

/// The tokens Secrets that the spec names (not the one the operator
/// makes), which must exist before the ingest Pod can start.
pub fn named_token_secrets(spec: &StreamPipelineSpec) -> Vec<&str> {
    let mut names: Vec<&str> = spec
        .sources
        .iter()
        .filter_map(|s| {
            s.http_push
                .as_ref()?
                .auth
                .as_ref()?
                .tokens_secret_ref
                .as_ref()
        })
        .map(|r| r.name.as_str())
        .collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// The ingest Pod's volumes and the runner's mounts: each push source's
/// tokens Secret at `TOKENS_DIR/SOURCE`.
pub fn token_mounts(spec: &StreamPipelineSpec, pipeline: &str) -> (Vec<Volume>, Vec<VolumeMount>) {
    token_secrets(spec, pipeline)
        .into_iter()
        .enumerate()
        .map(|(i, (source, secret))| {
            // Source names can be 63 characters, too long for a volume
            // name with a prefix; the index is unique in the Pod.
            let name = format!("push-tokens-{i}");
            (
                Volume {
                    name: name.clone(),
                    secret: Some(SecretVolumeSource {
                        secret_name: Some(secret),
                        optional: Some(false),
                        ..SecretVolumeSource::default()
                    }),
                    ..Volume::default()
                },
                VolumeMount {
                    name,
                    mount_path: format!("{TOKENS_DIR}/{source}"),
                    read_only: Some(true),
                    ..VolumeMount::default()
                },
            )
        })
        .unzip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;
    use serde_json::json;

    fn push(name: &str, auth: serde_json::Value) -> millrace_api::SourceSpec {
        serde_json::from_value(
            json!({"name": name, "httpPush": {"path": format!("/{name}"), "auth": auth}}),
        )
        .expect("source")
    }

    #[test]
    fn each_push_source_gets_its_tokens_mounted_and_an_open_one_none() {
        let mut sp = fixtures::seed();
        sp.spec.sources.retain(|s| s.http_push.is_none());
        sp.spec.sources.extend([
            push("default", json!(null)),
            push(
                "named",
                json!({"tokensSecretRef": {"name": "partner-tokens"}}),
            ),
            push("open", json!({"type": "None"})),
        ]);
        let p = Pipeline::new(&sp).expect("pipeline");
        let (volumes, mounts) = token_mounts(&sp.spec, &p.name);
        let secrets: Vec<_> = volumes
            .iter()
            .map(|v| {
                v.secret
                    .as_ref()
                    .and_then(|s| s.secret_name.clone())
                    .expect("secret")
            })
            .collect();
        assert_eq!(secrets, ["randomuser-push-tokens", "partner-tokens"]);
        let paths: Vec<_> = mounts.iter().map(|m| m.mount_path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/var/run/secrets/millrace.io/push-tokens/default",
                "/var/run/secrets/millrace.io/push-tokens/named"
            ]
        );
        assert!(
            mounts
                .iter()
                .zip(&volumes)
                .all(|(m, v)| m.name == v.name && m.read_only == Some(true))
        );
        assert_eq!(named_token_secrets(&sp.spec), ["partner-tokens"]);

        let secret = generated_secret(&p, "abc").expect("one source takes generated tokens");
        assert_eq!(
            secret.metadata.name.as_deref(),
            Some("randomuser-push-tokens")
        );
        assert_eq!(secret.data.expect("data")["token"].0, b"abc");
        assert!(
            secret
                .metadata
                .owner_references
                .is_some_and(|o| o.len() == 1)
        );

        sp.spec.sources.retain(|s| s.name != "default");
        let p = Pipeline::new(&sp).expect("pipeline");
        assert!(generated_secret(&p, "abc").is_none());
    }

    #[test]
    fn generated_tokens_are_random_and_long() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
