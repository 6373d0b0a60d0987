//! The controller's watch caches of the objects the operator labels as its
//! own (the runner's objects and the topic ownership records). The same
//! watches that trigger reconciles fill them, so a reconcile reads what it
//! owns from memory instead of a GET per object: at a thousand pipelines
//! those GETs were most of the apiserver's load.
//!
//! A cache can lag a write by a moment. Every use is safe with that: a
//! miss falls back to a GET, and a stale copy at worst applies an object
//! once more (server-side apply of the same content changes nothing).

use std::sync::Arc;

use futures::FutureExt;

use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::Resource;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};

/// Readers of the caches; cheap to clone.
#[derive(Clone)]
pub struct Owned {
    deployments: Store<Deployment>,
    services: Store<Service>,
    config_maps: Store<ConfigMap>,
    service_accounts: Store<ServiceAccount>,
    roles: Store<Role>,
    role_bindings: Store<RoleBinding>,
    network_policies: Store<NetworkPolicy>,
}

/// The writing ends, handed to the controller's watches.
pub struct Writers {
    pub deployments: Writer<Deployment>,
    pub services: Writer<Service>,
    pub config_maps: Writer<ConfigMap>,
    pub service_accounts: Writer<ServiceAccount>,
    pub roles: Writer<Role>,
    pub role_bindings: Writer<RoleBinding>,
    pub network_policies: Writer<NetworkPolicy>,
}

/// A kind the operator owns and keeps a cache of.
pub trait Cached:
    Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + Send + Sync + 'static
{
    fn store(owned: &Owned) -> &Store<Self>;
}

macro_rules! cached {
    ($($kind:ty => $field:ident),* $(,)?) => {
        $(impl Cached for $kind {
            fn store(owned: &Owned) -> &Store<Self> {
                &owned.$field
            }
        })*
    };
}

cached!(
    Deployment => deployments,
    Service => services,
    ConfigMap => config_maps,
    ServiceAccount => service_accounts,
    Role => roles,
    RoleBinding => role_bindings,
    NetworkPolicy => network_policies,
);

impl Owned {
    pub fn new() -> (Self, Writers) {
        let (deployments, d) = reflector::store();
        let (services, s) = reflector::store();
        let (config_maps, c) = reflector::store();
        let (service_accounts, a) = reflector::store();
        let (roles, r) = reflector::store();
        let (role_bindings, b) = reflector::store();
        let (network_policies, n) = reflector::store();
        (
            Self {
                deployments,
                services,
                config_maps,
                service_accounts,
                roles,
                role_bindings,
                network_policies,
            },
            Writers {
                deployments: d,
                services: s,
                config_maps: c,
                service_accounts: a,
                roles: r,
                role_bindings: b,
                network_policies: n,
            },
        )
    }

    /// The cached `namespace/name` of kind `K`, if the cache holds it.
    pub fn get<K: Cached>(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        K::store(self).get(&ObjectRef::new(name).within(namespace))
    }

    /// Whether the watch of kind `K` has listed once, so the cache holds
    /// every labelled object of that kind as of a moment ago.
    pub fn listed<K: Cached>(&self) -> bool {
        K::store(self)
            .wait_until_ready()
            .now_or_never()
            .is_some_and(|ready| ready.is_ok())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use kube::runtime::watcher::Event;

    use super::*;

    fn config_map(name: &str) -> ConfigMap {
        ConfigMap {
            metadata: ObjectMeta {
                name: Some(name.to_owned()),
                namespace: Some("ns".to_owned()),
                ..ObjectMeta::default()
            },
            ..ConfigMap::default()
        }
    }

    /// `live` answers a miss without a read only once the watch has
    /// listed: a miss before that says nothing about the object.
    #[test]
    fn a_kind_counts_as_listed_only_after_its_first_list() {
        let (owned, mut writers) = Owned::new();
        assert!(!owned.listed::<ConfigMap>());
        writers.config_maps.apply_watcher_event(&Event::Init);
        writers
            .config_maps
            .apply_watcher_event(&Event::InitApply(config_map("a")));
        assert!(!owned.listed::<ConfigMap>(), "listing, not listed");
        assert!(owned.get::<ConfigMap>("ns", "a").is_none());
        writers.config_maps.apply_watcher_event(&Event::InitDone);
        assert!(owned.listed::<ConfigMap>());
        assert!(owned.get::<ConfigMap>("ns", "a").is_some());
        assert!(owned.get::<ConfigMap>("ns", "b").is_none());
        assert!(!owned.listed::<Deployment>(), "each kind has its own watch");
    }
}
