//! What it takes to bring the keyspace and table to the declared ones:
//! CQL statements to run, and changes Cassandra cannot make.

use std::collections::BTreeMap;

use millrace_api::{CassandraSpec, CqlTypeError, ObservedColumn, cql, diff_table};

/// The keyspace and table as `system_schema` describes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTable {
    /// `None` when the keyspace does not exist.
    pub keyspace_replication: Option<BTreeMap<String, String>>,
    /// Empty when the table does not exist.
    pub columns: Vec<ObservedColumn>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    /// What it does, for Events (`KeyspaceCreated`, `ColumnAdded`...).
    pub reason: &'static str,
    pub note: String,
    pub cql: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TablePlan {
    pub statements: Vec<Statement>,
    pub unsupported: Vec<String>,
}

pub fn plan_table(
    spec: &CassandraSpec,
    observed: &ObservedTable,
) -> Result<TablePlan, CqlTypeError> {
    let mut plan = TablePlan::default();
    let ks = &spec.keyspace.name;
    let table = &spec.table.name;
    match &observed.keyspace_replication {
        None => plan.statements.push(Statement {
            reason: "KeyspaceCreated",
            note: format!("created keyspace {ks}"),
            cql: cql::create_keyspace(&spec.keyspace),
        }),
        Some(replication) if !cql::replication_matches(&spec.keyspace.replication, replication) => {
            plan.statements.push(Statement {
                reason: "KeyspaceAltered",
                note: format!(
                    "changed the replication of keyspace {ks}; run a repair so existing data reaches new replicas"
                ),
                cql: cql::alter_keyspace_replication(&spec.keyspace),
            });
        }
        Some(_) => {}
    }
    if observed.columns.is_empty() {
        plan.statements.push(Statement {
            reason: "TableCreated",
            note: format!("created table {ks}.{table}"),
            cql: cql::create_table(ks, &spec.table)?,
        });
        return Ok(plan);
    }
    let diff = diff_table(&spec.table, &observed.columns);
    for (name, cql_type) in &diff.add {
        plan.statements.push(Statement {
            reason: "ColumnAdded",
            note: format!("added column {name} {cql_type} to {ks}.{table}"),
            cql: cql::alter_table_add(ks, table, name, cql_type),
        });
    }
    plan.unsupported = diff.unsupported.iter().map(ToString::to_string).collect();
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;
    use millrace_api::{ColumnKind, ColumnSpec};

    fn columns(spec: &CassandraSpec) -> Vec<ObservedColumn> {
        spec.table
            .columns
            .iter()
            .map(|c| ObservedColumn {
                name: c.name.clone(),
                cql_type: c.type_.clone(),
                kind: if spec.table.partition_key.contains(&c.name) {
                    ColumnKind::PartitionKey { position: 0 }
                } else {
                    ColumnKind::Regular
                },
            })
            .collect()
    }

    fn simple(rf: &str) -> Option<BTreeMap<String, String>> {
        Some(BTreeMap::from([
            (
                "class".to_owned(),
                "org.apache.cassandra.locator.SimpleStrategy".to_owned(),
            ),
            ("replication_factor".to_owned(), rf.to_owned()),
        ]))
    }

    #[test]
    fn nothing_exists_so_keyspace_and_table_are_created() {
        let spec = fixtures::seed().spec.cassandra;
        let plan = plan_table(&spec, &ObservedTable::default()).expect("plan");
        let reasons: Vec<_> = plan.statements.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, ["KeyspaceCreated", "TableCreated"]);
        assert!(plan.statements[1].cql.contains("PRIMARY KEY ((\"id\"))"));
    }

    #[test]
    fn an_identical_table_needs_nothing() {
        let spec = fixtures::seed().spec.cassandra;
        let observed = ObservedTable {
            keyspace_replication: simple("1"),
            columns: columns(&spec),
        };
        assert_eq!(
            plan_table(&spec, &observed).expect("plan"),
            TablePlan::default()
        );
    }

    #[test]
    fn a_new_column_is_added_and_a_changed_type_is_refused() {
        let mut spec = fixtures::seed().spec.cassandra;
        let observed = ObservedTable {
            keyspace_replication: simple("2"),
            columns: columns(&spec),
        };
        spec.table
            .columns
            .push(ColumnSpec::from_pointer("age", "int", "/dob/age"));
        if let Some(c) = spec.table.columns.iter_mut().find(|c| c.name == "gender") {
            c.type_ = "int".into();
        }
        let plan = plan_table(&spec, &observed).expect("plan");
        let reasons: Vec<_> = plan.statements.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, ["KeyspaceAltered", "ColumnAdded"]);
        assert!(plan.statements[1].cql.contains("ADD \"age\" int"));
        assert_eq!(plan.unsupported.len(), 1);
        assert!(
            plan.unsupported[0].contains("gender"),
            "{:?}",
            plan.unsupported
        );
    }
}
