//! Text templates that join several record fields into one value, such as
//! `"{/location/street/number} {/location/street/name}, {/location/city}"`.

use std::fmt::Write as _;

use serde_json::Value;

use crate::json_pointer::{JsonPointer, JsonPointerError};

/// A parsed template: literal text and JSON pointers in braces. `{{` and
/// `}}` stand for literal braces.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Part {
    Literal(String),
    Field(JsonPointer),
}

/// Why a string is not a template.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {template:?}: '{{' at byte {at} is not closed by '}}'")]
    Unclosed { template: String, at: usize },
    #[error(
        "template {template:?}: '{{' at byte {at} must start a JSON pointer such as {{/name/first}}, or be doubled as '{{{{' for a literal brace"
    )]
    NotAPointer { template: String, at: usize },
    #[error(
        "template {template:?}: '}}' at byte {at} closes nothing; write '}}}}' for a literal brace"
    )]
    StrayClose { template: String, at: usize },
    #[error("template {template:?}: {source}")]
    Pointer {
        template: String,
        source: JsonPointerError,
    },
}

impl Template {
    /// Parses `text` as a template.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = text;
        let offset = |rest: &str| text.len() - rest.len();
        while let Some(c) = rest.chars().next() {
            match c {
                '{' if rest.starts_with("{{") => {
                    literal.push('{');
                    rest = &rest[2..];
                }
                '}' if rest.starts_with("}}") => {
                    literal.push('}');
                    rest = &rest[2..];
                }
                '{' => {
                    let at = offset(rest);
                    let Some(end) = rest.find('}') else {
                        return Err(TemplateError::Unclosed {
                            template: text.to_owned(),
                            at,
                        });
                    };
                    let inner = &rest[1..end];
                    if !inner.starts_with('/') || inner.contains('{') {
                        return Err(TemplateError::NotAPointer {
                            template: text.to_owned(),
                            at,
                        });
                    }
                    let pointer =
                        JsonPointer::parse(inner).map_err(|source| TemplateError::Pointer {
                            template: text.to_owned(),
                            source,
                        })?;
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(pointer));
                    rest = &rest[end + 1..];
                }
                '}' => {
                    return Err(TemplateError::StrayClose {
                        template: text.to_owned(),
                        at: offset(rest),
                    });
                }
                other => {
                    literal.push(other);
                    rest = &rest[other.len_utf8()..];
                }
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Self { parts })
    }

    /// The pointers the template reads, in order.
    pub fn pointers(&self) -> impl Iterator<Item = &JsonPointer> {
        self.parts.iter().filter_map(|p| match p {
            Part::Field(pointer) => Some(pointer),
            Part::Literal(_) => None,
        })
    }

    /// Renders the template against `record`. Missing and null fields render
    /// as empty text; if the template reads fields and every one is missing,
    /// the result is `None`, so the column is left unset rather than written
    /// as a string of separators.
    pub fn render(&self, record: &Value) -> Option<String> {
        let mut out = String::new();
        let mut fields = 0usize;
        let mut found = 0usize;
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(pointer) => {
                    fields += 1;
                    match pointer.get(record) {
                        None | Some(Value::Null) => {}
                        Some(value) => {
                            found += 1;
                            write_plain(&mut out, value);
                        }
                    }
                }
            }
        }
        (fields == 0 || found > 0).then_some(out)
    }
}

/// Writes a JSON value as a person reads it in text: strings without quotes,
/// numbers and booleans as written, objects and arrays as compact JSON.
pub(crate) fn write_plain(out: &mut String, value: &Value) {
    match value {
        Value::String(s) => out.push_str(s),
        Value::Null => {}
        // Writing to a String cannot fail.
        other => {
            let _ = write!(out, "{other}");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use serde_json::json;

    use super::*;

    fn render(template: &str, record: &Value) -> Option<String> {
        Template::parse(template).unwrap().render(record)
    }

    #[test]
    fn joins_fields_as_the_seed_producer_did() {
        let record = json!({"location": {
            "street": {"number": 4127, "name": "Storgatan"},
            "city": "Vasteras", "state": "Vastmanland", "country": "Sweden"
        }});
        assert_eq!(
            render(
                "{/location/street/number} {/location/street/name}, {/location/city}, {/location/state}, {/location/country}",
                &record
            )
            .as_deref(),
            Some("4127 Storgatan, Vasteras, Vastmanland, Sweden")
        );
    }

    #[test]
    fn doubled_braces_are_literal() {
        let record = json!({"a": 1});
        assert_eq!(render("{{{/a}}}", &record).as_deref(), Some("{1}"));
        assert_eq!(
            render("{{not a field}}", &record).as_deref(),
            Some("{not a field}")
        );
    }

    #[test]
    fn missing_fields_render_empty_and_all_missing_is_none() {
        let record = json!({"a": "x", "n": null});
        assert_eq!(render("{/a}-{/b}", &record).as_deref(), Some("x-"));
        assert_eq!(render("{/b}-{/c}", &record), None);
        assert_eq!(render("{/n}", &record), None);
        assert_eq!(render("constant", &record).as_deref(), Some("constant"));
    }

    #[test]
    fn non_text_values_render_readably() {
        let record = json!({"b": true, "f": 1.5, "o": {"k": [1, 2]}, "u": "Québec"});
        assert_eq!(
            render("{/b} {/f} {/o} {/u}", &record).as_deref(),
            Some("true 1.5 {\"k\":[1,2]} Québec")
        );
    }

    #[test]
    fn pointers_use_rfc_6901_escapes() {
        let record = json!({"a/b": "slash", "list": ["zero", "one"]});
        assert_eq!(
            render("{/a~1b} {/list/1}", &record).as_deref(),
            Some("slash one")
        );
    }

    #[test]
    fn malformed_templates_say_where() {
        assert!(matches!(
            Template::parse("abc {/a"),
            Err(TemplateError::Unclosed { at: 4, .. })
        ));
        assert!(matches!(
            Template::parse("{a}"),
            Err(TemplateError::NotAPointer { at: 0, .. })
        ));
        assert!(matches!(
            Template::parse("{}"),
            Err(TemplateError::NotAPointer { .. })
        ));
        assert!(matches!(
            Template::parse("x } y"),
            Err(TemplateError::StrayClose { at: 2, .. })
        ));
        assert!(matches!(
            Template::parse("{/a~x}"),
            Err(TemplateError::Pointer { .. })
        ));
        assert!(matches!(
            Template::parse("{/a{/b}}"),
            Err(TemplateError::NotAPointer { .. })
        ));
    }

    #[test]
    fn lists_the_pointers_it_reads() {
        let t = Template::parse("{/a} and {/b/c}").unwrap();
        let pointers: Vec<_> = t.pointers().map(JsonPointer::as_str).collect();
        assert_eq!(pointers, ["/a", "/b/c"]);
    }
}
