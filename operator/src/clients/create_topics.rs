//! Topic creations to one Kafka cluster, sent together.
//!
//! A cluster's controller takes one CreateTopics request at a time, and each
//! costs about the same whether it names one topic or a hundred (about 30
//! ms on the test world's broker; `bench/OPERATOR-SCALE.md`, "2026-12-06,
//! CreateTopics"). With many pipelines applied at once, their reconciles'
//! requests queued up behind each other at the broker. So creations go out
//! as a group commit: the first one is sent at once, and those asked for
//! while a request is on its way wait for it and go together in the next.
//! An idle operator adds no delay; a busy one sends one request per round
//! trip instead of one per topic. librdkafka and rdkafka have no such
//! batching of their own.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use tokio::sync::oneshot;

/// A topic to create.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicToCreate {
    pub name: String,
    pub partitions: i32,
    pub replication_factor: i32,
    pub config: BTreeMap<String, String>,
}

/// What became of one topic: created, or the broker's code for it; or the
/// request that carried it failed as a whole.
pub type Created = Result<Result<(), RDKafkaErrorCode>, KafkaError>;

/// At most this many topics in one request, so that one answer is never
/// large.
const MAX_TOPICS_PER_REQUEST: usize = 200;

struct Waiting {
    topic: TopicToCreate,
    done: oneshot::Sender<Created>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiting>,
    /// A task is sending: what is queued now goes in its next request.
    sending: bool,
}

/// The creations of one admin client.
#[derive(Default)]
pub struct TopicCreations {
    queue: Arc<Mutex<Queue>>,
}

impl TopicCreations {
    /// Creates `topics` (together, and with those other reconciles ask for
    /// meanwhile): for each, in order, what became of it.
    pub async fn create(
        &self,
        client: &Arc<AdminClient<DefaultClientContext>>,
        topics: Vec<TopicToCreate>,
        options: AdminOptions,
    ) -> Vec<Created> {
        let mut answers = Vec::with_capacity(topics.len());
        let start_sender = {
            let mut queue = lock(&self.queue);
            for topic in topics {
                let (done, answer) = oneshot::channel();
                queue.waiting.push_back(Waiting { topic, done });
                answers.push(answer);
            }
            !std::mem::replace(&mut queue.sending, true)
        };
        if start_sender {
            // A task of its own, not this reconcile's future: a reconcile
            // that is dropped half-way must not strand the others' topics.
            let queue = self.queue.clone();
            let client = client.clone();
            tokio::spawn(async move { send_all(&queue, &client, &options).await });
        }
        let mut created = Vec::with_capacity(answers.len());
        for answer in answers {
            created.push(answer.await.unwrap_or_else(|_| {
                Err(KafkaError::AdminOpCreation(
                    "the topic creation was dropped".into(),
                ))
            }));
        }
        created
    }
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends what is queued, a request at a time, until nothing is.
async fn send_all(
    queue: &Mutex<Queue>,
    client: &AdminClient<DefaultClientContext>,
    options: &AdminOptions,
) {
    loop {
        let batch = {
            let mut queue = lock(queue);
            let batch = take_batch(&mut queue.waiting, MAX_TOPICS_PER_REQUEST, |w| {
                &w.topic.name
            });
            if batch.is_empty() {
                queue.sending = false;
                return;
            }
            batch
        };
        send(client, batch, options).await;
    }
}

async fn send(
    client: &AdminClient<DefaultClientContext>,
    batch: Vec<Waiting>,
    options: &AdminOptions,
) {
    let answer = {
        let new: Vec<NewTopic<'_>> = batch
            .iter()
            .map(|w| {
                let t = &w.topic;
                t.config.iter().fold(
                    NewTopic::new(
                        &t.name,
                        t.partitions,
                        TopicReplication::Fixed(t.replication_factor),
                    ),
                    |new, (k, v)| new.set(k, v),
                )
            })
            .collect();
        client.create_topics(&new, options).await
    };
    let by_name: Result<BTreeMap<String, Result<(), RDKafkaErrorCode>>, KafkaError> =
        answer.map(|results| {
            results
                .into_iter()
                .map(|r| match r {
                    Ok(name) => (name, Ok(())),
                    Err((name, code)) => (name, Err(code)),
                })
                .collect()
        });
    for w in batch {
        let created = match &by_name {
            Ok(by_name) => Ok(by_name
                .get(&w.topic.name)
                .copied()
                .unwrap_or(Err(RDKafkaErrorCode::Fail))),
            Err(e) => Err(e.clone()),
        };
        let _ = w.done.send(created);
    }
}

/// The next request's share of `waiting`: first come, first in, at most
/// `max`, and no name twice (a cluster refuses a request that names a
/// topic twice; a second ask for the same name waits for the next request,
/// where it finds the topic made).
fn take_batch<T>(waiting: &mut VecDeque<T>, max: usize, name: impl Fn(&T) -> &str) -> Vec<T> {
    let mut names = HashSet::new();
    let mut batch = Vec::new();
    let mut kept = VecDeque::new();
    while let Some(item) = waiting.pop_front() {
        if batch.len() < max && names.insert(name(&item).to_owned()) {
            batch.push(item);
        } else {
            kept.push_back(item);
        }
    }
    *waiting = kept;
    batch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_takes_the_oldest_first_up_to_the_limit() {
        let mut waiting: VecDeque<&str> = ["a", "b", "c", "d"].into();
        assert_eq!(take_batch(&mut waiting, 3, |s| s), ["a", "b", "c"]);
        assert_eq!(waiting, ["d"]);
        assert_eq!(take_batch(&mut waiting, 3, |s| s), ["d"]);
        assert!(take_batch(&mut waiting, 3, |s| s).is_empty());
    }

    #[test]
    fn a_name_asked_for_twice_waits_for_the_next_batch() {
        let mut waiting: VecDeque<(&str, u8)> = [("a", 1), ("b", 1), ("a", 2), ("c", 1)].into();
        assert_eq!(
            take_batch(&mut waiting, 10, |w| w.0),
            [("a", 1), ("b", 1), ("c", 1)]
        );
        assert_eq!(waiting, [("a", 2)]);
        assert_eq!(take_batch(&mut waiting, 10, |w| w.0), [("a", 2)]);
    }
}
