//! The CRD refuses what the operator would refuse.
//!
//! Every CEL rule of the generated CRD is evaluated offline (kube's CEL
//! evaluator) against variants of the example pipeline, and the operator's
//! Rust validation must reach the same verdict on each.
#![allow(clippy::unwrap_used)]

use kube::CustomResourceExt as _;
use kube::core::cel::Validator;
use millrace_api::{StreamPipeline, validate_pipeline, validate_update};
use serde_json::{Value, json};

const EXAMPLE: &str = include_str!("../../examples/randomuser.yaml");

fn schema() -> Value {
    let crd = StreamPipeline::crd();
    let schema = crd.spec.versions[0].schema.as_ref().unwrap();
    serde_json::to_value(schema.open_api_v3_schema.as_ref().unwrap()).unwrap()
}

fn example() -> Value {
    serde_yaml::from_str(EXAMPLE).unwrap()
}

/// The CEL messages of every rule `object` breaks (`old`: the stored object
/// for an update).
fn cel_failures(object: &Value, old: Option<&Value>) -> Vec<String> {
    match Validator::new().validate(&schema(), object, old) {
        Ok(()) => vec![],
        Err(errors) => errors
            .iter()
            .map(|e| format!("{}: {}", e.field_path, e.message))
            .collect(),
    }
}

fn rust_verdict(object: &Value) -> Result<(), String> {
    let pipeline: StreamPipeline =
        serde_json::from_value(object.clone()).map_err(|e| e.to_string())?;
    let name = pipeline.metadata.name.clone().unwrap_or_default();
    validate_pipeline(&name, &pipeline.spec).map_err(|e| e.to_string())
}

fn with(change: impl FnOnce(&mut Value)) -> Value {
    let mut object = example();
    change(&mut object);
    object
}

fn table(object: &mut Value) -> &mut Value {
    &mut object["spec"]["cassandra"]["table"]
}

fn add_source(object: &mut Value, source: Value) {
    object["spec"]["sources"]
        .as_array_mut()
        .unwrap()
        .push(source);
}

#[test]
fn the_example_passes_both_checks() {
    let object = example();
    assert_eq!(cel_failures(&object, None), Vec::<String>::new());
    rust_verdict(&object).unwrap();
}

#[test]
fn valid_variants_pass_both_checks() {
    let variants: Vec<(&str, Value)> = vec![
        (
            "a pull source on a cron schedule",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "api", "httpPull": {
                "url": "https://randomuser.me/api/?results=10", "schedule": "*/5 9-17 * * mon-fri",
                "recordsPath": "/results", "headers": {"Accept": "application/json"}}}),
                );
            }),
        ),
        (
            "a pull source with a response limit and its address kinds",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "api", "httpPull": {"url": "http://169.254.169.254/latest/", "schedule": "1m",
                "maxResponseBytes": 1024, "allowedAddresses": {"linkLocal": true, "private": false, "loopback": false}}}),
                );
            }),
        ),
        (
            "a pull source on an interval",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "api", "httpPull": {"url": "http://10.0.0.1:8080/users", "schedule": "250ms"}}),
                );
            }),
        ),
        (
            "a paged, windowed pull with a backfill",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "api", "httpPull": {
                "url": "https://api.example.com/users?since={{window.start}}&until={{ window.end }}", "schedule": "*/5 * * * *",
                "recordsPath": "/results", "pagination": {"nextLink": "/info/next", "maxPages": 20},
                "window": {"initialStart": "2026-01-01T00:00:00Z", "format": "unixMillis"},
                "backfill": {"from": "2025-12-01T00:00:00Z", "to": "2026-01-01T00:00:00.5+01:00", "windowSize": "6h"}}}),
                );
                for (name, pagination) in [
                    ("link", json!({"linkHeader": true})),
                    (
                        "cursor",
                        json!({"cursor": {"path": "/meta/next", "param": "after"}}),
                    ),
                    (
                        "page",
                        json!({"page": {"param": "page", "size": 50, "sizeParam": "per_page"}}),
                    ),
                    ("offset", json!({"offset": {"param": "offset", "start": 0}})),
                ] {
                    add_source(
                        o,
                        json!({"name": name, "httpPull": {"url": "https://api.example.com/u", "schedule": "1m", "pagination": pagination}}),
                    );
                }
            }),
        ),
        (
            "NetworkTopologyStrategy",
            with(|o| {
                o["spec"]["cassandra"]["keyspace"]["replication"] = json!({"class": "NetworkTopologyStrategy", "dataCenters": {"dc1": 3, "dc-2": 2}});
            }),
        ),
        (
            "reserved words as column names",
            with(|o| {
                let columns = table(o)["columns"].as_array_mut().unwrap();
                columns.push(json!({"name": "select", "type": "text", "from": "/nat"}));
                columns.push(json!({"name": "key", "type": "map<text, text>", "from": "/id"}));
            }),
        ),
        (
            "a clustering key",
            with(|o| {
                table(o)["clusteringKey"] = json!([{"name": "registered_date", "order": "DESC"}]);
            }),
        ),
        (
            "a whole-record column and a template with literal braces",
            with(|o| {
                let columns = table(o)["columns"].as_array_mut().unwrap();
                columns.push(json!({"name": "raw", "type": "text", "wholeRecord": true}));
                columns.push(json!({"name": "braces", "type": "text", "template": "{{{/nat}}}"}));
            }),
        ),
        (
            "an explicit dead-letter topic",
            with(|o| {
                o["spec"]["deadLetter"] = json!({"topic": "users_created-failed"});
            }),
        ),
        (
            "no sources",
            with(|o| {
                o["spec"]["sources"] = json!([]);
            }),
        ),
    ];
    for (what, object) in variants {
        assert_eq!(cel_failures(&object, None), Vec::<String>::new(), "{what}");
        if let Err(e) = rust_verdict(&object) {
            panic!("{what}: Rust validation refused it: {e}");
        }
    }
}

/// Specs admission must refuse, with the words its message must contain.
fn refused() -> Vec<(&'static str, Value, &'static str)> {
    let long_topic = "t".repeat(246);
    vec![
        (
            "space in keyspace",
            with(|o| o["spec"]["cassandra"]["keyspace"]["name"] = json!("spark streams")),
            "must be a CQL identifier",
        ),
        (
            "CQL injection in keyspace",
            with(|o| {
                o["spec"]["cassandra"]["keyspace"]["name"] = json!("x\"; DROP KEYSPACE y; --")
            }),
            "must be a CQL identifier",
        ),
        (
            "table starting with a digit",
            with(|o| table(o)["name"] = json!("1users")),
            "must be a CQL identifier",
        ),
        (
            "dash in a column",
            with(|o| table(o)["columns"][1]["name"] = json!("first-name")),
            "must be a CQL identifier",
        ),
        (
            "quote in a column",
            with(|o| table(o)["columns"][1]["name"] = json!("a\"b")),
            "must be a CQL identifier",
        ),
        (
            "semicolon in a column",
            with(|o| table(o)["columns"][1]["name"] = json!("a;b")),
            "must be a CQL identifier",
        ),
        (
            "49-character column",
            with(|o| table(o)["columns"][1]["name"] = json!("c".repeat(49))),
            "must be a CQL identifier",
        ),
        (
            "unknown partition key column",
            with(|o| table(o)["partitionKey"] = json!(["nope"])),
            "every partitionKey entry",
        ),
        (
            "no partition key",
            with(|o| table(o)["partitionKey"] = json!([])),
            "at least one column",
        ),
        (
            "repeated partition key column",
            with(|o| table(o)["partitionKey"] = json!(["id", "id"])),
            "more than once",
        ),
        (
            "unknown clustering column",
            with(|o| table(o)["clusteringKey"] = json!([{"name": "nope"}])),
            "every clusteringKey entry",
        ),
        (
            "column in both keys",
            with(|o| table(o)["clusteringKey"] = json!([{"name": "id"}])),
            "both partitionKey and clusteringKey",
        ),
        (
            "collection in the key",
            with(|o| {
                table(o)["columns"][1]["type"] = json!("list<text>");
                table(o)["partitionKey"] = json!(["id", "first_name"]);
            }),
            "cannot be of a list, set or map type",
        ),
        (
            "unknown type",
            with(|o| table(o)["columns"][1]["type"] = json!("string")),
            "must be a CQL type",
        ),
        (
            "nested collection",
            with(|o| table(o)["columns"][1]["type"] = json!("list<list<int>>")),
            "must be a CQL type",
        ),
        (
            "injection in a type",
            with(|o| table(o)["columns"][1]["type"] = json!("text); DROP TABLE x; --")),
            "must be a CQL type",
        ),
        (
            "upper-case type",
            with(|o| table(o)["columns"][1]["type"] = json!("TEXT")),
            "must be a CQL type",
        ),
        (
            "from and template",
            with(|o| table(o)["columns"][1]["template"] = json!("{/name/first}")),
            "exactly one of from, template",
        ),
        (
            "no value source",
            with(|o| table(o)["columns"][1] = json!({"name": "first_name", "type": "text"})),
            "exactly one of from, template",
        ),
        (
            "wholeRecord false",
            with(|o| {
                table(o)["columns"][1] =
                    json!({"name": "first_name", "type": "text", "wholeRecord": false})
            }),
            "exactly one of from, template",
        ),
        (
            "wholeRecord into int",
            with(|o| {
                table(o)["columns"][1] =
                    json!({"name": "first_name", "type": "int", "wholeRecord": true})
            }),
            "must be text",
        ),
        (
            "pointer without slash",
            with(|o| table(o)["columns"][1]["from"] = json!("name/first")),
            "must be a JSON pointer",
        ),
        (
            "pointer with a bad escape",
            with(|o| table(o)["columns"][1]["from"] = json!("/a~2")),
            "must be a JSON pointer",
        ),
        (
            "template field without slash",
            with(|o| table(o)["columns"][4]["template"] = json!("{location}")),
            "JSON pointers in braces",
        ),
        (
            "template with a stray brace",
            with(|o| table(o)["columns"][4]["template"] = json!("a } b")),
            "JSON pointers in braces",
        ),
        (
            "topic '.'",
            with(|o| o["spec"]["kafka"]["topic"]["name"] = json!(".")),
            "must be a Kafka topic name",
        ),
        (
            "topic with a space",
            with(|o| o["spec"]["kafka"]["topic"]["name"] = json!("users created")),
            "must be a Kafka topic name",
        ),
        (
            "topic with a semicolon",
            with(|o| o["spec"]["kafka"]["topic"]["name"] = json!("users;created")),
            "must be a Kafka topic name",
        ),
        (
            "bad dead-letter topic",
            with(|o| o["spec"]["deadLetter"] = json!({"topic": ".."})),
            "must be a Kafka topic name",
        ),
        (
            "dead-letter topic is the topic",
            with(|o| o["spec"]["deadLetter"] = json!({"topic": "users_created"})),
            "must differ",
        ),
        (
            "topic too long for .dlq",
            with(|o| o["spec"]["kafka"]["topic"]["name"] = json!(long_topic)),
            "too long to append",
        ),
        (
            "SimpleStrategy without a factor",
            with(|o| {
                o["spec"]["cassandra"]["keyspace"]["replication"] =
                    json!({"class": "SimpleStrategy"})
            }),
            "SimpleStrategy takes replicationFactor",
        ),
        (
            "NetworkTopologyStrategy with one factor",
            with(|o| {
                o["spec"]["cassandra"]["keyspace"]["replication"] =
                    json!({"class": "NetworkTopologyStrategy", "replicationFactor": 3})
            }),
            "NetworkTopologyStrategy takes dataCenters",
        ),
        (
            "datacenter factor 0",
            with(|o| {
                o["spec"]["cassandra"]["keyspace"]["replication"] =
                    json!({"class": "NetworkTopologyStrategy", "dataCenters": {"dc1": 0}})
            }),
            "from 1 to 32",
        ),
        (
            "source name with capitals",
            with(|o| o["spec"]["sources"][0]["name"] = json!("Synthetic_1")),
            "lower-case letters",
        ),
        (
            "two kinds in one source",
            with(|o| o["spec"]["sources"][0]["httpPush"] = json!({"path": "/other"})),
            "exactly one of httpPull, httpPush or generator",
        ),
        (
            "no kind",
            with(|o| o["spec"]["sources"][0] = json!({"name": "empty"})),
            "exactly one of httpPull, httpPush or generator",
        ),
        (
            "schedule in words",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/", "schedule": "every minute"}}),
                )
            }),
            "five-field cron",
        ),
        (
            "cron minute 61",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/", "schedule": "61 * * * *"}}),
                )
            }),
            "five-field cron",
        ),
        (
            "cron with four fields",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/", "schedule": "* * * *"}}),
                )
            }),
            "five-field cron",
        ),
        (
            "zero interval",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/", "schedule": "0s"}}),
                )
            }),
            "five-field cron",
        ),
        (
            "two pagination modes",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/?s={{window.start}}", "schedule": "1m", "pagination": {"nextLink": "/next", "linkHeader": true}}}),
                )
            }),
            "exactly one of nextLink, linkHeader: true, cursor, page or offset",
        ),
        (
            "no pagination mode",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/?s={{window.start}}", "schedule": "1m", "pagination": {"maxPages": 3}}}),
                )
            }),
            "exactly one of nextLink, linkHeader: true, cursor, page or offset",
        ),
        (
            "a backfill running backwards",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/?s={{window.start}}", "schedule": "1m", "backfill": {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}}}),
                )
            }),
            "backfill.from must be before backfill.to",
        ),
        (
            "a backfill window of a day",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/?s={{window.start}}", "schedule": "1m", "backfill": {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "windowSize": "1d"}}}),
                )
            }),
            "non-zero interval",
        ),
        (
            "a window start that is not a time",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/?s={{window.start}}", "schedule": "1m", "window": {"initialStart": "yesterday"}}}),
                )
            }),
            "initialStart",
        ),
        (
            "ftp URL",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "ftp://x.example/", "schedule": "1m"}}),
                )
            }),
            "http or https URL",
        ),
        (
            "relative URL",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "/api", "schedule": "1m"}}),
                )
            }),
            "http or https URL",
        ),
        (
            "records path without slash",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/", "schedule": "1m", "recordsPath": "results"}}),
                )
            }),
            "JSON pointer",
        ),
        (
            "two push sources on one path",
            with(|o| add_source(o, json!({"name": "more", "httpPush": {}}))),
            "cannot share a path",
        ),
        (
            "pipeline name starting with a digit",
            with(|o| o["metadata"]["name"] = json!("1pipeline")),
            "StreamPipeline's name",
        ),
        (
            "pipeline name too long",
            with(|o| o["metadata"]["name"] = json!("p".repeat(51))),
            "StreamPipeline's name",
        ),
        (
            "a SASL login Secret with a protocol without SASL",
            with(|o| {
                o["spec"]["kafka"]["credentialsSecretRef"] =
                    json!({"name": "login", "securityProtocol": "SSL"})
            }),
            "its securityProtocol is SASL_SSL or SASL_PLAINTEXT",
        ),
        (
            "tls with a plaintext login",
            with(|o| {
                o["spec"]["kafka"]["tls"] = json!({});
                o["spec"]["kafka"]["credentialsSecretRef"] =
                    json!({"name": "login", "securityProtocol": "SASL_PLAINTEXT"});
            }),
            "spec.kafka.tls asks for TLS",
        ),
        (
            "the CA given twice",
            with(|o| {
                o["spec"]["kafka"]["tls"] = json!({"caSecretRef": {"name": "ca"}});
                o["spec"]["kafka"]["credentialsSecretRef"] =
                    json!({"name": "login", "caKey": "ca.crt"});
            }),
            "the CA is given twice",
        ),
        (
            "config for a topic millrace does not manage",
            with(|o| {
                o["spec"]["kafka"]["topic"]["managed"] = json!(false);
                o["spec"]["kafka"]["topic"]["config"] = json!({"retention.ms": "1000"});
            }),
            "with managed: false the topic is used as it is",
        ),
        (
            "a CA for a plaintext login",
            with(|o| {
                o["spec"]["kafka"]["credentialsSecretRef"] = json!({"name": "login", "securityProtocol": "SASL_PLAINTEXT", "caKey": "ca.crt"})
            }),
            "which SASL_PLAINTEXT does not use",
        ),
    ]
}

#[test]
fn the_strimzi_example_passes_both_checks() {
    let object: Value =
        serde_yaml::from_str(include_str!("../../examples/strimzi-kafka.yaml")).unwrap();
    assert_eq!(cel_failures(&object, None), Vec::<String>::new());
    rust_verdict(&object).unwrap();
    let typed: StreamPipeline = serde_json::from_value(object).unwrap();
    let kafka = typed.spec.kafka;
    assert_eq!(
        kafka.security_protocol(),
        millrace_api::SecurityProtocol::SaslSsl
    );
    assert_eq!(kafka.ca_ref().unwrap().key, "ca.crt");
}

#[test]
fn the_k8ssandra_tls_example_passes_both_checks() {
    let object: Value =
        serde_yaml::from_str(include_str!("../../examples/k8ssandra-tls.yaml")).unwrap();
    assert_eq!(cel_failures(&object, None), Vec::<String>::new());
    rust_verdict(&object).unwrap();
    let typed: StreamPipeline = serde_json::from_value(object).unwrap();
    let cassandra = typed.spec.cassandra;
    let tls = cassandra.tls.as_ref().unwrap();
    assert!(!tls.verify_hostname);
    assert_eq!(tls.ca_secret_ref.key, "ca.crt");
    assert_eq!(
        cassandra.secret_names(),
        ["demo-superuser", "millrace-cassandra-client"]
    );
}

#[test]
fn the_push_tls_example_passes_both_checks_and_its_auth_fields_are_checked() {
    let object: Value = serde_yaml::from_str(include_str!("../../examples/push-tls.yaml")).unwrap();
    assert_eq!(cel_failures(&object, None), Vec::<String>::new());
    rust_verdict(&object).unwrap();
    let typed: StreamPipeline = serde_json::from_value(object.clone()).unwrap();
    let tls = typed.spec.runner.push_tls.as_ref().unwrap();
    assert_eq!(tls.certificate_secret_ref.name, "events-push-tls");
    assert_eq!(tls.client_ca_secret_ref.as_ref().unwrap().key, "ca.crt");

    let mut wrong = object.clone();
    wrong["spec"]["sources"][1]["httpPush"]["auth"]["tokensSecretRef"] = json!({"name": "t"});
    wrong["spec"]["sources"][0]["httpPush"]["auth"] = json!({"allowedDnsNames": ["a.example"]});
    let failures = cel_failures(&wrong, None);
    assert!(
        failures
            .iter()
            .any(|f| f.ends_with("tokensSecretRef is only for type BearerToken")),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|f| f.ends_with("allowedDnsNames is only for type ClientCertificate")),
        "{failures:?}"
    );
    assert!(rust_verdict(&wrong).is_err());

    // A ClientCertificate source without the client CA: admitted (a rule
    // across sources and runner), refused by the operator's check, which
    // becomes the pipeline's condition.
    let mut no_ca = object;
    no_ca["spec"]["runner"]["pushTls"]
        .as_object_mut()
        .unwrap()
        .remove("clientCaSecretRef");
    assert_eq!(cel_failures(&no_ca, None), Vec::<String>::new());
    let verdict = rust_verdict(&no_ca).unwrap_err();
    assert!(
        verdict.contains("spec.sources[1].httpPush.auth.type: auth type ClientCertificate needs spec.runner.pushTls with clientCaSecretRef"),
        "{verdict}"
    );
}

#[test]
fn the_avro_example_passes_both_checks() {
    let object: Value = serde_yaml::from_str(include_str!("../../examples/avro.yaml")).unwrap();
    assert_eq!(cel_failures(&object, None), Vec::<String>::new());
    rust_verdict(&object).unwrap();
}

#[test]
fn avro_specs_that_cannot_work_fail_both_checks() {
    let avro = |o: &mut Value| {
        o["spec"]["format"] = json!({"type": "avro", "schemaRegistry": {"url": "http://registry:8080/apis/ccompat/v7"}});
    };
    let cases = [
        (
            "avro with the example's JSON sources",
            with(avro),
            "format.type avro takes no sources",
        ),
        (
            "avro without a registry",
            with(|o| {
                o["spec"]["sources"] = json!([]);
                o["spec"]["format"] = json!({"type": "avro"});
            }),
            "needs format.schemaRegistry",
        ),
        (
            "a registry for json",
            with(|o| {
                o["spec"]["format"] =
                    json!({"type": "json", "schemaRegistry": {"url": "http://registry:8080"}});
            }),
            "only read for format.type avro",
        ),
        (
            "a registry URL that is not http",
            with(|o| {
                avro(o);
                o["spec"]["sources"] = json!([]);
                o["spec"]["format"]["schemaRegistry"]["url"] = json!("ftp://registry");
            }),
            "must be an absolute http or https URL",
        ),
        (
            "a registry CA for an http URL",
            with(|o| {
                avro(o);
                o["spec"]["sources"] = json!([]);
                o["spec"]["format"]["schemaRegistry"]["tls"] =
                    json!({"caSecretRef": {"name": "registry-ca"}});
            }),
            "schemaRegistry.tls is for an https url",
        ),
    ];
    for (what, object, words) in cases {
        let failures = cel_failures(&object, None);
        assert!(
            failures.iter().any(|f| f.contains(words)),
            "{what}: expected a CEL failure containing {words:?}, got {failures:?}"
        );
        assert!(rust_verdict(&object).is_err(), "{what}: Rust accepted it");
    }
    let ok = with(|o| {
        avro(o);
        o["spec"]["sources"] = json!([]);
    });
    assert_eq!(cel_failures(&ok, None), Vec::<String>::new());
    rust_verdict(&ok).unwrap();
    let private_ca = with(|o| {
        avro(o);
        o["spec"]["sources"] = json!([]);
        o["spec"]["format"]["schemaRegistry"]["url"] =
            json!("https://registry:8443/apis/ccompat/v7");
        o["spec"]["format"]["schemaRegistry"]["tls"] =
            json!({"caSecretRef": {"name": "registry-ca"}});
    });
    assert_eq!(cel_failures(&private_ca, None), Vec::<String>::new());
    rust_verdict(&private_ca).unwrap();
}

#[test]
fn refused_specs_fail_both_checks_with_a_clear_message() {
    for (what, object, words) in refused() {
        let failures = cel_failures(&object, None);
        assert!(
            failures.iter().any(|f| f.contains(words)),
            "{what}: expected a CEL failure containing {words:?}, got {failures:?}"
        );
        assert!(
            rust_verdict(&object).is_err(),
            "{what}: Rust validation accepted it"
        );
    }
}

/// A repeated column or source name is refused by the apiserver itself:
/// the list is a map keyed by `name` (a CEL rule would compare every pair
/// on every write). The offline evaluator knows no list keys, so the
/// schema is checked here and the refusal by the real apiserver in
/// `tests/e2e/tests/operator_admission.rs`.
#[test]
fn repeated_names_are_refused_by_the_list_keys_and_by_rust() {
    let schema = schema();
    let spec = &schema["properties"]["spec"]["properties"];
    let columns = &spec["cassandra"]["properties"]["table"]["properties"]["columns"];
    let tables_columns =
        &spec["cassandra"]["properties"]["tables"]["items"]["properties"]["columns"];
    for (what, list) in [
        ("table columns", columns),
        ("tables' columns", tables_columns),
        ("sources", &spec["sources"]),
    ] {
        assert_eq!(list["x-kubernetes-list-type"], json!("map"), "{what}");
        assert_eq!(
            list["x-kubernetes-list-map-keys"],
            json!(["name"]),
            "{what}"
        );
    }
    for (what, object) in [
        (
            "duplicate columns",
            with(|o| table(o)["columns"][2]["name"] = json!("first_name")),
        ),
        (
            "duplicate source names",
            with(|o| o["spec"]["sources"][1]["name"] = json!("synthetic")),
        ),
    ] {
        let verdict = rust_verdict(&object);
        assert!(
            verdict
                .as_ref()
                .is_err_and(|e| e.contains("more than once")),
            "{what}: {verdict:?}"
        );
    }
}

#[test]
fn names_and_keys_cannot_change_but_columns_can_be_added() {
    let old = example();
    let changes: Vec<(&str, Value, &str)> = vec![
        (
            "keyspace renamed",
            with(|o| o["spec"]["cassandra"]["keyspace"]["name"] = json!("other")),
            "keyspace cannot be renamed",
        ),
        (
            "table renamed",
            with(|o| table(o)["name"] = json!("other")),
            "table cannot be renamed",
        ),
        (
            "partition key changed",
            with(|o| table(o)["partitionKey"] = json!(["email"])),
            "partition key cannot be changed",
        ),
        (
            "clustering key added",
            with(|o| table(o)["clusteringKey"] = json!([{"name": "email"}])),
            "clustering key cannot be changed",
        ),
    ];
    let typed = |v: &Value| {
        serde_json::from_value::<StreamPipeline>(v.clone())
            .unwrap()
            .spec
    };
    for (what, new, words) in changes {
        let failures = cel_failures(&new, Some(&old));
        assert!(
            failures.iter().any(|f| f.contains(words)),
            "{what}: expected {words:?}, got {failures:?}"
        );
        assert!(
            validate_update(&typed(&old), &typed(&new)).is_err(),
            "{what}: Rust allowed it"
        );
    }
    let grown = with(|o| {
        table(o)["columns"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "nat", "type": "text", "from": "/nat"}));
        o["spec"]["kafka"]["topic"]["partitions"] = json!(6);
    });
    assert_eq!(cel_failures(&grown, Some(&old)), Vec::<String>::new());
    validate_update(&typed(&old), &typed(&grown)).unwrap();
}

/// Bounds and formats the OpenAPI schema checks (not CEL): the Rust
/// validation must refuse them too.
#[test]
fn schema_bounds_are_checked_in_rust_too() {
    let cases: Vec<(&str, Value)> = vec![
        (
            "zero partitions",
            with(|o| o["spec"]["kafka"]["topic"]["partitions"] = json!(0)),
        ),
        (
            "zero replication",
            with(|o| o["spec"]["kafka"]["topic"]["replicationFactor"] = json!(0)),
        ),
        (
            "broker without port",
            with(|o| o["spec"]["kafka"]["bootstrapServers"] = json!("kafka")),
        ),
        (
            "broker list with a space",
            with(|o| o["spec"]["kafka"]["bootstrapServers"] = json!("a:9092, b:9092")),
        ),
        (
            "contact point with a space",
            with(|o| o["spec"]["cassandra"]["contactPoints"] = json!(["cassandra db"])),
        ),
        (
            "no contact points",
            with(|o| o["spec"]["cassandra"]["contactPoints"] = json!([])),
        ),
        (
            "negative replicas",
            with(|o| o["spec"]["runner"] = json!({"sinkReplicas": -1})),
        ),
        (
            "push path without slash",
            with(|o| o["spec"]["sources"][1]["httpPush"]["path"] = json!("records")),
        ),
        (
            "header value with a line break",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {
            "url": "https://x.example/", "schedule": "1m", "headers": {"X-A": "1\r\nX-Injected: yes"}}}),
                )
            }),
        ),
        (
            "header name with a space",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {
            "url": "https://x.example/", "schedule": "1m", "headers": {"X A": "1"}}}),
                )
            }),
        ),
        (
            "a response limit below 1 KiB",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/", "schedule": "1m", "maxResponseBytes": 1023}}),
                )
            }),
        ),
        (
            "a response limit above 128 MiB",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/", "schedule": "1m", "maxResponseBytes": 134217729_i64}}),
                )
            }),
        ),
        (
            "cron on February 31st",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/", "schedule": "0 0 31 2 *"}}),
                )
            }),
        ),
        (
            "backwards cron range",
            with(|o| {
                add_source(
                    o,
                    json!({"name": "p", "httpPull": {"url": "https://x.example/", "schedule": "30-10 * * * *"}}),
                )
            }),
        ),
        (
            "topic config name with a space",
            with(|o| o["spec"]["kafka"]["topic"]["config"] = json!({"retention ms": "1"})),
        ),
        (
            "secret name with capitals",
            with(|o| o["spec"]["kafka"]["credentialsSecretRef"] = json!({"name": "Kafka"})),
        ),
    ];
    for (what, object) in cases {
        assert!(
            rust_verdict(&object).is_err(),
            "{what}: Rust validation accepted it"
        );
    }
}

fn autoscale(o: &mut Value, autoscale: Value) {
    o["spec"]["runner"] = json!({"autoscale": autoscale});
}

#[test]
fn the_autoscale_example_passes_both_checks() {
    let object: Value =
        serde_yaml::from_str(include_str!("../../examples/autoscale.yaml")).unwrap();
    assert_eq!(cel_failures(&object, None), Vec::<String>::new());
    rust_verdict(&object).unwrap();
    let typed: StreamPipeline = serde_json::from_value(object).unwrap();
    let a = typed.spec.runner.autoscale.unwrap();
    assert_eq!((a.min_replicas, a.max_replicas), (1, 12));
}

#[test]
fn autoscale_bounds_are_refused_by_both_checks() {
    let ok = with(|o| autoscale(o, json!({"maxReplicas": 4, "targetLagPerReplica": 100})));
    assert_eq!(cel_failures(&ok, None), Vec::<String>::new());
    rust_verdict(&ok).unwrap();
    let typed: StreamPipeline = serde_json::from_value(ok).unwrap();
    let a = typed.spec.runner.autoscale.unwrap();
    assert_eq!((a.min_replicas, a.cooldown_seconds), (1, 300), "defaults");

    let min_above_max = with(|o| {
        autoscale(
            o,
            json!({"minReplicas": 5, "maxReplicas": 4, "targetLagPerReplica": 100}),
        )
    });
    let failures = cel_failures(&min_above_max, None);
    assert!(
        failures
            .iter()
            .any(|f| f.contains("minReplicas must not exceed maxReplicas")),
        "{failures:?}"
    );
    let rust = rust_verdict(&min_above_max).unwrap_err();
    assert!(rust.contains("spec.runner.autoscale.minReplicas"), "{rust}");

    // Bounds the OpenAPI schema checks: Rust refuses them too.
    for bad in [
        json!({"minReplicas": 0, "maxReplicas": 4, "targetLagPerReplica": 100}),
        json!({"maxReplicas": 65, "targetLagPerReplica": 100}),
        json!({"maxReplicas": 4, "targetLagPerReplica": 0}),
        json!({"maxReplicas": 4, "targetLagPerReplica": 100, "cooldownSeconds": -1}),
    ] {
        let object = with(|o| autoscale(o, bad.clone()));
        assert!(rust_verdict(&object).is_err(), "{bad}: Rust accepted it");
    }
}

#[test]
fn sink_replicas_cannot_change_while_autoscale_is_set() {
    let typed = |v: &Value| {
        serde_json::from_value::<StreamPipeline>(v.clone())
            .unwrap()
            .spec
    };
    let scaled = json!({"maxReplicas": 4, "targetLagPerReplica": 100});
    let old = with(|o| {
        autoscale(o, scaled.clone());
        o["spec"]["runner"]["sinkReplicas"] = json!(1);
    });
    // What `kubectl scale` (the scale subresource) does.
    let new = with(|o| {
        autoscale(o, scaled.clone());
        o["spec"]["runner"]["sinkReplicas"] = json!(3);
    });
    let failures = cel_failures(&new, Some(&old));
    assert!(
        failures
            .iter()
            .any(|f| f.contains("spec.runner.autoscale is set")),
        "{failures:?}"
    );
    assert!(validate_update(&typed(&old), &typed(&new)).is_err());

    // Without autoscale before, or after: allowed.
    let manual = with(|o| o["spec"]["runner"] = json!({"sinkReplicas": 1}));
    assert_eq!(cel_failures(&new, Some(&manual)), Vec::<String>::new());
    validate_update(&typed(&manual), &typed(&new)).unwrap();
    let dropped = with(|o| o["spec"]["runner"] = json!({"sinkReplicas": 3}));
    assert_eq!(cel_failures(&dropped, Some(&old)), Vec::<String>::new());
    validate_update(&typed(&old), &typed(&dropped)).unwrap();
}

#[test]
fn several_tables_pass_both_checks_and_the_first_stays_first() {
    let two: Value =
        serde_yaml::from_str(include_str!("../../examples/randomuser-by-email.yaml")).unwrap();
    assert_eq!(cel_failures(&two, None), Vec::<String>::new());
    rust_verdict(&two).unwrap();

    // Both forms at once, or neither: refused by both checks.
    let mut both = two.clone();
    both["spec"]["cassandra"]["table"] = two["spec"]["cassandra"]["tables"][0].clone();
    let mut neither = two.clone();
    neither["spec"]["cassandra"]
        .as_object_mut()
        .unwrap()
        .remove("tables");
    for (what, object) in [("both", &both), ("neither", &neither)] {
        let failures = cel_failures(object, None);
        assert!(
            failures
                .iter()
                .any(|f| f.contains("set table (one table) or tables")),
            "{what}: {failures:?}"
        );
        assert!(rust_verdict(object).is_err(), "{what}: Rust allowed it");
    }

    let typed = |v: &Value| {
        serde_json::from_value::<StreamPipeline>(v.clone())
            .unwrap()
            .spec
    };
    // From `table` to `tables`, the table first, and a table added: fine.
    let mut one = two.clone();
    one["spec"]["cassandra"]["table"] = two["spec"]["cassandra"]["tables"][0].clone();
    one["spec"]["cassandra"]
        .as_object_mut()
        .unwrap()
        .remove("tables");
    assert_eq!(cel_failures(&two, Some(&one)), Vec::<String>::new());
    validate_update(&typed(&one), &typed(&two)).unwrap();
    // Another table first: refused by both, from either form.
    let mut swapped = two.clone();
    swapped["spec"]["cassandra"]["tables"]
        .as_array_mut()
        .unwrap()
        .reverse();
    for old in [&one, &two] {
        let failures = cel_failures(&swapped, Some(old));
        assert!(
            failures
                .iter()
                .any(|f| f.contains("keys the records in Kafka")),
            "{failures:?}"
        );
        assert!(validate_update(&typed(old), &typed(&swapped)).is_err());
    }
    // A second table re-keyed: refused by both.
    let mut rekeyed = two.clone();
    rekeyed["spec"]["cassandra"]["tables"][1]["partitionKey"] = json!(["id"]);
    let failures = cel_failures(&rekeyed, Some(&two));
    assert!(
        failures
            .iter()
            .any(|f| f.contains("partition key cannot be changed")),
        "{failures:?}"
    );
    assert!(validate_update(&typed(&two), &typed(&rekeyed)).is_err());
}
