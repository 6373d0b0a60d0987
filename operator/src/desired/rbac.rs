//! The runner's identity: `NAME-runner` ServiceAccount, and a Role that
//! allows only the pull Lease (coordination.k8s.io leases: get, create,
//! update).

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
    Role {
        metadata: p.meta(p.runner_name(), None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec!["coordination.k8s.io".to_owned()]),
            resources: Some(vec!["leases".to_owned()]),
            verbs: vec!["get".to_owned(), "create".to_owned(), "update".to_owned()],
            ..PolicyRule::default()
        }]),
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
    fn the_runner_may_only_use_leases() {
        let sp = fixtures::seed();
        let p = Pipeline::new(&sp).expect("pipeline");
        let rules = role(&p).rules.expect("rules");
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0].resources.as_deref(),
            Some(&["leases".to_owned()][..])
        );
        assert_eq!(rules[0].verbs, ["get", "create", "update"]);
        let rb = role_binding(&p);
        assert_eq!(rb.role_ref.name, "randomuser-runner");
        assert_eq!(
            rb.subjects.expect("subjects")[0].namespace.as_deref(),
            Some("data")
        );
    }
}
