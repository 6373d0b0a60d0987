//! Records shaped like randomuser.me's API results (the seed's source), the
//! same shape as api/tests/fixtures/randomuser-sample.json including the
//! login hashes, so record sizes (~1 KiB) match the real API's.
//!
//! Seeded, so a run's topic holds the same bytes every time; the uuids come
//! from the seeded generator too. Not the runner's generator: the runner is
//! the thing measured, and the harness must not depend on it.

use rand::rngs::StdRng;
use rand::seq::IndexedRandom as _;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

const FIRST_FEMALE: &[&str] = &[
    "Zoë", "Léa", "Ana", "Maja", "Ingrid", "Aino", "Sofía", "Chloé", "Emma", "Olivia", "Ayşe",
    "Nora", "Ella", "Mia", "Freja", "Ágnes", "Renée", "Lucía", "Hanna", "Zeynep",
];
const FIRST_MALE: &[&str] = &[
    "Tomás", "Ægir", "Søren", "Noah", "Liam", "Mathéo", "Jesús", "Björn", "Oğuz", "Lukas", "Elias",
    "Jonas", "Mateo", "Hugo", "Árni", "Emil", "Kai", "Oscar", "Iker", "Luca",
];
const LAST: &[&str] = &[
    "Jørgensen",
    "García",
    "Müller",
    "Lindqvist",
    "Ibáñez",
    "Smith",
    "Dubois",
    "Rossi",
    "Nowak",
    "Yılmaz",
    "Kowalski",
    "Novak",
    "Virtanen",
    "Hansen",
    "Silva",
];
const STREETS: &[&str] = &[
    "Mill Lane",
    "Rue de la Paix",
    "Hauptstraße",
    "Storgatan",
    "Calle de Alcalá",
    "Via Roma",
    "Kirkegade",
];
/// (country, state, city, nat, postcode is text).
const PLACES: &[(&str, &str, &str, &str, bool)] = &[
    ("United Kingdom", "Cornwall", "Truro", "GB", true),
    ("Denmark", "Syddanmark", "Odense", "DK", false),
    ("Germany", "Bayern", "München", "DE", false),
    ("Sweden", "Vastmanland", "Vasteras", "SE", false),
    ("Spain", "Aragón", "Zaragoza", "ES", false),
    ("Canada", "Québec", "Montréal", "CA", true),
];
const WORDS: &[&str] = &[
    "happy", "silver", "brave", "lazy", "quiet", "purple", "tiny", "golden", "wild", "calm",
];
const ANIMALS: &[&str] = &[
    "otter", "fox", "koala", "panda", "swan", "lion", "tiger", "frog", "wolf", "bear",
];

/// A seeded stream of users.
pub struct Users {
    rng: StdRng,
}

impl Users {
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
        }
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
        let rng = &mut self.rng;
        let female = rng.random_bool(0.5);
        let (gender, title, first, portraits) = if female {
            (
                "female",
                pick(rng, &["Ms", "Mrs", "Miss"]),
                pick(rng, FIRST_FEMALE),
                "women",
            )
        } else {
            ("male", "Mr", pick(rng, FIRST_MALE), "men")
        };
        let last = pick(rng, LAST);
        let (country, state, city, nat, text_postcode) = *PLACES.choose(rng).unwrap_or(&PLACES[0]);
        // The API's quirk: a number for some countries, text for others.
        let postcode = if text_postcode {
            json!(format!(
                "{}{}{} {}{}{}",
                letter(rng),
                letter(rng),
                rng.random_range(1..10),
                rng.random_range(1..10),
                letter(rng),
                letter(rng)
            ))
        } else {
            json!(rng.random_range(10_000..99_999))
        };
        let uuid = uuid::Builder::from_random_bytes(rng.random()).into_uuid();
        let username = format!(
            "{}{}{}",
            pick(rng, WORDS),
            pick(rng, ANIMALS),
            rng.random_range(100..999)
        );
        // Fixed "now" so the seeded output does not depend on the clock.
        let now_ms: i64 = 1_764_000_000_000;
        let year_ms: i64 = 365 * 24 * 3600 * 1000;
        let dob_age = rng.random_range(18..80);
        let dob = now_ms - dob_age * year_ms - rng.random_range(0..year_ms);
        let reg_age = rng.random_range(0..20);
        let registered = now_ms - reg_age * year_ms - rng.random_range(0..year_ms);
        let phone = format!(
            "0{}-{}-{}",
            rng.random_range(10..99),
            rng.random_range(100..999),
            rng.random_range(1000..9999)
        );
        let portrait = rng.random_range(0..100);
        json!({
            "gender": gender,
            "name": {"title": title, "first": first, "last": last},
            "location": {
                "street": {"number": rng.random_range(1..9999), "name": pick(rng, STREETS)},
                "city": city,
                "state": state,
                "country": country,
                "postcode": postcode,
                "coordinates": {
                    "latitude": format!("{:.4}", rng.random_range(-90.0..90.0)),
                    "longitude": format!("{:.4}", rng.random_range(-180.0..180.0)),
                },
                "timezone": {"offset": "+1:00", "description": "Brussels, Copenhagen, Madrid, Paris"},
            },
            "email": format!("{}.{}@example.com", first.to_lowercase(), last.to_lowercase()),
            "login": {
                "uuid": uuid.to_string(),
                "username": username,
                "password": pick(rng, WORDS),
                "salt": hex(rng, 4),
                "md5": hex(rng, 16),
                "sha1": hex(rng, 20),
                "sha256": hex(rng, 32),
            },
            "dob": {"date": iso(dob), "age": dob_age},
            "registered": {"date": iso(registered), "age": reg_age},
            "phone": phone,
            "cell": phone.replace('-', " "),
            "id": {"name": nat, "value": format!("{}", rng.random_range(1_000_000..9_999_999))},
            "picture": {
                "large": format!("https://randomuser.me/api/portraits/{portraits}/{portrait}.jpg"),
                "medium": format!("https://randomuser.me/api/portraits/med/{portraits}/{portrait}.jpg"),
                "thumbnail": format!("https://randomuser.me/api/portraits/thumb/{portraits}/{portrait}.jpg"),
            },
            "nat": nat,
        })
    }
}

fn pick<'a, R: Rng>(rng: &mut R, items: &'a [&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

fn letter<R: Rng>(rng: &mut R) -> char {
    char::from(b'A' + rng.random_range(0..26u8))
}

fn hex<R: Rng>(rng: &mut R, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

/// Milliseconds since the epoch as the API writes dates
/// (`2011-09-02T17:45:30.402Z`), without a date library: civil-from-days
/// (Howard Hinnant's algorithm).
fn iso(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    let rem = ms.rem_euclid(86_400_000);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3_600_000,
        rem / 60_000 % 60,
        rem / 1000 % 60,
        rem % 1000
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use millrace_api::RowMapper;

    use super::*;

    #[test]
    fn dates_are_iso() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(1_315_000_000_402), "2011-09-02T21:46:40.402Z");
    }

    #[test]
    fn users_fit_the_example_table_and_are_seeded() {
        let mapper = RowMapper::new(&crate::example_table("ks", "t").unwrap()).unwrap();
        let mut users = Users::new(7);
        for _ in 0..1000 {
            mapper.map(&users.next_user()).unwrap();
        }
        assert_eq!(Users::new(1).next_record(), Users::new(1).next_record());
    }
}
