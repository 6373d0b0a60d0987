//! TLS on the push endpoint (`spec.runner.pushTls`): the certificate and
//! key, and the client CA, read from the files the operator mounts
//! ([`millrace_api::push_auth::TlsFiles`]) and read again every
//! [`RELOAD_INTERVAL`], so a renewed certificate is served to new
//! connections without a restart. A runner whose files are missing or
//! unusable at start refuses to start; a change that cannot be used later
//! keeps the configuration as it was (and says so in the log).
//!
//! With a client CA, a client certificate is asked for but not required,
//! so bearer-token sources keep working on the same listener; one that is
//! presented must chain to the CA, or the handshake fails. Which requests
//! need one is the push source's choice ([`ClientCertificates`]).
//!
//! The crypto is rustls' `ring` provider, named explicitly: ring is already
//! built for kube and reqwest, while aws-lc (rustls' default) would add a
//! C/CMake build and a second crypto library to the runner image.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use millrace_api::push_auth::TlsFiles;
use millrace_api::serve::{CurrentTls, TlsPeer};
use rustls::RootCertStore;
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use tokio::sync::watch;
use tracing::{info, warn};

use super::push_auth::Verdict;

/// How often the files are read again: as for the push tokens.
pub const RELOAD_INTERVAL: Duration = super::push_auth::RELOAD_INTERVAL;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "push TLS: cannot read {path}: {error} (the operator mounts spec.runner.pushTls's Secrets \
         there; outside Kubernetes set MILLRACE_PUSH_TLS_DIR)"
    )]
    Unreadable {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("push TLS: {path} holds no PEM {what}")]
    Empty { path: PathBuf, what: &'static str },
    #[error("push TLS: {path}: {error}")]
    Pem {
        path: PathBuf,
        error: rustls::pki_types::pem::Error,
    },
    #[error("push TLS: the certificate and key cannot be used: {0}")]
    Certificate(rustls::Error),
    #[error("push TLS: the client CA bundle {path} cannot be used: {error}")]
    ClientCa { path: PathBuf, error: String },
}

/// The files' contents, as last read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Material {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Unreadable {
        path: path.to_owned(),
        error,
    })
}

impl Material {
    fn read(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            cert: read(&files.cert)?,
            key: read(&files.key)?,
            client_ca: files.client_ca.as_deref().map(read).transpose()?,
        })
    }

    /// The server configuration: HTTP/1.1 only, as the server speaks.
    fn config(&self, files: &TlsFiles) -> Result<ServerConfig, TlsError> {
        let certs = certificates(&self.cert, &files.cert)?;
        let key = PrivateKeyDer::from_pem_slice(&self.key).map_err(|error| match error {
            rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
                path: files.key.clone(),
                what: "private key",
            },
            error => TlsError::Pem {
                path: files.key.clone(),
                error,
            },
        })?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Certificate)?;
        let builder = match (&self.client_ca, &files.client_ca) {
            (Some(pem), Some(path)) => {
                let mut roots = RootCertStore::empty();
                for ca in certificates(pem, path)? {
                    roots.add(ca).map_err(|e| TlsError::ClientCa {
                        path: path.clone(),
                        error: e.to_string(),
                    })?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        // Bearer-token sources share the listener: a client
                        // without a certificate is let through to them, and a
                        // ClientCertificate source refuses it (401).
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsError::ClientCa {
                            path: path.clone(),
                            error: e.to_string(),
                        })?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let mut config = builder
            .with_single_cert(certs, key)
            .map_err(TlsError::Certificate)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

fn certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            path: path.to_owned(),
            error,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The push endpoint's TLS configuration, as last read.
pub struct PushTls {
    files: TlsFiles,
    current: RwLock<(Material, Arc<ServerConfig>)>,
}

impl PushTls {
    /// Reads and checks the files: missing or unusable ones are an error.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let material = Material::read(&files)?;
        let config = Arc::new(material.config(&files)?);
        info!(
            cert = %files.cert.display(),
            client_ca = files.client_ca.is_some(),
            "push TLS: certificate loaded"
        );
        Ok(Arc::new(Self {
            files,
            current: RwLock::new((material, config)),
        }))
    }

    /// The configuration for a new connection.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .clone()
    }

    /// What the server calls for each new connection.
    pub fn current(self: &Arc<Self>) -> CurrentTls {
        let tls = self.clone();
        Arc::new(move || tls.config())
    }

    /// Reads the files again; a change that reads and builds is taken, one
    /// that does not keeps the configuration as it was. Whether it changed.
    pub fn reload(&self) -> bool {
        let material = match Material::read(&self.files) {
            Ok(m) => m,
            Err(error) => {
                warn!(%error, "push TLS: cannot read the files again; keeping the last certificate");
                return false;
            }
        };
        if self
            .current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .0
            == material
        {
            return false;
        }
        match material.config(&self.files) {
            Ok(config) => {
                *self
                    .current
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                    (material, Arc::new(config));
                info!("push TLS: certificate or client CA changed; new connections use it");
                true
            }
            Err(error) => {
                // A Secret being written key by key can show a new
                // certificate with the old key for a moment: the next read
                // takes both.
                warn!(%error, "push TLS: the changed files cannot be used; keeping the last certificate");
                false
            }
        }
    }

    /// Reads the files again every [`RELOAD_INTERVAL`] until `stop`.
    pub fn keep_current(self: &Arc<Self>, mut stop: watch::Receiver<bool>) {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => { tls.reload(); }
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        });
    }
}

/// Who may push to a `ClientCertificate` source: a client whose
/// certificate the handshake verified against the client CA, and, when
/// `allowedDnsNames` is set, that is valid for one of those names.
#[derive(Clone, Debug)]
pub struct ClientCertificates {
    names: Option<Vec<ServerName<'static>>>,
}

impl ClientCertificates {
    /// `names`: `allowedDnsNames` (already validated as DNS names; one
    /// that is not could never match and is left out).
    pub fn new(names: Option<&[String]>) -> Self {
        Self {
            names: names.map(|names| {
                names
                    .iter()
                    .filter_map(|n| ServerName::try_from(n.clone()).ok())
                    .collect()
            }),
        }
    }

    /// A request without TLS, or whose client presented no certificate:
    /// [`Verdict::Missing`]; with a certificate valid for none of the
    /// allowed names: [`Verdict::Wrong`]. A presented certificate has
    /// already been verified against the client CA by the handshake.
    pub fn check(&self, peer: Option<&TlsPeer>) -> Verdict {
        let Some(cert) = peer.and_then(|p| p.certificates.first()) else {
            return Verdict::Missing;
        };
        let Some(names) = &self.names else {
            return Verdict::Allowed;
        };
        let Ok(cert) = webpki::EndEntityCert::try_from(cert) else {
            return Verdict::Wrong;
        };
        if names
            .iter()
            .any(|n| cert.verify_is_valid_for_subject_name(n).is_ok())
        {
            Verdict::Allowed
        } else {
            Verdict::Wrong
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Issued {
        cert_pem: String,
        key_pem: String,
        der: CertificateDer<'static>,
    }

    fn ca(name: &str) -> (rcgen::Issuer<'static, rcgen::KeyPair>, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (rcgen::Issuer::new(params, key), cert.pem())
    }

    fn issue(issuer: &rcgen::Issuer<'static, rcgen::KeyPair>, names: &[&str]) -> Issued {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(
            names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
        )
        .unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().clone(),
        }
    }

    fn peer(cert: &Issued) -> TlsPeer {
        TlsPeer {
            certificates: Arc::new(vec![cert.der.clone()]),
        }
    }

    #[test]
    fn a_client_certificate_source_needs_a_certificate_valid_for_an_allowed_name() {
        let (ca, _) = ca("clients");
        let partner = issue(&ca, &["partner.example"]);
        let other = issue(&ca, &["other.example"]);

        let any = ClientCertificates::new(None);
        assert_eq!(any.check(None), Verdict::Missing, "not over TLS");
        assert_eq!(
            any.check(Some(&TlsPeer::default())),
            Verdict::Missing,
            "no certificate"
        );
        assert_eq!(any.check(Some(&peer(&other))), Verdict::Allowed);

        let names = ["partner.example".to_owned(), "a.example".to_owned()];
        let some = ClientCertificates::new(Some(&names));
        assert_eq!(some.check(Some(&peer(&partner))), Verdict::Allowed);
        assert_eq!(some.check(Some(&peer(&other))), Verdict::Wrong);
        assert_eq!(some.check(Some(&TlsPeer::default())), Verdict::Missing);
    }

    fn dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("millrace-push-tls-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("cert")).unwrap();
        std::fs::create_dir_all(dir.join("client-ca")).unwrap();
        dir
    }

    #[test]
    fn missing_or_unusable_files_refuse_to_start_and_a_change_is_read_again() {
        let dir = dir("load");
        let files = TlsFiles::under(&dir, true);
        let (server_ca, _) = ca("server");
        let (client_ca, client_ca_pem) = ca("clients");
        let _ = client_ca;
        let first = issue(&server_ca, &["localhost"]);
        let second = issue(&server_ca, &["localhost"]);

        assert!(matches!(
            PushTls::load(files.clone()),
            Err(TlsError::Unreadable { .. })
        ));
        std::fs::write(&files.cert, &first.cert_pem).unwrap();
        std::fs::write(&files.key, &second.key_pem).unwrap();
        std::fs::write(files.client_ca.as_ref().unwrap(), &client_ca_pem).unwrap();
        assert!(
            matches!(PushTls::load(files.clone()), Err(TlsError::Certificate(_))),
            "a key that is not the certificate's"
        );
        std::fs::write(&files.key, "not PEM").unwrap();
        assert!(matches!(
            PushTls::load(files.clone()),
            Err(TlsError::Empty {
                what: "private key",
                ..
            })
        ));
        std::fs::write(files.client_ca.as_ref().unwrap(), "").unwrap();
        std::fs::write(&files.key, &first.key_pem).unwrap();
        assert!(matches!(
            PushTls::load(files.clone()),
            Err(TlsError::Empty {
                what: "certificate",
                ..
            })
        ));
        std::fs::write(files.client_ca.as_ref().unwrap(), &client_ca_pem).unwrap();
        let tls = PushTls::load(files.clone()).unwrap();
        let before = tls.config();
        assert!(!tls.reload(), "nothing changed");
        assert!(Arc::ptr_eq(&before, &tls.config()));

        // Half a rotation (the new certificate, the old key) is not taken;
        // the whole one is.
        std::fs::write(&files.cert, &second.cert_pem).unwrap();
        assert!(!tls.reload());
        assert!(Arc::ptr_eq(&before, &tls.config()));
        std::fs::write(&files.key, &second.key_pem).unwrap();
        assert!(tls.reload());
        assert!(!Arc::ptr_eq(&before, &tls.config()));

        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!tls.reload(), "unreadable files keep the configuration");
    }
}
