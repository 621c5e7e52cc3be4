//! Group configs (KIP-848, resource type GROUP in DescribeConfigs / AlterConfigs / IncrementalAlterConfigs):
//! per-group overrides of the consumer, share and streams group protocols' settings, as Kafka 4.1's
//! GroupConfig defines them. A group need not exist to have configs, and its configs outlive it.
//!
//! Each config's default is a broker property (`consumer.session.timeout.ms` defaults to
//! `group.consumer.session.timeout.ms`), and an override must stay within the broker's min/max bounds. They
//! apply to consumer-protocol, share and streams groups only; classic groups ignore them, in Kafka as in
//! brook (which has only classic groups today). Kept in `brook-group-configs.json`, rewritten atomically
//! on every change.

use std::collections::BTreeMap;
use std::path::Path;

use super::MetadataError;
use super::metadata_store::JsonState;
use super::topic_config::ConfigType;

pub const FILE_NAME: &str = "brook-group-configs.json";

/// At most this many groups may have configs: the whole set lives in memory and in one file.
pub const MAX_GROUPS_WITH_CONFIGS: usize = 100_000;

/// Where a group config's default comes from.
#[derive(Debug)]
pub enum GroupDefault {
    /// A broker property (`group.consumer.session.timeout.ms`).
    Broker(&'static str),
    /// A fixed value (Kafka has no broker property for it).
    Fixed(&'static str),
}

/// One group-level config.
#[derive(Debug)]
pub struct GroupConfigDef {
    pub name: &'static str,
    pub ty: ConfigType,
    pub default: GroupDefault,
    /// The lowest value an INT config accepts (Kafka's `atLeast`).
    pub at_least: i32,
    pub doc: &'static str,
}

const fn int(
    name: &'static str,
    broker: &'static str,
    at_least: i32,
    doc: &'static str,
) -> GroupConfigDef {
    GroupConfigDef {
        name,
        ty: ConfigType::Int,
        default: GroupDefault::Broker(broker),
        at_least,
        doc,
    }
}

/// Every group config, in the order DescribeConfigs lists them.
pub static GROUP_CONFIG_DEFS: &[GroupConfigDef] = &[
    int(
        "consumer.session.timeout.ms",
        "group.consumer.session.timeout.ms",
        1,
        "The timeout to detect client failures when using the consumer group protocol.",
    ),
    int(
        "consumer.heartbeat.interval.ms",
        "group.consumer.heartbeat.interval.ms",
        1,
        "The heartbeat interval given to the members of a consumer group.",
    ),
    int(
        "share.session.timeout.ms",
        "group.share.session.timeout.ms",
        1,
        "The timeout to detect client failures when using the share group protocol.",
    ),
    int(
        "share.heartbeat.interval.ms",
        "group.share.heartbeat.interval.ms",
        1,
        "The heartbeat interval given to the members of a share group.",
    ),
    int(
        "share.record.lock.duration.ms",
        "group.share.record.lock.duration.ms",
        1_000,
        "The record acquisition lock duration in milliseconds for share groups.",
    ),
    GroupConfigDef {
        name: "share.auto.offset.reset",
        ty: ConfigType::String,
        default: GroupDefault::Fixed("latest"),
        at_least: 0,
        doc: "The strategy to initialize the share-partition start offset.",
    },
    GroupConfigDef {
        name: "share.isolation.level",
        ty: ConfigType::String,
        default: GroupDefault::Fixed("read_uncommitted"),
        at_least: 0,
        doc: "Controls how to read records written transactionally by share group members.",
    },
    int(
        "streams.session.timeout.ms",
        "group.streams.session.timeout.ms",
        1,
        "The timeout to detect client failures when using the streams group protocol.",
    ),
    int(
        "streams.heartbeat.interval.ms",
        "group.streams.heartbeat.interval.ms",
        1,
        "The heartbeat interval given to the members of a streams group.",
    ),
    int(
        "streams.num.standby.replicas",
        "group.streams.num.standby.replicas",
        0,
        "The number of standby replicas for each task of a streams group.",
    ),
];

pub fn group_config_def(name: &str) -> Option<&'static GroupConfigDef> {
    GROUP_CONFIG_DEFS.iter().find(|d| d.name == name)
}

/// The broker's value of one of its `group.*` properties (the caller passes
/// `Config::group_protocol_value`): the cluster layer reads the broker configuration only through it.
pub type BrokerValue<'a> = &'a dyn Fn(&str) -> i32;

/// The default of a group config under this broker configuration.
pub fn default_value(def: &GroupConfigDef, broker: BrokerValue<'_>) -> String {
    match def.default {
        GroupDefault::Broker(key) => broker(key).to_string(),
        GroupDefault::Fixed(v) => v.to_string(),
    }
}

/// Validates a group's whole set of overrides against the broker's bounds, as Kafka's GroupConfig.validate
/// does; the error message is Kafka's.
pub fn validate(configs: &BTreeMap<String, String>, broker: BrokerValue<'_>) -> Result<(), String> {
    let mut ints: BTreeMap<&str, i32> = BTreeMap::new();
    for def in GROUP_CONFIG_DEFS {
        let value = configs
            .get(def.name)
            .cloned()
            .unwrap_or_else(|| default_value(def, broker));
        let bad = |why: &str| {
            format!(
                "Invalid value {value} for configuration {}: {why}",
                def.name
            )
        };
        match def.ty {
            ConfigType::Int => {
                let n: i32 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("Not a number of type INT"))?;
                if n < def.at_least {
                    return Err(bad(&format!("Value must be at least {}", def.at_least)));
                }
                ints.insert(def.name, n);
            }
            _ => check_string(def.name, &value).map_err(|why| bad(&why))?,
        }
    }
    for name in configs.keys() {
        if group_config_def(name).is_none() {
            return Err(format!("Unknown group config name: {name}"));
        }
    }
    let get = |k: &str| ints.get(k).copied().unwrap_or_default();
    let bound = |k: &str| broker(k);
    for (protocol, lock) in [("consumer", false), ("share", true), ("streams", false)] {
        let checks = [
            (
                "heartbeat.interval.ms",
                "min.heartbeat.interval.ms",
                "max.heartbeat.interval.ms",
            ),
            (
                "session.timeout.ms",
                "min.session.timeout.ms",
                "max.session.timeout.ms",
            ),
        ];
        for (own, min, max) in checks {
            let name = format!("{protocol}.{own}");
            let value = get(&name);
            let min = format!("group.{protocol}.{min}");
            let max = format!("group.{protocol}.{max}");
            if value < bound(&min) {
                return Err(format!("{name} must be greater than or equal to {min}"));
            }
            if value > bound(&max) {
                return Err(format!("{name} must be less than or equal to {max}"));
            }
        }
        if lock {
            let value = get("share.record.lock.duration.ms");
            if value < bound("group.share.min.record.lock.duration.ms") {
                return Err("share.record.lock.duration.ms must be greater than or equal to group.share.min.record.lock.duration.ms".into());
            }
            if value > bound("group.share.max.record.lock.duration.ms") {
                return Err("share.record.lock.duration.ms must be less than or equal to group.share.max.record.lock.duration.ms".into());
            }
        }
        let session = format!("{protocol}.session.timeout.ms");
        let heartbeat = format!("{protocol}.heartbeat.interval.ms");
        if get(&session) <= get(&heartbeat) {
            return Err(format!("{session} must be greater than {heartbeat}"));
        }
    }
    if get("streams.num.standby.replicas") > bound("group.streams.max.standby.replicas") {
        return Err("streams.num.standby.replicas must be less than or equal to group.streams.max.standby.replicas".into());
    }
    Ok(())
}

/// The STRING configs' allowed values.
fn check_string(name: &str, value: &str) -> Result<(), String> {
    let ok = match name {
        "share.isolation.level" => matches!(value, "read_committed" | "read_uncommitted"),
        "share.auto.offset.reset" => match value.strip_prefix("by_duration:") {
            Some(duration) => is_iso8601_duration(duration),
            None => matches!(value, "latest" | "earliest"),
        },
        _ => true,
    };
    if ok {
        Ok(())
    } else if name == "share.auto.offset.reset" {
        Err("expected latest, earliest or by_duration:<ISO-8601 duration>".into())
    } else {
        Err("expected read_committed or read_uncommitted".into())
    }
}

/// `PnDTnHnMn.nS` (Java's Duration.parse form, days and smaller, not negative), as KIP-1106's
/// `by_duration:` strategy takes it.
fn is_iso8601_duration(text: &str) -> bool {
    let Some(rest) = text.strip_prefix('P') else {
        return false;
    };
    let (days, time) = match rest.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (rest, None),
    };
    let mut parts = 0;
    if !days.is_empty() {
        match days.strip_suffix('D') {
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => parts += 1,
            _ => return false,
        }
    }
    if let Some(mut time) = time {
        if time.is_empty() {
            return false;
        }
        for unit in ['H', 'M', 'S'] {
            if let Some((n, after)) = time.split_once(unit) {
                let decimal_ok = unit == 'S'
                    && n.split_once('.').is_some_and(|(a, b)| {
                        !a.is_empty()
                            && !b.is_empty()
                            && (a.bytes().chain(b.bytes())).all(|c| c.is_ascii_digit())
                    });
                if n.is_empty() || !(n.bytes().all(|b| b.is_ascii_digit()) || decimal_ok) {
                    return false;
                }
                parts += 1;
                time = after;
            }
        }
        if !time.is_empty() {
            return false;
        }
    }
    parts > 0
}

/// The persisted group configs: group id -> overrides.
pub struct GroupConfigStore(JsonState<BTreeMap<String, BTreeMap<String, String>>>);

impl GroupConfigStore {
    /// Loads `<dir>/brook-group-configs.json`, or starts empty when there is none.
    pub fn open(dir: &Path) -> Result<GroupConfigStore, MetadataError> {
        JsonState::open(dir.join(FILE_NAME)).map(GroupConfigStore)
    }

    /// No file: a mirror of the configs the cluster's metadata quorum committed.
    pub fn in_memory() -> GroupConfigStore {
        GroupConfigStore(JsonState::in_memory())
    }

    /// Sets the mirror (in a cluster) to what the quorum committed.
    pub fn mirror(&self, groups: BTreeMap<String, BTreeMap<String, String>>) {
        let _ = self.0.update(|next| {
            *next = groups;
            Ok(())
        });
    }

    /// One group's overrides (empty when it has none).
    pub fn get(&self, group: &str) -> BTreeMap<String, String> {
        self.0
            .read(|groups| groups.get(group).cloned().unwrap_or_default())
    }

    /// Every group's overrides (a single node migrating into a cluster hands them all over).
    pub fn all(&self) -> BTreeMap<String, BTreeMap<String, String>> {
        self.0.read(BTreeMap::clone)
    }

    /// Replaces one group's overrides durably; an empty set forgets the group.
    pub fn replace(
        &self,
        group: &str,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError> {
        self.0.update(|next| {
            if configs.is_empty() {
                next.remove(group);
            } else {
                if !next.contains_key(group) && next.len() >= MAX_GROUPS_WITH_CONFIGS {
                    return Err(MetadataError::Limit(format!(
                        "at most {MAX_GROUPS_WITH_CONFIGS} groups may have configs"
                    )));
                }
                next.insert(group.to_string(), configs);
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(k: &str, v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(k.to_string(), v.to_string())])
    }

    #[test]
    fn group_configs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = GroupConfigStore::open(dir.path()).unwrap();
        store
            .replace("g", one("consumer.session.timeout.ms", "50000"))
            .unwrap();
        let reopened = GroupConfigStore::open(dir.path()).unwrap();
        assert_eq!(reopened.get("g")["consumer.session.timeout.ms"], "50000");
        reopened.replace("g", BTreeMap::new()).unwrap();
        assert!(
            GroupConfigStore::open(dir.path())
                .unwrap()
                .get("g")
                .is_empty()
        );
    }
}
