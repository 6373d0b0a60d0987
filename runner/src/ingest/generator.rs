//! The generator source: users shaped like randomuser.me's API results, at
//! a set rate, for the offline demo and benchmarks. The benchmark harness
//! makes its records here too ([`nth_user_shaped`]), so there is one
//! generator to keep like the API.
//!
//! A generated record is retried until Kafka acknowledges it. With a
//! `limit` the records are the first `limit` of a seeded sequence, so a
//! restarted process (or a second replica) produces the same records again
//! and the table still ends with exactly `limit` rows: replays are
//! idempotent, where fresh random records would add rows on every restart.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use millrace_api::GeneratorSource;
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::watch;
use tracing::{info, warn};

use super::Ingest;

/// Records produced but not yet acknowledged, at most. Each holds its
/// payload twice (here, for a retry, and in librdkafka's queue), so this
/// bounds the generator's memory: 5,000 is ~11 MB, and still several
/// times what Kafka acknowledges per linger interval at full rate.
const MAX_UNACKNOWLEDGED: usize = 5_000;

pub async fn run(
    ingest: Arc<Ingest>,
    name: String,
    spec: GeneratorSource,
    mut shutdown: watch::Receiver<bool>,
) {
    let rate = f64::from(spec.records_per_second.max(1));
    let limit = spec.limit.map(|l| l.max(0) as u64);
    let seed = spec.seed.map(|s| s as u64).unwrap_or_else(|| {
        let p = &ingest.pipeline;
        default_seed(&p.namespace, &p.name, &name)
    });
    if limit.is_some() {
        info!(source = %name, rate, ?limit, seed, "generating a seeded sequence");
    } else {
        info!(source = %name, rate, "generating");
    }
    let start = Instant::now();
    let mut produced: u64 = 0;
    let mut acknowledged: u64 = 0;
    let mut unacked = FuturesUnordered::new();
    loop {
        if *shutdown.borrow() {
            break;
        }
        let mut due = (start.elapsed().as_secs_f64() * rate) as u64 + 1;
        if let Some(limit) = limit {
            due = due.min(limit);
        }
        while produced < due && unacked.len() < MAX_UNACKNOWLEDGED {
            let record = match limit {
                Some(_) => nth_user(seed, produced),
                None => user(&mut rand::rng()),
            };
            let (key, payload) = match ingest.key_and_payload(&record) {
                Ok(kp) => kp,
                Err(reason) => {
                    // The pipeline's columns do not fit generated users.
                    ingest.dead_letter(&name, &record, &reason).await;
                    produced += 1;
                    continue;
                }
            };
            let ingest = ingest.clone();
            unacked.push(async move {
                let mut attempt = 0;
                loop {
                    match ingest
                        .producer
                        .send_waiting(&key, &payload, Duration::from_secs(5))
                        .await
                    {
                        Ok(()) => return,
                        Err(e) => {
                            warn!(error = %e, attempt, "generated record not acknowledged; retrying");
                            tokio::time::sleep(crate::backoff::delay(
                                attempt,
                                Duration::from_millis(200),
                                Duration::from_secs(5),
                            ))
                            .await;
                            attempt += 1;
                        }
                    }
                }
            });
            produced += 1;
        }
        let done = limit.is_some_and(|l| produced >= l);
        if done && unacked.is_empty() {
            break;
        }
        tokio::select! {
            Some(()) = unacked.next(), if !unacked.is_empty() => {
                acknowledged += 1;
                ingest.metrics.ingested(&name, 1);
                // Take every other finished send without waiting.
                while let Some(Some(())) = futures::FutureExt::now_or_never(unacked.next()) {
                    acknowledged += 1;
                    ingest.metrics.ingested(&name, 1);
                }
            }
            _ = tokio::time::sleep(Duration::from_millis(5)), if !done => {}
            _ = shutdown.changed() => {}
        }
    }
    // Shutting down or at the limit: wait for what is still unacknowledged.
    let waiting = unacked.len();
    if waiting > 0 {
        info!(source = %name, waiting, "waiting for kafka to acknowledge generated records");
    }
    let drain = async {
        while unacked.next().await.is_some() {
            acknowledged += 1;
            ingest.metrics.ingested(&name, 1);
        }
    };
    if tokio::time::timeout(Duration::from_secs(20), drain)
        .await
        .is_err()
    {
        warn!(source = %name, "stopped before kafka acknowledged every generated record");
    }
    info!(source = %name, produced, acknowledged, "generator finished");
}

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
    "Smith",
    "Öztürk",
    "Dubois",
    "Korhonen",
    "Rossi",
    "Novák",
    "Silva",
    "Nielsen",
    "Fernández",
    "Lefèvre",
    "Jónsson",
    "Brown",
    "Kowalski",
    "Yılmaz",
    "Hansen",
    "Moreau",
    "Schäfer",
];
const STREETS: &[&str] = &[
    "Mill Lane",
    "Rue de la Paix",
    "Hauptstraße",
    "Calle Mayor",
    "Kirkegade",
    "Station Road",
    "Via Roma",
    "Mannerheimintie",
    "Atatürk Cd",
    "Church Street",
];
/// Country, state, city, nationality, and whether its postcodes are text.
const PLACES: &[(&str, &str, &str, &str, bool)] = &[
    ("United Kingdom", "Cornwall", "Truro", "GB", true),
    ("Denmark", "Syddanmark", "Odense", "DK", false),
    ("Germany", "Bayern", "München", "DE", false),
    ("Spain", "Aragón", "Zaragoza", "ES", false),
    ("France", "Gironde", "Bordeaux", "FR", false),
    ("Canada", "Québec", "Montréal", "CA", true),
    ("Finland", "Uusimaa", "Espoo", "FI", false),
    ("Turkey", "İzmir", "Bergama", "TR", false),
    ("Ireland", "Galway", "Tuam", "IE", true),
    ("United States", "Oregon", "Salem", "US", false),
];
const WORDS: &[&str] = &[
    "happy", "silver", "brave", "lazy", "quiet", "purple", "tiny", "golden", "wild", "calm",
];
const ANIMALS: &[&str] = &[
    "otter", "fox", "koala", "panda", "swan", "lion", "tiger", "frog", "wolf", "bear",
];

fn pick<'a, R: Rng>(rng: &mut R, items: &'a [&'a str]) -> &'a str {
    items.choose(rng).copied().unwrap_or_default()
}

fn iso(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| format!("{t:.3}"))
        .unwrap_or_default()
}

/// A stable seed for a source (FNV-1a of its identity): the same pipeline
/// gets the same sequence in every process and every release.
fn default_seed(namespace: &str, pipeline: &str, source: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in [namespace, pipeline, source].join("/").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// Dates in a seeded sequence are relative to this instant (2026-01-01T00:00Z)
/// rather than the clock, so a replayed record is the same record.
const SEQUENCE_EPOCH_MS: i64 = 1_767_225_600_000;

/// Which of the API's fields a generated user has besides those the
/// example pipeline maps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Shape {
    /// The login's `salt`, `md5`, `sha1` and `sha256`, as the API has them.
    /// With them a record is about 1 KiB, as the real API's are (the
    /// benchmarks' records); the generator source leaves them out.
    pub login_hashes: bool,
}

/// The `index`-th user of the sequence `seed`: the same in any process.
pub fn nth_user(seed: u64, index: u64) -> Value {
    nth_user_shaped(seed, index, Shape::default())
}

/// [`nth_user`] with the fields of `shape`. Users of one seed and index
/// differ only in those fields.
pub fn nth_user_shaped(seed: u64, index: u64, shape: Shape) -> Value {
    let mut rng = StdRng::seed_from_u64(seed ^ index.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    user_at(&mut rng, SEQUENCE_EPOCH_MS, shape)
}

/// One user, in the shape of a randomuser.me result.
pub fn user<R: Rng>(rng: &mut R) -> Value {
    user_at(
        rng,
        jiff::Timestamp::now().as_millisecond(),
        Shape::default(),
    )
}

/// One user whose dates of birth and registration lie before `now_ms`, every
/// field drawn from `rng`; the fields of `shape` are drawn last, so the
/// others do not depend on it.
fn user_at<R: Rng>(rng: &mut R, now_ms: i64, shape: Shape) -> Value {
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
    let postcode = if text_postcode {
        json!(format!(
            "{}{}{} {}{}{}",
            (b'A' + rng.random_range(0..26)) as char,
            (b'A' + rng.random_range(0..26)) as char,
            rng.random_range(1..10),
            rng.random_range(1..10),
            (b'A' + rng.random_range(0..26)) as char,
            (b'A' + rng.random_range(0..26)) as char,
        ))
    } else {
        json!(rng.random_range(10_000..99_999))
    };
    let username = format!(
        "{}{}{}",
        pick(rng, WORDS),
        pick(rng, ANIMALS),
        rng.random_range(100..999)
    );
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
    let mut user = json!({
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
            "uuid": uuid::Builder::from_random_bytes(rng.random()).into_uuid().to_string(),
            "username": username,
            "password": pick(rng, WORDS),
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
    });
    if shape.login_hashes {
        let login = &mut user["login"];
        login["salt"] = json!(hex(rng, 4));
        login["md5"] = json!(hex(rng, 16));
        login["sha1"] = json!(hex(rng, 20));
        login["sha256"] = json!(hex(rng, 32));
    }
    user
}

fn hex<R: Rng>(rng: &mut R, bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use millrace_api::{RowMapper, StreamPipelineSpec};

    use super::*;

    /// `path` in the repository, found from the package directory cargo
    /// gives at run time: a build shared by two checkouts can hold the
    /// other's compiled-in path.
    fn repo_file(path: &str) -> std::path::PathBuf {
        let package = std::env::var("CARGO_MANIFEST_DIR")
            .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_owned());
        std::path::Path::new(&package).join("..").join(path)
    }

    #[test]
    fn generated_users_fit_the_example_pipeline() {
        let text = std::fs::read_to_string(repo_file("examples/randomuser.yaml")).unwrap();
        let doc: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        let spec: StreamPipelineSpec = serde_yaml::from_value(doc["spec"].clone()).unwrap();
        let mapper = RowMapper::new(&spec.cassandra.tables()[0]).unwrap();
        let mut rng = rand::rng();
        for _ in 0..1000 {
            let user = user(&mut rng);
            mapper.map(&user).unwrap();
        }
    }

    #[test]
    fn a_seeded_sequence_is_the_same_in_every_process() {
        let first: Vec<Value> = (0..50).map(|i| nth_user(7, i)).collect();
        let again: Vec<Value> = (0..50).map(|i| nth_user(7, i)).collect();
        assert_eq!(first, again);
        let ids: std::collections::HashSet<&str> = first
            .iter()
            .map(|u| u["login"]["uuid"].as_str().unwrap())
            .collect();
        assert_eq!(ids.len(), 50, "distinct records within a sequence");
        assert_ne!(
            nth_user(8, 0),
            nth_user(7, 0),
            "another seed, another sequence"
        );
        let mut hashed = nth_user_shaped(7, 3, Shape { login_hashes: true });
        assert_eq!(hashed["login"]["sha256"].as_str().map(str::len), Some(64));
        for field in ["salt", "md5", "sha1", "sha256"] {
            hashed["login"]
                .as_object_mut()
                .unwrap()
                .remove(field)
                .unwrap();
        }
        assert_eq!(hashed, nth_user(7, 3), "the hashes are the only difference");
        // Pinned: a release that changed it would give an existing
        // pipeline a different sequence, and its table rows it never had.
        // (FNV-1a 64 of "ns/users/gen", as any FNV implementation gives it.)
        assert_eq!(default_seed("ns", "users", "gen"), 0x12a7_8c83_0431_8be8);
        assert_ne!(
            default_seed("ns", "users", "gen"),
            default_seed("ns", "user", "sgen")
        );
    }

    #[test]
    fn generated_users_look_like_the_api_sample() {
        let sample: Value = serde_json::from_str(
            &std::fs::read_to_string(repo_file("api/tests/fixtures/randomuser-sample.json"))
                .unwrap(),
        )
        .unwrap();
        let real = &sample["results"][0];
        let ours = user(&mut rand::rng());
        for pointer in [
            "/gender",
            "/name/first",
            "/location/street/number",
            "/location/city",
            "/location/postcode",
            "/email",
            "/login/uuid",
            "/login/username",
            "/registered/date",
            "/phone",
            "/picture/medium",
        ] {
            assert!(real.pointer(pointer).is_some(), "sample lacks {pointer}");
            assert!(ours.pointer(pointer).is_some(), "generated lacks {pointer}");
        }
    }
}
