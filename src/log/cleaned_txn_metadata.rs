//! What the log cleaner knows of the transactions in the range it reads (Kafka's
//! `CleanedTransactionMetadata`), fed batch by batch in offset order.
//!
//! The cleaner works only below the last stable offset, so every transaction with data there is decided,
//! and the aborted ones are exactly the `.txnindex` entries overlapping the range. They are added ahead of
//! the batches that reach them ([`CleanedTransactionMetadata::add_aborted_txns`], Kafka's
//! `collectAbortedTransactions`); a data batch of one is discarded whatever its keys and never enters the
//! offset map. A marker may go once no batch of its transaction is left: an ABORT marker is kept (and its
//! entry written to the cleaned segment's index) while some batch of its transaction was seen in this pass;
//! a COMMIT marker likewise. A marker that may go is first stamped with a delete horizon and dropped by a
//! later pass after it (the cleaner's job), so a consumer that read the data also reads the marker.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::log::producer_state::EndTxnMarker;
use crate::log::record_batch::RecordBatchHeader;
use crate::log::txn_index::AbortedTxn;

/// One aborted transaction the cleaner has reached (its first offset is behind it) but whose marker it has
/// not read yet.
#[derive(Clone, Copy, Debug)]
struct OngoingAbortedTxn {
    txn: AbortedTxn,
    /// A data batch of it was read in this pass (so the marker must stay).
    batch_seen: bool,
}

/// See the module doc. Memory: the aborted transactions added and not yet reached, and one entry per
/// producer with a transaction in progress at the read position.
#[derive(Debug, Default)]
pub struct CleanedTransactionMetadata {
    /// Aborted transactions not reached yet, by first offset.
    pending: VecDeque<AbortedTxn>,
    /// Everything below this offset was offered to `add_aborted_txns` already: entries starting below it
    /// are duplicates of ones added before (an entry overlaps every range between its first batch and its
    /// marker).
    added_below: Option<i64>,
    aborted: HashMap<i64, OngoingAbortedTxn>,
    /// Producers with a batch of a non-aborted transaction read since their last marker.
    committed: HashSet<i64>,
}

/// What a marker's read decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MarkerDecision {
    /// No batch of the marker's transaction is left (or it is an empty control batch): it may go once its
    /// delete horizon has passed.
    pub removable: bool,
    /// The aborted transaction the kept ABORT marker ends: its entry belongs in the cleaned segment's
    /// transaction index.
    pub keep_index_entry: Option<AbortedTxn>,
}

impl CleanedTransactionMetadata {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the aborted transactions overlapping `[from, to)` (as the `.txnindex` lists them, marker
    /// order). Ranges are offered in increasing, contiguous order; an entry already offered by an earlier
    /// range (it began below that range's end) is ignored.
    pub fn add_aborted_txns(&mut self, txns: Vec<AbortedTxn>, from: i64, to: i64) {
        debug_assert!(
            self.added_below.is_none_or(|b| b == from),
            "ranges are contiguous: {from} after {:?}",
            self.added_below
        );
        let added_below = self.added_below.unwrap_or(i64::MIN);
        let mut fresh: Vec<AbortedTxn> = txns
            .into_iter()
            .filter(|t| t.first_offset >= added_below)
            .collect();
        fresh.sort_unstable_by_key(|t| t.first_offset);
        debug_assert!(
            self.pending
                .back()
                .zip(fresh.first())
                .is_none_or(|(a, b)| a.first_offset <= b.first_offset),
            "ranges are offered in offset order"
        );
        self.pending.extend(fresh);
        self.added_below = Some(added_below.max(to));
    }

    /// Moves the aborted transactions that begin at or below `offset` to the reached set.
    fn reach(&mut self, offset: i64) {
        while let Some(txn) = self.pending.front().copied() {
            if txn.first_offset > offset {
                break;
            }
            self.pending.pop_front();
            let ongoing = OngoingAbortedTxn {
                txn,
                batch_seen: false,
            };
            // A producer has one transaction at a time: an earlier one still here lost its marker (an
            // index entry without one), and gives way.
            self.aborted
                .entry(txn.producer_id)
                .and_modify(|o| {
                    if o.txn.last_offset < txn.first_offset {
                        *o = ongoing;
                    }
                })
                .or_insert(ongoing);
        }
    }

    /// A data batch was read; true when it belongs to an aborted transaction (discard it).
    pub fn on_batch_read(&mut self, h: &RecordBatchHeader<'_>) -> bool {
        self.reach(h.last_offset());
        if !h.is_transactional() {
            return false;
        }
        match self.aborted.get_mut(&h.producer_id()) {
            Some(ongoing) => {
                ongoing.batch_seen = true;
                true
            }
            None => {
                self.committed.insert(h.producer_id());
                false
            }
        }
    }

    /// A control batch was read, holding `marker` (None: an empty control batch, whose transaction was
    /// cleaned away already). `unreadable` control batches are kept with the index entry they end, if any.
    pub(crate) fn on_control_batch_read(
        &mut self,
        h: &RecordBatchHeader<'_>,
        marker: Result<Option<EndTxnMarker>, String>,
    ) -> MarkerDecision {
        self.reach(h.last_offset());
        let pid = h.producer_id();
        let keep = |entry: Option<AbortedTxn>| MarkerDecision {
            removable: false,
            keep_index_entry: entry,
        };
        match marker {
            Ok(None) => MarkerDecision {
                removable: true,
                keep_index_entry: None,
            },
            Ok(Some(m)) if !m.commit => match self.aborted.remove(&pid) {
                Some(ongoing) if ongoing.batch_seen => keep(Some(ongoing.txn)),
                _ => MarkerDecision {
                    removable: true,
                    keep_index_entry: None,
                },
            },
            Ok(Some(_)) => MarkerDecision {
                removable: !self.committed.remove(&pid),
                keep_index_entry: None,
            },
            Err(_) => {
                // Not knowing what it ends, keep it and whatever index entry names it.
                let entry = self
                    .aborted
                    .get(&pid)
                    .filter(|o| o.txn.last_offset == h.base_offset())
                    .map(|o| o.txn);
                if entry.is_some() {
                    self.aborted.remove(&pid);
                }
                self.committed.remove(&pid);
                keep(entry)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch_builder::{BatchBuilder, end_transaction_marker};
    use crate::log::producer_state::read_end_txn_marker;
    use crate::log::record_batch::set_base_offset;

    fn data(pid: i64, base: i64, transactional: bool) -> Vec<u8> {
        let mut b = BatchBuilder::new()
            .producer(pid, 0, 0)
            .transactional(transactional)
            .base_offset(base);
        b.append(1, Some(b"k"), Some(b"v"), &[]).unwrap();
        b.build().unwrap().to_vec()
    }

    fn marker(pid: i64, base: i64, commit: bool) -> Vec<u8> {
        let mut m = end_transaction_marker(pid, 0, commit, 0, 1)
            .unwrap()
            .to_vec();
        set_base_offset(&mut m, base);
        m
    }

    fn read_marker(meta: &mut CleanedTransactionMetadata, batch: &[u8]) -> MarkerDecision {
        let h = RecordBatchHeader::parse(batch).unwrap();
        meta.on_control_batch_read(&h, read_end_txn_marker(batch))
    }

    fn read_data(meta: &mut CleanedTransactionMetadata, batch: &[u8]) -> bool {
        meta.on_batch_read(&RecordBatchHeader::parse(batch).unwrap())
    }

    #[test]
    fn aborted_batches_are_discarded_and_their_marker_kept_while_seen() {
        let aborted = AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 3,
            last_stable_offset: 4,
        };
        let mut meta = CleanedTransactionMetadata::new();
        meta.add_aborted_txns(vec![aborted], 0, 10);
        // The same entry offered again by the next range is not added twice.
        meta.add_aborted_txns(vec![aborted], 10, 20);
        assert!(read_data(&mut meta, &data(1, 0, true)));
        assert!(
            !read_data(&mut meta, &data(2, 1, true)),
            "another producer's committed txn"
        );
        assert!(
            !read_data(&mut meta, &data(3, 2, false)),
            "not transactional"
        );
        assert_eq!(
            read_marker(&mut meta, &marker(1, 3, false)),
            MarkerDecision {
                removable: false,
                keep_index_entry: Some(aborted)
            }
        );
        assert!(!read_marker(&mut meta, &marker(2, 4, true)).removable);
        // Producer 1's next transaction is not the aborted one.
        assert!(!read_data(&mut meta, &data(1, 5, true)));
        assert!(!read_marker(&mut meta, &marker(1, 6, true)).removable);
        // Markers whose transaction left no batch may go.
        assert!(read_marker(&mut meta, &marker(2, 7, true)).removable);
        assert!(read_marker(&mut meta, &marker(5, 8, false)).removable);
    }

    #[test]
    fn an_abort_marker_without_batches_left_is_removable_and_drops_its_entry() {
        let mut meta = CleanedTransactionMetadata::new();
        meta.add_aborted_txns(
            vec![AbortedTxn {
                producer_id: 1,
                first_offset: 0,
                last_offset: 3,
                last_stable_offset: 4,
            }],
            0,
            10,
        );
        assert_eq!(
            read_marker(&mut meta, &marker(1, 3, false)),
            MarkerDecision {
                removable: true,
                keep_index_entry: None
            }
        );
    }

    #[test]
    fn an_index_entry_without_its_marker_gives_way_to_the_producers_next_aborted_txn() {
        let stale = AbortedTxn {
            producer_id: 1,
            first_offset: 0,
            last_offset: 1,
            last_stable_offset: 2,
        };
        let next = AbortedTxn {
            producer_id: 1,
            first_offset: 5,
            last_offset: 6,
            last_stable_offset: 7,
        };
        let mut meta = CleanedTransactionMetadata::new();
        meta.add_aborted_txns(vec![stale, next], 0, 10);
        assert!(read_data(&mut meta, &data(1, 0, true)));
        // No marker at 1: the next transaction's batch is still known aborted, and its marker keeps it.
        assert!(read_data(&mut meta, &data(1, 5, true)));
        assert_eq!(
            read_marker(&mut meta, &marker(1, 6, false)).keep_index_entry,
            Some(next)
        );
    }
}
