//! `NAME`: the push endpoint, port `push` of the ingest Pods.

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use millrace_api::ports;

use super::Pipeline;
use super::deployment::Role;

pub fn service(p: &Pipeline<'_>) -> Service {
    Service {
        metadata: p.meta(p.service_name(), Some(Role::Ingest.as_str())),
        spec: Some(ServiceSpec {
            selector: Some(p.labels(Some(Role::Ingest.as_str()))),
            ports: Some(vec![ServicePort {
                name: Some(ports::PUSH_NAME.to_owned()),
                port: i32::from(ports::PUSH),
                target_port: Some(IntOrString::String(ports::PUSH_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired::fixtures;

    #[test]
    fn the_service_selects_the_ingest_pods() {
        let sp = fixtures::seed();
        let p = Pipeline::new(&sp).expect("pipeline");
        let svc = service(&p);
        assert_eq!(svc.metadata.name.as_deref(), Some("randomuser"));
        let spec = svc.spec.expect("spec");
        let selector = spec.selector.expect("selector");
        assert_eq!(selector["app.kubernetes.io/component"], "ingest");
        assert_eq!(selector["app.kubernetes.io/instance"], "randomuser");
        assert_eq!(spec.ports.expect("ports")[0].port, 8080);
    }
}
