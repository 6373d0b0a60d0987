//! Rows of one partition written as one unlogged batch
//! (`spec.runner.batch`).
//!
//! The consumer reads up to `maxRecords` records (all that are there, or
//! what comes within `maxDelayMs`) and hands them to one task, which maps
//! each record once for every table, groups the rows by their serialized
//! partition key and writes each group as one request: a single row as its
//! own statement, several as an unlogged batch. Rows with one partition key
//! are one mutation on one replica set, also when they are rows of several
//! tables of the keyspace partitioned alike (a record's fan-out): Cassandra
//! applies the batch as one write (and does not apply its size limits for
//! batches across partitions), so it costs the cluster less than its rows
//! one by one, and never makes a coordinator do another node's work.
//!
//! Each row keeps its own `USING TIMESTAMP` from the partition's chain, so
//! the order of rows inside a batch, or of batches, changes nothing: the
//! latest version of a key still wins. A batch Cassandra refuses for its
//! content is written again row by row, so only the rows at fault are
//! dead-lettered, with the same reasons as without batches.

use std::time::Instant;

use bytes::Bytes;
use millrace_api::KafkaRecordParts;
use scylla::statement::batch::{Batch, BatchType};
use tokio::sync::OwnedSemaphorePermit;

use super::offsets::Ticket;
use super::{Decoded, Outcome, Record, Refusal, RowWrite, Tracker, Writer, lock};

/// The most record bytes one batch carries. Cassandra refuses a mutation
/// above half a commit log segment (16 MiB by default); far below that,
/// a larger batch only makes one replica's write longer.
pub(super) const MAX_BATCH_BYTES: usize = 1 << 20;

/// A record read for a batch, with what finishes it.
pub(super) struct Pending {
    pub record: Record,
    /// The record already decoded, when the consumer had to read its write
    /// time.
    pub decoded: Option<Decoded>,
    pub ticket: Ticket,
    /// Its write in flight ([`super::run`]'s semaphore).
    pub permit: Option<OwnedSemaphorePermit>,
}

/// Groups rows by partition: the indices of `keys` with equal keys, in
/// their order, split so that no group has more than `max_rows` rows or
/// (past its first row) more than `max_bytes` of `sizes`. A row without a
/// key (one the driver could not compute) is a group of its own.
pub(super) fn group(
    keys: &[Option<Bytes>],
    sizes: &[usize],
    max_rows: usize,
    max_bytes: usize,
) -> Vec<Vec<usize>> {
    let max_rows = max_rows.max(1);
    let mut groups: Vec<Vec<usize>> = Vec::new();
    // The open group of each key, with its bytes so far.
    let mut open: std::collections::HashMap<&Bytes, (usize, usize)> =
        std::collections::HashMap::new();
    for (i, key) in keys.iter().enumerate() {
        let size = sizes.get(i).copied().unwrap_or(0);
        let Some(key) = key else {
            groups.push(vec![i]);
            continue;
        };
        match open.get_mut(key) {
            Some((at, bytes))
                if groups[*at].len() < max_rows && bytes.saturating_add(size) <= max_bytes =>
            {
                groups[*at].push(i);
                *bytes += size;
            }
            _ => {
                open.insert(key, (groups.len(), size));
                groups.push(vec![i]);
            }
        }
    }
    groups
}

/// A table's row of one record, in a group.
struct Row<'w> {
    record: usize,
    /// The table's index in [`Writer::tables`].
    table: usize,
    write: RowWrite<'w>,
}

impl Writer {
    /// Writes the rows of `chunk`'s records, each partition's rows as one
    /// request, dead-letters what cannot be written, and finishes every
    /// record (its offset, its permit).
    pub(super) async fn handle_chunk(
        &self,
        chunk: Vec<Pending>,
        max_rows: usize,
        tracker: &Tracker,
    ) {
        let mut values: Vec<Option<Decoded>> = Vec::with_capacity(chunk.len());
        let mut pending = Vec::with_capacity(chunk.len());
        for mut p in chunk {
            let decoded = p.decoded.take();
            values.push(self.value_of(&p.record, decoded).await);
            pending.push(p);
        }
        // Per record: each table's refusal, and the tries Cassandra timed
        // out.
        let mut refusals: Vec<Vec<(usize, Refusal)>> = vec![Vec::new(); pending.len()];
        let mut timed_out = vec![0u64; pending.len()];
        let mut rows: Vec<Row<'_>> = Vec::with_capacity(pending.len() * self.tables.len());
        for (t, table) in self.tables.iter().enumerate() {
            for (i, p) in pending.iter().enumerate() {
                let value = match &values[i] {
                    None => None,
                    Some(Ok(v)) => Some(v),
                    Some(Err(_)) => continue,
                };
                let parts = KafkaRecordParts {
                    key: p.record.key.as_deref(),
                    timestamp_ms: p.record.timestamp_ms,
                    headers: &p.record.headers,
                };
                match self.statement_for(table, &p.record, value, &parts) {
                    Ok(write) => rows.push(Row {
                        record: i,
                        table: t,
                        write,
                    }),
                    Err(refusal) => refusals[i].push((t, refusal)),
                }
            }
        }
        // Grouped across tables too: rows of two tables of the keyspace
        // with the same partition key (bytes) are one mutation in
        // Cassandra, as a fan-out of one record to tables partitioned alike.
        let keys: Vec<Option<Bytes>> = rows
            .iter()
            .map(|r| {
                r.write
                    .statement
                    .compute_partition_key(&r.write.values)
                    .ok()
            })
            .collect();
        let sizes: Vec<usize> = rows
            .iter()
            .map(|r| {
                pending[r.record]
                    .record
                    .payload
                    .as_ref()
                    .map_or(0, Vec::len)
            })
            .collect();
        let mut rows: Vec<Option<Row<'_>>> = rows.into_iter().map(Some).collect();
        let max_rows = max_rows.saturating_mul(self.tables.len());
        let groups: Vec<Vec<Row<'_>>> = group(&keys, &sizes, max_rows, MAX_BATCH_BYTES)
            .into_iter()
            .map(|g| g.into_iter().filter_map(|i| rows[i].take()).collect())
            .collect();
        // Every partition's request at once, as the records' own writes
        // would be without batches.
        let written =
            futures::future::join_all(groups.into_iter().map(|g| self.write_group(g))).await;
        for (i, t, result, tries) in written.into_iter().flatten() {
            timed_out[i] += tries;
            if let Err(refusal) = result {
                refusals[i].push((t, refusal));
            }
        }
        for (i, p) in pending.into_iter().enumerate() {
            // A record that could not be decoded reached no table.
            let refused = match &values[i] {
                Some(Err(refusal)) => Some(refusal.clone()),
                _ => {
                    let mut r = std::mem::take(&mut refusals[i]);
                    r.sort_by_key(|(t, _)| *t);
                    self.combine(r.into_iter().map(|(t, refusal)| (&self.tables[t], refusal)))
                }
            };
            let outcome = match refused {
                None => Outcome::Written,
                Some((reason, why)) => {
                    let origin = self.origin(&p.record);
                    self.fail(&p.record, reason, &why, origin).await;
                    Outcome::DeadLettered
                }
            };
            lock(tracker).finish_counted(p.ticket, outcome == Outcome::DeadLettered, timed_out[i]);
            drop(p.permit);
        }
    }

    /// Writes one partition's rows: a single row as its own statement,
    /// several as an unlogged batch; a batch refused for its content row by
    /// row. Each row's record and table with its result and the tries
    /// Cassandra timed out.
    async fn write_group(
        &self,
        rows: Vec<Row<'_>>,
    ) -> Vec<(usize, usize, Result<(), Refusal>, u64)> {
        if let [row] = rows.as_slice() {
            let w = &row.write;
            let (result, tries) = self.execute(w.statement, &w.values, w.done, w.what).await;
            return vec![(row.record, row.table, result, tries)];
        }
        let mut batch = Batch::new(BatchType::Unlogged);
        for row in &rows {
            batch.append_statement(row.write.statement.clone());
        }
        if let Some(level) = rows
            .first()
            .and_then(|r| r.write.statement.get_consistency())
        {
            batch.set_consistency(level);
        }
        // Every row carries its own write timestamp: a batch tried
        // again writes the same cells.
        batch.set_is_idempotent(true);
        let values: Vec<&[_]> = rows.iter().map(|r| r.write.values.as_slice()).collect();
        let started = Instant::now();
        let (result, tries) = self
            .retrying(|| Box::pin(self.session.batch(&batch, &values)))
            .await;
        match result {
            Ok(()) => {
                self.metrics
                    .write_latency
                    .observe(started.elapsed().as_secs_f64());
                self.metrics.batches_written.inc();
                self.metrics.batched_rows.inc_by(rows.len() as u64);
                rows.iter()
                    .map(|r| {
                        r.write.done.inc();
                        (r.record, r.table, Ok(()), tries)
                    })
                    .collect()
            }
            Err(e) => {
                tracing::debug!(error = %e, rows = rows.len(), "a batch was refused; writing its rows one by one");
                let one_by_one = rows.iter().map(|r| async move {
                    let w = &r.write;
                    let (result, more) = self.execute(w.statement, &w.values, w.done, w.what).await;
                    (r.record, r.table, result, tries + more)
                });
                futures::future::join_all(one_by_one).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(names: &[Option<&'static str>]) -> Vec<Option<Bytes>> {
        names
            .iter()
            .map(|n| n.map(|s| Bytes::from_static(s.as_bytes())))
            .collect()
    }

    #[test]
    fn rows_group_by_partition_in_their_order() {
        let k = keys(&[Some("a"), Some("b"), Some("a"), None, Some("b"), Some("a")]);
        let sizes = vec![10; k.len()];
        assert_eq!(
            group(&k, &sizes, 10, 1_000),
            vec![vec![0, 2, 5], vec![1, 4], vec![3]],
            "a row without a key is alone"
        );
    }

    #[test]
    fn a_group_stops_at_its_rows_and_bytes() {
        let k = keys(&[Some("a"); 5]);
        assert_eq!(
            group(&k, &[1; 5], 2, 1_000),
            vec![vec![0, 1], vec![2, 3], vec![4]]
        );
        assert_eq!(
            group(&k, &[400; 5], 10, 1_000),
            vec![vec![0, 1], vec![2, 3], vec![4]],
            "at most 1,000 bytes past the first row"
        );
        assert_eq!(
            group(&k, &[5_000, 1, 1, 1, 1], 10, 1_000),
            vec![vec![0], vec![1, 2, 3, 4]],
            "a row larger than the limit is written alone"
        );
    }

    #[test]
    fn different_partitions_never_share_a_group() {
        let k = keys(&[Some("a"), Some("b"), Some("c"), Some("d")]);
        assert_eq!(
            group(&k, &[1; 4], 64, 1_000),
            vec![vec![0], vec![1], vec![2], vec![3]]
        );
    }
}
