//! Which names, addresses and URLs the spec may hold. These are what keeps
//! the spec's text out of CQL statements, Kafka requests and HTTP streams.

use crate::spec::limits;

/// Whether `name` is a CQL identifier millrace accepts: a letter, then up to
/// 47 letters, digits or underscores.
pub fn is_cql_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic())
        && name.len() <= limits::CQL_IDENTIFIER_MAX
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether `name` is a Kafka topic name.
pub fn is_topic_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= limits::TOPIC_NAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

pub(super) fn is_dns_label(name: &str, max: usize) -> bool {
    let bytes = name.as_bytes();
    let inner = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-';
    let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    !bytes.is_empty()
        && bytes.len() <= max
        && bytes.iter().all(inner)
        && bytes.first().is_some_and(edge)
        && bytes.last().is_some_and(edge)
}

pub(super) fn is_pipeline_name(name: &str) -> bool {
    is_dns_label(name, limits::PIPELINE_NAME_MAX)
        && name.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

pub(super) fn is_secret_name(name: &str) -> bool {
    name.len() <= 253 && name.split('.').all(|label| is_dns_label(label, 63))
}

pub(super) fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

pub(super) fn is_host(host: &str) -> bool {
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'))
}

/// A DNS name a certificate can be checked for: dot-separated labels of
/// letters, digits and '-', no wildcard, no IP address.
pub(super) fn is_dns_name(name: &str) -> bool {
    name.len() <= 253
        && name.parse::<std::net::IpAddr>().is_err()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

pub(super) fn is_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok_and(|p| p > 0)
}

pub(super) fn split_host_port(address: &str) -> Option<(&str, Option<&str>)> {
    // A bracketed IPv6 address has colons of its own.
    let host_end = if address.starts_with('[') {
        address.find(']')? + 1
    } else {
        address.find(':').unwrap_or(address.len())
    };
    let (host, rest) = address.split_at(host_end);
    match rest {
        "" => Some((host, None)),
        _ => Some((host, Some(rest.strip_prefix(':')?))),
    }
}

pub(super) fn is_http_url(url: &str) -> bool {
    let Some(rest) = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
    else {
        return false;
    };
    if url.len() > limits::URL_MAX || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    match split_host_port(host_port) {
        Some((host, port)) => is_host(host) && port.is_none_or(is_port),
        None => false,
    }
}

pub(super) fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

pub(super) fn is_datacenter(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_absolute_http() {
        for good in [
            "https://randomuser.me/api/?results=10",
            "http://10.0.0.1:8080/x",
            "http://[::1]/",
            "https://user:pw@host.example",
        ] {
            assert!(is_http_url(good), "{good}");
        }
        for bad in [
            "ftp://x",
            "https://",
            "https:///path",
            "http://a b/",
            "http://host:99999/",
            "//host/x",
            "https://host\n/",
        ] {
            assert!(!is_http_url(bad), "{bad}");
        }
    }

    #[test]
    fn identifier_rules() {
        assert!(is_cql_identifier("a"));
        assert!(is_cql_identifier("Users_2024"));
        assert!(is_cql_identifier(&"a".repeat(48)));
        assert!(!is_cql_identifier(&"a".repeat(49)));
        assert!(!is_cql_identifier("2users"));
        assert!(!is_cql_identifier("users!"));
    }
}
