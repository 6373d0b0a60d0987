//! Whether a pipeline carries the operator's finalizer. Only
//! `deletionPolicy: Delete` leaves work for the moment the pipeline goes
//! (deleting its topics, dropping its tables, while the credentials
//! Secrets are still there). A `Retain` pipeline keeps everything outside
//! Kubernetes, and what it has inside goes with it by ownerReference, so it
//! carries no finalizer: deleting it never waits for the operator (nor for
//! an operator that is down), and a new pipeline costs one apiserver write
//! less.

use millrace_api::DeletionPolicy;

pub const FINALIZER: &str = "millrace.io/cleanup";

/// Whether a pipeline with `policy` leaves work for when it goes: then it
/// carries the finalizer, and the operator remembers what that cleanup
/// needs (credentials, topics) in case they are gone by then.
pub fn cleans_up(policy: DeletionPolicy) -> bool {
    policy == DeletionPolicy::Delete
}

/// The finalizer list to write, or `None` when the pipeline's list is
/// already right. A pipeline being deleted keeps its list: the cleanup
/// (which reads the policy the pipeline had when it went) removes ours.
pub fn finalizers(
    current: &[String],
    policy: DeletionPolicy,
    deleting: bool,
) -> Option<Vec<String>> {
    if deleting {
        return None;
    }
    let has = current.iter().any(|f| f == FINALIZER);
    match (cleans_up(policy), has) {
        (true, false) => {
            let mut list = current.to_vec();
            list.push(FINALIZER.to_owned());
            Some(list)
        }
        (false, true) => Some(
            current
                .iter()
                .filter(|f| *f != FINALIZER)
                .cloned()
                .collect(),
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn delete_policy_adds_the_finalizer_after_the_others() {
        assert_eq!(
            finalizers(&list(&["example.com/keep"]), DeletionPolicy::Delete, false),
            Some(list(&["example.com/keep", FINALIZER]))
        );
        assert_eq!(
            finalizers(&list(&[FINALIZER]), DeletionPolicy::Delete, false),
            None
        );
    }

    #[test]
    fn retain_policy_has_no_finalizer_and_drops_ours_only() {
        assert_eq!(finalizers(&[], DeletionPolicy::Retain, false), None);
        assert_eq!(
            finalizers(
                &list(&["example.com/keep", FINALIZER]),
                DeletionPolicy::Retain,
                false
            ),
            Some(list(&["example.com/keep"]))
        );
    }

    #[test]
    fn a_pipeline_being_deleted_keeps_its_list() {
        for policy in [DeletionPolicy::Retain, DeletionPolicy::Delete] {
            assert_eq!(finalizers(&[], policy, true), None);
            assert_eq!(finalizers(&list(&[FINALIZER]), policy, true), None);
        }
    }
}
