//! Rows as the scylla driver binds them: the runner's sink writes these,
//! and the benchmark's CQL ceiling writes exactly the same values.
//! Behind the `cql-values` feature, so that only clients that write rows
//! build the driver.

use crate::cell::{Cell, CellValue};
use scylla::value::{
    CqlDate, CqlDecimal, CqlTime, CqlTimestamp, CqlTimeuuid, CqlValue, CqlVarint, MaybeUnset,
};

/// One bound value: unset (not written), null, or a value.
pub type Bound = MaybeUnset<Option<CqlValue>>;

/// The insert's values ([`crate::cql::insert`]): the row's cells in column
/// order; then, for a table with a `ttl` (`ttl` is `Some`), the row's TTL
/// in seconds (`Some(None)` leaves it unset: the table's default); then the
/// write timestamp (microseconds) for `USING TIMESTAMP ?`.
pub fn bind(row: Vec<Cell>, ttl: Option<Option<i32>>, write_timestamp_micros: i64) -> Vec<Bound> {
    // Sized for the TTL and timestamp too: collecting and then pushing
    // reallocated (and copied) every row.
    let mut values: Vec<Bound> = Vec::with_capacity(row.len() + 2);
    values.extend(row.into_iter().map(cell));
    if let Some(ttl) = ttl {
        values.push(match ttl {
            Some(seconds) => MaybeUnset::Set(Some(CqlValue::Int(seconds))),
            None => MaybeUnset::Unset,
        });
    }
    values.push(MaybeUnset::Set(Some(CqlValue::BigInt(
        write_timestamp_micros,
    ))));
    values
}

/// The delete's values ([`crate::cql::delete`]): the write timestamp, then
/// the primary key's cells ([`crate::RowMapper::delete_key`]).
pub fn bind_delete(key: Vec<Cell>, write_timestamp_micros: i64) -> Vec<Bound> {
    let mut values: Vec<Bound> = Vec::with_capacity(key.len() + 1);
    values.push(MaybeUnset::Set(Some(CqlValue::BigInt(
        write_timestamp_micros,
    ))));
    values.extend(key.into_iter().map(cell));
    values
}

fn cell(cell: Cell) -> Bound {
    match cell {
        Cell::Unset => MaybeUnset::Unset,
        Cell::Null => MaybeUnset::Set(None),
        Cell::Value(v) => MaybeUnset::Set(Some(value(v))),
    }
}

/// A millrace value as the driver's CQL value of the same type.
pub fn value(v: CellValue) -> CqlValue {
    match v {
        CellValue::Ascii(s) => CqlValue::Ascii(s),
        CellValue::Text(s) => CqlValue::Text(s),
        CellValue::TinyInt(n) => CqlValue::TinyInt(n),
        CellValue::SmallInt(n) => CqlValue::SmallInt(n),
        CellValue::Int(n) => CqlValue::Int(n),
        CellValue::BigInt(n) => CqlValue::BigInt(n),
        CellValue::Varint(n) => CqlValue::Varint(CqlVarint::from_signed_bytes_be_slice(
            n.to_signed_bytes_be(),
        )),
        CellValue::Boolean(b) => CqlValue::Boolean(b),
        CellValue::Float(f) => CqlValue::Float(f),
        CellValue::Double(f) => CqlValue::Double(f),
        CellValue::Decimal(d) => {
            CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_slice_and_exponent(
                d.unscaled.to_signed_bytes_be(),
                d.scale,
            ))
        }
        CellValue::Uuid(u) => CqlValue::Uuid(u),
        CellValue::TimeUuid(u) => CqlValue::Timeuuid(CqlTimeuuid::from(u)),
        CellValue::Timestamp(ms) => CqlValue::Timestamp(CqlTimestamp(ms)),
        // CQL counts days from 2^31 days before the epoch.
        CellValue::Date(days) => CqlValue::Date(CqlDate((i64::from(days) + (1i64 << 31)) as u32)),
        CellValue::Time(nanos) => CqlValue::Time(CqlTime(nanos)),
        CellValue::Inet(ip) => CqlValue::Inet(ip),
        CellValue::Blob(b) => CqlValue::Blob(b),
        CellValue::List(items) => CqlValue::List(items.into_iter().map(value).collect()),
        CellValue::Set(items) => CqlValue::Set(items.into_iter().map(value).collect()),
        CellValue::Map(entries) => CqlValue::Map(
            entries
                .into_iter()
                .map(|(k, v)| (value(k), value(v)))
                .collect(),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::net::IpAddr;

    use crate::{CqlType, coerce};
    use serde_json::{Value, json};

    use super::*;

    fn of(json: Value, ty: &str) -> CqlValue {
        let ty: CqlType = ty.parse().unwrap();
        value(coerce(&json, &ty).unwrap())
    }

    fn refused(json: Value, ty: &str) {
        let parsed: CqlType = ty.parse().unwrap();
        assert!(coerce(&json, &parsed).is_err(), "{json} must not be a {ty}");
    }

    #[test]
    fn text_and_ascii() {
        assert_eq!(of(json!("Zoë"), "text"), CqlValue::Text("Zoë".into()));
        assert_eq!(of(json!("Zoë"), "varchar"), CqlValue::Text("Zoë".into()));
        assert_eq!(of(json!("abc"), "ascii"), CqlValue::Ascii("abc".into()));
        refused(json!("Zoë"), "ascii");
    }

    #[test]
    fn integers() {
        assert_eq!(of(json!(-5), "tinyint"), CqlValue::TinyInt(-5));
        refused(json!(300), "tinyint");
        assert_eq!(of(json!(300), "smallint"), CqlValue::SmallInt(300));
        refused(json!(70000), "smallint");
        assert_eq!(of(json!("42"), "int"), CqlValue::Int(42));
        refused(json!("forty"), "int");
        assert_eq!(of(json!(1_i64 << 40), "bigint"), CqlValue::BigInt(1 << 40));
        refused(json!(1.5), "bigint");
        assert_eq!(
            of(json!("-129"), "varint"),
            CqlValue::Varint(CqlVarint::from_signed_bytes_be_slice(&[0xff, 0x7f]))
        );
        refused(json!("12a"), "varint");
    }

    #[test]
    fn booleans_and_floats() {
        assert_eq!(of(json!(true), "boolean"), CqlValue::Boolean(true));
        refused(json!("maybe"), "boolean");
        assert_eq!(of(json!(1.5), "float"), CqlValue::Float(1.5));
        assert_eq!(of(json!(2.25), "double"), CqlValue::Double(2.25));
        refused(json!("x"), "double");
        assert_eq!(
            of(json!("-12.345"), "decimal"),
            CqlValue::Decimal(CqlDecimal::from_signed_be_bytes_slice_and_exponent(
                &[0xcf, 0xc7],
                3
            ))
        );
        refused(json!("1.2.3"), "decimal");
    }

    #[test]
    fn uuids() {
        let u = "5f3b9d2e-8a4c-4e1b-9f7a-2c6d8e0a1b3c";
        assert_eq!(of(json!(u), "uuid"), CqlValue::Uuid(u.parse().unwrap()));
        refused(json!("not-a-uuid"), "uuid");
        let t = "a4a70900-24e1-11df-8924-001ff3591711";
        assert_eq!(
            of(json!(t), "timeuuid"),
            CqlValue::Timeuuid(CqlTimeuuid::from(t.parse::<uuid::Uuid>().unwrap()))
        );
        refused(json!(u), "timeuuid");
    }

    #[test]
    fn time_types() {
        assert_eq!(
            of(json!("2021-03-04T05:06:07.008Z"), "timestamp"),
            CqlValue::Timestamp(CqlTimestamp(1_614_834_367_008))
        );
        assert_eq!(
            value(
                crate::coerce_with_unit(
                    &json!(1_614_834_367_008_i64),
                    &CqlType::Timestamp,
                    Some(crate::spec::EpochUnit::Milliseconds)
                )
                .unwrap()
            ),
            CqlValue::Timestamp(CqlTimestamp(1_614_834_367_008))
        );
        refused(json!("yesterday"), "timestamp");
        assert_eq!(
            of(json!("1970-01-02"), "date"),
            CqlValue::Date(CqlDate((1u32 << 31) + 1))
        );
        assert_eq!(
            of(json!("1969-12-31"), "date"),
            CqlValue::Date(CqlDate((1u32 << 31) - 1))
        );
        refused(json!("2021-02-30"), "date");
        assert_eq!(
            of(json!("01:00:00"), "time"),
            CqlValue::Time(CqlTime(3_600_000_000_000))
        );
        refused(json!("25:00:00"), "time");
    }

    #[test]
    fn inet_and_blob() {
        assert_eq!(
            of(json!("10.0.0.1"), "inet"),
            CqlValue::Inet("10.0.0.1".parse::<IpAddr>().unwrap())
        );
        refused(json!("10.0.0.256"), "inet");
        assert_eq!(of(json!("AAEC"), "blob"), CqlValue::Blob(vec![0, 1, 2]));
        refused(json!("%%%"), "blob");
    }

    #[test]
    fn collections() {
        assert_eq!(
            of(json!([1, 2]), "list<int>"),
            CqlValue::List(vec![CqlValue::Int(1), CqlValue::Int(2)])
        );
        refused(json!([1, "x"]), "list<int>");
        assert_eq!(
            of(json!(["a"]), "set<text>"),
            CqlValue::Set(vec![CqlValue::Text("a".into())])
        );
        assert_eq!(
            of(json!({"a": 1}), "map<text,int>"),
            CqlValue::Map(vec![(CqlValue::Text("a".into()), CqlValue::Int(1))])
        );
        refused(json!({"a": "b"}), "map<text,int>");
    }

    #[test]
    fn rows_bind_unset_null_and_the_write_timestamp() {
        let row = vec![Cell::Unset, Cell::Null, Cell::Value(CellValue::Int(1))];
        let bound = bind(row.clone(), None, 7);
        assert_eq!(bound.len(), 4, "no TTL marker without a ttl");
        assert!(matches!(bound[0], MaybeUnset::Unset));
        assert!(matches!(bound[1], MaybeUnset::Set(None)));
        assert!(matches!(bound[2], MaybeUnset::Set(Some(CqlValue::Int(1)))));
        assert!(matches!(
            bound[3],
            MaybeUnset::Set(Some(CqlValue::BigInt(7)))
        ));
    }

    #[test]
    fn a_ttl_is_bound_before_the_timestamp_and_unset_gives_the_tables_default() {
        let row = vec![Cell::Value(CellValue::Int(1))];
        let bound = bind(row.clone(), Some(Some(60)), 7);
        assert!(matches!(bound[1], MaybeUnset::Set(Some(CqlValue::Int(60)))));
        assert!(matches!(
            bound[2],
            MaybeUnset::Set(Some(CqlValue::BigInt(7)))
        ));
        let default = bind(row, Some(None), 7);
        assert_eq!(default.len(), 3);
        assert!(matches!(default[1], MaybeUnset::Unset));
    }
}
