//! Mapping one JSON record to one row of the pipeline's table.
//!
//! A [`RowMapper`] is compiled once from the table spec (types parsed,
//! pointers split, templates parsed), so mapping a record only walks the
//! record. Ingest uses the same mapper to refuse records the sink could not
//! write, and to key Kafka messages by the partition key.

use std::fmt;

use serde_json::Value;

use crate::cell::{Cell, CellValue};
use crate::coerce::{ValueError, coerce};
use crate::cql_type::CqlType;
use crate::json_pointer::JsonPointer;
use crate::spec::TableSpec;
use crate::template::Template;
use crate::validate::{InvalidSpec, table_problems};

/// Maps records to rows of one table; see the module documentation.
#[derive(Clone, Debug)]
pub struct RowMapper {
    columns: Vec<MappedColumn>,
    /// Indices into `columns`, in partition key order.
    partition_key: Vec<usize>,
    /// Indices into `columns` of every primary key column.
    primary_key: Vec<usize>,
}

/// One column of the row and where its value comes from.
#[derive(Clone, Debug)]
pub struct MappedColumn {
    name: String,
    cql_type: CqlType,
    source: ColumnSource,
}

/// Where a column's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnSource {
    Pointer(JsonPointer),
    Template(Template),
    WholeRecord,
}

impl MappedColumn {
    /// The column's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The column's type.
    pub fn cql_type(&self) -> &CqlType {
        &self.cql_type
    }

    /// Where the column's value comes from.
    pub fn source(&self) -> &ColumnSource {
        &self.source
    }
}

impl fmt::Display for ColumnSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pointer(p) => write!(f, "from {p}"),
            Self::Template(_) => f.write_str("from its template"),
            Self::WholeRecord => f.write_str("from the whole record"),
        }
    }
}

/// Why a record cannot become a row: every column that failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct RecordError {
    pub problems: Vec<ColumnError>,
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("record does not fit the table: ")?;
        for (i, problem) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{problem}")?;
        }
        Ok(())
    }
}

/// Why one column of a record cannot be written.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("column {column:?} ({source_description}, {cql_type}): {kind}")]
pub struct ColumnError {
    pub column: String,
    /// Where the value came from, as in `from /login/uuid`.
    pub source_description: String,
    pub cql_type: String,
    pub kind: ColumnErrorKind,
}

/// What went wrong with a column's value.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ColumnErrorKind {
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("the record has no value for this primary key column")]
    MissingKey,
    #[error("the record's value for this primary key column is null")]
    NullKey,
    #[error("the record's value for this partition key column is empty, which Cassandra refuses")]
    EmptyKey,
}

impl RowMapper {
    /// Compiles the mapper for `table`, refusing a table spec with problems.
    pub fn new(table: &TableSpec) -> Result<Self, InvalidSpec> {
        let problems = table_problems(table, "spec.cassandra.table");
        if !problems.is_empty() {
            return Err(InvalidSpec { problems });
        }
        let mut columns = Vec::with_capacity(table.columns.len());
        for spec in &table.columns {
            // table_problems has parsed all of these already; errors here
            // would mean the two disagree, so they are reported, not unwrapped.
            let invalid = |problem: crate::validate::Problem| InvalidSpec {
                problems: vec![crate::validate::SpecProblem {
                    field: format!("spec.cassandra.table.columns[{}]", spec.name),
                    problem,
                }],
            };
            let cql_type: CqlType = spec.type_.parse().map_err(|e| invalid(Into::into(e)))?;
            let source = match (&spec.from, &spec.template) {
                (Some(pointer), _) => ColumnSource::Pointer(
                    JsonPointer::parse(pointer).map_err(|e| invalid(e.into()))?,
                ),
                (None, Some(template)) => ColumnSource::Template(
                    Template::parse(template).map_err(|e| invalid(e.into()))?,
                ),
                (None, None) => ColumnSource::WholeRecord,
            };
            columns.push(MappedColumn {
                name: spec.name.clone(),
                cql_type,
                source,
            });
        }
        let index_of = |name: &str| columns.iter().position(|c| c.name == name);
        let partition_key: Vec<usize> = table
            .partition_key
            .iter()
            .filter_map(|k| index_of(k))
            .collect();
        let primary_key = table.primary_key().filter_map(index_of).collect();
        Ok(Self {
            columns,
            partition_key,
            primary_key,
        })
    }

    /// The columns, in the order of the row's cells.
    pub fn columns(&self) -> &[MappedColumn] {
        &self.columns
    }

    /// The column names, in the order of the row's cells.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// Maps `record` to a row: one cell per column, in column order.
    pub fn map(&self, record: &Value) -> Result<Vec<Cell>, RecordError> {
        let mut row = Vec::with_capacity(self.columns.len());
        let mut problems = Vec::new();
        for (i, column) in self.columns.iter().enumerate() {
            match self.cell(i, column, record) {
                Ok(cell) => row.push(cell),
                Err(problem) => {
                    problems.push(*problem);
                    row.push(Cell::Unset);
                }
            }
        }
        if problems.is_empty() {
            Ok(row)
        } else {
            Err(RecordError { problems })
        }
    }

    /// Checks that `record` maps to a row, as ingest does before producing
    /// it to Kafka.
    pub fn validate(&self, record: &Value) -> Result<(), RecordError> {
        self.map(record).map(|_| ())
    }

    /// The record's partition key as text, for keying its Kafka message: the
    /// value of a one-column key as plain text (a UUID hyphenated, a
    /// timestamp in RFC 3339), a JSON array of those for several columns.
    pub fn partition_key(&self, record: &Value) -> Result<String, RecordError> {
        let mut values = Vec::with_capacity(self.partition_key.len());
        let mut problems = Vec::new();
        for &i in &self.partition_key {
            match self.cell(i, &self.columns[i], record) {
                Ok(Cell::Value(v)) => values.push(v),
                Ok(_) => {}
                Err(problem) => problems.push(*problem),
            }
        }
        if !problems.is_empty() {
            return Err(RecordError { problems });
        }
        Ok(key_text(&values))
    }

    /// The partition key of a row [`RowMapper::map`] made, as
    /// [`RowMapper::partition_key`] gives it; `None` if the row is not one
    /// of this mapper's.
    pub fn partition_key_of_row(&self, row: &[Cell]) -> Option<String> {
        let values = self
            .partition_key
            .iter()
            .map(|&i| row.get(i).and_then(Cell::value).cloned())
            .collect::<Option<Vec<_>>>()?;
        Some(key_text(&values))
    }

    fn cell(
        &self,
        index: usize,
        column: &MappedColumn,
        record: &Value,
    ) -> Result<Cell, Box<ColumnError>> {
        // Boxed: errors are rare, and a large Err would slow every Ok.
        let fail = |kind: ColumnErrorKind| {
            Box::new(ColumnError {
                column: column.name.clone(),
                source_description: column.source.to_string(),
                cql_type: column.cql_type.to_string(),
                kind,
            })
        };
        let cell = match &column.source {
            ColumnSource::Pointer(pointer) => match pointer.get(record) {
                None => Cell::Unset,
                Some(Value::Null) => Cell::Null,
                Some(value) => {
                    Cell::Value(coerce(value, &column.cql_type).map_err(|e| fail(e.into()))?)
                }
            },
            ColumnSource::Template(template) => match template.render(record) {
                None => Cell::Unset,
                Some(text) => Cell::Value(
                    coerce(&Value::String(text), &column.cql_type).map_err(|e| fail(e.into()))?,
                ),
            },
            ColumnSource::WholeRecord => Cell::Value(CellValue::Text(record.to_string())),
        };
        if self.primary_key.contains(&index) {
            match &cell {
                Cell::Unset => return Err(fail(ColumnErrorKind::MissingKey)),
                Cell::Null => return Err(fail(ColumnErrorKind::NullKey)),
                Cell::Value(CellValue::Text(s) | CellValue::Ascii(s))
                    if s.is_empty() && self.partition_key.contains(&index) =>
                {
                    return Err(fail(ColumnErrorKind::EmptyKey));
                }
                Cell::Value(CellValue::Blob(b))
                    if b.is_empty() && self.partition_key.contains(&index) =>
                {
                    return Err(fail(ColumnErrorKind::EmptyKey));
                }
                Cell::Value(_) => {}
            }
        }
        Ok(cell)
    }
}

fn key_text(values: &[CellValue]) -> String {
    match values {
        [one] => one.to_string(),
        many => {
            let parts: Vec<String> = many.iter().map(ToString::to_string).collect();
            Value::from(parts).to_string()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::spec::{ClusteringColumn, ClusteringOrder, ColumnSpec};

    fn users_table() -> TableSpec {
        TableSpec {
            name: "created_users".into(),
            columns: vec![
                ColumnSpec::from_pointer("id", "uuid", "/login/uuid"),
                ColumnSpec::from_pointer("first_name", "text", "/name/first"),
                ColumnSpec::from_pointer("post_code", "text", "/location/postcode"),
                ColumnSpec::from_pointer("age", "int", "/dob/age"),
                ColumnSpec::from_template(
                    "address",
                    "text",
                    "{/location/street/number} {/location/street/name}",
                ),
                ColumnSpec::whole_record("raw"),
            ],
            partition_key: vec!["id".into()],
            clustering_key: vec![],
        }
    }

    fn user() -> Value {
        json!({
            "login": {"uuid": "3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"},
            "name": {"first": "Maja"},
            "location": {"postcode": 72215, "street": {"number": 4127, "name": "Storgatan"}},
            "dob": {"age": "38"}
        })
    }

    #[test]
    fn maps_a_record_to_cells_in_column_order() {
        let mapper = RowMapper::new(&users_table()).unwrap();
        let row = mapper.map(&user()).unwrap();
        assert_eq!(
            mapper.column_names().collect::<Vec<_>>(),
            ["id", "first_name", "post_code", "age", "address", "raw"]
        );
        assert_eq!(
            row[0],
            Cell::Value(CellValue::Uuid(
                Uuid::parse_str("3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1").unwrap()
            ))
        );
        assert_eq!(row[1], Cell::Value(CellValue::Text("Maja".into())));
        assert_eq!(row[2], Cell::Value(CellValue::Text("72215".into())));
        assert_eq!(row[3], Cell::Value(CellValue::Int(38)));
        assert_eq!(
            row[4],
            Cell::Value(CellValue::Text("4127 Storgatan".into()))
        );
        let Cell::Value(CellValue::Text(raw)) = &row[5] else {
            panic!("raw is not text");
        };
        assert_eq!(serde_json::from_str::<Value>(raw).unwrap(), user());
    }

    #[test]
    fn missing_fields_are_unset_and_nulls_are_null() {
        let mapper = RowMapper::new(&users_table()).unwrap();
        let mut record = user();
        record["name"] = json!({});
        record["dob"]["age"] = Value::Null;
        record["location"] = json!({});
        let row = mapper.map(&record).unwrap();
        assert_eq!(row[1], Cell::Unset);
        assert_eq!(row[2], Cell::Unset);
        assert_eq!(row[3], Cell::Null);
        assert_eq!(row[4], Cell::Unset, "a template with every field missing");
    }

    #[test]
    fn primary_key_columns_must_have_a_value() {
        let mapper = RowMapper::new(&users_table()).unwrap();
        let mut record = user();
        record["login"] = json!({});
        let err = mapper.map(&record).unwrap_err();
        assert_eq!(err.problems.len(), 1);
        assert_eq!(err.problems[0].kind, ColumnErrorKind::MissingKey);
        record["login"]["uuid"] = Value::Null;
        let err = mapper.validate(&record).unwrap_err();
        assert_eq!(err.problems[0].kind, ColumnErrorKind::NullKey);
    }

    #[test]
    fn errors_name_every_bad_column_and_where_its_value_came_from() {
        let mapper = RowMapper::new(&users_table()).unwrap();
        let mut record = user();
        record["login"]["uuid"] = json!("not-a-uuid");
        record["dob"]["age"] = json!("thirty-eight");
        let err = mapper.map(&record).unwrap_err();
        assert_eq!(err.problems.len(), 2);
        assert_eq!(
            err.to_string(),
            "record does not fit the table: \
             column \"id\" (from /login/uuid, uuid): \"not-a-uuid\" is not a UUID; \
             column \"age\" (from /dob/age, int): \"thirty-eight\" is not a whole number"
        );
    }

    #[test]
    fn partition_key_is_the_keys_text() {
        let mapper = RowMapper::new(&users_table()).unwrap();
        assert_eq!(
            mapper.partition_key(&user()).unwrap(),
            "3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"
        );
        let row = mapper.map(&user()).unwrap();
        assert_eq!(
            mapper.partition_key_of_row(&row).as_deref(),
            Some("3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1")
        );
        // Uppercase input keys the same partition as lowercase.
        let mut upper = user();
        upper["login"]["uuid"] = json!("3F1D9C52-8A4E-4B7E-9D0A-6C2B51E8F7A1");
        assert_eq!(
            mapper.partition_key(&upper).unwrap(),
            mapper.partition_key(&user()).unwrap()
        );
    }

    #[test]
    fn composite_keys_are_json_arrays_and_empty_text_keys_are_refused() {
        let table = TableSpec {
            name: "events".into(),
            columns: vec![
                ColumnSpec::from_pointer("tenant", "text", "/tenant"),
                ColumnSpec::from_pointer("day", "date", "/at"),
                ColumnSpec::from_pointer("at", "timestamp", "/at"),
            ],
            partition_key: vec!["tenant".into(), "day".into()],
            clustering_key: vec![ClusteringColumn {
                name: "at".into(),
                order: ClusteringOrder::Desc,
            }],
        };
        let mapper = RowMapper::new(&table).unwrap();
        let record = json!({"tenant": "acme", "at": "2024-05-31T10:00:00Z"});
        assert_eq!(
            mapper.partition_key(&record).unwrap(),
            r#"["acme","2024-05-31"]"#
        );
        let err = mapper
            .partition_key(&json!({"tenant": "", "at": "2024-05-31T10:00:00Z"}))
            .unwrap_err();
        assert_eq!(err.problems[0].kind, ColumnErrorKind::EmptyKey);
        // A clustering column is part of the primary key too.
        let err = mapper
            .map(&json!({"tenant": "acme", "at": null}))
            .unwrap_err();
        assert!(
            err.problems
                .iter()
                .all(|p| p.kind == ColumnErrorKind::NullKey)
        );
        assert_eq!(err.problems.len(), 2);
    }

    #[test]
    fn a_table_with_problems_does_not_compile() {
        let mut table = users_table();
        table.columns[1].type_ = "string".into();
        table.partition_key = vec!["nope".into()];
        let err = RowMapper::new(&table).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }
}
