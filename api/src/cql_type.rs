//! CQL column types, parsed from the spec's `type` strings and from what
//! Cassandra reports in `system_schema.columns`.
//!
//! Hand-written: crates that parse CQL types come with a driver (scylla-cql)
//! or a whole CQL grammar, while this crate needs only the types millrace can
//! write and must refuse the rest (frozen, nested, tuple, user-defined).

use std::fmt;
use std::str::FromStr;

/// A CQL type a column may have. `varchar` is CQL's alias of `text` and
/// parses as [`CqlType::Text`], as Cassandra itself reports it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum CqlType {
    Ascii,
    BigInt,
    Blob,
    Boolean,
    Date,
    Decimal,
    Double,
    Float,
    Inet,
    Int,
    SmallInt,
    Text,
    Time,
    Timestamp,
    TimeUuid,
    TinyInt,
    Uuid,
    Varint,
    List(Box<CqlType>),
    Set(Box<CqlType>),
    Map(Box<CqlType>, Box<CqlType>),
}

/// Why a type string is not a CQL type millrace supports.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CqlTypeError {
    #[error("{0:?} is not a CQL type millrace supports")]
    Unknown(String),
    #[error("{0:?}: list, set and map elements must be scalar types, not collections")]
    NestedCollection(String),
    #[error(
        "{0:?}: frozen types are not supported; use a scalar, or a list, set or map of scalars"
    )]
    Frozen(String),
}

impl CqlType {
    /// Whether values of this type are or hold timestamps.
    pub fn holds_timestamps(&self) -> bool {
        match self {
            Self::Timestamp => true,
            Self::List(t) | Self::Set(t) => t.holds_timestamps(),
            Self::Map(k, v) => k.holds_timestamps() || v.holds_timestamps(),
            _ => false,
        }
    }

    /// Whether values of this type keep more digits than an f64 or a 64-bit
    /// integer holds, so a JSON number must reach them as written.
    pub fn needs_exact_numbers(&self) -> bool {
        match self {
            Self::Decimal | Self::Varint => true,
            Self::List(t) | Self::Set(t) => t.needs_exact_numbers(),
            Self::Map(k, v) => k.needs_exact_numbers() || v.needs_exact_numbers(),
            _ => false,
        }
    }

    /// Whether this is a list, set or map.
    pub fn is_collection(&self) -> bool {
        matches!(self, Self::List(_) | Self::Set(_) | Self::Map(..))
    }

    /// Whether values of this type are text (`text`, `varchar`, `ascii`).
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text | Self::Ascii)
    }

    fn scalar(name: &str) -> Option<Self> {
        Some(match name {
            "ascii" => Self::Ascii,
            "bigint" => Self::BigInt,
            "blob" => Self::Blob,
            "boolean" => Self::Boolean,
            "date" => Self::Date,
            "decimal" => Self::Decimal,
            "double" => Self::Double,
            "float" => Self::Float,
            "inet" => Self::Inet,
            "int" => Self::Int,
            "smallint" => Self::SmallInt,
            "text" | "varchar" => Self::Text,
            "time" => Self::Time,
            "timestamp" => Self::Timestamp,
            "timeuuid" => Self::TimeUuid,
            "tinyint" => Self::TinyInt,
            "uuid" => Self::Uuid,
            "varint" => Self::Varint,
            _ => return None,
        })
    }

    fn element(whole: &str, inner: &str) -> Result<Box<Self>, CqlTypeError> {
        let inner = inner.trim();
        match Self::scalar(inner) {
            Some(t) => Ok(Box::new(t)),
            None if inner.contains('<') => {
                if inner.starts_with("frozen") {
                    Err(CqlTypeError::Frozen(whole.to_owned()))
                } else {
                    Err(CqlTypeError::NestedCollection(whole.to_owned()))
                }
            }
            None => Err(CqlTypeError::Unknown(whole.to_owned())),
        }
    }
}

impl FromStr for CqlType {
    type Err = CqlTypeError;

    /// Parses `text`, `list<int>`, `map<text, bigint>`... Spaces around type
    /// names are allowed; names are lower case, as Cassandra reports them.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if let Some(scalar) = Self::scalar(t) {
            return Ok(scalar);
        }
        let generic = |prefix: &str| {
            t.strip_prefix(prefix)
                .map(str::trim_start)
                .and_then(|rest| rest.strip_prefix('<'))
                .and_then(|rest| rest.strip_suffix('>'))
        };
        if let Some(inner) = generic("list") {
            return Ok(Self::List(Self::element(s, inner)?));
        }
        if let Some(inner) = generic("set") {
            return Ok(Self::Set(Self::element(s, inner)?));
        }
        if let Some(inner) = generic("map") {
            // Element types are scalars, so the first comma splits key from value.
            let (key, value) = inner
                .split_once(',')
                .ok_or_else(|| CqlTypeError::Unknown(s.to_owned()))?;
            return Ok(Self::Map(Self::element(s, key)?, Self::element(s, value)?));
        }
        if t.starts_with("frozen") {
            return Err(CqlTypeError::Frozen(s.to_owned()));
        }
        Err(CqlTypeError::Unknown(s.to_owned()))
    }
}

impl fmt::Display for CqlType {
    /// The type as Cassandra writes it in `system_schema.columns`, so a
    /// declared type can be compared with an observed one as text too.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::Ascii => "ascii",
            Self::BigInt => "bigint",
            Self::Blob => "blob",
            Self::Boolean => "boolean",
            Self::Date => "date",
            Self::Decimal => "decimal",
            Self::Double => "double",
            Self::Float => "float",
            Self::Inet => "inet",
            Self::Int => "int",
            Self::SmallInt => "smallint",
            Self::Text => "text",
            Self::Time => "time",
            Self::Timestamp => "timestamp",
            Self::TimeUuid => "timeuuid",
            Self::TinyInt => "tinyint",
            Self::Uuid => "uuid",
            Self::Varint => "varint",
            Self::List(e) => return write!(f, "list<{e}>"),
            Self::Set(e) => return write!(f, "set<{e}>"),
            Self::Map(k, v) => return write!(f, "map<{k}, {v}>"),
        };
        f.write_str(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<CqlType, CqlTypeError> {
        s.parse()
    }

    #[test]
    fn every_scalar_parses_and_prints_back() {
        for name in [
            "ascii",
            "bigint",
            "blob",
            "boolean",
            "date",
            "decimal",
            "double",
            "float",
            "inet",
            "int",
            "smallint",
            "text",
            "time",
            "timestamp",
            "timeuuid",
            "tinyint",
            "uuid",
            "varint",
        ] {
            let t = parse(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(t.to_string(), name);
            assert!(!t.is_collection());
        }
    }

    #[test]
    fn varchar_is_text() {
        assert_eq!(parse("varchar"), Ok(CqlType::Text));
    }

    #[test]
    fn collections_of_scalars_parse_with_or_without_spaces() {
        assert_eq!(
            parse("list<int>"),
            Ok(CqlType::List(Box::new(CqlType::Int)))
        );
        assert_eq!(
            parse("set< text >"),
            Ok(CqlType::Set(Box::new(CqlType::Text)))
        );
        let map = parse("map<text,bigint>");
        assert_eq!(
            map,
            Ok(CqlType::Map(
                Box::new(CqlType::Text),
                Box::new(CqlType::BigInt)
            ))
        );
        // Cassandra reports maps with a space after the comma.
        assert_eq!(
            map.map(|m| m.to_string()),
            Ok("map<text, bigint>".to_owned())
        );
        assert_eq!(parse("map<text, bigint>"), parse("map<text,bigint>"));
    }

    #[test]
    fn unsupported_types_are_refused_with_the_reason() {
        assert!(matches!(parse("string"), Err(CqlTypeError::Unknown(_))));
        assert!(matches!(parse("TEXT"), Err(CqlTypeError::Unknown(_))));
        assert!(matches!(parse(""), Err(CqlTypeError::Unknown(_))));
        assert!(matches!(parse("counter"), Err(CqlTypeError::Unknown(_))));
        assert!(matches!(parse("list<>"), Err(CqlTypeError::Unknown(_))));
        assert!(matches!(parse("map<text>"), Err(CqlTypeError::Unknown(_))));
        assert!(matches!(
            parse("list<list<int>>"),
            Err(CqlTypeError::NestedCollection(_))
        ));
        assert!(matches!(
            parse("frozen<list<int>>"),
            Err(CqlTypeError::Frozen(_))
        ));
        assert!(matches!(
            parse("map<text, frozen<list<int>>>"),
            Err(CqlTypeError::Frozen(_))
        ));
        assert!(matches!(
            parse("text; DROP TABLE x"),
            Err(CqlTypeError::Unknown(_))
        ));
    }
}
