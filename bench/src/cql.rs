//! CQL helpers: a session like the runner's (token-aware, local DC), the
//! example table's DDL and row counting. Mapped rows are bound with
//! `millrace_api::cql_value`, as the runner's sink binds them.

use anyhow::Context as _;
use futures::TryStreamExt as _;
use millrace_api::{KeyspaceSpec, Replication, TableSpec, cql};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::statement::unprepared::Statement;

use crate::World;

pub async fn session(world: &World) -> anyhow::Result<Session> {
    session_builder(world)
        .build()
        .await
        .context("cassandra session")
}

/// [`session`]'s settings, to change some before connecting.
pub fn session_builder(world: &World) -> SessionBuilder {
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
    builder
}

/// Creates the keyspace (SimpleStrategy, RF 1: one node) with the statement
/// the operator uses, if it is not there.
pub async fn create_keyspace(session: &Session, keyspace: &str) -> anyhow::Result<()> {
    let ks = KeyspaceSpec {
        name: keyspace.to_owned(),
        replication: Replication::simple(1),
    };
    session.query_unpaged(cql::create_keyspace(&ks), ()).await?;
    Ok(())
}

/// Creates the keyspace ([`create_keyspace`]) and the table with the
/// statements the operator uses.
pub async fn create_table(
    session: &Session,
    keyspace: &str,
    table: &TableSpec,
) -> anyhow::Result<()> {
    create_keyspace(session, keyspace).await?;
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
