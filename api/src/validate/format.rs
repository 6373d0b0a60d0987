//! Checks of `spec.format`: an Avro format has a registry with a URL and a
//! well-formed Secret, and no source that would produce JSON onto its topic.

use super::accumulator::Problems;
use super::names::is_http_url;
use super::problem::Problem;
use crate::spec::{FormatType, StreamPipelineSpec};

pub(super) fn check_format(v: &mut Problems, spec: &StreamPipelineSpec) {
    let Some(format) = &spec.format else {
        return;
    };
    match (format.type_, &format.schema_registry) {
        (FormatType::Avro, None) => {
            v.push("spec.format.schemaRegistry", Problem::AvroWithoutRegistry)
        }
        (FormatType::Json, Some(_)) => {
            v.push("spec.format.schemaRegistry", Problem::RegistryWithoutAvro);
        }
        _ => {}
    }
    if format.type_ == FormatType::Avro && !spec.sources.is_empty() {
        v.push("spec.sources", Problem::SourcesWithAvro);
    }
    if format.type_ == FormatType::Avro {
        for (i, table) in spec.cassandra.tables().iter().enumerate() {
            let at = spec.cassandra.table_path(i);
            if table.write_time.is_some() {
                v.push(format!("{at}.writeTime"), Problem::WriteTimeWithAvro);
            }
            if table.deletes.as_ref().is_some_and(|d| d.key_only) {
                v.push(format!("{at}.deletes.keyOnly"), Problem::KeyOnlyWithAvro);
            }
        }
    }
    let Some(registry) = &format.schema_registry else {
        return;
    };
    let at = "spec.format.schemaRegistry";
    if !is_http_url(&registry.url) {
        v.push(format!("{at}.url"), Problem::Url(registry.url.clone()));
    }
    if let Some(creds) = &registry.credentials_secret_ref {
        v.login_secret(&format!("{at}.credentialsSecretRef"), creds);
    }
    if let Some(tls) = &registry.tls {
        if !registry.url.starts_with("https://") {
            v.push(format!("{at}.tls"), Problem::RegistryTlsWithoutHttps);
        }
        v.ca_secret(&format!("{at}.tls.caSecretRef"), &tls.ca_secret_ref);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::super::fixture::{problems, spec};
    use super::*;
    use crate::spec::{FormatSpec, RegistryCredentials, SchemaRegistrySpec};

    fn avro(url: &str) -> FormatSpec {
        FormatSpec {
            type_: FormatType::Avro,
            schema_registry: Some(SchemaRegistrySpec {
                url: url.into(),
                credentials_secret_ref: Some(RegistryCredentials {
                    name: "sr".into(),
                    username_key: "username".into(),
                    password_key: "password".into(),
                }),
                tls: None,
            }),
        }
    }

    #[test]
    fn an_avro_pipeline_without_sources_passes() {
        let mut s = spec();
        s.sources.clear();
        s.format = Some(avro("http://registry:8080/apis/ccompat/v7"));
        assert_eq!(problems(&s), vec![]);
        assert!(s.avro_registry().is_some());
    }

    #[test]
    fn avro_with_json_sources_a_bad_url_or_no_registry_is_refused() {
        let mut s = spec();
        s.format = Some(avro("ftp://registry"));
        let found = problems(&s);
        assert!(
            found.iter().any(|p| p.field == "spec.sources"
                && p.problem == Problem::SourcesWithAvro
                && p.to_string().contains("produce JSON")),
            "{found:?}"
        );
        assert!(
            found
                .iter()
                .any(|p| p.field == "spec.format.schemaRegistry.url"),
            "{found:?}"
        );

        let mut s = spec();
        s.sources.clear();
        s.format = Some(FormatSpec {
            type_: FormatType::Avro,
            schema_registry: None,
        });
        assert_eq!(problems(&s)[0].problem, Problem::AvroWithoutRegistry);

        // The consumer reads a record's write time before decoding Avro.
        let mut s = spec();
        s.sources.clear();
        s.format = Some(avro("http://registry:8080"));
        s.cassandra.tables_mut()[0].write_time = Some(crate::spec::WriteTimeSpec {
            from: "/updatedAt".into(),
            unit: crate::spec::EpochUnit::Seconds,
        });
        let found = problems(&s);
        assert!(
            found
                .iter()
                .any(|p| p.field == "spec.cassandra.table.writeTime"
                    && p.problem == Problem::WriteTimeWithAvro),
            "{found:?}"
        );

        // Every Avro record has every field: none is key-only.
        s.cassandra.tables_mut()[0].write_time = None;
        s.cassandra.tables_mut()[0].deletes = Some(crate::spec::DeletesSpec {
            key_only: true,
            ..Default::default()
        });
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.field == "spec.cassandra.table.deletes.keyOnly"
                    && p.problem == Problem::KeyOnlyWithAvro)
        );

        let mut s = spec();
        let mut json = avro("http://registry:8080");
        json.type_ = FormatType::Json;
        s.format = Some(json);
        assert_eq!(problems(&s)[0].problem, Problem::RegistryWithoutAvro);
        assert!(s.avro_registry().is_none());

        let mut s = spec();
        s.sources.clear();
        let mut bad = avro("http://registry:8080");
        if let Some(r) = bad.schema_registry.as_mut() {
            r.credentials_secret_ref = Some(RegistryCredentials {
                name: "Bad_Name".into(),
                username_key: "a/b".into(),
                password_key: "password".into(),
            });
        }
        s.format = Some(bad);
        let fields: Vec<String> = problems(&s).into_iter().map(|p| p.field).collect();
        assert_eq!(
            fields,
            [
                "spec.format.schemaRegistry.credentialsSecretRef.name",
                "spec.format.schemaRegistry.credentialsSecretRef.usernameKey"
            ]
        );
    }

    #[test]
    fn a_registry_ca_needs_https_and_a_well_formed_secret() {
        let mut s = spec();
        s.sources.clear();
        let mut f = avro("https://registry.example:8443/apis/ccompat/v7");
        if let Some(r) = f.schema_registry.as_mut() {
            r.tls = Some(crate::spec::RegistryTls {
                ca_secret_ref: crate::spec::CaSecretRef::named("registry-ca"),
            });
        }
        s.format = Some(f.clone());
        assert_eq!(problems(&s), vec![]);

        if let Some(r) = f.schema_registry.as_mut() {
            r.url = "http://registry:8080".into();
            if let Some(tls) = r.tls.as_mut() {
                tls.ca_secret_ref.key = "a/b".into();
            }
        }
        s.format = Some(f);
        let found: Vec<(String, Problem)> = problems(&s)
            .into_iter()
            .map(|p| (p.field, p.problem))
            .collect();
        assert_eq!(
            found,
            [
                (
                    "spec.format.schemaRegistry.tls".to_owned(),
                    Problem::RegistryTlsWithoutHttps
                ),
                (
                    "spec.format.schemaRegistry.tls.caSecretRef.key".to_owned(),
                    Problem::SecretKey("a/b".into())
                ),
            ]
        );
    }

    #[test]
    fn the_format_reads_as_the_design_spells_it() {
        let f: FormatSpec = serde_yaml::from_str(
            "{type: avro, schemaRegistry: {url: 'http://registry:8080/apis/ccompat/v7', credentialsSecretRef: {name: sr}}}",
        )
        .unwrap();
        assert_eq!(f, avro("http://registry:8080/apis/ccompat/v7"));
        let d: FormatSpec = serde_yaml::from_str("{}").unwrap();
        assert_eq!(d.type_, FormatType::Json);
    }
}
