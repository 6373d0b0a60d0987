//! librdkafka admin requests that rdkafka 0.39 does not wrap, over its C
//! API: DescribeTopics here, and what the offset reader's
//! ListConsumerGroupOffsets ([`super::lag`]) shares with it.

use std::ffi::{CStr, CString, c_char};
use std::time::Duration;

use rdkafka::bindings as rd;
use rdkafka::client::{Client, ClientContext};
use rdkafka::error::RDKafkaErrorCode;

/// Frees what librdkafka allocated, whichever way a caller returns.
pub(super) struct Owned<T> {
    pub(super) ptr: *mut T,
    pub(super) free: unsafe extern "C" fn(*mut T),
}

#[allow(unsafe_code)]
impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if !self.ptr.is_null() {
            // SAFETY: `ptr` came from the librdkafka constructor that
            // `free` belongs to and is freed only here.
            unsafe { (self.free)(self.ptr) }
        }
    }
}

/// What an admin request is sent with, and how its answer is awaited: the
/// request's options (with its timeout set) and the queue the answer
/// arrives on.
pub(super) struct AdminCall {
    pub(super) options: Owned<rd::rd_kafka_AdminOptions_t>,
    pub(super) queue: Owned<rd::rd_kafka_queue_t>,
    timeout_ms: i32,
}

#[allow(unsafe_code)]
impl AdminCall {
    /// Options for `op` on the client `rk`, and a queue of `rk`'s.
    ///
    /// # Safety
    /// `rk` is a live client's handle, and outlives what this returns.
    pub(super) unsafe fn new(
        rk: *mut rd::rd_kafka_t,
        op: rd::rd_kafka_admin_op_t,
        timeout: Duration,
    ) -> Result<Self, String> {
        let timeout_ms = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX - 1_000);
        // SAFETY: `rk` is live (the caller's promise); each pointer made
        // here is freed once, by its `Owned`, and `errstr` outlives the
        // call that writes it.
        unsafe {
            let call = Self {
                options: Owned {
                    ptr: rd::rd_kafka_AdminOptions_new(rk, op),
                    free: rd::rd_kafka_AdminOptions_destroy,
                },
                queue: Owned {
                    ptr: rd::rd_kafka_queue_new(rk),
                    free: rd::rd_kafka_queue_destroy,
                },
                timeout_ms,
            };
            if call.options.ptr.is_null() || call.queue.ptr.is_null() {
                return Err("librdkafka made no request".into());
            }
            let mut errstr = [0 as c_char; 256];
            let err = rd::rd_kafka_AdminOptions_set_request_timeout(
                call.options.ptr,
                timeout_ms,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                return Err(CStr::from_ptr(errstr.as_ptr())
                    .to_string_lossy()
                    .into_owned());
            }
            Ok(call)
        }
    }

    /// The answer to the request sent with these options: an event that
    /// is not an error.
    pub(super) fn answer(&self) -> Result<Owned<rd::rd_kafka_event_t>, String> {
        // SAFETY: the queue is live while `self` is; the event is freed
        // once, by its `Owned`, and its error string is copied before that.
        unsafe {
            // The request timeout bounds the answer; the poll waits a
            // little longer so the timeout arrives as an event, not as
            // nothing.
            let event = Owned {
                ptr: rd::rd_kafka_queue_poll(self.queue.ptr, self.timeout_ms.saturating_add(1_000)),
                free: rd::rd_kafka_event_destroy,
            };
            if event.ptr.is_null() {
                return Err("no answer in time".into());
            }
            let err = rd::rd_kafka_event_error(event.ptr);
            if err != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                let text = rd::rd_kafka_event_error_string(event.ptr);
                return Err(if text.is_null() {
                    RDKafkaErrorCode::from(err).to_string()
                } else {
                    CStr::from_ptr(text).to_string_lossy().into_owned()
                });
            }
            Ok(event)
        }
    }
}

/// A topic's shape as the cluster reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TopicShape {
    pub partitions: i32,
    /// The most replicas any partition has.
    pub replication_factor: i32,
}

#[derive(Debug, thiserror::Error)]
pub enum DescribeError {
    /// The request failed as a whole: no broker answered in time, or the
    /// client could not make it.
    #[error("describing topic {topic}: {message}")]
    Request { topic: String, message: String },
    /// The cluster answered with an error for the topic.
    #[error("describing topic {topic}: {code}")]
    Topic {
        topic: String,
        code: RDKafkaErrorCode,
    },
}

/// `topic`'s partition count and replication factor, or `None` when the
/// cluster has no such topic (or it has no partitions yet).
///
/// A DescribeTopics request rather than `fetch_metadata(Some(topic))`:
/// that one makes librdkafka create its topic and partition objects for
/// the topic, about 5 kB a topic, which it keeps for the client's whole
/// life (bench/OPERATOR-SCALE.md); the admin request's answer is freed
/// with its event. Blocks for up to `timeout` and a second.
#[allow(unsafe_code)]
pub fn describe_topic<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    timeout: Duration,
) -> Result<Option<TopicShape>, DescribeError> {
    let request_failed = |message: String| DescribeError::Request {
        topic: topic.to_owned(),
        message,
    };
    let name = CString::new(topic).map_err(|e| request_failed(e.to_string()))?;
    let rk = client.native_ptr();
    // SAFETY: `rk` is the live client's, borrowed for the whole call; every
    // other pointer passed is either one librdkafka returned just above and
    // has not freed (each is freed once, by its `Owned`), or one owned by a
    // live Rust value (`name`, `names`); librdkafka copies the topic names
    // and the request, so they may be freed once the calls returned. What
    // the result event points to is read before the event is freed.
    unsafe {
        let call = AdminCall::new(
            rk,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBETOPICS,
            timeout,
        )
        .map_err(request_failed)?;
        let mut names = [name.as_ptr()];
        let topics = Owned {
            ptr: rd::rd_kafka_TopicCollection_of_topic_names(names.as_mut_ptr(), names.len()),
            free: rd::rd_kafka_TopicCollection_destroy,
        };
        if topics.ptr.is_null() {
            return Err(request_failed("librdkafka made no request".into()));
        }
        rd::rd_kafka_DescribeTopics(rk, topics.ptr, call.options.ptr, call.queue.ptr);
        let event = call.answer().map_err(request_failed)?;
        let result = rd::rd_kafka_event_DescribeTopics_result(event.ptr);
        if result.is_null() {
            return Err(request_failed("an answer of another kind".into()));
        }
        let mut count = 0usize;
        let list = rd::rd_kafka_DescribeTopics_result_topics(result, &mut count);
        let descriptions: &[*const rd::rd_kafka_TopicDescription_t] = match count {
            0 => &[],
            _ if list.is_null() => return Err(request_failed("an empty answer".into())),
            n => std::slice::from_raw_parts(list, n),
        };
        let Some(&description) = descriptions.iter().find(|d| {
            !d.is_null() && {
                let found = rd::rd_kafka_TopicDescription_name(**d);
                !found.is_null() && CStr::from_ptr(found).to_bytes() == topic.as_bytes()
            }
        }) else {
            return Err(request_failed("the answer does not name the topic".into()));
        };
        let error = rd::rd_kafka_TopicDescription_error(description);
        if !error.is_null() {
            let code = RDKafkaErrorCode::from(rd::rd_kafka_error_code(error));
            return match code {
                // Being created or deleted this moment counts as not there:
                // the caller's create then says whether it exists.
                RDKafkaErrorCode::UnknownTopicOrPartition
                | RDKafkaErrorCode::LeaderNotAvailable => Ok(None),
                code => Err(DescribeError::Topic {
                    topic: topic.to_owned(),
                    code,
                }),
            };
        }
        let mut count = 0usize;
        let list = rd::rd_kafka_TopicDescription_partitions(description, &mut count);
        let partitions: &[*const rd::rd_kafka_TopicPartitionInfo_t] = match count {
            0 => return Ok(None),
            _ if list.is_null() => return Err(request_failed("partitions missing".into())),
            n => std::slice::from_raw_parts(list, n),
        };
        let mut replication_factor = 0usize;
        for &partition in partitions.iter().filter(|p| !p.is_null()) {
            let mut replicas = 0usize;
            rd::rd_kafka_TopicPartitionInfo_replicas(partition, &mut replicas);
            replication_factor = replication_factor.max(replicas);
        }
        Ok(Some(TopicShape {
            partitions: i32::try_from(partitions.len()).unwrap_or(i32::MAX),
            replication_factor: i32::try_from(replication_factor).unwrap_or(i32::MAX),
        }))
    }
}
