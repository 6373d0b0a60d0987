//! Every CQL type the mapping supports, written by the runner into a real
//! Cassandra and read back: the driver encodings (dates from 2^31, varint
//! and decimal bytes, collections) are what Cassandra expects. A missing
//! field is unset (an earlier value stays, no tombstone); an explicit null
//! deletes. Bad values of each type are the unit tests' job
//! (`api/src/cql_value.rs`, `api/src/coerce.rs`).

mod runner;

use std::net::IpAddr;

use millrace_testsupport::Deadline;
use runner::Fixture;
use scylla::value::{
    CqlDate, CqlDecimal, CqlTime, CqlTimestamp, CqlTimeuuid, CqlValue, CqlVarint, Row,
};
use serde_json::{Value, json};

fn columns() -> Vec<(&'static str, &'static str, Value, CqlValue)> {
    let timeuuid: uuid::Uuid = "a4a70900-24e1-11df-8924-001ff3591711"
        .parse()
        .expect("uuid");
    vec![
        (
            "c_ascii",
            "ascii",
            json!("abc"),
            CqlValue::Ascii("abc".into()),
        ),
        (
            "c_text",
            "text",
            json!("Zoë Jørgensen"),
            CqlValue::Text("Zoë Jørgensen".into()),
        ),
        ("c_tinyint", "tinyint", json!(-5), CqlValue::TinyInt(-5)),
        (
            "c_smallint",
            "smallint",
            json!(300),
            CqlValue::SmallInt(300),
        ),
        ("c_int", "int", json!("42"), CqlValue::Int(42)),
        (
            "c_bigint",
            "bigint",
            json!(1_099_511_627_776_i64),
            CqlValue::BigInt(1 << 40),
        ),
        (
            "c_varint",
            "varint",
            json!("-129"),
            CqlValue::Varint(CqlVarint::from_signed_bytes_be_slice(&[0xff, 0x7f])),
        ),
        ("c_boolean", "boolean", json!(true), CqlValue::Boolean(true)),
        ("c_float", "float", json!(1.5), CqlValue::Float(1.5)),
        ("c_double", "double", json!(2.25), CqlValue::Double(2.25)),
        (
            "c_decimal",
            "decimal",
            json!("-12.345"),
            CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_slice_and_exponent(
                &[0xcf, 0xc7],
                3,
            )),
        ),
        (
            "c_timeuuid",
            "timeuuid",
            json!(timeuuid.to_string()),
            CqlValue::Timeuuid(CqlTimeuuid::from(timeuuid)),
        ),
        (
            "c_ts_iso",
            "timestamp",
            json!("2021-03-04T05:06:07.008Z"),
            CqlValue::Timestamp(CqlTimestamp(1_614_834_367_008)),
        ),
        (
            "c_ts_ms",
            "timestamp",
            json!(1_614_834_367_008_i64),
            CqlValue::Timestamp(CqlTimestamp(1_614_834_367_008)),
        ),
        (
            "c_ts_s",
            "timestamp",
            json!(1_700_000_000),
            CqlValue::Timestamp(CqlTimestamp(1_700_000_000_000)),
        ),
        (
            "c_date",
            "date",
            json!("1969-12-31"),
            CqlValue::Date(CqlDate((1 << 31) - 1)),
        ),
        (
            "c_time",
            "time",
            json!("01:00:00"),
            CqlValue::Time(CqlTime(3_600_000_000_000)),
        ),
        (
            "c_inet",
            "inet",
            json!("2001:db8::1"),
            CqlValue::Inet("2001:db8::1".parse::<IpAddr>().expect("ip")),
        ),
        (
            "c_blob",
            "blob",
            json!("AAEC"),
            CqlValue::Blob(vec![0, 1, 2]),
        ),
        (
            "c_list",
            "list<int>",
            json!([3, 1, 3]),
            CqlValue::List(vec![CqlValue::Int(3), CqlValue::Int(1), CqlValue::Int(3)]),
        ),
        (
            "c_set",
            "set<text>",
            json!(["b", "a"]),
            CqlValue::Set(vec![CqlValue::Text("a".into()), CqlValue::Text("b".into())]),
        ),
        (
            "c_map",
            "map<text,int>",
            json!({"x": 1, "y": 2}),
            CqlValue::Map(vec![
                (CqlValue::Text("x".into()), CqlValue::Int(1)),
                (CqlValue::Text("y".into()), CqlValue::Int(2)),
            ]),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_cql_type_round_trips_through_the_runner() -> anyhow::Result<()> {
    let cols = columns();
    let mut table_columns = vec![json!({"name": "id", "type": "uuid", "from": "/id"})];
    for (name, ty, _, _) in &cols {
        let mut column = json!({"name": name, "type": ty, "from": format!("/{name}")});
        // Numbers into timestamps say what they count.
        match *name {
            "c_ts_ms" => column["unit"] = json!("milliseconds"),
            "c_ts_s" => column["unit"] = json!("seconds"),
            _ => {}
        }
        table_columns.push(column);
    }
    table_columns
        .push(json!({"name": "c_ts_no_unit", "type": "timestamp", "from": "/c_ts_no_unit"}));
    table_columns.push(json!({"name": "c_missing", "type": "text", "from": "/absent"}));
    table_columns.push(json!({"name": "c_null", "type": "text", "from": "/c_null"}));
    table_columns.push(json!({"name": "c_whole", "type": "text", "wholeRecord": true}));
    let table = json!({"name": "types", "columns": table_columns, "partitionKey": ["id"]});
    let fx = Fixture::new("types", 1, table).await?;

    // An earlier row: the runner's write must leave c_missing alone and
    // null c_null.
    let id = uuid::Uuid::new_v4();
    fx.session
        .query_unpaged(
            format!(
                "INSERT INTO {} (id, c_missing, c_null) VALUES (?, 'earlier', 'earlier') USING TIMESTAMP 1",
                fx.qualified_table()
            ),
            (id,),
        )
        .await?;

    let mut record = json!({"id": id.to_string(), "c_null": null});
    for (name, _, value, _) in &cols {
        record[*name] = value.clone();
    }
    let pipeline = fx.pipeline(json!([{"name": "events", "httpPush": {}}]));
    let mut ingest = fx.start("ingest", &pipeline, "ingest")?;
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(60)).await?;
    let response = ingest
        .push(&reqwest::Client::new(), "/v1/records")
        .body(record.to_string())
        .send()
        .await?;
    assert_eq!(response.status(), 202, "{}", response.text().await?);
    sink.metric_reaching("millrace_rows_written_total", 1.0, Deadline::secs(60))
        .await?;

    let names: Vec<&str> = cols.iter().map(|c| c.0).collect();
    let select = format!(
        "SELECT {}, c_missing, c_null, c_whole FROM {} WHERE id = ?",
        names.join(", "),
        fx.qualified_table()
    );
    let result = fx
        .session
        .query_unpaged(select, (id,))
        .await?
        .into_rows_result()?;
    let row: Row = result.single_row()?;
    for (i, (name, ty, _, want)) in cols.iter().enumerate() {
        assert_eq!(row.columns[i].as_ref(), Some(want), "{name} ({ty})");
    }
    let n = cols.len();
    assert_eq!(
        row.columns[n],
        Some(CqlValue::Text("earlier".into())),
        "a missing field is unset: the earlier value stays"
    );
    assert_eq!(row.columns[n + 1], None, "an explicit null deletes");
    let Some(CqlValue::Text(whole)) = &row.columns[n + 2] else {
        panic!("the whole record is text: {:?}", row.columns[n + 2]);
    };
    assert_eq!(serde_json::from_str::<Value>(whole)?, record);

    // Epoch seconds into a timestamp column that does not say its unit are
    // refused at the door, not stored as a date in January 1970.
    let response = ingest
        .push(&reqwest::Client::new(), "/v1/records")
        .body(
            json!({"id": uuid::Uuid::new_v4().to_string(), "c_ts_no_unit": 1_700_000_000})
                .to_string(),
        )
        .send()
        .await?;
    assert_eq!(response.status(), 422);
    let body = response.text().await?;
    assert!(
        body.contains("set its unit (as seconds it is 2023-11-14T22:13:20Z"),
        "{body}"
    );
    drop((ingest, sink));
    fx.cleanup().await
}

/// A JSON number with more digits than an f64 holds reaches decimal and
/// varint columns digit for digit, through the push endpoint, Kafka and
/// the sink.
#[tokio::test(flavor = "multi_thread")]
async fn a_thirty_digit_decimal_is_stored_exactly() -> anyhow::Result<()> {
    let table = json!({
        "name": "exact",
        "columns": [
            {"name": "id", "type": "uuid", "from": "/id"},
            {"name": "amount", "type": "decimal", "from": "/amount"},
            {"name": "big", "type": "varint", "from": "/big"},
        ],
        "partitionKey": ["id"],
    });
    let fx = Fixture::new("exact", 1, table).await?;
    let pipeline = fx.pipeline(json!([{"name": "events", "httpPush": {}}]));
    let mut ingest = fx.start("ingest", &pipeline, "ingest")?;
    let mut sink = fx.start("sink", &pipeline, "sink")?;
    ingest.wait_ready(Deadline::secs(60)).await?;
    sink.wait_ready(Deadline::secs(60)).await?;
    let id = uuid::Uuid::new_v4();
    // Written by hand: serde_json's own numbers would round these.
    let amount = "123456789012345678901234567890.123456789";
    let big = "-98765432109876543210987654321";
    let body = format!(r#"{{"id": "{id}", "amount": {amount}, "big": {big}}}"#);
    let response = ingest
        .push(&reqwest::Client::new(), "/v1/records")
        .body(body)
        .send()
        .await?;
    assert_eq!(response.status(), 202, "{}", response.text().await?);
    let select = format!(
        "SELECT CAST(amount AS text), CAST(big AS text) FROM {} WHERE id = ?",
        fx.qualified_table()
    );
    let (stored_amount, stored_big) =
        millrace_testsupport::poll_until("the row to be written", Deadline::secs(60), || async {
            let rows = fx
                .session
                .query_unpaged(select.as_str(), (id,))
                .await?
                .into_rows_result()?;
            Ok(rows.maybe_first_row::<(String, String)>()?)
        })
        .await?;
    assert_eq!(stored_amount, amount);
    assert_eq!(stored_big, big);
    drop((ingest, sink));
    fx.cleanup().await
}
