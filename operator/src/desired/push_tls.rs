//! TLS on the push endpoint (`spec.runner.pushTls`): the ingest Pod's
//! mounts of the certificate Secret and the client CA Secret, where the
//! runner reads them ([`millrace_api::push_auth::TlsFiles`]), and the
//! Secret keys that must exist before the Pod can start.
//!
//! Mounted as files, not passed as variables, so a renewed certificate
//! reaches the running runner (the kubelet updates the files and the
//! runner reads them again) without a restart.

use k8s_openapi::api::core::v1::{KeyToPath, SecretVolumeSource, Volume, VolumeMount};
use millrace_api::StreamPipelineSpec;
use millrace_api::push_auth::{
    CLIENT_CA_FILE, TLS_CERT_KEY, TLS_CERT_SUBDIR, TLS_CLIENT_CA_SUBDIR, TLS_DIR, TLS_KEY_KEY,
};

/// `spec.runner.pushTls` when the pipeline has a push endpoint to secure.
fn push_tls(spec: &StreamPipelineSpec) -> Option<&millrace_api::PushTlsSpec> {
    spec.sources
        .iter()
        .any(|s| s.http_push.is_some())
        .then_some(spec.runner.push_tls.as_ref())
        .flatten()
}

/// `(Secret, keys)` the push endpoint's TLS reads, which must exist.
pub fn tls_secret_keys(spec: &StreamPipelineSpec) -> Vec<(&str, Vec<&str>)> {
    let Some(tls) = push_tls(spec) else {
        return Vec::new();
    };
    let mut wanted = vec![(
        tls.certificate_secret_ref.name.as_str(),
        vec![TLS_CERT_KEY, TLS_KEY_KEY],
    )];
    if let Some(ca) = &tls.client_ca_secret_ref {
        wanted.push((ca.name.as_str(), vec![ca.key.as_str()]));
    }
    wanted
}

fn secret_volume(name: &str, secret: &str, items: Vec<(&str, &str)>) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            optional: Some(false),
            items: Some(
                items
                    .into_iter()
                    .map(|(key, path)| KeyToPath {
                        key: key.to_owned(),
                        path: path.to_owned(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn mount(name: &str, subdir: &str) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: format!("{TLS_DIR}/{subdir}"),
        read_only: Some(true),
        ..VolumeMount::default()
    }
}

/// The ingest Pod's volumes and the runner's mounts: the certificate
/// Secret's `tls.crt` and `tls.key` at `TLS_DIR/cert`, the client CA's key
/// as `TLS_DIR/client-ca/ca.crt`. None without `pushTls` or without a push
/// source.
pub fn tls_mounts(spec: &StreamPipelineSpec) -> (Vec<Volume>, Vec<VolumeMount>) {
    let Some(tls) = push_tls(spec) else {
        return (Vec::new(), Vec::new());
    };
    let mut volumes = vec![secret_volume(
        "push-tls-cert",
        &tls.certificate_secret_ref.name,
        vec![(TLS_CERT_KEY, TLS_CERT_KEY), (TLS_KEY_KEY, TLS_KEY_KEY)],
    )];
    let mut mounts = vec![mount("push-tls-cert", TLS_CERT_SUBDIR)];
    if let Some(ca) = &tls.client_ca_secret_ref {
        volumes.push(secret_volume(
            "push-tls-client-ca",
            &ca.name,
            vec![(ca.key.as_str(), CLIENT_CA_FILE)],
        ));
        mounts.push(mount("push-tls-client-ca", TLS_CLIENT_CA_SUBDIR));
    }
    (volumes, mounts)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;
    use millrace_api::push_auth::TlsFiles;

    #[test]
    fn the_certificate_and_client_ca_are_mounted_where_the_runner_reads_them() {
        let mut sp = fixtures::seed();
        assert!(sp.spec.sources.iter().any(|s| s.http_push.is_some()));
        assert_eq!(tls_mounts(&sp.spec), (Vec::new(), Vec::new()));
        sp.spec.runner.push_tls = Some(
            serde_json::from_value(serde_json::json!({
                "certificateSecretRef": {"name": "push-cert"},
                "clientCaSecretRef": {"name": "clients", "key": "bundle.pem"}
            }))
            .expect("pushTls"),
        );
        let (volumes, mounts) = tls_mounts(&sp.spec);
        let files = TlsFiles::under(std::path::Path::new(TLS_DIR), true);
        // Each file the runner reads is a mount path plus an item's path.
        let mounted: Vec<String> = mounts
            .iter()
            .zip(&volumes)
            .flat_map(|(m, v)| {
                assert_eq!(
                    (m.name.as_str(), m.read_only),
                    (v.name.as_str(), Some(true))
                );
                let s = v.secret.as_ref().expect("a Secret volume");
                assert_eq!(s.optional, Some(false));
                s.items
                    .iter()
                    .flatten()
                    .map(|i| format!("{}/{}", m.mount_path, i.path))
                    .collect::<Vec<_>>()
            })
            .collect();
        let wanted: Vec<String> = [
            &files.cert,
            &files.key,
            files.client_ca.as_ref().expect("ca"),
        ]
        .iter()
        .map(|p| p.display().to_string())
        .collect();
        assert_eq!(mounted, wanted);
        assert!(
            mounts
                .iter()
                .all(|m| !m.mount_path.starts_with("/etc/millrace"))
        );
        let secrets: Vec<_> = volumes
            .iter()
            .filter_map(|v| v.secret.as_ref()?.secret_name.as_deref())
            .collect();
        assert_eq!(secrets, ["push-cert", "clients"]);
        assert_eq!(
            volumes[1]
                .secret
                .as_ref()
                .and_then(|s| s.items.clone())
                .expect("items")[0]
                .key,
            "bundle.pem"
        );
        assert_eq!(
            tls_secret_keys(&sp.spec),
            [
                ("push-cert", vec!["tls.crt", "tls.key"]),
                ("clients", vec!["bundle.pem"])
            ]
        );

        sp.spec.sources.retain(|s| s.http_push.is_none());
        assert_eq!(tls_mounts(&sp.spec), (Vec::new(), Vec::new()));
        assert!(tls_secret_keys(&sp.spec).is_empty());
    }
}
