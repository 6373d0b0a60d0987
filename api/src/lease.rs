//! The one Lease mechanism of millrace (crate feature `lease`): the
//! operator's leader election and the runner's pull Leases both hold a
//! `coordination.k8s.io/v1` Lease through [`LeaseLock`], so they agree on
//! when a holder must stop and when a Lease may be taken.
//!
//! The rules are client-go's:
//!
//! - A holder acts only while its [`Gate`] is open: until `renew_deadline`
//!   after it *sent* its last successful renewal (the server wrote the
//!   record after that, so a candidate saw it after that too). It never
//!   reads its own renewals back from the Lease's timestamps.
//! - A candidate takes a Lease held by another only when it has seen the
//!   same record for a whole `leaseDurationSeconds` by its own monotonic
//!   clock ([`Observation`]), never by comparing the holder's `renewTime`
//!   with its own wall clock: two machines' clocks may be seconds apart, a
//!   monotonic interval on one machine is not.
//! - Every write is a replace guarded by `resourceVersion`: of two
//!   candidates racing for a Lease, one gets a conflict.
//!
//! So a holder that stops renewing stops acting at `renew_deadline` after
//! its last renewal went out, and a candidate takes over no earlier than
//! `leaseDurationSeconds` after it saw that renewal; the difference is the
//! margin for the two machines' clocks running at slightly different rates
//! and for a process that is late to notice its own deadline.
//!
//! Why not a crate: kube-lease-manager (the one maintained crate for this
//! kube release) judges expiry from the holder's `renewTime` against the
//! local wall clock, and a holder whose renewals fail with API errors keeps
//! reporting itself the leader; kube-leader-election and kube-coordinate
//! are built on older kube releases.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use tracing::{debug, info, warn};

/// How long a Lease lasts, how long its holder may go without renewing
/// before it stops acting, and how often it tries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    /// Written as `leaseDurationSeconds`: how long a candidate must see the
    /// record unchanged before it takes the Lease.
    pub duration: Duration,
    /// How long after the last successful renewal went out the holder
    /// still acts.
    pub renew_deadline: Duration,
    /// How often the holder renews and a candidate looks.
    pub retry_period: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TimingError {
    #[error("the lease duration must be a whole number of seconds, at least 1 (got {0:?})")]
    Duration(Duration),
    #[error(
        "the renew deadline ({deadline:?}) must be shorter than the lease duration ({duration:?}), so a holder stops before another may take the Lease"
    )]
    DeadlineNotShorter {
        deadline: Duration,
        duration: Duration,
    },
    #[error(
        "the retry period ({retry:?}) must be shorter than the renew deadline ({deadline:?}), or the holder has no second try"
    )]
    RetryNotShorter { retry: Duration, deadline: Duration },
    #[error("the retry period must not be zero")]
    ZeroRetry,
}

impl Timing {
    /// client-go's defaults: 15 s, 10 s, 2 s.
    pub const DEFAULT: Self = Self {
        duration: Duration::from_secs(15),
        renew_deadline: Duration::from_secs(10),
        retry_period: Duration::from_secs(2),
    };

    pub fn new(
        duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, TimingError> {
        if duration.subsec_nanos() != 0 || duration < Duration::from_secs(1) {
            return Err(TimingError::Duration(duration));
        }
        if renew_deadline >= duration {
            return Err(TimingError::DeadlineNotShorter {
                deadline: renew_deadline,
                duration,
            });
        }
        if retry_period.is_zero() {
            return Err(TimingError::ZeroRetry);
        }
        if retry_period >= renew_deadline {
            return Err(TimingError::RetryNotShorter {
                retry: retry_period,
                deadline: renew_deadline,
            });
        }
        Ok(Self {
            duration,
            renew_deadline,
            retry_period,
        })
    }

    fn duration_seconds(&self) -> i32 {
        i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX)
    }
}

/// Whether this process may act as the holder: open until the renew
/// deadline of its last renewal. Cheap to clone and to check, so that every
/// write can ask it at the moment it is made (a process that was stopped or
/// starved may run a write before its renewal loop notices the deadline).
#[derive(Clone, Debug)]
pub struct Gate {
    inner: Arc<Mutex<GateState>>,
}

#[derive(Debug)]
enum GateState {
    /// No election: always open.
    Always,
    Until(Option<Instant>),
}

/// A write refused because this process does not hold the Lease.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "not the leader: this process does not hold the Lease (or has not renewed it within its renew deadline)"
)]
pub struct NotLeader;

impl Gate {
    /// Open for good: for a process that runs without election.
    pub fn always_open() -> Self {
        Self {
            inner: Arc::new(Mutex::new(GateState::Always)),
        }
    }

    /// Closed until a renewal opens it.
    pub fn closed() -> Self {
        Self {
            inner: Arc::new(Mutex::new(GateState::Until(None))),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_open(&self) -> bool {
        self.is_open_at(Instant::now())
    }

    pub fn is_open_at(&self, now: Instant) -> bool {
        match *self.state() {
            GateState::Always => true,
            GateState::Until(until) => until.is_some_and(|until| now < until),
        }
    }

    pub fn check(&self) -> Result<(), NotLeader> {
        if self.is_open() {
            Ok(())
        } else {
            Err(NotLeader)
        }
    }

    /// When it closes, if it is open and not for good.
    pub fn open_until(&self) -> Option<Instant> {
        match *self.state() {
            GateState::Always => None,
            GateState::Until(until) => until,
        }
    }

    /// A renewal sent at `sent` succeeded.
    fn renewed(&self, sent: Instant, renew_deadline: Duration) {
        if let GateState::Until(until) = &mut *self.state() {
            let new = sent + renew_deadline;
            // A slow earlier attempt finishing late never shortens it.
            *until = Some(until.map_or(new, |u| u.max(new)));
        }
    }

    fn close(&self) {
        if let GateState::Until(until) = &mut *self.state() {
            *until = None;
        }
    }
}

/// The record a candidate last read, and when it first saw it by its own
/// clock. The holder's timestamps only tell that the record changed.
#[derive(Clone, Debug, PartialEq)]
pub struct Observation {
    pub spec: LeaseSpec,
    pub seen_since: Instant,
}

/// What a candidate may do with the Lease it observes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// It names us: renew it.
    Ours,
    /// Nobody holds it (never held, or released): take it.
    Free,
    /// Its holder has not changed it for a whole lease duration, by our
    /// clock: take it.
    Expired { holder: String },
    /// Another holds it; not before `until` (by our clock) may we take it.
    Held { holder: String, until: Instant },
}

impl Observation {
    /// The observation after reading `spec` at `now`: the time it was first
    /// seen carries over while the record stays the same.
    pub fn after(previous: Option<&Self>, spec: LeaseSpec, now: Instant) -> Self {
        match previous {
            Some(p) if p.spec == spec => p.clone(),
            _ => Self {
                spec,
                seen_since: now,
            },
        }
    }

    /// `fallback` is the lease duration to assume when the record has none.
    pub fn verdict(&self, identity: &str, now: Instant, fallback: Duration) -> Verdict {
        let holder = self
            .spec
            .holder_identity
            .as_deref()
            .filter(|h| !h.is_empty());
        let Some(holder) = holder else {
            return Verdict::Free;
        };
        if holder == identity {
            return Verdict::Ours;
        }
        let duration = self
            .spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .filter(|s| *s > 0)
            .map_or(fallback, Duration::from_secs);
        let until = self.seen_since + duration;
        if now >= until {
            Verdict::Expired {
                holder: holder.to_owned(),
            }
        } else {
            Verdict::Held {
                holder: holder.to_owned(),
                until,
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("reading or writing Lease {name}: {source}")]
    Kube {
        name: String,
        #[source]
        source: kube::Error,
    },
}

/// The result of one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// We hold it (just took or renewed it).
    Held,
    /// Another holds it and may not be taken yet.
    HeldBy(String),
    /// Someone else wrote the Lease between our read and our write.
    Conflict,
}

impl Attempt {
    pub fn is_held(&self) -> bool {
        matches!(self, Self::Held)
    }
}

/// One Lease, as one candidate sees it.
pub struct LeaseLock {
    api: Api<Lease>,
    name: String,
    identity: String,
    timing: Timing,
    owner: Option<OwnerReference>,
    observed: Mutex<Option<Observation>>,
    gate: Gate,
}

impl LeaseLock {
    pub fn new(api: Api<Lease>, name: &str, identity: &str, timing: Timing) -> Self {
        Self {
            api,
            name: name.to_owned(),
            identity: identity.to_owned(),
            timing,
            owner: None,
            observed: Mutex::new(None),
            gate: Gate::closed(),
        }
    }

    /// The Lease is made with, and given on its next write, this owner.
    pub fn with_owner(mut self, owner: Option<OwnerReference>) -> Self {
        self.owner = owner;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn timing(&self) -> Timing {
        self.timing
    }

    /// Open while this candidate holds the Lease within its renew deadline.
    pub fn gate(&self) -> Gate {
        self.gate.clone()
    }

    fn kube(&self, source: kube::Error) -> LeaseError {
        LeaseError::Kube {
            name: self.name.clone(),
            source,
        }
    }

    fn observe(&self, spec: LeaseSpec, now: Instant) -> Observation {
        let mut observed = self.observed.lock().unwrap_or_else(|e| e.into_inner());
        let next = Observation::after(observed.as_ref(), spec, now);
        *observed = Some(next.clone());
        next
    }

    /// Takes the Lease if it is free or expired by our observation, or
    /// renews it if it is ours (client-go's tryAcquireOrRenew).
    pub async fn try_acquire_or_renew(&self) -> Result<Attempt, LeaseError> {
        self.write(true, |_| {}).await
    }

    /// Renews the Lease with `edit` applied (an annotation), only if it is
    /// ours; never takes it.
    pub async fn renew_with(&self, edit: impl FnOnce(&mut Lease)) -> Result<Attempt, LeaseError> {
        self.write(false, edit).await
    }

    async fn write(
        &self,
        take: bool,
        edit: impl FnOnce(&mut Lease),
    ) -> Result<Attempt, LeaseError> {
        // Taken before the request: the server writes the record later,
        // and a candidate sees it later still.
        let sent = Instant::now();
        let now = MicroTime(Timestamp::now());
        let seconds = self.timing.duration_seconds();
        let existing = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.kube(e))?;
        let Some(mut lease) = existing else {
            if !take {
                self.gate.close();
                return Ok(Attempt::Conflict);
            }
            let mut lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    owner_references: self.owner.clone().map(|o| vec![o]),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            edit(&mut lease);
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(created) => {
                    self.observe(created.spec.unwrap_or_default(), Instant::now());
                    self.gate.renewed(sent, self.timing.renew_deadline);
                    info!(lease = %self.name, identity = %self.identity, "created and took the Lease");
                    Ok(Attempt::Held)
                }
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
                Err(e) => Err(self.kube(e)),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let observed = self.observe(spec.clone(), Instant::now());
        let verdict = observed.verdict(&self.identity, Instant::now(), self.timing.duration);
        let mine = match verdict {
            Verdict::Ours => true,
            Verdict::Held { holder, .. } => {
                // Someone else holds it: whatever we believed, we stop now.
                self.gate.close();
                debug!(lease = %self.name, %holder, "the Lease is held by another");
                return Ok(Attempt::HeldBy(holder));
            }
            Verdict::Free | Verdict::Expired { .. } if !take => {
                self.gate.close();
                return Ok(Attempt::Conflict);
            }
            Verdict::Free => false,
            Verdict::Expired { holder } => {
                info!(lease = %self.name, previous = %holder, identity = %self.identity, after = ?self.timing.duration, "the Lease was not renewed for its whole duration: taking it");
                false
            }
        };
        lease.spec = Some(LeaseSpec {
            holder_identity: Some(self.identity.clone()),
            lease_duration_seconds: Some(seconds),
            acquire_time: if mine {
                spec.acquire_time.clone()
            } else {
                Some(now.clone())
            },
            renew_time: Some(now),
            lease_transitions: Some(spec.lease_transitions.unwrap_or(0) + i32::from(!mine)),
            ..spec
        });
        if let Some(owner) = &self.owner {
            let owners = lease.metadata.owner_references.get_or_insert_with(Vec::new);
            if !owners.iter().any(|o| o.uid == owner.uid) {
                owners.push(owner.clone());
            }
        }
        edit(&mut lease);
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.observe(written.spec.unwrap_or_default(), Instant::now());
                self.gate.renewed(sent, self.timing.renew_deadline);
                if !mine {
                    info!(lease = %self.name, identity = %self.identity, "took the Lease");
                }
                Ok(Attempt::Held)
            }
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Conflict),
            Err(e) => Err(self.kube(e)),
        }
    }

    /// The Lease's annotation `key`, as stored now (`None` when the Lease or
    /// the annotation is missing).
    pub async fn annotation(&self, key: &str) -> Result<Option<String>, LeaseError> {
        let lease = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.kube(e))?;
        Ok(lease
            .and_then(|l| l.metadata.annotations)
            .and_then(|mut a| a.remove(key)))
    }

    /// Gives the Lease up, so a candidate takes it at once. The gate closes
    /// before the write: nothing of ours may follow the release.
    pub async fn release(&self) -> Result<(), LeaseError> {
        self.gate.close();
        let Some(mut lease) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.kube(e))?
        else {
            return Ok(());
        };
        let Some(spec) = lease.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.acquire_time = None;
        spec.renew_time = None;
        match self
            .api
            .replace(&self.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(()),
            Err(e) => Err(self.kube(e)),
        }
    }
}

/// Sets `key` to `value` among the Lease's annotations.
pub fn annotate(lease: &mut Lease, key: &str, value: String) {
    lease
        .metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(key.to_owned(), value);
}

/// Why a holder stopped holding.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    #[error("did not renew the Lease within the renew deadline ({0:?})")]
    DeadlineMissed(Duration),
    #[error("the Lease is held by {0}")]
    TakenBy(String),
}

/// Waits until this candidate holds the Lease, trying every retry period.
pub async fn acquire(lock: &LeaseLock) {
    loop {
        match lock.try_acquire_or_renew().await {
            Ok(Attempt::Held) => return,
            Ok(Attempt::HeldBy(holder)) => {
                debug!(lease = %lock.name, %holder, "waiting: the Lease is held by another")
            }
            Ok(Attempt::Conflict) => {}
            Err(e) => warn!(error = %e, "trying to take the Lease"),
        }
        tokio::time::sleep(lock.timing.retry_period).await;
    }
}

/// Renews the Lease every retry period while it is held; returns once the
/// gate has closed: a renewal missed the renew deadline, or another holds
/// the Lease. An attempt still waiting for the apiserver at the deadline is
/// given up.
pub async fn hold(lock: &LeaseLock) -> Lost {
    let missed = Lost::DeadlineMissed(lock.timing.renew_deadline);
    loop {
        tokio::time::sleep(lock.timing.retry_period).await;
        let Some(deadline) = lock.gate.open_until().filter(|d| Instant::now() < *d) else {
            return missed;
        };
        let attempt = tokio::time::timeout_at(deadline.into(), lock.try_acquire_or_renew()).await;
        match attempt {
            Ok(Ok(Attempt::Held)) => {}
            Ok(Ok(Attempt::HeldBy(holder))) => return Lost::TakenBy(holder),
            Ok(Ok(Attempt::Conflict)) => {
                debug!(lease = %lock.name, "conflict renewing the Lease; trying again")
            }
            Ok(Err(e)) => warn!(error = %e, "renewing the Lease"),
            Err(_) => return missed,
        }
        if !lock.gate.is_open() {
            return missed;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn held_by(holder: &str, renewed: i64) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            renew_time: Some(MicroTime(
                Timestamp::from_second(renewed).expect("timestamp"),
            )),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn timing_wants_the_deadline_shorter_than_the_duration() {
        assert_eq!(
            Timing::new(secs(15), secs(10), secs(2)),
            Ok(Timing::DEFAULT)
        );
        assert!(matches!(
            Timing::new(secs(15), secs(15), secs(2)),
            Err(TimingError::DeadlineNotShorter { .. })
        ));
        assert!(matches!(
            Timing::new(secs(10), secs(15), secs(2)),
            Err(TimingError::DeadlineNotShorter { .. })
        ));
        assert!(matches!(
            Timing::new(secs(15), secs(10), secs(10)),
            Err(TimingError::RetryNotShorter { .. })
        ));
        assert_eq!(
            Timing::new(secs(15), secs(10), Duration::ZERO),
            Err(TimingError::ZeroRetry)
        );
        assert!(matches!(
            Timing::new(
                Duration::from_millis(1500),
                secs(1),
                Duration::from_millis(100)
            ),
            Err(TimingError::Duration(_))
        ));
    }

    #[test]
    fn a_lease_expires_only_after_the_candidate_saw_it_unchanged_for_its_duration() {
        let t0 = Instant::now();
        let seen = Observation::after(None, held_by("a", 1_000), t0);
        assert!(matches!(
            seen.verdict("b", t0 + secs(14), secs(15)),
            Verdict::Held { .. }
        ));
        // The same record read again keeps its first sighting.
        let again = Observation::after(Some(&seen), held_by("a", 1_000), t0 + secs(10));
        assert_eq!(again.seen_since, t0);
        assert_eq!(
            again.verdict("b", t0 + secs(15), secs(15)),
            Verdict::Expired { holder: "a".into() }
        );
        // A renewal (any change of the record) starts the wait again.
        let renewed = Observation::after(Some(&seen), held_by("a", 1_002), t0 + secs(12));
        assert!(matches!(
            renewed.verdict("b", t0 + secs(20), secs(15)),
            Verdict::Held { .. }
        ));
        assert!(matches!(
            renewed.verdict("b", t0 + secs(27), secs(15)),
            Verdict::Expired { .. }
        ));
    }

    #[test]
    fn the_holders_timestamps_do_not_decide_expiry() {
        // A holder whose clock is an hour behind: its renewTime looks long
        // past, but the record was only just seen.
        let t0 = Instant::now();
        let stale_clock = Observation::after(None, held_by("a", 0), t0);
        assert!(matches!(
            stale_clock.verdict("b", t0 + secs(1), secs(15)),
            Verdict::Held { .. }
        ));
        // One whose clock is ahead does not hold it longer than its duration.
        let ahead = Observation::after(None, held_by("a", 4_000_000_000), t0);
        assert!(matches!(
            ahead.verdict("b", t0 + secs(15), secs(15)),
            Verdict::Expired { .. }
        ));
    }

    #[test]
    fn a_released_lease_is_free_and_ours_is_ours() {
        let t0 = Instant::now();
        let released = Observation::after(None, LeaseSpec::default(), t0);
        assert_eq!(released.verdict("b", t0, secs(15)), Verdict::Free);
        let empty = LeaseSpec {
            holder_identity: Some(String::new()),
            ..LeaseSpec::default()
        };
        assert_eq!(
            Observation::after(None, empty, t0).verdict("b", t0, secs(15)),
            Verdict::Free
        );
        let ours = Observation::after(None, held_by("b", 1), t0);
        assert_eq!(ours.verdict("b", t0, secs(15)), Verdict::Ours);
    }

    #[test]
    fn the_record_s_own_duration_counts() {
        let t0 = Instant::now();
        let mut spec = held_by("a", 1);
        spec.lease_duration_seconds = Some(60);
        let seen = Observation::after(None, spec, t0);
        assert!(matches!(
            seen.verdict("b", t0 + secs(30), secs(15)),
            Verdict::Held { .. }
        ));
        assert!(matches!(
            seen.verdict("b", t0 + secs(60), secs(15)),
            Verdict::Expired { .. }
        ));
    }

    #[test]
    fn the_gate_stays_open_until_the_renew_deadline_of_the_last_renewal_sent() {
        let gate = Gate::closed();
        let t0 = Instant::now();
        assert!(!gate.is_open_at(t0));
        gate.renewed(t0, secs(10));
        assert!(gate.is_open_at(t0 + secs(9)));
        assert!(!gate.is_open_at(t0 + secs(10)));
        // A late answer to an older attempt never shortens it.
        gate.renewed(t0 + secs(4), secs(10));
        gate.renewed(t0 + secs(2), secs(10));
        assert_eq!(gate.open_until(), Some(t0 + secs(14)));
        gate.close();
        assert!(!gate.is_open_at(t0 + secs(1)));
        assert!(gate.check().is_err());
    }

    #[test]
    fn the_holder_stops_before_a_candidate_may_take_over() {
        // The holder's last renewal went out at s; the server wrote it, and
        // the candidate saw it no earlier. Even seen at once, the candidate
        // may take the Lease only after the holder's gate closed, with the
        // difference of the two as margin.
        let timing = Timing::DEFAULT;
        let s = Instant::now();
        let gate = Gate::closed();
        gate.renewed(s, timing.renew_deadline);
        let seen = Observation::after(None, held_by("holder", 1), s);
        let first_takeover = match seen.verdict("candidate", s, timing.duration) {
            Verdict::Held { until, .. } => until,
            other => panic!("held, not {other:?}"),
        };
        let closed_at = gate.open_until().expect("open");
        assert!(!gate.is_open_at(first_takeover));
        assert_eq!(first_takeover - closed_at, secs(5));
    }

    #[test]
    fn always_open_is_open() {
        assert!(Gate::always_open().is_open());
        assert!(Gate::always_open().check().is_ok());
    }
}
