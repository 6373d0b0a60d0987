//! The recorded API responses under `tests/fixtures`.

use serde_json::Value;

/// The users of the recorded randomuser.me page `n`
/// (`tests/fixtures/randomuser/page-N.json`, its `results`). The files are
/// part of the repository, so a missing or broken one is a broken checkout:
/// it panics.
pub fn randomuser_page(n: u32) -> Vec<Value> {
    let path = crate::repo_root().join(format!("tests/fixtures/randomuser/page-{n}.json"));
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture page"))
        .expect("fixture JSON");
    doc["results"].as_array().expect("results").clone()
}
