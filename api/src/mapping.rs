//! Mapping one JSON record to one row of the pipeline's table, and to how
//! that row is written (its TTL and write time).
//!
//! A [`RowMapper`] is compiled once from the table spec (types parsed,
//! pointers split, templates parsed), so mapping a record only walks the
//! record. Ingest uses the same mapper to refuse records the sink could not
//! write, and to key Kafka messages by the partition key.

use std::fmt;

use serde::de::{
    DeserializeSeed, Deserializer, Error as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::cell::{Cell, CellValue};
use crate::coerce::{ValueError, coerce_with_unit, ttl_seconds, write_time_micros};
use crate::cql_type::CqlType;
use crate::json_pointer::JsonPointer;
use crate::spec::{EpochUnit, KafkaPart, TableSpec};
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
    /// The parts of a record the columns read, for [`RowMapper::parse`];
    /// `None` when a column reads the whole record.
    needed: Option<Needed>,
    /// Where a record's own TTL is, and the TTL of records without one.
    ttl: Option<(Option<JsonPointer>, Option<i32>)>,
    /// Where a record's write time is, and its unit.
    write_time: Option<(JsonPointer, EpochUnit)>,
    /// Which records delete their row.
    deletes: Option<Deletes>,
}

/// Which records delete their row; see [`crate::spec::DeletesSpec`].
#[derive(Clone, Debug)]
struct Deletes {
    tombstones: bool,
    /// Indices into `columns` of the columns outside the primary key that
    /// read the value, when `keyOnly` is on: a record with none of them is
    /// a delete.
    key_only: Option<Vec<usize>>,
    marker: Option<(JsonPointer, String)>,
}

/// Why a Kafka tombstone names no row.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TombstoneError {
    #[error("a tombstone without a key names no row to delete")]
    NoKey,
    #[error("the tombstone's key is not UTF-8 text, so it cannot name the primary key")]
    NotUtf8,
    #[error("the tombstone's key {key:?} does not name the row to delete: {why}")]
    Unreadable { key: String, why: &'static str },
}

/// The parts of a Kafka record besides its value, for columns that read
/// them ([`RowMapper::map_record`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct KafkaRecordParts<'a> {
    pub key: Option<&'a [u8]>,
    /// Milliseconds since the epoch.
    pub timestamp_ms: Option<i64>,
    /// The headers the columns read ([`RowMapper::header_names`]), each
    /// name with its last value.
    pub headers: &'a [(String, Vec<u8>)],
}

/// How a record's row is written, as the record says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteSettings {
    /// Seconds the row lives (0: forever); `None` leaves the table's
    /// default.
    pub ttl: Option<i32>,
    /// The record's own write time, in microseconds since the epoch.
    pub write_time_micros: Option<i64>,
}

/// Why a record's TTL or write time cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{setting} from {pointer}: {kind}")]
pub struct SettingError {
    /// `ttl` or `writeTime`, as the spec names it.
    pub setting: &'static str,
    pub pointer: String,
    pub kind: SettingErrorKind,
}

/// What is wrong with a record's TTL or write time.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingErrorKind {
    #[error(transparent)]
    Value(#[from] ValueError),
    #[error("the record has no value there")]
    Missing,
}

/// One column of the row and where its value comes from.
#[derive(Clone, Debug)]
pub struct MappedColumn {
    name: String,
    cql_type: CqlType,
    source: ColumnSource,
    /// What numbers read into timestamps count since the epoch.
    unit: Option<EpochUnit>,
}

/// Where a column's value comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ColumnSource {
    Pointer(JsonPointer),
    Template(Template),
    WholeRecord,
    /// The Kafka record's key or timestamp.
    Kafka(KafkaPart),
    /// The Kafka record header of this name.
    Header(String),
}

impl ColumnSource {
    /// Whether the value comes from the Kafka record rather than from its
    /// value (so ingest, which has no Kafka record yet, cannot check it).
    pub fn is_kafka(&self) -> bool {
        matches!(self, Self::Kafka(_) | Self::Header(_))
    }
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
            Self::Kafka(part) => write!(f, "from the Kafka record's {}", part.as_str()),
            Self::Header(name) => write!(f, "from the Kafka header {name:?}"),
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
    #[error("its {len} bytes are not UTF-8 text; only a blob column takes any bytes")]
    NotUtf8 { len: usize },
}

impl RowMapper {
    /// Compiles the mapper for `table`, refusing a table spec with problems.
    pub fn new(table: &TableSpec) -> Result<Self, InvalidSpec> {
        Self::new_at(table, "spec.cassandra.table")
    }

    /// As [`RowMapper::new`], for the table at `at` in the spec
    /// (`spec.cassandra.tables[1]`), which problems name.
    pub fn new_at(table: &TableSpec, at: &str) -> Result<Self, InvalidSpec> {
        let problems = table_problems(table, at);
        if !problems.is_empty() {
            return Err(InvalidSpec { problems });
        }
        let mut columns = Vec::with_capacity(table.columns.len());
        for spec in &table.columns {
            // table_problems has parsed all of these already; errors here
            // would mean the two disagree, so they are reported, not unwrapped.
            let invalid = |problem: crate::validate::Problem| InvalidSpec {
                problems: vec![crate::validate::SpecProblem {
                    field: format!("{at}.columns[{}]", spec.name),
                    problem,
                }],
            };
            let cql_type: CqlType = spec.type_.parse().map_err(|e| invalid(Into::into(e)))?;
            let source = match (
                &spec.from,
                &spec.template,
                spec.from_kafka,
                &spec.from_header,
            ) {
                (Some(pointer), ..) => ColumnSource::Pointer(
                    JsonPointer::parse(pointer).map_err(|e| invalid(e.into()))?,
                ),
                (None, Some(template), ..) => ColumnSource::Template(
                    Template::parse(template).map_err(|e| invalid(e.into()))?,
                ),
                (None, None, Some(part), _) => ColumnSource::Kafka(part),
                (None, None, None, Some(name)) => ColumnSource::Header(name.clone()),
                (None, None, None, None) => ColumnSource::WholeRecord,
            };
            columns.push(MappedColumn {
                name: spec.name.clone(),
                cql_type,
                source,
                unit: spec.unit,
            });
        }
        let index_of = |name: &str| columns.iter().position(|c| c.name == name);
        let partition_key: Vec<usize> = table
            .partition_key
            .iter()
            .filter_map(|k| index_of(k))
            .collect();
        let primary_key: Vec<usize> = table.primary_key().filter_map(index_of).collect();
        let pointer = |field: &str, text: &str| {
            JsonPointer::parse(text).map_err(|e| InvalidSpec {
                problems: vec![crate::validate::SpecProblem {
                    field: format!("{at}.{field}"),
                    problem: e.into(),
                }],
            })
        };
        let ttl = match &table.ttl {
            Some(t) => Some((
                t.from
                    .as_deref()
                    .map(|p| pointer("ttl.from", p))
                    .transpose()?,
                t.seconds,
            )),
            None => None,
        };
        let write_time = match &table.write_time {
            Some(w) => Some((pointer("writeTime.from", &w.from)?, w.unit)),
            None => None,
        };
        let deletes = match &table.deletes {
            Some(d) => Some(Deletes {
                tombstones: d.tombstones,
                key_only: d.key_only.then(|| {
                    (0..columns.len())
                        .filter(|i| !primary_key.contains(i))
                        .filter(|&i| {
                            matches!(
                                columns[i].source,
                                ColumnSource::Pointer(_) | ColumnSource::Template(_)
                            )
                        })
                        .collect()
                }),
                marker: match &d.marker {
                    Some(m) => Some((pointer("deletes.marker.from", &m.from)?, m.equals.clone())),
                    None => None,
                },
            }),
            None => None,
        };
        let settings = ttl
            .iter()
            .filter_map(|(p, _)| p.as_ref())
            .chain(write_time.iter().map(|(p, _)| p))
            .chain(
                deletes
                    .iter()
                    .filter_map(|d| d.marker.as_ref().map(|(p, _)| p)),
            );
        let needed = Needed::of(&columns, settings);
        Ok(Self {
            columns,
            partition_key,
            primary_key,
            needed,
            ttl,
            write_time,
            deletes,
        })
    }

    /// Whether a Kafka tombstone deletes its row (`deletes.tombstones`).
    pub fn deletes_tombstones(&self) -> bool {
        self.deletes.as_ref().is_some_and(|d| d.tombstones)
    }

    /// Whether `record` deletes its row rather than writing it: it has the
    /// marker, or (with `keyOnly`) no value for any column outside the
    /// primary key that reads the value.
    pub fn is_delete(&self, record: &Value) -> bool {
        let Some(deletes) = &self.deletes else {
            return false;
        };
        if let Some((pointer, equals)) = &deletes.marker {
            let marked = match pointer.get(record) {
                Some(Value::String(s)) => s == equals,
                Some(v @ (Value::Number(_) | Value::Bool(_))) => {
                    serde_json::from_str::<Value>(equals).is_ok_and(|e| e == *v)
                }
                _ => false,
            };
            if marked {
                return true;
            }
        }
        deletes.key_only.as_ref().is_some_and(|others| {
            others.iter().all(|&i| match &self.columns[i].source {
                ColumnSource::Pointer(p) => p.get(record).is_none(),
                ColumnSource::Template(t) => t.render(record).is_none(),
                _ => true,
            })
        })
    }

    /// The record a tombstone's key stands for, to map with
    /// [`RowMapper::delete_key`]: a JSON object key is that record; for a
    /// one-column primary key read from the value, any other key is that
    /// column's value as text; for a partition key of several columns and
    /// no clustering key, a JSON array gives them in order (as
    /// [`RowMapper::partition_key`] keys records). Key columns that read
    /// the Kafka record read it as for any record.
    pub fn tombstone_record(&self, key: Option<&[u8]>) -> Result<Value, TombstoneError> {
        let key = key.ok_or(TombstoneError::NoKey)?;
        let text = std::str::from_utf8(key).map_err(|_| TombstoneError::NotUtf8)?;
        let unreadable = |why| TombstoneError::Unreadable {
            key: text.chars().take(200).collect(),
            why,
        };
        let from_value: Vec<usize> = self
            .primary_key
            .iter()
            .copied()
            .filter(|&i| !self.columns[i].source.is_kafka())
            .collect();
        if from_value.is_empty() {
            return Ok(Value::Object(Map::new()));
        }
        let pointer_of = |i: usize| match &self.columns[i].source {
            ColumnSource::Pointer(p) => Some(p),
            _ => None,
        };
        match serde_json::from_str::<Value>(text) {
            Ok(object @ Value::Object(_)) => return Ok(object),
            Ok(Value::Array(items))
                if from_value.len() > 1
                    && self.primary_key.len() == self.partition_key.len()
                    && from_value == self.partition_key =>
            {
                if items.len() != from_value.len() {
                    return Err(unreadable(
                        "a JSON array must have one value for each partition key column",
                    ));
                }
                let mut record = Value::Object(Map::new());
                for (&i, item) in from_value.iter().zip(items) {
                    let pointer = pointer_of(i).ok_or_else(|| {
                        unreadable("a key column made by a template can only be read from a JSON object key")
                    })?;
                    merge(&mut record, pointer.place(item));
                }
                return Ok(record);
            }
            _ => {}
        }
        match from_value.as_slice() {
            [one] => pointer_of(*one)
                .map(|p| p.place(Value::String(text.to_owned())))
                .ok_or_else(|| {
                    unreadable(
                        "a key column made by a template can only be read from a JSON object key",
                    )
                }),
            _ => Err(unreadable(
                "a primary key of several columns is read from a JSON object of their fields",
            )),
        }
    }

    /// The primary key of the row a delete removes, in primary key order
    /// (as [`crate::cql::delete`] binds it): every column must have a
    /// value.
    pub fn delete_key(
        &self,
        record: &Value,
        parts: &KafkaRecordParts<'_>,
    ) -> Result<Vec<Cell>, RecordError> {
        let mut key = Vec::with_capacity(self.primary_key.len());
        let mut problems = Vec::new();
        for &i in &self.primary_key {
            match self.cell(i, &self.columns[i], record, Some(parts)) {
                Ok(cell) => key.push(cell),
                Err(problem) => problems.push(*problem),
            }
        }
        if problems.is_empty() {
            Ok(key)
        } else {
            Err(RecordError { problems })
        }
    }

    /// Whether the insert has a TTL marker ([`crate::cql::insert`]).
    pub fn binds_ttl(&self) -> bool {
        self.ttl.is_some()
    }

    /// Whether records give their own write time (`writeTime`).
    pub fn reads_write_time(&self) -> bool {
        self.write_time.is_some()
    }

    /// The Kafka headers the columns read.
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().filter_map(|c| match &c.source {
            ColumnSource::Header(name) => Some(name.as_str()),
            _ => None,
        })
    }

    /// The record's TTL and write time, as the spec's `ttl` and
    /// `writeTime` read them; see [`WriteSettings`].
    pub fn settings(&self, record: &Value) -> Result<WriteSettings, SettingError> {
        let mut out = WriteSettings::default();
        if let Some((from, seconds)) = &self.ttl {
            out.ttl = *seconds;
            if let Some(pointer) = from
                && let Some(value) = pointer.get(record).filter(|v| !v.is_null())
            {
                out.ttl = Some(ttl_seconds(value).map_err(|e| SettingError {
                    setting: "ttl",
                    pointer: pointer.to_string(),
                    kind: e.into(),
                })?);
            }
        }
        if let Some((pointer, unit)) = &self.write_time {
            let fail = |kind: SettingErrorKind| SettingError {
                setting: "writeTime",
                pointer: pointer.to_string(),
                kind,
            };
            let value = pointer
                .get(record)
                .filter(|v| !v.is_null())
                .ok_or_else(|| fail(SettingErrorKind::Missing))?;
            out.write_time_micros =
                Some(write_time_micros(value, *unit).map_err(|e| fail(e.into()))?);
        }
        Ok(out)
    }

    /// Parses a record for [`RowMapper::map`], keeping only the fields the
    /// columns read: the others are checked as JSON but neither allocated
    /// nor kept, which makes parsing a record with many unmapped fields
    /// several times cheaper. Mapping the result gives exactly the row (or
    /// the errors) mapping the fully parsed record would, except that
    /// numbers a decimal or varint column reads keep every digit (as the
    /// text of the number); bytes that are not JSON fail as a full parse
    /// does. A table with a `wholeRecord` column parses the whole record,
    /// and its decimal and varint columns get numbers as serde_json holds
    /// them (an f64 beyond 64-bit integers): send such values as strings.
    pub fn parse(&self, bytes: &[u8]) -> Result<Value, serde_json::Error> {
        parse_needed(self.needed.as_ref(), bytes)
    }

    /// The columns, in the order of the row's cells.
    pub fn columns(&self) -> &[MappedColumn] {
        &self.columns
    }

    /// The column names, in the order of the row's cells.
    pub fn column_names(&self) -> impl Iterator<Item = &str> {
        self.columns.iter().map(|c| c.name.as_str())
    }

    /// Maps a record's value to a row: one cell per column, in column
    /// order. Columns that read the Kafka record (`fromKafka`,
    /// `fromHeader`) are left unset and unchecked, as ingest needs before
    /// there is a Kafka record; the sink uses [`RowMapper::map_record`].
    pub fn map(&self, record: &Value) -> Result<Vec<Cell>, RecordError> {
        self.map_with(record, None)
    }

    /// Maps a Kafka record, its value parsed as `record`, to a row.
    pub fn map_record(
        &self,
        record: &Value,
        parts: &KafkaRecordParts<'_>,
    ) -> Result<Vec<Cell>, RecordError> {
        self.map_with(record, Some(parts))
    }

    fn map_with(
        &self,
        record: &Value,
        parts: Option<&KafkaRecordParts<'_>>,
    ) -> Result<Vec<Cell>, RecordError> {
        let mut row = Vec::with_capacity(self.columns.len());
        let mut problems = Vec::new();
        for (i, column) in self.columns.iter().enumerate() {
            match self.cell(i, column, record, parts) {
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
            match self.cell(i, &self.columns[i], record, None) {
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
        parts: Option<&KafkaRecordParts<'_>>,
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
                Some(value) => Cell::Value(
                    coerce_with_unit(value, &column.cql_type, column.unit)
                        .map_err(|e| fail(e.into()))?,
                ),
            },
            ColumnSource::Template(template) => match template.render(record) {
                None => Cell::Unset,
                Some(text) => Cell::Value(
                    coerce_with_unit(&Value::String(text), &column.cql_type, column.unit)
                        .map_err(|e| fail(e.into()))?,
                ),
            },
            ColumnSource::WholeRecord => Cell::Value(CellValue::Text(record.to_string())),
            ColumnSource::Kafka(_) | ColumnSource::Header(_) => {
                let Some(parts) = parts else {
                    return Ok(Cell::Unset);
                };
                kafka_cell(column, parts).map_err(fail)?
            }
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

/// Parses a record keeping what `needed` walks ([`RowMapper::parse`]);
/// the whole record without it.
fn parse_needed(needed: Option<&Needed>, bytes: &[u8]) -> Result<Value, serde_json::Error> {
    let Some(needed) = needed else {
        return serde_json::from_slice(bytes);
    };
    // Skipped strings are not checked for UTF-8 by serde_json; checking
    // the whole record first keeps "not JSON" exactly as it was (and
    // reports it with the full parser's own message).
    let Ok(text) = std::str::from_utf8(bytes) else {
        return serde_json::from_slice(bytes);
    };
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Pruned(needed).deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// Parses a record once for the mappers of several tables, keeping every
/// field any of them reads. A number that one table's decimal or varint
/// column reads is kept as its written digits for every table: the
/// coercions of the other column types read such text as they read the
/// number.
#[derive(Clone, Debug)]
pub struct RecordParser {
    needed: Option<Needed>,
}

impl RecordParser {
    /// The parser for `mappers` together.
    pub fn new(mappers: &[RowMapper]) -> Self {
        let mut needed = Some(Needed::default());
        for m in mappers {
            needed = match (needed, &m.needed) {
                (Some(mut all), Some(theirs)) => {
                    all.merge(theirs);
                    Some(all)
                }
                _ => None,
            };
        }
        Self { needed }
    }

    /// The record, with the fields any of the mappers reads.
    pub fn parse(&self, bytes: &[u8]) -> Result<Value, serde_json::Error> {
        parse_needed(self.needed.as_ref(), bytes)
    }
}

/// The object keys a mapper's pointers walk, as a tree.
#[derive(Clone, Debug, Default)]
struct Needed {
    /// A pointer ends here: the value is read whole.
    whole: bool,
    /// A column that needs numbers as written (decimal, varint) reads at or
    /// below this node: numbers here are kept as their text, since an f64
    /// would round them.
    exact: bool,
    /// Keys read below this object. A few per level, so a list searched in
    /// order beats a map.
    children: Vec<(String, Needed)>,
}

impl Needed {
    /// The tree of every column's pointers; `None` if some column reads the
    /// whole record.
    fn of<'a>(
        columns: &[MappedColumn],
        settings: impl Iterator<Item = &'a JsonPointer>,
    ) -> Option<Self> {
        let mut root = Self::default();
        for pointer in settings {
            root.add(pointer, false)?;
        }
        for column in columns {
            match &column.source {
                ColumnSource::Pointer(p) => root.add(p, column.cql_type.needs_exact_numbers())?,
                ColumnSource::Template(t) => {
                    for p in t.pointers() {
                        root.add(p, false)?;
                    }
                }
                ColumnSource::WholeRecord => return None,
                ColumnSource::Kafka(_) | ColumnSource::Header(_) => {}
            }
        }
        Some(root)
    }

    /// Adds what `other` walks.
    fn merge(&mut self, other: &Needed) {
        self.whole |= other.whole;
        self.exact |= other.exact;
        for (key, theirs) in &other.children {
            match self.children.iter_mut().find(|(k, _)| k == key) {
                Some((_, mine)) => mine.merge(theirs),
                None => self.children.push((key.clone(), theirs.clone())),
            }
        }
    }

    /// Adds a pointer's path; `None` for the root pointer (the whole record).
    fn add(&mut self, pointer: &JsonPointer, exact: bool) -> Option<()> {
        if pointer.is_root() {
            return None;
        }
        let mut node = self;
        node.exact |= exact;
        // The pointer is valid (it parsed), so its tokens are the text
        // between slashes with RFC 6901's two escapes.
        for raw in pointer.as_str()[1..].split('/') {
            let key = raw.replace("~1", "/").replace("~0", "~");
            let at = match node.children.iter().position(|(k, _)| *k == key) {
                Some(at) => at,
                None => {
                    node.children.push((key, Self::default()));
                    node.children.len() - 1
                }
            };
            node = &mut node.children[at].1;
            node.exact |= exact;
        }
        node.whole = true;
        Some(())
    }
}

/// Deserializes the value at an inner node of a [`Needed`] tree. Objects
/// keep only the needed keys; arrays are kept whole (pointers may index
/// them); anything else becomes null, which no pointer can look inside,
/// just as it cannot look inside a string or a number.
struct Pruned<'a>(&'a Needed);

impl<'de> DeserializeSeed<'de> for Pruned<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pruned<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(found) = map.next_key_seed(Key(self.0))? {
            match found {
                Some((key, node)) if node.whole && node.exact => {
                    let raw = map.next_value::<Box<RawValue>>()?;
                    out.insert(
                        key.clone(),
                        exact_value(raw.get()).map_err(A::Error::custom)?,
                    );
                }
                Some((key, node)) if node.whole => {
                    out.insert(key.clone(), map.next_value::<Value>()?);
                }
                Some((key, node)) => {
                    out.insert(key.clone(), map.next_value_seed(Pruned(node))?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(out))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        if self.0.exact {
            while let Some(raw) = seq.next_element::<Box<RawValue>>()? {
                items.push(exact_value(raw.get()).map_err(A::Error::custom)?);
            }
        } else {
            while let Some(item) = seq.next_element::<Value>()? {
                items.push(item);
            }
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_i128<E>(self, _: i128) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_u128<E>(self, _: u128) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_str<E>(self, _: &str) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

/// `raw` JSON as a value whose numbers, at any depth, are strings of the
/// digits as written: decimal and varint columns take those exactly, where
/// serde_json's own numbers are at most an f64 or a 64-bit integer. Only the
/// values such columns read go through here.
fn exact_value(raw: &str) -> Result<Value, serde_json::Error> {
    match raw.trim_start().as_bytes().first() {
        Some(b'-' | b'0'..=b'9') => Ok(Value::String(raw.trim().to_owned())),
        Some(b'[') => serde_json::from_str::<Vec<Box<RawValue>>>(raw)?
            .iter()
            .map(|item| exact_value(item.get()))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Some(b'{') => {
            serde_json::from_str::<std::collections::BTreeMap<String, Box<RawValue>>>(raw)?
                .into_iter()
                .map(|(k, v)| exact_value(v.get()).map(|v| (k, v)))
                .collect::<Result<Map<_, _>, _>>()
                .map(Value::Object)
        }
        _ => serde_json::from_str(raw),
    }
}

/// An object key, looked up among a node's needed keys without allocating.
struct Key<'a>(&'a Needed);

impl<'de, 'a> DeserializeSeed<'de> for Key<'a> {
    type Value = Option<(&'a String, &'a Needed)>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de, 'a> Visitor<'de> for Key<'a> {
    type Value = Option<(&'a String, &'a Needed)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object key")
    }

    fn visit_str<E>(self, key: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .children
            .iter()
            .find(|(k, _)| k == key)
            .map(|(k, node)| (k, node)))
    }
}

/// A column's cell from the Kafka record's key, timestamp or a header.
fn kafka_cell(
    column: &MappedColumn,
    parts: &KafkaRecordParts<'_>,
) -> Result<Cell, ColumnErrorKind> {
    let bytes = match &column.source {
        ColumnSource::Kafka(KafkaPart::Timestamp) => {
            let Some(ms) = parts.timestamp_ms else {
                return Ok(Cell::Unset);
            };
            // Kafka's timestamps are milliseconds, whatever the column says.
            let unit = column
                .cql_type
                .holds_timestamps()
                .then_some(EpochUnit::Milliseconds);
            return Ok(Cell::Value(coerce_with_unit(
                &Value::from(ms),
                &column.cql_type,
                unit,
            )?));
        }
        ColumnSource::Kafka(KafkaPart::Key) => parts.key,
        ColumnSource::Header(name) => parts
            .headers
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice()),
        _ => None,
    };
    let Some(bytes) = bytes else {
        return Ok(Cell::Unset);
    };
    if column.cql_type == CqlType::Blob {
        return Ok(Cell::Value(CellValue::Blob(bytes.to_vec())));
    }
    let text =
        std::str::from_utf8(bytes).map_err(|_| ColumnErrorKind::NotUtf8 { len: bytes.len() })?;
    Ok(Cell::Value(coerce_with_unit(
        &Value::String(text.to_owned()),
        &column.cql_type,
        column.unit,
    )?))
}

/// Puts `other`'s fields into `into`, both objects made by
/// [`JsonPointer::place`]; where both have an object, recursively.
fn merge(into: &mut Value, other: Value) {
    match (into, other) {
        (Value::Object(into), Value::Object(other)) => {
            for (k, v) in other {
                match into.get_mut(&k) {
                    Some(existing) => merge(existing, v),
                    None => {
                        into.insert(k, v);
                    }
                }
            }
        }
        (into, other) => *into = other,
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
    use crate::coerce::coerce;
    use crate::spec::{
        ClusteringColumn, ClusteringOrder, ColumnSpec, DeleteMarker, DeletesSpec, TtlSpec,
        WriteTimeSpec,
    };

    fn users_table() -> TableSpec {
        TableSpec {
            ttl: None,
            write_time: None,
            deletes: None,
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
            ttl: None,
            write_time: None,
            deletes: None,
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
    fn a_pruned_parse_maps_exactly_as_a_full_parse() {
        let mut table = users_table();
        table.columns.pop(); // the whole-record column would need everything
        table
            .columns
            .push(ColumnSpec::from_pointer("second", "text", "/list/1"));
        table
            .columns
            .push(ColumnSpec::from_pointer("slash", "text", "/a~1b/c~0d"));
        table
            .columns
            .push(ColumnSpec::from_pointer("nested", "text", "/location"));
        let mapper = RowMapper::new(&table).unwrap();
        assert!(mapper.needed.is_some());
        let records: Vec<String> = vec![
            user().to_string(),
            r#"{"login":{"uuid":"3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1","x":[1,{"y":2}]},"list":["a","b"],"a/b":{"c~d":"e"},"unused":{"deep":[1,2,{"z":null}]},"dob":{"age":null}}"#.into(),
            r#"{"login":"3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1","name":7,"location":"x"}"#.into(),
            r#"{"login":{"uuid":"3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"},"login":{"uuid":"not-a-uuid"}}"#.into(),
            r#"{"lo\u0067in":{"uuid":"3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"},"dob":{"age":"x"}}"#.into(),
            r#"{"login":{"uuid":"3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"},"list":{"1":"by key"}}"#.into(),
            r#"[{"login":{"uuid":"3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"}}]"#.into(),
            "42".into(),
            "null".into(),
        ];
        for text in &records {
            let full: Value = serde_json::from_str(text).unwrap();
            let pruned = mapper.parse(text.as_bytes()).unwrap();
            assert_eq!(mapper.map(&pruned), mapper.map(&full), "{text}");
        }
        for bad in [
            &b"{\"login\": "[..],
            b"{\"unused\": [1,]}",
            b"{\"unused\": \"\xff\"}",
            b"{} {}",
            b"",
        ] {
            let full = serde_json::from_slice::<Value>(bad).unwrap_err();
            let pruned = mapper.parse(bad).unwrap_err();
            assert_eq!(pruned.classify(), full.classify(), "{bad:?}");
        }
        // A whole-record column reads everything: a plain full parse.
        let mapper = RowMapper::new(&users_table()).unwrap();
        assert!(mapper.needed.is_none());
        let text = user().to_string();
        assert_eq!(
            mapper.parse(text.as_bytes()).unwrap(),
            serde_json::from_str::<Value>(&text).unwrap()
        );
    }

    #[test]
    fn decimal_and_varint_columns_keep_every_digit_of_a_json_number() {
        let mut table = users_table();
        table.columns.pop();
        for (name, ty, pointer) in [
            ("amount", "decimal", "/amount"),
            ("big", "varint", "/big"),
            ("prices", "list<decimal>", "/prices"),
            ("rates", "map<text,decimal>", "/rates"),
            ("first_price", "decimal", "/nested/0/p"),
            ("shown", "text", "/shown"),
        ] {
            table
                .columns
                .push(ColumnSpec::from_pointer(name, ty, pointer));
        }
        let mapper = RowMapper::new(&table).unwrap();
        let text = r#"{"login":{"uuid":"3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"},
            "amount": 123456789012345678901234567890.123456789,
            "big": -98765432109876543210987654321,
            "prices": [0.10000000000000000001, 2],
            "rates": {"eur": 1.00000000000000000000001},
            "nested": [{"p": 3.14159265358979323846264338327950288}],
            "shown": 0.1000000000000000000001}"#;
        let row = mapper.map(&mapper.parse(text.as_bytes()).unwrap()).unwrap();
        let at = |name: &str| {
            let i = mapper.column_names().position(|n| n == name).unwrap();
            row[i].value().cloned().unwrap()
        };
        let decimal = |digits: &str| match coerce(&json!(digits), &"decimal".parse().unwrap()) {
            Ok(v) => v,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            at("amount"),
            decimal("123456789012345678901234567890.123456789")
        );
        assert_eq!(
            at("big"),
            coerce(
                &json!("-98765432109876543210987654321"),
                &"varint".parse().unwrap()
            )
            .unwrap()
        );
        assert_eq!(
            at("prices"),
            CellValue::List(vec![decimal("0.10000000000000000001"), decimal("2")])
        );
        assert_eq!(
            at("rates"),
            CellValue::Map(vec![(
                CellValue::Text("eur".into()),
                decimal("1.00000000000000000000001")
            )])
        );
        assert_eq!(
            at("first_price"),
            decimal("3.14159265358979323846264338327950288")
        );
        // Other columns see numbers as before.
        assert_eq!(at("shown"), CellValue::Text("0.1".into()));
        // Not JSON is still refused as a full parse refuses it.
        assert!(mapper.parse(br#"{"amount": 1.2.3}"#).is_err());
    }

    #[test]
    fn a_table_with_problems_does_not_compile() {
        let mut table = users_table();
        table.columns[1].type_ = "string".into();
        table.partition_key = vec!["nope".into()];
        let err = RowMapper::new(&table).unwrap_err();
        assert_eq!(err.problems.len(), 2, "{err}");
    }

    fn events_table() -> TableSpec {
        TableSpec {
            ttl: None,
            write_time: None,
            deletes: None,
            name: "events".into(),
            columns: vec![
                ColumnSpec::from_pointer("id", "int", "/id"),
                ColumnSpec::from_kafka("k", "text", KafkaPart::Key),
                ColumnSpec::from_kafka("produced", "timestamp", KafkaPart::Timestamp),
                ColumnSpec::from_kafka("produced_ms", "bigint", KafkaPart::Timestamp),
                ColumnSpec::from_header("trace", "uuid", "trace-id"),
                ColumnSpec::from_header("raw", "blob", "raw"),
            ],
            partition_key: vec!["id".into()],
            clustering_key: vec![ClusteringColumn {
                name: "produced".into(),
                order: ClusteringOrder::Asc,
            }],
        }
    }

    #[test]
    fn the_kafka_key_timestamp_and_headers_fill_their_columns() {
        let mapper = RowMapper::new(&events_table()).unwrap();
        assert_eq!(
            mapper.header_names().collect::<Vec<_>>(),
            ["trace-id", "raw"]
        );
        let trace = "3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1";
        let headers = [
            ("trace-id".to_owned(), b"not the last".to_vec()),
            ("trace-id".to_owned(), trace.as_bytes().to_vec()),
            ("raw".to_owned(), vec![0xff, 0x00]),
        ];
        // The sink keeps each header's last value (wanted_headers).
        let last: Vec<(String, Vec<u8>)> = headers[1..].to_vec();
        let parts = KafkaRecordParts {
            key: Some(b"user-7"),
            timestamp_ms: Some(1_700_000_000_123),
            headers: &last,
        };
        let row = mapper.map_record(&json!({"id": 7}), &parts).unwrap();
        assert_eq!(row[1], Cell::Value(CellValue::Text("user-7".into())));
        assert_eq!(row[2], Cell::Value(CellValue::Timestamp(1_700_000_000_123)));
        assert_eq!(row[3], Cell::Value(CellValue::BigInt(1_700_000_000_123)));
        assert_eq!(
            row[4],
            Cell::Value(CellValue::Uuid(Uuid::parse_str(trace).unwrap()))
        );
        assert_eq!(row[5], Cell::Value(CellValue::Blob(vec![0xff, 0x00])));

        // No key and no headers: unset; but the clustering column from the
        // timestamp is part of the key, so a record without one is refused.
        let bare = KafkaRecordParts::default();
        let err = mapper.map_record(&json!({"id": 7}), &bare).unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        assert_eq!(err.problems[0].column, "produced");
        assert_eq!(err.problems[0].kind, ColumnErrorKind::MissingKey);
        assert!(
            err.to_string()
                .contains("from the Kafka record's timestamp"),
            "{err}"
        );

        // Bytes that are not UTF-8 fit only a blob column.
        let bad = vec![("trace-id".to_owned(), vec![0xff])];
        let parts = KafkaRecordParts {
            headers: &bad,
            ..parts
        };
        let err = mapper.map_record(&json!({"id": 7}), &parts).unwrap_err();
        assert_eq!(err.problems[0].kind, ColumnErrorKind::NotUtf8 { len: 1 });
        assert!(
            err.to_string()
                .contains("from the Kafka header \"trace-id\""),
            "{err}"
        );
    }

    #[test]
    fn ingest_leaves_the_kafka_columns_unset_and_unchecked() {
        let mapper = RowMapper::new(&events_table()).unwrap();
        let row = mapper.map(&json!({"id": 7})).unwrap();
        assert_eq!(row[0], Cell::Value(CellValue::Int(7)));
        assert!(row[1..].iter().all(|c| *c == Cell::Unset), "{row:?}");
        // The pruned parse still works with no pointer but /id.
        let parsed = mapper.parse(br#"{"id": 7, "other": [1, 2]}"#).unwrap();
        assert_eq!(parsed, json!({"id": 7}));
    }

    fn with_settings(ttl: Option<TtlSpec>, write_time: Option<WriteTimeSpec>) -> RowMapper {
        RowMapper::new(&TableSpec {
            ttl,
            write_time,
            ..events_table()
        })
        .unwrap()
    }

    #[test]
    fn a_records_ttl_wins_over_the_tables_and_a_bad_one_is_refused() {
        let both = with_settings(
            Some(TtlSpec {
                seconds: Some(60),
                from: Some("/expiresIn".into()),
            }),
            None,
        );
        assert!(both.binds_ttl());
        let ttl = |record: Value| both.settings(&record).map(|s| s.ttl);
        assert_eq!(ttl(json!({"expiresIn": 5})), Ok(Some(5)));
        assert_eq!(ttl(json!({"expiresIn": "7"})), Ok(Some(7)));
        assert_eq!(ttl(json!({"expiresIn": 0})), Ok(Some(0)), "0 is forever");
        assert_eq!(ttl(json!({})), Ok(Some(60)));
        assert_eq!(ttl(json!({"expiresIn": null})), Ok(Some(60)));
        for bad in [
            json!(-1),
            json!(630_720_001),
            json!("soon"),
            json!(1.5),
            json!([1]),
        ] {
            let e = ttl(json!({"expiresIn": bad.clone()})).unwrap_err();
            assert_eq!(e.setting, "ttl", "{bad}");
            assert!(e.to_string().starts_with("ttl from /expiresIn: "), "{e}");
        }
        let only_field = with_settings(
            Some(TtlSpec {
                seconds: None,
                from: Some("/expiresIn".into()),
            }),
            None,
        );
        assert_eq!(
            only_field.settings(&json!({})).unwrap().ttl,
            None,
            "no TTL: the table's default"
        );
        let none = with_settings(None, None);
        assert!(!none.binds_ttl());
        assert_eq!(
            none.settings(&json!({"expiresIn": 5})),
            Ok(WriteSettings::default())
        );
    }

    #[test]
    fn a_records_write_time_is_read_in_its_unit_and_refused_when_implausible() {
        let at = |unit| {
            with_settings(
                None,
                Some(WriteTimeSpec {
                    from: "/updatedAt".into(),
                    unit,
                }),
            )
        };
        let time = |unit, v: Value| {
            at(unit)
                .settings(&json!({"updatedAt": v}))
                .map(|s| s.write_time_micros)
        };
        assert_eq!(
            time(EpochUnit::Seconds, json!(1_700_000_000)),
            Ok(Some(1_700_000_000_000_000))
        );
        assert_eq!(
            time(EpochUnit::Milliseconds, json!("1700000000123")),
            Ok(Some(1_700_000_000_123_000))
        );
        assert_eq!(
            time(EpochUnit::Microseconds, json!(1_700_000_000_123_456_i64)),
            Ok(Some(1_700_000_000_123_456))
        );
        assert_eq!(
            time(EpochUnit::Seconds, json!("2023-11-14T22:13:20.123456Z")),
            Ok(Some(1_700_000_000_123_456)),
            "a text date keeps its microseconds whatever the unit"
        );
        let wrong_unit = time(EpochUnit::Seconds, json!(1_700_000_000_123_i64)).unwrap_err();
        assert!(
            matches!(
                wrong_unit.kind,
                SettingErrorKind::Value(ValueError::ImplausibleInstant { .. })
            ),
            "{wrong_unit}"
        );
        assert!(time(EpochUnit::Seconds, json!("yesterday")).is_err());
        assert!(time(EpochUnit::Seconds, json!("1800-01-01T00:00:00Z")).is_err());
        let missing = at(EpochUnit::Seconds).settings(&json!({})).unwrap_err();
        assert_eq!(missing.kind, SettingErrorKind::Missing);
        assert_eq!(
            missing.to_string(),
            "writeTime from /updatedAt: the record has no value there"
        );
        // The pruned parse keeps the fields ttl and writeTime read.
        let mapper = with_settings(
            Some(TtlSpec {
                seconds: None,
                from: Some("/meta/ttl".into()),
            }),
            Some(WriteTimeSpec {
                from: "/updatedAt".into(),
                unit: EpochUnit::Seconds,
            }),
        );
        let parsed = mapper
            .parse(br#"{"id": 1, "updatedAt": 1700000000, "meta": {"ttl": 9, "x": 1}, "y": 2}"#)
            .unwrap();
        assert_eq!(
            mapper.settings(&parsed),
            Ok(WriteSettings {
                ttl: Some(9),
                write_time_micros: Some(1_700_000_000_000_000),
            })
        );
    }

    /// Orders by user and time, with the user's name outside the key.
    fn orders_table(deletes: DeletesSpec) -> TableSpec {
        TableSpec {
            ttl: None,
            write_time: None,
            deletes: Some(deletes),
            name: "orders".into(),
            columns: vec![
                ColumnSpec::from_pointer("user_id", "int", "/user/id"),
                ColumnSpec::from_pointer("at", "timestamp", "/at"),
                ColumnSpec::from_pointer("item", "text", "/item"),
                ColumnSpec::from_kafka("produced", "timestamp", KafkaPart::Timestamp),
            ],
            partition_key: vec!["user_id".into()],
            clustering_key: vec![ClusteringColumn {
                name: "at".into(),
                order: ClusteringOrder::Asc,
            }],
        }
    }

    #[test]
    fn key_only_and_marked_records_are_deletes_and_others_are_not() {
        let key_only = RowMapper::new(&orders_table(DeletesSpec {
            key_only: true,
            ..DeletesSpec::default()
        }))
        .unwrap();
        let key = json!({"user": {"id": 7}, "at": "2024-01-01T00:00:00Z"});
        assert!(key_only.is_delete(&key));
        // Null is a value to write (a null cell), not an absent field.
        let nulled = json!({"user": {"id": 7}, "at": "2024-01-01T00:00:00Z", "item": null});
        assert!(!key_only.is_delete(&nulled));
        let full = json!({"user": {"id": 7}, "at": "2024-01-01T00:00:00Z", "item": "tea"});
        assert!(!key_only.is_delete(&full));
        // The Kafka timestamp column does not make a record more than its key.
        let parts = KafkaRecordParts {
            timestamp_ms: Some(1),
            ..KafkaRecordParts::default()
        };
        let cells = key_only.delete_key(&key, &parts).unwrap();
        assert_eq!(cells.len(), 2, "user_id, then at");
        assert_eq!(cells[0], Cell::Value(CellValue::Int(7)));
        // Without the clustering column there is no one row to delete.
        let err = key_only
            .delete_key(&json!({"user": {"id": 7}}), &parts)
            .unwrap_err();
        assert_eq!(err.problems[0].column, "at");
        assert_eq!(err.problems[0].kind, ColumnErrorKind::MissingKey);

        let marked = RowMapper::new(&orders_table(DeletesSpec {
            marker: Some(DeleteMarker {
                from: "/op".into(),
                equals: "d".into(),
            }),
            ..DeletesSpec::default()
        }))
        .unwrap();
        assert!(marked.is_delete(&json!({"op": "d", "item": "tea"})));
        assert!(!marked.is_delete(&json!({"op": "u"})));
        assert!(!marked.is_delete(&key), "keyOnly is off");
        // Numbers and booleans compare by their JSON text.
        let flagged = RowMapper::new(&orders_table(DeletesSpec {
            marker: Some(DeleteMarker {
                from: "/deleted".into(),
                equals: "true".into(),
            }),
            ..DeletesSpec::default()
        }))
        .unwrap();
        assert!(flagged.is_delete(&json!({"deleted": true})));
        assert!(flagged.is_delete(&json!({"deleted": "true"})));
        assert!(!flagged.is_delete(&json!({"deleted": false})));
        // The pruned parse keeps the marker.
        let parsed = flagged
            .parse(br#"{"deleted": true, "noise": [1, 2]}"#)
            .unwrap();
        assert!(flagged.is_delete(&parsed));
        // A table without deletes has none.
        assert!(
            !RowMapper::new(&users_table())
                .unwrap()
                .is_delete(&json!({}))
        );
    }

    #[test]
    fn a_tombstones_key_is_read_as_the_record_of_its_primary_key() {
        let tombstones = DeletesSpec {
            tombstones: true,
            ..DeletesSpec::default()
        };
        let orders = RowMapper::new(&orders_table(tombstones.clone())).unwrap();
        assert!(orders.deletes_tombstones());
        let object = br#"{"user": {"id": 7}, "at": "2024-01-01T00:00:00Z"}"#;
        let record = orders.tombstone_record(Some(object)).unwrap();
        assert!(
            orders
                .delete_key(&record, &KafkaRecordParts::default())
                .is_ok()
        );
        // Two key columns cannot come from plain text.
        assert!(matches!(
            orders.tombstone_record(Some(b"7")),
            Err(TombstoneError::Unreadable { .. })
        ));
        assert_eq!(orders.tombstone_record(None), Err(TombstoneError::NoKey));
        assert_eq!(
            orders.tombstone_record(Some(&[0xff])),
            Err(TombstoneError::NotUtf8)
        );

        // One key column: the key as the sources key records, plain text.
        let mut users = users_table();
        users.columns.pop();
        users.deletes = Some(tombstones.clone());
        let users = RowMapper::new(&users).unwrap();
        let id = "3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1";
        let record = users.tombstone_record(Some(id.as_bytes())).unwrap();
        assert_eq!(record, json!({"login": {"uuid": id}}));
        let key = users
            .delete_key(&record, &KafkaRecordParts::default())
            .unwrap();
        // The key of a record the sources produced names the same row.
        let produced = users
            .partition_key(&json!({"login": {"uuid": id}}))
            .unwrap();
        assert_eq!(produced, id);
        assert_eq!(key.len(), 1);

        // Several partition key columns: the JSON array the sources use.
        let pair = TableSpec {
            ttl: None,
            write_time: None,
            deletes: Some(tombstones),
            name: "pairs".into(),
            columns: vec![
                ColumnSpec::from_pointer("country", "text", "/country"),
                ColumnSpec::from_pointer("day", "date", "/day"),
                ColumnSpec::from_pointer("n", "int", "/n"),
            ],
            partition_key: vec!["country".into(), "day".into()],
            clustering_key: vec![],
        };
        let pair = RowMapper::new(&pair).unwrap();
        let record_key = pair
            .partition_key(&json!({"country": "NZ", "day": "2024-02-29", "n": 1}))
            .unwrap();
        let record = pair.tombstone_record(Some(record_key.as_bytes())).unwrap();
        let key = pair
            .delete_key(&record, &KafkaRecordParts::default())
            .unwrap();
        assert_eq!(key[0], Cell::Value(CellValue::Text("NZ".into())));
        assert!(matches!(
            pair.tombstone_record(Some(br#"["NZ"]"#)),
            Err(TombstoneError::Unreadable { .. })
        ));
    }
}
