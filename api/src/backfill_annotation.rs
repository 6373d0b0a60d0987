//! A backfill asked for with an annotation on the StreamPipeline instead of
//! in its spec:
//!
//! ```text
//! kubectl annotate sp NAME backfill.millrace.io/SOURCE='{"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z", "windowSize": "1h"}'
//! ```
//!
//! A backfill is a one-off: where the spec is owned by a GitOps tool or a
//! chart, writing a range into it would either be reverted or stay there
//! for good. The annotation is the same [`Backfill`] in JSON, checked with
//! the same rules. The operator folds it into the spec the runner runs
//! ([`with_backfills`]), where it replaces the source's `spec` backfill;
//! the runner keeps its progress on the pull Lease as for a spec backfill,
//! so a finished range is not run again, and another range is a new
//! backfill. Removing the annotation ends it.

use std::collections::BTreeMap;

use jiff::Timestamp;

use crate::StreamPipelineSpec;
use crate::pull_paging::check_pull;
use crate::spec::Backfill;
use crate::validate::{InvalidSpec, Problem, SpecProblem};

/// Annotations `backfill.millrace.io/SOURCE` ask for a backfill of the
/// httpPull source SOURCE.
pub const BACKFILL_ANNOTATION_PREFIX: &str = "backfill.millrace.io/";

/// `spec` with each backfill annotation's range set on its source, or what
/// is wrong with the annotations, each named as
/// `metadata.annotations[backfill.millrace.io/SOURCE]`. "Not in the future"
/// is judged at `now`.
pub fn with_backfills(
    spec: &StreamPipelineSpec,
    annotations: &BTreeMap<String, String>,
    now: Timestamp,
) -> Result<StreamPipelineSpec, InvalidSpec> {
    let mut spec = spec.clone();
    let mut problems = Vec::new();
    for (key, value) in annotations {
        let Some(source) = key.strip_prefix(BACKFILL_ANNOTATION_PREFIX) else {
            continue;
        };
        let field = format!("metadata.annotations[{key}]");
        let mut problem = |problem| {
            problems.push(SpecProblem {
                field: field.clone(),
                problem,
            })
        };
        let Some(pull) = spec
            .sources
            .iter_mut()
            .find(|s| s.name == source)
            .and_then(|s| s.http_pull.as_mut())
        else {
            problem(Problem::BackfillAnnotationSource(source.to_owned()));
            continue;
        };
        let backfill: Backfill = match serde_json::from_str(value) {
            Ok(b) => b,
            Err(e) => {
                problem(Problem::BackfillAnnotationValue(e.to_string()));
                continue;
            }
        };
        pull.backfill = Some(backfill);
        // The pull's other fields passed the spec's own check; what can be
        // wrong now is the backfill.
        for (at, found) in check_pull(pull, now) {
            if at.starts_with("backfill") {
                problem(found.into());
            }
        }
    }
    if problems.is_empty() {
        Ok(spec)
    } else {
        Err(InvalidSpec { problems })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::pull_paging::PagingError;
    use crate::spec::{HttpPullSource, SourceSpec};
    use crate::validate::fixture::spec;

    fn windowed() -> StreamPipelineSpec {
        let mut s = spec();
        let pull = |name: &str, url: &str| SourceSpec {
            name: name.into(),
            http_pull: Some(HttpPullSource::new(url, "5m")),
            http_push: None,
            generator: None,
        };
        s.sources = vec![
            pull("api", "http://api.example/users?since={{window.start}}"),
            pull("plain", "http://api.example/users"),
        ];
        s
    }

    fn ask(key: &str, value: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(key.to_owned(), value.to_owned())])
    }

    fn problems(annotations: &BTreeMap<String, String>) -> Vec<(String, Problem)> {
        let now = "2026-12-01T00:00:00Z".parse().unwrap();
        with_backfills(&windowed(), annotations, now)
            .unwrap_err()
            .problems
            .into_iter()
            .map(|p| (p.field, p.problem))
            .collect()
    }

    #[test]
    fn an_annotation_sets_its_source_s_backfill_and_nothing_else() {
        let now = "2026-12-01T00:00:00Z".parse().unwrap();
        let annotations = BTreeMap::from([
            (
                "backfill.millrace.io/api".to_owned(),
                r#"{"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z", "windowSize": "1h"}"#
                    .to_owned(),
            ),
            ("millrace.io/other".to_owned(), "x".to_owned()),
        ]);
        let spec = with_backfills(&windowed(), &annotations, now).unwrap();
        let backfill = spec.sources[0]
            .http_pull
            .as_ref()
            .unwrap()
            .backfill
            .as_ref()
            .unwrap();
        assert_eq!(backfill.from, "2026-11-01T00:00:00Z");
        assert_eq!(backfill.to, "2026-11-02T00:00:00Z");
        assert_eq!(backfill.window_size.as_deref(), Some("1h"));
        assert!(
            spec.sources[1]
                .http_pull
                .as_ref()
                .unwrap()
                .backfill
                .is_none()
        );

        // Without annotations the spec is unchanged.
        assert_eq!(
            with_backfills(&windowed(), &BTreeMap::new(), now).unwrap(),
            windowed()
        );
    }

    #[test]
    fn a_bad_annotation_is_named_with_what_is_wrong() {
        let field = "metadata.annotations[backfill.millrace.io/nosuch]";
        assert_eq!(
            problems(&ask("backfill.millrace.io/nosuch", "{}")),
            vec![(
                field.to_owned(),
                Problem::BackfillAnnotationSource("nosuch".into())
            )]
        );
        let found = problems(&ask("backfill.millrace.io/api", "yesterday"));
        assert!(
            matches!(&found[..], [(f, Problem::BackfillAnnotationValue(_))] if f == "metadata.annotations[backfill.millrace.io/api]"),
            "{found:?}"
        );
        let found = problems(&ask(
            "backfill.millrace.io/api",
            r#"{"from": "2026-11-02T00:00:00Z", "to": "2026-11-01T00:00:00Z"}"#,
        ));
        assert!(
            matches!(
                &found[..],
                [(_, Problem::Paging(PagingError::BackfillBackwards { .. }))]
            ),
            "{found:?}"
        );
        let found = problems(&ask(
            "backfill.millrace.io/api",
            r#"{"from": "2026-11-01T00:00:00Z", "to": "2027-01-01T00:00:00Z"}"#,
        ));
        assert!(
            matches!(
                &found[..],
                [(_, Problem::Paging(PagingError::BackfillInFuture(_)))]
            ),
            "{found:?}"
        );
        // A URL without a window variable has no window to backfill.
        let found = problems(&ask(
            "backfill.millrace.io/plain",
            r#"{"from": "2026-11-01T00:00:00Z", "to": "2026-11-02T00:00:00Z"}"#,
        ));
        assert!(
            matches!(
                &found[..],
                [(_, Problem::Paging(PagingError::WindowUnused(_)))]
            ),
            "{found:?}"
        );
    }
}
