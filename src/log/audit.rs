//! Offline audit of a partition's replicas: list every batch a partition directory holds (walking its
//! segment files, no broker running) and compare several replicas' listings up to an offset, normally
//! the high watermark. A replicated log is only safe if every in-sync replica holds the same batches
//! (offsets, leader epochs, producer fields and CRCs) below the high watermark; this checks exactly that,
//! for the fault test and for an operator (`examples/brook-log-diff`).

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::log::RecordBatchHeader;
use crate::log::checkpoint::{LEADER_EPOCH_CHECKPOINT, read_leader_epoch_checkpoint};
use crate::log::record_batch::{CRC_START, MAGIC_V2, RECORD_BATCH_OVERHEAD};
use crate::log::segment::LOG_FILE_SUFFIX;

/// Largest batch the audit reads into memory: a bound against a corrupt `batchLength` (Kafka's
/// `message.max.bytes` can reach this but never a stored batch beyond it).
const MAX_BATCH_BYTES: usize = 1 << 30;

/// Why a partition directory could not be listed.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{path} at byte {position}: {reason}")]
    Corrupt {
        path: PathBuf,
        position: u64,
        reason: String,
    },
}

/// One stored batch, as the audit compares it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchEntry {
    pub base_offset: i64,
    pub last_offset: i64,
    pub partition_leader_epoch: i32,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub is_control: bool,
    pub is_transactional: bool,
    pub record_count: i32,
    /// The stored CRC-32C, and whether it matches the bytes it covers.
    pub crc: u32,
    pub crc_valid: bool,
    /// Whole batch size in bytes (log overhead included).
    pub size: usize,
    /// Where it is: segment base offset and byte position in that segment.
    pub segment: i64,
    pub position: u64,
}

impl BatchEntry {
    /// The fields two replicas must agree on (not where the batch sits in which segment file: segments
    /// roll independently on each replica).
    fn same_batch(&self, other: &BatchEntry) -> bool {
        self.base_offset == other.base_offset
            && self.last_offset == other.last_offset
            && self.partition_leader_epoch == other.partition_leader_epoch
            && self.producer_id == other.producer_id
            && self.producer_epoch == other.producer_epoch
            && self.base_sequence == other.base_sequence
            && self.is_control == other.is_control
            && self.is_transactional == other.is_transactional
            && self.record_count == other.record_count
            && self.crc == other.crc
            && self.size == other.size
    }
}

impl fmt::Display for BatchEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "offsets {}..={} epoch {} producer {}/{} seq {} records {}{}{} crc {:08x}{} size {} (segment {} @{})",
            self.base_offset,
            self.last_offset,
            self.partition_leader_epoch,
            self.producer_id,
            self.producer_epoch,
            self.base_sequence,
            self.record_count,
            if self.is_control { " control" } else { "" },
            if self.is_transactional { " txn" } else { "" },
            self.crc,
            if self.crc_valid { "" } else { " (BAD CRC)" },
            self.size,
            self.segment,
            self.position
        )
    }
}

/// Every batch of one partition directory, in offset order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartitionListing {
    pub dir: PathBuf,
    pub batches: Vec<BatchEntry>,
    /// Bytes after the last whole batch of the last segment (a write cut short by a crash, which the
    /// broker's recovery truncates): not compared.
    pub torn_tail_bytes: u64,
    /// The `leader-epoch-checkpoint` entries (epoch, start offset), when the file exists.
    pub leader_epochs: Option<Vec<(i32, i64)>>,
}

impl PartitionListing {
    /// One past the last listed offset (the log end offset as the files show it), or None when empty.
    pub fn end_offset(&self) -> Option<i64> {
        self.batches.last().map(|b| b.last_offset + 1)
    }
}

/// Segment base offsets of `dir`'s `<20 digits>.log` files, sorted (temporary files of the cleaner and
/// deleted segments have other suffixes and are skipped).
fn segment_bases(dir: &Path) -> Result<Vec<i64>, AuditError> {
    let io_err = |source| AuditError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut bases = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err)? {
        let name = entry.map_err(io_err)?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(LOG_FILE_SUFFIX)
            && stem.len() == 20
            && let Ok(base) = stem.parse::<i64>()
        {
            bases.push(base);
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

/// Lists every batch of the partition directory `dir` (segments in base-offset order).
pub fn list_partition(dir: &Path) -> Result<PartitionListing, AuditError> {
    let bases = segment_bases(dir)?;
    let mut listing = PartitionListing {
        dir: dir.to_path_buf(),
        ..Default::default()
    };
    for (i, &base) in bases.iter().enumerate() {
        let path = dir.join(crate::log::segment::segment_file_name(
            base,
            LOG_FILE_SUFFIX,
        ));
        let torn = list_segment(&path, base, &mut listing.batches)?;
        if torn > 0 {
            if i + 1 < bases.len() {
                return Err(AuditError::Corrupt {
                    path,
                    position: 0,
                    reason: format!(
                        "{torn} stray bytes at the end of a segment that is not the last"
                    ),
                });
            }
            listing.torn_tail_bytes = torn;
        }
    }
    listing.leader_epochs = read_leader_epoch_checkpoint(&dir.join(LEADER_EPOCH_CHECKPOINT))
        .map_err(|source| AuditError::Io {
            path: dir.join(LEADER_EPOCH_CHECKPOINT),
            source,
        })?;
    Ok(listing)
}

/// Appends the batches of one segment file to `out`; returns how many trailing bytes hold no whole
/// batch.
fn list_segment(path: &Path, segment: i64, out: &mut Vec<BatchEntry>) -> Result<u64, AuditError> {
    let io_err = |source| AuditError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_err)?;
    let len = file.metadata().map_err(io_err)?.len();
    let mut position = 0u64;
    let mut header = [0u8; RECORD_BATCH_OVERHEAD];
    let mut body = Vec::new();
    while position < len {
        let remaining = len - position;
        if remaining < RECORD_BATCH_OVERHEAD as u64 {
            return Ok(remaining);
        }
        file.read_exact(&mut header).map_err(io_err)?;
        let corrupt = |reason: String| AuditError::Corrupt {
            path: path.to_path_buf(),
            position,
            reason,
        };
        let h = RecordBatchHeader::parse(&header).map_err(|e| corrupt(e.to_string()))?;
        if h.magic() != MAGIC_V2 {
            return Err(corrupt(format!("magic {} (only v2 is stored)", h.magic())));
        }
        let size = h
            .total_size()
            .filter(|&s| s <= MAX_BATCH_BYTES)
            .ok_or_else(|| corrupt(format!("batch length {}", h.batch_length())))?;
        if size as u64 > remaining {
            // A batch cut short by a crash: the rest of the file is its torn tail.
            return Ok(remaining);
        }
        body.clear();
        body.extend_from_slice(&header);
        body.resize(size, 0);
        file.read_exact(&mut body[RECORD_BATCH_OVERHEAD..])
            .map_err(io_err)?;
        let crc_valid = crc32c::crc32c(&body[CRC_START..]) == h.crc();
        out.push(BatchEntry {
            base_offset: h.base_offset(),
            last_offset: h.last_offset(),
            partition_leader_epoch: h.partition_leader_epoch(),
            producer_id: h.producer_id(),
            producer_epoch: h.producer_epoch(),
            base_sequence: h.base_sequence(),
            is_control: h.is_control(),
            is_transactional: h.is_transactional(),
            record_count: h.record_count(),
            crc: h.crc(),
            crc_valid,
            size,
            segment,
            position,
        });
        position += size as u64;
    }
    Ok(0)
}

/// The first way replicas disagree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Difference {
    /// Index (into the compared listings) of the replica that differs from replica 0.
    pub replica: usize,
    /// The offset where they part.
    pub offset: i64,
    /// Replica 0's batch there and the other replica's (None: it has none).
    pub expected: Option<BatchEntry>,
    pub found: Option<BatchEntry>,
    pub reason: String,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replica {} differs from replica 0 at offset {}: {}",
            self.replica, self.offset, self.reason
        )?;
        if let Some(b) = &self.expected {
            write!(f, "\n  replica 0: {b}")?;
        }
        if let Some(b) = &self.found {
            write!(f, "\n  replica {}: {b}", self.replica)?;
        }
        Ok(())
    }
}

/// What [`compare`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// Every replica holds the same batches from `from` up to (not including) `upto`.
    Identical {
        from: i64,
        upto: i64,
    },
    Differs(Difference),
}

/// Compares `listings` batch by batch up to `upto` (exclusive; every replica must reach it), or over
/// all their batches when None (then they must also end at the same offset). Comparison starts at the
/// highest first offset among them (retention may have deleted more on one replica). Batches with a bad
/// CRC are a difference even when they agree.
pub fn compare(listings: &[PartitionListing], upto: Option<i64>) -> Comparison {
    let from = listings
        .iter()
        .filter_map(|l| l.batches.first().map(|b| b.base_offset))
        .max()
        .unwrap_or(0);
    let window = |l: &PartitionListing| -> Vec<BatchEntry> {
        l.batches
            .iter()
            .filter(|b| b.last_offset >= from && upto.is_none_or(|u| b.base_offset < u))
            .cloned()
            .collect()
    };
    let Some(first) = listings.first() else {
        return Comparison::Identical { from, upto: from };
    };
    let reference = window(first);
    let reference_end = reference.last().map_or(from, |b| b.last_offset + 1);
    for (replica, listing) in listings.iter().enumerate() {
        let batches = if replica == 0 {
            reference.clone()
        } else {
            window(listing)
        };
        for (i, found) in batches.iter().enumerate() {
            if !found.crc_valid {
                return Comparison::Differs(Difference {
                    replica,
                    offset: found.base_offset,
                    expected: None,
                    found: Some(found.clone()),
                    reason: "the batch's CRC does not match its bytes".into(),
                });
            }
            match reference.get(i) {
                Some(expected) if expected.same_batch(found) => {}
                expected => {
                    let offset = expected
                        .map_or(found.base_offset, |e| e.base_offset.min(found.base_offset));
                    return Comparison::Differs(Difference {
                        replica,
                        offset,
                        expected: expected.cloned(),
                        found: Some(found.clone()),
                        reason: if expected.is_some() {
                            "different batches".into()
                        } else {
                            "a batch replica 0 does not have".into()
                        },
                    });
                }
            }
        }
        if batches.len() < reference.len() {
            let expected = reference[batches.len()].clone();
            return Comparison::Differs(Difference {
                replica,
                offset: expected.base_offset,
                reason: "the replica ends here".into(),
                expected: Some(expected),
                found: None,
            });
        }
    }
    match upto {
        Some(upto) if reference_end < upto => Comparison::Differs(Difference {
            replica: 0,
            offset: reference_end,
            expected: None,
            found: None,
            reason: format!("every replica ends at {reference_end}, short of {upto}"),
        }),
        Some(upto) => Comparison::Identical { from, upto },
        None => Comparison::Identical {
            from,
            upto: reference_end,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::batch_builder::BatchBuilder;
    use crate::log::{AppendOrigin, LogConfig, LogManager, TopicPartition};
    use bytes::BytesMut;

    fn batch(values: &[&str], producer: Option<(i64, i32)>) -> BytesMut {
        let mut b = BatchBuilder::new();
        if let Some((pid, seq)) = producer {
            b = b.producer(pid, 0, seq);
        }
        for v in values {
            b.append(1_000, None, Some(v.as_bytes()), &[])
                .expect("a test record fits");
        }
        b.build().expect("a test batch")
    }

    /// A replica under `root/name` written through `PartitionLog`, with (values, leader epoch) appends.
    fn replica(root: &Path, name: &str, appends: &[(&[&str], i32)]) -> PathBuf {
        let dir = root.join(name);
        let config = LogConfig {
            segment_bytes: 300,
            ..LogConfig::default()
        };
        let mgr = LogManager::open(&dir, config.clone()).expect("log manager");
        let log = mgr
            .get_or_create(&TopicPartition::new("t", 0), config)
            .expect("partition log");
        let mut seq = 0;
        for (values, epoch) in appends {
            log.append(batch(values, Some((7, seq))), *epoch, AppendOrigin::Client)
                .expect("append");
            seq += values.len() as i32;
        }
        log.flush().expect("flush");
        log.close().expect("close");
        log.dir().to_path_buf()
    }

    const HISTORY: &[(&[&str], i32)] = &[
        (&["a", "b"], 0),
        (&["c"], 0),
        (&["d", "e", "f"], 1),
        (&["g"], 1),
        (&["h", "i"], 2),
    ];

    #[test]
    fn listing_walks_every_segment_in_offset_order() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = replica(tmp.path(), "r1", HISTORY);
        let listing = list_partition(&dir).expect("listing");
        let ranges: Vec<(i64, i64, i32)> = listing
            .batches
            .iter()
            .map(|b| (b.base_offset, b.last_offset, b.partition_leader_epoch))
            .collect();
        assert_eq!(
            ranges,
            vec![(0, 1, 0), (2, 2, 0), (3, 5, 1), (6, 6, 1), (7, 8, 2)]
        );
        assert!(
            listing
                .batches
                .iter()
                .all(|b| b.crc_valid && b.producer_id == 7)
        );
        assert_eq!(listing.batches[2].base_sequence, 3);
        let segments: std::collections::BTreeSet<i64> =
            listing.batches.iter().map(|b| b.segment).collect();
        assert!(segments.len() > 1, "small segments roll: {segments:?}");
        assert_eq!(listing.end_offset(), Some(9));
        assert_eq!(listing.torn_tail_bytes, 0);
    }

    #[test]
    fn identical_replicas_compare_equal_up_to_the_high_watermark() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let a = list_partition(&replica(tmp.path(), "r1", HISTORY)).expect("r1");
        let b = list_partition(&replica(tmp.path(), "r2", HISTORY)).expect("r2");
        // A follower behind the leader above the high watermark is fine.
        let c = list_partition(&replica(tmp.path(), "r3", &HISTORY[..4])).expect("r3");
        assert_eq!(
            compare(&[a.clone(), b.clone(), c.clone()], Some(7)),
            Comparison::Identical { from: 0, upto: 7 }
        );
        assert_eq!(
            compare(&[a.clone(), b], None),
            Comparison::Identical { from: 0, upto: 9 }
        );
        let Comparison::Differs(d) = compare(&[a, c], None) else {
            panic!("a shorter replica differs over the whole log");
        };
        assert_eq!((d.replica, d.offset), (1, 7));
    }

    #[test]
    fn a_divergent_replica_is_reported_at_its_first_different_batch() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let a = list_partition(&replica(tmp.path(), "r1", HISTORY)).expect("r1");
        // Same offsets, but offsets 3..=5 written in another leader epoch with other values (an unclean
        // leader's log).
        let mut divergent = HISTORY.to_vec();
        divergent[2] = (&["x", "y", "z"], 2);
        divergent[3] = (&["g"], 2);
        let b = list_partition(&replica(tmp.path(), "r2", &divergent)).expect("r2");
        let Comparison::Differs(d) = compare(&[a.clone(), b.clone()], Some(9)) else {
            panic!("the divergent replica must be reported");
        };
        assert_eq!((d.replica, d.offset), (1, 3));
        assert_eq!(
            d.expected.as_ref().map(|e| e.partition_leader_epoch),
            Some(1)
        );
        assert_eq!(d.found.as_ref().map(|e| e.partition_leader_epoch), Some(2));
        assert!(d.to_string().contains("at offset 3"), "{d}");
        // Below the divergence they agree.
        assert_eq!(
            compare(&[a, b], Some(3)),
            Comparison::Identical { from: 0, upto: 3 }
        );
    }

    #[test]
    fn a_corrupted_batch_and_a_missing_replica_are_differences() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = replica(tmp.path(), "r1", HISTORY);
        let good = list_partition(&dir).expect("r1");
        let copy = tmp.path().join("copy");
        std::fs::create_dir(&copy).expect("copy dir");
        for entry in std::fs::read_dir(&dir).expect("dir") {
            let entry = entry.expect("entry");
            std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy");
        }
        // Flip the last byte of the first segment: inside the CRC's range of its last batch.
        let first = copy.join(crate::log::segment::segment_file_name(0, LOG_FILE_SUFFIX));
        let mut bytes = std::fs::read(&first).expect("segment");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&first, &bytes).expect("write");
        let bad = list_partition(&copy).expect("copy listing");
        let Comparison::Differs(d) = compare(&[good.clone(), bad], None) else {
            panic!("a bad CRC must be reported");
        };
        assert!(d.reason.contains("CRC"), "{d}");

        let empty = tmp.path().join("empty");
        std::fs::create_dir(&empty).expect("empty dir");
        let none = list_partition(&empty).expect("empty listing");
        let Comparison::Differs(d) = compare(&[good, none], Some(9)) else {
            panic!("an empty replica differs below the high watermark");
        };
        assert_eq!((d.replica, d.offset), (1, 0));
    }

    #[test]
    fn a_torn_tail_is_listed_not_compared() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = replica(tmp.path(), "r1", &HISTORY[..1]);
        let seg = dir.join(crate::log::segment::segment_file_name(0, LOG_FILE_SUFFIX));
        let mut bytes = std::fs::read(&seg).expect("segment");
        let whole = bytes.clone();
        bytes.extend_from_slice(&whole[..40]);
        std::fs::write(&seg, &bytes).expect("write");
        let listing = list_partition(&dir).expect("listing");
        assert_eq!(listing.batches.len(), 1);
        assert_eq!(listing.torn_tail_bytes, 40);
    }
}
