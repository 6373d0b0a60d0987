//! Where an `httpPull` may connect, and where it may send its credentials.
//!
//! Two rules the runner applies to every request of a pull, redirects and
//! next pages included:
//!
//! - **Credentials stay at home.** Headers from `headersFromSecret`, and
//!   `headers` named like credentials ([`is_credential_header`]), go only to
//!   the origin (scheme, host, port) of the configured URL. A redirect or a
//!   next-page link to another origin is followed without them.
//! - **Addresses by kind.** Every address connected to is classified
//!   ([`classify`]) and checked against the source's `allowedAddresses`
//!   ([`AllowedAddresses::permits`]): public always; private and loopback
//!   by default; link-local and cloud metadata endpoints only when asked
//!   for; unspecified, multicast, broadcast and reserved never.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::Url;

use crate::spec::AllowedAddresses;

/// What kind of address an IP address is, as far as a pull is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    /// RFC 1918, shared address space (100.64.0.0/10) and unique local
    /// IPv6 (fc00::/7): where a cluster's Pods and Services live.
    Private,
    /// 127.0.0.0/8 and ::1.
    Loopback,
    /// 169.254.0.0/16 and fe80::/10.
    LinkLocal,
    /// A cloud's instance metadata endpoint on an address that is not
    /// link-local (AWS's fd00:ec2::254, Alibaba's 100.100.100.200); the
    /// one on 169.254.169.254 is link-local already.
    CloudMetadata,
    /// 0.0.0.0/8 and ::, which reach the local host on some stacks.
    Unspecified,
    /// 224.0.0.0/4 and ff00::/8.
    Multicast,
    /// 255.255.255.255.
    Broadcast,
    /// 240.0.0.0/4: not assigned.
    Reserved,
}

impl AddressClass {
    fn describe(self) -> &'static str {
        match self {
            Self::Public => "a public address",
            Self::Private => "a private address",
            Self::Loopback => "a loopback address",
            Self::LinkLocal => "a link-local address (cloud metadata endpoints live there)",
            Self::CloudMetadata => "a cloud metadata endpoint",
            Self::Unspecified => "the unspecified address",
            Self::Multicast => "a multicast address",
            Self::Broadcast => "the broadcast address",
            Self::Reserved => "a reserved address",
        }
    }

    /// The `allowedAddresses` field that permits this class, if any does.
    fn allowed_by(self) -> Option<&'static str> {
        match self {
            Self::Public => None,
            Self::Private => Some("private"),
            Self::Loopback => Some("loopback"),
            Self::LinkLocal | Self::CloudMetadata => Some("linkLocal"),
            Self::Unspecified | Self::Multicast | Self::Broadcast | Self::Reserved => None,
        }
    }
}

/// The class of `ip`. IPv4 addresses written as IPv6 (mapped,
/// `::ffff:a.b.c.d`, or NAT64, `64:ff9b::a.b.c.d`) are classed as the
/// IPv4 address they reach.
pub fn classify(ip: IpAddr) -> AddressClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddressClass {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(100, 100, 100, 200) {
        AddressClass::CloudMetadata
    } else if a == 0 {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if ip.is_link_local() {
        AddressClass::LinkLocal
    } else if ip.is_broadcast() {
        AddressClass::Broadcast
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if a >= 240 {
        AddressClass::Reserved
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddressClass {
    let first = ip.segments()[0];
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        AddressClass::CloudMetadata
    } else if ip.is_unspecified() {
        AddressClass::Unspecified
    } else if ip.is_loopback() {
        AddressClass::Loopback
    } else if first & 0xffc0 == 0xfe80 {
        AddressClass::LinkLocal
    } else if ip.is_multicast() {
        AddressClass::Multicast
    } else if first & 0xfe00 == 0xfc00 || first & 0xffc0 == 0xfec0 {
        // Unique local, and the deprecated site-local that some stacks
        // still route privately.
        AddressClass::Private
    } else {
        AddressClass::Public
    }
}

/// The IPv4 address an IPv6 address stands for, when it is a mapped
/// (`::ffff:0:0/96`) or NAT64 well-known-prefix (`64:ff9b::/96`) one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = ip.segments();
    (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0]).then(|| {
        let [.., a, b, c, d] = ip.octets();
        Ipv4Addr::new(a, b, c, d)
    })
}

/// A connection `allowedAddresses` does not permit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRefused {
    /// The name that resolved to it, or `None` for an address in the URL.
    pub host: Option<String>,
    pub ip: IpAddr,
    pub class: AddressClass,
}

impl fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            Some(host) => write!(f, "{host} resolves to {}, ", self.ip)?,
            None => write!(f, "{} is ", self.ip)?,
        }
        write!(f, "{}", self.class.describe())?;
        match self.class.allowed_by() {
            Some(field) => write!(
                f,
                ", which this source may not connect to (allowedAddresses.{field}: true would allow it)"
            ),
            None => write!(f, ", which a pull never connects to"),
        }
    }
}

impl std::error::Error for AddressRefused {}

impl AllowedAddresses {
    /// Whether a pull may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> Result<(), AddressRefused> {
        let class = classify(ip);
        let allowed = match class {
            AddressClass::Public => true,
            AddressClass::Private => self.private,
            AddressClass::Loopback => self.loopback,
            AddressClass::LinkLocal | AddressClass::CloudMetadata => self.link_local,
            AddressClass::Unspecified
            | AddressClass::Multicast
            | AddressClass::Broadcast
            | AddressClass::Reserved => false,
        };
        if allowed {
            Ok(())
        } else {
            Err(AddressRefused {
                host: None,
                ip,
                class,
            })
        }
    }

    /// The address of `url`'s host when it is an IP address, checked.
    /// Such hosts are connected to without a name lookup, so the resolver's
    /// check never sees them. Names give `Ok`: they are checked when they
    /// are resolved.
    pub fn permits_url(&self, url: &Url) -> Result<(), AddressRefused> {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => self.permits(ip.into()),
            Some(url::Host::Ipv6(ip)) => self.permits(ip.into()),
            Some(url::Host::Domain(_)) | None => Ok(()),
        }
    }
}

/// Whether a header set in `headers` carries a credential, so that it is
/// sent only to the configured URL's origin, as headers from
/// `headersFromSecret` always are. The standard ones, and names that say
/// what they hold (`X-Api-Key`, `X-Auth-Token`, `Private-Token`...).
pub fn is_credential_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    matches!(
        name.as_str(),
        "authorization" | "proxy-authorization" | "cookie" | "cookie2"
    ) || [
        "auth",
        "token",
        "key",
        "secret",
        "password",
        "session",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word))
}

/// Whether credentials configured for `home` may be sent to `to`: the same
/// scheme, host and port (a default port written or not is the same port).
pub fn same_origin(home: &Url, to: &Url) -> bool {
    let (home, to) = (home.origin(), to.origin());
    home.is_tuple() && home == to
}

/// `url` for messages and logs: scheme, host, port and path. A query and a
/// `user:password@` are left out, as they may carry tokens (a next-page
/// link's signature, a key the API asks for in the query).
pub fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let query = shown.query().is_some();
    shown.set_query(None);
    shown.set_fragment(None);
    if query {
        format!("{shown}?...")
    } else {
        shown.to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_are_classified() {
        use AddressClass::*;
        for (address, class) in [
            ("8.8.8.8", Public),
            ("2001:4860:4860::8888", Public),
            ("10.96.0.1", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("172.32.0.1", Public),
            ("192.168.1.1", Private),
            ("100.64.0.1", Private),
            ("100.127.255.255", Private),
            ("100.128.0.1", Public),
            ("fd12:3456::1", Private),
            ("127.0.0.1", Loopback),
            ("127.0.0.2", Loopback),
            ("127.10.3.4", Loopback),
            ("::1", Loopback),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fd00:ec2::254", CloudMetadata),
            ("100.100.100.200", CloudMetadata),
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("::", Unspecified),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("ff02::1", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            // IPv4 written as IPv6 is the IPv4 address.
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.0.0.1", Private),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("64:ff9b::808:808", Public),
        ] {
            assert_eq!(classify(ip(address)), class, "{address}");
        }
    }

    #[test]
    fn the_default_refuses_link_local_and_allows_the_cluster() {
        let default = AllowedAddresses::default();
        for allowed in ["8.8.8.8", "10.0.0.1", "127.0.0.1", "::1", "fd12::1"] {
            assert!(default.permits(ip(allowed)).is_ok(), "{allowed}");
        }
        for refused in [
            "169.254.169.254",
            "fe80::1",
            "fd00:ec2::254",
            "100.100.100.200",
            "::ffff:169.254.169.254",
            "0.0.0.0",
            "::",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(default.permits(ip(refused)).is_err(), "{refused}");
        }
    }

    #[test]
    fn each_field_opens_its_own_kind_only() {
        let link_local = AllowedAddresses {
            link_local: true,
            ..AllowedAddresses::default()
        };
        assert!(link_local.permits(ip("169.254.169.254")).is_ok());
        assert!(link_local.permits(ip("fd00:ec2::254")).is_ok());
        assert!(link_local.permits(ip("0.0.0.0")).is_err(), "never");
        assert!(link_local.permits(ip("ff02::1")).is_err(), "never");
        let closed = AllowedAddresses {
            link_local: false,
            private: false,
            loopback: false,
        };
        assert!(closed.permits(ip("8.8.8.8")).is_ok());
        assert!(closed.permits(ip("10.0.0.1")).is_err());
        assert!(closed.permits(ip("127.0.0.1")).is_err());
        assert!(closed.permits(ip("::ffff:127.0.0.1")).is_err());
    }

    #[test]
    fn a_refusal_says_what_the_address_is_and_how_to_allow_it() {
        let default = AllowedAddresses::default();
        let refused = default.permits(ip("169.254.169.254")).unwrap_err();
        assert_eq!(
            refused.to_string(),
            "169.254.169.254 is a link-local address (cloud metadata endpoints live there), \
             which this source may not connect to (allowedAddresses.linkLocal: true would allow it)"
        );
        let named = AddressRefused {
            host: Some("metadata.internal".into()),
            ..default.permits(ip("224.0.0.1")).unwrap_err()
        };
        assert_eq!(
            named.to_string(),
            "metadata.internal resolves to 224.0.0.1, a multicast address, which a pull never connects to"
        );
    }

    #[test]
    fn ip_hosts_in_urls_are_checked_and_names_left_to_the_resolver() {
        let default = AllowedAddresses::default();
        let url = |s: &str| Url::parse(s).unwrap();
        assert!(
            default
                .permits_url(&url("http://169.254.169.254/latest/meta-data/"))
                .is_err()
        );
        assert!(default.permits_url(&url("http://[fe80::1]:8080/")).is_err());
        // The URL parser reads every IPv4 spelling as the address.
        assert!(default.permits_url(&url("http://2852039166/")).is_err());
        assert!(
            default
                .permits_url(&url("http://0xa9.0xfe.0xa9.0xfe/"))
                .is_err()
        );
        assert!(
            default
                .permits_url(&url("http://169.254.169.254./"))
                .is_err()
        );
        assert!(
            default
                .permits_url(&url("http://[::ffff:a9fe:a9fe]/"))
                .is_err()
        );
        assert!(default.permits_url(&url("http://127.0.0.1:8080/")).is_ok());
        assert!(
            default
                .permits_url(&url("http://metadata.google.internal/"))
                .is_ok()
        );
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        let url = |s: &str| Url::parse(s).unwrap();
        let home = url("https://api.example.com/v1/users?page=1");
        assert!(same_origin(
            &home,
            &url("https://api.example.com/v1/users?page=2")
        ));
        assert!(same_origin(
            &home,
            &url("https://API.Example.com:443/other")
        ));
        assert!(!same_origin(&home, &url("http://api.example.com/v1/users")));
        assert!(!same_origin(&home, &url("https://api.example.com:8443/")));
        assert!(!same_origin(
            &home,
            &url("https://cdn.example.com/v1/users")
        ));
        assert!(!same_origin(&home, &url("https://example.com/")));
        assert!(!same_origin(
            &home,
            &url("https://api.example.com.evil.test/")
        ));
        let local = url("http://127.0.0.1:8080/");
        assert!(same_origin(&local, &url("http://2130706433:8080/x")));
        assert!(!same_origin(&local, &url("http://127.0.0.2:8080/")));
        assert!(!same_origin(&local, &url("http://localhost:8080/")));
        let data = "data:text/plain,x";
        assert!(!same_origin(&url(data), &url(data)), "no origin to share");
    }

    #[test]
    fn credential_headers_are_recognised_by_name() {
        for name in [
            "Authorization",
            "proxy-authorization",
            "Cookie",
            "X-Api-Key",
            "api_key",
            "X-Auth-Token",
            "Private-Token",
            "X-Client-Secret",
            "X-Amz-Security-Token",
            "X-Session-Id",
            "X-Signature",
        ] {
            assert!(is_credential_header(name), "{name}");
        }
        for name in ["Accept", "User-Agent", "X-Request-Id", "If-None-Match"] {
            assert!(!is_credential_header(name), "{name}");
        }
    }

    #[test]
    fn urls_in_messages_leave_out_queries_and_passwords() {
        let url = |s: &str| Url::parse(s).unwrap();
        assert_eq!(
            redacted(&url(
                "https://user:pw@api.example.com:8443/v1/users?key=s3cret#x"
            )),
            "https://api.example.com:8443/v1/users?..."
        );
        assert_eq!(
            redacted(&url("http://127.0.0.1:8080/big")),
            "http://127.0.0.1:8080/big"
        );
    }
}
