//! A spec that passes every check, for the tests to break one field at a time.

use super::{SpecProblem, validate_spec};
use crate::spec::{
    CassandraSpec, ColumnSpec, Consistency, DeletionPolicy, GeneratorSource, HttpPullSource,
    HttpPushSource, KafkaSpec, KeyspaceSpec, Replication, RunnerSpec, SourceSpec,
    StreamPipelineSpec, TableSpec, TopicSpec,
};

pub(crate) fn spec() -> StreamPipelineSpec {
    StreamPipelineSpec {
        suspend: false,
        deletion_policy: DeletionPolicy::Retain,
        format: None,
        kafka: KafkaSpec {
            tls: None,
            bootstrap_servers: "kafka-0.kafka:9092,[::1]:9093".into(),
            credentials_secret_ref: None,
            topic: TopicSpec::named("users_created"),
        },
        cassandra: CassandraSpec {
            contact_points: vec!["cassandra".into(), "10.0.0.2:9042".into()],
            local_datacenter: "datacenter1".into(),
            credentials_secret_ref: None,
            tls: None,
            keyspace: KeyspaceSpec {
                name: "spark_streams".into(),
                replication: Replication::simple(1),
            },
            table: Some(TableSpec {
                ttl: None,
                write_time: None,
                deletes: None,
                name: "created_users".into(),
                columns: vec![
                    ColumnSpec::from_pointer("id", "uuid", "/login/uuid"),
                    ColumnSpec::from_pointer("select", "text", "/name/first"),
                ],
                partition_key: vec!["id".into()],
                clustering_key: vec![],
            }),
            tables: None,
            consistency: Consistency::LocalQuorum,
        },
        sources: vec![
            SourceSpec {
                name: "synthetic".into(),
                http_pull: None,
                http_push: None,
                generator: Some(GeneratorSource::default()),
            },
            SourceSpec {
                name: "api".into(),
                http_pull: Some(HttpPullSource::new(
                    "https://randomuser.me/api/?results=10",
                    "*/1 * * * *",
                )),
                http_push: None,
                generator: None,
            },
            SourceSpec {
                name: "events".into(),
                http_pull: None,
                http_push: Some(HttpPushSource::default()),
                generator: None,
            },
        ],
        runner: RunnerSpec::default(),
        dead_letter: None,
    }
}

pub(super) fn problems(spec: &StreamPipelineSpec) -> Vec<SpecProblem> {
    validate_spec(spec)
        .err()
        .map(|e| e.problems)
        .unwrap_or_default()
}
