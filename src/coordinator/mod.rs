//! The coordinator runtime (Kafka's `CoordinatorRuntime`, KIP-848's design): the state of a coordinator
//! (groups, later transactions) is sharded by the partitions of an internal topic; each shard is rebuilt
//! from its partition's log when this broker becomes its leader and changes only by replaying records the
//! runtime appended to that log, so the log is the one source of truth.

pub mod runtime;
pub mod shard;

pub use runtime::{CommitWait, CoordinatorError, CoordinatorRuntime, ProducerBatch, ShardState};
pub use shard::{CoordinatorRecord, CoordinatorShard};

/// Kafka's placement of a key (a group id, a transactional id) on its coordinator's internal topic:
/// `Utils.abs(key.hashCode()) % partitions`, with Java's `String.hashCode` over UTF-16 code units (abs of
/// i32::MIN is 0). Clients never compute it, but a data directory moved from Kafka must keep its keys where
/// Kafka put them.
pub fn partition_for(key: &str, partitions: i32) -> i32 {
    let hash = java_string_hash(key);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// Java's `String.hashCode` over UTF-16 code units.
fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)))
}

#[cfg(test)]
mod tests {
    use super::{java_string_hash, partition_for};

    #[test]
    fn partition_for_matches_kafka() {
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 47);
        assert_eq!(partition_for("my-group", 50), 12);
        assert_eq!(
            partition_for("polygenelubricants", 50),
            0,
            "hashCode is i32::MIN"
        );
        assert_eq!(partition_for("\u{e9}\u{1f600}g", 50), 25);
        assert_eq!(partition_for("group", 7), 98_629_247 % 7);
        assert_eq!(partition_for("x", 0), 0, "no partitions is one");
        assert_eq!(partition_for("group", 50), 47);
        assert_eq!(partition_for("console-consumer-12345", 50), 6);
    }

    #[test]
    fn java_string_hash_matches_java() {
        // Computed with Java's String.hashCode by hand: s[0]*31^(n-1) + ... over UTF-16 code units,
        // wrapping at 32 bits.
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("a"), 97);
        assert_eq!(java_string_hash("group"), 98_629_247);
        assert_eq!(java_string_hash("my-group"), -1_906_497_762);
        // The classic Java string whose hashCode is Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
        // A supplementary character counts as two UTF-16 code units.
        assert_eq!(java_string_hash("\u{e9}\u{1f600}g"), 61_901_275);
    }
}
