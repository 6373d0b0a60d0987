//! The seed's pipeline, `examples/randomuser.yaml`, is valid and maps the
//! API's records to the rows the seed's table held.
#![allow(clippy::unwrap_used)]

use millrace_api::{
    Cell, CellValue, RowMapper, Schedule, SourceKind, StreamPipeline, cql, validate_pipeline,
};
use serde_json::Value;
use uuid::Uuid;

const EXAMPLE: &str = include_str!("../../examples/randomuser.yaml");
const SAMPLE: &str = include_str!("fixtures/randomuser-sample.json");

fn pipeline(yaml: &str) -> StreamPipeline {
    serde_yaml::from_str(yaml).unwrap()
}

/// The example with its commented-out randomuser.me pull source enabled.
fn with_pull_source() -> String {
    let mut out = String::new();
    let mut in_pull = false;
    for line in EXAMPLE.lines() {
        in_pull |= line.contains("# - name: randomuser");
        match line.strip_prefix("    # ") {
            // The source's own lines; the next prose comment ends it.
            Some(rest)
                if in_pull
                    && (rest.starts_with("- name: randomuser") || rest.starts_with("  ")) =>
            {
                out.push_str(&format!("    {rest}\n"));
            }
            _ => {
                in_pull &= line.contains("# - name: randomuser");
                out.push_str(&format!("{line}\n"));
            }
        }
    }
    out
}

#[test]
fn the_example_is_a_valid_pipeline() {
    let sp = pipeline(EXAMPLE);
    assert_eq!(sp.metadata.name.as_deref(), Some("randomuser"));
    assert_eq!(sp.metadata.namespace, None);
    validate_pipeline("randomuser", &sp.spec).unwrap();
    let spec = &sp.spec;
    assert_eq!(spec.kafka.topic.name, "users_created");
    assert_eq!(spec.kafka.topic.partitions, 3);
    assert_eq!(spec.dead_letter_topic(), "users_created.dlq");
    assert_eq!(spec.cassandra.keyspace.name, "spark_streams");
    assert_eq!(spec.cassandra.tables()[0].name, "created_users");
    assert!(
        matches!(spec.source("synthetic").and_then(|s| s.kind()), Some(SourceKind::Generator(g)) if g.records_per_second == 50)
    );
    assert!(
        matches!(spec.source("events").and_then(|s| s.kind()), Some(SourceKind::HttpPush(p)) if p.path == "/v1/records")
    );
    assert!(
        spec.source("randomuser").is_none(),
        "the internet source is commented out"
    );
}

#[test]
fn the_commented_out_pull_source_is_valid_when_enabled() {
    let sp = pipeline(&with_pull_source());
    validate_pipeline("randomuser", &sp.spec).unwrap();
    let Some(SourceKind::HttpPull(pull)) = sp.spec.source("randomuser").and_then(|s| s.kind())
    else {
        panic!("no randomuser pull source");
    };
    assert_eq!(pull.url, "https://randomuser.me/api/?results=10");
    assert_eq!(pull.records_path, "/results");
    let every_minute = Schedule::parse(&pull.schedule).unwrap();
    let next = every_minute
        .next_after("2024-05-31T10:00:30Z".parse().unwrap())
        .unwrap();
    assert_eq!(next.to_string(), "2024-05-31T10:01:00Z");
}

#[test]
fn the_example_table_is_created_as_the_seed_had_it() {
    let sp = pipeline(EXAMPLE);
    let ddl = cql::create_table(
        &sp.spec.cassandra.keyspace.name,
        &sp.spec.cassandra.tables()[0],
    )
    .unwrap();
    assert_eq!(
        ddl,
        "CREATE TABLE IF NOT EXISTS \"spark_streams\".\"created_users\" (\"id\" uuid, \"first_name\" text, \
         \"last_name\" text, \"gender\" text, \"address\" text, \"post_code\" text, \"email\" text, \
         \"username\" text, \"registered_date\" timestamp, \"phone\" text, \"picture\" text, \
         PRIMARY KEY ((\"id\")))"
    );
}

fn text(s: &str) -> Cell {
    Cell::Value(CellValue::Text(s.to_owned()))
}

#[test]
fn every_sample_record_maps_to_the_expected_row() {
    let sp = pipeline(EXAMPLE);
    let mapper = RowMapper::new(&sp.spec.cassandra.tables()[0]).unwrap();
    let sample: Value = serde_json::from_str(SAMPLE).unwrap();
    let records = sample["results"].as_array().unwrap();
    assert_eq!(records.len(), 3);

    let uuid = |s: &str| Cell::Value(CellValue::Uuid(Uuid::parse_str(s).unwrap()));
    let expected = [
        vec![
            uuid("3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"),
            text("Maja"),
            text("Lindqvist"),
            text("female"),
            text("4127 Storgatan, Vasteras, Vastmanland, Sweden"),
            // A number in the API, text in the table.
            text("72215"),
            text("maja.lindqvist@example.com"),
            text("purplefox512"),
            Cell::Value(CellValue::Timestamp(1_314_985_530_402)),
            text("021-482 17 93"),
            text("https://randomuser.me/api/portraits/med/women/44.jpg"),
        ],
        vec![
            uuid("b7e2a0c4-1f36-4d8b-a5e9-2c7f0d3b9e64"),
            text("Tomás"),
            text("Ibáñez"),
            text("male"),
            text("88 Calle de Alcalá, Zaragoza, Aragón, Spain"),
            text("50012"),
            text("tomas.ibanez@example.com"),
            text("brownbear207"),
            Cell::Value(CellValue::Timestamp(1_074_499_964_056)),
            text("976-318-442"),
            text("https://randomuser.me/api/portraits/med/men/12.jpg"),
        ],
        vec![
            uuid("e94c1d07-5b2a-4f63-8c1e-7a0d9b4f2c38"),
            text("Aiyana"),
            text("Thompson"),
            text("female"),
            text("9055 Dufferin St, Sherbrooke, Québec, Canada"),
            text("J4X 2K7"),
            text("aiyana.thompson@example.com"),
            text("silverswan88"),
            Cell::Value(CellValue::Timestamp(1_482_551_717_612)),
            text("Q28 204-6631"),
            text("https://randomuser.me/api/portraits/med/women/73.jpg"),
        ],
    ];
    for (record, expected) in records.iter().zip(expected) {
        let row = mapper.map(record).unwrap();
        assert_eq!(row, expected);
        let Cell::Value(id) = &expected[0] else {
            unreachable!()
        };
        assert_eq!(mapper.partition_key(record).unwrap(), id.to_string());
        assert_eq!(mapper.partition_key_of_row(&row), Some(id.to_string()));
    }
}

#[test]
fn a_sample_record_without_a_uuid_is_refused_at_ingest() {
    let sp = pipeline(EXAMPLE);
    let mapper = RowMapper::new(&sp.spec.cassandra.tables()[0]).unwrap();
    let sample: Value = serde_json::from_str(SAMPLE).unwrap();
    let mut record = sample["results"][0].clone();
    record["login"]["uuid"] = Value::from("not-a-uuid");
    record["registered"]["date"] = Value::from("last tuesday");
    let err = mapper.validate(&record).unwrap_err();
    let columns: Vec<&str> = err.problems.iter().map(|p| p.column.as_str()).collect();
    assert_eq!(columns, ["id", "registered_date"]);
    assert!(err.to_string().contains("from /login/uuid"), "{err}");
}

#[test]
fn the_avro_example_is_a_valid_pipeline_with_its_registry() {
    let sp = pipeline(include_str!("../../examples/avro.yaml"));
    validate_pipeline("orders-avro", &sp.spec).unwrap();
    let registry = sp.spec.avro_registry().unwrap();
    assert_eq!(
        registry.url, "http://schema-registry.millrace-system.svc:8080/apis/ccompat/v7",
        "the dev back-ends' registry"
    );
    assert!(registry.credentials_secret_ref.is_none());
    assert!(sp.spec.sources.is_empty());
    RowMapper::new(&sp.spec.cassandra.tables()[0]).unwrap();
}

#[test]
fn the_two_table_example_writes_each_record_to_both_query_tables() {
    let sp = pipeline(include_str!("../../examples/randomuser-by-email.yaml"));
    validate_pipeline("users", &sp.spec).unwrap();
    let tables = sp.spec.cassandra.tables();
    let names: Vec<&str> = tables.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["users_by_id", "users_by_email"]);
    assert_eq!(
        sp.spec
            .cassandra
            .key_table()
            .map(|t| t.partition_key.clone()),
        Some(vec!["id".to_owned()]),
        "the first table keys the records"
    );
    let sample: Value = serde_json::from_str(SAMPLE).unwrap();
    let record = &sample["results"][0];
    let by_id = RowMapper::new(&tables[0]).unwrap();
    let by_email = RowMapper::new(&tables[1]).unwrap();
    let uuid = Uuid::parse_str(record["login"]["uuid"].as_str().unwrap()).unwrap();
    assert_eq!(by_id.partition_key(record).unwrap(), uuid.to_string());
    assert_eq!(
        by_email.partition_key(record).unwrap(),
        record["email"].as_str().unwrap()
    );
    // One parse serves both tables: each maps it to the row its own
    // parse gives.
    let raw = serde_json::to_vec(record).unwrap();
    let shared = millrace_api::RecordParser::new(&[by_id.clone(), by_email.clone()])
        .parse(&raw)
        .unwrap();
    for mapper in [&by_id, &by_email] {
        assert_eq!(
            mapper.map(&shared).unwrap(),
            mapper.map(&mapper.parse(&raw).unwrap()).unwrap()
        );
    }
}
