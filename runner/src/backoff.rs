//! Exponential back-off with jitter.

use std::time::Duration;

use rand::Rng;

/// The pause before retry number `attempt` (0 for the first retry): `base`
/// doubled per attempt, capped at `cap`, then drawn uniformly from its upper
/// half so that many clients retrying together spread out.
pub fn delay(attempt: u32, base: Duration, cap: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << attempt.min(20)).min(cap);
    let half = exp / 2;
    let jitter = rand::rng().random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_stay_under_the_cap_and_jitter() {
        let base = Duration::from_millis(100);
        let cap = Duration::from_secs(2);
        for attempt in 0..30 {
            let expected = (base * 2u32.pow(attempt.min(20))).min(cap);
            let d = delay(attempt, base, cap);
            assert!(d >= expected / 2 && d <= expected, "{attempt}: {d:?}");
        }
        let draws: std::collections::HashSet<_> = (0..50).map(|_| delay(5, base, cap)).collect();
        assert!(draws.len() > 1, "jittered");
    }
}
