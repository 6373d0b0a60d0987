//! Checks of `spec.sources`: one kind per source, unique names and push
//! paths, and each pull source's URL, schedule and headers.

use std::collections::BTreeSet;

use super::accumulator::Problems;
use super::names::{
    is_dns_label, is_dns_name, is_header_name, is_http_url, is_secret_key, is_secret_name,
};
use super::problem::Problem;
use crate::json_pointer::JsonPointer;
use crate::schedule::Schedule;
use crate::spec::{HttpPullSource, PushAuthType, RunnerSpec, SourceSpec, limits};

pub(super) fn check_sources(v: &mut Problems, sources: &[SourceSpec]) {
    v.count("spec.sources", sources.len(), limits::SOURCES_MAX);
    let mut names = BTreeSet::new();
    let mut push_paths = BTreeSet::new();
    for (i, source) in sources.iter().enumerate() {
        let at = format!("spec.sources[{i}]");
        if !is_dns_label(&source.name, limits::SOURCE_NAME_MAX) {
            v.push(format!("{at}.name"), Problem::DnsLabel(source.name.clone()));
        }
        if !names.insert(source.name.as_str()) {
            v.push(
                format!("{at}.name"),
                Problem::DuplicateSource(source.name.clone()),
            );
        }
        let kinds = usize::from(source.http_pull.is_some())
            + usize::from(source.http_push.is_some())
            + usize::from(source.generator.is_some());
        if kinds != 1 {
            v.push(at.clone(), Problem::SourceKindCount(kinds));
        }
        if let Some(pull) = &source.http_pull {
            check_http_pull(v, pull, &format!("{at}.httpPull"));
        }
        if let Some(push) = &source.http_push {
            let field = format!("{at}.httpPush.path");
            let path_ok = push.path.len() <= 256
                && push.path.starts_with('/')
                && push
                    .path
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._~-".contains(&b));
            if !path_ok {
                v.push(field.clone(), Problem::PushPath(push.path.clone()));
            }
            if !push_paths.insert(push.path.as_str()) {
                v.push(field, Problem::DuplicatePushPath(push.path.clone()));
            }
            v.range(
                format!("{at}.httpPush.maxBodyBytes"),
                push.max_body_bytes,
                limits::MAX_BODY_BYTES,
            );
            if let Some(auth) = &push.auth {
                let field = format!("{at}.httpPush.auth.tokensSecretRef");
                match (&auth.type_, &auth.tokens_secret_ref) {
                    (PushAuthType::None | PushAuthType::ClientCertificate, Some(_)) => {
                        v.push(field, Problem::TokensWithoutAuthentication);
                    }
                    (_, Some(secret)) if !is_secret_name(&secret.name) => {
                        v.push(field + ".name", Problem::SecretName(secret.name.clone()));
                    }
                    _ => {}
                }
                if let Some(names) = &auth.allowed_dns_names {
                    let field = format!("{at}.httpPush.auth.allowedDnsNames");
                    if auth.type_ != PushAuthType::ClientCertificate {
                        v.push(field.clone(), Problem::AllowedNamesWithoutClientCertificate);
                    }
                    v.count(field.clone(), names.len(), limits::ALLOWED_DNS_NAMES_MAX);
                    for (j, name) in names.iter().enumerate() {
                        if !is_dns_name(name) {
                            v.push(format!("{field}[{j}]"), Problem::DnsName(name.clone()));
                        }
                    }
                }
            }
        }
        if let Some(generator) = &source.generator {
            v.range(
                format!("{at}.generator.recordsPerSecond"),
                generator.records_per_second.into(),
                limits::RECORDS_PER_SECOND,
            );
            if let Some(limit) = generator.limit {
                v.range(format!("{at}.generator.limit"), limit, (1, i64::MAX));
            }
        }
    }
}

/// `spec.runner.pushTls` against the push sources: it is read only with
/// one, and a `ClientCertificate` source needs its client CA.
pub(super) fn check_push_tls(v: &mut Problems, sources: &[SourceSpec], runner: &RunnerSpec) {
    let client_ca = runner
        .push_tls
        .as_ref()
        .is_some_and(|t| t.client_ca_secret_ref.is_some());
    let mut pushes = false;
    for (i, source) in sources.iter().enumerate() {
        let Some(push) = &source.http_push else {
            continue;
        };
        pushes = true;
        if push.auth_type() == PushAuthType::ClientCertificate && !client_ca {
            v.push(
                format!("spec.sources[{i}].httpPush.auth.type"),
                Problem::ClientCertificateWithoutCa,
            );
        }
    }
    let Some(tls) = &runner.push_tls else {
        return;
    };
    if !pushes {
        v.push("spec.runner.pushTls", Problem::PushTlsWithoutPush);
    }
    let at = "spec.runner.pushTls";
    if !is_secret_name(&tls.certificate_secret_ref.name) {
        v.push(
            format!("{at}.certificateSecretRef.name"),
            Problem::SecretName(tls.certificate_secret_ref.name.clone()),
        );
    }
    if let Some(ca) = &tls.client_ca_secret_ref {
        if !is_secret_name(&ca.name) {
            v.push(
                format!("{at}.clientCaSecretRef.name"),
                Problem::SecretName(ca.name.clone()),
            );
        }
        if !is_secret_key(&ca.key) {
            v.push(
                format!("{at}.clientCaSecretRef.key"),
                Problem::SecretKey(ca.key.clone()),
            );
        }
    }
}

fn check_http_pull(v: &mut Problems, pull: &HttpPullSource, at: &str) {
    // The URL as sent: window variables (spaces allowed inside their
    // braces) replaced by times.
    let sent = crate::pull_paging::UrlTemplate::parse(&pull.url).map_or_else(
        |_| pull.url.clone(),
        |t| {
            let epoch = jiff::Timestamp::UNIX_EPOCH;
            t.render(
                crate::pull_paging::Window {
                    start: epoch,
                    end: epoch,
                },
                crate::spec::TimeFormat::Rfc3339,
            )
        },
    );
    if !is_http_url(&sent) {
        v.push(format!("{at}.url"), Problem::Url(pull.url.clone()));
    }
    if pull.schedule.len() > limits::SCHEDULE_MAX {
        v.push(
            format!("{at}.schedule"),
            Problem::TooLong {
                max: limits::SCHEDULE_MAX,
            },
        );
    } else if let Err(e) = Schedule::parse(&pull.schedule) {
        v.push(format!("{at}.schedule"), e.into());
    }
    if !pull.records_path.is_empty()
        && let Err(e) = JsonPointer::parse(&pull.records_path)
    {
        v.push(format!("{at}.recordsPath"), e.into());
    }
    v.count(
        format!("{at}.headers"),
        pull.headers.len(),
        limits::HEADERS_MAX,
    );
    for (name, value) in &pull.headers {
        if !is_header_name(name) {
            v.push(format!("{at}.headers"), Problem::HeaderName(name.clone()));
        }
        // A line break in a value would let the spec write its own headers
        // (or a request) into the HTTP stream.
        if value.chars().any(|c| c.is_control() && c != '\t') {
            v.push(format!("{at}.headers"), Problem::HeaderValue(name.clone()));
        }
    }
    if let Some(secret) = &pull.headers_from_secret
        && !is_secret_name(&secret.name)
    {
        v.push(
            format!("{at}.headersFromSecret.name"),
            Problem::SecretName(secret.name.clone()),
        );
    }
    v.range(
        format!("{at}.timeoutSeconds"),
        pull.timeout_seconds.into(),
        limits::TIMEOUT_SECONDS,
    );
    v.range(
        format!("{at}.maxRetries"),
        pull.max_retries.into(),
        limits::MAX_RETRIES,
    );
    v.range(
        format!("{at}.maxResponseBytes"),
        pull.max_response_bytes,
        limits::MAX_RESPONSE_BYTES,
    );
    if let Some(p) = &pull.pagination {
        v.range(
            format!("{at}.pagination.maxPages"),
            p.max_pages.into(),
            limits::MAX_PAGES,
        );
    }
    // "Not in the future" is judged now: a backfill valid when written stays
    // valid, as time only moves its range further into the past.
    for (field, problem) in crate::pull_paging::check_pull(pull, jiff::Timestamp::now()) {
        v.push(format!("{at}.{field}"), problem.into());
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::schedule::ScheduleError;
    use crate::spec::HttpPushSource;
    use crate::validate::Problem;
    use crate::validate::fixture::{problems, spec};

    #[test]
    fn sources_are_checked() {
        let mut s = spec();
        s.sources[0].http_push = Some(HttpPushSource::default());
        s.sources[2].name = "synthetic".into();
        let pull = s.sources[1].http_pull.as_mut().unwrap();
        pull.url = "file:///etc/passwd".into();
        pull.schedule = "*/1 * * *".into();
        pull.headers
            .insert("Authorization".into(), "Bearer x\r\nHost: evil".into());
        let found: Vec<Problem> = problems(&s).into_iter().map(|p| p.problem).collect();
        assert!(found.contains(&Problem::SourceKindCount(2)));
        assert!(found.contains(&Problem::DuplicateSource("synthetic".into())));
        assert!(found.contains(&Problem::DuplicatePushPath("/v1/records".into())));
        assert!(found.contains(&Problem::Url("file:///etc/passwd".into())));
        assert!(
            found
                .iter()
                .any(|p| matches!(p, Problem::Schedule(ScheduleError::Unrecognised(_))))
        );
        assert!(found.contains(&Problem::HeaderValue("Authorization".into())));
    }

    #[test]
    fn client_certificates_need_the_push_tls_client_ca() {
        use crate::spec::{CaSecretRef, PushAuth, PushAuthType, PushTlsSpec, SecretReference};
        let mut s = spec();
        let auth = |type_, names: Option<Vec<&str>>| PushAuth {
            type_,
            tokens_secret_ref: None,
            allowed_dns_names: names.map(|n| n.into_iter().map(String::from).collect()),
        };
        let push = s.sources[2].http_push.as_mut().unwrap();
        push.auth = Some(auth(
            PushAuthType::ClientCertificate,
            Some(vec!["a.example"]),
        ));
        let found = problems(&s);
        assert_eq!(
            found
                .iter()
                .map(|p| (p.field.as_str(), &p.problem))
                .collect::<Vec<_>>(),
            [(
                "spec.sources[2].httpPush.auth.type",
                &Problem::ClientCertificateWithoutCa
            )]
        );
        let tls = |ca: Option<&str>| PushTlsSpec {
            certificate_secret_ref: SecretReference {
                name: "push-cert".into(),
            },
            client_ca_secret_ref: ca.map(CaSecretRef::named),
        };
        s.runner.push_tls = Some(tls(None));
        assert_eq!(
            problems(&s)[0].problem,
            Problem::ClientCertificateWithoutCa,
            "a certificate without a client CA asks for no client certificate"
        );
        s.runner.push_tls = Some(tls(Some("clients-ca")));
        assert!(problems(&s).is_empty(), "{:?}", problems(&s));

        let push = s.sources[2].http_push.as_mut().unwrap();
        push.auth = Some(auth(PushAuthType::BearerToken, Some(vec!["not a name"])));
        let found: Vec<Problem> = problems(&s).into_iter().map(|p| p.problem).collect();
        assert_eq!(
            found,
            [
                Problem::AllowedNamesWithoutClientCertificate,
                Problem::DnsName("not a name".into())
            ]
        );

        s.sources[2].http_push = None;
        s.sources[2].generator = Some(crate::spec::GeneratorSource::default());
        let found = problems(&s);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(
            (found[0].field.as_str(), &found[0].problem),
            ("spec.runner.pushTls", &Problem::PushTlsWithoutPush)
        );
    }

    #[test]
    fn the_response_limit_is_bounded() {
        for (bytes, ok) in [
            (0, false),
            (1023, false),
            (1024, true),
            (16 * 1024 * 1024, true),
            (128 * 1024 * 1024, true),
            (128 * 1024 * 1024 + 1, false),
        ] {
            let mut s = spec();
            s.sources[1].http_pull.as_mut().unwrap().max_response_bytes = bytes;
            let found = problems(&s);
            let refused = found
                .iter()
                .any(|p| p.field == "spec.sources[1].httpPull.maxResponseBytes");
            assert_eq!(!refused, ok, "{bytes}: {found:?}");
        }
    }
}
