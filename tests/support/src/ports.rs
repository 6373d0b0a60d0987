//! Ports for the servers tests start as processes of their own (runners,
//! operators, Prometheus), which bind a port the test chose for them.
//!
//! A port the kernel hands out for `bind(0)` comes from the ephemeral
//! range, the same range every outgoing connection on the machine takes its
//! local port from: between the test's choice and the child's bind, a
//! client's connection (the suite makes thousands, to Kafka, Cassandra and
//! the apiserver) can take it, and the child fails with "Address already in
//! use". Ports above that range are never given to connections, and the
//! test world's own services sit below it.

use rand::Rng;

/// A TCP port on 127.0.0.1 that nothing listens on right now and that no
/// outgoing connection will take, when the machine's ephemeral range leaves
/// room above it; else one from `bind(0)`.
pub fn free_port() -> std::io::Result<u16> {
    let above = ephemeral_high()
        .map(|high| high.saturating_add(1))
        .unwrap_or(u16::MAX);
    if above < u16::MAX {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let port = rng.random_range(above..=u16::MAX);
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The top of the kernel's ephemeral port range.
fn ephemeral_high() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    parse_range_high(&range)
}

fn parse_range_high(range: &str) -> Option<u16> {
    range.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_of_the_range_is_read_from_the_kernels_format() {
        assert_eq!(parse_range_high("32768\t60999\n"), Some(60999));
        assert_eq!(parse_range_high("1024 65535"), Some(65535));
        assert_eq!(parse_range_high("garbage"), None);
    }

    #[test]
    fn a_port_above_the_ephemeral_range_is_free_to_bind() {
        let port = free_port().expect("a port");
        if let Some(high) = ephemeral_high().filter(|h| *h < u16::MAX) {
            assert!(
                port > high,
                "{port} is in the ephemeral range (up to {high})"
            );
        }
        std::net::TcpListener::bind(("127.0.0.1", port)).expect("bind the port given");
    }
}
