//! Making a Pod's volumes as files under its directory: ConfigMaps,
//! Secrets, downward API values, service-account tokens (by TokenRequest,
//! bound to the Pod) and emptyDirs. They are written once, when the Pod
//! starts; unlike the kubelet, the agent does not refresh them later.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, DownwardAPIVolumeFile, KeyToPath, Pod, Secret, ServiceAccount, Volume,
};
use kube::api::{Api, PostParams};

use super::spec;

/// Where each volume of the Pod was written, by volume name.
pub type Materialized = HashMap<String, PathBuf>;

pub struct Sources<'a> {
    pub client: &'a kube::Client,
    pub pod: &'a Pod,
    pub pod_ip: &'a str,
    pub host_ip: &'a str,
}

pub async fn materialize(src: &Sources<'_>, pod_dir: &Path) -> Result<Materialized, String> {
    let mut out = HashMap::new();
    let volumes = src
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.volumes.clone())
        .unwrap_or_default();
    for v in &volumes {
        let dir = pod_dir.join("volumes").join(&v.name);
        // Rewritten from scratch so a restart sees current contents.
        if v.empty_dir.is_none() {
            let _ = std::fs::remove_dir_all(&dir);
        }
        std::fs::create_dir_all(&dir).map_err(|e| format!("volume {:?}: {e}", v.name))?;
        write_volume(src, v, &dir)
            .await
            .map_err(|e| format!("volume {:?}: {e}", v.name))?;
        out.insert(v.name.clone(), dir);
    }
    Ok(out)
}

async fn write_volume(src: &Sources<'_>, v: &Volume, dir: &Path) -> Result<(), String> {
    let ns = src.pod.metadata.namespace.as_deref().unwrap_or("default");
    if v.empty_dir.is_some() {
        // World-writable like the kubelet's emptyDir, so a non-root Pod can use it.
        return set_mode(dir, 0o777);
    }
    if let Some(cm) = &v.config_map {
        let files =
            config_map_files(src.client, ns, &cm.name, cm.items.as_deref(), cm.optional).await?;
        return write_files(dir, &files, cm.default_mode.unwrap_or(0o644));
    }
    if let Some(s) = &v.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        let files = secret_files(src.client, ns, &name, s.items.as_deref(), s.optional).await?;
        return write_files(dir, &files, s.default_mode.unwrap_or(0o644));
    }
    if let Some(d) = &v.downward_api {
        let files = downward_files(src, d.items.as_deref().unwrap_or_default())?;
        return write_files(dir, &files, d.default_mode.unwrap_or(0o644));
    }
    if let Some(p) = &v.projected {
        let mut files = Vec::new();
        for s in p.sources.iter().flatten() {
            if let Some(t) = &s.service_account_token {
                let token =
                    service_account_token(src, t.audience.clone(), t.expiration_seconds).await?;
                files.push((t.path.clone(), token.into_bytes()));
            }
            if let Some(cm) = &s.config_map {
                files.extend(
                    config_map_files(src.client, ns, &cm.name, cm.items.as_deref(), cm.optional)
                        .await?,
                );
            }
            if let Some(sec) = &s.secret {
                files.extend(
                    secret_files(
                        src.client,
                        ns,
                        &sec.name,
                        sec.items.as_deref(),
                        sec.optional,
                    )
                    .await?,
                );
            }
            if let Some(d) = &s.downward_api {
                files.extend(downward_files(src, d.items.as_deref().unwrap_or_default())?);
            }
        }
        return write_files(dir, &files, p.default_mode.unwrap_or(0o644));
    }
    Err("unsupported volume kind".into())
}

async fn config_map_files(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    match api
        .get_opt(name)
        .await
        .map_err(|e| format!("reading ConfigMap {name}: {e}"))?
    {
        Some(cm) => {
            let mut data: BTreeMap<String, Vec<u8>> = cm
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.into_bytes()))
                .collect();
            data.extend(
                cm.binary_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0)),
            );
            spec::volume_items(&data, items).map_err(|e| format!("ConfigMap {name}: {e}"))
        }
        None if optional == Some(true) => Ok(vec![]),
        None => Err(format!("ConfigMap {name:?} not found")),
    }
}

async fn secret_files(
    client: &kube::Client,
    ns: &str,
    name: &str,
    items: Option<&[KeyToPath]>,
    optional: Option<bool>,
) -> Result<Vec<(String, Vec<u8>)>, String> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    match api
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Secret {name}: {e}"))?
    {
        Some(s) => {
            let mut data: BTreeMap<String, Vec<u8>> = s
                .data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect();
            data.extend(
                s.string_data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes())),
            );
            spec::volume_items(&data, items).map_err(|e| format!("Secret {name}: {e}"))
        }
        None if optional == Some(true) => Ok(vec![]),
        None => Err(format!("Secret {name:?} not found")),
    }
}

fn downward_files(
    src: &Sources<'_>,
    items: &[DownwardAPIVolumeFile],
) -> Result<Vec<(String, Vec<u8>)>, String> {
    items
        .iter()
        .map(|i| {
            let field = i.field_ref.as_ref().ok_or_else(|| {
                format!("downward API item {:?}: only fieldRef is supported", i.path)
            })?;
            let value = spec::field_ref(src.pod, &field.field_path, src.pod_ip, src.host_ip)?;
            Ok((i.path.clone(), value.into_bytes()))
        })
        .collect()
}

/// A token for the Pod's service account, bound to the Pod so it dies with it.
async fn service_account_token(
    src: &Sources<'_>,
    audience: Option<String>,
    expiration: Option<i64>,
) -> Result<String, String> {
    let meta = &src.pod.metadata;
    let ns = meta.namespace.as_deref().unwrap_or("default");
    let sa = src
        .pod
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .unwrap_or_else(|| "default".into());
    let api: Api<ServiceAccount> = Api::namespaced(src.client.clone(), ns);
    let req = TokenRequest {
        spec: Some(TokenRequestSpec {
            audiences: Some(audience.into_iter().collect()),
            expiration_seconds: Some(expiration.unwrap_or(3607)),
            bound_object_ref: Some(BoundObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Pod".into()),
                name: meta.name.clone(),
                uid: meta.uid.clone(),
            }),
        }),
        ..Default::default()
    };
    let resp = api
        .create_token_request(&sa, &PostParams::default(), &req)
        .await
        .map_err(|e| format!("token for service account {sa}: {e}"))?;
    resp.status
        .and_then(|s| s.token)
        .ok_or_else(|| format!("token for service account {sa}: empty response"))
}

fn write_files(dir: &Path, files: &[(String, Vec<u8>)], mode: i32) -> Result<(), String> {
    for (rel, bytes) in files {
        if rel.split('/').any(|part| part == ".." || part.is_empty()) {
            return Err(format!("refusing file path {rel:?}"));
        }
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::fs::write(&path, bytes).map_err(|e| format!("{}: {e}", path.display()))?;
        set_mode(&path, u32::try_from(mode).unwrap_or(0o644))?;
    }
    set_mode(dir, 0o755)
}

fn set_mode(path: &Path, mode: u32) -> Result<(), String> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| format!("{}: {e}", path.display()))
}
