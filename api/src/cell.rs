//! Typed column values, independent of any Cassandra driver.

use std::fmt;
use std::net::IpAddr;

use num_bigint::BigInt;
use uuid::Uuid;

/// What the sink writes into one column of a row.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    /// The record has no value for the column: the column is not written at
    /// all (bound as "unset"), so no tombstone is created and an earlier
    /// value stays.
    Unset,
    /// The record holds an explicit JSON `null`: the column is written as
    /// null, which deletes an earlier value.
    Null,
    /// A value of the column's type.
    Value(CellValue),
}

impl Cell {
    /// The value, when there is one.
    pub fn value(&self) -> Option<&CellValue> {
        match self {
            Self::Value(v) => Some(v),
            Self::Unset | Self::Null => None,
        }
    }
}

/// A value of one CQL type. Each variant matches one [`crate::CqlType`].
#[derive(Clone, Debug, PartialEq)]
pub enum CellValue {
    Ascii(String),
    Text(String),
    TinyInt(i8),
    SmallInt(i16),
    Int(i32),
    BigInt(i64),
    Varint(Varint),
    Boolean(bool),
    Float(f32),
    Double(f64),
    Decimal(Decimal),
    Uuid(Uuid),
    /// A version 1 (time-based) UUID.
    TimeUuid(Uuid),
    /// Milliseconds since 1970-01-01T00:00:00Z.
    Timestamp(i64),
    /// Days since 1970-01-01 (negative before it). Drivers that count from
    /// 2^31 (the CQL wire format) add `1 << 31`.
    Date(i32),
    /// Nanoseconds since midnight.
    Time(i64),
    Inet(IpAddr),
    Blob(Vec<u8>),
    List(Vec<CellValue>),
    Set(Vec<CellValue>),
    Map(Vec<(CellValue, CellValue)>),
}

/// An integer of any size (CQL `varint`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Varint {
    digits: String,
    bytes: Vec<u8>,
}

impl Varint {
    /// Parses an optionally signed string of decimal digits.
    pub fn parse(text: &str) -> Option<Self> {
        // Checked here because BigInt's own parser also takes '_' between
        // digits, which a record's varint must not hold.
        let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let value = BigInt::parse_bytes(text.as_bytes(), 10)?;
        Some(Self {
            digits: value.to_string(),
            bytes: value.to_signed_bytes_be(),
        })
    }

    /// The value as minimal big-endian two's complement, as CQL encodes a
    /// varint (and a decimal's unscaled value).
    pub fn to_signed_bytes_be(&self) -> &[u8] {
        &self.bytes
    }

    /// The value in decimal.
    pub fn as_str(&self) -> &str {
        &self.digits
    }
}

impl fmt::Display for Varint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.digits)
    }
}

/// A decimal number: `unscaled × 10^-scale` (CQL `decimal`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Decimal {
    /// The digits without the decimal point.
    pub unscaled: Varint,
    /// How many of them are after the decimal point (negative: zeros to add).
    pub scale: i32,
}

impl fmt::Display for Decimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.unscaled.as_str();
        let (sign, digits) = match digits.strip_prefix('-') {
            Some(d) => ("-", d),
            None => ("", digits),
        };
        if self.scale <= 0 {
            let zeros = "0".repeat(self.scale.unsigned_abs() as usize);
            let zeros = if digits == "0" { "" } else { zeros.as_str() };
            return write!(f, "{sign}{digits}{zeros}");
        }
        let scale = self.scale.unsigned_abs() as usize;
        let padded = format!("{digits:0>width$}", width = scale + 1);
        let (int, frac) = padded.split_at(padded.len() - scale);
        write!(f, "{sign}{int}.{frac}")
    }
}

impl fmt::Display for CellValue {
    /// The value as plain text: what a text column would hold, and what the
    /// runner keys Kafka messages by. Timestamps are RFC 3339 in UTC, dates
    /// `YYYY-MM-DD`, times `HH:MM:SS.nnnnnnnnn`, blobs `0x` and hex, and
    /// collections JSON-like.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Ascii(s) | Self::Text(s) => f.write_str(s),
            Self::TinyInt(v) => write!(f, "{v}"),
            Self::SmallInt(v) => write!(f, "{v}"),
            Self::Int(v) => write!(f, "{v}"),
            Self::BigInt(v) => write!(f, "{v}"),
            Self::Varint(v) => write!(f, "{v}"),
            Self::Boolean(v) => write!(f, "{v}"),
            Self::Float(v) => write!(f, "{v}"),
            Self::Double(v) => write!(f, "{v}"),
            Self::Decimal(v) => write!(f, "{v}"),
            Self::Uuid(v) | Self::TimeUuid(v) => write!(f, "{}", v.hyphenated()),
            Self::Timestamp(ms) => match jiff::Timestamp::from_millisecond(*ms) {
                Ok(ts) => write!(f, "{ts}"),
                Err(_) => write!(f, "{ms}"),
            },
            Self::Date(days) => {
                let date = jiff::civil::date(1970, 1, 1).checked_add(jiff::Span::new().days(*days));
                match date {
                    Ok(date) => write!(f, "{date}"),
                    Err(_) => write!(f, "{days}"),
                }
            }
            Self::Time(nanos) => {
                let secs = nanos / 1_000_000_000;
                write!(
                    f,
                    "{:02}:{:02}:{:02}.{:09}",
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60,
                    nanos % 1_000_000_000
                )
            }
            Self::Inet(ip) => write!(f, "{ip}"),
            Self::Blob(bytes) => {
                f.write_str("0x")?;
                bytes.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
            Self::List(items) | Self::Set(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Self::Map(entries) => {
                f.write_str("{")?;
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{k}:{v}")?;
                }
                f.write_str("}")
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn bytes(text: &str) -> Vec<u8> {
        Varint::parse(text).unwrap().to_signed_bytes_be().to_vec()
    }

    #[test]
    fn varints_encode_as_minimal_twos_complement() {
        assert_eq!(bytes("0"), [0x00]);
        assert_eq!(bytes("-0"), [0x00]);
        assert_eq!(bytes("1"), [0x01]);
        assert_eq!(bytes("127"), [0x7f]);
        assert_eq!(bytes("128"), [0x00, 0x80]);
        assert_eq!(bytes("255"), [0x00, 0xff]);
        assert_eq!(bytes("256"), [0x01, 0x00]);
        assert_eq!(bytes("-1"), [0xff]);
        assert_eq!(bytes("-128"), [0x80]);
        assert_eq!(bytes("-129"), [0xff, 0x7f]);
        assert_eq!(bytes("-256"), [0xff, 0x00]);
        assert_eq!(bytes("+00042"), [0x2a]);
        assert_eq!(
            bytes("18446744073709551616"),
            [0x01, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(bytes("-9223372036854775808"), i64::MIN.to_be_bytes());
    }

    #[test]
    fn varints_match_i64_encoding_across_the_range() {
        for v in [
            -65536i64,
            -32769,
            -32768,
            -257,
            32767,
            32768,
            65535,
            i64::MAX,
        ] {
            let expected = v.to_be_bytes();
            let got = bytes(&v.to_string());
            // The minimal encoding is a suffix of the full-width one.
            assert!(expected.ends_with(&got), "{v}: {got:x?}");
            assert_eq!(
                Varint::parse(&v.to_string()).unwrap().as_str(),
                v.to_string()
            );
        }
    }

    #[test]
    fn malformed_varints_are_refused() {
        for text in ["", "-", "1.5", "1e3", " 1", "0x10", "--1"] {
            assert!(Varint::parse(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn decimals_display_with_their_scale() {
        let d = |digits: &str, scale| Decimal {
            unscaled: Varint::parse(digits).unwrap(),
            scale,
        };
        assert_eq!(d("12340", 3).to_string(), "12.340");
        assert_eq!(d("-5", 2).to_string(), "-0.05");
        assert_eq!(d("12", 0).to_string(), "12");
        assert_eq!(d("12", -2).to_string(), "1200");
        assert_eq!(d("0", -2).to_string(), "0");
    }

    #[test]
    fn values_display_as_plain_text() {
        assert_eq!(
            CellValue::Timestamp(1_315_000_000_402).to_string(),
            "2011-09-02T21:46:40.402Z"
        );
        assert_eq!(CellValue::Date(-1).to_string(), "1969-12-31");
        assert_eq!(
            CellValue::Time(3_723_000_000_005).to_string(),
            "01:02:03.000000005"
        );
        assert_eq!(CellValue::Blob(vec![0xca, 0xfe]).to_string(), "0xcafe");
        assert_eq!(
            CellValue::Map(vec![(CellValue::Text("a".into()), CellValue::Int(1))]).to_string(),
            "{a:1}"
        );
        assert_eq!(
            CellValue::List(vec![CellValue::Int(1), CellValue::Int(2)]).to_string(),
            "[1,2]"
        );
    }
}
