//! The pipeline's keyspace and tables, through CQL DDL. Columns are only
//! ever added; a changed type or key is reported, never attempted, for
//! that table only. A table is changed or dropped only by the pipeline its
//! comment names as owner.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use millrace_api::auth_failure::{cassandra_auth_failure, cassandra_tls_failure};
use millrace_api::{
    CassandraSpec, ColumnKind, ColumnStatus, ObservedColumn, TableSpec, TableStatus, cql,
};
use scylla::client::caching_session::CachingSession;

use super::PartOutcome;
use crate::clients::cassandra::unavailable;
use crate::context::Context;
use crate::credentials::CassandraAuth;
use crate::desired::Pipeline;
use crate::desired::ownership::{self, Owner};
use crate::desired::table::{ObservedTable, plan_table};
use crate::error::{Error, Result};
use crate::events::Notice;
use crate::metrics::Target;
use crate::status::reasons;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// An unreachable-looking error that is in fact Cassandra refusing the
/// username or password, or a failed TLS handshake: a person must fix the
/// Secret or the spec, so it gets its own reason and is not retried
/// quickly.
fn refused_credentials(e: Error, p: &Pipeline<'_>) -> Error {
    if let Error::Cassandra {
        contact_points,
        message,
    } = &e
        && let Some(seen) = cassandra_tls_failure(message)
    {
        return Error::CassandraTls {
            contact_points: contact_points.clone(),
            message: seen,
        };
    }
    match e {
        Error::Cassandra {
            contact_points,
            message,
        } if cassandra_auth_failure(&message) => Error::CassandraAuth {
            contact_points,
            from: p
                .sp
                .spec
                .cassandra
                .credentials_secret_ref
                .as_ref()
                .map(|r| format!(" from Secret {}/{}", p.namespace, r.name))
                .unwrap_or_default(),
            message,
        },
        other => other,
    }
}

/// The schema reads of every reconcile, prepared once per session
/// ([`CachingSession`]): unprepared with bound values, each would be a
/// PREPARE and then an EXECUTE, two requests where one does
/// (`bench/src/bin/cql-schema-reads.rs` measures what Cassandra spends).
pub const SELECT_KEYSPACE_REPLICATION: &str =
    "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?";
pub const SELECT_TABLE_COLUMNS: &str = "SELECT column_name, type, kind, position, clustering_order FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?";
pub const SELECT_TABLE_COMMENT: &str =
    "SELECT comment FROM system_schema.tables WHERE keyspace_name = ? AND table_name = ?";

async fn observe(
    session: &CachingSession,
    spec: &CassandraSpec,
    table: &str,
) -> Result<ObservedTable> {
    let ks = spec.keyspace.name.as_str();
    let rows = tokio::time::timeout(
        REQUEST_TIMEOUT,
        session.execute_unpaged(SELECT_KEYSPACE_REPLICATION, (ks,)),
    )
    .await
    .map_err(|_| unavailable(spec, "timed out reading system_schema"))?
    .map_err(|e| unavailable(spec, e))?
    .into_rows_result()
    .map_err(|e| unavailable(spec, e))?;
    let keyspace_replication = rows
        .rows::<(HashMap<String, String>,)>()
        .map_err(|e| unavailable(spec, e))?
        .next()
        .transpose()
        .map_err(|e| unavailable(spec, e))?
        .map(|(m,)| m.into_iter().collect::<BTreeMap<_, _>>());
    let rows = tokio::time::timeout(
        REQUEST_TIMEOUT,
        session.execute_unpaged(SELECT_TABLE_COLUMNS, (ks, table)),
    )
    .await
    .map_err(|_| unavailable(spec, "timed out reading system_schema"))?
    .map_err(|e| unavailable(spec, e))?
    .into_rows_result()
    .map_err(|e| unavailable(spec, e))?;
    let mut columns = Vec::new();
    for row in rows
        .rows::<(String, String, String, i32, String)>()
        .map_err(|e| unavailable(spec, e))?
    {
        let (name, cql_type, kind, position, order) = row.map_err(|e| unavailable(spec, e))?;
        let kind = ColumnKind::from_system_schema(&kind, position, &order)
            .map_err(|e| unavailable(spec, e))?;
        columns.push(ObservedColumn {
            name,
            cql_type,
            kind,
        });
    }
    let comment = if columns.is_empty() {
        String::new()
    } else {
        let rows = tokio::time::timeout(
            REQUEST_TIMEOUT,
            session.execute_unpaged(SELECT_TABLE_COMMENT, (ks, table)),
        )
        .await
        .map_err(|_| unavailable(spec, "timed out reading system_schema"))?
        .map_err(|e| unavailable(spec, e))?
        .into_rows_result()
        .map_err(|e| unavailable(spec, e))?;
        rows.rows::<(Option<String>,)>()
            .map_err(|e| unavailable(spec, e))?
            .next()
            .transpose()
            .map_err(|e| unavailable(spec, e))?
            .and_then(|(c,)| c)
            .unwrap_or_default()
    };
    Ok(ObservedTable {
        keyspace_replication,
        columns,
        comment,
    })
}

/// Columns for the status: the declared ones in their order, then any the
/// table still has from earlier specs.
fn column_status(table: &TableSpec, observed: &[ObservedColumn]) -> Vec<ColumnStatus> {
    let mut out: Vec<ColumnStatus> = Vec::new();
    for c in &table.columns {
        if let Some(o) = observed.iter().find(|o| o.name == c.name) {
            out.push(ColumnStatus {
                name: o.name.clone(),
                type_: o.cql_type.clone(),
            });
        }
    }
    let mut rest: Vec<&ObservedColumn> = observed
        .iter()
        .filter(|o| table.column(&o.name).is_none())
        .collect();
    rest.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(rest.into_iter().map(|o| ColumnStatus {
        name: o.name.clone(),
        type_: o.cql_type.clone(),
    }));
    out
}

/// Each table of the pipeline, one after the other (the first creates
/// the keyspace if need be); with their statuses in the spec's order.
/// Ready when every table is; a change Cassandra cannot make is
/// `NotSupported` for its table, and the others are still reconciled.
pub async fn reconcile_tables(
    ctx: &Context,
    p: &Pipeline<'_>,
    creds: Option<&CassandraAuth>,
) -> PartOutcome<Vec<TableStatus>> {
    let spec = &p.sp.spec.cassandra;
    let mut parts = Vec::new();
    for table in spec.tables() {
        parts.push(reconcile_table(ctx, p, table, creds).await);
    }
    combine(parts, spec.tables().len() > 1)
}

/// One outcome for the tables' outcomes: the first failure or conflict
/// stands for all (the others' events are kept); otherwise ready when
/// every table is, `NotSupported` when one is. With several tables each
/// message names its table already.
fn combine(parts: Vec<PartOutcome<TableStatus>>, several: bool) -> PartOutcome<Vec<TableStatus>> {
    let events: Vec<Notice> = parts.iter().flat_map(|o| o.events.clone()).collect();
    if let Some(at) = parts
        .iter()
        .position(|o| o.error.is_some() || o.is_conflict())
    {
        let mut parts = parts;
        let first = parts.swap_remove(at);
        let mut out = PartOutcome::not_attempted(&first.reason, first.message);
        out.error = first.error;
        return out.with_events(events);
    }
    let statuses: Vec<TableStatus> = parts.iter().filter_map(|o| o.status.clone()).collect();
    let unsupported: Vec<String> = parts
        .iter()
        .filter(|o| o.reason == reasons::NOT_SUPPORTED)
        .map(|o| match (&o.status, several) {
            (Some(t), true) => format!("table {}: {}", t.qualified_name, o.message),
            _ => o.message.clone(),
        })
        .collect();
    let out = if !unsupported.is_empty() {
        PartOutcome::not_supported(&unsupported, statuses)
    } else if several {
        let names: Vec<&str> = statuses.iter().map(|t| t.qualified_name.as_str()).collect();
        let mut message = format!(
            "tables {} have their declared columns and primary keys",
            names.join(", ")
        );
        for t in statuses.iter().filter(|t| t.recreated.is_some()) {
            if let Some(at) = &t.recreated {
                message.push_str(&format!(
                    "; {} was dropped outside millrace and created again, empty, at {}",
                    t.qualified_name, at.0
                ));
            }
        }
        PartOutcome::ready(message, statuses)
    } else {
        let message = parts
            .into_iter()
            .next()
            .map(|o| o.message)
            .unwrap_or_default();
        PartOutcome::ready(message, statuses)
    };
    out.with_events(events)
}

async fn reconcile_table(
    ctx: &Context,
    p: &Pipeline<'_>,
    table: &TableSpec,
    creds: Option<&CassandraAuth>,
) -> PartOutcome<TableStatus> {
    let spec = &p.sp.spec.cassandra;
    let mut events = Vec::new();
    let result = reconcile_inner(ctx, p, table, creds, &mut events).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            if matches!(e, Error::Cassandra { .. }) {
                ctx.cassandra.forget(spec, creds).await;
            }
            let e = refused_credentials(e, p);
            PartOutcome::failed(e, &format!("table {}.{}", spec.keyspace.name, table.name))
        }
    };
    outcome.with_events(events)
}

async fn execute(
    ctx: &Context,
    session: &CachingSession,
    spec: &CassandraSpec,
    cql: &str,
) -> Result<()> {
    let session = session.get_session();
    ctx.may_write()?;
    tokio::time::timeout(REQUEST_TIMEOUT, session.query_unpaged(cql, &[]))
        .await
        .map_err(|_| unavailable(spec, "timed out running DDL"))?
        .map_err(|e| unavailable(spec, e))?;
    ctx.metrics.write(Target::Cassandra);
    tokio::time::timeout(REQUEST_TIMEOUT, session.await_schema_agreement())
        .await
        .map_err(|_| unavailable(spec, "timed out waiting for schema agreement"))?
        .map_err(|e| unavailable(spec, e))?;
    Ok(())
}

/// What this pipeline's status last said of `table`.
fn last_status<'a>(p: &'a Pipeline<'_>, table: &str) -> Option<&'a TableStatus> {
    let keyspace = &p.sp.spec.cassandra.keyspace.name;
    let status = p.sp.status.as_ref()?;
    status
        .tables
        .iter()
        .chain(status.table.as_ref())
        .find(|t| t.keyspace == *keyspace && t.name == table)
}

/// Whether this pipeline's status last saw `table`, so one dropped by
/// hand is told apart from one never made.
fn table_existed(p: &Pipeline<'_>, table: &str) -> bool {
    last_status(p, table).is_some_and(|t| !t.columns.is_empty())
}

async fn reconcile_inner(
    ctx: &Context,
    p: &Pipeline<'_>,
    table: &TableSpec,
    creds: Option<&CassandraAuth>,
    events: &mut Vec<Notice>,
) -> Result<PartOutcome<TableStatus>> {
    let spec = &p.sp.spec.cassandra;
    let owner = p.owner_id();
    let existed = table_existed(p, &table.name);
    let session = ctx.cassandra.get(spec, creds).await?;
    let plan_for = |observed: &ObservedTable| {
        plan_table(spec, table, observed, &owner, existed).map_err(|e| Error::Render {
            what: "the table",
            message: e.to_string(),
        })
    };
    let mut observed = observe(&session, spec, &table.name).await?;
    let mut plan = plan_for(&observed)?;
    // Another pipeline's table is read again under the lock too: the claim
    // must not be decided on a read older than a competing CREATE.
    if !plan.statements.is_empty() || plan.conflict.is_some() {
        let ddl = ctx.cassandra.lock_ddl(spec).await;
        observed = observe(&session, spec, &table.name).await?;
        plan = plan_for(&observed)?;
        let mut done = Vec::new();
        let mut failed = None;
        for statement in &plan.statements {
            match execute(ctx, &session, spec, &statement.cql).await {
                Ok(()) => done.push(statement),
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        drop(ddl);
        events.extend(done.into_iter().map(|statement| {
            if statement.reason == "TableRecreated" {
                Notice::warning(statement.reason, statement.note.clone())
            } else {
                Notice::normal(statement.reason, statement.note.clone())
            }
        }));
        if let Some(e) = failed {
            return Err(e);
        }
        if !plan.statements.is_empty() {
            observed = observe(&session, spec, &table.name).await?;
        }
    }
    let ks = &spec.keyspace.name;
    let name = &table.name;
    if let Some(other) = &plan.conflict {
        return Ok(PartOutcome::conflict(ownership::conflict_message(
            &format!("table {ks}.{name}"),
            other,
            &format!(
                "once {other} is deleted with deletionPolicy Retain, remove its mark from the table's comment (ALTER TABLE {ks}.{name} WITH comment = '') and this pipeline takes the table"
            ),
        )));
    }
    let mut status = TableStatus::new(ks, name, column_status(table, &observed.columns));
    // Said until the table is made anew by the pipeline itself: the rows
    // it held are gone, and a person reading the status should know.
    status.recreated = if plan.recreated {
        Some(Time(Timestamp::now()))
    } else if existed {
        last_status(p, name).and_then(|t| t.recreated.clone())
    } else {
        None
    };
    let again = status.recreated.as_ref().map_or(String::new(), |at| {
        format!(
            "; it was dropped outside millrace and created again, empty, at {}",
            at.0
        )
    });
    Ok(
        if plan.unsupported.is_empty() && status.recreated.is_some() {
            PartOutcome::ready(
                format!(
                    "table {ks}.{name} has the declared {} columns and primary key{again}",
                    table.columns.len()
                ),
                status,
            )
        } else if plan.unsupported.is_empty() {
            PartOutcome::ready(
                format!(
                    "table {ks}.{name} has the declared {} columns and primary key",
                    table.columns.len()
                ),
                status,
            )
        } else {
            PartOutcome::not_supported(&plan.unsupported, status)
        },
    )
}

/// What `deletionPolicy: Delete` did with the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dropped {
    Dropped,
    /// There was no table.
    Absent,
    /// The table is not recorded as this pipeline's: it was left in place.
    NotOurs(Option<Owner>),
}

/// `deletionPolicy: Delete`: drops `table` if its comment names `owner`
/// (the keyspace may hold other tables and is kept).
pub async fn drop_table(
    ctx: &Context,
    spec: &CassandraSpec,
    table: &str,
    owner: &Owner,
    creds: Option<&CassandraAuth>,
) -> Result<Dropped> {
    let result = async {
        let session = ctx.cassandra.get(spec, creds).await?;
        let _ddl = ctx.cassandra.lock_ddl(spec).await;
        let observed = observe(&session, spec, table).await?;
        if observed.columns.is_empty() {
            return Ok(Dropped::Absent);
        }
        let recorded = ownership::owner_in_comment(&observed.comment);
        if recorded.as_ref() != Some(owner) {
            return Ok(Dropped::NotOurs(recorded));
        }
        execute(
            ctx,
            &session,
            spec,
            &cql::drop_table(&spec.keyspace.name, table),
        )
        .await?;
        Ok(Dropped::Dropped)
    }
    .await;
    if result.is_err() {
        ctx.cassandra.forget(spec, creds).await;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(name: &str) -> TableStatus {
        TableStatus::new("ks", name, vec![])
    }

    #[test]
    fn several_tables_are_ready_only_together_and_a_change_names_its_table() {
        let ready = || {
            vec![
                PartOutcome::ready("a fine".into(), status("a")),
                PartOutcome::ready("b fine".into(), status("b")),
            ]
        };
        let out = combine(ready(), true);
        assert!(out.ready && out.usable);
        assert_eq!(out.status.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            out.message,
            "tables ks.a, ks.b have their declared columns and primary keys"
        );
        // One table alone keeps its own words.
        let one = combine(
            vec![PartOutcome::ready("a fine".into(), status("a"))],
            false,
        );
        assert_eq!(one.message, "a fine");

        let mut parts = ready();
        parts[1] = PartOutcome::not_supported(&["column x: int to text".into()], status("b"));
        let out = combine(parts, true);
        assert!(!out.ready && out.usable, "the other table keeps flowing");
        assert_eq!(out.reason, reasons::NOT_SUPPORTED);
        assert_eq!(out.message, "table ks.b: column x: int to text");
        assert_eq!(out.status.map(|s| s.len()), Some(2));

        let mut parts = ready();
        parts[0] = PartOutcome::conflict("owned by other/p".into());
        let out = combine(parts, true);
        assert!(out.is_conflict() && !out.usable && out.status.is_none());
        assert_eq!(out.message, "owned by other/p");
    }
}
