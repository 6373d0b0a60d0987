//! Which reconcile runs next when `--concurrency` are already running.
//!
//! kube-runtime's own limit takes the next reconcile from a hash set of
//! those waiting, in no useful order. With 1,000 pipelines applied at once
//! that interleaves everything: a pipeline's second reconcile (the one that
//! sees its Deployment rolled out and reports Ready) waits behind the first
//! reconciles of pipelines applied after it, so nearly every pipeline
//! becomes Ready near the end. Here the controller runs without a limit of
//! its own and each reconcile first takes a slot:
//!
//! 1. a pipeline whose current generation was already reconciled once but
//!    is not Ready yet ([`Class::Finishing`]: typically the reconcile that
//!    sees its runner rolled out and reports Ready);
//! 2. a pipeline whose generation is new ([`Class::Starting`]);
//! 3. a Ready pipeline checked again ([`Class::Rechecking`]: the periodic
//!    resync and flow refresh, or a watch event about it). At 1,000
//!    pipelines these are 33 a second, and during a burst of new pipelines
//!    each waits on the same loaded apiserver: served first, they took
//!    slots the new ones needed.
//!
//! Within a class, first come, first served. So pipelines become Ready in
//! about the order they were applied, each soon after its first
//! reconcile, and a burst of new ones delays the re-checks of the others
//! rather than the other way round.
//!
//! Our own rather than a crate: tokio's `Semaphore` is first come, first
//! served with no classes, and the priority semaphores on crates.io are
//! young single-author crates; this is two queues behind one mutex.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::gauge::Gauge;
use tokio::sync::oneshot;

/// Which queue a reconcile waits in; the first is served first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The current generation was reconciled before; not Ready yet.
    Finishing = 0,
    /// A new pipeline, or a changed spec.
    Starting = 1,
    /// The current generation was reconciled before and is Ready.
    Rechecking = 2,
}

const CLASSES: usize = 3;

impl Class {
    /// The class of a pipeline at `generation` whose status says it
    /// reconciled `observed_generation` and whether it is `ready`.
    pub fn of(generation: Option<i64>, observed_generation: Option<i64>, ready: bool) -> Self {
        match (generation, observed_generation) {
            (Some(g), Some(o)) if g == o && ready => Self::Rechecking,
            (Some(g), Some(o)) if g == o => Self::Finishing,
            _ => Self::Starting,
        }
    }
}

pub struct Slots {
    /// 0: no limit.
    limit: usize,
    state: Mutex<State>,
    waiting: Gauge,
}

#[derive(Default)]
struct State {
    running: usize,
    queues: [VecDeque<oneshot::Sender<Slot>>; CLASSES],
}

/// A taken slot; given back when dropped.
pub struct Slot {
    slots: Option<Arc<Slots>>,
}

impl Slots {
    /// `waiting` is set to the number of reconciles waiting for a slot.
    pub fn new(limit: usize, waiting: Gauge) -> Arc<Self> {
        Arc::new(Self {
            limit,
            state: Mutex::default(),
            waiting,
        })
    }

    /// Waits for a slot. Cancel-safe: a slot handed to a waiter that has
    /// gone is passed on.
    pub async fn take(self: &Arc<Self>, class: Class) -> Slot {
        if self.limit == 0 {
            return Slot { slots: None };
        }
        let receiver = {
            let mut state = self.lock();
            let queued = state.queues.iter().any(|q| !q.is_empty());
            if state.running < self.limit && !queued {
                state.running += 1;
                return Slot {
                    slots: Some(self.clone()),
                };
            }
            let (sender, receiver) = oneshot::channel();
            state.queues[class as usize].push_back(sender);
            self.waiting.inc();
            receiver
        };
        match receiver.await {
            Ok(slot) => slot,
            // The sender is only ever dropped after sending.
            Err(_) => unreachable!("a waiter's sender was dropped unsent"),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A slot comes back: to the first waiter still there, else free.
    fn give_back(self: &Arc<Self>) {
        let mut state = self.lock();
        loop {
            let next = state.queues.iter_mut().find_map(VecDeque::pop_front);
            let Some(sender) = next else {
                state.running -= 1;
                return;
            };
            self.waiting.dec();
            // A waiter that went away after this send drops the slot in
            // its receiver, which gives it back again.
            match sender.send(Slot {
                slots: Some(self.clone()),
            }) {
                Ok(()) => return,
                // Gone before: disarm it (its drop would take this lock).
                Err(mut slot) => slot.slots = None,
            }
        }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Some(slots) = self.slots.take() {
            slots.give_back();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn slots(limit: usize) -> Arc<Slots> {
        Slots::new(limit, Gauge::default())
    }

    /// Polls `f` until it is pending (it queued) or done.
    async fn queued<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        tokio::time::timeout(Duration::from_millis(50), f)
            .await
            .ok()
    }

    #[tokio::test]
    async fn finishing_then_starting_then_rechecking_each_class_in_order() {
        let s = slots(1);
        let held = s.take(Class::Starting).await;
        let mut r = Box::pin(s.take(Class::Rechecking));
        let mut a = Box::pin(s.take(Class::Starting));
        let mut b = Box::pin(s.take(Class::Starting));
        let mut c = Box::pin(s.take(Class::Finishing));
        assert!(queued(&mut r).await.is_none());
        assert!(queued(&mut a).await.is_none());
        assert!(queued(&mut b).await.is_none());
        assert!(queued(&mut c).await.is_none());
        assert_eq!(s.waiting.get(), 4);

        drop(held);
        let c = queued(&mut c).await.expect("the finishing one goes first");
        assert!(queued(&mut a).await.is_none());
        drop(c);
        let a = queued(&mut a).await.expect("then the first starting one");
        assert!(queued(&mut b).await.is_none());
        drop(a);
        let b = queued(&mut b).await.expect("then the second");
        assert!(queued(&mut r).await.is_none());
        drop(b);
        let r = queued(&mut r).await.expect("the re-check comes last");
        drop(r);
        assert_eq!(s.waiting.get(), 0);
        assert_eq!(s.lock().running, 0);
    }

    #[tokio::test]
    async fn a_waiter_that_went_away_does_not_keep_a_slot() {
        let s = slots(1);
        let held = s.take(Class::Starting).await;
        let mut gone = Box::pin(s.take(Class::Finishing));
        assert!(queued(&mut gone).await.is_none());
        let mut next = Box::pin(s.take(Class::Starting));
        assert!(queued(&mut next).await.is_none());
        drop(gone);
        drop(held);
        let next = queued(&mut next).await.expect("the slot passed on");
        drop(next);
        assert_eq!(s.lock().running, 0);
    }

    #[tokio::test]
    async fn a_slot_sent_to_a_waiter_dropped_before_it_looked_comes_back() {
        let s = slots(1);
        let held = s.take(Class::Starting).await;
        let mut waiter = Box::pin(s.take(Class::Starting));
        assert!(queued(&mut waiter).await.is_none());
        // Handed over, never received.
        drop(held);
        drop(waiter);
        assert_eq!(s.lock().running, 0);
        let again = queued(&mut Box::pin(s.take(Class::Starting))).await;
        assert!(again.is_some());
    }

    #[tokio::test]
    async fn without_a_limit_nobody_waits() {
        let s = slots(0);
        let all: Vec<Slot> =
            futures::future::join_all((0..100).map(|_| s.take(Class::Starting))).await;
        assert_eq!(all.len(), 100);
        assert_eq!(s.waiting.get(), 0);
    }

    #[tokio::test]
    async fn up_to_the_limit_run_at_once() {
        let s = slots(2);
        let a = s.take(Class::Starting).await;
        let b = s.take(Class::Starting).await;
        let mut c = Box::pin(s.take(Class::Finishing));
        assert!(queued(&mut c).await.is_none());
        drop(a);
        assert!(queued(&mut c).await.is_some());
        drop(b);
    }

    #[test]
    fn the_class_follows_the_observed_generation_and_readiness() {
        assert_eq!(Class::of(Some(3), Some(3), false), Class::Finishing);
        assert_eq!(Class::of(Some(3), Some(3), true), Class::Rechecking);
        assert_eq!(Class::of(Some(4), Some(3), true), Class::Starting);
        assert_eq!(Class::of(Some(4), Some(3), false), Class::Starting);
        assert_eq!(Class::of(Some(1), None, false), Class::Starting);
    }
}
