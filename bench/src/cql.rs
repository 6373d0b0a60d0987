//! CQL helpers: a session like the runner's (token-aware, local DC), the
//! example table's DDL, row counting, and binding mapped rows.

use anyhow::Context as _;
use futures::TryStreamExt as _;
use millrace_api::{Cell, CellValue, KeyspaceSpec, Replication, TableSpec, cql};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::unprepared::Statement;
use scylla::value::{
    CqlDate, CqlDecimal, CqlTime, CqlTimestamp, CqlTimeuuid, CqlValue, CqlVarint, MaybeUnset,
};

use crate::World;

pub async fn session(world: &World) -> anyhow::Result<Session> {
    let policy = DefaultPolicy::builder()
        .prefer_datacenter(world.cassandra_local_dc.clone())
        .token_aware(true)
        .build();
    let profile = ExecutionProfile::builder()
        .load_balancing_policy(policy)
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&world.cassandra_contact_points)
        .default_execution_profile_handle(profile.into_handle());
    if let (Some(u), Some(p)) = (&world.cassandra_username, &world.cassandra_password) {
        builder = builder.user(u, p);
    }
    builder.build().await.context("cassandra session")
}

/// Creates the keyspace (SimpleStrategy, RF 1: one node) and the table with
/// the statements the operator uses.
pub async fn create_table(
    session: &Session,
    keyspace: &str,
    table: &TableSpec,
) -> anyhow::Result<()> {
    let ks = KeyspaceSpec {
        name: keyspace.to_owned(),
        replication: Replication::simple(1),
    };
    session.query_unpaged(cql::create_keyspace(&ks), ()).await?;
    session
        .query_unpaged(cql::create_table(keyspace, table)?, ())
        .await?;
    session.await_schema_agreement().await?;
    Ok(())
}

/// Counts a table's rows by paging through its partition keys (a
/// `SELECT COUNT(*)` of a few hundred thousand rows times out).
pub async fn count_rows(session: &Session, keyspace: &str, table: &str) -> anyhow::Result<u64> {
    let mut statement = Statement::new(format!(
        "SELECT id FROM {}",
        cql::qualified_table(keyspace, table)
    ));
    statement.set_page_size(5000);
    let mut rows = session
        .query_iter(statement, ())
        .await?
        .rows_stream::<(uuid::Uuid,)>()?;
    let mut n = 0u64;
    while rows.try_next().await?.is_some() {
        n += 1;
    }
    Ok(n)
}

/// One bound value: unset (not written), null, or a value.
pub type Bound = MaybeUnset<Option<CqlValue>>;

/// The insert's values: the row's cells in column order, then the write
/// timestamp (microseconds) for `USING TIMESTAMP ?` — the same statement and
/// values the runner's sink binds (runner/src/sink/row.rs).
pub fn bind(row: Vec<Cell>, write_timestamp_micros: i64) -> Vec<Bound> {
    let mut values: Vec<Bound> = row
        .into_iter()
        .map(|c| match c {
            Cell::Unset => MaybeUnset::Unset,
            Cell::Null => MaybeUnset::Set(None),
            Cell::Value(v) => MaybeUnset::Set(Some(value(v))),
        })
        .collect();
    values.push(MaybeUnset::Set(Some(CqlValue::BigInt(
        write_timestamp_micros,
    ))));
    values
}

/// The runner's write timestamp of a Kafka message: its timestamp in
/// microseconds with the offset in the sub-millisecond digits.
pub fn write_timestamp(kafka_timestamp_ms: Option<i64>, offset: i64) -> i64 {
    kafka_timestamp_ms
        .unwrap_or(0)
        .saturating_mul(1000)
        .saturating_add(offset.rem_euclid(1000))
}

/// A mapped value as the driver's CQL value (a copy of the runner's
/// conversion: the bench must not depend on the runner it measures).
pub fn value(v: CellValue) -> CqlValue {
    match v {
        CellValue::Ascii(s) => CqlValue::Ascii(s),
        CellValue::Text(s) => CqlValue::Text(s),
        CellValue::TinyInt(n) => CqlValue::TinyInt(n),
        CellValue::SmallInt(n) => CqlValue::SmallInt(n),
        CellValue::Int(n) => CqlValue::Int(n),
        CellValue::BigInt(n) => CqlValue::BigInt(n),
        CellValue::Varint(n) => CqlValue::Varint(CqlVarint::from_signed_bytes_be_slice(
            n.to_signed_bytes_be(),
        )),
        CellValue::Boolean(b) => CqlValue::Boolean(b),
        CellValue::Float(f) => CqlValue::Float(f),
        CellValue::Double(f) => CqlValue::Double(f),
        CellValue::Decimal(d) => {
            CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_slice_and_exponent(
                d.unscaled.to_signed_bytes_be(),
                d.scale,
            ))
        }
        CellValue::Uuid(u) => CqlValue::Uuid(u),
        CellValue::TimeUuid(u) => CqlValue::Timeuuid(CqlTimeuuid::from(u)),
        CellValue::Timestamp(ms) => CqlValue::Timestamp(CqlTimestamp(ms)),
        // CQL counts days from 2^31 days before the epoch.
        CellValue::Date(days) => CqlValue::Date(CqlDate((i64::from(days) + (1i64 << 31)) as u32)),
        CellValue::Time(nanos) => CqlValue::Time(CqlTime(nanos)),
        CellValue::Inet(ip) => CqlValue::Inet(ip),
        CellValue::Blob(b) => CqlValue::Blob(b),
        CellValue::List(items) => CqlValue::List(items.into_iter().map(value).collect()),
        CellValue::Set(items) => CqlValue::Set(items.into_iter().map(value).collect()),
        CellValue::Map(entries) => CqlValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| (value(k), value(v)))
                .collect(),
        ),
    }
}
