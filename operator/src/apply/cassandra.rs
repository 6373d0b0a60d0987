//! The pipeline's keyspace and table, through CQL DDL. Columns are only
//! ever added; a changed type or key is reported, never attempted.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use kube::runtime::events::EventType;
use millrace_api::{CassandraSpec, ColumnKind, ColumnStatus, ObservedColumn, TableStatus, cql};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

use super::PartOutcome;
use crate::controller::Context;
use crate::desired::table::{ObservedTable, plan_table};
use crate::desired::{Pipeline, fnv64};
use crate::error::{Error, Result};
use crate::metrics::Target;
use crate::observe::Credentials;
use crate::status::reasons;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// CQL sessions, one per cluster and identity, reused across reconciles.
#[derive(Default)]
pub struct Sessions {
    cache: tokio::sync::Mutex<HashMap<u64, Arc<Session>>>,
    /// Held while changing a schema. Pipelines often share a keyspace (and
    /// may share a table): when many are created at once, each would
    /// otherwise see the keyspace missing and send its own CREATE, and a
    /// node applies schema changes one at a time anyway (each waits for
    /// agreement). Under the lock the schema is read again, so only the
    /// first pipeline changes it and the others find it made.
    ddl: tokio::sync::Mutex<()>,
}

fn unavailable(spec: &CassandraSpec, e: impl std::fmt::Display) -> Error {
    Error::Cassandra {
        contact_points: spec.contact_points.join(","),
        message: e.to_string(),
    }
}

/// An unreachable-looking error that is in fact Cassandra refusing the
/// username or password: a person must fix the Secret, so it gets its own
/// reason and is not retried quickly.
fn refused_credentials(e: Error, p: &Pipeline<'_>) -> Error {
    match e {
        Error::Cassandra {
            contact_points,
            message,
        } if is_auth_failure(&message) => Error::CassandraAuth {
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

/// How the driver words a refused login (the server's AuthenticationError,
/// or a PasswordAuthenticator challenge that was not answered).
fn is_auth_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("authentication failed")
        || m.contains("bad credentials")
        || m.contains("and/or password are incorrect")
        || m.contains("authentication error")
        || m.contains("requires authentication")
}

fn key(spec: &CassandraSpec, creds: Option<&Credentials>) -> u64 {
    let mut key = spec.contact_points.join(",");
    if let Some(c) = creds {
        key.push_str(&format!("\0{}\0{}", c.username, c.password));
    }
    fnv64(key.as_bytes())
}

impl Sessions {
    async fn get(&self, spec: &CassandraSpec, creds: Option<&Credentials>) -> Result<Arc<Session>> {
        let key = key(spec, creds);
        let mut cache = self.cache.lock().await;
        if let Some(s) = cache.get(&key) {
            return Ok(s.clone());
        }
        let mut builder = SessionBuilder::new()
            .known_nodes(&spec.contact_points)
            .connection_timeout(CONNECT_TIMEOUT);
        if let Some(c) = creds {
            builder = builder.user(&c.username, &c.password);
        }
        let session =
            tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(2), builder.build())
                .await
                .map_err(|_| unavailable(spec, "timed out connecting"))?
                .map_err(|e| unavailable(spec, e))?;
        let session = Arc::new(session);
        cache.insert(key, session.clone());
        Ok(session)
    }

    /// Forgets a session after a failure, so the next attempt reconnects.
    async fn forget(&self, spec: &CassandraSpec, creds: Option<&Credentials>) {
        self.cache.lock().await.remove(&key(spec, creds));
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
    let result = reconcile_inner(ctx, p, spec, creds).await;
    match result {
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
    }
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
    p: &Pipeline<'_>,
    spec: &CassandraSpec,
    creds: Option<&Credentials>,
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
        let ddl = ctx.cassandra.ddl.lock().await;
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
        // Events go to the apiserver: not while others wait for the lock.
        drop(ddl);
        for statement in done {
            ctx.event(p.sp, EventType::Normal, statement.reason, &statement.note)
                .await;
        }
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
        PartOutcome {
            ready: true,
            reason: reasons::RECONCILED.to_owned(),
            message: format!(
                "table {ks}.{name} has the declared {} columns and primary key",
                spec.table.columns.len()
            ),
            usable: true,
            status: Some(status),
            error: None,
        }
    } else {
        PartOutcome {
            ready: false,
            reason: reasons::NOT_SUPPORTED.to_owned(),
            message: plan.unsupported.join("; "),
            usable: true,
            status: Some(status),
            error: None,
        }
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

#[cfg(test)]
mod tests {
    #[test]
    fn refused_logins_are_told_from_unreachable_clusters() {
        assert!(super::is_auth_failure(
            "Control connection pool error: Authentication failed - bad credentials"
        ));
        assert!(super::is_auth_failure(
            "Provided username cassandra and/or password are incorrect"
        ));
        assert!(!super::is_auth_failure("Connection refused (os error 111)"));
        assert!(!super::is_auth_failure("timed out connecting"));
    }
}
