//! JSON pointers (RFC 6901), parsed once and then looked up per record.
//!
//! Kept instead of serde_json's `Value::pointer`, which re-splits the text on
//! every lookup and silently accepts bad escapes such as `~2` that the spec
//! check must report.

use std::fmt;
use std::str::FromStr;

use serde_json::Value;

/// A parsed JSON pointer such as `/location/street/number`.
///
/// The empty pointer refers to the whole document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JsonPointer {
    text: String,
    tokens: Vec<Token>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Token {
    key: String,
    /// The token as an array index, when it is one (`0`, `17`; not `01`).
    /// Parsed once, since the same pointer is followed for every record.
    index: Option<usize>,
}

/// Why a string is not a JSON pointer.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonPointerError {
    #[error("{0:?} is not a JSON pointer: it must be empty or start with '/'")]
    MissingLeadingSlash(String),
    #[error("{0:?} is not a JSON pointer: '~' must be followed by 0 (for '~') or 1 (for '/')")]
    BadEscape(String),
}

impl JsonPointer {
    /// Parses `text` as a JSON pointer.
    pub fn parse(text: &str) -> Result<Self, JsonPointerError> {
        if text.is_empty() {
            return Ok(Self {
                text: String::new(),
                tokens: Vec::new(),
            });
        }
        let Some(rest) = text.strip_prefix('/') else {
            return Err(JsonPointerError::MissingLeadingSlash(text.to_owned()));
        };
        let tokens = rest
            .split('/')
            .map(|raw| {
                let key =
                    unescape(raw).ok_or_else(|| JsonPointerError::BadEscape(text.to_owned()))?;
                let index = array_index(&key);
                Ok(Token { key, index })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            text: text.to_owned(),
            tokens,
        })
    }

    /// The value the pointer refers to in `doc`, if there is one.
    pub fn get<'a>(&self, doc: &'a Value) -> Option<&'a Value> {
        self.tokens.iter().try_fold(doc, |node, token| match node {
            Value::Object(map) => map.get(&token.key),
            Value::Array(items) => token.index.and_then(|i| items.get(i)),
            _ => None,
        })
    }

    /// A document that has `value` where the pointer refers, and nothing
    /// else: objects all the way down (an index token becomes an object
    /// key, since there is no array to index).
    pub fn place(&self, value: Value) -> Value {
        self.tokens.iter().rev().fold(value, |inner, token| {
            let mut object = serde_json::Map::new();
            object.insert(token.key.clone(), inner);
            Value::Object(object)
        })
    }

    /// The pointer as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether this is the empty pointer, which refers to the whole document.
    pub fn is_root(&self) -> bool {
        self.tokens.is_empty()
    }
}

fn unescape(raw: &str) -> Option<String> {
    if !raw.contains('~') {
        return Some(raw.to_owned());
    }
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            // RFC 6901: ~1 is '/', ~0 is '~'; decoding ~01 gives "~1", not "/".
            match chars.next() {
                Some('0') => out.push('~'),
                Some('1') => out.push('/'),
                _ => return None,
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

fn array_index(key: &str) -> Option<usize> {
    let leading_zero = key.len() > 1 && key.starts_with('0');
    if key.is_empty() || leading_zero || !key.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    key.parse().ok()
}

impl FromStr for JsonPointer {
    type Err = JsonPointerError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for JsonPointer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn get<'a>(pointer: &str, doc: &'a Value) -> Option<&'a Value> {
        JsonPointer::parse(pointer).unwrap().get(doc)
    }

    #[test]
    fn the_rfc_6901_examples_resolve() {
        let doc = json!({
            "foo": ["bar", "baz"], "": 0, "a/b": 1, "c%d": 2, "e^f": 3,
            "g|h": 4, "i\\j": 5, "k\"l": 6, " ": 7, "m~n": 8
        });
        assert_eq!(get("", &doc), Some(&doc));
        assert_eq!(get("/foo", &doc), Some(&json!(["bar", "baz"])));
        assert_eq!(get("/foo/0", &doc), Some(&json!("bar")));
        assert_eq!(get("/", &doc), Some(&json!(0)));
        assert_eq!(get("/a~1b", &doc), Some(&json!(1)));
        assert_eq!(get("/c%d", &doc), Some(&json!(2)));
        assert_eq!(get("/e^f", &doc), Some(&json!(3)));
        assert_eq!(get("/g|h", &doc), Some(&json!(4)));
        assert_eq!(get("/i\\j", &doc), Some(&json!(5)));
        assert_eq!(get("/k\"l", &doc), Some(&json!(6)));
        assert_eq!(get("/ ", &doc), Some(&json!(7)));
        assert_eq!(get("/m~0n", &doc), Some(&json!(8)));
    }

    #[test]
    fn escapes_decode_in_order() {
        let doc = json!({"~1": "tilde-one", "/": "slash"});
        assert_eq!(get("/~01", &doc), Some(&json!("tilde-one")));
        assert_eq!(get("/~1", &doc), Some(&json!("slash")));
    }

    #[test]
    fn array_indices_are_plain_decimal_numbers() {
        let doc = json!({"a": [10, 11, 12]});
        assert_eq!(get("/a/2", &doc), Some(&json!(12)));
        assert_eq!(get("/a/3", &doc), None);
        assert_eq!(get("/a/-", &doc), None);
        assert_eq!(get("/a/01", &doc), None);
        assert_eq!(get("/a/x", &doc), None);
        // Digits name an object member when the node is an object.
        assert_eq!(get("/0", &json!({"0": "zero"})), Some(&json!("zero")));
    }

    #[test]
    fn missing_paths_and_scalars_resolve_to_nothing() {
        let doc = json!({"name": {"first": "Maja"}, "n": 1});
        assert_eq!(get("/name/last", &doc), None);
        assert_eq!(get("/n/x", &doc), None);
        assert_eq!(get("/nope/deeper", &doc), None);
    }

    #[test]
    fn malformed_pointers_are_refused() {
        assert!(matches!(
            JsonPointer::parse("name/first"),
            Err(JsonPointerError::MissingLeadingSlash(_))
        ));
        assert!(matches!(
            JsonPointer::parse("/a~2"),
            Err(JsonPointerError::BadEscape(_))
        ));
        assert!(matches!(
            JsonPointer::parse("/a~"),
            Err(JsonPointerError::BadEscape(_))
        ));
        assert!(JsonPointer::parse("").unwrap().is_root());
        assert_eq!(JsonPointer::parse("/a~1b").unwrap().to_string(), "/a~1b");
    }
}
