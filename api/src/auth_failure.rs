//! How Kafka and Cassandra clients word a refused login, so that a wrong
//! Secret is told from an unreachable cluster: a person must fix the
//! former, and retrying quickly cannot help.

/// The driver's words for Cassandra refusing the username or password
/// given.
pub fn cassandra_refused_login(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("authentication failed")
        || m.contains("bad credentials")
        || m.contains("and/or password are incorrect")
}

/// A refused login as [`cassandra_refused_login`], or the server's
/// AuthenticationError, or a PasswordAuthenticator challenge that was not
/// answered (no credentials where the cluster requires them).
pub fn cassandra_auth_failure(message: &str) -> bool {
    if cassandra_refused_login(message) {
        return true;
    }
    let m = message.to_ascii_lowercase();
    // PasswordAuthenticator's words when it cannot read its own tables
    // (too few system_auth replicas up): the login may be right, and
    // retrying is what helps, so it is the cluster being unavailable.
    if m.contains("unable to perform authentication") || m.contains("cannot achieve consistency") {
        return false;
    }
    m.contains("authentication error") || m.contains("requires authentication")
}

/// The part a person can act on of a librdkafka log line or error that
/// reports a refused SASL login, or `None` if it reports something else.
///
/// From "...: SASL authentication error: Authentication failed ...
/// (after 12ms in state AUTH_REQ)" it keeps "SASL authentication error:
/// Authentication failed ...".
pub fn kafka_sasl_refusal(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    if !(lower.contains("sasl authentication error") || lower.contains("authentication failed")) {
        return None;
    }
    let text = message
        .find("SASL authentication error")
        .map_or(message, |at| &message[at..]);
    Some(text.split(" (after ").next().unwrap_or(text).to_owned())
}

/// The part a person can act on of a librdkafka log line or error that
/// reports a failed TLS handshake (an untrusted or misnamed broker
/// certificate, a client certificate the broker refused), or `None`.
///
/// From "ssl://h:9093/bootstrap: SSL handshake failed: error:0A000086:SSL
/// routines::certificate verify failed: broker certificate could not be
/// verified, ... (after 4ms in state SSL_HANDSHAKE)" it keeps "SSL handshake
/// failed: ...".
pub fn kafka_tls_failure(message: &str) -> Option<String> {
    let at = message.find("SSL handshake failed")?;
    let text = &message[at..];
    Some(text.split(" (after ").next().unwrap_or(text).to_owned())
}

/// The part a person can act on of a CQL driver error that reports a
/// failed TLS handshake with a node (a CA that did not sign the node's
/// certificate, a certificate that does not name the node, a client
/// certificate refused or missing), or `None`: from "...Failed to connect:
/// error:0A000086:SSL routines:...:certificate verify failed..." it keeps
/// "error:0A000086:SSL routines:...".
pub fn cassandra_tls_failure(message: &str) -> Option<String> {
    let lower = message.to_ascii_lowercase();
    let at = [
        "ssl routines",
        "certificate verify failed",
        "tlsv1 alert",
        "tlsv13 alert",
        "sslv3 alert",
    ]
    .iter()
    .filter_map(|k| lower.find(k))
    .min()?;
    // OpenSSL prefixes its reasons with `error:CODE:`; keep that with them.
    let start = lower[..at]
        .rfind("error:")
        .filter(|e| at - e <= 16)
        .unwrap_or(at);
    Some(message[start..].trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_cassandra_handshake_is_told_from_other_errors() {
        assert_eq!(
            cassandra_tls_failure(
                "Control connection pool error: Failed to connect: error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed"
            )
            .as_deref(),
            Some("error:0A000086:SSL routines:tls_post_process_server_certificate:certificate verify failed")
        );
        for other in [
            "Connection refused (os error 111)",
            "Authentication failed - bad credentials",
            "timed out connecting",
        ] {
            assert_eq!(cassandra_tls_failure(other), None, "{other}");
        }
    }

    #[test]
    fn a_failed_kafka_handshake_is_told_from_other_errors() {
        assert_eq!(
            kafka_tls_failure(
                "ssl://127.0.0.1:19095/bootstrap: SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (add broker's CA certificate to the trusted certificate store) (after 3ms in state SSL_HANDSHAKE)"
            )
            .as_deref(),
            Some(
                "SSL handshake failed: error:0A000086:SSL routines::certificate verify failed: broker certificate could not be verified, verify that ssl.ca.location is correctly configured or root CA certificates are installed (add broker's CA certificate to the trusted certificate store)"
            )
        );
        assert_eq!(
            kafka_tls_failure("ssl://127.0.0.1:19095/bootstrap: Connection refused"),
            None
        );
    }

    #[test]
    fn refused_cassandra_logins_are_told_from_unreachable_clusters() {
        for refused in [
            "Control connection pool error: Authentication failed - bad credentials",
            "Provided username cassandra and/or password are incorrect",
        ] {
            assert!(cassandra_refused_login(refused), "{refused}");
            assert!(cassandra_auth_failure(refused), "{refused}");
        }
        for other in [
            "Connection refused (os error 111)",
            "timed out connecting",
            "Authentication error: Unable to perform authentication: Cannot achieve consistency level QUORUM",
        ] {
            assert!(!cassandra_refused_login(other), "{other}");
            assert!(!cassandra_auth_failure(other), "{other}");
        }
    }

    #[test]
    fn an_unanswered_challenge_is_an_auth_failure_but_not_a_refused_login() {
        let m = "Server requires authentication, but no authenticator was configured";
        assert!(cassandra_auth_failure(m));
        assert!(!cassandra_refused_login(m));
    }

    #[test]
    fn a_refused_login_in_librdkafka_log_is_noticed() {
        assert_eq!(
            kafka_sasl_refusal("sasl_plaintext://127.0.0.1:19094/bootstrap: Connection refused"),
            None
        );
        assert_eq!(
            kafka_sasl_refusal(
                "sasl_plaintext://127.0.0.1:19094/bootstrap: SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 3ms in state AUTH_REQ)",
            )
            .as_deref(),
            Some(
                "SASL authentication error: Authentication failed during authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512"
            )
        );
    }
}
