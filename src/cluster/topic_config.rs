//! The topic-config registry: every topic-level config brook accepts, with Kafka's type, its broker-level
//! synonyms (the `log.*` keys that give its default), its default and what it means.
//!
//! DescribeConfigs, AlterConfigs, IncrementalAlterConfigs and CreateTopics all read this one table, so a
//! config is described, validated and applied the same way everywhere. A config Kafka knows but brook
//! cannot honour is refused with a message that says so, never silently ignored.

use crate::log::{
    CleanupPolicy, CompressionType, LogConfig, TimestampType, check_compression_level,
};

/// Kafka's `ConfigType` as DescribeConfigs v3+ reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i8)]
pub enum ConfigType {
    Boolean = 1,
    String = 2,
    Int = 3,
    Short = 4,
    Long = 5,
    Double = 6,
    List = 7,
    Class = 8,
    Password = 9,
}

/// One topic-level config.
#[derive(Debug)]
pub struct TopicConfigDef {
    /// The topic-level name (`retention.ms`).
    pub name: &'static str,
    pub ty: ConfigType,
    /// Broker properties that set its default, the one that wins first (`log.retention.ms`, then
    /// `log.retention.minutes`, then `log.retention.hours`). The first is the dynamic one.
    pub synonyms: &'static [&'static str],
    pub doc: &'static str,
}

const fn def(
    name: &'static str,
    ty: ConfigType,
    synonyms: &'static [&'static str],
    doc: &'static str,
) -> TopicConfigDef {
    TopicConfigDef {
        name,
        ty,
        synonyms,
        doc,
    }
}

use ConfigType::{Boolean, Double, Int, List, Long};

/// Every topic config brook accepts, in the order DescribeConfigs lists them.
pub static TOPIC_CONFIG_DEFS: &[TopicConfigDef] = &[
    def(
        "cleanup.policy",
        List,
        &["log.cleanup.policy"],
        "What happens to old segments: `delete` removes them by retention time or size, `compact` keeps the latest record per key; both may be given.",
    ),
    def(
        "compression.gzip.level",
        Int,
        &["compression.gzip.level"],
        "Level of gzip when compression.type is gzip: 1 to 9, or -1 for gzip's default.",
    ),
    def(
        "compression.lz4.level",
        Int,
        &["compression.lz4.level"],
        "Level of lz4 when compression.type is lz4: 1 to 17. Validated and reported; brook's lz4 encoder has a single level, so it does not change the output.",
    ),
    def(
        "compression.type",
        ConfigType::String,
        &["compression.type"],
        "Codec of stored batches: `producer` keeps each batch as the producer compressed it (no decoding on produce); `uncompressed`, `gzip`, `snappy`, `lz4` or `zstd` re-encodes batches of another codec at append.",
    ),
    def(
        "compression.zstd.level",
        Int,
        &["compression.zstd.level"],
        "Level of zstd when compression.type is zstd: -131072 to 22.",
    ),
    def(
        "delete.retention.ms",
        Long,
        &["log.cleaner.delete.retention.ms"],
        "How long a tombstone stays in a compacted topic, so consumers reading from the start see the deletion.",
    ),
    def(
        "file.delete.delay.ms",
        Long,
        &["log.segment.delete.delay.ms"],
        "Delay between marking a segment deleted and removing its files, so readers holding it can finish.",
    ),
    def(
        "flush.messages",
        Long,
        &["log.flush.interval.messages"],
        "fsync the partition once this many messages are unflushed; 1 makes every acknowledged write durable.",
    ),
    def(
        "flush.ms",
        Long,
        &["log.flush.interval.ms"],
        "fsync the partition when unflushed data is older than this.",
    ),
    def(
        "index.interval.bytes",
        Int,
        &["log.index.interval.bytes"],
        "Bytes of batches between two offset index entries: smaller means denser indexes and shorter scans.",
    ),
    def(
        "max.compaction.lag.ms",
        Long,
        &["log.cleaner.max.compaction.lag.ms"],
        "Longest time a record may stay uncompacted, whatever the dirty ratio.",
    ),
    def(
        "max.message.bytes",
        Int,
        &["message.max.bytes"],
        "Largest record batch the topic accepts, batch header included.",
    ),
    def(
        "message.timestamp.after.max.ms",
        Long,
        &["log.message.timestamp.after.max.ms"],
        "With CreateTime, batches whose timestamps are further in the future than this are refused (INVALID_TIMESTAMP).",
    ),
    def(
        "message.timestamp.before.max.ms",
        Long,
        &["log.message.timestamp.before.max.ms"],
        "With CreateTime, batches whose timestamps are further in the past than this are refused (INVALID_TIMESTAMP).",
    ),
    def(
        "message.timestamp.type",
        ConfigType::String,
        &["log.message.timestamp.type"],
        "CreateTime keeps the producer's timestamps; LogAppendTime stamps every batch with the broker's clock at append.",
    ),
    def(
        "min.cleanable.dirty.ratio",
        Double,
        &["log.cleaner.min.cleanable.ratio"],
        "Share of a compacted log that must be uncompacted before the cleaner works on it.",
    ),
    def(
        "min.compaction.lag.ms",
        Long,
        &["log.cleaner.min.compaction.lag.ms"],
        "Shortest time a record stays uncompacted.",
    ),
    def(
        "min.insync.replicas",
        Int,
        &["min.insync.replicas"],
        "In-sync replicas that must have a write for acks=all to succeed (at most the replication factor counts).",
    ),
    def(
        "preallocate",
        Boolean,
        &["log.preallocate"],
        "Preallocate segment files. brook does not, so only false is accepted.",
    ),
    def(
        "retention.bytes",
        Long,
        &["log.retention.bytes"],
        "Closed segments are deleted, oldest first, while the partition is larger than this; -1 means no limit.",
    ),
    def(
        "retention.ms",
        Long,
        &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
        "A closed segment whose newest record is older than this is deleted; -1 keeps data forever.",
    ),
    def(
        "segment.bytes",
        Int,
        &["log.segment.bytes"],
        "A new segment is started before the active one would exceed this size.",
    ),
    def(
        "segment.index.bytes",
        Int,
        &["log.index.size.max.bytes"],
        "Preallocated size of each index file; a full index rolls the segment.",
    ),
    def(
        "segment.ms",
        Long,
        &["log.roll.ms", "log.roll.hours"],
        "A new segment is started when the active one is this old, so time retention can delete old data.",
    ),
    def(
        "unclean.leader.election.enable",
        Boolean,
        &["unclean.leader.election.enable"],
        "Whether an out-of-sync replica may become leader when no in-sync one is alive (acknowledged writes can be lost). A single node is always its own in-sync leader.",
    ),
];

/// The registry entry of a topic config.
pub fn topic_config_def(name: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIG_DEFS.iter().find(|d| d.name == name)
}

/// The topic config whose default a broker property sets (`log.retention.hours` -> `retention.ms`).
pub fn topic_config_for_broker_key(key: &str) -> Option<&'static TopicConfigDef> {
    TOPIC_CONFIG_DEFS.iter().find(|d| d.synonyms.contains(&key))
}

/// One `key=value` being parsed, so that every type error reads as Kafka's `ConfigException` does.
struct ConfigValue<'a> {
    key: &'a str,
    value: &'a str,
}

impl ConfigValue<'_> {
    fn invalid(&self, why: &str) -> String {
        format!(
            "Invalid value {} for configuration {}: {why}",
            self.value, self.key
        )
    }

    /// A LONG within `[min, max]`.
    fn long(&self, min: i64, max: i64) -> Result<i64, String> {
        let v = self
            .value
            .trim()
            .parse::<i64>()
            .map_err(|_| self.invalid("Not a number of type LONG"))?;
        if v < min {
            return Err(self.invalid(&format!("Value must be at least {min}")));
        }
        if v > max {
            return Err(self.invalid(&format!("Value must be no more than {max}")));
        }
        Ok(v)
    }

    /// A BOOLEAN, `true` or `false` in any case.
    fn boolean(&self) -> Result<bool, String> {
        match self.value.trim().to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(self.invalid("Expected value to be either true or false")),
        }
    }
}

/// Applies one topic-level config to a topic's log settings, or says which value is wrong and why.
/// Configs that brook accepts without a setting of its own (see the registry) are validated only.
pub fn apply_topic_config(config: &mut LogConfig, key: &str, value: &str) -> Result<(), String> {
    let v = ConfigValue { key, value };
    let int = |min: i64, max: i64| v.long(min, max);
    let boolean = || v.boolean();
    match key {
        "segment.bytes" => config.segment_bytes = int(14, i32::MAX as i64)? as u64,
        "segment.ms" => config.segment_ms = int(1, i64::MAX)? as u64,
        "segment.index.bytes" => config.max_index_bytes = int(4, i32::MAX as i64)? as u32,
        "index.interval.bytes" => config.index_interval_bytes = int(0, i32::MAX as i64)? as u32,
        "flush.messages" => config.flush_interval_messages = int(1, i64::MAX)? as u64,
        "flush.ms" => config.flush_interval_ms = Some(int(0, i64::MAX)? as u64),
        "max.message.bytes" => config.max_message_bytes = int(0, i32::MAX as i64)? as u32,
        "cleanup.policy" => {
            config.cleanup_policy = CleanupPolicy::parse(value).ok_or_else(|| {
                format!("Invalid value {value} for configuration {key}: String must be one of: compact, delete")
            })?
        }
        "retention.ms" => config.retention_ms = int(-1, i64::MAX)?,
        "retention.bytes" => config.retention_bytes = int(-1, i64::MAX)?,
        "message.timestamp.type" => {
            config.timestamp_type = TimestampType::parse(value).ok_or_else(|| {
                format!("Invalid value {value} for configuration {key}: String must be one of: CreateTime, LogAppendTime")
            })?
        }
        "message.timestamp.before.max.ms" => config.timestamp_before_max_ms = int(0, i64::MAX)?,
        "message.timestamp.after.max.ms" => config.timestamp_after_max_ms = int(0, i64::MAX)?,
        "min.compaction.lag.ms" => config.min_compaction_lag_ms = int(0, i64::MAX)?,
        "max.compaction.lag.ms" => config.max_compaction_lag_ms = int(1, i64::MAX)?,
        "delete.retention.ms" => config.delete_retention_ms = int(0, i64::MAX)?,
        "min.cleanable.dirty.ratio" => {
            config.min_cleanable_dirty_ratio = value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| {
                    format!("Invalid value {value} for configuration {key}: Value must be between 0 and 1")
                })?
        }
        "file.delete.delay.ms" => config.file_delete_delay_ms = int(0, i64::MAX)?,
        "min.insync.replicas" => config.min_insync_replicas = int(1, i32::MAX as i64)? as i32,
        "compression.type" => {
            config.compression_type = CompressionType::parse(value).ok_or_else(|| {
                format!("Invalid value {value} for configuration {key}: String must be one of: uncompressed, zstd, lz4, snappy, gzip, producer")
            })?
        }
        "compression.gzip.level" => {
            config.compression_gzip_level = check_compression_level(key, int(i64::MIN, i64::MAX)?)?
        }
        "compression.lz4.level" => {
            config.compression_lz4_level = check_compression_level(key, int(i64::MIN, i64::MAX)?)?
        }
        "compression.zstd.level" => {
            config.compression_zstd_level = check_compression_level(key, int(i64::MIN, i64::MAX)?)?
        }
        "preallocate" => {
            if boolean()? {
                return Err(format!(
                    "Invalid value {value} for configuration {key}: not supported, brook does not preallocate segments"
                ));
            }
        }
        "unclean.leader.election.enable" => config.unclean_leader_election_enable = boolean()?,
        _ => {
            return Err(format!(
                "Unknown or unsupported topic config name: {key}"
            ));
        }
    }
    Ok(())
}

/// The value of a topic config under `config`, as Kafka prints it (`flush.ms` unset is Long.MAX_VALUE).
pub fn render(config: &LogConfig, name: &str) -> Option<String> {
    let long_max = |v: u64| i64::try_from(v).unwrap_or(i64::MAX).to_string();
    Some(match name {
        "cleanup.policy" => config.cleanup_policy.to_string(),
        "compression.type" => config.compression_type.to_string(),
        "compression.gzip.level" => config.compression_gzip_level.to_string(),
        "compression.lz4.level" => config.compression_lz4_level.to_string(),
        "compression.zstd.level" => config.compression_zstd_level.to_string(),
        "delete.retention.ms" => config.delete_retention_ms.to_string(),
        "file.delete.delay.ms" => config.file_delete_delay_ms.to_string(),
        "flush.messages" => long_max(config.flush_interval_messages),
        "flush.ms" => config
            .flush_interval_ms
            .map_or(i64::MAX.to_string(), long_max),
        "index.interval.bytes" => config.index_interval_bytes.to_string(),
        "max.compaction.lag.ms" => config.max_compaction_lag_ms.to_string(),
        "max.message.bytes" => config.max_message_bytes.to_string(),
        "message.timestamp.after.max.ms" => config.timestamp_after_max_ms.to_string(),
        "message.timestamp.before.max.ms" => config.timestamp_before_max_ms.to_string(),
        "message.timestamp.type" => config.timestamp_type.to_string(),
        "min.cleanable.dirty.ratio" => config.min_cleanable_dirty_ratio.to_string(),
        "min.compaction.lag.ms" => config.min_compaction_lag_ms.to_string(),
        "min.insync.replicas" => config.min_insync_replicas.to_string(),
        "preallocate" => "false".into(),
        "retention.bytes" => config.retention_bytes.to_string(),
        "retention.ms" => config.retention_ms.to_string(),
        "segment.bytes" => config.segment_bytes.to_string(),
        "segment.index.bytes" => config.max_index_bytes.to_string(),
        "segment.ms" => long_max(config.segment_ms),
        "unclean.leader.election.enable" => config.unclean_leader_election_enable.to_string(),
        _ => return None,
    })
}

/// Kafka's list semantics for IncrementalAlterConfigs APPEND: the current list plus `add`'s items not in it.
pub fn list_append(current: &str, add: &str) -> String {
    let mut items = list_items(current);
    for item in list_items(add) {
        if !items.contains(&item) {
            items.push(item);
        }
    }
    items.join(",")
}

/// Kafka's list semantics for IncrementalAlterConfigs SUBTRACT: the current list without `remove`'s items.
pub fn list_subtract(current: &str, remove: &str) -> String {
    let remove = list_items(remove);
    list_items(current)
        .into_iter()
        .filter(|i| !remove.contains(i))
        .collect::<Vec<_>>()
        .join(",")
}

fn list_items(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// The log settings for a topic: broker defaults with the topic's overrides on top.
pub fn topic_log_config(defaults: &LogConfig, topic: &super::TopicImage) -> LogConfig {
    let mut config = defaults.clone();
    for (key, value) in &topic.configs {
        // Values were validated when the topic was created.
        if let Err(e) = apply_topic_config(&mut config, key, value) {
            tracing::warn!(topic = %topic.name, key, error = %e, "ignoring stored topic config");
        }
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_config_has_a_default_and_accepts_it() {
        let defaults = LogConfig::default();
        for d in TOPIC_CONFIG_DEFS {
            let value = render(&defaults, d.name).unwrap_or_else(|| panic!("{} renders", d.name));
            let mut config = LogConfig::default();
            apply_topic_config(&mut config, d.name, &value)
                .unwrap_or_else(|e| panic!("{} default {value} is valid: {e}", d.name));
            assert_eq!(render(&config, d.name).as_deref(), Some(value.as_str()));
            assert!(!d.synonyms.is_empty() && !d.doc.is_empty());
        }
    }

    #[test]
    fn unsupported_values_are_refused_with_the_reason() {
        let mut config = LogConfig::default();
        let err = apply_topic_config(&mut config, "min.insync.replicas", "0").unwrap_err();
        assert!(err.contains("min.insync.replicas"), "{err}");
        let err = apply_topic_config(&mut config, "preallocate", "true").unwrap_err();
        assert!(err.contains("not supported"), "{err}");
        let err = apply_topic_config(&mut config, "compression.type", "brotli").unwrap_err();
        assert!(err.contains("producer"), "{err}");
        let err = apply_topic_config(&mut config, "retention.ms", "soon").unwrap_err();
        assert!(
            err.contains("retention.ms") && err.contains("soon"),
            "{err}"
        );
        assert!(apply_topic_config(&mut config, "no.such.config", "1").is_err());
    }

    #[test]
    fn compression_type_and_levels_are_applied_within_kafka_ranges() {
        let mut config = LogConfig::default();
        for codec in ["uncompressed", "gzip", "snappy", "lz4", "zstd", "producer"] {
            apply_topic_config(&mut config, "compression.type", codec).unwrap();
            assert_eq!(render(&config, "compression.type").as_deref(), Some(codec));
        }
        for (key, good, bad) in [
            (
                "compression.gzip.level",
                &["-1", "1", "9"][..],
                &["0", "10", "-2"][..],
            ),
            ("compression.lz4.level", &["1", "17"], &["0", "18", "-1"]),
            (
                "compression.zstd.level",
                &["-131072", "0", "22"],
                &["23", "-131073"],
            ),
        ] {
            for v in good {
                apply_topic_config(&mut config, key, v).unwrap();
                assert_eq!(render(&config, key).as_deref(), Some(*v));
            }
            for v in bad {
                let err = apply_topic_config(&mut config, key, v).unwrap_err();
                assert!(err.contains(key) && err.contains(v), "{err}");
            }
        }
    }

    #[test]
    fn list_operations_keep_order_and_drop_duplicates() {
        assert_eq!(list_append("delete", "compact"), "delete,compact");
        assert_eq!(list_append("delete,compact", "compact"), "delete,compact");
        assert_eq!(list_subtract("delete,compact", "delete"), "compact");
        assert_eq!(list_subtract("delete", "delete"), "");
    }
}
