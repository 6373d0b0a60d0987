//! The test harness itself, where it keeps the promises every other test
//! relies on: against the world's apiserver or a kind cluster alike.

use k8s_openapi::api::core::v1::Namespace;
use kube::api::Api;
use millrace_testsupport::{Deadline, TestNamespace, World, poll_until};

/// A test that fails returns its error while its runtime shuts down; the
/// namespace it made must still go, or every failed run leaves pipelines
/// and Pods behind on a cluster that is reused.
#[test]
fn a_failed_tests_namespace_is_deleted() -> anyhow::Result<()> {
    let world = World::discover()?;
    let failed = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut made = None;
    let outcome: anyhow::Result<()> = failed.block_on(async {
        let client = world.kube_client().await?;
        let ns = TestNamespace::create(&client, "harness-failed").await?;
        made = Some(ns.name.clone());
        anyhow::bail!("the test failed")
    });
    assert!(outcome.is_err());
    drop(failed);
    let name = made.expect("the namespace was made");

    let check = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    check.block_on(async {
        let namespaces: Api<Namespace> = Api::all(world.kube_client().await?);
        poll_until(
            &format!("namespace {name} to be deleted"),
            Deadline::secs(30),
            || async {
                Ok(match namespaces.get_opt(&name).await? {
                    None => Some(()),
                    Some(ns) => ns.metadata.deletion_timestamp.map(|_| ()),
                })
            },
        )
        .await
    })
}
