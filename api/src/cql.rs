//! CQL statements for the pipeline's keyspace and table, built as text with
//! every identifier quoted by [`quote_cql_identifier`].
//!
//! Names are validated before they get here ([`crate::validate_spec`]);
//! quoting is the second line of defence, and it keeps names that happen
//! to be CQL keywords (`select`, `key`) usable.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::cql_type::{CqlType, CqlTypeError};
use crate::spec::{KeyspaceSpec, Replication, ReplicationClass, TableSpec};

/// Quotes a CQL identifier: wraps it in double quotes and doubles any double
/// quote inside, so it is read as one identifier whatever it holds, and its
/// case is kept.
pub fn quote_cql_identifier(identifier: &str) -> String {
    let mut quoted = String::with_capacity(identifier.len() + 2);
    quoted.push('"');
    for c in identifier.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    quoted
}

/// `"keyspace"."table"`.
pub fn qualified_table(keyspace: &str, table: &str) -> String {
    format!(
        "{}.{}",
        quote_cql_identifier(keyspace),
        quote_cql_identifier(table)
    )
}

/// A CQL string literal: single quotes, inner ones doubled.
fn string_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The `{'class': ..., ...}` map of a keyspace's replication.
fn replication_literal(replication: &Replication) -> String {
    let mut out = format!("{{'class': {}", string_literal(replication.class.as_str()));
    match replication.class {
        ReplicationClass::SimpleStrategy => {
            let factor = replication.replication_factor.unwrap_or(1);
            let _ = write!(out, ", 'replication_factor': {factor}");
        }
        ReplicationClass::NetworkTopologyStrategy => {
            for (dc, factor) in replication.data_centers.iter().flatten() {
                let _ = write!(out, ", {}: {factor}", string_literal(dc));
            }
        }
    }
    out.push('}');
    out
}

/// `CREATE KEYSPACE IF NOT EXISTS` with the declared replication.
pub fn create_keyspace(keyspace: &KeyspaceSpec) -> String {
    format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = {}",
        quote_cql_identifier(&keyspace.name),
        replication_literal(&keyspace.replication)
    )
}

/// `ALTER KEYSPACE` to the declared replication. After raising a
/// replication factor, existing data needs a repair to reach new replicas.
pub fn alter_keyspace_replication(keyspace: &KeyspaceSpec) -> String {
    format!(
        "ALTER KEYSPACE {} WITH replication = {}",
        quote_cql_identifier(&keyspace.name),
        replication_literal(&keyspace.replication)
    )
}

/// The replication map as `system_schema.keyspaces.replication` shows it.
pub fn replication_map(replication: &Replication) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    map.insert(
        "class".to_owned(),
        format!(
            "org.apache.cassandra.locator.{}",
            replication.class.as_str()
        ),
    );
    match replication.class {
        ReplicationClass::SimpleStrategy => {
            let factor = replication.replication_factor.unwrap_or(1);
            map.insert("replication_factor".to_owned(), factor.to_string());
        }
        ReplicationClass::NetworkTopologyStrategy => {
            for (dc, factor) in replication.data_centers.iter().flatten() {
                map.insert(dc.clone(), factor.to_string());
            }
        }
    }
    map
}

/// Whether an observed `system_schema.keyspaces.replication` map is the
/// declared replication. The class may be reported with or without its
/// package.
pub fn replication_matches(declared: &Replication, observed: &BTreeMap<String, String>) -> bool {
    let short = |class: &str| class.rsplit('.').next().unwrap_or_default().to_owned();
    let mut want = replication_map(declared);
    let mut have = observed.clone();
    for map in [&mut want, &mut have] {
        if let Some(class) = map.get_mut("class") {
            *class = short(class);
        }
    }
    want == have
}

/// Where the declared replication has fewer replicas than the keyspace has
/// (in any datacenter, or a datacenter left out), what would be lost, as a
/// sentence. Lowering replication changes every table of a keyspace that
/// other pipelines may share, so the operator never does it. A change of
/// strategy class is not judged here.
pub fn replication_lowered(
    declared: &Replication,
    observed: &BTreeMap<String, String>,
) -> Option<String> {
    let short = |class: &str| class.rsplit('.').next().unwrap_or_default().to_owned();
    let want = replication_map(declared);
    let class_of = |m: &BTreeMap<String, String>| m.get("class").map(|c| short(c));
    if class_of(&want) != class_of(observed) {
        return None;
    }
    let lower: Vec<String> = observed
        .iter()
        .filter(|(k, _)| k.as_str() != "class")
        .filter_map(|(k, have)| {
            let have: i64 = have.parse().ok()?;
            let want: i64 = want.get(k).and_then(|w| w.parse().ok()).unwrap_or(0);
            (want < have).then(|| format!("{k} {have} -> {want}"))
        })
        .collect();
    (!lower.is_empty()).then(|| lower.join(", "))
}

/// `CREATE TABLE IF NOT EXISTS` with the declared columns, primary key and
/// clustering order.
pub fn create_table(keyspace: &str, table: &TableSpec) -> Result<String, CqlTypeError> {
    let mut cql = format!(
        "CREATE TABLE IF NOT EXISTS {} (",
        qualified_table(keyspace, &table.name)
    );
    for column in &table.columns {
        let cql_type: CqlType = column.type_.parse()?;
        let _ = write!(cql, "{} {cql_type}, ", quote_cql_identifier(&column.name));
    }
    let partition = quoted_list(table.partition_key.iter().map(String::as_str));
    let clustering = quoted_list(table.clustering_key.iter().map(|c| c.name.as_str()));
    if clustering.is_empty() {
        let _ = write!(cql, "PRIMARY KEY (({partition})))");
    } else {
        let _ = write!(cql, "PRIMARY KEY (({partition}), {clustering}))");
        let order: Vec<String> = table
            .clustering_key
            .iter()
            .map(|c| format!("{} {}", quote_cql_identifier(&c.name), c.order.as_str()))
            .collect();
        let _ = write!(cql, " WITH CLUSTERING ORDER BY ({})", order.join(", "));
    }
    Ok(cql)
}

/// [`create_table`] with the table's `comment` set in the same statement,
/// so a table is never seen without the owner recorded in it.
pub fn create_table_with_comment(
    keyspace: &str,
    table: &TableSpec,
    comment: &str,
) -> Result<String, CqlTypeError> {
    let base = create_table(keyspace, table)?;
    let joiner = if table.clustering_key.is_empty() {
        "WITH"
    } else {
        "AND"
    };
    Ok(format!(
        "{base} {joiner} comment = {}",
        string_literal(comment)
    ))
}

fn quoted_list<'a>(names: impl Iterator<Item = &'a str>) -> String {
    names
        .map(quote_cql_identifier)
        .collect::<Vec<_>>()
        .join(", ")
}

/// `ALTER TABLE ... ADD` one column.
pub fn alter_table_add(keyspace: &str, table: &str, column: &str, cql_type: &CqlType) -> String {
    format!(
        "ALTER TABLE {} ADD {} {cql_type}",
        qualified_table(keyspace, table),
        quote_cql_identifier(column)
    )
}

/// `ALTER TABLE ... WITH comment`: the table's comment is where the
/// operator records which pipeline owns the table.
pub fn set_table_comment(keyspace: &str, table: &str, comment: &str) -> String {
    format!(
        "ALTER TABLE {} WITH comment = {}",
        qualified_table(keyspace, table),
        string_literal(comment)
    )
}

/// `DROP TABLE IF EXISTS`, for `deletionPolicy: Delete`.
pub fn drop_table(keyspace: &str, table: &str) -> String {
    format!("DROP TABLE IF EXISTS {}", qualified_table(keyspace, table))
}

/// The sink's prepared insert: one bind marker per column, in the order of
/// [`crate::RowMapper::column_names`], then the write timestamp in
/// microseconds. Binding a timestamp taken from the record's Kafka message
/// makes a replayed write identical to the first, so replays are
/// idempotent.
pub fn insert(keyspace: &str, table: &TableSpec) -> String {
    let names = quoted_list(table.columns.iter().map(|c| c.name.as_str()));
    let markers = vec!["?"; table.columns.len()].join(", ");
    // A TTL marker only where the spec has a TTL: bound unset, it gives the
    // table's default_time_to_live, so a table without `ttl` keeps its own.
    let ttl = if table.ttl.is_some() {
        "TTL ? AND "
    } else {
        ""
    };
    format!(
        "INSERT INTO {} ({names}) VALUES ({markers}) USING {ttl}TIMESTAMP ?",
        qualified_table(keyspace, &table.name)
    )
}

/// The sink's prepared delete of one row: the write timestamp first
/// (`USING TIMESTAMP ?`, from the same chain as the inserts, so a replay
/// deletes nothing a later record wrote), then one marker per primary key
/// column in [`TableSpec::primary_key`] order.
pub fn delete(keyspace: &str, table: &TableSpec) -> String {
    let conditions: Vec<String> = table
        .primary_key()
        .map(|name| format!("{} = ?", quote_cql_identifier(name)))
        .collect();
    format!(
        "DELETE FROM {} USING TIMESTAMP ? WHERE {}",
        qualified_table(keyspace, &table.name),
        conditions.join(" AND ")
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::spec::{ClusteringColumn, ClusteringOrder, ColumnSpec};

    fn keyspace(replication: Replication) -> KeyspaceSpec {
        KeyspaceSpec {
            name: "spark_streams".into(),
            replication,
        }
    }

    fn table() -> TableSpec {
        TableSpec {
            ttl: None,
            write_time: None,
            deletes: None,
            name: "created_users".into(),
            columns: vec![
                ColumnSpec::from_pointer("id", "uuid", "/login/uuid"),
                ColumnSpec::from_pointer("registered", "timestamp", "/registered/date"),
                ColumnSpec::from_pointer("tags", "set<varchar>", "/tags"),
                ColumnSpec::from_pointer("select", "map<text,int>", "/scores"),
            ],
            partition_key: vec!["id".into()],
            clustering_key: vec![],
        }
    }

    #[test]
    fn keyspaces_are_created_and_altered_with_their_replication() {
        let ks = keyspace(Replication::simple(1));
        assert_eq!(
            create_keyspace(&ks),
            "CREATE KEYSPACE IF NOT EXISTS \"spark_streams\" WITH replication = {'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        let nts = keyspace(Replication {
            class: ReplicationClass::NetworkTopologyStrategy,
            replication_factor: None,
            data_centers: Some([("dc1".into(), 3), ("dc2".into(), 2)].into()),
        });
        assert_eq!(
            alter_keyspace_replication(&nts),
            "ALTER KEYSPACE \"spark_streams\" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
    }

    #[test]
    fn observed_replication_is_compared_by_meaning() {
        let declared = Replication::simple(3);
        let observed: BTreeMap<String, String> = [
            ("class", "org.apache.cassandra.locator.SimpleStrategy"),
            ("replication_factor", "3"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(replication_matches(&declared, &observed));
        let mut short = observed.clone();
        short.insert("class".into(), "SimpleStrategy".into());
        assert!(replication_matches(&declared, &short));
        assert!(!replication_matches(&Replication::simple(1), &observed));
    }

    #[test]
    fn tables_are_created_with_quoted_names_and_canonical_types() {
        assert_eq!(
            create_table("spark_streams", &table()).unwrap(),
            "CREATE TABLE IF NOT EXISTS \"spark_streams\".\"created_users\" (\"id\" uuid, \"registered\" timestamp, \"tags\" set<text>, \"select\" map<text, int>, PRIMARY KEY ((\"id\")))"
        );
    }

    #[test]
    fn clustering_keys_get_a_clustering_order() {
        let mut t = table();
        t.partition_key = vec!["id".into(), "tags".into()];
        t.columns[2].type_ = "text".into();
        t.clustering_key = vec![ClusteringColumn {
            name: "registered".into(),
            order: ClusteringOrder::Desc,
        }];
        assert!(create_table("ks", &t).unwrap().ends_with(
            "PRIMARY KEY ((\"id\", \"tags\"), \"registered\")) WITH CLUSTERING ORDER BY (\"registered\" DESC)"
        ));
    }

    #[test]
    fn the_delete_names_every_primary_key_column_after_the_timestamp() {
        let mut t = table();
        t.clustering_key = vec![ClusteringColumn {
            name: "registered".into(),
            order: ClusteringOrder::Desc,
        }];
        assert_eq!(
            delete("ks", &t),
            r#"DELETE FROM "ks"."created_users" USING TIMESTAMP ? WHERE "id" = ? AND "registered" = ?"#
        );
    }

    #[test]
    fn inserts_bind_every_column_and_the_write_timestamp() {
        assert_eq!(
            insert("spark_streams", &table()),
            "INSERT INTO \"spark_streams\".\"created_users\" (\"id\", \"registered\", \"tags\", \"select\") VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
        );
        let with_ttl = TableSpec {
            ttl: Some(crate::spec::TtlSpec {
                seconds: Some(60),
                from: None,
            }),
            ..table()
        };
        assert!(
            insert("spark_streams", &with_ttl)
                .ends_with("VALUES (?, ?, ?, ?) USING TTL ? AND TIMESTAMP ?")
        );
    }

    #[test]
    fn columns_are_added_and_tables_dropped_by_quoted_name() {
        assert_eq!(
            alter_table_add("ks", "t", "phone", &CqlType::Text),
            "ALTER TABLE \"ks\".\"t\" ADD \"phone\" text"
        );
        assert_eq!(drop_table("ks", "t"), "DROP TABLE IF EXISTS \"ks\".\"t\"");
    }

    #[test]
    fn hostile_names_stay_inside_their_quotes() {
        // Validation refuses these; quoting must hold even if it did not.
        let hostile = "x\" text); DROP KEYSPACE prod; --";
        let cql = alter_table_add("ks", "t", hostile, &CqlType::Text);
        assert_eq!(
            cql,
            "ALTER TABLE \"ks\".\"t\" ADD \"x\"\" text); DROP KEYSPACE prod; --\" text"
        );
        let mut ks = keyspace(Replication {
            class: ReplicationClass::NetworkTopologyStrategy,
            replication_factor: None,
            data_centers: Some([("dc1': 1}; DROP KEYSPACE prod; --".into(), 1)].into()),
        });
        ks.name = "a\"b".into();
        assert_eq!(
            create_keyspace(&ks),
            "CREATE KEYSPACE IF NOT EXISTS \"a\"\"b\" WITH replication = {'class': 'NetworkTopologyStrategy', 'dc1'': 1}; DROP KEYSPACE prod; --': 1}"
        );
    }

    #[test]
    fn quoting_doubles_inner_quotes_and_keeps_case() {
        assert_eq!(quote_cql_identifier("users"), "\"users\"");
        assert_eq!(quote_cql_identifier("firstName"), "\"firstName\"");
        assert_eq!(quote_cql_identifier("select"), "\"select\"");
        assert_eq!(quote_cql_identifier(""), "\"\"");
        assert_eq!(quote_cql_identifier("a\"b"), "\"a\"\"b\"");
        assert_eq!(
            quote_cql_identifier("x\"; DROP KEYSPACE prod; --"),
            "\"x\"\"; DROP KEYSPACE prod; --\""
        );
        // However many quotes go in, the result is one quoted identifier:
        // inside the outer quotes, quotes only come in pairs.
        for attempt in ["\"", "\"\"", "a\"\"\"b", "\";\""] {
            let quoted = quote_cql_identifier(attempt);
            let inner = &quoted[1..quoted.len() - 1];
            assert_eq!(
                inner.replace("\"\"", "").matches('"').count(),
                0,
                "{attempt:?}"
            );
            assert_eq!(inner.replace("\"\"", "\""), attempt);
        }
    }
}
