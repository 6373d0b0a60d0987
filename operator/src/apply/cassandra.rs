//! The pipeline's keyspace and table, through CQL DDL. Columns are only
//! ever added; a changed type or key is reported, never attempted.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use millrace_api::auth_failure::cassandra_auth_failure;
use millrace_api::{CassandraSpec, ColumnKind, ColumnStatus, ObservedColumn, TableStatus, cql};
use scylla::client::session::Session;

use super::PartOutcome;
use crate::clients::cassandra::unavailable;
use crate::context::Context;
use crate::credentials::Credentials;
use crate::desired::Pipeline;
use crate::desired::table::{ObservedTable, plan_table};
use crate::error::{Error, Result};
use crate::events::Notice;
use crate::metrics::Target;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// An unreachable-looking error that is in fact Cassandra refusing the
/// username or password: a person must fix the Secret, so it gets its own
/// reason and is not retried quickly.
fn refused_credentials(e: Error, p: &Pipeline<'_>) -> Error {
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

async fn observe(session: &Session, spec: &CassandraSpec) -> Result<ObservedTable> {
    let ks = spec.keyspace.name.as_str();
    let table = spec.table.name.as_str();
    let rows = tokio::time::timeout(
        REQUEST_TIMEOUT,
        session.query_unpaged(
            "SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?",
            (ks,),
        ),
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
        session.query_unpaged(
            "SELECT column_name, type, kind, position, clustering_order FROM system_schema.columns WHERE keyspace_name = ? AND table_name = ?",
            (ks, table),
        ),
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
    Ok(ObservedTable {
        keyspace_replication,
        columns,
    })
}

/// Columns for the status: the declared ones in their order, then any the
/// table still has from earlier specs.
fn column_status(spec: &CassandraSpec, observed: &[ObservedColumn]) -> Vec<ColumnStatus> {
    let mut out: Vec<ColumnStatus> = Vec::new();
    for c in &spec.table.columns {
        if let Some(o) = observed.iter().find(|o| o.name == c.name) {
            out.push(ColumnStatus {
                name: o.name.clone(),
                type_: o.cql_type.clone(),
            });
        }
    }
    let mut rest: Vec<&ObservedColumn> = observed
        .iter()
        .filter(|o| spec.table.column(&o.name).is_none())
        .collect();
    rest.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(rest.into_iter().map(|o| ColumnStatus {
        name: o.name.clone(),
        type_: o.cql_type.clone(),
    }));
    out
}

pub async fn reconcile_table(
    ctx: &Context,
    p: &Pipeline<'_>,
    creds: Option<&Credentials>,
) -> PartOutcome<TableStatus> {
    let spec = &p.sp.spec.cassandra;
    let mut events = Vec::new();
    let result = reconcile_inner(ctx, spec, creds, &mut events).await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(e) => {
            if matches!(e, Error::Cassandra { .. }) {
                ctx.cassandra.forget(spec, creds).await;
            }
            let e = refused_credentials(e, p);
            PartOutcome::failed(
                e,
                &format!("table {}.{}", spec.keyspace.name, spec.table.name),
            )
        }
    };
    outcome.with_events(events)
}

async fn execute(ctx: &Context, session: &Session, spec: &CassandraSpec, cql: &str) -> Result<()> {
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

async fn reconcile_inner(
    ctx: &Context,
    spec: &CassandraSpec,
    creds: Option<&Credentials>,
    events: &mut Vec<Notice>,
) -> Result<PartOutcome<TableStatus>> {
    let session = ctx.cassandra.get(spec, creds).await?;
    let plan_for = |observed: &ObservedTable| {
        plan_table(spec, observed).map_err(|e| Error::Render {
            what: "the table",
            message: e.to_string(),
        })
    };
    let mut observed = observe(&session, spec).await?;
    let mut plan = plan_for(&observed)?;
    if !plan.statements.is_empty() {
        let ddl = ctx.cassandra.lock_ddl().await;
        observed = observe(&session, spec).await?;
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
        events.extend(
            done.into_iter()
                .map(|statement| Notice::normal(statement.reason, statement.note.clone())),
        );
        if let Some(e) = failed {
            return Err(e);
        }
        if !plan.statements.is_empty() {
            observed = observe(&session, spec).await?;
        }
    }
    let ks = &spec.keyspace.name;
    let name = &spec.table.name;
    let status = TableStatus::new(ks, name, column_status(spec, &observed.columns));
    Ok(if plan.unsupported.is_empty() {
        PartOutcome::ready(
            format!(
                "table {ks}.{name} has the declared {} columns and primary key",
                spec.table.columns.len()
            ),
            status,
        )
    } else {
        PartOutcome::not_supported(&plan.unsupported, status)
    })
}

/// `deletionPolicy: Delete`: drops the table (the keyspace may hold other
/// tables and is kept).
pub async fn drop_table(
    ctx: &Context,
    spec: &CassandraSpec,
    creds: Option<&Credentials>,
) -> Result<()> {
    let result = async {
        let session = ctx.cassandra.get(spec, creds).await?;
        let observed = observe(&session, spec).await?;
        if observed.columns.is_empty() {
            return Ok(());
        }
        execute(
            ctx,
            &session,
            spec,
            &cql::drop_table(&spec.keyspace.name, &spec.table.name),
        )
        .await
    }
    .await;
    if result.is_err() {
        ctx.cassandra.forget(spec, creds).await;
    }
    result
}
