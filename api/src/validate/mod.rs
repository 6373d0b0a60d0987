//! The operator's own check of a StreamPipeline spec.
//!
//! Admission (the CRD's OpenAPI schema and CEL rules) should already have
//! refused everything checked here. This module checks it all again, without
//! trusting that the CRD installed in the cluster is the current one or that
//! admission ran at all, because its names end up in CQL statements and
//! Kafka admin requests. Identifiers are restricted to letters, digits and
//! underscores, and are still quoted by [`quote_cql_identifier`] wherever
//! they are written into CQL, so a reserved word such as `select` is a valid,
//! safely quoted column name.
//!
//! A few checks go further than admission can: cron fields that cannot
//! fire (`0 0 31 2 *`), backwards ranges, header values and topic
//! configuration names.
//!
//! - `problem`: what a check reports ([`InvalidSpec`], [`SpecProblem`],
//!   [`Problem`]);
//! - `names`: which identifiers, names, addresses and URLs are accepted;
//! - `accumulator`: collects the problems of one pass;
//! - `kafka`, `cassandra`, `table`, `sources`, `format`, `runner`: the checks of each
//!   section of the spec.

mod accumulator;
mod cassandra;
#[cfg(test)]
pub(crate) mod fixture;
mod format;
mod kafka;
mod names;
mod problem;
mod runner;
mod sources;
mod table;

use accumulator::Problems;
use cassandra::check_cassandra;
use format::check_format;
use kafka::{check_dead_letter, check_kafka};
use names::is_pipeline_name;
use runner::check_runner;
use sources::check_sources;

use crate::spec::{StreamPipelineSpec, TableSpec};

pub use crate::cql::quote_cql_identifier;
pub use names::{is_cql_identifier, is_topic_name};
pub use problem::{InvalidSpec, Problem, SpecProblem};
pub(crate) use table::table_problems;

/// Checks a spec, returning every problem found.
pub fn validate_spec(spec: &StreamPipelineSpec) -> Result<(), InvalidSpec> {
    let mut v = Problems::default();
    check_kafka(&mut v, &spec.kafka);
    check_dead_letter(&mut v, spec);
    check_cassandra(&mut v, &spec.cassandra);
    check_sources(&mut v, &spec.sources);
    check_format(&mut v, spec);
    table::check_kafka_columns(&mut v, spec);
    check_runner(&mut v, &spec.runner);
    sources::check_push_tls(&mut v, &spec.sources, &spec.runner);
    v.finish()
}

/// Checks a spec and its pipeline's name, which names the runner's objects.
pub fn validate_pipeline(name: &str, spec: &StreamPipelineSpec) -> Result<(), InvalidSpec> {
    let name_problem = (!is_pipeline_name(name)).then(|| SpecProblem {
        field: "metadata.name".to_owned(),
        problem: Problem::PipelineName(name.to_owned()),
    });
    match (name_problem, validate_spec(spec)) {
        (None, result) => result,
        (Some(problem), Ok(())) => Err(InvalidSpec {
            problems: vec![problem],
        }),
        (Some(problem), Err(mut invalid)) => {
            invalid.problems.insert(0, problem);
            Err(invalid)
        }
    }
}

/// Checks a changed spec: the new spec on its own, and that nothing that
/// cannot change after creation (keyspace and table names, primary key)
/// has changed.
pub fn validate_update(
    old: &StreamPipelineSpec,
    new: &StreamPipelineSpec,
) -> Result<(), InvalidSpec> {
    let mut v = Problems::default();
    let (old_c, new_c) = (&old.cassandra, &new.cassandra);
    const RENAME: &str =
        "Cassandra cannot rename it; create a new StreamPipeline to write elsewhere";
    const REKEY: &str = "Cassandra cannot change a table's primary key";
    if old_c.keyspace.name != new_c.keyspace.name {
        v.push(
            "spec.cassandra.keyspace.name",
            Problem::Immutable {
                old: old_c.keyspace.name.clone(),
                new: new_c.keyspace.name.clone(),
                why: RENAME,
            },
        );
    }
    // The first table keys the records in Kafka: replacing it would let
    // two versions of a key sit in different partitions.
    if let (Some(old_t), Some(new_t)) = (old_c.key_table(), new_c.key_table())
        && old_t.name != new_t.name
    {
        v.push(
            format!("{}.name", new_c.table_path(0)),
            Problem::Immutable {
                old: old_t.name.clone(),
                new: new_t.name.clone(),
                why: "the first table keys the records in Kafka; add other tables after it, or create a new StreamPipeline",
            },
        );
    }
    // A table keeps its name for life, so tables are matched by name: one
    // renamed is a table removed (kept, no longer written) and one added.
    for (i, new_t) in new_c.tables().iter().enumerate() {
        let Some(old_t) = old_c.table_named(&new_t.name) else {
            continue;
        };
        let at = new_c.table_path(i);
        if old_t.partition_key != new_t.partition_key {
            v.push(
                format!("{at}.partitionKey"),
                Problem::Immutable {
                    old: old_t.partition_key.join(", "),
                    new: new_t.partition_key.join(", "),
                    why: REKEY,
                },
            );
        }
        if old_t.clustering_key != new_t.clustering_key {
            let show = |t: &TableSpec| {
                t.clustering_key
                    .iter()
                    .map(|c| format!("{} {}", c.name, c.order.as_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            v.push(
                format!("{at}.clusteringKey"),
                Problem::Immutable {
                    old: show(old_t),
                    new: show(new_t),
                    why: REKEY,
                },
            );
        }
    }
    if old.runner.autoscale.is_some()
        && new.runner.autoscale.is_some()
        && old.runner.sink_replicas != new.runner.sink_replicas
    {
        v.push(
            "spec.runner.sinkReplicas",
            Problem::Immutable {
                old: old.runner.sink_replicas.to_string(),
                new: new.runner.sink_replicas.to_string(),
                why: "spec.runner.autoscale is set, so the operator scales the sink; remove autoscale first",
            },
        );
    }
    let immutables = v.finish();
    match (immutables, validate_spec(new)) {
        (Ok(()), result) => result,
        (Err(invalid), Ok(())) => Err(invalid),
        (Err(mut invalid), Err(more)) => {
            invalid.problems.extend(more.problems);
            Err(invalid)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::fixture::{problems, spec};
    use super::names::{is_datacenter, is_dns_label, is_secret_name};
    use super::*;
    use crate::spec::{ColumnSpec, limits};

    #[test]
    fn a_good_spec_passes_and_reserved_words_are_fine() {
        validate_spec(&spec()).unwrap();
        validate_pipeline("randomuser", &spec()).unwrap();
    }

    #[test]
    fn cql_injection_in_every_name_is_refused() {
        let attempts = [
            "users; DROP KEYSPACE prod",
            "users\"; DROP KEYSPACE prod; --",
            "users' OR '1'='1",
            "users -- comment",
            "users/*x*/",
            "user name",
            "users\n",
            "ünïcode",
            "",
            "_leading_underscore",
        ];
        for attempt in attempts {
            let mut s = spec();
            s.cassandra.keyspace.name = attempt.into();
            s.cassandra.tables_mut()[0].name = attempt.into();
            s.cassandra.tables_mut()[0].columns[1].name = attempt.into();
            let found = problems(&s);
            let identifiers = found
                .iter()
                .filter(|p| matches!(p.problem, Problem::CqlIdentifier(_)))
                .count();
            assert_eq!(identifiers, 3, "{attempt:?}: {found:?}");
        }
    }

    /// Injection attempts (api/testdata/injections.rs); the e2e test
    const INJECTIONS: &[(&str, &str)] = include!("../../testdata/injections.rs");

    #[test]
    fn identifier_injection_is_refused_in_every_field() {
        for (what, attempt) in INJECTIONS {
            let mut s = spec();
            s.cassandra.keyspace.name = (*attempt).into();
            s.cassandra.tables_mut()[0].name = (*attempt).into();
            s.cassandra.tables_mut()[0].columns[1].name = (*attempt).into();
            s.kafka.topic.name = (*attempt).into();
            s.sources[0].name = (*attempt).into();
            s.cassandra.local_datacenter = (*attempt).into();
            s.cassandra.credentials_secret_ref = Some(crate::spec::CassandraCredentials {
                name: (*attempt).into(),
                ..serde_json::from_value(serde_json::json!({"name": "x"})).unwrap()
            });
            let found = problems(&s);
            let has = |field: &str, f: fn(&Problem) -> bool| {
                found.iter().any(|p| p.field == field && f(&p.problem))
            };
            let identifier: fn(&Problem) -> bool = |p| matches!(p, Problem::CqlIdentifier(_));
            assert!(
                has("spec.cassandra.keyspace.name", identifier),
                "{what}: {found:?}"
            );
            assert!(
                has("spec.cassandra.table.name", identifier),
                "{what}: {found:?}"
            );
            assert!(
                has("spec.cassandra.table.columns[1].name", identifier),
                "{what}: {found:?}"
            );
            // Some attempts ("1users", "a_very_long…") are fine topic,
            // datacenter and source names: they cannot inject anything there.
            let topic_ok = is_topic_name(attempt);
            assert_eq!(
                has("spec.kafka.topic.name", |p| matches!(
                    p,
                    Problem::TopicName(_)
                )),
                !topic_ok,
                "{what}: {found:?}"
            );
            assert_eq!(
                has("spec.cassandra.localDatacenter", |p| matches!(
                    p,
                    Problem::Datacenter(_)
                )),
                !is_datacenter(attempt),
                "{what}: {found:?}"
            );
            assert_eq!(
                has("spec.sources[0].name", |p| matches!(
                    p,
                    Problem::DnsLabel(_)
                )),
                !is_dns_label(attempt, limits::SOURCE_NAME_MAX),
                "{what}: {found:?}"
            );
            assert_eq!(
                has("spec.cassandra.credentialsSecretRef.name", |p| matches!(
                    p,
                    Problem::SecretName(_)
                )),
                !is_secret_name(attempt),
                "{what}: {found:?}"
            );
            // Whatever passes as a topic, datacenter, source or Secret name
            // is only plain ASCII letters, digits and . _ -.
            for ok in [
                is_topic_name(attempt),
                is_datacenter(attempt),
                is_secret_name(attempt),
            ] {
                assert!(
                    !ok || attempt
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')),
                    "{what}"
                );
            }
            assert!(
                validate_pipeline(attempt, &spec()).is_err(),
                "{what}: pipeline name"
            );
        }
    }

    #[test]
    fn every_problem_is_listed_with_its_field() {
        let mut s = spec();
        s.kafka.topic.partitions = 0;
        s.cassandra.tables_mut()[0].columns[1].type_ = "string".into();
        s.cassandra.tables_mut()[0].partition_key = vec!["nope".into()];
        s.sources[1].name = "API".into();
        let err = validate_spec(&s).unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.kafka.topic.partitions",
                "spec.cassandra.table.columns[1].type",
                "spec.cassandra.table.partitionKey[0]",
                "spec.sources[1].name",
            ]
        );
        let text = err.to_string();
        assert!(
            text.starts_with("invalid StreamPipeline (4 problems): "),
            "{text}"
        );
        assert!(
            text.contains("spec.kafka.topic.partitions: 0 is outside the allowed range 1 to 10000"),
            "{text}"
        );
    }

    #[test]
    fn updates_keep_names_and_keys() {
        let old = spec();
        let mut new = spec();
        new.cassandra.tables_mut()[0]
            .columns
            .push(ColumnSpec::from_pointer("email", "text", "/email"));
        new.kafka.topic.partitions = 6;
        validate_update(&old, &new).unwrap();
        new.cassandra.keyspace.name = "other".into();
        new.cassandra.tables_mut()[0].partition_key = vec!["email".into()];
        let err = validate_update(&old, &new).unwrap_err();
        let fields: Vec<&str> = err.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "spec.cassandra.keyspace.name",
                "spec.cassandra.table.partitionKey"
            ]
        );
        assert!(
            err.to_string()
                .contains("cannot change from \"spark_streams\" to \"other\""),
            "{err}"
        );
    }

    #[test]
    fn pipeline_names_must_suit_service_names() {
        assert!(validate_pipeline("1abc", &spec()).is_err());
        assert!(validate_pipeline("a-", &spec()).is_err());
        assert!(validate_pipeline(&"a".repeat(51), &spec()).is_err());
        validate_pipeline(&"a".repeat(50), &spec()).unwrap();
    }
}
