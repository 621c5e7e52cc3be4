//! `partition.metadata` (Kafka's `PartitionMetadataFile`): the id of the topic a partition directory
//! belongs to. A topic announced by a delta that is not a start-up snapshot (a new topic, or a cluster's
//! metadata log replayed at start) may find a directory of its name on disk: with its own topic id it is
//! this topic's log and is opened; without, it is what an earlier topic of the same name left and is
//! removed before the log is created afresh.
//!
//! Kafka's format, so a data directory moved between Kafka and brook keeps its meaning:
//! `version: 0\ntopic_id: <the id in URL-safe base64 without padding>\n`.

use std::io;
use std::path::Path;

use uuid::Uuid;

use crate::cluster::metadata_store::write_atomically;

pub const FILE_NAME: &str = "partition.metadata";

/// Longest file read: the format is two short lines.
const MAX_BYTES: u64 = 1024;

/// True when `dir` holds a `partition.metadata` naming `topic_id`.
pub fn belongs_to(dir: &Path, topic_id: Uuid) -> bool {
    let path = dir.join(FILE_NAME);
    let Ok(meta) = std::fs::metadata(&path) else {
        return false;
    };
    if meta.len() > MAX_BYTES {
        return false;
    }
    let Ok(text) = std::fs::read_to_string(&path) else {
        return false;
    };
    let expected = encode_uuid(topic_id);
    text.lines()
        .filter_map(|line| line.split_once(':'))
        .any(|(key, value)| key.trim() == "topic_id" && value.trim() == expected)
}

/// Records that `dir` belongs to `topic_id` (atomically, fsynced), unless it already says so.
pub fn record(dir: &Path, topic_id: Uuid) -> io::Result<()> {
    if belongs_to(dir, topic_id) {
        return Ok(());
    }
    let text = format!("version: 0\ntopic_id: {}\n", encode_uuid(topic_id));
    write_atomically(&dir.join(FILE_NAME), text.as_bytes())
}

/// Kafka's `Uuid.toString`: the 16 bytes in URL-safe base64, without padding (22 characters).
fn encode_uuid(id: Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        // 3 bytes make 4 characters; the last, single byte makes 2.
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_are_written_as_kafka_writes_them() {
        // Kafka's Uuid.toString of (mostSignificantBits 1, leastSignificantBits 2).
        assert_eq!(
            encode_uuid(Uuid::from_u128((1u128 << 64) | 2)),
            "AAAAAAAAAAEAAAAAAAAAAg"
        );
        assert_eq!(
            encode_uuid(Uuid::from_u128(u128::MAX)),
            "_____________________w"
        );
    }

    #[test]
    fn a_directory_belongs_to_the_topic_it_records() {
        let dir = tempfile::tempdir().unwrap();
        let (ours, theirs) = (Uuid::new_v4(), Uuid::new_v4());
        assert!(!belongs_to(dir.path(), ours), "no file: no claim");
        record(dir.path(), ours).unwrap();
        assert!(belongs_to(dir.path(), ours));
        assert!(!belongs_to(dir.path(), theirs));
        let text = std::fs::read_to_string(dir.path().join(FILE_NAME)).unwrap();
        assert!(text.starts_with("version: 0\ntopic_id: "), "{text}");
    }
}
