//! Regular expressions shared by the CRD's CEL rules and its OpenAPI patterns.
//!
//! They are written for RE2 (the apiserver) and stay inside the subset that
//! the Rust `regex` crate (the offline CEL evaluator in tests) reads the same
//! way. Braces and stars are matched through character classes so the strings
//! need no backslashes inside CEL string literals.

/// A CQL identifier that needs no quoting rules explained to users: a letter,
/// then letters, digits or underscores, at most 48 characters (Cassandra's
/// limit for keyspace and table names).
pub const CQL_IDENTIFIER: &str = "^[a-zA-Z][a-zA-Z0-9_]{0,47}$";

/// Characters Kafka accepts in a topic name (length is checked separately).
pub const KAFKA_TOPIC: &str = "^[a-zA-Z0-9._-]+$";

/// A DNS label (RFC 1123), as Kubernetes uses for names that appear in
/// object names and metric labels.
pub const DNS_LABEL: &str = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// A DNS-1035 label: a DNS label that starts with a letter, as Service
/// names must.
pub const DNS_1035_LABEL: &str = "^[a-z]([-a-z0-9]*[a-z0-9])?$";

/// A DNS subdomain (RFC 1123), the shape of a Secret's name.
pub const DNS_SUBDOMAIN: &str =
    "^[a-z0-9]([-a-z0-9]*[a-z0-9])?([.][a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// A key inside a Secret's data.
pub const SECRET_KEY: &str = "^[-._a-zA-Z0-9]+$";

/// A non-empty JSON pointer (RFC 6901): `~` only as `~0` or `~1`.
pub const JSON_POINTER: &str = "^/([^~]|~[01])*$";

/// A JSON pointer that may be empty (the whole document).
pub const JSON_POINTER_OR_EMPTY: &str = "^(/([^~]|~[01])*)?$";

/// A template: literal text, `{{` and `}}` for literal braces, and JSON
/// pointers in single braces.
pub const TEMPLATE: &str = "^([^{}]|[{][{]|[}][}]|[{]/([^~{}]|~[01])*[}])*$";

/// A query parameter name: URL-safe characters only.
pub const QUERY_PARAM: &str = "^[A-Za-z0-9._~-]+$";

/// An RFC 3339 timestamp such as `2026-01-01T00:00:00Z`.
pub const RFC3339: &str = "^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}([.][0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})$";

/// An interval such as `30s`, `5m`, `250ms` or `1h`.
pub const INTERVAL: &str = "^[0-9]{1,9}(ms|s|m|h)$";

/// An interval of zero, which would pull in a busy loop.
pub const ZERO_INTERVAL: &str = "^0+(ms|s|m|h)$";

macro_rules! cron_item {
    ($n:literal, $any:literal) => {
        concat!("(", $any, "|", $n, "(-", $n, ")?)(/[1-9][0-9]?)?")
    };
}

macro_rules! cron_field {
    ($n:literal, $any:literal) => {
        concat!(cron_item!($n, $any), "(,", cron_item!($n, $any), ")*")
    };
}

/// A five-field cron expression (minute, hour, day of month, month, day of
/// week), with ranges, lists, steps and English month and day names. The
/// ranges are checked for each field, so `61 * * * *` is refused at admission.
pub const CRON: &str = concat!(
    "(?i)^ *",
    cron_field!("([0-5]?[0-9])", "[*]"),
    " +",
    cron_field!("([01]?[0-9]|2[0-3])", "[*]"),
    " +",
    cron_field!("(0?[1-9]|[12][0-9]|3[01])", "[*?]"),
    " +",
    cron_field!(
        "(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)",
        "[*]"
    ),
    " +",
    cron_field!("([0-7]|sun|mon|tue|wed|thu|fri|sat)", "[*?]"),
    " *$"
);

macro_rules! cql_scalar {
    () => {
        "(ascii|bigint|blob|boolean|date|decimal|double|float|inet|int|smallint|text|time|timestamp|timeuuid|tinyint|uuid|varchar|varint)"
    };
}

/// The CQL types a column may have: a scalar, or a list, set or map of scalars.
pub const CQL_TYPE: &str = concat!(
    "^(",
    cql_scalar!(),
    "|(list|set)< *",
    cql_scalar!(),
    " *>|map< *",
    cql_scalar!(),
    " *, *",
    cql_scalar!(),
    " *>)$"
);

/// `host:port[,host:port...]`, hosts as names, IPv4 or bracketed IPv6.
pub const BOOTSTRAP_SERVERS: &str = "^([a-zA-Z0-9.-]+|\\[[0-9a-fA-F:.]+\\]):[0-9]{1,5}(,([a-zA-Z0-9.-]+|\\[[0-9a-fA-F:.]+\\]):[0-9]{1,5})*$";

/// `host` or `host:port`, hosts as names, IPv4 or bracketed IPv6.
pub const CONTACT_POINT: &str = "^([a-zA-Z0-9.-]+|\\[[0-9a-fA-F:.]+\\])(:[0-9]{1,5})?$";

/// An HTTP path the push endpoint listens on.
pub const HTTP_PATH: &str = "^/[a-zA-Z0-9/._~-]*$";

/// A Cassandra datacenter name, written into CQL as a string literal.
pub const DATACENTER: &str = "^[a-zA-Z0-9._-]{1,64}$";
