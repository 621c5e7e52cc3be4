//! The table of broker properties: one [`KeySpec`] per Kafka property name brook accepts.
//!
//! Setting a key, printing its value in force, listing the known keys, the `BROOK_<KEY>` variables and
//! which keys an admin may change at runtime all read this one table, so they cannot disagree.

use std::path::PathBuf;

use super::kraft::{parse_listener_names, parse_process_roles, parse_voters, show_voters};
use super::listeners::{
    SUPPORTED_PROTOCOLS, parse_listener_list, parse_listener_name, parse_security_protocol_map,
    security_protocol_named,
};
use super::{
    Config, ConfigError, ListenerEndpoint, LoggingFormat, invalid, parse_bool, parse_host_port,
    parse_int, parse_retention,
};
use crate::log::{CleanupPolicy, CompressionType, TimestampType, check_compression_level};

/// One broker property: how its text becomes part of a [`Config`] and how its value in force prints back.
pub struct KeySpec {
    /// Kafka's property name.
    pub name: &'static str,
    parse: Parse,
    show: Show,
    /// Whether an admin may change it while the broker runs (AlterConfigs on a BROKER resource), as Kafka
    /// marks it dynamic. The others answer INVALID_REQUEST.
    pub dynamic: bool,
}

/// How a property's value is validated and stored.
#[derive(Clone, Copy)]
enum Parse {
    /// An integer within [min, max].
    Int {
        min: i64,
        max: i64,
        set: fn(&mut Config, i64),
    },
    /// `true` or `false`, in any case.
    Bool(fn(&mut Config, bool)),
    /// Its own parser: enumerations, endpoints, units with precedence. Gets the key and the trimmed value.
    Text(fn(&mut Config, &str, &str) -> Result<(), ConfigError>),
    /// An integer within [min, max] that brook validates and keeps as given, but does not read yet.
    Kept { min: i64, max: i64 },
    /// A SASL setting, validated against its Kafka type and kept as given.
    Sasl(SaslValue),
}

/// How the value in force of a property that was not set explicitly prints, as Kafka prints it.
#[derive(Clone, Copy)]
enum Show {
    /// Read from the configuration.
    Field(fn(&Config) -> Option<String>),
    /// A fixed default; None when the property is unset and has no default of its own.
    Fixed(Option<&'static str>),
}

/// The type of a SASL broker setting, with Kafka's bounds where it has them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum SaslValue {
    String,
    List,
    Long,
    /// A double within [min, max].
    Double(f64, f64),
    /// A short within [min, max].
    Short(i16, i16),
}

impl KeySpec {
    /// Validates `value` and stores it in `config` (but not in its record of explicit keys).
    pub(super) fn apply(&self, config: &mut Config, value: &str) -> Result<(), ConfigError> {
        let key = self.name;
        match self.parse {
            Parse::Int { min, max, set } => set(config, parse_int(key, value, min, max)?),
            Parse::Bool(set) => set(config, parse_bool(key, value)?),
            Parse::Text(set) => set(config, key, value)?,
            Parse::Kept { min, max } => {
                parse_int(key, value, min, max)?;
            }
            Parse::Sasl(ty) => check_sasl_value(key, ty, value)?,
        }
        Ok(())
    }

    /// The value in force in `config`, ignoring whether it was set explicitly.
    pub(super) fn render(&self, config: &Config) -> Option<String> {
        match self.show {
            Show::Field(show) => show(config),
            Show::Fixed(value) => value.map(str::to_string),
        }
    }

    /// The Kafka type of a SASL setting; None for the other keys.
    pub fn sasl_type(&self) -> Option<SaslValue> {
        match self.parse {
            Parse::Sasl(ty) => Some(ty),
            _ => None,
        }
    }

    const fn dynamic(self) -> KeySpec {
        KeySpec {
            dynamic: true,
            ..self
        }
    }
}

/// The spec of a broker property, None for a key brook does not know.
pub fn key_spec(name: &str) -> Option<&'static KeySpec> {
    KEYS.iter().find(|spec| spec.name == name)
}

/// Every broker property brook accepts, in the order DescribeConfigs lists them.
pub fn key_specs() -> &'static [KeySpec] {
    KEYS
}

const fn int(
    name: &'static str,
    min: i64,
    max: i64,
    set: fn(&mut Config, i64),
    show: fn(&Config) -> Option<String>,
) -> KeySpec {
    spec(name, Parse::Int { min, max, set }, Show::Field(show))
}

const fn boolean(
    name: &'static str,
    set: fn(&mut Config, bool),
    show: fn(&Config) -> Option<String>,
) -> KeySpec {
    spec(name, Parse::Bool(set), Show::Field(show))
}

const fn text(
    name: &'static str,
    set: fn(&mut Config, &str, &str) -> Result<(), ConfigError>,
    show: Show,
) -> KeySpec {
    spec(name, Parse::Text(set), show)
}

/// A KIP-848 group protocol setting (consumer, share, streams) with Kafka 4.1's default and lower bound.
/// They give the defaults of the group-level configs (`consumer.session.timeout.ms`, ...) and the bounds
/// a group-level override must stay within. brook has no consumer-protocol group yet, so nothing else
/// reads them (classic groups use `group.*.session.*`).
const fn group(name: &'static str, default: &'static str, min: i64) -> KeySpec {
    let parse = Parse::Kept {
        min,
        max: i32::MAX as i64,
    };
    spec(name, parse, Show::Fixed(Some(default)))
}

/// A SASL setting Kafka 4.1 lets an admin change on a running listener (DynamicListenerConfig), with
/// Kafka's type and default. brook has no SASL yet: they are validated, stored and described so that tools
/// which set them work, and take effect once SASL exists.
const fn sasl(name: &'static str, ty: SaslValue, default: Option<&'static str>) -> KeySpec {
    spec(name, Parse::Sasl(ty), Show::Fixed(default)).dynamic()
}

const fn spec(name: &'static str, parse: Parse, show: Show) -> KeySpec {
    KeySpec {
        name,
        parse,
        show,
        dynamic: false,
    }
}

fn some(value: impl ToString) -> Option<String> {
    Some(value.to_string())
}

/// A count printed as Kafka's long: saturated at `i64::MAX` (brook's "unlimited" is `u64::MAX`).
fn long(value: u64) -> Option<String> {
    some(i64::try_from(value).unwrap_or(i64::MAX))
}

/// A count printed as Kafka's int: saturated at `i32::MAX`.
fn int32(value: usize) -> Option<String> {
    some(i32::try_from(value).unwrap_or(i32::MAX))
}

const I32_MAX: i64 = i32::MAX as i64;
const NONE: Show = Show::Fixed(None);

/// An integer property kept in one field of the Config: `int_field!(name, min, max, path.to.field as
/// type, how it prints)`, the field's type omitted when it is `i64`.
macro_rules! int_field {
    ($name:literal, $min:expr, $max:expr, $($field:ident).+ as $ty:ty, $show:path) => {
        int($name, $min, $max, |c, v| c.$($field).+ = v as $ty, |c| $show(c.$($field).+))
    };
    ($name:literal, $min:expr, $max:expr, $($field:ident).+, $show:path) => {
        int($name, $min, $max, |c, v| c.$($field).+ = v, |c| $show(c.$($field).+))
    };
}

/// A boolean property kept in one field of the Config.
macro_rules! bool_field {
    ($name:literal, $($field:ident).+) => {
        boolean($name, |c, v| c.$($field).+ = v, |c| some(c.$($field).+))
    };
}

/// A property with its own parser whose value prints from one field of the Config.
macro_rules! text_field {
    ($name:literal, $set:expr, $($field:ident).+) => {
        text($name, $set, Show::Field(|c| some(c.$($field).+)))
    };
}

/// The table. The `log.*` defaults of topic configs are cluster-wide dynamic, as in Kafka: every partition's
/// config is re-derived when they change, and topic overrides still win.
#[rustfmt::skip]
const KEYS: &[KeySpec] = &[
    text("listeners", set_listeners, Show::Field(|c| some(show_listener_list(&c.listeners)))),
    text("advertised.listeners", set_advertised_listeners, NONE),
    text("listener.security.protocol.map", set_security_protocol_map,
        Show::Field(|c| some(&c.listener_security_protocol_map))),
    text("inter.broker.listener.name", set_inter_broker_listener_name,
        Show::Field(|c| c.inter_broker_listener_name.clone())),
    text("security.inter.broker.protocol", set_inter_broker_protocol, Show::Fixed(Some("PLAINTEXT"))),
    text("log.dirs", set_log_dirs, Show::Field(show_log_dir)),
    text("log.dir", set_log_dirs, Show::Field(show_log_dir)),
    int_field!("node.id", 0, I32_MAX, node_id as i32, some),
    int_field!("broker.id", 0, I32_MAX, node_id as i32, some),
    text("broker.rack", set_rack, Show::Field(|c| c.rack.clone())),
    text("replica.selector.class", set_replica_selector, Show::Field(|c| {
        c.rack_aware_replica_selector
            .then(|| "org.apache.kafka.common.replica.RackAwareReplicaSelector".to_string())
    })),
    text("process.roles", set_process_roles,
        Show::Field(|c| Some(c.kraft.process_roles).filter(|r| !r.is_empty()).map(|r| r.to_string()))),
    text("controller.quorum.voters", set_voters, Show::Field(|c| some(show_voters(&c.kraft.voters)))),
    text("controller.listener.names", set_controller_listener_names,
        Show::Field(|c| Some(c.kraft.controller_listener_names.join(",")).filter(|n| !n.is_empty()))),
    text("metadata.log.dir", set_metadata_log_dir,
        Show::Field(|c| c.kraft.metadata_log_dir.as_ref().map(|d| d.display().to_string()))),
    int_field!("broker.session.timeout.ms", 1, I32_MAX, kraft.broker_session_timeout_ms as u64, some),
    int_field!("broker.heartbeat.interval.ms", 1, I32_MAX, kraft.broker_heartbeat_interval_ms as u64, some),
    int_field!("initial.broker.registration.timeout.ms", 1, I32_MAX,
        kraft.initial_broker_registration_timeout_ms as u64, some),
    int_field!("controller.quorum.election.timeout.ms", 1, I32_MAX, kraft.election_timeout_ms as u64, some),
    int_field!("controller.quorum.election.backoff.max.ms", 1, I32_MAX,
        kraft.election_backoff_max_ms as u64, some),
    int_field!("controller.quorum.fetch.timeout.ms", 1, I32_MAX, kraft.fetch_timeout_ms as u64, some),
    int_field!("controller.quorum.request.timeout.ms", 1, I32_MAX, kraft.request_timeout_ms as u64, some),
    int_field!("metadata.log.max.record.bytes.between.snapshots", 1, i64::MAX,
        kraft.snapshot_max_new_record_bytes as u64, some),
    int_field!("metadata.log.max.snapshot.interval.ms", 0, i64::MAX, kraft.snapshot_max_interval_ms as u64, some),
    int_field!("replica.lag.time.max.ms", 1, i64::MAX, kraft.replica_lag_time_max_ms as u64, some),
    int_field!("default.replication.factor", 1, i16::MAX as i64, default_replication_factor as i16, some),
    int_field!("offsets.topic.replication.factor", 1, i16::MAX as i64,
        groups.offsets_topic_replication_factor as i16, some),
    int_field!("transaction.state.log.min.isr", 1, I32_MAX, txn.state_log_min_isr as i32, some),
    int_field!("num.partitions", 1, 1_000_000, num_partitions as i32, some),
    bool_field!("auto.create.topics.enable", auto_create_topics_enable),
    bool_field!("auto.leader.rebalance.enable", auto_leader_rebalance_enable),
    int_field!("leader.imbalance.check.interval.seconds", 1, i64::MAX,
        leader_imbalance_check_interval_seconds as u64, some),
    // Kafka's KRaft controller does not read it either: any imbalanced partition is rebalanced.
    spec("leader.imbalance.per.broker.percentage", Parse::Kept { min: i32::MIN as i64, max: I32_MAX },
        Show::Fixed(Some("10"))),
    int_field!("num.replica.fetchers", 1, 1024, replica_fetch.num_replica_fetchers as usize, some),
    int_field!("replica.fetch.max.bytes", 0, I32_MAX, replica_fetch.fetch_max_bytes as i32, some),
    int_field!("replica.fetch.min.bytes", 0, I32_MAX, replica_fetch.fetch_min_bytes as i32, some),
    int_field!("replica.fetch.wait.max.ms", 0, I32_MAX, replica_fetch.fetch_wait_max_ms as i32, some),
    int_field!("replica.fetch.response.max.bytes", 0, I32_MAX,
        replica_fetch.fetch_response_max_bytes as i32, some),
    int_field!("replica.fetch.backoff.ms", 0, I32_MAX, replica_fetch.fetch_backoff_ms as u64, some),
    int_field!("log.segment.bytes", 14, I32_MAX, log.segment_bytes as u64, some).dynamic(),
    int("log.roll.ms", 1, i64::MAX, |c, v| c.log.segment_ms = v as u64, |_| None).dynamic(),
    text("log.roll.hours", set_roll_hours, Show::Fixed(Some("168"))),
    int_field!("log.index.interval.bytes", 0, I32_MAX, log.index_interval_bytes as u32, some).dynamic(),
    int_field!("log.index.size.max.bytes", 4, I32_MAX, log.max_index_bytes as u32, some).dynamic(),
    int_field!("log.flush.interval.messages", 1, i64::MAX, log.flush_interval_messages as u64, long)
        .dynamic(),
    text("log.flush.interval.ms", set_flush_interval_ms,
        Show::Field(|c| c.log.flush_interval_ms.and_then(long))).dynamic(),
    int_field!("message.max.bytes", 0, I32_MAX, log.max_message_bytes as u32, some).dynamic(),
    text_field!("log.cleanup.policy", set_cleanup_policy, log.cleanup_policy).dynamic(),
    text("log.retention.ms", set_retention, NONE).dynamic(),
    text("log.retention.minutes", set_retention, NONE),
    text("log.retention.hours", set_retention, Show::Fixed(Some("168"))),
    int_field!("log.retention.bytes", -1, i64::MAX, log.retention_bytes, some).dynamic(),
    text_field!("log.message.timestamp.type", set_timestamp_type, log.timestamp_type).dynamic(),
    int_field!("log.message.timestamp.before.max.ms", 0, i64::MAX, log.timestamp_before_max_ms, some)
        .dynamic(),
    int_field!("log.message.timestamp.after.max.ms", 0, i64::MAX, log.timestamp_after_max_ms, some)
        .dynamic(),
    int_field!("log.cleaner.min.compaction.lag.ms", 0, i64::MAX, log.min_compaction_lag_ms, some).dynamic(),
    int_field!("log.cleaner.max.compaction.lag.ms", 1, i64::MAX, log.max_compaction_lag_ms, some).dynamic(),
    int_field!("log.cleaner.delete.retention.ms", 0, i64::MAX, log.delete_retention_ms, some).dynamic(),
    text_field!("log.cleaner.min.cleanable.ratio", set_min_cleanable_ratio, log.min_cleanable_dirty_ratio)
        .dynamic(),
    int_field!("log.segment.delete.delay.ms", 0, i64::MAX, log.file_delete_delay_ms, some).dynamic(),
    text_field!("compression.type", set_compression_type, log.compression_type).dynamic(),
    text_field!("compression.gzip.level", set_compression_level, log.compression_gzip_level).dynamic(),
    text_field!("compression.lz4.level", set_compression_level, log.compression_lz4_level).dynamic(),
    text_field!("compression.zstd.level", set_compression_level, log.compression_zstd_level).dynamic(),
    int_field!("log.retention.check.interval.ms", 1, i64::MAX,
        cleaner.retention_check_interval_ms as u64, some),
    bool_field!("log.cleaner.enable", cleaner.enable),
    int_field!("log.cleaner.backoff.ms", 0, i64::MAX, cleaner.backoff_ms as u64, some),
    int_field!("log.cleaner.dedupe.buffer.size", 1 << 20, i64::MAX, cleaner.dedupe_buffer_size as u64, some),
    int_field!("producer.id.expiration.ms", 1, I32_MAX, log.producer_id_expiration_ms, some),
    int_field!("min.insync.replicas", 1, I32_MAX, log.min_insync_replicas as i32, some).dynamic(),
    bool_field!("unclean.leader.election.enable", log.unclean_leader_election_enable).dynamic(),
    int_field!("producer.id.expiration.check.interval.ms", 1, I32_MAX,
        cleaner.producer_id_expiration_check_interval_ms as u64, some),
    int_field!("socket.request.max.bytes", 1, I32_MAX, server.socket_request_max_bytes as usize, some),
    int_field!("max.connections", 0, I32_MAX, server.max_connections as usize, int32),
    int_field!("max.connections.per.ip", 0, I32_MAX, server.max_connections_per_ip as usize, int32),
    int_field!("connections.max.idle.ms", 1, i64::MAX, server.connections_max_idle_ms as u64, some),
    int_field!("queued.max.requests", 1, 1_000_000, server.queued_max_requests as usize, some),
    int_field!("queued.max.reply.bytes", 1, u32::MAX as i64, server.queued_max_reply_bytes as usize, some),
    int_field!("offsets.topic.num.partitions", 1, 10_000, groups.offsets_topic_num_partitions as i32, some),
    int("offsets.retention.minutes", 1, I32_MAX, |c, v| c.groups.offsets_retention_ms = v * 60_000,
        |c| some(c.groups.offsets_retention_ms / 60_000)),
    int_field!("offsets.retention.check.interval.ms", 1, i64::MAX,
        groups.offsets_retention_check_interval_ms as u64, some),
    int_field!("group.initial.rebalance.delay.ms", 0, I32_MAX,
        groups.initial_rebalance_delay_ms as u64, some),
    int_field!("group.min.session.timeout.ms", 0, I32_MAX, groups.min_session_timeout_ms as i32, some),
    int_field!("group.max.session.timeout.ms", 0, I32_MAX, groups.max_session_timeout_ms as i32, some),
    int_field!("group.max.size", 1, I32_MAX, groups.max_size as usize, some),
    int_field!("offset.metadata.max.bytes", 0, I32_MAX, groups.offset_metadata_max_bytes as usize, some),
    int_field!("offsets.commit.timeout.ms", 1, I32_MAX, groups.offsets_commit_timeout_ms as u64, some),
    int_field!("transaction.state.log.num.partitions", 1, 10_000, txn.state_log_num_partitions as i32, some),
    int_field!("transaction.state.log.replication.factor", 1, i16::MAX as i64,
        txn.state_log_replication_factor as i16, some),
    int_field!("transaction.state.log.segment.bytes", 1, I32_MAX, txn.state_log_segment_bytes as u64, some),
    int_field!("transaction.max.timeout.ms", 1, I32_MAX, txn.max_timeout_ms as i32, some),
    int_field!("transactional.id.expiration.ms", 1, I32_MAX, txn.id_expiration_ms, some),
    int_field!("transaction.abort.timed.out.transaction.cleanup.interval.ms", 1, I32_MAX,
        txn.abort_timed_out_interval_ms as u64, some),
    int_field!("transaction.remove.expired.transaction.cleanup.interval.ms", 1, I32_MAX,
        txn.remove_expired_interval_ms as u64, some),
    text("logging.format", set_logging_format, NONE),
    text("metrics.listener", set_metrics_listener, Show::Field(show_metrics_listener)),
    bool_field!("metrics.partition.level.enable", metrics.partition_level),
    bool_field!("fetch.sendfile.enable", fetch_sendfile),
    group("group.consumer.session.timeout.ms", "45000", 1),
    group("group.consumer.min.session.timeout.ms", "45000", 1),
    group("group.consumer.max.session.timeout.ms", "60000", 1),
    group("group.consumer.heartbeat.interval.ms", "5000", 1),
    group("group.consumer.min.heartbeat.interval.ms", "5000", 1),
    group("group.consumer.max.heartbeat.interval.ms", "15000", 1),
    group("group.share.session.timeout.ms", "45000", 1),
    group("group.share.min.session.timeout.ms", "45000", 1),
    group("group.share.max.session.timeout.ms", "60000", 1),
    group("group.share.heartbeat.interval.ms", "5000", 1),
    group("group.share.min.heartbeat.interval.ms", "5000", 1),
    group("group.share.max.heartbeat.interval.ms", "15000", 1),
    group("group.share.record.lock.duration.ms", "30000", 1_000),
    group("group.share.min.record.lock.duration.ms", "15000", 1_000),
    group("group.share.max.record.lock.duration.ms", "60000", 1_000),
    group("group.streams.session.timeout.ms", "45000", 1),
    group("group.streams.min.session.timeout.ms", "45000", 1),
    group("group.streams.max.session.timeout.ms", "60000", 1),
    group("group.streams.heartbeat.interval.ms", "5000", 1),
    group("group.streams.min.heartbeat.interval.ms", "5000", 1),
    group("group.streams.max.heartbeat.interval.ms", "15000", 1),
    group("group.streams.num.standby.replicas", "0", 0),
    group("group.streams.max.standby.replicas", "2", 0),
    sasl("sasl.kerberos.service.name", SaslValue::String, None),
    sasl("sasl.kerberos.kinit.cmd", SaslValue::String, Some("/usr/bin/kinit")),
    sasl("sasl.kerberos.ticket.renew.window.factor", SaslValue::Double(f64::MIN, f64::MAX), Some("0.8")),
    sasl("sasl.kerberos.ticket.renew.jitter", SaslValue::Double(f64::MIN, f64::MAX), Some("0.05")),
    sasl("sasl.kerberos.min.time.before.relogin", SaslValue::Long, Some("60000")),
    sasl("sasl.kerberos.principal.to.local.rules", SaslValue::List, Some("DEFAULT")),
    sasl("sasl.login.refresh.window.factor", SaslValue::Double(0.5, 1.0), Some("0.8")),
    sasl("sasl.login.refresh.window.jitter", SaslValue::Double(0.0, 0.25), Some("0.05")),
    sasl("sasl.login.refresh.min.period.seconds", SaslValue::Short(0, 900), Some("60")),
    sasl("sasl.login.refresh.buffer.seconds", SaslValue::Short(0, 3600), Some("300")),
];

/// `listeners`: several named listeners. A name the protocol map already sends to a protocol brook does
/// not speak is refused here; the rest of the listener rules need other keys and run at start
/// ([`Config::validate`]).
fn set_listeners(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    let listeners = parse_listener_list(key, value, true)?;
    check_known_protocols(config, key, value, &listeners)?;
    config.listeners = listeners;
    Ok(())
}

fn set_advertised_listeners(
    config: &mut Config,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    let listeners = parse_listener_list(key, value, false)?;
    if listeners
        .iter()
        .any(|l| super::listeners::is_wildcard_host(&l.endpoint.host))
    {
        return Err(invalid(
            key,
            value,
            "advertised.listeners cannot use the nonroutable meta-address 0.0.0.0 (or an empty host). \
             Use a routable IP address.",
        ));
    }
    check_known_protocols(config, key, value, &listeners)?;
    config.advertised_listeners = listeners;
    Ok(())
}

fn check_known_protocols(
    config: &Config,
    key: &str,
    value: &str,
    listeners: &[ListenerEndpoint],
) -> Result<(), ConfigError> {
    for listener in listeners {
        if let Some(protocol) = config.listener_security_protocol_map.get(&listener.name)
            && !SUPPORTED_PROTOCOLS.contains(&protocol)
        {
            return Err(invalid(
                key,
                value,
                &format!(
                    "listener {} uses the {protocol} security protocol; only the PLAINTEXT security \
                     protocol is supported for now",
                    listener.name
                ),
            ));
        }
    }
    Ok(())
}

fn show_listener_list(listeners: &[ListenerEndpoint]) -> String {
    listeners
        .iter()
        .map(|l| l.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn set_security_protocol_map(
    config: &mut Config,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    config.listener_security_protocol_map = parse_security_protocol_map(key, value)?;
    Ok(())
}

fn set_inter_broker_listener_name(
    config: &mut Config,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    config.inter_broker_listener_name = Some(parse_listener_name(key, value)?);
    Ok(())
}

/// `security.inter.broker.protocol`: the inter-broker listener is the one named after it (when
/// `inter.broker.listener.name` is unset). Only PLAINTEXT exists for now.
fn set_inter_broker_protocol(_: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    match security_protocol_named(value) {
        None => Err(invalid(
            key,
            value,
            &format!("Invalid security protocol `{value}` defined in {key}"),
        )),
        Some(protocol) if !SUPPORTED_PROTOCOLS.contains(&protocol) => Err(invalid(
            key,
            value,
            "only the PLAINTEXT security protocol is supported for now",
        )),
        Some(_) => Ok(()),
    }
}

/// `broker.rack`: any non-empty text; empty unsets it.
/// Kafka's two selectors by class name; anything else is a class brook cannot load.
fn set_replica_selector(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.rack_aware_replica_selector = match value.trim() {
        "org.apache.kafka.common.replica.RackAwareReplicaSelector" => true,
        "" | "org.apache.kafka.common.replica.LeaderSelector" => false,
        other => {
            return Err(ConfigError::InvalidValue {
                key: key.into(),
                value: other.into(),
                reason: "brook knows org.apache.kafka.common.replica.RackAwareReplicaSelector and \
                         org.apache.kafka.common.replica.LeaderSelector"
                    .into(),
            });
        }
    };
    Ok(())
}

fn set_rack(config: &mut Config, _: &str, value: &str) -> Result<(), ConfigError> {
    config.rack = Some(value.to_string()).filter(|r| !r.is_empty());
    Ok(())
}

fn set_process_roles(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.kraft.process_roles = parse_process_roles(key, value)?;
    Ok(())
}

fn set_voters(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.kraft.voters = parse_voters(key, value)?;
    Ok(())
}

fn set_controller_listener_names(
    config: &mut Config,
    key: &str,
    value: &str,
) -> Result<(), ConfigError> {
    config.kraft.controller_listener_names = parse_listener_names(key, value)?;
    Ok(())
}

/// `metadata.log.dir`: one directory; empty unsets it (the first log directory then holds the metadata log).
fn set_metadata_log_dir(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    if value.contains(',') {
        return Err(invalid(key, value, "expected one directory"));
    }
    config.kraft.metadata_log_dir = Some(PathBuf::from(value)).filter(|_| !value.is_empty());
    Ok(())
}

/// `log.dirs` and `log.dir`: one directory for now; `log.dirs` wins whatever the order, as in Kafka.
fn set_log_dirs(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    let dirs: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .collect();
    match dirs.as_slice() {
        [one] => {
            if key == "log.dirs" || !config.explicit.contains_key("log.dirs") {
                config.log_dir = PathBuf::from(one);
            }
            Ok(())
        }
        [] => Err(invalid(key, value, "a directory is required")),
        _ => Err(invalid(
            key,
            value,
            "brook supports one log directory for now",
        )),
    }
}

fn set_metrics_listener(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.metrics.listener = parse_host_port(key, value)?;
    Ok(())
}

/// `host:port`, empty when the metrics endpoint is off.
fn show_metrics_listener(config: &Config) -> Option<String> {
    let listener = config.metrics.listener.as_ref();
    some(
        listener
            .map(|e| format!("{}:{}", e.host, e.port))
            .unwrap_or_default(),
    )
}

fn show_log_dir(config: &Config) -> Option<String> {
    some(config.log_dir.display())
}

/// `log.roll.ms` takes precedence when both are given, as in Kafka.
fn set_roll_hours(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    let hours = parse_int(key, value, 1, I32_MAX)? as u64;
    if !config.explicit.contains_key("log.roll.ms") {
        config.log.segment_ms = hours * 3_600_000;
    }
    Ok(())
}

/// `log.retention.ms`, `.minutes`, `.hours`: the most precise unit set wins, whatever the order, as in Kafka.
fn set_retention(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    const UNITS: [(&str, i64); 3] = [
        ("log.retention.ms", 1),
        ("log.retention.minutes", 60_000),
        ("log.retention.hours", 3_600_000),
    ];
    let Some(unit) = UNITS.iter().position(|(k, _)| *k == key) else {
        return Err(ConfigError::UnknownKey(key.to_string()));
    };
    let retention_ms = parse_retention(key, value, UNITS[unit].1)?;
    if !UNITS[..unit]
        .iter()
        .any(|(k, _)| config.explicit.contains_key(*k))
    {
        config.log.retention_ms = retention_ms;
    }
    Ok(())
}

/// `null` (Kafka's "not set": flush by `log.flush.interval.messages` only) or milliseconds.
fn set_flush_interval_ms(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.log.flush_interval_ms = if value.eq_ignore_ascii_case("null") {
        None
    } else {
        Some(parse_int(key, value, 0, i64::MAX)? as u64)
    };
    Ok(())
}

fn set_cleanup_policy(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.log.cleanup_policy = CleanupPolicy::parse(value)
        .ok_or_else(|| invalid(key, value, "expected delete, compact or compact,delete"))?;
    Ok(())
}

fn set_timestamp_type(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.log.timestamp_type = TimestampType::parse(value)
        .ok_or_else(|| invalid(key, value, "expected CreateTime or LogAppendTime"))?;
    Ok(())
}

fn set_min_cleanable_ratio(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.log.min_cleanable_dirty_ratio = value
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
        .ok_or_else(|| invalid(key, value, "expected a number from 0 to 1"))?;
    Ok(())
}

fn set_compression_type(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.log.compression_type = CompressionType::parse(value).ok_or_else(|| {
        invalid(
            key,
            value,
            "expected uncompressed, zstd, lz4, snappy, gzip or producer",
        )
    })?;
    Ok(())
}

/// `compression.{gzip,lz4,zstd}.level` (KIP-390), within the codec's range.
fn set_compression_level(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    let level = check_compression_level(key, parse_int(key, value, i64::MIN, i64::MAX)?)
        .map_err(|reason| invalid(key, value, &reason))?;
    let log = &mut config.log;
    match key {
        "compression.gzip.level" => log.compression_gzip_level = level,
        "compression.lz4.level" => log.compression_lz4_level = level,
        "compression.zstd.level" => log.compression_zstd_level = level,
        _ => return Err(ConfigError::UnknownKey(key.to_string())),
    }
    Ok(())
}

fn set_logging_format(config: &mut Config, key: &str, value: &str) -> Result<(), ConfigError> {
    config.logging_format = match value.to_ascii_lowercase().as_str() {
        "text" => LoggingFormat::Text,
        "json" => LoggingFormat::Json,
        _ => return Err(invalid(key, value, "expected text or json")),
    };
    Ok(())
}

/// Checks a SASL setting's value against its type and bounds.
fn check_sasl_value(key: &str, ty: SaslValue, value: &str) -> Result<(), ConfigError> {
    match ty {
        SaslValue::String | SaslValue::List => Ok(()),
        SaslValue::Long => parse_int(key, value, i64::MIN, i64::MAX).map(|_| ()),
        SaslValue::Short(min, max) => {
            parse_int(key, value, i64::from(min), i64::from(max)).map(|_| ())
        }
        SaslValue::Double(min, max) => {
            let v: f64 = value
                .parse()
                .map_err(|_| invalid(key, value, "expected a number"))?;
            if !(min..=max).contains(&v) {
                return Err(invalid(
                    key,
                    value,
                    &format!("must be between {min} and {max}"),
                ));
            }
            Ok(())
        }
    }
}
