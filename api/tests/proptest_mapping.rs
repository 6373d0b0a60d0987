//! Properties of the record-to-row mapping and of JSON pointers, over
//! generated input: arbitrary JSON never panics the mapper, whatever the
//! column's type; values that fit round-trip; values that do not give a
//! typed error; and pointers agree with `serde_json::Value::pointer`.
//!
//! Each property runs `PROPTEST_CASES` cases (proptest's default, 256,
//! when unset); CI keeps the default.

#![allow(clippy::unwrap_used)]

use std::net::IpAddr;

use millrace_api::{
    Cell, CellValue, ColumnErrorKind, ColumnSpec, CqlType, EpochUnit, JsonPointer,
    JsonPointerError, PLAUSIBLE_YEARS, RowMapper, TableSpec, ValueError, coerce, coerce_with_unit,
};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Every column type millrace supports.
const TYPES: &[&str] = &[
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
    "varchar",
    "varint",
    "list<int>",
    "set<text>",
    "map<text, double>",
    "map<int, uuid>",
    "list<timestamp>",
];

/// Arbitrary JSON: every kind of value, nested, with strings that look like
/// numbers, dates and UUIDs as well as random text.
fn any_json() -> impl Strategy<Value = Value> {
    let string = prop_oneof![
        any::<String>(),
        "[0-9]{1,40}",
        "-?[0-9]{1,20}\\.[0-9]{0,20}(e-?[0-9]{1,3})?",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]{1,12})?(Z|[+-][0-9]{2}:[0-9]{2}))?",
        "[0-9a-fA-F-]{30,40}",
        "0x[0-9a-fA-F]{0,20}",
        "(true|false|TRUE|NaN|Infinity|-Infinity|)",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        string.prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-z0-9~/]{0,6}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A table keyed by `/id` (text) with one column `v` of `cql_type` from
/// `/v`, one rendered from a template over `/v`, and the whole record.
fn mapper_for(cql_type: &str) -> RowMapper {
    let template_type = if cql_type.contains('<') {
        "text"
    } else {
        cql_type
    };
    RowMapper::new(&TableSpec {
        ttl: None,
        write_time: None,
        deletes: None,
        name: "t".into(),
        columns: vec![
            ColumnSpec::from_pointer("id", "text", "/id"),
            ColumnSpec::from_pointer("v", cql_type, "/v"),
            ColumnSpec::from_template("w", template_type, "{/v}"),
            ColumnSpec::whole_record("raw"),
        ],
        partition_key: vec!["id".into()],
        clustering_key: vec![],
    })
    .unwrap()
}

fn cql(t: &str) -> CqlType {
    t.parse().unwrap()
}

proptest! {
    /// Whatever the record, mapping it answers (a row or the reasons); it
    /// never panics, and every reason names a column of the table.
    #[test]
    fn arbitrary_records_never_panic_the_mapper(
        type_index in 0..TYPES.len(),
        v in any_json(),
        id in any_json(),
        extra in any_json(),
    ) {
        let mapper = mapper_for(TYPES[type_index]);
        let record = json!({"id": id, "v": v, "extra": extra});
        match mapper.map(&record) {
            Ok(row) => {
                prop_assert_eq!(row.len(), 4);
                prop_assert!(mapper.partition_key_of_row(&row).is_some());
                prop_assert!(mapper.partition_key(&record).is_ok());
            }
            Err(e) => {
                prop_assert!(!e.problems.is_empty());
                for p in &e.problems {
                    prop_assert!(["id", "v", "w"].contains(&p.column.as_str()), "{p}");
                }
                prop_assert!(!e.to_string().is_empty());
            }
        }
        // A record that is not an object, and one the pointers cannot walk.
        let _ = mapper.map(&v);
        let _ = mapper.map(&json!({"id": "k", "v": {"v": v}}));
    }

    /// Coercing arbitrary JSON to any type answers a value or a typed error,
    /// and the error's message is bounded even for a huge value.
    #[test]
    fn arbitrary_json_coerces_or_gives_a_typed_error(
        type_index in 0..TYPES.len(),
        v in any_json(),
    ) {
        if v.is_null() {
            return Ok(());
        }
        if let Err(e) = coerce(&v, &cql(TYPES[type_index])) {
            let text = e.to_string();
            prop_assert!(!text.is_empty());
            prop_assert!(text.chars().count() < 1024, "{}", text);
        }
    }

    /// Integers in range become that integer, from a number or a string of
    /// digits; outside the range, OutOfRange.
    #[test]
    fn integers_round_trip_and_out_of_range_is_refused(n in any::<i64>()) {
        let as_number = Value::from(n);
        let as_text = Value::from(n.to_string());
        for v in [&as_number, &as_text] {
            prop_assert_eq!(coerce(v, &CqlType::BigInt).unwrap(), CellValue::BigInt(n));
            match i32::try_from(n) {
                Ok(i) => prop_assert_eq!(coerce(v, &CqlType::Int).unwrap(), CellValue::Int(i)),
                Err(_) => prop_assert!(
                    matches!(coerce(v, &CqlType::Int), Err(ValueError::OutOfRange { .. })),
                    "{:?}", coerce(v, &CqlType::Int)
                ),
            }
            match i8::try_from(n) {
                Ok(i) => prop_assert_eq!(coerce(v, &CqlType::TinyInt).unwrap(), CellValue::TinyInt(i)),
                Err(_) => prop_assert!(
                    matches!(coerce(v, &CqlType::TinyInt), Err(ValueError::OutOfRange { .. })),
                    "tinyint {}", n
                ),
            }
            match i16::try_from(n) {
                Ok(i) => prop_assert_eq!(coerce(v, &CqlType::SmallInt).unwrap(), CellValue::SmallInt(i)),
                Err(_) => prop_assert!(
                    matches!(coerce(v, &CqlType::SmallInt), Err(ValueError::OutOfRange { .. })),
                    "smallint {}", n
                ),
            }
            prop_assert_eq!(
                coerce(v, &CqlType::Varint).unwrap().to_string(),
                n.to_string()
            );
        }
    }

    /// Text that is not a whole number is Unparsable for every integer
    /// type, never a panic or a silent zero.
    #[test]
    fn non_numeric_text_is_unparsable_for_integers(s in "[^0-9]*[a-zA-Z_.,:][^0-9]*") {
        for t in [CqlType::TinyInt, CqlType::SmallInt, CqlType::Int, CqlType::BigInt, CqlType::Varint] {
            let got = coerce(&Value::from(s.clone()), &t);
            prop_assert!(matches!(got, Err(ValueError::Unparsable { .. })), "{t}: {got:?}");
        }
    }

    /// A scalar value's text form (what a text column holds and what Kafka
    /// keys use) reads back as the same value.
    #[test]
    fn scalar_values_round_trip_through_their_text(
        n in any::<i32>(),
        big in any::<i64>(),
        b in any::<bool>(),
        d in -1.0e300f64..1.0e300,
        id in any::<u128>(),
        ms in -8_000_000_000_000i64..200_000_000_000_000,
        days in -700_000i32..2_900_000,
        nanos in 0i64..86_400_000_000_000,
        v4 in any::<[u8; 4]>(),
        v6 in any::<[u8; 16]>(),
        blob in prop::collection::vec(any::<u8>(), 1..64),
    ) {
        let uuid = uuid::Uuid::from_u128(id);
        let cases = [
            (CqlType::Int, CellValue::Int(n)),
            (CqlType::BigInt, CellValue::BigInt(big)),
            (CqlType::Boolean, CellValue::Boolean(b)),
            (CqlType::Double, CellValue::Double(d)),
            (CqlType::Uuid, CellValue::Uuid(uuid)),
            (CqlType::Timestamp, CellValue::Timestamp(ms)),
            (CqlType::Date, CellValue::Date(days)),
            (CqlType::Time, CellValue::Time(nanos)),
            (CqlType::Inet, CellValue::Inet(IpAddr::from(v4))),
            (CqlType::Inet, CellValue::Inet(IpAddr::from(v6))),
            (CqlType::Blob, CellValue::Blob(blob)),
        ];
        for (t, cell) in cases {
            let text = cell.to_string();
            let back = coerce(&Value::from(text.clone()), &t);
            prop_assert_eq!(back.as_ref(), Ok(&cell), "{} {:?}", t, text);
        }
        // And the JSON-native spellings.
        prop_assert_eq!(coerce(&json!(n), &CqlType::Int).unwrap(), CellValue::Int(n));
        prop_assert_eq!(coerce(&json!(b), &CqlType::Boolean).unwrap(), CellValue::Boolean(b));
        prop_assert_eq!(coerce(&json!(d), &CqlType::Double).unwrap(), CellValue::Double(d));
        // A number is a timestamp only with its unit, and only in the
        // plausible years.
        let without_unit = matches!(
            coerce(&json!(ms), &CqlType::Timestamp),
            Err(ValueError::EpochWithoutUnit { .. })
        );
        prop_assert!(without_unit);
        let in_ms = coerce_with_unit(&json!(ms), &CqlType::Timestamp, Some(EpochUnit::Milliseconds));
        let year = jiff::Timestamp::from_millisecond(ms)
            .map(|t| t.to_zoned(jiff::tz::TimeZone::UTC).year())
            .unwrap_or(i16::MAX);
        if (PLAUSIBLE_YEARS.0..=PLAUSIBLE_YEARS.1).contains(&year) {
            prop_assert_eq!(in_ms, Ok(CellValue::Timestamp(ms)));
        } else {
            let implausible = matches!(in_ms, Err(ValueError::ImplausibleInstant { .. }));
            prop_assert!(implausible, "{:?}", in_ms);
        }
        prop_assert_eq!(coerce(&json!(days), &CqlType::Date).unwrap(), CellValue::Date(days));
    }

    /// Strings are kept exactly by text columns; ascii columns take only
    /// ASCII and refuse the rest with NotAscii.
    #[test]
    fn text_is_kept_and_ascii_is_checked(s in any::<String>()) {
        prop_assert_eq!(
            coerce(&Value::from(s.clone()), &CqlType::Text).unwrap(),
            CellValue::Text(s.clone())
        );
        let ascii = coerce(&Value::from(s.clone()), &CqlType::Ascii);
        if s.is_ascii() {
            prop_assert_eq!(ascii.unwrap(), CellValue::Ascii(s));
        } else {
            prop_assert!(matches!(ascii, Err(ValueError::NotAscii { .. })), "{:?}", ascii);
        }
    }

    /// Strings that are not UUIDs are Unparsable for uuid and timeuuid.
    #[test]
    fn non_uuids_are_refused(s in any::<String>()) {
        prop_assume!(uuid::Uuid::parse_str(s.trim()).is_err());
        for t in [CqlType::Uuid, CqlType::TimeUuid] {
            let got = coerce(&Value::from(s.clone()), &t);
            prop_assert!(matches!(got, Err(ValueError::Unparsable { .. })), "{got:?}");
        }
    }

    /// Collections map element by element; one bad element names where it
    /// is.
    #[test]
    fn collections_map_each_element(items in prop::collection::vec(any::<i32>(), 0..20), bad_at in 0usize..20) {
        let list = cql("list<int>");
        let expected = CellValue::List(items.iter().copied().map(CellValue::Int).collect());
        prop_assert_eq!(coerce(&json!(items), &list).unwrap(), expected);
        if !items.is_empty() {
            let mut broken: Vec<Value> = items.iter().map(|i| json!(i)).collect();
            let at = bad_at % broken.len();
            broken[at] = json!("not a number");
            let got = coerce(&Value::from(broken), &list);
            prop_assert!(
                matches!(&got, Err(ValueError::Element { at: where_, .. }) if *where_ == at.to_string()
                    || where_.contains(&at.to_string())),
                "{:?}", got
            );
        }
    }

    /// Through the mapper: a fitting value is that value's cell; a value
    /// that does not fit is a Value error on that column, and a key column
    /// without a value is MissingKey.
    #[test]
    fn the_mapper_reports_each_bad_column_with_a_typed_kind(n in any::<i64>(), s in "[a-z]{1,10}") {
        let mapper = mapper_for("int");
        let record = json!({"id": s, "v": n});
        match i32::try_from(n) {
            Ok(i) => {
                let row = mapper.map(&record).unwrap();
                prop_assert_eq!(&row[1], &Cell::Value(CellValue::Int(i)));
                prop_assert_eq!(&row[2], &Cell::Value(CellValue::Int(i)));
            }
            Err(_) => {
                let e = mapper.map(&record).unwrap_err();
                prop_assert_eq!(e.problems.len(), 2);
                for p in &e.problems {
                    prop_assert!(
                        matches!(p.kind, ColumnErrorKind::Value(ValueError::OutOfRange { .. })),
                        "{}", p
                    );
                }
            }
        }
        let e = mapper.map(&json!({"v": 1})).unwrap_err();
        prop_assert_eq!(&e.problems[0].kind, &ColumnErrorKind::MissingKey);
    }
}

/// One reference token: any text, biased toward the characters a pointer
/// escapes or gives meaning to.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        "[~/01a-z]{0,6}",
        "[0-9]{1,3}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ]
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

proptest! {
    /// Any string parses or is refused with a reason, never a panic; what
    /// parses finds what serde_json's own pointer finds, in any document.
    #[test]
    fn pointers_agree_with_serde_json(text in "[~/01a-z0-9é]{0,12}", doc in any_json()) {
        match JsonPointer::parse(&text) {
            Ok(pointer) => {
                prop_assert_eq!(pointer.as_str(), text.as_str());
                prop_assert_eq!(pointer.get(&doc), doc.pointer(&text));
            }
            Err(JsonPointerError::MissingLeadingSlash(_)) => {
                prop_assert!(!text.starts_with('/') && !text.is_empty());
            }
            Err(JsonPointerError::BadEscape(_)) => {
                let bad = text
                    .split('~')
                    .skip(1)
                    .any(|after| !after.starts_with('0') && !after.starts_with('1'));
                prop_assert!(bad, "{:?} refused without a bad escape", text);
            }
        }
    }

    /// A path of arbitrary keys, escaped, leads back to the value stored
    /// under it; unescaped `~` and `/` in keys cannot be confused.
    #[test]
    fn escaped_paths_round_trip(keys in prop::collection::vec(token(), 1..5), leaf in any_json()) {
        let mut doc = leaf.clone();
        for key in keys.iter().rev() {
            let mut map = Map::new();
            map.insert(key.clone(), doc);
            doc = Value::Object(map);
        }
        let text: String = keys.iter().map(|k| format!("/{}", escape(k))).collect();
        let pointer = JsonPointer::parse(&text).unwrap();
        prop_assert_eq!(pointer.get(&doc), Some(&leaf));
        prop_assert_eq!(doc.pointer(&text), Some(&leaf));
    }

    /// Array indices are plain decimal numbers within bounds, as in
    /// serde_json: no sign, no leading zero, no `-`.
    #[test]
    fn array_indices_match_serde_json(items in prop::collection::vec(any::<i8>(), 0..12), index in "(-|\\+?[0-9]{1,3}|0[0-9])") {
        let doc = json!({"a": items});
        let text = format!("/a/{index}");
        let pointer = JsonPointer::parse(&text).unwrap();
        prop_assert_eq!(pointer.get(&doc), doc.pointer(&text));
    }
}
