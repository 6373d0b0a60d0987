//! Collects problems while the checks walk the spec, so one pass reports
//! them all instead of stopping at the first.

use super::names::is_cql_identifier;
use super::problem::{InvalidSpec, Problem, SpecProblem};

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
