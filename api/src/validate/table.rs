//! Checks of `spec.cassandra.table`: its columns, their value sources and
//! its primary key.

use std::collections::BTreeSet;

use super::accumulator::Problems;
use super::problem::{Problem, SpecProblem};
use crate::cql_type::CqlType;
use crate::json_pointer::JsonPointer;
use crate::spec::{ColumnSpec, TableSpec, limits};
use crate::template::Template;

/// Problems in a table's columns and keys; the row mapper compiles only a
/// table without any.
pub(crate) fn table_problems(table: &TableSpec, at: &str) -> Vec<SpecProblem> {
    let mut v = Problems::default();
    check_table(&mut v, table, at);
    v.problems
}

pub(super) fn check_table(v: &mut Problems, table: &TableSpec, at: &str) {
    v.identifier(format!("{at}.name"), &table.name);
    if table.columns.is_empty() {
        v.push(format!("{at}.columns"), Problem::Empty);
    }
    v.count(
        format!("{at}.columns"),
        table.columns.len(),
        limits::COLUMNS_MAX,
    );
    let mut seen = BTreeSet::new();
    for (i, column) in table.columns.iter().enumerate() {
        let at = format!("{at}.columns[{i}]");
        if !seen.insert(column.name.as_str()) {
            v.push(
                format!("{at}.name"),
                Problem::DuplicateColumn(column.name.clone()),
            );
        }
        check_column(v, column, &at);
    }

    if table.partition_key.is_empty() {
        v.push(format!("{at}.partitionKey"), Problem::NoPartitionKey);
    }
    v.count(
        format!("{at}.partitionKey"),
        table.partition_key.len(),
        limits::KEY_COLUMNS_MAX,
    );
    v.count(
        format!("{at}.clusteringKey"),
        table.clustering_key.len(),
        limits::KEY_COLUMNS_MAX,
    );
    let key_columns = table
        .partition_key
        .iter()
        .enumerate()
        .map(|(i, name)| (format!("{at}.partitionKey[{i}]"), name))
        .chain(
            table
                .clustering_key
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("{at}.clusteringKey[{i}].name"), &c.name)),
        );
    let mut in_key = BTreeSet::new();
    for (field, name) in key_columns {
        if !in_key.insert(name.as_str()) {
            v.push(field, Problem::RepeatedKeyColumn(name.clone()));
            continue;
        }
        match table.column(name) {
            None => v.push(field, Problem::UnknownColumn(name.clone())),
            Some(column) => {
                if let Ok(t) = column.type_.parse::<CqlType>()
                    && t.is_collection()
                {
                    v.push(
                        field,
                        Problem::CollectionInKey {
                            column: name.clone(),
                            cql_type: column.type_.clone(),
                        },
                    );
                }
            }
        }
    }
}

fn check_column(v: &mut Problems, column: &ColumnSpec, at: &str) {
    v.identifier(format!("{at}.name"), &column.name);
    let cql_type = column.type_.parse::<CqlType>();
    if let Err(e) = &cql_type {
        v.push(format!("{at}.type"), e.clone().into());
    }
    let whole_record = column.whole_record == Some(true);
    let sources = usize::from(column.from.is_some())
        + usize::from(column.template.is_some())
        + usize::from(whole_record);
    if sources != 1 {
        v.push(at.to_owned(), Problem::ColumnSourceCount(sources));
    }
    if let Some(from) = &column.from {
        if from.len() > limits::POINTER_MAX {
            v.push(
                format!("{at}.from"),
                Problem::TooLong {
                    max: limits::POINTER_MAX,
                },
            );
        }
        match JsonPointer::parse(from) {
            Ok(p) if p.is_root() => v.push(format!("{at}.from"), Problem::RootPointer),
            Ok(_) => {}
            Err(e) => v.push(format!("{at}.from"), e.into()),
        }
    }
    if let Some(template) = &column.template {
        if template.len() > limits::TEMPLATE_MAX {
            v.push(
                format!("{at}.template"),
                Problem::TooLong {
                    max: limits::TEMPLATE_MAX,
                },
            );
        }
        if let Err(e) = Template::parse(template) {
            v.push(format!("{at}.template"), e.into());
        }
    }
    if whole_record && cql_type.as_ref().is_ok_and(|t| *t != CqlType::Text) {
        v.push(
            format!("{at}.type"),
            Problem::WholeRecordNotText(column.type_.clone()),
        );
    }
    if column.unit.is_some() && cql_type.as_ref().is_ok_and(|t| !t.holds_timestamps()) {
        v.push(
            format!("{at}.unit"),
            Problem::UnitWithoutTimestamp(column.type_.clone()),
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::spec::{ClusteringColumn, ClusteringOrder, ColumnSpec, EpochUnit};
    use crate::validate::Problem;
    use crate::validate::fixture::{problems, spec};

    #[test]
    fn keys_must_name_distinct_scalar_columns() {
        let mut s = spec();
        s.cassandra.table.columns[1].type_ = "set<text>".into();
        s.cassandra.table.clustering_key = vec![
            ClusteringColumn {
                name: "select".into(),
                order: ClusteringOrder::Asc,
            },
            ClusteringColumn {
                name: "id".into(),
                order: ClusteringOrder::Desc,
            },
        ];
        let found: Vec<Problem> = problems(&s).into_iter().map(|p| p.problem).collect();
        assert!(
            found.iter().any(
                |p| matches!(p, Problem::CollectionInKey { column, .. } if column == "select")
            )
        );
        assert!(
            found
                .iter()
                .any(|p| matches!(p, Problem::RepeatedKeyColumn(c) if c == "id"))
        );
        s.cassandra.table.partition_key.clear();
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::NoPartitionKey)
        );
    }

    #[test]
    fn columns_need_one_value_source_of_a_sound_shape() {
        let mut s = spec();
        let column = &mut s.cassandra.table.columns[1];
        column.template = Some("{/name/last}".into());
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::ColumnSourceCount(2))
        );
        let column = &mut s.cassandra.table.columns[1];
        column.template = None;
        column.from = Some("name".into());
        assert!(
            problems(&s)
                .iter()
                .any(|p| matches!(p.problem, Problem::Pointer(_)))
        );
        s.cassandra.table.columns[1].from = Some(String::new());
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::RootPointer)
        );
        s.cassandra.table.columns[1] =
            ColumnSpec::from_pointer("seen", "text", "/seen").with_unit(EpochUnit::Seconds);
        assert!(
            problems(&s).iter().any(|p| p.field.ends_with(".unit")
                && matches!(p.problem, Problem::UnitWithoutTimestamp(_)))
        );
        for ty in ["timestamp", "list<timestamp>", "map<timestamp,text>"] {
            s.cassandra.table.columns[1] =
                ColumnSpec::from_pointer("seen", ty, "/seen").with_unit(EpochUnit::Seconds);
            assert!(problems(&s).is_empty(), "{ty}: {:?}", problems(&s));
        }
        s.cassandra.table.columns[1] = ColumnSpec {
            whole_record: Some(true),
            ..ColumnSpec::from_pointer("raw", "blob", "/x")
        };
        s.cassandra.table.columns[1].from = None;
        assert!(
            problems(&s)
                .iter()
                .any(|p| matches!(p.problem, Problem::WholeRecordNotText(_)))
        );
        s.cassandra
            .table
            .columns
            .push(ColumnSpec::from_pointer("id", "text", "/id"));
        assert!(
            problems(&s)
                .iter()
                .any(|p| matches!(&p.problem, Problem::DuplicateColumn(c) if c == "id"))
        );
    }
}
