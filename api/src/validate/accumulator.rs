//! Collects problems while the checks walk the spec, so one pass reports
//! them all instead of stopping at the first.

use super::names::{is_cql_identifier, is_secret_key, is_secret_name};
use super::problem::{InvalidSpec, Problem, SpecProblem};
use crate::spec::{CaSecretRef, LoginSecretRef};

#[derive(Default)]
pub(super) struct Problems {
    pub(super) problems: Vec<SpecProblem>,
}

impl Problems {
    pub(super) fn push(&mut self, field: impl Into<String>, problem: Problem) {
        self.problems.push(SpecProblem {
            field: field.into(),
            problem,
        });
    }

    pub(super) fn range(&mut self, field: impl Into<String>, value: i64, (min, max): (i64, i64)) {
        if value < min || value > max {
            self.push(field, Problem::OutOfRange { value, min, max });
        }
    }

    pub(super) fn count(&mut self, field: impl Into<String>, len: usize, max: usize) {
        if len > max {
            self.push(field, Problem::TooMany { len, max });
        }
    }

    pub(super) fn identifier(&mut self, field: impl Into<String>, name: &str) {
        if !is_cql_identifier(name) {
            self.push(field, Problem::CqlIdentifier(name.to_owned()));
        }
    }

    /// The Secret of a username and password, at `at`.
    pub(super) fn login_secret(&mut self, at: &str, login: &LoginSecretRef) {
        if !is_secret_name(&login.name) {
            self.push(
                format!("{at}.name"),
                Problem::SecretName(login.name.clone()),
            );
        }
        for (field, key) in [
            ("usernameKey", &login.username_key),
            ("passwordKey", &login.password_key),
        ] {
            if !is_secret_key(key) {
                self.push(format!("{at}.{field}"), Problem::SecretKey(key.clone()));
            }
        }
    }

    /// The Secret of a CA bundle, at `at`.
    pub(super) fn ca_secret(&mut self, at: &str, ca: &CaSecretRef) {
        if !is_secret_name(&ca.name) {
            self.push(format!("{at}.name"), Problem::SecretName(ca.name.clone()));
        }
        if !is_secret_key(&ca.key) {
            self.push(format!("{at}.key"), Problem::SecretKey(ca.key.clone()));
        }
    }

    pub(super) fn finish(self) -> Result<(), InvalidSpec> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(InvalidSpec {
                problems: self.problems,
            })
        }
    }
}
