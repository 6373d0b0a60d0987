//! `spec.runner.pushTls` through the real operator and apiserver: a
//! `ClientCertificate` source without a client CA is a condition, not a
//! crash loop; a missing certificate Secret or client CA key is
//! `SecretNotFound` naming it; and once both exist, the ingest Deployment
//! mounts them read-only where the runner reads them, and the sink's does
//! not.

mod operator_common;

use k8s_openapi::api::apps::v1::Deployment;
use millrace_testsupport::{Deadline, poll_until};
use operator_common::{Operator, Scenario};
use serde_json::json;

#[tokio::test]
async fn push_tls_secrets_are_checked_then_mounted_and_client_certificates_need_a_ca()
-> anyhow::Result<()> {
    let s = Scenario::new("op-pushtls").await?;
    let op = Operator::start(&s.world, &s.ns.name, &[]).await?;
    let name = "randomuser";
    let mut sp = s.seed_pipeline(name)?;
    sp["spec"]["sources"].as_array_mut().expect("sources").push(
        json!({"name": "partners", "httpPush": {
            "path": "/v1/partners", "auth": {"type": "ClientCertificate"}
        }}),
    );
    sp["spec"]["runner"]["pushTls"] = json!({"certificateSecretRef": {"name": "push-cert"}});
    s.apply(&sp).await?;

    // No client CA: the spec cannot be honoured, and the condition says why.
    let (_, invalid) = s
        .wait_condition(name, "Ready", "False", Some("InvalidSpec"), 60)
        .await?;
    println!("no client CA: {}", invalid.message);
    assert!(
        invalid.message.contains(
            "auth type ClientCertificate needs spec.runner.pushTls with clientCaSecretRef"
        ),
        "{}",
        invalid.message
    );

    // A client CA named, neither Secret there yet.
    s.merge(
        name,
        json!({"spec": {"runner": {"pushTls": {
            "certificateSecretRef": {"name": "push-cert"},
            "clientCaSecretRef": {"name": "push-clients", "key": "bundle.pem"}
        }}}}),
    )
    .await?;
    let (_, missing) = s
        .wait_condition(name, "RunnerReady", "False", Some("SecretNotFound"), 90)
        .await?;
    println!("no certificate Secret: {}", missing.message);
    assert!(missing.message.contains("push-cert"), "{}", missing.message);

    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec![format!("{name}.{}.svc", s.ns.name)])?
        .self_signed(&key)?;
    s.create_secret(
        "push-cert",
        json!({"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}),
    )
    .await?;
    // The CA Secret without the key the spec names.
    s.create_secret("push-clients", json!({"ca.crt": cert.pem()}))
        .await?;
    let api = s.pipelines();
    let no_key = poll_until(
        "RunnerReady to name the missing key",
        Deadline::secs(90),
        || async {
            let sp = api.get(name).await?;
            Ok(operator_common::condition(&sp, "RunnerReady")
                .filter(|c| c.status == "False" && c.reason == "SecretNotFound")
                .filter(|c| c.message.contains("bundle.pem")))
        },
    )
    .await?;
    println!("no key bundle.pem: {}", no_key.message);
    assert!(
        no_key.message.contains("push-clients") && no_key.message.contains("bundle.pem"),
        "{}",
        no_key.message
    );

    // With the key where the spec says, the ingest Deployment mounts both.
    s.merge(
        name,
        json!({"spec": {"runner": {"pushTls": {"clientCaSecretRef": {"name": "push-clients", "key": "ca.crt"}}}}}),
    )
    .await?;
    let deployments = s.ns.api::<Deployment>();
    let ingest = poll_until(
        "the ingest Deployment with the TLS mounts",
        Deadline::secs(120),
        || async {
            let Some(d) = deployments.get_opt(&format!("{name}-ingest")).await? else {
                return Ok(None);
            };
            let mounts: Vec<(String, String)> = d
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .map(|p| p.containers[0].volume_mounts.clone().unwrap_or_default())
                .unwrap_or_default()
                .into_iter()
                .map(|m| (m.name, m.mount_path))
                .collect();
            Ok(mounts
                .iter()
                .any(|(n, _)| n == "push-tls-client-ca")
                .then_some((d, mounts)))
        },
    )
    .await?;
    let (deployment, mounts) = ingest;
    println!("ingest mounts: {mounts:?}");
    for (volume, path) in [
        (
            "push-tls-cert",
            "/var/run/secrets/millrace.io/push-tls/cert",
        ),
        (
            "push-tls-client-ca",
            "/var/run/secrets/millrace.io/push-tls/client-ca",
        ),
    ] {
        assert!(
            mounts.contains(&(volume.to_owned(), path.to_owned())),
            "{mounts:?}"
        );
    }
    let volumes = deployment
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.volumes)
        .unwrap_or_default();
    let secret_of = |volume: &str| {
        volumes
            .iter()
            .find(|v| v.name == volume)
            .and_then(|v| v.secret.as_ref())
            .map(|s| {
                (
                    s.secret_name.clone().unwrap_or_default(),
                    s.items
                        .iter()
                        .flatten()
                        .map(|i| (i.key.clone(), i.path.clone()))
                        .collect::<Vec<_>>(),
                )
            })
    };
    assert_eq!(
        secret_of("push-tls-cert"),
        Some((
            "push-cert".to_owned(),
            vec![
                ("tls.crt".to_owned(), "tls.crt".to_owned()),
                ("tls.key".to_owned(), "tls.key".to_owned())
            ]
        ))
    );
    assert_eq!(
        secret_of("push-tls-client-ca"),
        Some((
            "push-clients".to_owned(),
            vec![("ca.crt".to_owned(), "ca.crt".to_owned())]
        ))
    );
    // The same reconcile applies the sink's Deployment after the ingest's:
    // the ingest's can be seen a moment before the sink's exists.
    let sink = poll_until("the sink Deployment", Deadline::secs(60), || async {
        deployments
            .get_opt(&format!("{name}-sink"))
            .await
            .map_err(Into::into)
    })
    .await?;
    let sink_volumes: Vec<String> = sink
        .spec
        .and_then(|s| s.template.spec)
        .and_then(|p| p.volumes)
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    assert!(
        sink_volumes.iter().all(|v| !v.starts_with("push-tls")),
        "{sink_volumes:?}"
    );

    s.delete_pipeline(name, 90).await?;
    op.stop().await?;
    s.cleanup().await
}
