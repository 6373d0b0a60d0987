//! Checks of each table (`spec.cassandra.table` or `tables[i]`): its columns, their value sources and
//! its primary key.

use std::collections::BTreeSet;

use super::accumulator::Problems;
use super::problem::{Problem, SpecProblem};
use crate::cql_type::CqlType;
use crate::json_pointer::JsonPointer;
use crate::spec::{ColumnSpec, KafkaPart, StreamPipelineSpec, TableSpec, limits};
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

    check_ttl_and_write_time(v, table, at);
    check_deletes(v, table, at);

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

/// A pointer into the record: well formed, not too long, not the root.
fn check_pointer(v: &mut Problems, pointer: &str, at: &str) {
    if pointer.len() > limits::POINTER_MAX {
        v.push(
            at.to_owned(),
            Problem::TooLong {
                max: limits::POINTER_MAX,
            },
        );
    }
    match JsonPointer::parse(pointer) {
        Ok(p) if p.is_root() => v.push(at.to_owned(), Problem::RootPointer),
        Ok(_) => {}
        Err(e) => v.push(at.to_owned(), e.into()),
    }
}

/// Kafka allows any string as a header name; these bounds keep what the
/// spec can name printable and within the CRD's length.
fn is_header_name(name: &str) -> bool {
    (1..=249).contains(&name.chars().count()) && !name.chars().any(char::is_control)
}

/// The table's TTL and write time.
fn check_ttl_and_write_time(v: &mut Problems, table: &TableSpec, at: &str) {
    if let Some(ttl) = &table.ttl {
        if ttl.seconds.is_none() && ttl.from.is_none() {
            v.push(format!("{at}.ttl"), Problem::Empty);
        }
        if let Some(seconds) = ttl.seconds {
            v.range(
                format!("{at}.ttl.seconds"),
                i64::from(seconds),
                (0, i64::from(limits::TTL_SECONDS_MAX)),
            );
        }
        if let Some(from) = &ttl.from {
            check_pointer(v, from, &format!("{at}.ttl.from"));
        }
    }
    if let Some(write_time) = &table.write_time {
        check_pointer(v, &write_time.from, &format!("{at}.writeTime.from"));
    }
}

/// Which records are deletes.
fn check_deletes(v: &mut Problems, table: &TableSpec, at: &str) {
    let Some(deletes) = &table.deletes else {
        return;
    };
    let at = format!("{at}.deletes");
    if !deletes.tombstones && !deletes.key_only && deletes.marker.is_none() {
        v.push(at.clone(), Problem::Empty);
    }
    if let Some(marker) = &deletes.marker {
        check_pointer(v, &marker.from, &format!("{at}.marker.from"));
        if marker.equals.is_empty() {
            v.push(format!("{at}.marker.equals"), Problem::Empty);
        }
    }
    if deletes.key_only {
        let in_key: BTreeSet<&str> = table.primary_key().collect();
        let others = table
            .columns
            .iter()
            .filter(|c| !in_key.contains(c.name.as_str()));
        let mut reads_value = false;
        for column in others {
            if column.whole_record == Some(true) {
                v.push(
                    format!("{at}.keyOnly"),
                    Problem::KeyOnlyWithWholeRecord(column.name.clone()),
                );
            }
            reads_value |= column.from.is_some() || column.template.is_some();
        }
        if !reads_value {
            v.push(format!("{at}.keyOnly"), Problem::KeyOnlyWithoutValueColumns);
        }
    }
}

/// Columns that read the Kafka record, against the rest of the spec: the
/// sources key a record by its partition key before there is a Kafka
/// record, so with sources no partition key column can come from one.
pub(super) fn check_kafka_columns(v: &mut Problems, spec: &StreamPipelineSpec) {
    if spec.sources.is_empty() {
        return;
    }
    // Only the first table keys the records; the others' keys are read
    // from the record at the sink, where the Kafka record exists.
    let Some(table) = spec.cassandra.key_table() else {
        return;
    };
    let at = spec.cassandra.table_path(0);
    for (i, name) in table.partition_key.iter().enumerate() {
        let Some(column) = table.column(name) else {
            continue;
        };
        let part = match (&column.from_kafka, &column.from_header) {
            (Some(part), _) => part.as_str(),
            (None, Some(_)) => "a header",
            (None, None) => continue,
        };
        v.push(
            format!("{at}.partitionKey[{i}]"),
            Problem::PartitionKeyFromKafka(name.clone(), part),
        );
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
        + usize::from(whole_record)
        + usize::from(column.from_kafka.is_some())
        + usize::from(column.from_header.is_some());
    if sources != 1 {
        v.push(at.to_owned(), Problem::ColumnSourceCount(sources));
    }
    if let Some(from) = &column.from {
        check_pointer(v, from, &format!("{at}.from"));
    }
    if let Some(header) = &column.from_header
        && !is_header_name(header)
    {
        v.push(
            format!("{at}.fromHeader"),
            Problem::KafkaHeaderName(header.clone()),
        );
    }
    if column.from_kafka == Some(KafkaPart::Timestamp) {
        if column.unit.is_some() {
            v.push(format!("{at}.unit"), Problem::UnitOfKafkaTimestamp);
        }
        if cql_type
            .as_ref()
            .is_ok_and(|t| !matches!(t, CqlType::Timestamp | CqlType::BigInt | CqlType::Text))
        {
            v.push(
                format!("{at}.type"),
                Problem::KafkaTimestampType(column.type_.clone()),
            );
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
        s.cassandra.tables_mut()[0].columns[1].type_ = "set<text>".into();
        s.cassandra.tables_mut()[0].clustering_key = vec![
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
        s.cassandra.tables_mut()[0].partition_key.clear();
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::NoPartitionKey)
        );
    }

    #[test]
    fn columns_need_one_value_source_of_a_sound_shape() {
        let mut s = spec();
        let column = &mut s.cassandra.tables_mut()[0].columns[1];
        column.template = Some("{/name/last}".into());
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::ColumnSourceCount(2))
        );
        let column = &mut s.cassandra.tables_mut()[0].columns[1];
        column.template = None;
        column.from = Some("name".into());
        assert!(
            problems(&s)
                .iter()
                .any(|p| matches!(p.problem, Problem::Pointer(_)))
        );
        s.cassandra.tables_mut()[0].columns[1].from = Some(String::new());
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::RootPointer)
        );
        s.cassandra.tables_mut()[0].columns[1] =
            ColumnSpec::from_pointer("seen", "text", "/seen").with_unit(EpochUnit::Seconds);
        assert!(
            problems(&s).iter().any(|p| p.field.ends_with(".unit")
                && matches!(p.problem, Problem::UnitWithoutTimestamp(_)))
        );
        for ty in ["timestamp", "list<timestamp>", "map<timestamp,text>"] {
            s.cassandra.tables_mut()[0].columns[1] =
                ColumnSpec::from_pointer("seen", ty, "/seen").with_unit(EpochUnit::Seconds);
            assert!(problems(&s).is_empty(), "{ty}: {:?}", problems(&s));
        }
        s.cassandra.tables_mut()[0].columns[1] = ColumnSpec {
            whole_record: Some(true),
            ..ColumnSpec::from_pointer("raw", "blob", "/x")
        };
        s.cassandra.tables_mut()[0].columns[1].from = None;
        assert!(
            problems(&s)
                .iter()
                .any(|p| matches!(p.problem, Problem::WholeRecordNotText(_)))
        );
        s.cassandra.tables_mut()[0]
            .columns
            .push(ColumnSpec::from_pointer("id", "text", "/id"));
        assert!(
            problems(&s)
                .iter()
                .any(|p| matches!(&p.problem, Problem::DuplicateColumn(c) if c == "id"))
        );
    }

    #[test]
    fn kafka_columns_ttl_and_write_time_are_checked() {
        use crate::spec::{KafkaPart, TtlSpec, WriteTimeSpec};
        let has = |s: &crate::spec::StreamPipelineSpec, field: &str, f: fn(&Problem) -> bool| {
            problems(s)
                .iter()
                .any(|p| p.field == field && f(&p.problem))
        };
        let mut s = spec();
        s.cassandra.tables_mut()[0].columns.extend([
            ColumnSpec::from_kafka("k", "text", KafkaPart::Key),
            ColumnSpec::from_kafka("at", "timestamp", KafkaPart::Timestamp),
            ColumnSpec::from_header("trace", "text", "trace-id"),
        ]);
        s.cassandra.tables_mut()[0].ttl = Some(TtlSpec {
            seconds: Some(3600),
            from: Some("/ttl".into()),
        });
        s.cassandra.tables_mut()[0].write_time = Some(WriteTimeSpec {
            from: "/updatedAt".into(),
            unit: EpochUnit::Milliseconds,
        });
        assert!(problems(&s).is_empty(), "{:?}", problems(&s));

        let t = "spec.cassandra.table";
        let mut bad = s.clone();
        bad.cassandra.tables_mut()[0].columns[2].from = Some("/k".into());
        assert!(has(&bad, &format!("{t}.columns[2]"), |p| matches!(
            p,
            Problem::ColumnSourceCount(2)
        )));
        let mut bad = s.clone();
        bad.cassandra.tables_mut()[0].columns[3].unit = Some(EpochUnit::Seconds);
        assert!(has(&bad, &format!("{t}.columns[3].unit"), |p| *p
            == Problem::UnitOfKafkaTimestamp));
        let mut bad = s.clone();
        bad.cassandra.tables_mut()[0].columns[3].type_ = "date".into();
        assert!(has(&bad, &format!("{t}.columns[3].type"), |p| matches!(
            p,
            Problem::KafkaTimestampType(_)
        )));
        let mut bad = s.clone();
        bad.cassandra.tables_mut()[0].columns[4].from_header = Some("line\nbreak".into());
        assert!(has(
            &bad,
            &format!("{t}.columns[4].fromHeader"),
            |p| matches!(p, Problem::KafkaHeaderName(_))
        ));
        let mut bad = s.clone();
        bad.cassandra.tables_mut()[0].ttl = Some(TtlSpec {
            seconds: Some(630_720_001),
            from: Some("ttl".into()),
        });
        assert!(has(&bad, &format!("{t}.ttl.seconds"), |p| matches!(
            p,
            Problem::OutOfRange { .. }
        )));
        assert!(has(&bad, &format!("{t}.ttl.from"), |p| matches!(
            p,
            Problem::Pointer(_)
        )));
        bad.cassandra.tables_mut()[0].ttl = Some(TtlSpec {
            seconds: None,
            from: None,
        });
        assert!(has(&bad, &format!("{t}.ttl"), |p| *p == Problem::Empty));
        let mut bad = s.clone();
        bad.cassandra.tables_mut()[0].write_time = Some(WriteTimeSpec {
            from: "".into(),
            unit: EpochUnit::Seconds,
        });
        assert!(has(&bad, &format!("{t}.writeTime.from"), |_| true));

        // The sources key records by the partition key from the value.
        let mut bad = s.clone();
        bad.cassandra.tables_mut()[0].partition_key = vec!["k".into()];
        assert!(has(
            &bad,
            &format!("{t}.partitionKey[0]"),
            |p| matches!(p, Problem::PartitionKeyFromKafka(c, "key") if c == "k")
        ));
        bad.sources.clear();
        assert!(
            problems(&bad).is_empty(),
            "without sources: {:?}",
            problems(&bad)
        );
    }

    #[test]
    fn deletes_name_at_least_one_kind_and_key_only_needs_value_columns() {
        use crate::spec::{DeleteMarker, DeletesSpec};
        let mut s = spec();
        s.cassandra.tables_mut()[0].deletes = Some(DeletesSpec::default());
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.field == "spec.cassandra.table.deletes" && p.problem == Problem::Empty)
        );
        s.cassandra.tables_mut()[0].deletes = Some(DeletesSpec {
            marker: Some(DeleteMarker {
                from: "op".into(),
                equals: String::new(),
            }),
            ..DeletesSpec::default()
        });
        let found = problems(&s);
        assert!(
            found
                .iter()
                .any(|p| p.field == "spec.cassandra.table.deletes.marker.from"
                    && matches!(p.problem, Problem::Pointer(_)))
        );
        assert!(
            found
                .iter()
                .any(|p| p.field == "spec.cassandra.table.deletes.marker.equals"
                    && p.problem == Problem::Empty)
        );

        s.cassandra.tables_mut()[0].deletes = Some(DeletesSpec {
            key_only: true,
            tombstones: true,
            ..DeletesSpec::default()
        });
        assert!(problems(&s).is_empty(), "{:?}", problems(&s));
        // With only key columns reading the value, every record is key-only.
        s.cassandra.tables_mut()[0].columns[1] =
            ColumnSpec::from_kafka("select", "text", crate::spec::KafkaPart::Key);
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::KeyOnlyWithoutValueColumns)
        );
        s.cassandra.tables_mut()[0].columns[1] = ColumnSpec::whole_record("select");
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::KeyOnlyWithWholeRecord("select".into()))
        );
    }
}
