//! What the chart lets the operator do, asked of the real apiserver with
//! `kubectl auth can-i --as=system:serviceaccount:…`: only what it needs.

mod operator_common;

use std::process::Command;

use anyhow::Context;
use millrace_testsupport::tools::helm;
use millrace_testsupport::{TestNamespace, World, unique_name};
use operator_common::install_crd;

struct Release<'a> {
    world: &'a World,
    name: String,
    namespace: String,
}

impl Release<'_> {
    fn helm(&self, args: &[&str]) -> anyhow::Result<String> {
        helm(self.world, args)
    }

    /// `kubectl auth can-i VERB RESOURCE -n NS --as=<the operator's ServiceAccount>`
    fn can_i(&self, verb: &str, resource: &str, ns: Option<&str>) -> anyhow::Result<bool> {
        let kubeconfig = self.world.kubeconfig.clone().context("KUBECONFIG")?;
        let who = format!("system:serviceaccount:{}:{}", self.namespace, self.name);
        let mut cmd = Command::new(self.world.tool("kubectl"));
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["auth", "can-i", verb, resource, "--as", &who]);
        match ns {
            Some(ns) => cmd.args(["-n", ns]),
            None => cmd.arg("--all-namespaces"),
        };
        let out = cmd.output()?;
        let answer = String::from_utf8_lossy(&out.stdout).trim().to_string();
        anyhow::ensure!(
            answer == "yes" || answer == "no",
            "can-i {verb} {resource}: {answer} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(answer == "yes")
    }
}

/// (verb, resource, allowed) for the operator; checked in the namespace the
/// operator watches.
const OPERATOR_RIGHTS: &[(&str, &str, bool)] = &[
    ("watch", "streampipelines.millrace.io", true),
    ("patch", "streampipelines.millrace.io/status", true),
    ("update", "streampipelines.millrace.io/finalizers", true),
    ("create", "deployments.apps", true),
    ("patch", "services", true),
    ("create", "configmaps", true),
    ("create", "roles.rbac.authorization.k8s.io", true),
    ("create", "networkpolicies.networking.k8s.io", true),
    ("watch", "networkpolicies.networking.k8s.io", true),
    ("get", "secrets", true),
    // The push tokens Secret of a push source that names none.
    ("create", "secrets", true),
    ("create", "events.events.k8s.io", true),
    ("update", "leases.coordination.k8s.io", true),
    ("create", "streampipelines.millrace.io", false),
    ("delete", "streampipelines.millrace.io", false),
    ("list", "secrets", false),
    ("watch", "secrets", false),
    ("update", "secrets", false),
    ("delete", "secrets", false),
    ("create", "pods", false),
    ("create", "pods/exec", false),
    ("delete", "namespaces", false),
    ("create", "clusterroles.rbac.authorization.k8s.io", false),
    (
        "create",
        "clusterrolebindings.rbac.authorization.k8s.io",
        false,
    ),
    ("escalate", "roles.rbac.authorization.k8s.io", false),
    ("bind", "clusterroles.rbac.authorization.k8s.io", false),
    (
        "create",
        "customresourcedefinitions.apiextensions.k8s.io",
        false,
    ),
    ("get", "nodes", false),
    ("create", "statefulsets.apps", false),
];

fn check_rights(release: &Release<'_>, ns: &str) -> anyhow::Result<Vec<String>> {
    let mut wrong = Vec::new();
    for (verb, resource, allowed) in OPERATOR_RIGHTS {
        let got = release.can_i(verb, resource, Some(ns))?;
        println!(
            "{verb:>9} {resource:<48} {}",
            if got { "yes" } else { "no" }
        );
        if got != *allowed {
            wrong.push(format!(
                "{verb} {resource}: expected {}, got {}",
                allowed, got
            ));
        }
    }
    Ok(wrong)
}

#[tokio::test]
async fn the_operator_gets_least_privilege_cluster_wide() -> anyhow::Result<()> {
    let world = World::discover()?;
    let client = world.kube_client().await?;
    // kubectl maps `streampipelines.millrace.io` to its API group through
    // discovery: without the CRD it asks about another resource altogether.
    install_crd(&client).await?;
    let ns = TestNamespace::create(&client, "rbac").await?;
    let release = Release {
        world: &world,
        name: unique_name("millrace"),
        namespace: ns.name.clone(),
    };
    // No operator Pod is needed to ask what its ServiceAccount may do.
    release.helm(&[
        "install",
        &release.name,
        "charts/millrace",
        "-n",
        &ns.name,
        "--set",
        "replicaCount=0",
        "--skip-crds",
    ])?;
    let other = TestNamespace::create(&client, "rbac-other").await?;
    let wrong = check_rights(&release, &other.name)?;
    // Cluster-wide, it may not read Secrets everywhere in a list either.
    assert!(!release.can_i("list", "secrets", None)?);
    release.helm(&["uninstall", &release.name, "-n", &ns.name, "--wait"])?;
    assert!(
        wrong.is_empty(),
        "operator rights differ from the intended table:\n{}",
        wrong.join("\n")
    );
    other.cleanup().await?;
    ns.cleanup().await
}

#[tokio::test]
async fn a_namespaced_operator_has_no_rights_elsewhere() -> anyhow::Result<()> {
    let world = World::discover()?;
    let client = world.kube_client().await?;
    // kubectl maps `streampipelines.millrace.io` to its API group through
    // discovery: without the CRD it asks about another resource altogether.
    install_crd(&client).await?;
    let ns = TestNamespace::create(&client, "rbac-ns").await?;
    let watched = TestNamespace::create(&client, "rbac-watched").await?;
    let elsewhere = TestNamespace::create(&client, "rbac-elsewhere").await?;
    let release = Release {
        world: &world,
        name: unique_name("millrace"),
        namespace: ns.name.clone(),
    };
    let set = format!("watchNamespace={}", watched.name);
    release.helm(&[
        "install",
        &release.name,
        "charts/millrace",
        "-n",
        &ns.name,
        "--set",
        "replicaCount=0",
        "--set",
        &set,
        "--skip-crds",
    ])?;
    let wrong = check_rights(&release, &watched.name)?;
    let leaks: Vec<&str> = [
        "deployments.apps",
        "secrets",
        "configmaps",
        "streampipelines.millrace.io",
    ]
    .into_iter()
    .filter(|r| {
        release
            .can_i("get", r, Some(&elsewhere.name))
            .unwrap_or(true)
    })
    .collect();
    // Its leader-election Lease stays reachable in its own namespace, and
    // so do the ConfigMaps that record who owns each topic.
    let lease = release.can_i("update", "leases.coordination.k8s.io", Some(&ns.name))?;
    let claims = release.can_i("create", "configmaps", Some(&ns.name))?;
    release.helm(&["uninstall", &release.name, "-n", &ns.name, "--wait"])?;
    assert!(
        wrong.is_empty(),
        "operator rights differ:\n{}",
        wrong.join("\n")
    );
    assert!(
        leaks.is_empty(),
        "a namespaced operator can read {leaks:?} in another namespace"
    );
    assert!(
        lease,
        "the leader-election Lease must be writable in the release namespace"
    );
    assert!(
        claims,
        "the topic ownership ConfigMaps must be writable in the release namespace"
    );
    for n in [elsewhere, watched, ns] {
        n.cleanup().await?;
    }
    Ok(())
}
