//! Records shaped like randomuser.me's API results (the seed's source), the
//! same shape as api/tests/fixtures/randomuser-sample.json including the
//! login hashes, so record sizes (~1 KiB) match the real API's.
//!
//! Seeded, so a run's topic holds the same bytes every time. They are the
//! runner's generator's users, with the hashes its generator source leaves
//! out: one generator is kept like the API, and making a record is not
//! part of what any measurement times.

use millrace_runner::ingest::generator::{Shape, nth_user_shaped};
use serde_json::Value;

/// A seeded stream of users.
pub struct Users {
    seed: u64,
    next: u64,
}

impl Users {
    pub fn new(seed: u64) -> Self {
        Self { seed, next: 0 }
    }

    /// The next user as (Kafka key = its uuid, JSON bytes). Keyed by the
    /// partition key, as the runner's producer keys records.
    pub fn next_record(&mut self) -> (String, Vec<u8>) {
        let user = self.next_user();
        let key = user["login"]["uuid"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        (key, user.to_string().into_bytes())
    }

    pub fn next_user(&mut self) -> Value {
        let user = nth_user_shaped(self.seed, self.next, Shape { login_hashes: true });
        self.next += 1;
        user
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use millrace_api::RowMapper;

    use super::*;

    #[test]
    fn users_fit_the_example_table_and_are_seeded() {
        let mapper = RowMapper::new(&crate::example_table("ks", "t").unwrap()).unwrap();
        let mut users = Users::new(7);
        for _ in 0..1000 {
            mapper.map(&users.next_user()).unwrap();
        }
        // The stream is the generator's seeded sequence, in order (whose
        // stability the runner's generator tests pin), so a run's topic
        // holds the same bytes every time.
        let mut seeded = Users::new(1);
        for n in 0..3 {
            assert_eq!(
                seeded.next_user(),
                nth_user_shaped(1, n, Shape { login_hashes: true })
            );
        }
        assert_ne!(Users::new(1).next_record(), Users::new(2).next_record());
    }

    #[test]
    fn records_are_about_a_kibibyte_like_the_apis() {
        let mut users = Users::new(7);
        let bytes: usize = (0..1000).map(|_| users.next_record().1.len()).sum();
        let mean = bytes / 1000;
        assert!((900..=1200).contains(&mean), "{mean} bytes on average");
    }
}
