//! `NAME-runner`: the NetworkPolicy of a pipeline's runner Pods.
//!
//! In: the push port from the peers `spec.runner.networkPolicy.pushFrom`
//! names (unset: the pipeline's namespace), the metrics port from the
//! monitoring namespace. Out: DNS, and the ports of the pipeline's Kafka,
//! Cassandra, Schema Registry and pull URLs, and of the apiserver for a
//! pulling ingest (its Lease). A NetworkPolicy names no host, so egress is
//! limited by port, not by address.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use millrace_api::{StreamPipelineSpec, ports};

use super::Pipeline;

/// The operator's settings for every pipeline's NetworkPolicy.
#[derive(Clone, Debug, Default)]
pub struct NetworkPolicyDefaults {
    /// Make NetworkPolicies at all (`--network-policies`).
    pub enabled: bool,
    /// The namespace Prometheus scrapes from (`--monitoring-namespace`);
    /// unset: any namespace of the cluster.
    pub monitoring_namespace: Option<String>,
    /// The apiserver's ports as a Pod's connections see them
    /// (`--apiserver-ports`): the `kubernetes` Service's port and, since
    /// most network plugins apply policies after the Service is resolved,
    /// its endpoints' port.
    pub apiserver_ports: Vec<u16>,
}

/// Whether the spec and the operator want a NetworkPolicy.
pub fn wanted(spec: &StreamPipelineSpec, defaults: &NetworkPolicyDefaults) -> bool {
    defaults.enabled
        && spec
            .runner
            .network_policy
            .as_ref()
            .is_none_or(|n| n.enabled)
}

/// The port of `host:port` (an IPv6 host in brackets), or `default`.
fn port_of(address: &str, default: u16) -> u16 {
    let address = address.trim();
    let after_host = address.rsplit_once(']').map_or(address, |(_, rest)| rest);
    after_host
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap_or(default)
}

/// The port of an `http(s)://` URL.
fn url_port(url: &str) -> u16 {
    let (scheme, rest) = url.split_once("://").unwrap_or(("https", url));
    let default = if scheme.eq_ignore_ascii_case("http") {
        80
    } else {
        443
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    port_of(host, default)
}

fn tcp(port: u16) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port))),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    }
}

fn named(name: &str) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::String(name.to_owned())),
        protocol: Some("TCP".to_owned()),
        ..NetworkPolicyPort::default()
    }
}

/// The TCP ports the runner connects to.
pub fn egress_ports(spec: &StreamPipelineSpec, apiserver_ports: &[u16]) -> BTreeSet<u16> {
    let mut out = BTreeSet::new();
    out.extend(
        spec.kafka
            .bootstrap_servers
            .split(',')
            .filter(|s| !s.trim().is_empty())
            .map(|s| port_of(s, 9092)),
    );
    out.extend(
        spec.cassandra
            .contact_points
            .iter()
            .map(|c| port_of(c, 9042)),
    );
    if let Some(registry) = spec.avro_registry() {
        out.insert(url_port(&registry.url));
    }
    let pulls: Vec<_> = spec
        .sources
        .iter()
        .filter_map(|s| s.http_pull.as_ref())
        .collect();
    out.extend(pulls.iter().map(|p| url_port(&p.url)));
    if !pulls.is_empty() {
        out.extend(apiserver_ports);
    }
    out
}

/// The pipeline's NetworkPolicy, or `None` when it should have none.
pub fn network_policy(p: &Pipeline<'_>, defaults: &NetworkPolicyDefaults) -> Option<NetworkPolicy> {
    let spec = &p.sp.spec;
    if !wanted(spec, defaults) {
        return None;
    }
    let pods: BTreeMap<String, String> = p
        .labels(None)
        .into_iter()
        .filter(|(k, _)| k != "app.kubernetes.io/managed-by")
        .collect();
    let everywhere_in = |labels: Option<BTreeMap<String, String>>| NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: labels,
            ..LabelSelector::default()
        }),
        ..NetworkPolicyPeer::default()
    };
    let monitoring = everywhere_in(
        defaults
            .monitoring_namespace
            .as_ref()
            .map(|ns| BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), ns.clone())])),
    );
    let mut ingress = vec![NetworkPolicyIngressRule {
        from: Some(vec![monitoring]),
        ports: Some(vec![named(ports::METRICS_NAME)]),
    }];
    if spec.sources.iter().any(|s| s.http_push.is_some()) {
        let from = spec
            .runner
            .network_policy
            .as_ref()
            .and_then(|n| n.push_from.clone())
            .unwrap_or_else(|| {
                vec![NetworkPolicyPeer {
                    pod_selector: Some(LabelSelector::default()),
                    ..NetworkPolicyPeer::default()
                }]
            });
        ingress.push(NetworkPolicyIngressRule {
            from: Some(from),
            ports: Some(vec![named(ports::PUSH_NAME)]),
        });
    }
    let dns = NetworkPolicyEgressRule {
        to: None,
        ports: Some(vec![
            NetworkPolicyPort {
                port: Some(IntOrString::Int(53)),
                protocol: Some("UDP".to_owned()),
                ..NetworkPolicyPort::default()
            },
            tcp(53),
        ]),
    };
    let services = NetworkPolicyEgressRule {
        to: None,
        ports: Some(
            egress_ports(spec, &defaults.apiserver_ports)
                .into_iter()
                .map(tcp)
                .collect(),
        ),
    };
    Some(NetworkPolicy {
        metadata: p.meta(p.runner_name(), None),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(LabelSelector {
                match_labels: Some(pods),
                ..LabelSelector::default()
            }),
            policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
            ingress: Some(ingress),
            egress: Some(vec![dns, services]),
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;
    use serde_json::json;

    fn defaults() -> NetworkPolicyDefaults {
        NetworkPolicyDefaults {
            enabled: true,
            monitoring_namespace: Some("monitoring".into()),
            apiserver_ports: vec![443, 6443],
        }
    }

    #[test]
    fn ports_come_from_addresses_and_urls() {
        assert_eq!(port_of("kafka-0.kafka:19092", 9092), 19092);
        assert_eq!(port_of("kafka", 9092), 9092);
        assert_eq!(port_of("[::1]:9043", 9042), 9043);
        assert_eq!(port_of("[::1]", 9042), 9042);
        assert_eq!(url_port("https://randomuser.me/api/?results=10"), 443);
        assert_eq!(url_port("http://registry.kafka:8080/apis/ccompat/v7"), 8080);
        assert_eq!(url_port("http://api.example.com"), 80);
        assert_eq!(url_port("https://user:pw@[::1]:8443/x"), 8443);
    }

    #[test]
    fn the_runner_pods_take_pushes_from_their_namespace_and_reach_only_their_ports() {
        let mut sp = fixtures::seed();
        sp.spec.kafka.bootstrap_servers = "k1:19092,k2:19093".into();
        sp.spec.cassandra.contact_points = vec!["c1".into(), "c2:19042".into()];
        let p = Pipeline::new(&sp).expect("pipeline");
        let np = network_policy(&p, &defaults()).expect("wanted");
        assert_eq!(np.metadata.name.as_deref(), Some("randomuser-runner"));
        let spec = np.spec.expect("spec");
        let selector = spec
            .pod_selector
            .and_then(|s| s.match_labels)
            .expect("labels");
        assert_eq!(selector["app.kubernetes.io/instance"], "randomuser");
        assert!(
            !selector.contains_key("app.kubernetes.io/component"),
            "both roles"
        );
        let ingress = serde_json::to_value(spec.ingress.expect("ingress")).expect("json");
        assert_eq!(
            ingress,
            json!([
                {"from": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
                 "ports": [{"port": "metrics", "protocol": "TCP"}]},
                {"from": [{"podSelector": {}}], "ports": [{"port": "push", "protocol": "TCP"}]},
            ])
        );
        let egress = serde_json::to_value(spec.egress.expect("egress")).expect("json");
        assert_eq!(
            egress[1]["ports"],
            json!([
                {"port": 9042, "protocol": "TCP"},
                {"port": 19042, "protocol": "TCP"},
                {"port": 19092, "protocol": "TCP"},
                {"port": 19093, "protocol": "TCP"},
            ]),
            "no apiserver without a pull source"
        );
        assert_eq!(
            egress[0]["ports"][0],
            json!({"port": 53, "protocol": "UDP"})
        );
    }

    #[test]
    fn the_spec_names_who_pushes_and_can_turn_the_policy_off() {
        let mut sp = fixtures::seed();
        sp.spec.sources.push(
            serde_json::from_value(json!({
                "name": "api",
                "httpPull": {"url": "https://api.example.com:8443/users", "schedule": "5m"},
            }))
            .expect("source"),
        );
        sp.spec.runner.network_policy = serde_json::from_value(json!({
            "pushFrom": [{"namespaceSelector": {"matchLabels": {"team": "web"}}}]
        }))
        .expect("policy");
        let p = Pipeline::new(&sp).expect("pipeline");
        let mut open = defaults();
        open.monitoring_namespace = None;
        let np = network_policy(&p, &open).expect("wanted");
        let spec = serde_json::to_value(np.spec.expect("spec")).expect("json");
        assert_eq!(
            spec["ingress"][0]["from"],
            json!([{"namespaceSelector": {}}])
        );
        assert_eq!(
            spec["ingress"][1]["from"],
            json!([{"namespaceSelector": {"matchLabels": {"team": "web"}}}])
        );
        let ports: Vec<i64> = spec["egress"][1]["ports"]
            .as_array()
            .expect("ports")
            .iter()
            .filter_map(|p| p["port"].as_i64())
            .collect();
        assert!(
            [443, 6443, 8443].iter().all(|p| ports.contains(p)),
            "the pull URL's port and the apiserver's: {ports:?}"
        );

        sp.spec.runner.network_policy = Some(millrace_api::NetworkPolicySpec {
            enabled: false,
            push_from: None,
        });
        let p = Pipeline::new(&sp).expect("pipeline");
        assert!(network_policy(&p, &defaults()).is_none());
        let sp = fixtures::seed();
        let p = Pipeline::new(&sp).expect("pipeline");
        assert!(
            network_policy(&p, &NetworkPolicyDefaults::default()).is_none(),
            "--network-policies=false"
        );
    }
}
