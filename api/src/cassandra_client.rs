//! How the operator and the runner connect to a pipeline's Cassandra
//! cluster: the runner's variables for the Secrets' values and, with the
//! `cassandra-tls` feature, the TLS context both clients use.

#[cfg(feature = "cassandra-tls")]
use crate::credentials::CassandraCredentialValues;
#[cfg(feature = "cassandra-tls")]
use crate::spec::CassandraTls;

/// The runner's environment for what the operator takes from the pipeline's
/// Cassandra Secrets (each by `secretKeyRef`, so no value is in the
/// Deployment).
pub mod env {
    pub const CASSANDRA_USERNAME: &str = "MILLRACE_CASSANDRA_USERNAME";
    pub const CASSANDRA_PASSWORD: &str = "MILLRACE_CASSANDRA_PASSWORD";
    pub const CASSANDRA_CA_PEM: &str = "MILLRACE_CASSANDRA_CA_PEM";
    pub const CASSANDRA_CLIENT_CERT_PEM: &str = "MILLRACE_CASSANDRA_CLIENT_CERT_PEM";
    pub const CASSANDRA_CLIENT_KEY_PEM: &str = "MILLRACE_CASSANDRA_CLIENT_KEY_PEM";
}

/// Why the TLS material of `spec.cassandra.tls` cannot be used. The
/// messages name the Secret's part, never its content.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CassandraTlsError {
    #[error("spec.cassandra.tls is set, but no CA was read from tls.caSecretRef")]
    NoCa,
    #[error("the CA of tls.caSecretRef is not a PEM certificate bundle: {0}")]
    BadCa(String),
    #[error("the client certificate of tls.clientCertSecretRef is not a PEM certificate: {0}")]
    BadClientCert(String),
    #[error("the client key of tls.clientCertSecretRef is not an unencrypted PEM private key: {0}")]
    BadClientKey(String),
    #[error("the client key of tls.clientCertSecretRef does not belong to its certificate")]
    KeyMismatch,
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The TLS context for `tls` with the material in `values`, or `None`
/// without `tls`.
///
/// The driver checks each node's certificate against the node's IP address
/// (it connects to the addresses the cluster advertises, not to the names
/// of the contact points). With `verifyHostname: false` only a mismatch of
/// that name is forgiven: the chain must still lead to the CA.
#[cfg(feature = "cassandra-tls")]
pub fn tls_context(
    tls: Option<&CassandraTls>,
    values: &CassandraCredentialValues,
) -> Result<Option<scylla::client::session::TlsContext>, CassandraTlsError> {
    let Some(tls) = tls else {
        return Ok(None);
    };
    Ok(Some(
        scylla::client::session::OpenSsl010Config::new(connector(tls, values)?).into(),
    ))
}

/// The OpenSSL connector [`tls_context`] hands to the driver.
#[cfg(feature = "cassandra-tls")]
fn connector(
    tls: &CassandraTls,
    values: &CassandraCredentialValues,
) -> Result<openssl::ssl::SslConnectorBuilder, CassandraTlsError> {
    use openssl::pkey::PKey;
    use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode, SslVersion};
    use openssl::x509::X509;

    let setup = |e: openssl::error::ErrorStack| CassandraTlsError::Setup(e.to_string());
    let ca_pem = values.ca_pem.as_deref().ok_or(CassandraTlsError::NoCa)?;
    let cas = X509::stack_from_pem(ca_pem.as_bytes())
        .map_err(|e| CassandraTlsError::BadCa(e.to_string()))?;
    if cas.is_empty() {
        return Err(CassandraTlsError::BadCa("no certificate in it".into()));
    }
    let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(setup)?;
    builder
        .set_min_proto_version(Some(SslVersion::TLS1_2))
        .map_err(setup)?;
    for ca in cas {
        builder.cert_store_mut().add_cert(ca).map_err(setup)?;
    }
    if tls.client_cert_secret_ref.is_some() {
        let cert = values.client_cert_pem.as_deref().unwrap_or_default();
        let key = values.client_key_pem.as_deref().unwrap_or_default();
        let mut chain = X509::stack_from_pem(cert.as_bytes())
            .map_err(|e| CassandraTlsError::BadClientCert(e.to_string()))?
            .into_iter();
        let leaf = chain
            .next()
            .ok_or_else(|| CassandraTlsError::BadClientCert("no certificate in it".into()))?;
        builder.set_certificate(&leaf).map_err(setup)?;
        for intermediate in chain {
            builder.add_extra_chain_cert(intermediate).map_err(setup)?;
        }
        let key = PKey::private_key_from_pem(key.as_bytes())
            .map_err(|e| CassandraTlsError::BadClientKey(e.to_string()))?;
        let belongs = leaf.public_key().is_ok_and(|public| public.public_eq(&key));
        if !belongs {
            return Err(CassandraTlsError::KeyMismatch);
        }
        builder.set_private_key(&key).map_err(setup)?;
    }
    if !tls.verify_hostname {
        builder.set_verify_callback(SslVerifyMode::PEER, |preverified, ctx| {
            preverified || name_mismatch_only(ctx.error().as_raw())
        });
    }
    Ok(builder)
}

/// OpenSSL's verdicts that a certificate does not name the peer, which is
/// all that `verifyHostname: false` forgives.
#[cfg(feature = "cassandra-tls")]
fn name_mismatch_only(error: std::os::raw::c_int) -> bool {
    error == openssl_sys::X509_V_ERR_IP_ADDRESS_MISMATCH
        || error == openssl_sys::X509_V_ERR_HOSTNAME_MISMATCH
}

#[cfg(all(test, feature = "cassandra-tls"))]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};

    use openssl::asn1::Asn1Time;
    use openssl::hash::MessageDigest;
    use openssl::pkey::{PKey, Private};
    use openssl::rsa::Rsa;
    use openssl::ssl::{Ssl, SslAcceptor, SslMethod, SslStream};
    use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName};
    use openssl::x509::{X509, X509NameBuilder};

    use super::*;
    use crate::spec::{CaSecretRef, ClientCertSecretRef};

    fn tls(client: bool, verify_hostname: bool) -> CassandraTls {
        CassandraTls {
            ca_secret_ref: CaSecretRef::named("ca"),
            client_cert_secret_ref: client.then(|| ClientCertSecretRef::named("client")),
            verify_hostname,
        }
    }

    /// A CA made here, in memory, that issues certificates.
    struct Ca {
        cert: X509,
        key: PKey<Private>,
    }

    fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    fn build(cn: &str, key: &PKey<Private>, issuer: Option<&Ca>, ip: Option<&str>) -> X509 {
        let mut name = X509NameBuilder::new().unwrap();
        name.append_entry_by_text("CN", cn).unwrap();
        let name = name.build();
        let mut b = X509::builder().unwrap();
        b.set_version(2).unwrap();
        b.set_subject_name(&name).unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&Asn1Time::days_from_now(0).unwrap())
            .unwrap();
        b.set_not_after(&Asn1Time::days_from_now(1).unwrap())
            .unwrap();
        if issuer.is_none() {
            b.append_extension(BasicConstraints::new().critical().ca().build().unwrap())
                .unwrap();
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .digital_signature()
                    .build()
                    .unwrap(),
            )
            .unwrap();
        }
        if let Some(ip) = ip {
            let san = SubjectAlternativeName::new()
                .ip(ip)
                .build(&b.x509v3_context(issuer.map(|c| c.cert.as_ref()), None))
                .unwrap();
            b.append_extension(san).unwrap();
        }
        match issuer {
            Some(ca) => {
                b.set_issuer_name(ca.cert.subject_name()).unwrap();
                b.sign(&ca.key, MessageDigest::sha256()).unwrap();
            }
            None => {
                b.set_issuer_name(&name).unwrap();
                b.sign(key, MessageDigest::sha256()).unwrap();
            }
        }
        b.build()
    }

    impl Ca {
        fn new(cn: &str) -> Self {
            let key = key();
            Self {
                cert: build(cn, &key, None, None),
                key,
            }
        }

        fn pem(&self) -> String {
            String::from_utf8(self.cert.to_pem().unwrap()).unwrap()
        }

        /// A certificate and its key, naming `ip` when given.
        fn issue(&self, cn: &str, ip: Option<&str>) -> (X509, PKey<Private>) {
            let key = key();
            (build(cn, &key, Some(self), ip), key)
        }

        fn issue_pem(&self, cn: &str) -> (String, String) {
            let (cert, key) = self.issue(cn, None);
            (
                String::from_utf8(cert.to_pem().unwrap()).unwrap(),
                String::from_utf8(key.private_key_to_pem_pkcs8().unwrap()).unwrap(),
            )
        }
    }

    fn values(ca: &Ca, client: Option<(String, String)>) -> CassandraCredentialValues {
        let (cert, key) = client.unzip();
        CassandraCredentialValues {
            ca_pem: Some(ca.pem()),
            client_cert_pem: cert,
            client_key_pem: key,
            ..Default::default()
        }
    }

    /// One TLS handshake, as the driver makes it (the node's IP address
    /// checked against its certificate), with a server on 127.0.0.1 that
    /// presents `server`.
    fn handshake(
        connector: openssl::ssl::SslConnectorBuilder,
        server: (X509, PKey<Private>),
        node_ip: IpAddr,
    ) -> Result<(), String> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).unwrap();
        acceptor.set_certificate(&server.0).unwrap();
        acceptor.set_private_key(&server.1).unwrap();
        let acceptor = acceptor.build();
        let serve = std::thread::spawn(move || {
            let (tcp, _) = listener.accept().unwrap();
            // The client may give up; the server's outcome does not matter.
            let _ = acceptor.accept(tcp);
        });
        let context = connector.build().into_context();
        let mut ssl = Ssl::new(&context).unwrap();
        ssl.set_connect_state();
        ssl.param_mut().set_ip(node_ip).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        let result = SslStream::new(ssl, tcp)
            .unwrap()
            .connect()
            .map(|_| ())
            .map_err(|e| e.to_string());
        serve.join().unwrap();
        result
    }

    #[test]
    fn without_tls_there_is_no_context() {
        assert!(
            tls_context(None, &CassandraCredentialValues::default())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_ca_and_a_matching_client_certificate_make_a_context() {
        let ca = Ca::new("ca");
        let values = values(&ca, Some(ca.issue_pem("client")));
        assert!(
            tls_context(Some(&tls(true, true)), &values)
                .unwrap()
                .is_some()
        );
        assert!(
            tls_context(Some(&tls(true, false)), &values)
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn the_node_certificate_must_come_from_the_ca_and_name_the_node() {
        let ca = Ca::new("ca");
        let node_ip: IpAddr = "127.0.0.1".parse().unwrap();
        let strict = || connector(&tls(false, true), &values(&ca, None)).unwrap();
        let lax = || connector(&tls(false, false), &values(&ca, None)).unwrap();

        let named = ca.issue("node", Some("127.0.0.1"));
        handshake(strict(), named, node_ip).expect("a node certificate naming its address");

        let misnamed = || ca.issue("node", Some("10.9.9.9"));
        let e = handshake(strict(), misnamed(), node_ip).expect_err("another address refused");
        assert!(e.contains("certificate verify failed"), "{e}");
        handshake(lax(), misnamed(), node_ip).expect("verifyHostname: false forgives the name");

        let other = Ca::new("other");
        let e = handshake(lax(), other.issue("node", Some("127.0.0.1")), node_ip)
            .expect_err("verifyHostname: false still checks the CA");
        assert!(e.contains("certificate verify failed"), "{e}");
    }

    #[test]
    fn unusable_material_is_refused_without_showing_it() {
        let ca = Ca::new("ca");
        let err = |t: CassandraTls, v: CassandraCredentialValues| {
            tls_context(Some(&t), &v).err().expect("refused")
        };
        assert_eq!(
            err(tls(false, true), CassandraCredentialValues::default()),
            CassandraTlsError::NoCa
        );
        let not_pem = CassandraCredentialValues {
            ca_pem: Some("hunter2".into()),
            ..Default::default()
        };
        let e = err(tls(false, true), not_pem);
        assert!(matches!(e, CassandraTlsError::BadCa(_)), "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");

        let (cert, _) = ca.issue_pem("client");
        let (_, other_key) = ca.issue_pem("another");
        assert_eq!(
            err(
                tls(true, true),
                values(&ca, Some((cert.clone(), other_key)))
            ),
            CassandraTlsError::KeyMismatch
        );
        let e = err(
            tls(true, true),
            values(&ca, Some((cert, "secret-ish".into()))),
        );
        assert!(matches!(e, CassandraTlsError::BadClientKey(_)), "{e}");
        assert!(!e.to_string().contains("secret-ish"), "{e}");
    }

    #[test]
    fn only_name_mismatches_are_forgiven() {
        assert!(name_mismatch_only(
            openssl_sys::X509_V_ERR_IP_ADDRESS_MISMATCH
        ));
        assert!(name_mismatch_only(
            openssl_sys::X509_V_ERR_HOSTNAME_MISMATCH
        ));
        assert!(!name_mismatch_only(
            openssl_sys::X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY
        ));
        assert!(!name_mismatch_only(
            openssl_sys::X509_V_ERR_CERT_HAS_EXPIRED
        ));
    }
}
