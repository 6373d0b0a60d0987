//! The runner's identity: `NAME-runner` ServiceAccount, and a Role that
//! allows only the pull Leases: get and update of its own Leases
//! `NAME-pull-SOURCE` (by name), and create (which RBAC cannot limit by
//! name). A pipeline without pull sources gets a Role without rules.

use k8s_openapi::api::core::v1::ServiceAccount;
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

use super::Pipeline;

pub fn service_account(p: &Pipeline<'_>) -> ServiceAccount {
    ServiceAccount {
        metadata: p.meta(p.runner_name(), None),
        automount_service_account_token: Some(true),
        ..ServiceAccount::default()
    }
}

pub fn role(p: &Pipeline<'_>) -> Role {
    let leases: Vec<String> =
        p.sp.spec
            .sources
            .iter()
            .filter(|s| s.http_pull.is_some())
            .map(|s| millrace_api::pull_lease_name(&p.name, &s.name))
            .collect();
    let rule = |verbs: &[&str], names: Option<Vec<String>>| PolicyRule {
        api_groups: Some(vec!["coordination.k8s.io".to_owned()]),
        resources: Some(vec!["leases".to_owned()]),
        verbs: verbs.iter().map(|v| (*v).to_owned()).collect(),
        resource_names: names,
        ..PolicyRule::default()
    };
    let rules = if leases.is_empty() {
        Vec::new()
    } else {
        vec![
            rule(&["get", "update"], Some(leases)),
            rule(&["create"], None),
        ]
    };
    Role {
        metadata: p.meta(p.runner_name(), None),
        rules: Some(rules),
    }
}

pub fn role_binding(p: &Pipeline<'_>) -> RoleBinding {
    RoleBinding {
        metadata: p.meta(p.runner_name(), None),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".to_owned()),
            kind: "Role".to_owned(),
            name: p.runner_name(),
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".to_owned(),
            name: p.runner_name(),
            namespace: Some(p.namespace.clone()),
            ..Subject::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;

    #[test]
    fn the_runner_may_only_use_its_own_leases() {
        let mut sp = fixtures::seed();
        let p = Pipeline::new(&sp).expect("pipeline");
        assert_eq!(role(&p).rules, Some(vec![]), "no pull source, no rights");
        sp.spec.sources.push(
            serde_json::from_value(serde_json::json!({
                "name": "api",
                "httpPull": {"url": "https://example.org/api", "schedule": "*/5 * * * *"},
            }))
            .expect("source"),
        );
        let p = Pipeline::new(&sp).expect("pipeline");
        let rules = role(&p).rules.expect("rules");
        assert_eq!(rules.len(), 2);
        for r in &rules {
            assert_eq!(r.resources.as_deref(), Some(&["leases".to_owned()][..]));
        }
        assert_eq!(rules[0].verbs, ["get", "update"]);
        assert_eq!(
            rules[0].resource_names.as_deref(),
            Some(&["randomuser-pull-api".to_owned()][..])
        );
        assert_eq!(rules[1].verbs, ["create"]);
        let rb = role_binding(&p);
        assert_eq!(rb.role_ref.name, "randomuser-runner");
        assert_eq!(
            rb.subjects.expect("subjects")[0].namespace.as_deref(),
            Some("data")
        );
    }
}
