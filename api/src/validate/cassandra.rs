//! Checks of `spec.cassandra` apart from the table: where Cassandra is, how
//! to log in, and the keyspace's replication.

use super::accumulator::Problems;
use super::names::{is_datacenter, is_host, is_port, split_host_port};
use super::problem::Problem;
use super::table::check_table;
use crate::spec::{CassandraSpec, ReplicationClass, limits};

pub(super) fn check_cassandra(v: &mut Problems, cassandra: &CassandraSpec) {
    let points = &cassandra.contact_points;
    if points.is_empty() {
        v.push("spec.cassandra.contactPoints", Problem::Empty);
    }
    v.count(
        "spec.cassandra.contactPoints",
        points.len(),
        limits::CONTACT_POINTS_MAX,
    );
    for (i, point) in points.iter().enumerate() {
        let ok = matches!(split_host_port(point), Some((host, port)) if is_host(host) && port.is_none_or(is_port));
        if !ok {
            v.push(
                format!("spec.cassandra.contactPoints[{i}]"),
                Problem::ContactPoint(point.clone()),
            );
        }
    }
    if !is_datacenter(&cassandra.local_datacenter) {
        v.push(
            "spec.cassandra.localDatacenter",
            Problem::Datacenter(cassandra.local_datacenter.clone()),
        );
    }
    if let Some(creds) = &cassandra.credentials_secret_ref {
        v.login_secret("spec.cassandra.credentialsSecretRef", creds);
    }
    v.identifier("spec.cassandra.keyspace.name", &cassandra.keyspace.name);
    let replication = &cassandra.keyspace.replication;
    let at = "spec.cassandra.keyspace.replication";
    match replication.class {
        ReplicationClass::SimpleStrategy => {
            if replication.replication_factor.is_none() || replication.data_centers.is_some() {
                v.push(at, Problem::SimpleStrategyFields);
            }
        }
        ReplicationClass::NetworkTopologyStrategy => {
            let empty = replication
                .data_centers
                .as_ref()
                .is_none_or(|dcs| dcs.is_empty());
            if empty || replication.replication_factor.is_some() {
                v.push(at, Problem::NetworkTopologyFields);
            }
        }
    }
    if let Some(factor) = replication.replication_factor {
        v.range(
            format!("{at}.replicationFactor"),
            factor.into(),
            limits::KEYSPACE_REPLICATION_FACTOR,
        );
    }
    if let Some(dcs) = &replication.data_centers {
        v.count(
            format!("{at}.dataCenters"),
            dcs.len(),
            limits::DATACENTERS_MAX,
        );
        for (dc, factor) in dcs {
            if !is_datacenter(dc) {
                v.push(format!("{at}.dataCenters"), Problem::Datacenter(dc.clone()));
            }
            v.range(
                format!("{at}.dataCenters.{dc}"),
                (*factor).into(),
                limits::KEYSPACE_REPLICATION_FACTOR,
            );
        }
    }
    check_table(v, &cassandra.table, "spec.cassandra.table");
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::spec::{Replication, ReplicationClass};
    use crate::validate::Problem;
    use crate::validate::fixture::{problems, spec};

    #[test]
    fn replication_fields_follow_the_class() {
        let mut s = spec();
        s.cassandra.keyspace.replication.data_centers = Some([("dc1".into(), 3)].into());
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.problem == Problem::SimpleStrategyFields)
        );
        s.cassandra.keyspace.replication = Replication {
            class: ReplicationClass::NetworkTopologyStrategy,
            replication_factor: None,
            data_centers: Some([("dc1': 1}; --".into(), 0)].into()),
        };
        let found: Vec<Problem> = problems(&s).into_iter().map(|p| p.problem).collect();
        assert!(found.iter().any(|p| matches!(p, Problem::Datacenter(_))));
        assert!(
            found
                .iter()
                .any(|p| matches!(p, Problem::OutOfRange { value: 0, .. }))
        );
    }
}
