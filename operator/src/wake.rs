//! Which changes of an owned object call for a reconcile of its pipeline.
//!
//! Every write to an owned object comes back through its watch: the
//! operator's own creates and applies, the controller-manager's revision
//! annotation and status updates of each Deployment. Waking the pipeline
//! for each made a new pipeline cost five or more reconciles. A change
//! wakes it only when the reconcile could act on it:
//!
//! - the object is deleted (it is made again);
//! - a hand (a manager other than the operator and the controller-manager,
//!   outside the status subresource) changed the fields it holds: drift, to
//!   be undone;
//! - a Deployment's rollout moved (its status counts or observed
//!   generation): `RunnerReady` may change.
//!
//! An object first seen by the watch does not wake: it is one the operator
//! has just created. One first seen in a list does (the watch may have
//! missed its changes). What is missed here (a label edited without a
//! managed-fields entry, say) is still found by the next resync.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Resource;
use kube::runtime::watcher;

use crate::desired::drift;

/// An owned kind, and what of its status moves a rollout.
pub trait Wakes: Resource {
    fn rollout(&self) -> u64 {
        0
    }
}

impl Wakes for Deployment {
    fn rollout(&self) -> u64 {
        let s = self.status.clone().unwrap_or_default();
        hash(&(
            s.observed_generation,
            s.replicas,
            s.updated_replicas,
            s.ready_replicas,
            s.available_replicas,
            s.unavailable_replicas,
        ))
    }
}

macro_rules! no_rollout {
    ($($kind:ty),* $(,)?) => { $(impl Wakes for $kind {})* };
}

no_rollout!(
    k8s_openapi::api::core::v1::Service,
    k8s_openapi::api::core::v1::ConfigMap,
    k8s_openapi::api::core::v1::ServiceAccount,
    k8s_openapi::api::rbac::v1::Role,
    k8s_openapi::api::rbac::v1::RoleBinding,
    k8s_openapi::api::networking::v1::NetworkPolicy,
);

fn hash<T: Hash + ?Sized>(t: &T) -> u64 {
    let mut h = DefaultHasher::new();
    t.hash(&mut h);
    h.finish()
}

/// What of `obj` wakes its pipeline when it changes: the fields held by
/// hands, and the rollout.
pub fn fingerprint<K: Wakes>(obj: &K) -> u64 {
    let mut hands: Vec<(&str, &str, String)> = obj
        .meta()
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| drift::by_hand(m))
        .map(|m| {
            (
                m.manager.as_deref().unwrap_or_default(),
                m.subresource.as_deref().unwrap_or_default(),
                m.fields_v1
                    .as_ref()
                    .map(|f| f.0.to_string())
                    .unwrap_or_default(),
            )
        })
        .collect();
    hands.sort();
    hash(&(hands, obj.rollout()))
}

type Key = (Option<String>, Option<String>, Option<String>);

fn key<K: Resource>(obj: &K) -> Key {
    let m = obj.meta();
    (m.namespace.clone(), m.name.clone(), m.uid.clone())
}

/// The fingerprints last seen, per object.
#[derive(Default)]
pub struct Filter {
    seen: HashMap<Key, u64>,
}

impl Filter {
    /// Whether one watch event wakes the pipeline that owns its object.
    /// It reads every manager's managed fields, of which the caches then
    /// keep only the operator's.
    pub fn wakes<K: Wakes>(&mut self, event: &watcher::Event<K>) -> bool {
        match event {
            watcher::Event::Delete(obj) => {
                self.seen.remove(&key(obj));
                true
            }
            watcher::Event::Apply(obj) => {
                let now = fingerprint(obj);
                matches!(self.seen.insert(key(obj), now), Some(before) if before != now)
            }
            // A (re)list: what the watch missed meanwhile, or an object
            // never seen, may have moved; the first list wakes pipelines
            // that their own list reconciles anyway.
            watcher::Event::InitApply(obj) => {
                let now = fingerprint(obj);
                !matches!(self.seen.insert(key(obj), now), Some(before) if before == now)
            }
            watcher::Event::Init | watcher::Event::InitDone => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::FIELD_MANAGER;
    use crate::desired::drift::CONTROLLER_MANAGER;
    use k8s_openapi::api::apps::v1::DeploymentStatus;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        FieldsV1, ManagedFieldsEntry, ObjectMeta,
    };

    fn entry(
        manager: &str,
        subresource: Option<&str>,
        fields: serde_json::Value,
    ) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.to_owned()),
            operation: Some("Apply".to_owned()),
            subresource: subresource.map(str::to_owned),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    fn config_map(managers: Vec<ManagedFieldsEntry>, data: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                namespace: Some("ns".to_owned()),
                name: Some("p-runner".to_owned()),
                uid: Some("u1".to_owned()),
                managed_fields: Some(managers),
                ..ObjectMeta::default()
            },
            data: Some([("pipeline.json".to_owned(), data.to_owned())].into()),
            ..ConfigMap::default()
        }
    }

    fn ours() -> ManagedFieldsEntry {
        entry(FIELD_MANAGER, None, serde_json::json!({"f:data": {}}))
    }

    #[test]
    fn the_operators_own_writes_do_not_wake() {
        let mut f = Filter::default();
        let created = config_map(vec![ours()], "a");
        assert!(!f.wakes(&watcher::Event::Apply(created)), "first sight");
        let applied_again = config_map(vec![ours()], "b");
        assert!(!f.wakes(&watcher::Event::Apply(applied_again)));
    }

    #[test]
    fn a_hand_edit_wakes_once_and_a_deletion_always() {
        let mut f = Filter::default();
        f.wakes(&watcher::Event::Apply(config_map(vec![ours()], "a")));
        let edit = entry(
            "kubectl-edit",
            None,
            serde_json::json!({"f:data": {"f:pipeline.json": {}}}),
        );
        let edited = config_map(vec![ours(), edit.clone()], "x");
        assert!(f.wakes(&watcher::Event::Apply(edited.clone())));
        // The same hands again (a label the operator does not set, say).
        assert!(!f.wakes(&watcher::Event::Apply(edited.clone())));
        assert!(f.wakes(&watcher::Event::Delete(edited)));
    }

    fn deployment(
        managers: Vec<ManagedFieldsEntry>,
        status: Option<DeploymentStatus>,
    ) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                namespace: Some("ns".to_owned()),
                name: Some("p-sink".to_owned()),
                uid: Some("u2".to_owned()),
                generation: Some(1),
                managed_fields: Some(managers),
                ..ObjectMeta::default()
            },
            status,
            ..Deployment::default()
        }
    }

    #[test]
    fn a_deployment_wakes_when_its_rollout_moves_not_for_the_controller_managers_annotation() {
        let mut f = Filter::default();
        let created = deployment(vec![ours()], None);
        assert!(!f.wakes(&watcher::Event::Apply(created)));
        let revision = entry(
            CONTROLLER_MANAGER,
            None,
            serde_json::json!({"f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}}),
        );
        let annotated = deployment(vec![ours(), revision.clone()], None);
        assert!(!f.wakes(&watcher::Event::Apply(annotated)));
        let rolled = DeploymentStatus {
            observed_generation: Some(1),
            ..DeploymentStatus::default()
        };
        let status_entry = entry(
            CONTROLLER_MANAGER,
            Some("status"),
            serde_json::json!({"f:status": {}}),
        );
        let observed = deployment(
            vec![ours(), revision.clone(), status_entry.clone()],
            Some(rolled.clone()),
        );
        assert!(f.wakes(&watcher::Event::Apply(observed.clone())));
        // Only its conditions changed: the same rollout.
        assert!(!f.wakes(&watcher::Event::Apply(observed)));
        let scaled_by_hand = entry(
            "kubectl",
            Some("scale"),
            serde_json::json!({"f:spec": {"f:replicas": {}}}),
        );
        let scaled = deployment(
            vec![ours(), revision, status_entry, scaled_by_hand],
            Some(rolled),
        );
        assert!(f.wakes(&watcher::Event::Apply(scaled)));
    }

    #[test]
    fn a_relist_wakes_only_what_changed_meanwhile() {
        let mut f = Filter::default();
        let unseen = config_map(vec![ours()], "a");
        assert!(
            f.wakes(&watcher::Event::InitApply(unseen)),
            "unknown in a list"
        );
        assert!(!f.wakes(&watcher::Event::<ConfigMap>::Init));
        assert!(!f.wakes(&watcher::Event::InitApply(config_map(vec![ours()], "a"))));
        let edit = entry("kubectl-patch", None, serde_json::json!({"f:data": {}}));
        assert!(f.wakes(&watcher::Event::InitApply(config_map(
            vec![ours(), edit],
            "y"
        ))));
    }
}
