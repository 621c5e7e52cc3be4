//! Broker configuration under Kafka's property names.
//!
//! Three sources, later ones winning: a `server.properties` file, `BROOK_<KEY>` environment variables and
//! `--override key=value` arguments. Every key is validated when it is set, so a typo fails at start with a
//! message that names the key instead of being silently ignored.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::group::GroupConfig;
use crate::log::{
    CleanerConfig, CleanupPolicy, CompressionType, LogConfig, TimestampType,
    check_compression_level,
};
use crate::server::ServerLimits;

/// A configuration key or value that brook cannot accept.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("unknown configuration key '{0}'")]
    UnknownKey(String),
    #[error("invalid value '{value}' for configuration key '{key}': {reason}")]
    InvalidValue {
        key: String,
        value: String,
        reason: String,
    },
    #[error("cannot read configuration file {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: expected 'key=value'")]
    Syntax { path: PathBuf, line: usize },
}

/// Where a listener accepts connections and what it tells clients to connect to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Empty means "all interfaces" (as in Kafka's `PLAINTEXT://:9092`).
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    /// The socket address to bind to.
    pub fn bind_addr(&self) -> Result<SocketAddr, ConfigError> {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Ok(SocketAddr::new(
                IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                self.port,
            ));
        }
        if let Ok(ip) = host.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, self.port));
        }
        (host, self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| ConfigError::InvalidValue {
                key: "listeners".into(),
                value: self.host.clone(),
                reason: "host name does not resolve".into(),
            })
    }
}

/// How the broker writes its log lines (to stderr).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoggingFormat {
    Text,
    Json,
}

/// The broker's configuration. Field names follow the Kafka property they come from.
#[derive(Clone, Debug)]
pub struct Config {
    pub listener: Endpoint,
    pub advertised_listener: Option<Endpoint>,
    pub log_dir: PathBuf,
    pub node_id: i32,
    pub num_partitions: i32,
    pub auto_create_topics_enable: bool,
    pub log: LogConfig,
    pub cleaner: CleanerConfig,
    pub server: ServerLimits,
    pub groups: GroupConfig,
    /// `logging.format` (brook's own): `text` for people, `json` (one object per line) for log shippers.
    pub logging_format: LoggingFormat,
    /// `metrics.listener` and `metrics.partition.level.enable` (brook's own): the Prometheus endpoint.
    pub metrics: crate::metrics::MetricsConfig,
    /// Every key that was set explicitly, with its raw value, for DescribeConfigs and logging.
    explicit: BTreeMap<String, String>,
}

/// The Kafka property names brook understands.
const KNOWN_KEYS: &[&str] = &[
    "listeners",
    "advertised.listeners",
    "log.dirs",
    "log.dir",
    "node.id",
    "broker.id",
    "num.partitions",
    "auto.create.topics.enable",
    "log.segment.bytes",
    "log.roll.ms",
    "log.roll.hours",
    "log.index.interval.bytes",
    "log.index.size.max.bytes",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "message.max.bytes",
    "log.cleanup.policy",
    "log.retention.ms",
    "log.retention.minutes",
    "log.retention.hours",
    "log.retention.bytes",
    "log.message.timestamp.type",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.after.max.ms",
    "log.cleaner.min.compaction.lag.ms",
    "log.cleaner.max.compaction.lag.ms",
    "log.cleaner.delete.retention.ms",
    "log.cleaner.min.cleanable.ratio",
    "log.segment.delete.delay.ms",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
    "log.retention.check.interval.ms",
    "log.cleaner.enable",
    "log.cleaner.backoff.ms",
    "log.cleaner.dedupe.buffer.size",
    "socket.request.max.bytes",
    "max.connections",
    "max.connections.per.ip",
    "connections.max.idle.ms",
    "queued.max.requests",
    "queued.max.reply.bytes",
    "offsets.topic.num.partitions",
    "offsets.retention.minutes",
    "offsets.retention.check.interval.ms",
    "group.initial.rebalance.delay.ms",
    "group.min.session.timeout.ms",
    "group.max.session.timeout.ms",
    "group.max.size",
    "offset.metadata.max.bytes",
    "logging.format",
    "metrics.listener",
    "metrics.partition.level.enable",
];

/// Broker settings of the KIP-848 group protocols (consumer, share, streams) with Kafka 4.1's defaults and
/// lower bounds: (name, default, minimum). They give the defaults of the group-level configs
/// (`consumer.session.timeout.ms`, ...) and the bounds a group-level override must stay within. brook has
/// no consumer-protocol group yet, so nothing else reads them (classic groups use `group.*.session.*`).
pub const GROUP_PROTOCOL_KEYS: &[(&str, i32, i32)] = &[
    ("group.consumer.session.timeout.ms", 45_000, 1),
    ("group.consumer.min.session.timeout.ms", 45_000, 1),
    ("group.consumer.max.session.timeout.ms", 60_000, 1),
    ("group.consumer.heartbeat.interval.ms", 5_000, 1),
    ("group.consumer.min.heartbeat.interval.ms", 5_000, 1),
    ("group.consumer.max.heartbeat.interval.ms", 15_000, 1),
    ("group.share.session.timeout.ms", 45_000, 1),
    ("group.share.min.session.timeout.ms", 45_000, 1),
    ("group.share.max.session.timeout.ms", 60_000, 1),
    ("group.share.heartbeat.interval.ms", 5_000, 1),
    ("group.share.min.heartbeat.interval.ms", 5_000, 1),
    ("group.share.max.heartbeat.interval.ms", 15_000, 1),
    ("group.share.record.lock.duration.ms", 30_000, 1_000),
    ("group.share.min.record.lock.duration.ms", 15_000, 1_000),
    ("group.share.max.record.lock.duration.ms", 60_000, 1_000),
    ("group.streams.session.timeout.ms", 45_000, 1),
    ("group.streams.min.session.timeout.ms", 45_000, 1),
    ("group.streams.max.session.timeout.ms", 60_000, 1),
    ("group.streams.heartbeat.interval.ms", 5_000, 1),
    ("group.streams.min.heartbeat.interval.ms", 5_000, 1),
    ("group.streams.max.heartbeat.interval.ms", 15_000, 1),
    ("group.streams.num.standby.replicas", 0, 0),
    ("group.streams.max.standby.replicas", 2, 0),
];

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

/// The SASL settings Kafka 4.1 lets an admin change on a running listener (DynamicListenerConfig), with
/// Kafka's type and default (None: no default). brook has no SASL yet: they are validated, stored and
/// described so that tools which set them work, and take effect once SASL exists.
pub const SASL_KEYS: &[(&str, SaslValue, Option<&str>)] = &[
    ("sasl.kerberos.service.name", SaslValue::String, None),
    (
        "sasl.kerberos.kinit.cmd",
        SaslValue::String,
        Some("/usr/bin/kinit"),
    ),
    (
        "sasl.kerberos.ticket.renew.window.factor",
        SaslValue::Double(f64::MIN, f64::MAX),
        Some("0.8"),
    ),
    (
        "sasl.kerberos.ticket.renew.jitter",
        SaslValue::Double(f64::MIN, f64::MAX),
        Some("0.05"),
    ),
    (
        "sasl.kerberos.min.time.before.relogin",
        SaslValue::Long,
        Some("60000"),
    ),
    (
        "sasl.kerberos.principal.to.local.rules",
        SaslValue::List,
        Some("DEFAULT"),
    ),
    (
        "sasl.login.refresh.window.factor",
        SaslValue::Double(0.5, 1.0),
        Some("0.8"),
    ),
    (
        "sasl.login.refresh.window.jitter",
        SaslValue::Double(0.0, 0.25),
        Some("0.05"),
    ),
    (
        "sasl.login.refresh.min.period.seconds",
        SaslValue::Short(0, 900),
        Some("60"),
    ),
    (
        "sasl.login.refresh.buffer.seconds",
        SaslValue::Short(0, 3600),
        Some("300"),
    ),
];

fn group_protocol_key(key: &str) -> Option<&'static (&'static str, i32, i32)> {
    GROUP_PROTOCOL_KEYS.iter().find(|(k, _, _)| *k == key)
}

fn sasl_key(key: &str) -> Option<&'static (&'static str, SaslValue, Option<&'static str>)> {
    SASL_KEYS.iter().find(|(k, _, _)| *k == key)
}

/// Checks a SASL setting's value against its type and bounds.
fn check_sasl_value(key: &str, ty: SaslValue, value: &str) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason,
    };
    match ty {
        SaslValue::String | SaslValue::List => Ok(()),
        SaslValue::Long => parse_int(key, value, i64::MIN, i64::MAX).map(|_| ()),
        SaslValue::Short(min, max) => {
            parse_int(key, value, i64::from(min), i64::from(max)).map(|_| ())
        }
        SaslValue::Double(min, max) => {
            let v: f64 = value.parse().map_err(|_| bad("expected a number".into()))?;
            if !(min..=max).contains(&v) {
                return Err(bad(format!("must be between {min} and {max}")));
            }
            Ok(())
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listener: Endpoint {
                host: "127.0.0.1".into(),
                port: 9092,
            },
            advertised_listener: None,
            log_dir: PathBuf::from("./data"),
            node_id: 1,
            num_partitions: 1,
            auto_create_topics_enable: true,
            log: LogConfig::default(),
            cleaner: CleanerConfig::default(),
            server: ServerLimits::default(),
            groups: GroupConfig::default(),
            logging_format: LoggingFormat::Text,
            metrics: Default::default(),
            explicit: BTreeMap::new(),
        }
    }
}

impl Config {
    /// The embedded defaults: `PLAINTEXT://127.0.0.1:9092`, `log.dirs=./data`, `node.id=1`.
    pub fn new() -> Config {
        Config::default()
    }

    /// Every property name brook accepts.
    pub fn known_keys() -> &'static [&'static str] {
        static ALL: std::sync::LazyLock<Vec<&'static str>> = std::sync::LazyLock::new(|| {
            let groups = GROUP_PROTOCOL_KEYS.iter().map(|(k, _, _)| *k);
            let sasl = SASL_KEYS.iter().map(|(k, _, _)| *k);
            KNOWN_KEYS
                .iter()
                .copied()
                .chain(groups)
                .chain(sasl)
                .collect()
        });
        &ALL
    }

    /// The keys set explicitly (file, environment, overrides or `set`), with their values.
    pub fn explicit(&self) -> &BTreeMap<String, String> {
        &self.explicit
    }

    /// Sets one property by its Kafka name, validated as it would be in a properties file.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Config, ConfigError> {
        let value = value.trim();
        let bad = |reason: &str| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: reason.to_string(),
        };
        match key {
            "listeners" => self.listener = parse_listener(key, value)?,
            "advertised.listeners" => {
                let endpoint = parse_listener(key, value)?;
                if matches!(endpoint.host.as_str(), "" | "0.0.0.0" | "[::]" | "::") {
                    return Err(bad("an advertised listener needs a host clients can reach"));
                }
                self.advertised_listener = Some(endpoint);
            }
            "log.dirs" | "log.dir" => {
                let dirs: Vec<&str> = value
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .collect();
                match dirs.as_slice() {
                    [one] => {
                        // log.dirs wins over log.dir, as in Kafka, whatever the order they are set in.
                        if key == "log.dirs" || !self.explicit.contains_key("log.dirs") {
                            self.log_dir = PathBuf::from(one);
                        }
                    }
                    [] => return Err(bad("a directory is required")),
                    _ => return Err(bad("brook supports one log directory for now")),
                }
            }
            "node.id" | "broker.id" => {
                self.node_id = parse_int(key, value, 0, i32::MAX as i64)? as i32
            }
            "num.partitions" => self.num_partitions = parse_int(key, value, 1, 1_000_000)? as i32,
            "auto.create.topics.enable" => self.auto_create_topics_enable = parse_bool(key, value)?,
            "log.segment.bytes" => {
                self.log.segment_bytes = parse_int(key, value, 14, i32::MAX as i64)? as u64
            }
            "log.roll.ms" => self.log.segment_ms = parse_int(key, value, 1, i64::MAX)? as u64,
            "log.roll.hours" => {
                // log.roll.ms takes precedence when both are given, as in Kafka.
                if !self.explicit.contains_key("log.roll.ms") {
                    self.log.segment_ms =
                        parse_int(key, value, 1, i32::MAX as i64)? as u64 * 3_600_000;
                }
            }
            "log.index.interval.bytes" => {
                self.log.index_interval_bytes = parse_int(key, value, 0, i32::MAX as i64)? as u32
            }
            "log.index.size.max.bytes" => {
                self.log.max_index_bytes = parse_int(key, value, 4, i32::MAX as i64)? as u32
            }
            "log.flush.interval.messages" => {
                self.log.flush_interval_messages = parse_int(key, value, 1, i64::MAX)? as u64
            }
            "log.flush.interval.ms" => {
                self.log.flush_interval_ms = if value.eq_ignore_ascii_case("null") {
                    None
                } else {
                    Some(parse_int(key, value, 0, i64::MAX)? as u64)
                }
            }
            "message.max.bytes" => {
                self.log.max_message_bytes = parse_int(key, value, 0, i32::MAX as i64)? as u32
            }
            "log.cleanup.policy" => {
                self.log.cleanup_policy = CleanupPolicy::parse(value)
                    .ok_or_else(|| bad("expected delete, compact or compact,delete"))?
            }
            "log.retention.ms" => self.log.retention_ms = parse_retention(key, value, 1)?,
            "log.retention.minutes" => {
                // The most precise unit set wins, whatever the order, as in Kafka.
                if !self.explicit.contains_key("log.retention.ms") {
                    self.log.retention_ms = parse_retention(key, value, 60_000)?;
                }
            }
            "log.retention.hours" => {
                if !self.explicit.contains_key("log.retention.ms")
                    && !self.explicit.contains_key("log.retention.minutes")
                {
                    self.log.retention_ms = parse_retention(key, value, 3_600_000)?;
                }
            }
            "log.retention.bytes" => {
                self.log.retention_bytes = parse_int(key, value, -1, i64::MAX)?
            }
            "log.message.timestamp.type" => {
                self.log.timestamp_type = TimestampType::parse(value)
                    .ok_or_else(|| bad("expected CreateTime or LogAppendTime"))?
            }
            "log.message.timestamp.before.max.ms" => {
                self.log.timestamp_before_max_ms = parse_int(key, value, 0, i64::MAX)?
            }
            "compression.type" => {
                self.log.compression_type = CompressionType::parse(value).ok_or_else(|| {
                    bad("expected uncompressed, zstd, lz4, snappy, gzip or producer")
                })?
            }
            "compression.gzip.level" | "compression.lz4.level" | "compression.zstd.level" => {
                let level =
                    check_compression_level(key, parse_int(key, value, i64::MIN, i64::MAX)?)
                        .map_err(|reason| bad(&reason))?;
                match key {
                    "compression.gzip.level" => self.log.compression_gzip_level = level,
                    "compression.lz4.level" => self.log.compression_lz4_level = level,
                    _ => self.log.compression_zstd_level = level,
                }
            }
            "log.message.timestamp.after.max.ms" => {
                self.log.timestamp_after_max_ms = parse_int(key, value, 0, i64::MAX)?
            }
            "log.cleaner.min.compaction.lag.ms" => {
                self.log.min_compaction_lag_ms = parse_int(key, value, 0, i64::MAX)?
            }
            "log.cleaner.max.compaction.lag.ms" => {
                self.log.max_compaction_lag_ms = parse_int(key, value, 1, i64::MAX)?
            }
            "log.cleaner.delete.retention.ms" => {
                self.log.delete_retention_ms = parse_int(key, value, 0, i64::MAX)?
            }
            "log.cleaner.min.cleanable.ratio" => {
                self.log.min_cleanable_dirty_ratio = value
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| bad("expected a number from 0 to 1"))?
            }
            "log.segment.delete.delay.ms" => {
                self.log.file_delete_delay_ms = parse_int(key, value, 0, i64::MAX)?
            }
            "log.retention.check.interval.ms" => {
                self.cleaner.retention_check_interval_ms =
                    parse_int(key, value, 1, i64::MAX)? as u64
            }
            "log.cleaner.enable" => self.cleaner.enable = parse_bool(key, value)?,
            "log.cleaner.backoff.ms" => {
                self.cleaner.backoff_ms = parse_int(key, value, 0, i64::MAX)? as u64
            }
            "log.cleaner.dedupe.buffer.size" => {
                self.cleaner.dedupe_buffer_size = parse_int(key, value, 1 << 20, i64::MAX)? as u64
            }
            "socket.request.max.bytes" => {
                self.server.socket_request_max_bytes =
                    parse_int(key, value, 1, i32::MAX as i64)? as usize
            }
            "max.connections" => {
                self.server.max_connections = parse_int(key, value, 0, i32::MAX as i64)? as usize
            }
            "max.connections.per.ip" => {
                self.server.max_connections_per_ip =
                    parse_int(key, value, 0, i32::MAX as i64)? as usize
            }
            "connections.max.idle.ms" => {
                self.server.connections_max_idle_ms = parse_int(key, value, 1, i64::MAX)? as u64
            }
            "queued.max.requests" => {
                self.server.queued_max_requests = parse_int(key, value, 1, 1_000_000)? as usize
            }
            "queued.max.reply.bytes" => {
                self.server.queued_max_reply_bytes =
                    parse_int(key, value, 1, u32::MAX as i64)? as usize
            }
            "offsets.topic.num.partitions" => {
                self.groups.offsets_topic_num_partitions = parse_int(key, value, 1, 10_000)? as i32
            }
            "offsets.retention.minutes" => {
                self.groups.offsets_retention_ms =
                    parse_int(key, value, 1, i32::MAX as i64)? * 60_000
            }
            "offsets.retention.check.interval.ms" => {
                self.groups.offsets_retention_check_interval_ms =
                    parse_int(key, value, 1, i64::MAX)? as u64
            }
            "group.initial.rebalance.delay.ms" => {
                self.groups.initial_rebalance_delay_ms =
                    parse_int(key, value, 0, i32::MAX as i64)? as u64
            }
            "group.min.session.timeout.ms" => {
                self.groups.min_session_timeout_ms =
                    parse_int(key, value, 0, i32::MAX as i64)? as i32
            }
            "group.max.session.timeout.ms" => {
                self.groups.max_session_timeout_ms =
                    parse_int(key, value, 0, i32::MAX as i64)? as i32
            }
            "group.max.size" => {
                self.groups.max_size = parse_int(key, value, 1, i32::MAX as i64)? as usize
            }
            "offset.metadata.max.bytes" => {
                self.groups.offset_metadata_max_bytes =
                    parse_int(key, value, 0, i32::MAX as i64)? as usize
            }
            "logging.format" => {
                self.logging_format = match value.to_ascii_lowercase().as_str() {
                    "text" => LoggingFormat::Text,
                    "json" => LoggingFormat::Json,
                    _ => return Err(bad("expected text or json")),
                }
            }
            "metrics.listener" => self.metrics.listener = parse_host_port(key, value)?,
            "metrics.partition.level.enable" => {
                self.metrics.partition_level = parse_bool(key, value)?
            }
            _ => {
                if let Some((_, _, min)) = group_protocol_key(key) {
                    parse_int(key, value, i64::from(*min), i32::MAX as i64)?;
                } else if let Some((_, ty, _)) = sasl_key(key) {
                    check_sasl_value(key, *ty, value)?;
                } else {
                    return Err(ConfigError::UnknownKey(key.to_string()));
                }
            }
        }
        self.explicit.insert(key.to_string(), value.to_string());
        Ok(self)
    }

    /// Applies every `key=value` of a Java properties file, in file order.
    pub fn load_properties_file(&mut self, path: &Path) -> Result<&mut Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::File {
            path: path.to_path_buf(),
            source,
        })?;
        for (line, key, value) in parse_properties(&text) {
            if key.is_empty() {
                return Err(ConfigError::Syntax {
                    path: path.to_path_buf(),
                    line,
                });
            }
            self.set(&key, &value)?;
        }
        Ok(self)
    }

    /// Applies `BROOK_<KEY>` variables (upper case, dots as underscores: `BROOK_LOG_DIRS`).
    /// An unrecognised `BROOK_` variable is an error, like an unknown key in a file.
    pub fn apply_env<I>(&mut self, vars: I) -> Result<&mut Config, ConfigError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(name, _)| name.starts_with("BROOK_"))
            .collect();
        vars.sort();
        for (name, value) in vars {
            let key = Self::known_keys()
                .iter()
                .find(|key| env_name(key) == name)
                .ok_or_else(|| ConfigError::UnknownKey(name.clone()))?;
            self.set(key, &value)?;
        }
        Ok(self)
    }

    /// The endpoint clients are told to connect to, given the port the listener actually bound.
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> Endpoint {
        match &self.advertised_listener {
            Some(adv) if adv.port == 0 => Endpoint {
                host: adv.host.clone(),
                port: bound.port(),
            },
            Some(adv) => adv.clone(),
            None => {
                let host = if bound.ip().is_unspecified() {
                    local_hostname().unwrap_or_else(|| "localhost".into())
                } else {
                    bound.ip().to_string()
                };
                Endpoint {
                    host,
                    port: bound.port(),
                }
            }
        }
    }
}

/// Broker properties an admin may change while the broker runs (AlterConfigs on a BROKER resource), as
/// Kafka marks them cluster-wide dynamic: the `log.*` defaults of topic configs. Every partition's config is
/// re-derived at once; topic overrides still win. Others answer INVALID_REQUEST.
pub const DYNAMIC_BROKER_KEYS: &[&str] = &[
    "log.cleanup.policy",
    "log.cleaner.delete.retention.ms",
    "log.segment.delete.delay.ms",
    "log.flush.interval.messages",
    "log.flush.interval.ms",
    "log.index.interval.bytes",
    "log.cleaner.max.compaction.lag.ms",
    "message.max.bytes",
    "log.message.timestamp.after.max.ms",
    "log.message.timestamp.before.max.ms",
    "log.message.timestamp.type",
    "log.cleaner.min.cleanable.ratio",
    "log.cleaner.min.compaction.lag.ms",
    "log.retention.bytes",
    "log.retention.ms",
    "log.segment.bytes",
    "log.index.size.max.bytes",
    "log.roll.ms",
    "compression.type",
    "compression.gzip.level",
    "compression.lz4.level",
    "compression.zstd.level",
];

/// Whether `key` may be changed at runtime (see [`DYNAMIC_BROKER_KEYS`] and [`SASL_KEYS`]).
pub fn is_dynamic_broker_key(key: &str) -> bool {
    DYNAMIC_BROKER_KEYS.contains(&key) || sasl_key(key).is_some()
}

impl Config {
    /// This configuration with dynamic broker configs applied on top, later layers winning (the cluster
    /// default, then this broker's). A stored value that no longer validates is logged and skipped.
    pub fn with_dynamic<'a, I>(&self, layers: I) -> Config
    where
        I: IntoIterator<Item = &'a BTreeMap<String, String>>,
    {
        let mut config = self.clone();
        for layer in layers {
            for (key, value) in layer {
                if let Err(e) = config.set(key, value) {
                    tracing::warn!(key, error = %e, "ignoring stored dynamic broker config");
                }
            }
        }
        config
    }

    /// The value of a broker property in this configuration as Kafka prints it; None for a property that is
    /// unset and has no default (`log.retention.ms` when only hours are given) or that brook does not know.
    pub fn value_of(&self, key: &str) -> Option<String> {
        if let Some(v) = self.explicit.get(key) {
            return Some(v.clone());
        }
        let long_max = |v: u64| i64::try_from(v).unwrap_or(i64::MAX).to_string();
        let int_max = |v: usize| i32::try_from(v).unwrap_or(i32::MAX).to_string();
        let log = &self.log;
        Some(match key {
            "listeners" => format!("PLAINTEXT://{}:{}", self.listener.host, self.listener.port),
            "advertised.listeners" => return None,
            "log.dirs" | "log.dir" => self.log_dir.display().to_string(),
            "node.id" | "broker.id" => self.node_id.to_string(),
            "num.partitions" => self.num_partitions.to_string(),
            "auto.create.topics.enable" => self.auto_create_topics_enable.to_string(),
            "log.segment.bytes" => log.segment_bytes.to_string(),
            "log.roll.ms" => return None,
            "log.roll.hours" => "168".into(),
            "log.index.interval.bytes" => log.index_interval_bytes.to_string(),
            "log.index.size.max.bytes" => log.max_index_bytes.to_string(),
            "log.flush.interval.messages" => long_max(log.flush_interval_messages),
            "log.flush.interval.ms" => return log.flush_interval_ms.map(long_max),
            "message.max.bytes" => log.max_message_bytes.to_string(),
            "log.cleanup.policy" => log.cleanup_policy.to_string(),
            "log.retention.ms" | "log.retention.minutes" => return None,
            "log.retention.hours" => "168".into(),
            "log.retention.bytes" => log.retention_bytes.to_string(),
            "log.message.timestamp.type" => log.timestamp_type.to_string(),
            "compression.type" => log.compression_type.to_string(),
            "compression.gzip.level" => log.compression_gzip_level.to_string(),
            "compression.lz4.level" => log.compression_lz4_level.to_string(),
            "compression.zstd.level" => log.compression_zstd_level.to_string(),
            "log.message.timestamp.before.max.ms" => log.timestamp_before_max_ms.to_string(),
            "log.message.timestamp.after.max.ms" => log.timestamp_after_max_ms.to_string(),
            "log.cleaner.min.compaction.lag.ms" => log.min_compaction_lag_ms.to_string(),
            "log.cleaner.max.compaction.lag.ms" => log.max_compaction_lag_ms.to_string(),
            "log.cleaner.delete.retention.ms" => log.delete_retention_ms.to_string(),
            "log.cleaner.min.cleanable.ratio" => log.min_cleanable_dirty_ratio.to_string(),
            "log.segment.delete.delay.ms" => log.file_delete_delay_ms.to_string(),
            "log.retention.check.interval.ms" => {
                self.cleaner.retention_check_interval_ms.to_string()
            }
            "log.cleaner.enable" => self.cleaner.enable.to_string(),
            "log.cleaner.backoff.ms" => self.cleaner.backoff_ms.to_string(),
            "log.cleaner.dedupe.buffer.size" => self.cleaner.dedupe_buffer_size.to_string(),
            "socket.request.max.bytes" => self.server.socket_request_max_bytes.to_string(),
            "max.connections" => int_max(self.server.max_connections),
            "max.connections.per.ip" => int_max(self.server.max_connections_per_ip),
            "connections.max.idle.ms" => self.server.connections_max_idle_ms.to_string(),
            "queued.max.requests" => self.server.queued_max_requests.to_string(),
            "queued.max.reply.bytes" => self.server.queued_max_reply_bytes.to_string(),
            "offsets.topic.num.partitions" => self.groups.offsets_topic_num_partitions.to_string(),
            "offsets.retention.minutes" => (self.groups.offsets_retention_ms / 60_000).to_string(),
            "offsets.retention.check.interval.ms" => {
                self.groups.offsets_retention_check_interval_ms.to_string()
            }
            "group.initial.rebalance.delay.ms" => {
                self.groups.initial_rebalance_delay_ms.to_string()
            }
            "group.min.session.timeout.ms" => self.groups.min_session_timeout_ms.to_string(),
            "group.max.session.timeout.ms" => self.groups.max_session_timeout_ms.to_string(),
            "group.max.size" => self.groups.max_size.to_string(),
            "offset.metadata.max.bytes" => self.groups.offset_metadata_max_bytes.to_string(),
            "metrics.listener" => self
                .metrics
                .listener
                .as_ref()
                .map(|e| format!("{}:{}", e.host, e.port))
                .unwrap_or_default(),
            "metrics.partition.level.enable" => self.metrics.partition_level.to_string(),
            _ => {
                if let Some((_, default, _)) = group_protocol_key(key) {
                    default.to_string()
                } else {
                    return sasl_key(key).and_then(|(_, _, d)| d.map(str::to_string));
                }
            }
        })
    }

    /// The value in force of one of [`GROUP_PROTOCOL_KEYS`] (its default when unset or unknown).
    pub fn group_protocol_value(&self, key: &str) -> i32 {
        self.value_of(key)
            .and_then(|v| v.parse().ok())
            .or_else(|| group_protocol_key(key).map(|(_, d, _)| *d))
            .unwrap_or_default()
    }
}

/// The environment variable that sets `key`.
pub fn env_name(key: &str) -> String {
    format!(
        "BROOK_{}",
        key.to_ascii_uppercase().replace(['.', '-'], "_")
    )
}

fn parse_listener(key: &str, value: &str) -> Result<Endpoint, ConfigError> {
    let bad = |reason: &str| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let listeners: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let [listener] = listeners.as_slice() else {
        return Err(bad("exactly one listener is supported for now"));
    };
    let (protocol, address) = listener
        .split_once("://")
        .ok_or_else(|| bad("expected PROTOCOL://host:port"))?;
    if !protocol.eq_ignore_ascii_case("PLAINTEXT") {
        return Err(bad(
            "only the PLAINTEXT security protocol is supported for now",
        ));
    }
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| bad("expected PROTOCOL://host:port"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
    Ok(Endpoint {
        host: host.to_string(),
        port,
    })
}

/// `host:port` (`[v6]:port` for IPv6); an empty value is None (the feature is off).
fn parse_host_port(key: &str, value: &str) -> Result<Option<Endpoint>, ConfigError> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    };
    let (host, port) = value
        .rsplit_once(':')
        .ok_or_else(|| bad("expected host:port, or empty to disable"))?;
    let port = port
        .parse::<u16>()
        .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
    Ok(Some(Endpoint {
        host: host.to_string(),
        port,
    }))
}

fn parse_int(key: &str, value: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
    let parsed = value
        .parse::<i64>()
        .map_err(|_| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: "expected an integer".into(),
        })?;
    if parsed < min || parsed > max {
        return Err(ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: format!("must be between {min} and {max}"),
        });
    }
    Ok(parsed)
}

/// A retention time in `unit` milliseconds; -1 (any negative, as Kafka reads it) means unlimited.
fn parse_retention(key: &str, value: &str, unit: i64) -> Result<i64, ConfigError> {
    let n = parse_int(key, value, i64::MIN, i64::MAX)?;
    if n < 0 {
        return Ok(-1);
    }
    n.checked_mul(unit)
        .ok_or_else(|| ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: "too large".into(),
        })
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ConfigError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: "expected true or false".into(),
        }),
    }
}

fn local_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many bytes.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8(buf[..end].to_vec())
        .ok()
        .filter(|h| !h.is_empty())
}

/// Parses Java properties text into (line number, key, value); an empty key marks a line that has none.
fn parse_properties(text: &str) -> Vec<(usize, String, String)> {
    let mut out = Vec::new();
    let mut logical = String::new();
    let mut start_line = 0;
    for (index, raw) in text.lines().enumerate() {
        let line = if logical.is_empty() {
            raw.trim_start()
        } else {
            raw.trim()
        };
        if logical.is_empty() {
            if line.is_empty() || line.starts_with('#') || line.starts_with('!') {
                continue;
            }
            start_line = index + 1;
        }
        // An odd number of trailing backslashes continues the line.
        let trailing = line.chars().rev().take_while(|&c| c == '\\').count();
        if trailing % 2 == 1 {
            logical.push_str(&line[..line.len() - 1]);
            continue;
        }
        logical.push_str(line);
        out.push(split_property(start_line, &std::mem::take(&mut logical)));
    }
    if !logical.is_empty() {
        out.push(split_property(start_line, &logical));
    }
    out
}

fn split_property(line: usize, text: &str) -> (usize, String, String) {
    let mut key = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    key.push(unescape(next));
                }
            }
            '=' | ':' => break,
            c if c.is_whitespace() => {
                while chars.peek().is_some_and(|c| c.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('=') | Some(':')) {
                    chars.next();
                }
                break;
            }
            c => key.push(c),
        }
    }
    let mut value = String::new();
    let rest: String = chars.collect();
    let mut chars = rest.trim_start().chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                value.push(unescape(next));
            }
        } else {
            value.push(c);
        }
    }
    (line, key, value)
}

fn unescape(c: char) -> char {
    match c {
        'n' => '\n',
        't' => '\t',
        'r' => '\r',
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retention_takes_the_most_precise_unit_in_any_order() {
        let mut config = Config::new();
        assert_eq!(config.log.retention_ms, 168 * 3_600_000, "Kafka's 7 days");
        config.set("log.retention.minutes", "5").unwrap();
        config.set("log.retention.hours", "1").unwrap();
        assert_eq!(config.log.retention_ms, 300_000, "minutes beat hours");
        config.set("log.retention.ms", "-5").unwrap();
        assert_eq!(config.log.retention_ms, -1, "negative means unlimited");
        config.set("log.retention.minutes", "9").unwrap();
        assert_eq!(config.log.retention_ms, -1, "ms beats minutes");
    }

    #[test]
    fn cleanup_policy_and_timestamp_type_are_validated() {
        let mut config = Config::new();
        config.set("log.cleanup.policy", "compact, delete").unwrap();
        assert_eq!(
            config.log.cleanup_policy,
            CleanupPolicy {
                delete: true,
                compact: true
            }
        );
        assert!(config.set("log.cleanup.policy", "shred").is_err());
        config
            .set("log.message.timestamp.type", "LogAppendTime")
            .unwrap();
        assert_eq!(config.log.timestamp_type, TimestampType::LogAppendTime);
        assert!(config.set("log.message.timestamp.type", "Now").is_err());
        assert!(
            config
                .set("log.cleaner.min.cleanable.ratio", "1.5")
                .is_err()
        );
    }

    #[test]
    fn defaults_match_the_embedded_broker() {
        let config = Config::new();
        assert_eq!(
            config.listener,
            Endpoint {
                host: "127.0.0.1".into(),
                port: 9092
            }
        );
        assert_eq!(config.log_dir, PathBuf::from("./data"));
        assert_eq!(config.node_id, 1);
        assert_eq!(config.num_partitions, 1);
        assert!(config.auto_create_topics_enable);
    }

    #[test]
    fn properties_file_syntax_is_java_compatible() {
        let text = "# comment\n! also\n  log.dirs = /tmp/a\nnum.partitions:3\nnode.id 7\nlisteners=PLAINTEXT://\\\n  127.0.0.1:0\n";
        let parsed = parse_properties(text);
        let pairs: Vec<(&str, &str)> = parsed
            .iter()
            .map(|(_, k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            vec![
                ("log.dirs", "/tmp/a"),
                ("num.partitions", "3"),
                ("node.id", "7"),
                ("listeners", "PLAINTEXT://127.0.0.1:0")
            ]
        );
    }

    #[test]
    fn unknown_key_and_bad_value_name_the_key() {
        let mut config = Config::new();
        let err = config
            .set("log.retention.bogus", "1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("log.retention.bogus"), "{err}");
        let err = config
            .set("num.partitions", "zero")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("num.partitions") && err.contains("zero"),
            "{err}"
        );
        let err = config
            .set("listeners", "SSL://127.0.0.1:9093")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listeners"), "{err}");
    }

    #[test]
    fn env_variables_map_to_property_names() {
        let mut config = Config::new();
        config
            .apply_env(vec![
                ("BROOK_LOG_DIRS".to_string(), "/var/brook".to_string()),
                ("BROOK_NUM_PARTITIONS".to_string(), "4".to_string()),
                ("PATH".to_string(), "/bin".to_string()),
            ])
            .unwrap();
        assert_eq!(config.log_dir, PathBuf::from("/var/brook"));
        assert_eq!(config.num_partitions, 4);
        let err = Config::new()
            .apply_env(vec![("BROOK_NOPE".to_string(), "1".to_string())])
            .unwrap_err();
        assert!(err.to_string().contains("BROOK_NOPE"));
    }

    #[test]
    fn metrics_listener_is_host_port_or_empty() {
        let mut config = Config::new();
        assert_eq!(
            config.value_of("metrics.listener").as_deref(),
            Some("127.0.0.1:9464")
        );
        assert!(config.metrics.partition_level);
        config
            .apply_env(vec![(
                "BROOK_METRICS_LISTENER".to_string(),
                "0.0.0.0:9500".to_string(),
            )])
            .unwrap();
        let endpoint = config.metrics.listener.clone().unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("0.0.0.0", 9500));
        config.set("metrics.listener", "").unwrap();
        assert_eq!(config.metrics.listener, None, "empty disables metrics");
        assert_eq!(config.value_of("metrics.listener").as_deref(), Some(""));
        config
            .set("metrics.partition.level.enable", "false")
            .unwrap();
        assert!(!config.metrics.partition_level);
        for bad in ["9464", "host:port", "127.0.0.1:70000"] {
            let err = config.set("metrics.listener", bad).unwrap_err().to_string();
            assert!(err.contains("metrics.listener"), "{err}");
        }
    }

    #[test]
    fn ephemeral_port_is_advertised_as_the_bound_port() {
        let mut config = Config::new();
        config.set("listeners", "PLAINTEXT://127.0.0.1:0").unwrap();
        let bound: SocketAddr = "127.0.0.1:40123".parse().unwrap();
        assert_eq!(
            config.advertised_endpoint(bound),
            Endpoint {
                host: "127.0.0.1".into(),
                port: 40123
            }
        );
        config
            .set("advertised.listeners", "PLAINTEXT://broker.example:0")
            .unwrap();
        assert_eq!(
            config.advertised_endpoint(bound),
            Endpoint {
                host: "broker.example".into(),
                port: 40123
            }
        );
    }

    #[test]
    fn log_dirs_wins_over_log_dir() {
        let mut config = Config::new();
        config.set("log.dirs", "/a").unwrap();
        config.set("log.dir", "/b").unwrap();
        assert_eq!(config.log_dir, PathBuf::from("/a"));
    }
}
