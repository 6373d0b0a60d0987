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
    check_tables(v, cassandra);
}

/// `table` or `tables`, and each table on its own.
fn check_tables(v: &mut Problems, cassandra: &CassandraSpec) {
    match (&cassandra.table, &cassandra.tables) {
        (Some(_), Some(_)) => v.push("spec.cassandra.tables", Problem::TableAndTables),
        (None, None) => v.push("spec.cassandra.table", Problem::NoTable),
        (None, Some(ts)) if ts.is_empty() => v.push("spec.cassandra.tables", Problem::Empty),
        _ => {}
    }
    let tables = cassandra.tables();
    v.count("spec.cassandra.tables", tables.len(), limits::TABLES_MAX);
    let mut seen = std::collections::BTreeSet::new();
    for (i, table) in tables.iter().enumerate() {
        let at = cassandra.table_path(i);
        if !seen.insert(table.name.as_str()) {
            v.push(
                format!("{at}.name"),
                Problem::DuplicateTable(table.name.clone()),
            );
        }
        check_table(v, table, &at);
    }
    // One record has one place in its partition's order, which its write
    // time follows ([`crate::spec::WriteTimeSpec`]): every table must take
    // it from the same place.
    if let Some((first, rest)) = tables.split_first() {
        for (i, table) in rest.iter().enumerate() {
            if table.write_time != first.write_time {
                v.push(
                    format!("{}.writeTime", cassandra.table_path(i + 1)),
                    Problem::WriteTimeDiffers {
                        table: table.name.clone(),
                        first: first.name.clone(),
                    },
                );
            }
        }
    }
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

    fn two_tables() -> crate::spec::StreamPipelineSpec {
        let mut s = spec();
        let first = s.cassandra.table.take().unwrap();
        let mut second = first.clone();
        second.name = "users_by_name".into();
        second.partition_key = vec!["select".into()];
        s.cassandra.tables = Some(vec![first, second]);
        s
    }

    #[test]
    fn table_or_tables_and_each_table_named_once() {
        let s = two_tables();
        assert_eq!(problems(&s), []);
        assert_eq!(s.cassandra.table_path(1), "spec.cassandra.tables[1]");
        let mut both = two_tables();
        both.cassandra.table = Some(both.cassandra.tables()[0].clone());
        assert!(
            problems(&both)
                .iter()
                .any(|p| p.problem == Problem::TableAndTables)
        );
        let mut neither = two_tables();
        neither.cassandra.tables = None;
        assert!(
            problems(&neither)
                .iter()
                .any(|p| p.problem == Problem::NoTable)
        );
        let mut empty = two_tables();
        empty.cassandra.tables = Some(vec![]);
        assert!(
            problems(&empty)
                .iter()
                .any(|p| p.field == "spec.cassandra.tables" && p.problem == Problem::Empty)
        );
        let mut twice = two_tables();
        twice.cassandra.tables_mut()[1].name = "created_users".into();
        assert!(
            problems(&twice)
                .iter()
                .any(|p| p.field == "spec.cassandra.tables[1].name"
                    && p.problem == Problem::DuplicateTable("created_users".into()))
        );
        // A problem in the second table names it by its place.
        let mut bad = two_tables();
        bad.cassandra.tables_mut()[1].columns[0].type_ = "string".into();
        assert!(
            problems(&bad)
                .iter()
                .any(|p| p.field == "spec.cassandra.tables[1].columns[0].type")
        );
    }

    #[test]
    fn every_table_takes_its_write_time_from_the_same_place() {
        let mut s = two_tables();
        s.cassandra.tables_mut()[1].write_time = Some(crate::spec::WriteTimeSpec {
            from: "/updatedAt".into(),
            unit: crate::spec::EpochUnit::Milliseconds,
        });
        assert!(
            problems(&s)
                .iter()
                .any(|p| p.field == "spec.cassandra.tables[1].writeTime"
                    && matches!(p.problem, Problem::WriteTimeDiffers { .. }))
        );
        let same = s.cassandra.tables()[1].write_time.clone();
        s.cassandra.tables_mut()[0].write_time = same;
        assert_eq!(problems(&s), []);
    }

    #[test]
    fn the_first_table_stays_first_and_every_table_keeps_its_key() {
        use crate::validate::validate_update;
        let one = spec();
        let two = two_tables();
        // From table to tables, the table first: a migration.
        validate_update(&one, &two).unwrap();
        // Adding a table, removing one after the first.
        let mut three = two_tables();
        let mut extra = three.cassandra.tables()[1].clone();
        extra.name = "more".into();
        three.cassandra.tables.as_mut().unwrap().push(extra);
        validate_update(&two, &three).unwrap();
        validate_update(&three, &two).unwrap();
        // Another table first.
        let mut swapped = two_tables();
        swapped.cassandra.tables.as_mut().unwrap().reverse();
        let err = validate_update(&two, &swapped).unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| p.field == "spec.cassandra.tables[0].name"),
            "{err}"
        );
        // A second table re-keyed.
        let mut rekeyed = two_tables();
        rekeyed.cassandra.tables_mut()[1].partition_key = vec!["id".into()];
        let err = validate_update(&two, &rekeyed).unwrap_err();
        assert!(
            err.problems
                .iter()
                .any(|p| p.field == "spec.cassandra.tables[1].partitionKey"),
            "{err}"
        );
    }
}
