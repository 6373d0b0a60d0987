//! The pipeline's Kafka topic and dead-letter topic, through the admin API.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use millrace_api::{KafkaSpec, StreamPipelineSpec, TopicSpec, TopicStatus};
use rdkafka::admin::{AdminOptions, AlterConfig, ConfigSource, NewPartitions, ResourceSpecifier};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer, ProducerContext};

use super::PartOutcome;
use super::ownership::{self, claim_topic};
use crate::clients::create_topics::TopicToCreate;
use crate::clients::kafka::{Admin, client_config, unavailable};
use crate::clients::native::{DescribeError, TopicShape, describe_topic};
use crate::context::Context;
use crate::credentials::KafkaAuth;
use crate::desired::Pipeline;
use crate::desired::ownership::{Claim, Owner};
use crate::desired::topic::{
    ObservedTopic, TopicAction, plan_dead_letter, plan_topic, unmanaged_differences,
};
use crate::error::{Error, Result};
use crate::events::Notice;
use crate::metrics::Target;

/// How the brokers turned the client away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The SASL login was refused.
    Login(String),
    /// The TLS handshake failed.
    Tls(String),
}

/// Notices librdkafka reporting a refused SASL login or a failed TLS
/// handshake. The admin client cannot tell: its log and error events go to
/// a queue nothing polls, and its request just fails as if the broker were
/// unreachable. So when a request with credentials or TLS fails,
/// [`probe_refusal`] connects a short-lived producer with this context and
/// polls it.
#[derive(Default)]
pub struct AuthContext {
    refused: Mutex<Option<Refusal>>,
}

impl AuthContext {
    /// The last refusal seen.
    fn refusal(&self) -> Option<Refusal> {
        self.refused
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn note(&self, message: &str) {
        use millrace_api::auth_failure::{kafka_sasl_refusal, kafka_tls_failure};
        let seen = kafka_tls_failure(message)
            .map(Refusal::Tls)
            .or_else(|| kafka_sasl_refusal(message).map(Refusal::Login));
        if let Some(seen) = seen {
            let mut refused = self.refused.lock().unwrap_or_else(|e| e.into_inner());
            *refused = Some(seen);
        }
    }
}

impl ClientContext for AuthContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        self.note(message);
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => tracing::error!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Warning => tracing::warn!(target: "librdkafka", "{fac} {message}"),
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(target: "librdkafka", "{fac} {message}")
            }
            RDKafkaLogLevel::Debug => tracing::debug!(target: "librdkafka", "{fac} {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Authentication)
            && !reason.to_ascii_lowercase().contains("authentication")
        {
            self.note(&format!("SASL authentication error: {reason}"));
        } else {
            self.note(reason);
        }
        tracing::error!(target: "librdkafka", "{error}: {reason}");
    }
}

const TIMEOUT: Duration = Duration::from_secs(10);

impl ProducerContext for AuthContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

/// How long [`probe_refusal`] waits for the broker to answer the login.
const PROBE: Duration = Duration::from_secs(4);

/// Whether the broker refuses `auth`: librdkafka's words for it, from a
/// short-lived producer that logs in with the same settings.
async fn probe_refusal(spec: &KafkaSpec, auth: &KafkaAuth) -> Option<Refusal> {
    let config = client_config(spec, Some(auth));
    tokio::task::spawn_blocking(move || {
        let producer: BaseProducer<AuthContext> =
            config.create_with_context(AuthContext::default()).ok()?;
        // Asking for metadata makes it connect and log in.
        let _ = producer
            .client()
            .fetch_metadata(None, Duration::from_secs(1));
        let deadline = std::time::Instant::now() + PROBE;
        while std::time::Instant::now() < deadline {
            producer.poll(Duration::from_millis(100));
            if let Some(refusal) = producer.context().refusal() {
                return Some(refusal);
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

fn options() -> AdminOptions {
    AdminOptions::new()
        .request_timeout(Some(TIMEOUT))
        .operation_timeout(Some(TIMEOUT))
}

/// A code the broker uses to refuse what the spec asks (retrying the same
/// request cannot help).
fn refused(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::InvalidReplicationFactor
            | RDKafkaErrorCode::InvalidConfig
            | RDKafkaErrorCode::InvalidPartitions
            | RDKafkaErrorCode::InvalidRequest
            | RDKafkaErrorCode::PolicyViolation
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
    )
}

fn op_error(spec: &KafkaSpec, what: String, code: RDKafkaErrorCode) -> Error {
    if refused(code) {
        Error::KafkaRejected(format!("{what}: {code}"))
    } else {
        unavailable(spec, format!("{what}: {code}"))
    }
}

/// The topic as Kafka has it, or `None`.
async fn observe(
    admin: &Arc<Admin>,
    spec: &KafkaSpec,
    name: &str,
) -> Result<Option<ObservedTopic>> {
    let Some(TopicShape {
        partitions,
        replication_factor,
    }) = shape(admin, spec, name).await?
    else {
        return Ok(None);
    };
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(name)], &options())
        .await
        .map_err(|e| unavailable(spec, e))?;
    let mut config = BTreeMap::new();
    for resource in described {
        let resource = resource
            .map_err(|code| op_error(spec, format!("describing config of {name}"), code))?;
        for entry in resource.entries {
            if entry.source == ConfigSource::DynamicTopic
                && let Some(value) = entry.value
            {
                config.insert(entry.name, value);
            }
        }
    }
    Ok(Some(ObservedTopic {
        partitions,
        replication_factor,
        config,
    }))
}

/// Whether the topic exists: its partitions and replication factor
/// only. Where nothing else of a topic is compared (the dead-letter topic
/// is only created when missing), its config is not asked for: the
/// broker's DescribeConfigs answer lists every config entry.
async fn exists(admin: &Arc<Admin>, spec: &KafkaSpec, name: &str) -> Result<bool> {
    Ok(shape(admin, spec, name).await?.is_some())
}

async fn shape(admin: &Arc<Admin>, spec: &KafkaSpec, name: &str) -> Result<Option<TopicShape>> {
    let client = admin.clone();
    let topic = name.to_owned();
    // Off the async threads: the request blocks until the answer.
    let found =
        tokio::task::spawn_blocking(move || describe_topic(client.inner(), &topic, TIMEOUT))
            .await
            .map_err(|e| unavailable(spec, e))?
            .map_err(|e| match e {
                DescribeError::Topic { topic, code } => {
                    op_error(spec, format!("describing topic {topic}"), code)
                }
                e @ DescribeError::Request { .. } => unavailable(spec, e),
            })?;
    Ok(found)
}

/// Creates the topics, in one request (with other pipelines' creations
/// asked for meanwhile): for each, whether it was made now (`false` when
/// the cluster says it exists already).
async fn create(
    ctx: &Context,
    admin: &Admin,
    spec: &KafkaSpec,
    topics: &[TopicToCreate],
) -> Result<Vec<bool>> {
    if topics.is_empty() {
        return Ok(Vec::new());
    }
    ctx.may_write()?;
    let results = admin
        .create_topics_together(topics.to_vec(), options())
        .await;
    ctx.metrics.write(Target::Kafka);
    topics
        .iter()
        .zip(results)
        .map(
            |(topic, created)| match created.map_err(|e| unavailable(spec, e))? {
                Ok(()) => Ok(true),
                Err(RDKafkaErrorCode::TopicAlreadyExists) => Ok(false),
                Err(code) => Err(op_error(
                    spec,
                    format!("creating topic {}", topic.name),
                    code,
                )),
            },
        )
        .collect()
}

/// The topic `name` that `action` makes, if it makes one.
fn creation(name: &str, action: &TopicAction) -> Option<TopicToCreate> {
    match action {
        TopicAction::Create {
            partitions,
            replication_factor,
            config,
        } => Some(TopicToCreate {
            name: name.to_owned(),
            partitions: *partitions,
            replication_factor: *replication_factor,
            config: config.clone(),
        }),
        _ => None,
    }
}

fn creation_note(topic: &TopicToCreate) -> String {
    format!(
        "created topic {} with {} partitions, replication factor {}",
        topic.name, topic.partitions, topic.replication_factor
    )
}

async fn execute(
    ctx: &Context,
    admin: &Admin,
    spec: &KafkaSpec,
    name: &str,
    action: &TopicAction,
) -> Result<Option<String>> {
    match action {
        TopicAction::Create { .. } => {
            let topics: Vec<TopicToCreate> = creation(name, action).into_iter().collect();
            let made = create(ctx, admin, spec, &topics).await?;
            Ok(topics.first().filter(|_| made == [true]).map(creation_note))
        }
        TopicAction::IncreasePartitions(n) => {
            ctx.may_write()?;
            let results = admin
                .create_partitions([&NewPartitions::new(name, *n as usize)], &options())
                .await
                .map_err(|e| unavailable(spec, e))?;
            ctx.metrics.write(Target::Kafka);
            for r in results {
                r.map_err(|(t, code)| op_error(spec, format!("adding partitions to {t}"), code))?;
            }
            Ok(Some(format!(
                "raised the partitions of topic {name} to {n}"
            )))
        }
        TopicAction::SetConfig(config) => {
            let mut alter = AlterConfig::new(ResourceSpecifier::Topic(name));
            for (k, v) in config {
                alter = alter.set(k, v);
            }
            ctx.may_write()?;
            let results = admin
                .alter_configs([&alter], &options())
                .await
                .map_err(|e| unavailable(spec, e))?;
            ctx.metrics.write(Target::Kafka);
            for r in results {
                r.map_err(|(_, code)| op_error(spec, format!("setting config of {name}"), code))?;
            }
            let shown: Vec<String> = config.iter().map(|(k, v)| format!("{k}={v}")).collect();
            Ok(Some(format!(
                "set the config of topic {name} to the declared one ({})",
                if shown.is_empty() {
                    "broker defaults".to_owned()
                } else {
                    shown.join(", ")
                }
            )))
        }
    }
}

pub async fn reconcile_topic(
    ctx: &Context,
    p: &Pipeline<'_>,
    auth: Option<&KafkaAuth>,
) -> PartOutcome<TopicStatus> {
    let spec = &p.sp.spec;
    let mut events = Vec::new();
    let result = reconcile_inner(ctx, p, auth, &mut events).await;
    // Only a failed request with credentials can be a refused login.
    let refusal = match (&result, auth) {
        (Err(Error::Kafka { .. }), Some(auth)) => probe_refusal(&spec.kafka, auth).await,
        _ => None,
    };
    let what = format!("topic {}", spec.kafka.topic.name);
    let outcome = match (result, refusal) {
        (Ok(outcome), _) => outcome,
        (Err(Error::Kafka { bootstrap, message }), Some(Refusal::Login(refused))) => {
            PartOutcome::failed(
                Error::KafkaAuth {
                    bootstrap,
                    secret: spec.kafka.credentials_secret_ref.as_ref().map_or_else(
                        || "(none)".to_owned(),
                        |r| format!("{}/{}", p.namespace, r.name),
                    ),
                    message: format!("{refused} ({message})"),
                },
                &what,
            )
        }
        (Err(Error::Kafka { bootstrap, message }), Some(Refusal::Tls(failed))) => {
            PartOutcome::failed(
                Error::KafkaTls {
                    bootstrap,
                    message: format!("{failed} ({message})"),
                },
                &what,
            )
        }
        (Err(e), _) => PartOutcome::failed(e, &what),
    };
    outcome.with_events(events)
}

/// Records this pipeline as the owner of each of `topics` (the topic and
/// its dead-letter topic): the ones recorded just now, or the conflict when
/// another pipeline owns one.
async fn claim_topics(
    ctx: &Context,
    p: &Pipeline<'_>,
    cluster: &str,
    topics: &[&str],
) -> Result<std::result::Result<Vec<String>, PartOutcome<TopicStatus>>> {
    let owner = p.owner_id();
    let mut claimed = Vec::new();
    for topic in topics {
        match claim_topic(ctx, &owner, cluster, topic).await? {
            Claim::Ours => {}
            Claim::Free => claimed.push((*topic).to_owned()),
            Claim::Theirs(other) => {
                return Ok(Err(PartOutcome::conflict(
                    crate::desired::ownership::conflict_message(
                        &format!("topic {topic}"),
                        &other,
                        &format!(
                            "once {other} is deleted with deletionPolicy Retain, delete {} and this pipeline takes the topic",
                            ownership::record_name(ctx, cluster, topic)
                        ),
                    ),
                )));
            }
        }
    }
    Ok(Ok(claimed))
}

/// The Events for topics created and ownership recorded in one reconcile:
/// a new pipeline's topic, its dead-letter topic and their records are one
/// Event, `TopicCreated`; a record alone (a topic that was there before)
/// is `TopicClaimed`.
fn creation_notices(
    created: &[(String, String)],
    claimed: &[String],
    dead_letter: &str,
    record: impl Fn(&str) -> String,
) -> Vec<Notice> {
    let (fresh, adopted): (Vec<&String>, Vec<&String>) = claimed
        .iter()
        .partition(|t| created.iter().any(|(c, _)| c == *t));
    let mut out = Vec::new();
    if !created.is_empty() {
        let mut note = created
            .iter()
            .map(|(_, note)| note.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        if !fresh.is_empty() {
            let records: Vec<String> = fresh.iter().map(|t| record(t)).collect();
            note.push_str(&format!(
                "; recorded as this pipeline's in {}",
                records.join(" and ")
            ));
        }
        let reason = if created.len() == 1 && created[0].0 == dead_letter {
            "DeadLetterTopicCreated"
        } else {
            "TopicCreated"
        };
        out.push(Notice::normal(reason, note));
    }
    for topic in adopted {
        out.push(Notice::normal(
            "TopicClaimed",
            format!(
                "recorded this pipeline as the owner of topic {topic} ({})",
                record(topic)
            ),
        ));
    }
    out
}

/// Whether this pipeline's status last saw `topic`, so a topic deleted by
/// hand is told apart from one never made.
fn topic_existed(p: &Pipeline<'_>, topic: &str) -> bool {
    p.sp.status
        .as_ref()
        .and_then(|s| s.topic.as_ref())
        .is_some_and(|t| t.name == topic || t.dead_letter_topic.as_deref() == Some(topic))
}

async fn reconcile_inner(
    ctx: &Context,
    p: &Pipeline<'_>,
    auth: Option<&KafkaAuth>,
    events: &mut Vec<Notice>,
) -> Result<PartOutcome<TopicStatus>> {
    let spec = &p.sp.spec;
    let kafka = &spec.kafka;
    let declared: &TopicSpec = &kafka.topic;
    let admin = ctx.kafka.get(kafka, auth)?;
    let dlq = spec.dead_letter_topic();
    let cluster = ownership::cluster_id(&admin, kafka).await?;
    let claimed =
        match claim_topics(ctx, p, &cluster, &[declared.name.as_str(), dlq.as_str()]).await? {
            Ok(claimed) => claimed,
            Err(conflict) => return Ok(conflict),
        };
    if !declared.managed {
        return use_as_is(&admin, kafka, declared, &dlq).await;
    }
    // (topic, note) of each topic created now, announced as one Event.
    let mut created: Vec<(String, String)> = Vec::new();
    if crate::desired::finalizer::cleans_up(spec.deletion_policy) {
        ctx.remember(&p.uid, |r| {
            r.topics = vec![declared.name.clone(), dlq.clone()]
        });
    }
    // One after the other: each describe holds a blocking thread, and two
    // at once in each of 16 reconciles grew the operator by 15 threads and
    // 8 MiB at 1,000 pipelines (bench/OPERATOR-SCALE.md, "CreateTopics").
    let observed = observe(&admin, kafka, &declared.name).await?;
    let dlq_exists = exists(&admin, kafka, &dlq).await?;
    let plan = plan_topic(declared, observed.as_ref());
    // The topic and the dead-letter topic a new pipeline needs are created
    // in one request (the cluster takes one at a time).
    let dlq_create = plan_dead_letter(declared, dlq_exists);
    let to_create: Vec<TopicToCreate> = plan
        .actions
        .iter()
        .filter_map(|a| creation(&declared.name, a))
        .chain(dlq_create.iter().filter_map(|a| creation(&dlq, a)))
        .collect();
    let made = create(ctx, &admin, kafka, &to_create).await?;
    let mut recreated = Vec::new();
    for (topic, made) in to_create.iter().zip(made) {
        // A create that finds the topic there after all (made a moment ago
        // and not yet visible to the broker that answered the describe) is
        // neither a creation nor a loss: nothing is announced, and the next
        // reconcile reads the topic.
        if !made {
            continue;
        }
        let (name, note) = (topic.name.as_str(), creation_note(topic));
        let is_dlq = name == dlq;
        if topic_existed(p, name) {
            recreated.push(name.to_owned());
            events.push(Notice::warning(
                "TopicRecreated",
                if is_dlq {
                    format!(
                        "dead-letter topic {dlq} was gone (deleted outside millrace): {note}; the dead letters it held are lost"
                    )
                } else {
                    format!(
                        "topic {name} was gone (deleted outside millrace): {note}; the records it held are lost"
                    )
                },
            ));
        } else if is_dlq {
            created.push((dlq.clone(), format!("dead-letter topic: {note}")));
        } else {
            created.push((name.to_owned(), note));
        }
    }
    for action in &plan.actions {
        let reason = match action {
            TopicAction::Create { .. } => continue,
            TopicAction::IncreasePartitions(_) => "PartitionsIncreased",
            TopicAction::SetConfig(_) => "TopicConfigApplied",
        };
        if let Some(note) = execute(ctx, &admin, kafka, &declared.name, action).await? {
            events.push(Notice::normal(reason, note));
        }
    }
    events.extend(creation_notices(&created, &claimed, &dlq, |t| {
        ownership::record_name(ctx, &cluster, t)
    }));
    let partitions = match &observed {
        Some(o) => o.partitions.max(declared.partitions),
        None => declared.partitions,
    };
    let recreated_at = if !recreated.is_empty() {
        Some(Time(Timestamp::now()))
    } else {
        p.sp.status
            .as_ref()
            .and_then(|s| s.topic.as_ref())
            .filter(|t| t.name == declared.name)
            .and_then(|t| t.recreated.clone())
    };
    let again = recreated_at.as_ref().map_or(String::new(), |at| {
        format!(
            "; it was deleted outside millrace and created again, empty, at {}",
            at.0
        )
    });
    let status = TopicStatus {
        name: declared.name.clone(),
        partitions: Some(partitions),
        dead_letter_topic: Some(dlq.clone()),
        recreated: recreated_at,
    };
    Ok(if plan.unsupported.is_empty() {
        PartOutcome::ready(
            format!(
                "topic {} has {partitions} partitions, replication factor {} and the declared config; dead letters go to {dlq}{again}",
                declared.name, declared.replication_factor
            ),
            status,
        )
    } else {
        PartOutcome::not_supported(&plan.unsupported, status)
    })
}

/// `managed: false`: the topic and the dead-letter topic are checked and
/// reported, never created or altered.
async fn use_as_is(
    admin: &Arc<Admin>,
    kafka: &KafkaSpec,
    declared: &TopicSpec,
    dlq: &str,
) -> Result<PartOutcome<TopicStatus>> {
    let Some(observed) = observe(admin, kafka, &declared.name).await? else {
        return Err(Error::UnmanagedTopicMissing {
            what: format!("topic {}", declared.name),
        });
    };
    if !exists(admin, kafka, dlq).await? {
        return Err(Error::UnmanagedTopicMissing {
            what: format!("dead-letter topic {dlq}"),
        });
    }
    let differences = unmanaged_differences(declared, &observed);
    let noted = if differences.is_empty() {
        String::new()
    } else {
        format!(" ({}; not changed)", differences.join(", "))
    };
    Ok(PartOutcome::ready(
        format!(
            "topic {} is used as it is (managed: false): {} partitions, replication factor {}{noted}; dead letters go to {dlq}",
            declared.name, observed.partitions, observed.replication_factor
        ),
        TopicStatus {
            name: declared.name.clone(),
            partitions: Some(observed.partitions),
            dead_letter_topic: Some(dlq.to_owned()),
            recreated: None,
        },
    ))
}

/// What `deletionPolicy: Delete` did with the topics.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Deleted {
    pub deleted: Vec<String>,
    /// Topics left in place, each with who is recorded as its owner (none:
    /// never recorded as this pipeline's).
    pub kept: Vec<(String, Option<Owner>)>,
    /// Topics left in place because millrace does not manage them
    /// (`managed: false`).
    pub unmanaged: Vec<String>,
}

/// `deletionPolicy: Delete`: removes the topic and the dead-letter topic,
/// each only if it is recorded as this pipeline's, then the records.
pub async fn delete_topics(
    ctx: &Context,
    spec: &StreamPipelineSpec,
    owner: &Owner,
    remembered: &[String],
    auth: Option<&KafkaAuth>,
) -> Result<Deleted> {
    let kafka = &spec.kafka;
    let admin = ctx.kafka.get(kafka, auth)?;
    let cluster = ownership::cluster_id(&admin, kafka).await?;
    let dlq = spec.dead_letter_topic();
    let mut outcome = Deleted::default();
    if !kafka.topic.managed {
        for name in [kafka.topic.name.as_str(), dlq.as_str()] {
            ownership::release_topic(ctx, owner, &cluster, name).await?;
        }
        outcome.unmanaged = vec![kafka.topic.name.clone(), dlq];
        return Ok(outcome);
    }
    let mut names = Vec::new();
    for name in [kafka.topic.name.as_str(), dlq.as_str()] {
        let recorded = ownership::topic_owner(ctx, &cluster, name).await?;
        // A record gone with its namespace: what this process saw recorded.
        let ours = recorded.as_ref() == Some(owner)
            || (recorded.is_none() && remembered.iter().any(|t| t == name));
        if !ours {
            if exists(&admin, kafka, name).await? {
                outcome.kept.push((name.to_owned(), recorded));
            }
            continue;
        }
        if exists(&admin, kafka, name).await? {
            names.push(name);
        }
    }
    if names.is_empty() {
        for name in [kafka.topic.name.as_str(), dlq.as_str()] {
            ownership::release_topic(ctx, owner, &cluster, name).await?;
        }
        return Ok(outcome);
    }
    ctx.may_write()?;
    let results = admin
        .delete_topics(&names, &options())
        .await
        .map_err(|e: KafkaError| unavailable(kafka, e))?;
    ctx.metrics.write(Target::Kafka);
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((t, code)) => return Err(op_error(kafka, format!("deleting topic {t}"), code)),
        }
    }
    outcome.deleted = names.iter().map(|n| (*n).to_owned()).collect();
    for name in [kafka.topic.name.as_str(), dlq.as_str()] {
        ownership::release_topic(ctx, owner, &cluster, name).await?;
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_topic_its_dead_letter_topic_and_their_records_are_one_event() {
        let record = |t: &str| format!("ConfigMap ns/{t}");
        let both = [
            ("t".to_owned(), "created t".to_owned()),
            (
                "t.dlq".to_owned(),
                "dead-letter topic: created t.dlq".to_owned(),
            ),
        ];
        let claimed = ["t".to_owned(), "t.dlq".to_owned()];
        let n = creation_notices(&both, &claimed, "t.dlq", record);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].reason, "TopicCreated");
        assert_eq!(
            n[0].note,
            "created t; dead-letter topic: created t.dlq; recorded as this pipeline's in ConfigMap ns/t and ConfigMap ns/t.dlq"
        );
        // An existing topic adopted, its dead-letter topic created.
        let n = creation_notices(&both[1..], &claimed, "t.dlq", record);
        let reasons: Vec<&str> = n.iter().map(|n| n.reason.as_str()).collect();
        assert_eq!(reasons, ["DeadLetterTopicCreated", "TopicClaimed"]);
        assert!(creation_notices(&[], &[], "t.dlq", record).is_empty());
    }
}
