//! What it takes to bring the keyspace and table to the declared ones:
//! CQL statements to run, and changes Cassandra cannot make. A table that
//! records another pipeline as its owner is left alone
//! ([`super::ownership`]).

use std::collections::BTreeMap;

use millrace_api::{
    CassandraSpec, ColumnStatus, CqlType, CqlTypeError, ObservedColumn, TableSpec, cql, diff_table,
};

use super::ownership::{self, Claim, Owner};

/// The keyspace and table as `system_schema` describes them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObservedTable {
    /// `None` when the keyspace does not exist.
    pub keyspace_replication: Option<BTreeMap<String, String>>,
    /// Empty when the table does not exist.
    pub columns: Vec<ObservedColumn>,
    /// The table's `comment` option, where its owner is recorded (empty
    /// when the table does not exist).
    pub comment: String,
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
    /// The table belongs to another pipeline: nothing is to be done.
    pub conflict: Option<Owner>,
    /// The table this pipeline had is gone (dropped outside millrace) and is
    /// created again, empty.
    pub recreated: bool,
}

/// The plan for `owner`'s table. `existed` says whether this pipeline's
/// status last saw the table, so a table that vanished is told apart from
/// one never made.
pub fn plan_table(
    spec: &CassandraSpec,
    table_spec: &TableSpec,
    observed: &ObservedTable,
    owner: &Owner,
    existed: bool,
) -> Result<TablePlan, CqlTypeError> {
    let mut plan = TablePlan::default();
    let ks = &spec.keyspace.name;
    let table = &table_spec.name;
    let exists = !observed.columns.is_empty();
    let recorded = ownership::owner_in_comment(&observed.comment);
    let claim = if exists {
        ownership::claim(owner, recorded)
    } else {
        Claim::Free
    };
    if let Claim::Theirs(other) = claim {
        plan.conflict = Some(other);
        return Ok(plan);
    }
    match &observed.keyspace_replication {
        None => plan.statements.push(Statement {
            reason: "KeyspaceCreated",
            note: format!("created keyspace {ks}"),
            cql: cql::create_keyspace(&spec.keyspace),
        }),
        Some(replication)
            if let Some(lost) =
                cql::replication_lowered(&spec.keyspace.replication, replication) =>
        {
            plan.unsupported.push(format!(
                "keyspace {ks} has more replicas than the spec declares ({lost}); lowering replication changes every table in the keyspace, which other pipelines may share, so millrace never does it: declare the keyspace's replication, or lower it yourself with ALTER KEYSPACE"
            ));
        }
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
    if !exists {
        plan.recreated = existed;
        plan.statements.push(Statement {
            reason: if existed {
                "TableRecreated"
            } else {
                "TableCreated"
            },
            note: if existed {
                format!(
                    "table {ks}.{table} was gone (dropped outside millrace): created it again, empty; the rows it held are lost"
                )
            } else {
                format!("created table {ks}.{table}")
            },
            cql: cql::create_table_with_comment(
                ks,
                table_spec,
                &ownership::comment_with_owner("", owner),
            )?,
        });
        return Ok(plan);
    }
    if claim == Claim::Free {
        plan.statements.push(Statement {
            reason: "TableClaimed",
            note: format!(
                "recorded this pipeline as the owner of table {ks}.{table} (in its comment)"
            ),
            cql: cql::set_table_comment(
                ks,
                table,
                &ownership::comment_with_owner(&observed.comment, owner),
            ),
        });
    }
    let diff = diff_table(table_spec, &observed.columns);
    for (name, cql_type) in &diff.add {
        plan.statements.push(Statement {
            reason: "ColumnAdded",
            note: format!("added column {name} {cql_type} to {ks}.{table}"),
            cql: cql::alter_table_add(ks, table, name, cql_type),
        });
    }
    plan.unsupported
        .extend(diff.unsupported.iter().map(ToString::to_string));
    Ok(plan)
}

/// The table as the runner must write it while the spec asks for a change
/// Cassandra cannot make: every column whose declared type differs from
/// the table's keeps the table's type, so good records keep flowing (and
/// the change stays reported as `NotSupported`). `None` when the declared
/// table is what the table is.
pub fn runner_table(declared: &TableSpec, observed: &[ColumnStatus]) -> Option<TableSpec> {
    let mut table = declared.clone();
    let mut changed = false;
    for column in &mut table.columns {
        let Some(have) = observed.iter().find(|o| o.name == column.name) else {
            continue;
        };
        let same = match (
            column.type_.parse::<CqlType>(),
            have.type_.parse::<CqlType>(),
        ) {
            (Ok(a), Ok(b)) => a == b,
            _ => column.type_ == have.type_,
        };
        if !same {
            column.type_ = have.type_.clone();
            changed = true;
        }
    }
    changed.then_some(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;
    use millrace_api::{ColumnKind, ColumnSpec};

    fn columns(spec: &CassandraSpec) -> Vec<ObservedColumn> {
        spec.tables()[0]
            .columns
            .iter()
            .map(|c| ObservedColumn {
                name: c.name.clone(),
                cql_type: c.type_.clone(),
                kind: if spec.tables()[0].partition_key.contains(&c.name) {
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
        let plan = plan_table(
            &spec,
            &spec.tables()[0].clone(),
            &ObservedTable::default(),
            &me(),
            false,
        )
        .expect("plan");
        let reasons: Vec<_> = plan.statements.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, ["KeyspaceCreated", "TableCreated"]);
        assert!(plan.statements[1].cql.contains("PRIMARY KEY ((\"id\"))"));
        assert!(
            plan.statements[1]
                .cql
                .ends_with("WITH comment = '[millrace owner=data/randomuser]'"),
            "{}",
            plan.statements[1].cql
        );
        assert!(!plan.recreated);
    }

    fn me() -> Owner {
        Owner::new("data", "randomuser")
    }

    fn ours(spec: &CassandraSpec, rf: &str) -> ObservedTable {
        ObservedTable {
            keyspace_replication: simple(rf),
            columns: columns(spec),
            comment: "[millrace owner=data/randomuser]".into(),
        }
    }

    #[test]
    fn the_runner_keeps_the_tables_type_for_a_column_whose_type_cannot_change() {
        let mut spec = fixtures::seed().spec.cassandra;
        let observed: Vec<ColumnStatus> = spec.tables()[0]
            .columns
            .iter()
            .map(|c| ColumnStatus {
                name: c.name.clone(),
                type_: c.type_.clone(),
            })
            .collect();
        assert_eq!(runner_table(&spec.tables()[0], &observed), None);
        if let Some(c) = spec.tables_mut()[0]
            .columns
            .iter_mut()
            .find(|c| c.name == "gender")
        {
            c.type_ = "int".into();
        }
        spec.tables_mut()[0]
            .columns
            .push(ColumnSpec::from_pointer("age", "int", "/dob/age"));
        let held = runner_table(&spec.tables()[0], &observed).expect("held back");
        let gender = held.column("gender").expect("gender");
        assert_eq!(gender.type_, "text", "the table's type");
        assert_eq!(
            held.column("age").map(|c| c.type_.as_str()),
            Some("int"),
            "a new column still flows"
        );
    }

    #[test]
    fn a_keyspace_with_more_replicas_than_declared_is_never_lowered() {
        let spec = fixtures::seed().spec.cassandra;
        let observed = ours(&spec, "3");
        let plan =
            plan_table(&spec, &spec.tables()[0].clone(), &observed, &me(), true).expect("plan");
        assert!(plan.statements.is_empty(), "{:?}", plan.statements);
        assert_eq!(plan.unsupported.len(), 1);
        assert!(
            plan.unsupported[0].contains("replication_factor 3 -> 1"),
            "{}",
            plan.unsupported[0]
        );
    }

    #[test]
    fn another_pipelines_table_is_left_alone_even_where_it_differs() {
        let mut spec = fixtures::seed().spec.cassandra;
        let mut observed = ours(&spec, "3");
        observed.comment = "[millrace owner=other/users]".into();
        spec.tables_mut()[0]
            .columns
            .push(ColumnSpec::from_pointer("age", "int", "/dob/age"));
        let plan =
            plan_table(&spec, &spec.tables()[0].clone(), &observed, &me(), true).expect("plan");
        assert_eq!(plan.conflict, Some(Owner::new("other", "users")));
        assert!(plan.statements.is_empty(), "{:?}", plan.statements);
        assert!(plan.unsupported.is_empty());
    }

    #[test]
    fn a_table_without_an_owner_is_claimed_keeping_its_comment() {
        let spec = fixtures::seed().spec.cassandra;
        let mut observed = ours(&spec, "1");
        observed.comment = "made by hand".into();
        let plan =
            plan_table(&spec, &spec.tables()[0].clone(), &observed, &me(), false).expect("plan");
        let reasons: Vec<_> = plan.statements.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, ["TableClaimed"]);
        assert!(
            plan.statements[0]
                .cql
                .ends_with("WITH comment = 'made by hand [millrace owner=data/randomuser]'"),
            "{}",
            plan.statements[0].cql
        );
    }

    #[test]
    fn a_table_that_vanished_is_created_again_and_said_so() {
        let spec = fixtures::seed().spec.cassandra;
        let observed = ObservedTable {
            keyspace_replication: simple("1"),
            ..ObservedTable::default()
        };
        let plan =
            plan_table(&spec, &spec.tables()[0].clone(), &observed, &me(), true).expect("plan");
        assert!(plan.recreated);
        let reasons: Vec<_> = plan.statements.iter().map(|s| s.reason).collect();
        assert_eq!(reasons, ["TableRecreated"]);
        assert!(plan.statements[0].note.contains("dropped outside millrace"));
    }

    #[test]
    fn an_identical_table_needs_nothing() {
        let spec = fixtures::seed().spec.cassandra;
        let observed = ours(&spec, "1");
        assert_eq!(
            plan_table(&spec, &spec.tables()[0].clone(), &observed, &me(), true).expect("plan"),
            TablePlan::default()
        );
    }

    #[test]
    fn a_new_column_is_added_and_a_changed_type_is_refused() {
        let mut spec = fixtures::seed().spec.cassandra;
        let observed = ours(&spec, "1");
        spec.keyspace.replication.replication_factor = Some(2);
        spec.tables_mut()[0]
            .columns
            .push(ColumnSpec::from_pointer("age", "int", "/dob/age"));
        if let Some(c) = spec.tables_mut()[0]
            .columns
            .iter_mut()
            .find(|c| c.name == "gender")
        {
            c.type_ = "int".into();
        }
        let plan =
            plan_table(&spec, &spec.tables()[0].clone(), &observed, &me(), true).expect("plan");
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
