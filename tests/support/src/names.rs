//! Unique names, so tests can run side by side and never see each other's
//! objects.

use rand::Rng;

/// `prefix-<8 random lowercase alphanumerics>`: valid as a Kubernetes name,
/// a Kafka topic and (with `-` replaced) a CQL identifier.
pub fn unique_name(prefix: &str) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    let suffix: String = (0..8)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect();
    format!("{prefix}-{suffix}")
}

/// The same unique name shaped as a CQL identifier (letters, digits, `_`).
pub fn unique_cql_name(prefix: &str) -> String {
    unique_name(prefix).replace('-', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        let a = unique_name("smoke");
        let b = unique_name("smoke");
        assert_ne!(a, b);
        assert!(a.starts_with("smoke-") && a.len() == "smoke-".len() + 8);
        let c = unique_cql_name("ks");
        assert!(c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_'));
    }
}
