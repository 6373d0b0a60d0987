//! Turning a JSON value into a value of a column's CQL type.
//!
//! Records come from APIs that are loose about types (randomuser's
//! `postcode` is a number for some countries and a string for others), so
//! the rules accept what a person would call the same value:
//!
//! | column type | accepts |
//! |---|---|
//! | `text`, `varchar` | strings; numbers and booleans as written; objects and arrays as compact JSON |
//! | `ascii` | as `text`, if every character is ASCII |
//! | `tinyint` `smallint` `int` `bigint` | integers, numbers with no fraction (`3.0`), and strings of digits (`"72215"`), in range |
//! | `varint` | integers of any size, as numbers or strings of digits (a record's numbers reach these columns as written: see `RowMapper::parse`) |
//! | `float` `double` | numbers and numeric strings (`"1.5"`, `"NaN"`, `"Infinity"`) |
//! | `decimal` | numbers and decimal strings (`"12.30"`, `"1e-3"`), keeping every written digit and the written scale |
//! | `boolean` | booleans and the strings `"true"` / `"false"` in any case |
//! | `uuid` | UUID strings (hyphenated, simple, braced or URN) |
//! | `timeuuid` | as `uuid`, version 1 only |
//! | `timestamp` | RFC 3339 strings (`2011-09-02T17:45:30.402Z`); without an offset, UTC; a bare date is midnight UTC; integers (as numbers or strings of digits) count the column's `unit` since the epoch (seconds, milliseconds or microseconds, rounded down to the millisecond) and are refused without one, or when they fall outside the years 1900 to 2199 |
//! | `date` | `YYYY-MM-DD`; an RFC 3339 timestamp gives its UTC date; integers (as numbers or strings of digits) are days since the epoch |
//! | `time` | `HH:MM[:SS[.fffffffff]]`; integers (as numbers or strings of digits) are nanoseconds since midnight |
//! | `inet` | IPv4 and IPv6 address strings |
//! | `blob` | base64 strings (padded or not), or hex with a `0x` prefix |
//! | `list<T>` `set<T>` | arrays whose elements fit `T` |
//! | `map<K,V>` | objects whose keys fit `K` (from their text) and values fit `V` |
//!
//! Everything else is refused with a [`ValueError`] saying what was expected.

use std::net::IpAddr;

use base64::Engine as _;
use serde_json::{Number, Value};
use uuid::Uuid;

use crate::cell::{CellValue, Decimal, Varint};
use crate::cql_type::CqlType;
use crate::spec::EpochUnit;

/// Why a JSON value does not fit a column's type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error("expected {expected}, found {found}")]
    WrongJsonType {
        expected: &'static str,
        found: &'static str,
    },
    #[error("{value} does not fit in {cql_type} ({range})")]
    OutOfRange {
        value: String,
        cql_type: &'static str,
        range: &'static str,
    },
    #[error("{value:?} is not {expected}")]
    Unparsable {
        value: String,
        expected: &'static str,
    },
    #[error(
        "{value:?} is a version {version} UUID; timeuuid takes only version 1 (time-based) UUIDs"
    )]
    NotTimeUuid { value: String, version: usize },
    #[error("{value:?} has characters outside ASCII, which an ascii column cannot hold")]
    NotAscii { value: String },
    #[error("element {at} is null; Cassandra collections cannot hold null")]
    NullInCollection { at: String },
    #[error("element {at}: {source}")]
    Element { at: String, source: Box<ValueError> },
    #[error(
        "{value} counts seconds, milliseconds or microseconds since the epoch, but the column does not say which: set its unit ({readings})"
    )]
    EpochWithoutUnit { value: String, readings: String },
    #[error(
        "{value} {unit} since the epoch is {instant}, outside the years {}-{}: is the column's unit right?",
        PLAUSIBLE_YEARS.0, PLAUSIBLE_YEARS.1
    )]
    ImplausibleInstant {
        value: String,
        unit: &'static str,
        instant: String,
    },
}

/// The years an instant read from a number may fall in. A number in another
/// unit than the column's lands far outside them: milliseconds read as
/// seconds are tens of thousands of years ahead.
pub const PLAUSIBLE_YEARS: (i16, i16) = (1900, 2199);

/// Longest excerpt of an offending value quoted in an error, so a dead-letter
/// reason stays readable when a record carries a huge field.
const EXCERPT: usize = 64;

fn excerpt(text: &str) -> String {
    match text.char_indices().nth(EXCERPT) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(expected: &'static str, value: &Value) -> ValueError {
    ValueError::WrongJsonType {
        expected,
        found: json_kind(value),
    }
}

fn unparsable(value: &str, expected: &'static str) -> ValueError {
    ValueError::Unparsable {
        value: excerpt(value),
        expected,
    }
}

/// Converts `value` to a value of `cql_type`. `value` must not be null: the
/// caller decides what null means for the column. Numbers are refused for
/// timestamps; [`coerce_with_unit`] takes them.
pub fn coerce(value: &Value, cql_type: &CqlType) -> Result<CellValue, ValueError> {
    coerce_with_unit(value, cql_type, None)
}

/// As [`coerce`], with numbers read into timestamps as `unit` since the
/// epoch.
pub fn coerce_with_unit(
    value: &Value,
    cql_type: &CqlType,
    unit: Option<EpochUnit>,
) -> Result<CellValue, ValueError> {
    match cql_type {
        CqlType::Text => Ok(CellValue::Text(text_of(value))),
        CqlType::Ascii => {
            let text = text_of(value);
            if text.is_ascii() {
                Ok(CellValue::Ascii(text))
            } else {
                Err(ValueError::NotAscii {
                    value: excerpt(&text),
                })
            }
        }
        CqlType::TinyInt => integer(value, "tinyint", "-128 to 127").map(CellValue::TinyInt),
        CqlType::SmallInt => integer(value, "smallint", "-32768 to 32767").map(CellValue::SmallInt),
        CqlType::Int => integer(value, "int", "-2147483648 to 2147483647").map(CellValue::Int),
        CqlType::BigInt => integer(value, "bigint", "-2^63 to 2^63-1").map(CellValue::BigInt),
        CqlType::Varint => varint(value).map(CellValue::Varint),
        CqlType::Double => float(value).map(CellValue::Double),
        CqlType::Float => {
            let v = float(value)?;
            let narrowed = v as f32;
            if v.is_finite() && !narrowed.is_finite() {
                return Err(ValueError::OutOfRange {
                    value: v.to_string(),
                    cql_type: "float",
                    range: "about ±3.4e38",
                });
            }
            Ok(CellValue::Float(narrowed))
        }
        CqlType::Decimal => decimal(value).map(CellValue::Decimal),
        CqlType::Boolean => boolean(value).map(CellValue::Boolean),
        CqlType::Uuid => uuid(value).map(CellValue::Uuid),
        CqlType::TimeUuid => {
            let id = uuid(value)?;
            match id.get_version_num() {
                1 => Ok(CellValue::TimeUuid(id)),
                version => Err(ValueError::NotTimeUuid {
                    value: id.hyphenated().to_string(),
                    version,
                }),
            }
        }
        CqlType::Timestamp => timestamp(value, unit).map(CellValue::Timestamp),
        CqlType::Date => date(value).map(CellValue::Date),
        CqlType::Time => time(value).map(CellValue::Time),
        CqlType::Inet => inet(value).map(CellValue::Inet),
        CqlType::Blob => blob(value).map(CellValue::Blob),
        CqlType::List(element) => elements(value, element, unit).map(CellValue::List),
        CqlType::Set(element) => elements(value, element, unit).map(CellValue::Set),
        CqlType::Map(key, val) => entries(value, key, val, unit).map(CellValue::Map),
    }
}

/// The value as text: strings as they are, anything else as compact JSON.
pub(crate) fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An integer from a number or a string of digits, checked against the
/// range of `T`.
fn integer<T: TryFrom<i64>>(
    value: &Value,
    cql_type: &'static str,
    range: &'static str,
) -> Result<T, ValueError> {
    let out_of_range = |text: String| ValueError::OutOfRange {
        value: excerpt(&text),
        cql_type,
        range,
    };
    let wide: i64 = match value {
        Value::Number(n) => match number_as_i64(n) {
            Some(v) => v,
            None if is_integral(n) => return Err(out_of_range(n.to_string())),
            None => return Err(unparsable(&n.to_string(), "a whole number")),
        },
        Value::String(s) => {
            let trimmed = s.trim();
            if Varint::parse(trimmed).is_none() {
                return Err(unparsable(s, "a whole number"));
            }
            trimmed
                .parse::<i64>()
                .map_err(|_| out_of_range(trimmed.to_owned()))?
        }
        other => return Err(wrong("a whole number or a string of digits", other)),
    };
    T::try_from(wide).map_err(|_| out_of_range(wide.to_string()))
}

fn is_integral(n: &Number) -> bool {
    n.is_i64()
        || n.is_u64()
        || n.as_f64()
            .is_some_and(|f| f.is_finite() && f.fract() == 0.0)
}

/// The number as an i64, if it is whole and fits. Floats count when they
/// have no fraction and are small enough to be exact.
fn number_as_i64(n: &Number) -> Option<i64> {
    if let Some(v) = n.as_i64() {
        return Some(v);
    }
    if n.is_u64() {
        return None;
    }
    let f = n.as_f64()?;
    // 2^53: beyond it, a float no longer names one integer exactly.
    const EXACT: f64 = 9_007_199_254_740_992.0;
    (f.fract() == 0.0 && f.abs() <= EXACT).then_some(f as i64)
}

fn varint(value: &Value) -> Result<Varint, ValueError> {
    let text = match value {
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(v), _) => v.to_string(),
            (None, Some(v)) => v.to_string(),
            _ => match number_as_i64(n) {
                Some(v) => v.to_string(),
                None => return Err(unparsable(&n.to_string(), "an exact whole number")),
            },
        },
        Value::String(s) => s.trim().to_owned(),
        other => return Err(wrong("a whole number or a string of digits", other)),
    };
    Varint::parse(&text).ok_or_else(|| unparsable(&text, "a whole number"))
}

fn float(value: &Value) -> Result<f64, ValueError> {
    match value {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| unparsable(&n.to_string(), "a number")),
        Value::String(s) => s
            .trim()
            .parse::<f64>()
            .map_err(|_| unparsable(s, "a number")),
        other => Err(wrong("a number or a numeric string", other)),
    }
}

/// Largest decimal scale accepted, in either direction. Cassandra allows
/// more, but a record asking for `1e-999999999` is a mistake or an attack
/// on memory, not data.
const MAX_DECIMAL_SCALE: i64 = 1000;

fn decimal(value: &Value) -> Result<Decimal, ValueError> {
    let text = match value {
        // serde_json keeps a number's shortest round-trip text, so 12.30
        // arrives as "12.3": the value is kept, trailing zeros are not.
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_owned(),
        other => return Err(wrong("a number or a decimal string", other)),
    };
    parse_decimal(&text).ok_or_else(|| unparsable(&text, "a decimal number"))
}

fn parse_decimal(text: &str) -> Option<Decimal> {
    let (mantissa, exponent) = match text.find(['e', 'E']) {
        Some(at) => (&text[..at], text[at + 1..].parse::<i64>().ok()?),
        None => (text, 0),
    };
    let (sign, mantissa) = match mantissa.as_bytes().first() {
        Some(b'-') => ("-", &mantissa[1..]),
        Some(b'+') => ("", &mantissa[1..]),
        _ => ("", mantissa),
    };
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() && frac.is_empty() || !all_digits(int) || !all_digits(frac) {
        return None;
    }
    let scale = i64::try_from(frac.len()).ok()? - exponent;
    if scale.abs() > MAX_DECIMAL_SCALE {
        return None;
    }
    Some(Decimal {
        unscaled: Varint::parse(&format!("{sign}{int}{frac}"))?,
        scale: i32::try_from(scale).ok()?,
    })
}

fn boolean(value: &Value) -> Result<bool, ValueError> {
    match value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        Value::String(s) => Err(unparsable(s, "true or false")),
        other => Err(wrong("a boolean", other)),
    }
}

fn uuid(value: &Value) -> Result<Uuid, ValueError> {
    match value {
        Value::String(s) => Uuid::parse_str(s.trim()).map_err(|_| unparsable(s, "a UUID")),
        other => Err(wrong("a UUID string", other)),
    }
}

const SECONDS_PER_DAY: i64 = 86_400;
const NANOS_PER_DAY: i64 = SECONDS_PER_DAY * 1_000_000_000;

fn timestamp(value: &Value, unit: Option<EpochUnit>) -> Result<i64, ValueError> {
    const EXPECTED: &str = "a timestamp such as 2011-09-02T17:45:30.402Z";
    match value {
        Value::Number(n) => {
            let whole = number_as_i64(n)
                .ok_or_else(|| unparsable(&n.to_string(), "a whole number since the epoch"))?;
            since_epoch(whole, unit)
        }
        Value::String(s) => {
            let text = s.trim();
            if let Ok(whole) = text.parse::<i64>() {
                return since_epoch(whole, unit);
            }
            parse_timestamp(text)
                .map(jiff::Timestamp::as_millisecond)
                .ok_or_else(|| unparsable(s, EXPECTED))
        }
        other => Err(wrong(EXPECTED, other)),
    }
}

/// `whole` `unit`s since the epoch, in milliseconds, if that is a plausible
/// instant.
fn since_epoch(whole: i64, unit: Option<EpochUnit>) -> Result<i64, ValueError> {
    let Some(unit) = unit else {
        let readings = [EpochUnit::Seconds, EpochUnit::Milliseconds]
            .into_iter()
            .filter_map(|u| {
                let at = plausible_instant(to_millis(whole, u)?)?;
                Some(format!("as {} it is {at}", u.as_str()))
            })
            .collect::<Vec<_>>();
        return Err(ValueError::EpochWithoutUnit {
            value: whole.to_string(),
            readings: if readings.is_empty() {
                "it is no plausible instant in seconds or milliseconds".to_owned()
            } else {
                readings.join(", ")
            },
        });
    };
    let millis = to_millis(whole, unit);
    if let Some(ms) = millis.filter(|&ms| plausible_instant(ms).is_some()) {
        return Ok(ms);
    }
    Err(ValueError::ImplausibleInstant {
        value: whole.to_string(),
        unit: unit.as_str(),
        instant: millis
            .and_then(|ms| jiff::Timestamp::from_millisecond(ms).ok())
            .map_or_else(|| "beyond any date".to_owned(), |t| t.to_string()),
    })
}

fn to_millis(whole: i64, unit: EpochUnit) -> Option<i64> {
    match unit {
        EpochUnit::Seconds => whole.checked_mul(1000),
        EpochUnit::Milliseconds => Some(whole),
        // CQL timestamps hold milliseconds.
        EpochUnit::Microseconds => Some(whole.div_euclid(1000)),
    }
}

/// The instant `millis` after the epoch, if it falls in [`PLAUSIBLE_YEARS`].
fn plausible_instant(millis: i64) -> Option<jiff::Timestamp> {
    let at = jiff::Timestamp::from_millisecond(millis).ok()?;
    let year = at.to_zoned(jiff::tz::TimeZone::UTC).year();
    (PLAUSIBLE_YEARS.0..=PLAUSIBLE_YEARS.1)
        .contains(&year)
        .then_some(at)
}

fn parse_timestamp(text: &str) -> Option<jiff::Timestamp> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Some(ts);
    }
    let utc = jiff::tz::Offset::UTC;
    if let Ok(dt) = text.parse::<jiff::civil::DateTime>() {
        return utc.to_timestamp(dt).ok();
    }
    let date = text.parse::<jiff::civil::Date>().ok()?;
    utc.to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
        .ok()
}

fn date(value: &Value) -> Result<i32, ValueError> {
    const EXPECTED: &str = "a date such as 2024-05-31";
    let days = match value {
        Value::Number(n) => number_as_i64(n)
            .ok_or_else(|| unparsable(&n.to_string(), "whole days since the epoch"))?,
        Value::String(s) if s.trim().parse::<i64>().is_ok() => {
            return date(&Value::from(s.trim().parse::<i64>().unwrap_or_default()));
        }
        Value::String(s) => {
            let text = s.trim();
            let midnight = match text.parse::<jiff::civil::Date>() {
                Ok(date) => jiff::tz::Offset::UTC
                    .to_timestamp(date.to_datetime(jiff::civil::Time::midnight()))
                    .ok(),
                Err(_) => parse_timestamp(text),
            };
            let ts = midnight.ok_or_else(|| unparsable(s, EXPECTED))?;
            ts.as_second().div_euclid(SECONDS_PER_DAY)
        }
        other => return Err(wrong(EXPECTED, other)),
    };
    i32::try_from(days).map_err(|_| ValueError::OutOfRange {
        value: days.to_string(),
        cql_type: "date",
        range: "±2^31 days from 1970-01-01",
    })
}

fn time(value: &Value) -> Result<i64, ValueError> {
    const EXPECTED: &str = "a time of day such as 17:45:30.402";
    match value {
        Value::Number(n) => {
            let nanos = number_as_i64(n)
                .ok_or_else(|| unparsable(&n.to_string(), "whole nanoseconds since midnight"))?;
            if (0..NANOS_PER_DAY).contains(&nanos) {
                Ok(nanos)
            } else {
                Err(ValueError::OutOfRange {
                    value: nanos.to_string(),
                    cql_type: "time",
                    range: "0 to 86399999999999 nanoseconds",
                })
            }
        }
        Value::String(s) if s.trim().parse::<i64>().is_ok() => {
            time(&Value::from(s.trim().parse::<i64>().unwrap_or_default()))
        }
        Value::String(s) => {
            let t = s
                .trim()
                .parse::<jiff::civil::Time>()
                .map_err(|_| unparsable(s, EXPECTED))?;
            let seconds =
                i64::from(t.hour()) * 3600 + i64::from(t.minute()) * 60 + i64::from(t.second());
            Ok(seconds * 1_000_000_000 + i64::from(t.subsec_nanosecond()))
        }
        other => Err(wrong(EXPECTED, other)),
    }
}

fn inet(value: &Value) -> Result<IpAddr, ValueError> {
    match value {
        Value::String(s) => s
            .trim()
            .parse::<IpAddr>()
            .map_err(|_| unparsable(s, "an IPv4 or IPv6 address")),
        other => Err(wrong("an IP address string", other)),
    }
}

fn blob(value: &Value) -> Result<Vec<u8>, ValueError> {
    const EXPECTED: &str = "base64, or hex with a 0x prefix";
    let Value::String(s) = value else {
        return Err(wrong("a base64 or 0x-hex string", value));
    };
    let text = s.trim();
    if let Some(hex) = text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        return decode_hex(hex).ok_or_else(|| unparsable(s, EXPECTED));
    }
    let engine = base64::engine::general_purpose::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    engine.decode(text).map_err(|_| unparsable(s, EXPECTED))
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16);
    hex.as_bytes()
        .chunks(2)
        .map(|pair| Some((digit(pair[0])? * 16 + digit(pair[1])?) as u8))
        .collect()
}

fn elements(
    value: &Value,
    element: &CqlType,
    unit: Option<EpochUnit>,
) -> Result<Vec<CellValue>, ValueError> {
    let Value::Array(items) = value else {
        return Err(wrong("an array", value));
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            if item.is_null() {
                return Err(ValueError::NullInCollection { at: i.to_string() });
            }
            coerce_with_unit(item, element, unit).map_err(|source| ValueError::Element {
                at: i.to_string(),
                source: Box::new(source),
            })
        })
        .collect()
}

fn entries(
    value: &Value,
    key: &CqlType,
    val: &CqlType,
    unit: Option<EpochUnit>,
) -> Result<Vec<(CellValue, CellValue)>, ValueError> {
    let Value::Object(map) = value else {
        return Err(wrong("an object", value));
    };
    map.iter()
        .map(|(k, v)| {
            let at = || excerpt(k);
            let element = |source| ValueError::Element {
                at: at(),
                source: Box::new(source),
            };
            if v.is_null() {
                return Err(ValueError::NullInCollection { at: at() });
            }
            let key = coerce_with_unit(&Value::String(k.clone()), key, unit).map_err(element)?;
            let value = coerce_with_unit(v, val, unit).map_err(element)?;
            Ok((key, value))
        })
        .collect()
}

/// A row's write time from a record's value, in microseconds since the
/// epoch (Cassandra's `USING TIMESTAMP` unit): an RFC 3339 text date, or a
/// whole number (or string of digits) of `unit`s, within
/// [`PLAUSIBLE_YEARS`].
pub fn write_time_micros(value: &Value, unit: EpochUnit) -> Result<i64, ValueError> {
    const EXPECTED: &str = "a time such as 2011-09-02T17:45:30.402Z, or a number since the epoch";
    let whole = match value {
        Value::Number(n) => number_as_i64(n)
            .ok_or_else(|| unparsable(&n.to_string(), "a whole number since the epoch"))?,
        Value::String(s) => match s.trim().parse::<i64>() {
            Ok(whole) => whole,
            Err(_) => {
                return parse_timestamp(s.trim())
                    .filter(|t| plausible_instant(t.as_millisecond()).is_some())
                    .map(jiff::Timestamp::as_microsecond)
                    .ok_or_else(|| unparsable(s, EXPECTED));
            }
        },
        other => return Err(wrong(EXPECTED, other)),
    };
    let micros = match unit {
        EpochUnit::Seconds => whole.checked_mul(1_000_000),
        EpochUnit::Milliseconds => whole.checked_mul(1000),
        EpochUnit::Microseconds => Some(whole),
    };
    // The same plausibility as a timestamp column's, so a time in the
    // wrong unit is refused rather than written far in the past or
    // future, where it would win (or lose) against every other version.
    since_epoch(whole, Some(unit))?;
    micros.ok_or_else(|| ValueError::ImplausibleInstant {
        value: whole.to_string(),
        unit: unit.as_str(),
        instant: "beyond any date".to_owned(),
    })
}

/// A row's TTL from a record's value: whole seconds from 0 (forever) to
/// Cassandra's 20 years, as a number or a string of digits.
pub fn ttl_seconds(value: &Value) -> Result<i32, ValueError> {
    const EXPECTED: &str = "a whole number of seconds";
    let whole = match value {
        Value::Number(n) => number_as_i64(n).ok_or_else(|| unparsable(&n.to_string(), EXPECTED))?,
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .map_err(|_| unparsable(s, EXPECTED))?,
        other => return Err(wrong(EXPECTED, other)),
    };
    i32::try_from(whole)
        .ok()
        .filter(|s| (0..=crate::spec::limits::TTL_SECONDS_MAX).contains(s))
        .ok_or_else(|| ValueError::OutOfRange {
            value: whole.to_string(),
            cql_type: "a TTL",
            range: "0 to 630720000 seconds (20 years); 0 is forever",
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ok(value: Value, cql_type: &str) -> CellValue {
        let t: CqlType = cql_type.parse().unwrap();
        coerce(&value, &t).unwrap_or_else(|e| panic!("{value} as {cql_type}: {e}"))
    }

    fn err(value: Value, cql_type: &str) -> ValueError {
        let t: CqlType = cql_type.parse().unwrap();
        match coerce(&value, &t) {
            Ok(v) => panic!("{value} as {cql_type} should fail, got {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn text_takes_strings_and_writes_other_values_as_json() {
        assert_eq!(ok(json!("Tomás"), "text"), CellValue::Text("Tomás".into()));
        assert_eq!(ok(json!(72215), "text"), CellValue::Text("72215".into()));
        assert_eq!(ok(json!(1.5), "varchar"), CellValue::Text("1.5".into()));
        assert_eq!(ok(json!(true), "text"), CellValue::Text("true".into()));
        assert_eq!(
            ok(json!({"a": [1]}), "text"),
            CellValue::Text(r#"{"a":[1]}"#.into())
        );
    }

    #[test]
    fn ascii_refuses_other_characters() {
        assert_eq!(
            ok(json!("Vasteras"), "ascii"),
            CellValue::Ascii("Vasteras".into())
        );
        assert!(matches!(
            err(json!("Québec"), "ascii"),
            ValueError::NotAscii { .. }
        ));
    }

    #[test]
    fn tinyint_checks_its_range() {
        assert_eq!(ok(json!(-128), "tinyint"), CellValue::TinyInt(-128));
        assert_eq!(ok(json!("127"), "tinyint"), CellValue::TinyInt(127));
        let e = err(json!(128), "tinyint");
        assert_eq!(e.to_string(), "128 does not fit in tinyint (-128 to 127)");
    }

    #[test]
    fn smallint_checks_its_range() {
        assert_eq!(ok(json!(32767), "smallint"), CellValue::SmallInt(32767));
        assert!(matches!(
            err(json!(-32769), "smallint"),
            ValueError::OutOfRange { .. }
        ));
    }

    #[test]
    fn int_takes_numbers_and_numeric_strings() {
        assert_eq!(ok(json!(72215), "int"), CellValue::Int(72215));
        assert_eq!(ok(json!("72215"), "int"), CellValue::Int(72215));
        assert_eq!(ok(json!(" -7 "), "int"), CellValue::Int(-7));
        assert_eq!(ok(json!(3.0), "int"), CellValue::Int(3));
        assert!(matches!(
            err(json!(2147483648i64), "int"),
            ValueError::OutOfRange { .. }
        ));
        assert!(matches!(
            err(json!("J4X 2K7"), "int"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!(1.5), "int"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!(true), "int"),
            ValueError::WrongJsonType { .. }
        ));
        assert!(matches!(
            err(json!("99999999999999999999"), "int"),
            ValueError::OutOfRange { .. }
        ));
    }

    #[test]
    fn bigint_takes_the_full_i64_range() {
        assert_eq!(ok(json!(i64::MIN), "bigint"), CellValue::BigInt(i64::MIN));
        assert_eq!(
            ok(json!("9223372036854775807"), "bigint"),
            CellValue::BigInt(i64::MAX)
        );
        assert!(matches!(
            err(json!(u64::MAX), "bigint"),
            ValueError::OutOfRange { .. }
        ));
        assert!(matches!(
            err(json!(1e300), "bigint"),
            ValueError::OutOfRange { .. }
        ));
    }

    #[test]
    fn varint_takes_integers_of_any_size() {
        let CellValue::Varint(v) = ok(json!("-123456789012345678901234567890"), "varint") else {
            panic!("not a varint");
        };
        assert_eq!(v.as_str(), "-123456789012345678901234567890");
        assert!(matches!(
            ok(json!(u64::MAX), "varint"),
            CellValue::Varint(_)
        ));
        assert!(matches!(
            err(json!("12.5"), "varint"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!(1.5), "varint"),
            ValueError::Unparsable { .. }
        ));
    }

    #[test]
    fn float_narrows_and_refuses_overflow() {
        assert_eq!(ok(json!(1.5), "float"), CellValue::Float(1.5));
        assert_eq!(ok(json!("59.6099"), "float"), CellValue::Float(59.6099));
        assert!(matches!(
            err(json!(1e300), "float"),
            ValueError::OutOfRange { .. }
        ));
        assert!(matches!(
            err(json!("abc"), "float"),
            ValueError::Unparsable { .. }
        ));
    }

    #[test]
    fn double_takes_numbers_and_numeric_strings() {
        assert_eq!(ok(json!(-0.8891), "double"), CellValue::Double(-0.8891));
        assert_eq!(ok(json!("16.5448"), "double"), CellValue::Double(16.5448));
        assert!(matches!(ok(json!("NaN"), "double"), CellValue::Double(v) if v.is_nan()));
        assert_eq!(
            ok(json!("-Infinity"), "double"),
            CellValue::Double(f64::NEG_INFINITY)
        );
        assert!(matches!(
            err(json!([1.0]), "double"),
            ValueError::WrongJsonType { .. }
        ));
    }

    #[test]
    fn decimal_keeps_the_written_scale() {
        let CellValue::Decimal(d) = ok(json!("12.340"), "decimal") else {
            panic!("not a decimal");
        };
        assert_eq!((d.unscaled.as_str(), d.scale), ("12340", 3));
        let CellValue::Decimal(d) = ok(json!(-1.5e-3), "decimal") else {
            panic!("not a decimal");
        };
        assert_eq!(d.to_string(), "-0.0015");
        let CellValue::Decimal(d) = ok(json!("1E+3"), "decimal") else {
            panic!("not a decimal");
        };
        assert_eq!(
            (d.unscaled.as_str(), d.scale, d.to_string().as_str()),
            ("1", -3, "1000")
        );
        for bad in [json!("1.2.3"), json!("."), json!("NaN"), json!("1e99999")] {
            assert!(matches!(err(bad, "decimal"), ValueError::Unparsable { .. }));
        }
    }

    #[test]
    fn boolean_takes_booleans_and_their_words() {
        assert_eq!(ok(json!(true), "boolean"), CellValue::Boolean(true));
        assert_eq!(ok(json!("FALSE"), "boolean"), CellValue::Boolean(false));
        assert!(matches!(
            err(json!("yes"), "boolean"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!(1), "boolean"),
            ValueError::WrongJsonType { .. }
        ));
    }

    #[test]
    fn uuid_parses_common_spellings() {
        let expected = Uuid::parse_str("3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1").unwrap();
        assert_eq!(
            ok(json!("3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"), "uuid"),
            CellValue::Uuid(expected)
        );
        assert_eq!(
            ok(json!("3F1D9C528A4E4B7E9D0A6C2B51E8F7A1"), "uuid"),
            CellValue::Uuid(expected)
        );
        assert!(matches!(
            err(json!("3f1d9c52-8a4e"), "uuid"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!(42), "uuid"),
            ValueError::WrongJsonType { .. }
        ));
    }

    #[test]
    fn timeuuid_takes_only_version_1() {
        assert!(matches!(
            ok(json!("5b6962dd-3f90-11ee-be56-0242ac120002"), "timeuuid"),
            CellValue::TimeUuid(_)
        ));
        assert!(matches!(
            err(json!("3f1d9c52-8a4e-4b7e-9d0a-6c2b51e8f7a1"), "timeuuid"),
            ValueError::NotTimeUuid { version: 4, .. }
        ));
    }

    #[test]
    fn timestamp_takes_rfc3339_dates_and_numbers_in_the_columns_unit() {
        assert_eq!(
            ok(json!("2011-09-02T17:45:30.402Z"), "timestamp"),
            CellValue::Timestamp(1_314_985_530_402)
        );
        assert_eq!(
            ok(json!("2011-09-02T19:45:30.402+02:00"), "timestamp"),
            CellValue::Timestamp(1_314_985_530_402)
        );
        assert_eq!(
            ok(json!("2011-09-02T17:45:30.402"), "timestamp"),
            CellValue::Timestamp(1_314_985_530_402)
        );
        assert_eq!(
            ok(json!("2011-09-02 17:45:30.402"), "timestamp"),
            CellValue::Timestamp(1_314_985_530_402)
        );
        assert_eq!(
            ok(json!("1970-01-02"), "timestamp"),
            CellValue::Timestamp(86_400_000)
        );
        assert!(matches!(
            err(json!("2011-13-02T00:00:00Z"), "timestamp"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!("yesterday"), "timestamp"),
            ValueError::Unparsable { .. }
        ));
        let ts = CqlType::Timestamp;
        let with = |v: Value, unit| coerce_with_unit(&v, &ts, Some(unit));
        assert!(matches!(
            with(json!(1.5), EpochUnit::Seconds),
            Err(ValueError::Unparsable { .. })
        ));
        // The seed's case: epoch seconds, November 2023.
        assert_eq!(
            with(json!(1_700_000_000), EpochUnit::Seconds),
            Ok(CellValue::Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            with(json!("1700000000"), EpochUnit::Seconds),
            Ok(CellValue::Timestamp(1_700_000_000_000))
        );
        assert_eq!(
            with(json!(1_314_985_530_402i64), EpochUnit::Milliseconds),
            Ok(CellValue::Timestamp(1_314_985_530_402))
        );
        assert_eq!(
            with(json!(1_314_985_530_402_999i64), EpochUnit::Microseconds),
            Ok(CellValue::Timestamp(1_314_985_530_402))
        );
        assert_eq!(
            with(json!("-1000"), EpochUnit::Milliseconds),
            Ok(CellValue::Timestamp(-1000))
        );
        // Text dates need no unit, and a unit does not change them.
        assert_eq!(
            with(json!("2011-09-02T17:45:30.402Z"), EpochUnit::Seconds),
            Ok(CellValue::Timestamp(1_314_985_530_402))
        );
    }

    #[test]
    fn a_number_without_a_unit_or_in_the_wrong_unit_is_refused() {
        let e = err(json!(1_700_000_000), "timestamp");
        assert_eq!(
            e.to_string(),
            "1700000000 counts seconds, milliseconds or microseconds since the epoch, but the column \
             does not say which: set its unit (as seconds it is 2023-11-14T22:13:20Z, as milliseconds \
             it is 1970-01-20T16:13:20Z)"
        );
        assert!(matches!(
            err(json!("1700000000000"), "timestamp"),
            ValueError::EpochWithoutUnit { .. }
        ));
        let ts = CqlType::Timestamp;
        // Milliseconds read as seconds: the year 55,841.
        let e = coerce_with_unit(&json!(1_700_000_000_000i64), &ts, Some(EpochUnit::Seconds))
            .unwrap_err();
        assert!(
            matches!(
                e,
                ValueError::ImplausibleInstant {
                    unit: "seconds",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("is the column's unit right?"), "{e}");
        // Nanoseconds read as microseconds.
        assert!(matches!(
            coerce_with_unit(
                &json!(1_700_000_000_000_000_000i64),
                &ts,
                Some(EpochUnit::Microseconds)
            ),
            Err(ValueError::ImplausibleInstant { .. })
        ));
        // Overflow is no instant at all, not a panic.
        assert!(matches!(
            coerce_with_unit(&json!(i64::MAX), &ts, Some(EpochUnit::Seconds)),
            Err(ValueError::ImplausibleInstant { .. })
        ));
        // Collections of timestamps take the unit too.
        let list: CqlType = "list<timestamp>".parse().unwrap();
        assert_eq!(
            coerce_with_unit(&json!([1_700_000_000]), &list, Some(EpochUnit::Seconds)),
            Ok(CellValue::List(vec![CellValue::Timestamp(
                1_700_000_000_000
            )]))
        );
        assert!(matches!(
            err(json!([1_700_000_000]), "list<timestamp>"),
            ValueError::Element { .. }
        ));
    }

    #[test]
    fn date_takes_calendar_dates_timestamps_and_epoch_days() {
        assert_eq!(ok(json!("2024-05-31"), "date"), CellValue::Date(19_874));
        assert_eq!(ok(json!("1969-12-31"), "date"), CellValue::Date(-1));
        assert_eq!(
            ok(json!("1988-03-14T06:21:09.118Z"), "date"),
            ok(json!("1988-03-14"), "date")
        );
        assert_eq!(ok(json!(19_874), "date"), CellValue::Date(19_874));
        assert_eq!(ok(json!("-1"), "date"), CellValue::Date(-1));
        assert!(matches!(
            err(json!("2024-02-30"), "date"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!(1i64 << 40), "date"),
            ValueError::OutOfRange { .. }
        ));
    }

    #[test]
    fn time_takes_times_of_day_and_nanoseconds() {
        assert_eq!(
            ok(json!("01:02:03"), "time"),
            CellValue::Time(3_723_000_000_000)
        );
        assert_eq!(
            ok(json!("01:02:03.000000005"), "time"),
            CellValue::Time(3_723_000_000_005)
        );
        assert_eq!(
            ok(json!("23:59"), "time"),
            CellValue::Time(86_340_000_000_000)
        );
        assert_eq!(ok(json!(5), "time"), CellValue::Time(5));
        assert_eq!(ok(json!("5"), "time"), CellValue::Time(5));
        assert!(matches!(
            err(json!("24:00:00"), "time"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!(NANOS_PER_DAY), "time"),
            ValueError::OutOfRange { .. }
        ));
    }

    #[test]
    fn inet_takes_v4_and_v6() {
        assert_eq!(
            ok(json!("10.0.0.1"), "inet"),
            CellValue::Inet("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            ok(json!("::1"), "inet"),
            CellValue::Inet("::1".parse().unwrap())
        );
        assert!(matches!(
            err(json!("10.0.0.256"), "inet"),
            ValueError::Unparsable { .. }
        ));
    }

    #[test]
    fn blob_takes_base64_and_hex() {
        assert_eq!(ok(json!("aGk="), "blob"), CellValue::Blob(b"hi".to_vec()));
        assert_eq!(ok(json!("aGk"), "blob"), CellValue::Blob(b"hi".to_vec()));
        assert_eq!(
            ok(json!("0xCAfe"), "blob"),
            CellValue::Blob(vec![0xca, 0xfe])
        );
        assert!(matches!(
            err(json!("0xabc"), "blob"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!("not base64!"), "blob"),
            ValueError::Unparsable { .. }
        ));
        assert!(matches!(
            err(json!([1, 2]), "blob"),
            ValueError::WrongJsonType { .. }
        ));
    }

    #[test]
    fn lists_and_sets_coerce_each_element() {
        assert_eq!(
            ok(json!([1, "2"]), "list<int>"),
            CellValue::List(vec![CellValue::Int(1), CellValue::Int(2)])
        );
        assert_eq!(
            ok(json!(["a"]), "set<text>"),
            CellValue::Set(vec![CellValue::Text("a".into())])
        );
        let e = err(json!([1, "x"]), "list<int>");
        assert_eq!(e.to_string(), "element 1: \"x\" is not a whole number");
        assert!(matches!(
            err(json!([1, null]), "set<int>"),
            ValueError::NullInCollection { .. }
        ));
        assert!(matches!(
            err(json!("1"), "list<int>"),
            ValueError::WrongJsonType { .. }
        ));
    }

    #[test]
    fn maps_coerce_keys_from_their_text() {
        assert_eq!(
            ok(json!({"1": "one", "2": "two"}), "map<int,text>"),
            CellValue::Map(vec![
                (CellValue::Int(1), CellValue::Text("one".into())),
                (CellValue::Int(2), CellValue::Text("two".into())),
            ])
        );
        let e = err(json!({"x": 1}), "map<int,int>");
        assert!(e.to_string().starts_with("element x:"), "{e}");
        assert!(matches!(
            err(json!({"a": null}), "map<text,int>"),
            ValueError::NullInCollection { .. }
        ));
        assert!(matches!(
            err(json!([]), "map<text,int>"),
            ValueError::WrongJsonType { .. }
        ));
    }

    #[test]
    fn long_values_are_shortened_in_errors() {
        let long = "x".repeat(1000);
        let e = err(json!(long), "int");
        assert!(e.to_string().len() < 150, "{e}");
    }
}
