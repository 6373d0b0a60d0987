//! Avro records in the Confluent wire format, turned into the JSON values
//! the column mapping reads.
//!
//! A record is a zero "magic" byte, the writer schema's registry id (four
//! bytes, big-endian) and the Avro binary datum. Each datum is decoded with
//! its own writer schema, and the mapping reads the result by field name as
//! it reads a JSON record: a field a schema version lacks is missing (its
//! column is not written; a key column refuses the record), a field no
//! column reads is ignored. So every
//! evolution Avro allows keeps mapping, without a reader schema.
//!
//! Values keep their exactness through the conversion ([`WriterSchema::decode`]):
//!
//! | Avro | becomes |
//! |---|---|
//! | `null`, `boolean`, `string` | the same JSON value |
//! | `int`, `long` | a JSON integer (every bit of a `long`) |
//! | `float`, `double` | a JSON number (a `float` as its shortest decimal text, `1.1` not `1.100000023841858`); NaN and infinities as the strings `"NaN"`, `"Infinity"`, `"-Infinity"` |
//! | `bytes`, `fixed` | a base64 string, which `blob` columns take |
//! | `enum` | its symbol |
//! | union | the value of its branch |
//! | `array`, `map`, record | an array, an object, an object by field name |
//! | `decimal` (bytes or fixed) | a decimal string with the schema's scale (`"12.30"`): every digit, no float in between |
//! | `uuid` | the hyphenated UUID |
//! | `date` | `YYYY-MM-DD` |
//! | `time-millis`, `time-micros` | `HH:MM:SS.fff` / `HH:MM:SS.ffffff` |
//! | `timestamp-millis`, `-micros`, `-nanos` | RFC 3339 in UTC (`2024-05-31T12:00:00.123Z`), so a `timestamp` column needs no `unit` |
//! | `local-timestamp-*` | the date and time without an offset, which a `timestamp` column reads as UTC |
//! | `duration` | `{"months": m, "days": d, "milliseconds": ms}` |

use std::fmt::Write as _;

use apache_avro::reader::datum::GenericDatumReader;
use apache_avro::schema::{NamesRef, NamespaceRef, ResolvedSchema};
use apache_avro::types::Value as Avro;
use apache_avro::{Decimal as AvroDecimal, Schema};
use base64::Engine as _;
use num_bigint::BigInt;
use serde_json::{Map, Number, Value};

/// The runner's environment for the registry's login, which the operator
/// passes from `format.schemaRegistry.credentialsSecretRef` by
/// `secretKeyRef`.
pub mod env {
    pub const SCHEMA_REGISTRY_USERNAME: &str = "MILLRACE_SCHEMA_REGISTRY_USERNAME";
    pub const SCHEMA_REGISTRY_PASSWORD: &str = "MILLRACE_SCHEMA_REGISTRY_PASSWORD";
    /// The PEM bundle of `schemaRegistry.tls.caSecretRef`.
    pub const SCHEMA_REGISTRY_CA_PEM: &str = "MILLRACE_SCHEMA_REGISTRY_CA_PEM";
}

/// The first byte of every record in the Confluent wire format.
pub const MAGIC_BYTE: u8 = 0;
/// The magic byte and the four bytes of the schema id.
pub const HEADER_LEN: usize = 5;

/// Why a record is not in the Confluent wire format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error(
        "not an Avro record in the Confluent wire format: {len} bytes, fewer than the 5 of its header (magic byte 0, schema id)"
    )]
    TooShort { len: usize },
    #[error(
        "not an Avro record in the Confluent wire format: its first byte is {0}, not the magic byte 0"
    )]
    BadMagic(u8),
}

/// The writer schema's id and the Avro datum of a record in the Confluent
/// wire format.
pub fn split_wire(payload: &[u8]) -> Result<(u32, &[u8]), WireError> {
    let Some((header, datum)) = payload.split_first_chunk::<HEADER_LEN>() else {
        return Err(WireError::TooShort { len: payload.len() });
    };
    if header[0] != MAGIC_BYTE {
        return Err(WireError::BadMagic(header[0]));
    }
    let id = u32::from_be_bytes([header[1], header[2], header[3], header[4]]);
    Ok((id, datum))
}

/// The record in the Confluent wire format: the header for `id`, then
/// `datum`. For producers and tests.
pub fn wire(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + datum.len());
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// Why a schema cannot be used, or a datum not decoded with it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AvroError {
    #[error("the writer schema is not a valid Avro schema: {0}")]
    Schema(String),
    #[error("not decodable with its writer schema: {0}")]
    Decode(String),
    #[error("not decodable with its writer schema: {0} bytes left after the record")]
    Trailing(usize),
    #[error("a value of the record cannot be read: {0}")]
    Value(String),
}

/// A parsed writer schema, ready to decode datums written with it.
///
/// The schema is leaked to give the decoder its `'static` borrow: a writer
/// schema's id never changes meaning, so the sink keeps each one it meets
/// for the life of the process anyway (one per schema version on the
/// topic), and the decoder's name table is then built once, not per record.
pub struct WriterSchema {
    schema: &'static Schema,
    names: NamesRef<'static>,
    reader: GenericDatumReader<'static>,
}

impl std::fmt::Debug for WriterSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriterSchema")
            .field("schema", &self.schema.canonical_form())
            .finish_non_exhaustive()
    }
}

/// A datum being read, noting whether the decoder asked for bytes past its
/// end. apache-avro reads a union whose index is cut off as its first branch
/// (usually null) instead of failing, so a truncated record would otherwise
/// become a row with a field silently nulled.
struct EndWatch<'a> {
    rest: &'a [u8],
    read_past_end: bool,
}

impl std::io::Read for EndWatch<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if !buf.is_empty() && self.rest.is_empty() {
            self.read_past_end = true;
        }
        self.rest.read(buf)
    }
}

impl WriterSchema {
    /// Parses the schema's JSON text, as the registry holds it.
    pub fn parse(text: &str) -> Result<Self, AvroError> {
        let schema = Schema::parse_str(text).map_err(|e| AvroError::Schema(e.to_string()))?;
        Self::new(schema)
    }

    /// Takes a parsed schema.
    pub fn new(schema: Schema) -> Result<Self, AvroError> {
        let schema: &'static Schema = Box::leak(Box::new(schema));
        let resolved =
            ResolvedSchema::try_from(schema).map_err(|e| AvroError::Schema(e.to_string()))?;
        let names = resolved.get_names().clone();
        let reader = GenericDatumReader::builder(schema)
            .resolved_writer_schemata(resolved)
            .build()
            .map_err(|e| AvroError::Schema(e.to_string()))?;
        Ok(Self {
            schema,
            names,
            reader,
        })
    }

    /// The schema.
    pub fn schema(&self) -> &Schema {
        self.schema
    }

    /// Decodes one datum (the record without its wire header) into the
    /// JSON value the mapping reads. The whole datum must be the record.
    pub fn decode(&self, datum: &[u8]) -> Result<Value, AvroError> {
        let mut input = EndWatch {
            rest: datum,
            read_past_end: false,
        };
        let value = self
            .reader
            .read_value(&mut input)
            .map_err(|e| AvroError::Decode(e.to_string()))?;
        if input.read_past_end {
            return Err(AvroError::Decode(
                "the record ends before its schema does (truncated)".into(),
            ));
        }
        if !input.rest.is_empty() {
            return Err(AvroError::Trailing(input.rest.len()));
        }
        self.json(value, self.schema, None)
    }

    /// The schema a reference names, or the schema itself.
    fn resolve<'s>(
        &'s self,
        schema: &'s Schema,
        namespace: NamespaceRef<'s>,
    ) -> Result<&'s Schema, AvroError> {
        match schema {
            Schema::Ref { name } => self
                .names
                .get(&*name.fully_qualified_name(namespace))
                .copied()
                .ok_or_else(|| AvroError::Value(format!("unknown named type {name}"))),
            other => Ok(other),
        }
    }

    fn json<'s>(
        &'s self,
        value: Avro,
        schema: &'s Schema,
        namespace: NamespaceRef<'s>,
    ) -> Result<Value, AvroError> {
        let schema = self.resolve(schema, namespace)?;
        let mismatch = |value: &Avro| {
            AvroError::Value(format!(
                "the decoder gave {value:?} for a {:?} schema",
                apache_avro::schema::SchemaKind::from(schema)
            ))
        };
        Ok(match value {
            Avro::Null => Value::Null,
            Avro::Boolean(b) => Value::Bool(b),
            Avro::Int(i) => Value::from(i),
            Avro::Long(l) => Value::from(l),
            // The shortest text that reads back as the same f32: the number
            // the producer wrote, not the f32's binary expansion.
            Avro::Float(f) => float(f.to_string().parse().unwrap_or(f64::from(f))),
            Avro::Double(d) => float(d),
            Avro::Bytes(b) | Avro::Fixed(_, b) => {
                Value::String(base64::engine::general_purpose::STANDARD.encode(b))
            }
            Avro::String(s) | Avro::Enum(_, s) => Value::String(s),
            Avro::Uuid(u) => Value::String(u.hyphenated().to_string()),
            Avro::Union(i, v) => {
                let Schema::Union(union) = schema else {
                    return Err(mismatch(&Avro::Union(i, v)));
                };
                let branch = union.variants().get(i as usize).ok_or_else(|| {
                    AvroError::Value(format!("union branch {i} is not in the schema"))
                })?;
                self.json(*v, branch, namespace)?
            }
            Avro::Array(items) => {
                let Schema::Array(array) = schema else {
                    return Err(mismatch(&Avro::Array(items)));
                };
                Value::Array(
                    items
                        .into_iter()
                        .map(|v| self.json(v, &array.items, namespace))
                        .collect::<Result<_, _>>()?,
                )
            }
            Avro::Map(entries) => {
                let Schema::Map(map) = schema else {
                    return Err(mismatch(&Avro::Map(entries)));
                };
                let mut out = Map::new();
                for (k, v) in entries {
                    out.insert(k, self.json(v, &map.types, namespace)?);
                }
                Value::Object(out)
            }
            Avro::Record(fields) => {
                let Schema::Record(record) = schema else {
                    return Err(mismatch(&Avro::Record(fields)));
                };
                let inner = record.name.namespace().or(namespace);
                let mut out = Map::new();
                for ((name, v), field) in fields.into_iter().zip(&record.fields) {
                    out.insert(name, self.json(v, &field.schema, inner)?);
                }
                Value::Object(out)
            }
            Avro::Decimal(d) => {
                let Schema::Decimal(decimal) = schema else {
                    return Err(mismatch(&Avro::Decimal(d)));
                };
                Value::String(decimal_text(d, decimal.scale))
            }
            Avro::BigDecimal(d) => Value::String(d.to_string()),
            Avro::Date(days) => {
                let date = jiff::Timestamp::from_second(i64::from(days) * 86_400)
                    .map_err(|e| AvroError::Value(format!("date {days}: {e}")))?
                    .to_zoned(jiff::tz::TimeZone::UTC)
                    .date();
                Value::String(date.to_string())
            }
            Avro::TimeMillis(ms) => Value::String(time_of_day(i64::from(ms), 1_000, 3)?),
            Avro::TimeMicros(us) => Value::String(time_of_day(us, 1_000_000, 6)?),
            Avro::TimestampMillis(ms) => instant(jiff::Timestamp::from_millisecond(ms), false)?,
            Avro::TimestampMicros(us) => instant(jiff::Timestamp::from_microsecond(us), false)?,
            Avro::TimestampNanos(ns) => {
                instant(jiff::Timestamp::from_nanosecond(i128::from(ns)), false)?
            }
            Avro::LocalTimestampMillis(ms) => instant(jiff::Timestamp::from_millisecond(ms), true)?,
            Avro::LocalTimestampMicros(us) => instant(jiff::Timestamp::from_microsecond(us), true)?,
            Avro::LocalTimestampNanos(ns) => {
                instant(jiff::Timestamp::from_nanosecond(i128::from(ns)), true)?
            }
            Avro::Duration(d) => {
                let mut out = Map::new();
                out.insert("months".into(), u32::from(d.months()).into());
                out.insert("days".into(), u32::from(d.days()).into());
                out.insert("milliseconds".into(), u32::from(d.millis()).into());
                Value::Object(out)
            }
        })
    }
}

/// A finite number as a JSON number; NaN and the infinities as the strings
/// `float` and `double` columns read.
fn float(f: f64) -> Value {
    match Number::from_f64(f) {
        Some(n) => Value::Number(n),
        None if f.is_nan() => Value::String("NaN".into()),
        None if f > 0.0 => Value::String("Infinity".into()),
        None => Value::String("-Infinity".into()),
    }
}

/// The unscaled value with its decimal point `scale` digits from the right.
fn decimal_text(d: AvroDecimal, scale: usize) -> String {
    let unscaled = BigInt::from(d);
    let digits = unscaled.magnitude().to_string();
    let mut out = String::with_capacity(digits.len() + scale + 3);
    if unscaled.sign() == num_bigint::Sign::Minus {
        out.push('-');
    }
    if scale == 0 {
        out.push_str(&digits);
    } else if digits.len() > scale {
        let (int, frac) = digits.split_at(digits.len() - scale);
        let _ = write!(out, "{int}.{frac}");
    } else {
        let _ = write!(out, "0.{}{digits}", "0".repeat(scale - digits.len()));
    }
    out
}

/// `HH:MM:SS.f…` of `count` `per_second`ths of a second since midnight,
/// with `digits` of fraction.
fn time_of_day(count: i64, per_second: i64, digits: usize) -> Result<String, AvroError> {
    if !(0..86_400 * per_second).contains(&count) {
        return Err(AvroError::Value(format!(
            "time of day {count} is outside a day"
        )));
    }
    let (seconds, fraction) = (count / per_second, count % per_second);
    Ok(format!(
        "{:02}:{:02}:{:02}.{fraction:0digits$}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    ))
}

/// An instant as RFC 3339 in UTC, or (`local`) as its date and time alone.
fn instant(at: Result<jiff::Timestamp, jiff::Error>, local: bool) -> Result<Value, AvroError> {
    let at = at.map_err(|e| AvroError::Value(format!("timestamp out of range: {e}")))?;
    Ok(Value::String(if local {
        at.to_zoned(jiff::tz::TimeZone::UTC).datetime().to_string()
    } else {
        at.to_string()
    }))
}

/// The registry's answer to `GET /schemas/ids/{id}`.
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySchema {
    /// The schema's JSON text.
    pub schema: String,
    /// `AVRO` when absent.
    #[serde(default)]
    pub schema_type: Option<String>,
}

/// The error code a Confluent-compatible registry answers an unknown schema
/// id with (HTTP 404).
pub const SCHEMA_NOT_FOUND: i64 = 40403;

/// A registry's error body, `{"error_code": 40403, "message": "..."}`.
#[derive(Clone, Debug, serde::Deserialize)]
pub struct RegistryErrorBody {
    pub error_code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
}

impl RegistrySchema {
    /// The writer schema, refusing a schema of another type (Protobuf, JSON
    /// Schema) under the id.
    pub fn parse(&self) -> Result<WriterSchema, AvroError> {
        match self.schema_type.as_deref() {
            None | Some("AVRO") => WriterSchema::parse(&self.schema),
            Some(other) => Err(AvroError::Schema(format!(
                "the registry holds a {other} schema under this id, not Avro"
            ))),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use apache_avro::types::Record;
    use serde_json::json;

    fn encode(schema: &Schema, value: Avro) -> Vec<u8> {
        apache_avro::writer::datum::GenericDatumWriter::builder(schema)
            .build()
            .unwrap()
            .write_value_to_vec(value)
            .unwrap()
    }

    #[test]
    fn the_wire_header_is_read_and_checked() {
        let record = wire(258, b"\x02x");
        assert_eq!(record[..5], [0, 0, 0, 1, 2]);
        assert_eq!(split_wire(&record), Ok((258, &b"\x02x"[..])));
        assert_eq!(split_wire(&[0, 0, 0, 0, 7]), Ok((7, &[][..])));
        assert_eq!(split_wire(&[0, 0, 1]), Err(WireError::TooShort { len: 3 }));
        assert_eq!(split_wire(b""), Err(WireError::TooShort { len: 0 }));
        let json = br#"{"id": 1}"#;
        assert_eq!(split_wire(json), Err(WireError::BadMagic(b'{')));
        assert!(
            split_wire(json)
                .unwrap_err()
                .to_string()
                .contains("not the magic byte 0")
        );
    }

    const EVERY_TYPE: &str = r#"{
      "type": "record", "name": "Every", "namespace": "io.millrace",
      "fields": [
        {"name": "n", "type": "null"},
        {"name": "b", "type": "boolean"},
        {"name": "i", "type": "int"},
        {"name": "l", "type": "long"},
        {"name": "f", "type": "float"},
        {"name": "d", "type": "double"},
        {"name": "nan", "type": "double"},
        {"name": "bytes", "type": "bytes"},
        {"name": "s", "type": "string"},
        {"name": "fixed", "type": {"type": "fixed", "name": "Four", "size": 4}},
        {"name": "e", "type": {"type": "enum", "name": "Colour", "symbols": ["RED", "GREEN"]}},
        {"name": "u", "type": ["null", "string"]},
        {"name": "unull", "type": ["null", "string"]},
        {"name": "a", "type": {"type": "array", "items": "long"}},
        {"name": "m", "type": {"type": "map", "values": "int"}},
        {"name": "inner", "type": {"type": "record", "name": "Inner", "fields": [{"name": "x", "type": "int"}]}},
        {"name": "again", "type": "Inner"},
        {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 30, "scale": 2}},
        {"name": "decfix", "type": {"type": "fixed", "name": "Dec", "size": 8, "logicalType": "decimal", "precision": 10, "scale": 4}},
        {"name": "decneg", "type": {"type": "bytes", "logicalType": "decimal", "precision": 5, "scale": 3}},
        {"name": "decopt", "type": ["null", {"type": "bytes", "logicalType": "decimal", "precision": 9, "scale": 1}]},
        {"name": "uuid", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "date", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tmillis", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "tmicros", "type": {"type": "long", "logicalType": "time-micros"}},
        {"name": "tsmillis", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tsmicros", "type": {"type": "long", "logicalType": "timestamp-micros"}},
        {"name": "lts", "type": {"type": "long", "logicalType": "local-timestamp-millis"}},
        {"name": "dur", "type": {"type": "fixed", "name": "Dur", "size": 12, "logicalType": "duration"}}
      ]}"#;

    #[test]
    fn every_type_and_logical_type_becomes_an_exact_json_value() {
        let writer = WriterSchema::parse(EVERY_TYPE).unwrap();
        let schema = writer.schema().clone();
        let mut r = Record::new(&schema).unwrap();
        r.put("n", Avro::Null);
        r.put("b", true);
        r.put("i", -7i32);
        r.put("l", i64::MAX);
        r.put("f", 1.1f32);
        r.put("d", 0.1f64);
        r.put("nan", f64::NAN);
        r.put("bytes", Avro::Bytes(b"hi".to_vec()));
        r.put("s", "Zoë");
        r.put("fixed", Avro::Fixed(4, vec![0xca, 0xfe, 0xba, 0xbe]));
        r.put("e", Avro::Enum(1, "GREEN".into()));
        r.put("u", Avro::Union(1, Box::new(Avro::String("some".into()))));
        r.put("unull", Avro::Union(0, Box::new(Avro::Null)));
        r.put("a", Avro::Array(vec![Avro::Long(1), Avro::Long(2)]));
        r.put(
            "m",
            Avro::Map([("k".to_owned(), Avro::Int(3))].into_iter().collect()),
        );
        r.put("inner", Avro::Record(vec![("x".into(), Avro::Int(1))]));
        r.put("again", Avro::Record(vec![("x".into(), Avro::Int(2))]));
        // 12345678901234567890123.45: more digits than an f64 holds.
        let big: BigInt = "1234567890123456789012345".parse().unwrap();
        r.put(
            "dec",
            Avro::Decimal(AvroDecimal::from(big.to_signed_bytes_be())),
        );
        // 1.2300 in an 8-byte fixed: the scale's trailing zeros are kept.
        r.put(
            "decfix",
            Avro::Decimal(AvroDecimal::from(BigInt::from(12300).to_signed_bytes_be())),
        );
        r.put(
            "decneg",
            Avro::Decimal(AvroDecimal::from(BigInt::from(-5).to_signed_bytes_be())),
        );
        r.put(
            "decopt",
            Avro::Union(
                1,
                Box::new(Avro::Decimal(AvroDecimal::from(
                    BigInt::from(-125).to_signed_bytes_be(),
                ))),
            ),
        );
        let id = uuid::Uuid::parse_str("6f1c3a3e-1b2d-4c5e-8f90-123456789abc").unwrap();
        r.put("uuid", Avro::Uuid(id));
        r.put("date", Avro::Date(19_874));
        r.put("tmillis", Avro::TimeMillis(45_296_789));
        r.put("tmicros", Avro::TimeMicros(45_296_000_001));
        r.put("tsmillis", Avro::TimestampMillis(1_314_985_530_402));
        r.put("tsmicros", Avro::TimestampMicros(1_314_985_530_402_123));
        r.put("lts", Avro::LocalTimestampMillis(1_314_985_530_402));
        r.put(
            "dur",
            Avro::Duration(apache_avro::Duration::new(
                apache_avro::Months::new(1),
                apache_avro::Days::new(2),
                apache_avro::Millis::new(3),
            )),
        );
        let datum = encode(&schema, r.into());
        let value = writer.decode(&datum).unwrap();
        assert_eq!(
            value,
            json!({
                "n": null, "b": true, "i": -7, "l": 9_223_372_036_854_775_807i64,
                "f": 1.1, "d": 0.1, "nan": "NaN", "bytes": "aGk=", "s": "Zoë",
                "fixed": "yv66vg==", "e": "GREEN", "u": "some", "unull": null,
                "a": [1, 2], "m": {"k": 3}, "inner": {"x": 1}, "again": {"x": 2},
                "dec": "12345678901234567890123.45", "decfix": "1.2300",
                "decneg": "-0.005", "decopt": "-12.5",
                "uuid": "6f1c3a3e-1b2d-4c5e-8f90-123456789abc",
                "date": "2024-05-31", "tmillis": "12:34:56.789",
                "tmicros": "12:34:56.000001",
                "tsmillis": "2011-09-02T17:45:30.402Z",
                "tsmicros": "2011-09-02T17:45:30.402123Z",
                "lts": "2011-09-02T17:45:30.402",
                "dur": {"months": 1, "days": 2, "milliseconds": 3}
            })
        );
    }

    #[test]
    fn decoded_values_fit_the_matching_cql_columns_exactly() {
        use crate::cell::CellValue;
        use crate::coerce::coerce;
        use crate::cql_type::CqlType;
        let writer = WriterSchema::parse(EVERY_TYPE).unwrap();
        let schema = writer.schema().clone();
        let mut r = Record::new(&schema).unwrap();
        for (name, v) in [
            ("n", Avro::Null),
            ("b", Avro::Boolean(false)),
            ("i", Avro::Int(0)),
            ("l", Avro::Long(0)),
            ("f", Avro::Float(0.5)),
            ("d", Avro::Double(0.0)),
            ("nan", Avro::Double(1.0)),
            ("bytes", Avro::Bytes(vec![1, 2])),
            ("s", Avro::String(String::new())),
            ("fixed", Avro::Fixed(4, vec![0; 4])),
            ("e", Avro::Enum(0, "RED".into())),
            ("u", Avro::Union(0, Box::new(Avro::Null))),
            ("unull", Avro::Union(0, Box::new(Avro::Null))),
            ("a", Avro::Array(vec![])),
            ("m", Avro::Map(Default::default())),
            ("inner", Avro::Record(vec![("x".into(), Avro::Int(1))])),
            ("again", Avro::Record(vec![("x".into(), Avro::Int(2))])),
            ("dec", Avro::Decimal(AvroDecimal::from(vec![0x04, 0xd2]))),
            ("decfix", Avro::Decimal(AvroDecimal::from(vec![0x01]))),
            ("decneg", Avro::Decimal(AvroDecimal::from(vec![0x01]))),
            ("decopt", Avro::Union(0, Box::new(Avro::Null))),
            ("uuid", Avro::Uuid(uuid::Uuid::nil())),
            ("date", Avro::Date(-1)),
            ("tmillis", Avro::TimeMillis(1)),
            ("tmicros", Avro::TimeMicros(1)),
            ("tsmillis", Avro::TimestampMillis(1_314_985_530_402)),
            ("tsmicros", Avro::TimestampMicros(1_314_985_530_402_999)),
            ("lts", Avro::LocalTimestampMillis(1_314_985_530_402)),
            (
                "dur",
                Avro::Duration(apache_avro::Duration::new(
                    apache_avro::Months::new(0),
                    apache_avro::Days::new(0),
                    apache_avro::Millis::new(0),
                )),
            ),
        ] {
            r.put(name, v);
        }
        let value = writer.decode(&encode(&schema, r.into())).unwrap();
        let cell = |field: &str, ty: &str| coerce(&value[field], &ty.parse::<CqlType>().unwrap());
        let CellValue::Decimal(d) = cell("dec", "decimal").unwrap() else {
            panic!()
        };
        assert_eq!((d.scale, d.unscaled.to_string()), (2, "1234".to_owned()));
        assert_eq!(
            cell("tsmillis", "timestamp"),
            Ok(CellValue::Timestamp(1_314_985_530_402)),
            "no unit needed"
        );
        assert_eq!(
            cell("tsmicros", "timestamp"),
            Ok(CellValue::Timestamp(1_314_985_530_402)),
            "micros to the millisecond below"
        );
        assert_eq!(
            cell("lts", "timestamp"),
            Ok(CellValue::Timestamp(1_314_985_530_402))
        );
        assert_eq!(cell("date", "date"), Ok(CellValue::Date(-1)));
        assert_eq!(cell("tmillis", "time"), Ok(CellValue::Time(1_000_000)));
        assert_eq!(cell("tmicros", "time"), Ok(CellValue::Time(1_000)));
        assert_eq!(cell("bytes", "blob"), Ok(CellValue::Blob(vec![1, 2])));
        assert_eq!(cell("uuid", "uuid"), Ok(CellValue::Uuid(uuid::Uuid::nil())));
        assert_eq!(cell("l", "bigint"), Ok(CellValue::BigInt(0)));
        assert_eq!(cell("f", "float"), Ok(CellValue::Float(0.5)));
        assert_eq!(cell("e", "text"), Ok(CellValue::Text("RED".into())));
    }

    #[test]
    fn a_long_keeps_every_bit_through_the_mapping() {
        let writer = WriterSchema::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"l","type":"long"}]}"#,
        )
        .unwrap();
        let schema = writer.schema().clone();
        let datum = encode(
            &schema,
            Avro::Record(vec![("l".into(), Avro::Long(9_007_199_254_740_993))]),
        );
        let value = writer.decode(&datum).unwrap();
        assert_eq!(value["l"].as_i64(), Some(9_007_199_254_740_993));
    }

    #[test]
    fn undecodable_datums_are_refused_with_the_reason() {
        let writer = WriterSchema::parse(
            r#"{"type":"record","name":"R","fields":[{"name":"s","type":"string"},{"name":"l","type":"long"}]}"#,
        )
        .unwrap();
        // A string of 10 bytes, but only 2 follow.
        let short = writer.decode(&[0x14, b'a', b'b']).unwrap_err();
        assert!(matches!(short, AvroError::Decode(_)), "{short}");
        assert!(
            short
                .to_string()
                .starts_with("not decodable with its writer schema")
        );
        let schema = writer.schema().clone();
        let mut datum = encode(
            &schema,
            Avro::Record(vec![
                ("s".into(), Avro::String("x".into())),
                ("l".into(), Avro::Long(1)),
            ]),
        );
        datum.push(0);
        assert_eq!(writer.decode(&datum), Err(AvroError::Trailing(1)));
        assert!(matches!(
            WriterSchema::parse(r#"{"type":"nonsense"}"#),
            Err(AvroError::Schema(_))
        ));
        let protobuf = RegistrySchema {
            schema: "syntax = \"proto3\";".into(),
            schema_type: Some("PROTOBUF".into()),
        };
        assert!(
            protobuf
                .parse()
                .unwrap_err()
                .to_string()
                .contains("PROTOBUF schema")
        );
    }

    #[test]
    fn a_truncated_record_is_refused() {
        let writer = WriterSchema::parse(
            r#"{"type":"record","name":"U","fields":[
                {"name":"id","type":{"type":"string","logicalType":"uuid"}},
                {"name":"name","type":"string"},
                {"name":"amount","type":{"type":"bytes","logicalType":"decimal","precision":20,"scale":2}},
                {"name":"registered","type":{"type":"long","logicalType":"timestamp-millis"}},
                {"name":"visits","type":"long"},
                {"name":"email","type":["null","string"],"default":null}]}"#,
        )
        .unwrap();
        let schema = writer.schema().clone();
        let mut datum = encode(
            &schema,
            Avro::Record(vec![
                ("id".into(), Avro::Uuid(uuid::Uuid::new_v4())),
                ("name".into(), Avro::String("Zoë 10".into())),
                (
                    "amount".into(),
                    Avro::Decimal(apache_avro::Decimal::from(
                        9_007_199_254_741_003_i64.to_be_bytes().to_vec(),
                    )),
                ),
                (
                    "registered".into(),
                    Avro::TimestampMillis(1_314_985_530_412),
                ),
                ("visits".into(), Avro::Long(i64::MAX - 10)),
                (
                    "email".into(),
                    Avro::Union(1, Box::new(Avro::String("user10@example.org".into()))),
                ),
            ]),
        );
        assert!(writer.decode(&datum).is_ok());
        datum.truncate(datum.len() - 3);
        let refused = writer.decode(&datum);
        assert!(matches!(refused, Err(AvroError::Decode(_))), "{refused:?}");
    }

    const V1: &str = r#"{"type":"record","name":"User","fields":[
        {"name":"id","type":"string"},
        {"name":"name","type":"string"},
        {"name":"legacy","type":"string","default":""}]}"#;
    const V2: &str = r#"{"type":"record","name":"User","fields":[
        {"name":"id","type":"string"},
        {"name":"name","type":"string"},
        {"name":"email","type":["null","string"],"default":null}]}"#;

    fn mapper() -> crate::RowMapper {
        let table: crate::TableSpec = serde_yaml::from_str(
            "{name: users, columns: [{name: id, type: text, from: /id}, {name: name, type: text, from: /name}, {name: email, type: text, from: /email}], partitionKey: [id]}",
        )
        .unwrap();
        crate::RowMapper::new(&table).unwrap()
    }

    #[test]
    fn records_of_either_schema_version_map_to_rows() {
        use crate::cell::{Cell, CellValue};
        let (v1, v2) = (
            WriterSchema::parse(V1).unwrap(),
            WriterSchema::parse(V2).unwrap(),
        );
        let text = |s: &str| Cell::Value(CellValue::Text(s.into()));
        // Written with v1, which has no email (the column v2 added) and a
        // field v2 removed, which no column reads.
        let old = encode(
            &v1.schema().clone(),
            Avro::Record(vec![
                ("id".into(), Avro::String("a".into())),
                ("name".into(), Avro::String("Ann".into())),
                ("legacy".into(), Avro::String("x".into())),
            ]),
        );
        let row = mapper().map(&v1.decode(&old).unwrap()).unwrap();
        // Missing, as a missing JSON field: not written, no tombstone.
        assert_eq!(row, vec![text("a"), text("Ann"), Cell::Unset]);
        let new = encode(
            &v2.schema().clone(),
            Avro::Record(vec![
                ("id".into(), Avro::String("b".into())),
                ("name".into(), Avro::String("Bob".into())),
                (
                    "email".into(),
                    Avro::Union(1, Box::new(Avro::String("b@x.io".into()))),
                ),
            ]),
        );
        let row = mapper().map(&v2.decode(&new).unwrap()).unwrap();
        assert_eq!(row, vec![text("b"), text("Bob"), text("b@x.io")]);
        // The optional field written as null: a null, as a JSON null is.
        let none = encode(
            &v2.schema().clone(),
            Avro::Record(vec![
                ("id".into(), Avro::String("c".into())),
                ("name".into(), Avro::String("Cy".into())),
                ("email".into(), Avro::Union(0, Box::new(Avro::Null))),
            ]),
        );
        let row = mapper().map(&v2.decode(&none).unwrap()).unwrap();
        assert_eq!(row, vec![text("c"), text("Cy"), Cell::Null]);
    }

    #[test]
    fn a_missing_key_field_is_refused_as_in_json() {
        let no_id = WriterSchema::parse(
            r#"{"type":"record","name":"User","fields":[{"name":"name","type":"string"}]}"#,
        )
        .unwrap();
        let datum = encode(
            &no_id.schema().clone(),
            Avro::Record(vec![("name".into(), Avro::String("Ann".into()))]),
        );
        let err = mapper().map(&no_id.decode(&datum).unwrap()).unwrap_err();
        assert!(
            err.to_string().contains("no value for this primary key"),
            "{err}"
        );
    }

    #[test]
    fn the_registry_answer_is_read() {
        let answer: RegistrySchema =
            serde_json::from_str(&json!({"schema": V1}).to_string()).unwrap();
        assert!(answer.parse().is_ok());
        let typed: RegistrySchema =
            serde_json::from_str(&json!({"schema": V1, "schemaType": "AVRO"}).to_string()).unwrap();
        assert!(typed.parse().is_ok());
        let err: RegistryErrorBody =
            serde_json::from_str(r#"{"error_code":40403,"message":"Schema 9 not found"}"#).unwrap();
        assert_eq!(err.error_code, Some(SCHEMA_NOT_FOUND));
    }
}
