//! Comparing the declared table with the one Cassandra has, as read from
//! `system_schema.columns`: what can be added, and what cannot change.

use std::collections::BTreeMap;
use std::fmt;

use crate::cql;
use crate::cql_type::CqlType;
use crate::spec::{ClusteringOrder, TableSpec};

/// A column as `system_schema.columns` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedColumn {
    pub name: String,
    /// The type as Cassandra writes it (`text`, `map<text, int>`).
    pub cql_type: String,
    pub kind: ColumnKind,
}

/// The `kind` (and for key columns the `position` and `clustering_order`)
/// of a column in `system_schema.columns`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnKind {
    PartitionKey {
        position: i32,
    },
    Clustering {
        position: i32,
        order: ClusteringOrder,
    },
    Regular,
    Static,
}

/// A `kind` that `system_schema.columns` should not contain.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown column kind {0:?} in system_schema.columns")]
pub struct UnknownColumnKind(pub String);

impl ColumnKind {
    /// Reads the `kind`, `position` and `clustering_order` columns of
    /// `system_schema.columns`.
    pub fn from_system_schema(
        kind: &str,
        position: i32,
        clustering_order: &str,
    ) -> Result<Self, UnknownColumnKind> {
        Ok(match kind {
            "partition_key" => Self::PartitionKey { position },
            "clustering" => Self::Clustering {
                position,
                order: if clustering_order.eq_ignore_ascii_case("desc") {
                    ClusteringOrder::Desc
                } else {
                    ClusteringOrder::Asc
                },
            },
            "regular" => Self::Regular,
            "static" => Self::Static,
            other => return Err(UnknownColumnKind(other.to_owned())),
        })
    }
}

/// What it takes to bring the table to the declared one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TableDiff {
    /// Declared columns the table lacks, to add with `ALTER TABLE ADD`.
    pub add: Vec<(String, CqlType)>,
    /// Differences Cassandra cannot apply; reported, never attempted.
    pub unsupported: Vec<UnsupportedChange>,
    /// Columns the table has and the spec no longer declares. They are left
    /// alone, so their data stays.
    pub undeclared: Vec<String>,
}

impl TableDiff {
    /// Whether the table is as declared (undeclared columns aside).
    pub fn is_in_sync(&self) -> bool {
        self.add.is_empty() && self.unsupported.is_empty()
    }

    /// The `ALTER TABLE ADD` statements for the missing columns.
    pub fn alter_statements(&self, keyspace: &str, table: &str) -> Vec<String> {
        self.add
            .iter()
            .map(|(name, t)| cql::alter_table_add(keyspace, table, name, t))
            .collect()
    }
}

/// A difference between declared and actual table that Cassandra cannot apply.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UnsupportedChange {
    #[error(
        "column {column:?} is {observed} in the table but {declared} in the spec; Cassandra cannot change a column's type, so declare it as {observed} or use a new column name"
    )]
    TypeChanged {
        column: String,
        declared: String,
        observed: String,
    },
    #[error(
        "the table's partition key is ({}) but the spec declares ({}); Cassandra cannot change a primary key, so use a new table",
        observed.join(", "),
        declared.join(", ")
    )]
    PartitionKeyChanged {
        declared: Vec<String>,
        observed: Vec<String>,
    },
    #[error(
        "the table's clustering key is ({}) but the spec declares ({}); Cassandra cannot change a primary key, so use a new table",
        observed.join(", "),
        declared.join(", ")
    )]
    ClusteringKeyChanged {
        declared: Vec<String>,
        observed: Vec<String>,
    },
    #[error("column {column:?} has type {cql_type:?}, which millrace does not know")]
    UnknownType { column: String, cql_type: String },
}

/// Compares the declared table with the observed columns of the table of
/// the same name. An empty `observed` means the table does not exist, which
/// this does not decide: create it instead.
pub fn diff_table(declared: &TableSpec, observed: &[ObservedColumn]) -> TableDiff {
    let mut diff = TableDiff::default();
    let by_name: BTreeMap<&str, &ObservedColumn> =
        observed.iter().map(|c| (c.name.as_str(), c)).collect();

    for column in &declared.columns {
        let Ok(declared_type) = column.type_.parse::<CqlType>() else {
            diff.unsupported.push(UnsupportedChange::UnknownType {
                column: column.name.clone(),
                cql_type: column.type_.clone(),
            });
            continue;
        };
        match by_name.get(column.name.as_str()) {
            None => diff.add.push((column.name.clone(), declared_type)),
            Some(have) => {
                let same = have
                    .cql_type
                    .parse::<CqlType>()
                    .is_ok_and(|t| t == declared_type);
                if !same {
                    diff.unsupported.push(UnsupportedChange::TypeChanged {
                        column: column.name.clone(),
                        declared: declared_type.to_string(),
                        observed: have.cql_type.clone(),
                    });
                }
            }
        }
    }

    let observed_partition = key_columns(observed, |kind| match kind {
        ColumnKind::PartitionKey { position } => Some((position, String::new())),
        _ => None,
    });
    if observed_partition != declared.partition_key {
        diff.unsupported
            .push(UnsupportedChange::PartitionKeyChanged {
                declared: declared.partition_key.clone(),
                observed: observed_partition,
            });
    }
    let observed_clustering = key_columns(observed, |kind| match kind {
        ColumnKind::Clustering { position, order } => {
            Some((position, format!(" {}", order.as_str())))
        }
        _ => None,
    });
    let declared_clustering: Vec<String> = declared
        .clustering_key
        .iter()
        .map(|c| format!("{} {}", c.name, c.order.as_str()))
        .collect();
    if observed_clustering != declared_clustering {
        diff.unsupported
            .push(UnsupportedChange::ClusteringKeyChanged {
                declared: declared_clustering,
                observed: observed_clustering,
            });
    }

    diff.undeclared = observed
        .iter()
        .filter(|c| declared.column(&c.name).is_none())
        .map(|c| c.name.clone())
        .collect();
    diff
}

/// Names of the key columns `pick` selects, in key order, each followed by
/// the suffix `pick` gives.
fn key_columns(
    observed: &[ObservedColumn],
    pick: impl Fn(ColumnKind) -> Option<(i32, String)>,
) -> Vec<String> {
    let mut keyed: Vec<(i32, String)> = observed
        .iter()
        .filter_map(|c| pick(c.kind).map(|(pos, suffix)| (pos, format!("{}{suffix}", c.name))))
        .collect();
    keyed.sort();
    keyed.into_iter().map(|(_, name)| name).collect()
}

impl fmt::Display for TableDiff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let adds: Vec<String> = self.add.iter().map(|(n, t)| format!("{n} {t}")).collect();
        write!(f, "add [{}]", adds.join(", "))?;
        for change in &self.unsupported {
            write!(f, "; {change}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::{ClusteringColumn, ColumnSpec};

    fn observed(name: &str, cql_type: &str, kind: ColumnKind) -> ObservedColumn {
        ObservedColumn {
            name: name.into(),
            cql_type: cql_type.into(),
            kind,
        }
    }

    fn declared() -> TableSpec {
        TableSpec {
            ttl: None,
            write_time: None,
            deletes: None,
            name: "created_users".into(),
            columns: vec![
                ColumnSpec::from_pointer("id", "uuid", "/login/uuid"),
                ColumnSpec::from_pointer("first_name", "varchar", "/name/first"),
                ColumnSpec::from_pointer("scores", "map<text,int>", "/scores"),
                ColumnSpec::from_pointer("phone", "text", "/phone"),
            ],
            partition_key: vec!["id".into()],
            clustering_key: vec![],
        }
    }

    fn existing() -> Vec<ObservedColumn> {
        vec![
            observed("id", "uuid", ColumnKind::PartitionKey { position: 0 }),
            observed("first_name", "text", ColumnKind::Regular),
            observed("scores", "map<text, int>", ColumnKind::Regular),
            observed("legacy", "text", ColumnKind::Regular),
        ]
    }

    #[test]
    fn new_columns_are_added_and_old_ones_left_alone() {
        let diff = diff_table(&declared(), &existing());
        assert_eq!(diff.add, [("phone".to_owned(), CqlType::Text)]);
        assert!(diff.unsupported.is_empty(), "{diff}");
        assert_eq!(diff.undeclared, ["legacy"]);
        assert_eq!(
            diff.alter_statements("spark_streams", "created_users"),
            ["ALTER TABLE \"spark_streams\".\"created_users\" ADD \"phone\" text"]
        );
        assert!(!diff.is_in_sync());
    }

    #[test]
    fn a_matching_table_is_in_sync() {
        let mut table = declared();
        table.columns.pop();
        let diff = diff_table(&table, &existing());
        assert!(diff.is_in_sync(), "{diff}");
    }

    #[test]
    fn a_changed_type_is_not_supported_and_says_what_to_do() {
        let mut table = declared();
        table.columns[1].type_ = "int".into();
        let diff = diff_table(&table, &existing());
        assert_eq!(diff.unsupported.len(), 1);
        assert_eq!(
            diff.unsupported[0].to_string(),
            "column \"first_name\" is text in the table but int in the spec; Cassandra cannot change a column's type, so declare it as text or use a new column name"
        );
    }

    #[test]
    fn types_cassandra_reports_that_millrace_cannot_declare_differ() {
        let mut have = existing();
        have[2].cql_type = "frozen<map<text, int>>".into();
        let diff = diff_table(&declared(), &have);
        assert!(matches!(
            diff.unsupported.as_slice(),
            [UnsupportedChange::TypeChanged { column, .. }] if column == "scores"
        ));
    }

    #[test]
    fn a_changed_primary_key_is_not_supported() {
        let mut table = declared();
        table.partition_key = vec!["first_name".into()];
        table.clustering_key = vec![ClusteringColumn {
            name: "id".into(),
            order: ClusteringOrder::Desc,
        }];
        let diff = diff_table(&table, &existing());
        assert!(
            diff.unsupported
                .iter()
                .any(|c| matches!(c, UnsupportedChange::PartitionKeyChanged { .. }))
        );
        assert!(
            diff.unsupported
                .iter()
                .any(|c| matches!(c, UnsupportedChange::ClusteringKeyChanged { .. }))
        );
    }

    #[test]
    fn clustering_order_is_part_of_the_key() {
        let mut table = declared();
        table.clustering_key = vec![ClusteringColumn {
            name: "first_name".into(),
            order: ClusteringOrder::Desc,
        }];
        let mut have = existing();
        have[1].kind = ColumnKind::from_system_schema("clustering", 0, "asc").unwrap();
        let diff = diff_table(&table, &have);
        assert_eq!(
            diff.unsupported,
            [UnsupportedChange::ClusteringKeyChanged {
                declared: vec!["first_name DESC".into()],
                observed: vec!["first_name ASC".into()],
            }]
        );
        have[1].kind = ColumnKind::from_system_schema("clustering", 0, "desc").unwrap();
        assert!(diff_table(&table, &have).unsupported.is_empty());
    }

    #[test]
    fn composite_keys_compare_in_position_order() {
        let mut table = declared();
        table.partition_key = vec!["id".into(), "first_name".into()];
        let mut have = existing();
        have[1].kind = ColumnKind::PartitionKey { position: 1 };
        assert!(diff_table(&table, &have).unsupported.is_empty());
        have[0].kind = ColumnKind::PartitionKey { position: 1 };
        have[1].kind = ColumnKind::PartitionKey { position: 0 };
        assert_eq!(diff_table(&table, &have).unsupported.len(), 1);
    }

    #[test]
    fn unknown_column_kinds_are_errors() {
        assert!(ColumnKind::from_system_schema("weird", 0, "none").is_err());
        assert_eq!(
            ColumnKind::from_system_schema("static", -1, "none"),
            Ok(ColumnKind::Static)
        );
    }
}
