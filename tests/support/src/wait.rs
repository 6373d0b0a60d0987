//! Waiting by polling with a deadline: tests never sleep a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// A point in time after which waiting is a failure.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    at: Instant,
    budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Self {
        Self {
            at: Instant::now() + budget,
            budget,
        }
    }

    pub fn secs(secs: u64) -> Self {
        Self::after(Duration::from_secs(secs))
    }

    pub fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }

    pub fn budget(&self) -> Duration {
        self.budget
    }
}

/// Calls `check` until it returns `Ok(Some(value))`, backing off from 50 ms
/// to 1 s between tries. On timeout the error names `what` and carries the
/// last thing `check` said, which is usually why it never became true.
pub async fn poll_until<T, F, Fut>(
    what: &str,
    deadline: Deadline,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let mut pause = Duration::from_millis(50);
    loop {
        let last = match check().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => "not yet".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if deadline.passed() {
            anyhow::bail!(
                "timed out after {:?} waiting for {what}; last: {last}",
                deadline.budget()
            );
        }
        tokio::time::sleep(pause.min(deadline.remaining())).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn returns_when_check_succeeds() {
        let n = AtomicU32::new(0);
        let v = poll_until("third try", Deadline::secs(5), || async {
            Ok((n.fetch_add(1, Ordering::SeqCst) >= 2).then_some(7))
        })
        .await
        .expect("succeeds");
        assert_eq!(v, 7);
    }

    #[tokio::test]
    async fn times_out_with_the_last_error() {
        let err = poll_until::<(), _, _>(
            "never",
            Deadline::after(Duration::from_millis(200)),
            || async { anyhow::bail!("still broken") },
        )
        .await
        .expect_err("times out");
        let msg = format!("{err:#}");
        assert!(
            msg.contains("never") && msg.contains("still broken"),
            "{msg}"
        );
    }
}
