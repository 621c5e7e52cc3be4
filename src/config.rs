//! Broker configuration under Kafka's property names.
//!
//! Three sources, later ones winning: a `server.properties` file, `BROOK_<KEY>` environment variables and
//! `--override key=value` arguments. Every key is validated when it is set, so a typo fails at start with a
//! message that names the key instead of being silently ignored.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use crate::group::GroupConfig;
use crate::log::{CleanerConfig, LogConfig};
use crate::txn::TransactionConfig;

mod keys;
mod kraft;
mod listeners;
mod metrics_config;
mod resolve;
mod security_protocol;
mod server_limits;

pub use crate::replica::ReplicaFetchConfig;
pub use keys::{KeySpec, SaslValue, key_spec, key_specs};
pub use kraft::{ClusterConfig, ControllerListener, KraftConfig, ProcessRoles};
pub use listeners::{
    Advertised, BrokerListener, DEFAULT_SECURITY_PROTOCOL_MAP, ListenerEndpoint,
    SecurityProtocolMap, security_protocol_named,
};
pub use metrics_config::MetricsConfig;
pub use security_protocol::SecurityProtocol;
pub use server_limits::ServerLimits;

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
    /// Keys that are each valid but do not fit together (Kafka's `KafkaConfig.validateValues`).
    #[error("invalid configuration: {0}")]
    Inconsistent(String),
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
    /// `listeners`: every listener, broker and controller ones, in the order given.
    pub listeners: Vec<ListenerEndpoint>,
    /// `advertised.listeners`; empty: the listeners advertise themselves.
    pub advertised_listeners: Vec<ListenerEndpoint>,
    /// `listener.security.protocol.map`.
    pub listener_security_protocol_map: SecurityProtocolMap,
    /// `inter.broker.listener.name`, upper case; None: the listener named after
    /// `security.inter.broker.protocol` (PLAINTEXT).
    pub inter_broker_listener_name: Option<String>,
    pub log_dir: PathBuf,
    pub node_id: i32,
    /// `broker.rack`: registered with the broker, for rack-aware replica placement.
    pub rack: Option<String>,
    /// `replica.selector.class` (KIP-392): true for Kafka's `RackAwareReplicaSelector`, which sends a
    /// consumer with a `client.rack` to an in-sync replica in its rack; false (unset, or `LeaderSelector`):
    /// consumers read from leaders.
    pub rack_aware_replica_selector: bool,
    /// `fetch.sendfile.enable` (brook's own): Fetch answers send reads of 64 KiB and more straight from the
    /// segment file with sendfile(2) instead of reading them into a buffer and writing that. Off by
    /// default: on loopback on the measured machine it took the broker's work before the first byte from
    /// ~450 us to ~90 us per 4 MiB answer but made the whole transfer about twice as slow (README,
    /// Performance, workload 10).
    pub fetch_sendfile: bool,
    /// `process.roles`, `controller.*`, `metadata.log.*`, `broker.session.timeout.ms`, ...: see
    /// [`Config::cluster_mode`].
    pub kraft: KraftConfig,
    /// `default.replication.factor`: replicas of a topic created without a factor (auto-created ones too).
    pub default_replication_factor: i16,
    pub num_partitions: i32,
    pub auto_create_topics_enable: bool,
    /// `auto.leader.rebalance.enable`: the active controller moves leaderships back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds`: how often the active controller looks for them.
    pub leader_imbalance_check_interval_seconds: u64,
    /// `num.replica.fetchers`, `replica.fetch.*`: how followers fetch from their leaders.
    pub replica_fetch: ReplicaFetchConfig,
    pub log: LogConfig,
    pub cleaner: CleanerConfig,
    pub server: ServerLimits,
    pub groups: GroupConfig,
    /// `transaction.*` and `transactional.id.expiration.ms`: the transaction coordinator.
    pub txn: TransactionConfig,
    /// `logging.format` (brook's own): `text` for people, `json` (one object per line) for log shippers.
    pub logging_format: LoggingFormat,
    /// `metrics.listener` and `metrics.partition.level.enable` (brook's own): the Prometheus endpoint.
    pub metrics: MetricsConfig,
    /// Every key that was set explicitly, with its raw value, for DescribeConfigs and logging.
    explicit: BTreeMap<String, String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: vec![ListenerEndpoint {
                name: "PLAINTEXT".into(),
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port: 9092,
                },
            }],
            advertised_listeners: Vec::new(),
            listener_security_protocol_map: SecurityProtocolMap::default(),
            inter_broker_listener_name: None,
            log_dir: PathBuf::from("./data"),
            node_id: 1,
            rack: None,
            rack_aware_replica_selector: false,
            fetch_sendfile: false,
            kraft: KraftConfig::default(),
            default_replication_factor: 1,
            num_partitions: 1,
            auto_create_topics_enable: true,
            auto_leader_rebalance_enable: true,
            leader_imbalance_check_interval_seconds: 300,
            replica_fetch: ReplicaFetchConfig::default(),
            log: LogConfig::default(),
            cleaner: CleanerConfig::default(),
            server: ServerLimits::default(),
            groups: GroupConfig::default(),
            txn: TransactionConfig::default(),
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

    /// Every property name brook accepts: the names of [`key_specs`].
    pub fn known_keys() -> &'static [&'static str] {
        static ALL: std::sync::LazyLock<Vec<&'static str>> =
            std::sync::LazyLock::new(|| key_specs().iter().map(|spec| spec.name).collect());
        &ALL
    }

    /// The keys set explicitly (file, environment, overrides or `set`), with their values.
    pub fn explicit(&self) -> &BTreeMap<String, String> {
        &self.explicit
    }

    /// Sets one property by its Kafka name, validated as it would be in a properties file.
    pub fn set(&mut self, key: &str, value: &str) -> Result<&mut Config, ConfigError> {
        let value = value.trim();
        let spec = key_spec(key).ok_or_else(|| ConfigError::UnknownKey(key.to_string()))?;
        spec.apply(self, value)?;
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

    /// The endpoint clients are told to connect to on the [primary listener](Config::primary_listener),
    /// given the address it actually bound (that address itself when the listener is not advertised).
    pub fn advertised_endpoint(&self, bound: SocketAddr) -> Endpoint {
        let primary = self.primary_listener();
        primary
            .and_then(|p| p.advertised_endpoint(bound))
            .unwrap_or_else(|| listeners::BrokerListener::bound_endpoint(bound))
    }
}

/// Whether `key` may be changed at runtime (see [`KeySpec::dynamic`]).
pub fn is_dynamic_broker_key(key: &str) -> bool {
    key_spec(key).is_some_and(|spec| spec.dynamic)
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
        match self.explicit.get(key) {
            Some(value) => Some(value.clone()),
            None => key_spec(key)?.render(self),
        }
    }

    /// The value in force of a KIP-848 group protocol setting (`group.consumer.session.timeout.ms`, ...):
    /// its default when unset, 0 for a key that is not an integer setting.
    pub fn group_protocol_value(&self, key: &str) -> i32 {
        self.value_of(key)
            .and_then(|v| v.parse().ok())
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

/// The error for a value that `key` cannot take.
fn invalid(key: &str, value: &str, reason: &str) -> ConfigError {
    ConfigError::InvalidValue {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

/// `host:port` (`[v6]:port` for IPv6); an empty value is None (the feature is off).
fn parse_host_port(key: &str, value: &str) -> Result<Option<Endpoint>, ConfigError> {
    if value.is_empty() {
        return Ok(None);
    }
    let bad = |reason: &str| invalid(key, value, reason);
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
        .map_err(|_| invalid(key, value, "expected an integer"))?;
    if parsed < min || parsed > max {
        return Err(invalid(
            key,
            value,
            &format!("must be between {min} and {max}"),
        ));
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
        .ok_or_else(|| invalid(key, value, "too large"))
}

fn parse_bool(key: &str, value: &str) -> Result<bool, ConfigError> {
    match value.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(invalid(key, value, "expected true or false")),
    }
}

pub(crate) fn local_hostname() -> Option<String> {
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
    use crate::log::{CleanupPolicy, TimestampType};

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
        // A less precise unit that does not apply is still validated, as Kafka validates every property.
        assert!(config.set("log.retention.hours", "soon").is_err());
        config.set("log.roll.ms", "1000").unwrap();
        assert!(config.set("log.roll.hours", "0").is_err());
        assert_eq!(config.log.segment_ms, 1000);
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
            config.value_of("listeners").as_deref(),
            Some("PLAINTEXT://127.0.0.1:9092")
        );
        let primary = config.primary_listener().expect("a broker listener");
        assert_eq!(
            (primary.name.as_str(), primary.bind.clone()),
            (
                "PLAINTEXT",
                Endpoint {
                    host: "127.0.0.1".into(),
                    port: 9092
                }
            )
        );
        assert!(config.cluster_mode().is_none());
        config
            .validate()
            .expect("the defaults are a valid single node");
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

    #[test]
    fn every_default_renders_and_parses_back_to_itself() {
        let defaults = Config::default();
        let render_all = |c: &Config| -> Vec<Option<String>> {
            key_specs().iter().map(|s| s.render(c)).collect()
        };
        let mut checked = 0;
        for spec in key_specs() {
            let Some(value) = spec.render(&defaults) else {
                assert_eq!(defaults.value_of(spec.name), None, "{}", spec.name);
                continue;
            };
            let mut config = Config::default();
            config
                .set(spec.name, &value)
                .unwrap_or_else(|e| panic!("default of {} does not parse: {e}", spec.name));
            assert_eq!(
                spec.render(&config).as_deref(),
                Some(value.as_str()),
                "{}",
                spec.name
            );
            assert_eq!(
                render_all(&config),
                render_all(&defaults),
                "setting {} to its default changed another key",
                spec.name
            );
            checked += 1;
        }
        assert!(checked > 70, "only {checked} keys have a default");
    }

    #[test]
    fn known_keys_env_names_and_dynamic_keys_come_from_the_table() {
        let names: Vec<&str> = key_specs().iter().map(|s| s.name).collect();
        assert_eq!(Config::known_keys(), names.as_slice());
        let mut env_names: Vec<String> = names.iter().map(|k| env_name(k)).collect();
        env_names.sort();
        env_names.dedup();
        assert_eq!(
            env_names.len(),
            names.len(),
            "two keys share a name or a BROOK_ variable"
        );
        let defaults = Config::default();
        for spec in key_specs() {
            assert!(
                std::ptr::eq(key_spec(spec.name).unwrap(), spec),
                "{}",
                spec.name
            );
            assert_eq!(
                is_dynamic_broker_key(spec.name),
                spec.dynamic,
                "{}",
                spec.name
            );
            let Some(value) = spec.render(&defaults) else {
                continue;
            };
            let mut config = Config::default();
            config
                .apply_env([(env_name(spec.name), value.clone())])
                .unwrap();
            assert_eq!(
                config.explicit().get(spec.name),
                Some(&value),
                "{}",
                spec.name
            );
        }
        // Kafka's rule (DynamicLogConfig): a broker key is dynamic when it is the first synonym of a topic
        // config, i.e. the default of that topic config in its most precise unit; SASL keys per listener.
        for spec in key_specs() {
            let first_synonym =
                crate::cluster::topic_config::topic_config_for_broker_key(spec.name)
                    .is_some_and(|def| def.synonyms[0] == spec.name);
            let expected = first_synonym || spec.sasl_type().is_some();
            assert_eq!(spec.dynamic, expected, "{} dynamic", spec.name);
        }
        assert!(key_spec("log.retention.bogus").is_none());
        assert!(!is_dynamic_broker_key("log.retention.bogus"));
        assert_eq!(defaults.value_of("log.retention.bogus"), None);
        assert!(
            is_dynamic_broker_key("log.retention.ms")
                && !is_dynamic_broker_key("log.retention.hours")
        );
    }
}
