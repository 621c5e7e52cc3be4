//! KRaft's properties (Kafka's `KRaftConfigs` and `QuorumConfig`): which roles this node plays, who votes
//! in the metadata quorum, which listener the quorum speaks on, and the quorum's and the broker session's
//! timings. None of them is set on a single node, which runs exactly as before.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use super::SecurityProtocol;
use super::{ConfigError, Endpoint, invalid};

/// `process.roles`. Both false (the property unset) is brook's single-node mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessRoles {
    pub broker: bool,
    pub controller: bool,
}

impl ProcessRoles {
    /// Whether no role is set: a single node, no quorum.
    pub fn is_empty(self) -> bool {
        !self.broker && !self.controller
    }

    /// Both roles in one process (Kafka's "combined mode").
    pub fn is_combined(self) -> bool {
        self.broker && self.controller
    }
}

impl fmt::Display for ProcessRoles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match (self.broker, self.controller) {
            (true, true) => "broker,controller",
            (true, false) => "broker",
            (false, true) => "controller",
            (false, false) => "",
        })
    }
}

/// Kafka's KRaft settings as configured (see [`super::Config::cluster_mode`] for the resolved view).
#[derive(Clone, Debug)]
pub struct KraftConfig {
    /// `process.roles`.
    pub process_roles: ProcessRoles,
    /// `controller.quorum.voters`: `id@host:port`, in the order given.
    pub voters: Vec<(i32, Endpoint)>,
    /// `controller.listener.names`, upper case.
    pub controller_listener_names: Vec<String>,
    /// `metadata.log.dir`; None: the first log directory.
    pub metadata_log_dir: Option<PathBuf>,
    /// `broker.session.timeout.ms`.
    pub broker_session_timeout_ms: u64,
    /// `broker.heartbeat.interval.ms`.
    pub broker_heartbeat_interval_ms: u64,
    /// `initial.broker.registration.timeout.ms`.
    pub initial_broker_registration_timeout_ms: u64,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout_ms: u64,
    /// `controller.quorum.election.backoff.max.ms`.
    pub election_backoff_max_ms: u64,
    /// `controller.quorum.fetch.timeout.ms`.
    pub fetch_timeout_ms: u64,
    /// `controller.quorum.request.timeout.ms`.
    pub request_timeout_ms: u64,
    /// `metadata.log.max.record.bytes.between.snapshots`.
    pub snapshot_max_new_record_bytes: u64,
    /// `metadata.log.max.snapshot.interval.ms`; 0 turns time-based snapshots off.
    pub snapshot_max_interval_ms: u64,
    /// `replica.lag.time.max.ms`: a follower not caught up for this long leaves the ISR.
    pub replica_lag_time_max_ms: u64,
}

impl Default for KraftConfig {
    /// Kafka 4.1's defaults.
    fn default() -> Self {
        KraftConfig {
            process_roles: ProcessRoles::default(),
            voters: Vec::new(),
            controller_listener_names: Vec::new(),
            metadata_log_dir: None,
            broker_session_timeout_ms: 9_000,
            broker_heartbeat_interval_ms: 2_000,
            initial_broker_registration_timeout_ms: 60_000,
            election_timeout_ms: 1_000,
            election_backoff_max_ms: 1_000,
            fetch_timeout_ms: 2_000,
            request_timeout_ms: 2_000,
            snapshot_max_new_record_bytes: 20 * 1024 * 1024,
            snapshot_max_interval_ms: 3_600_000,
            replica_lag_time_max_ms: 30_000,
        }
    }
}

/// A node of the cluster: what the quorum and the broker lifecycle need, resolved and validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterConfig {
    pub node_id: i32,
    pub roles: ProcessRoles,
    /// The voters of the metadata quorum: node id -> the host:port of its controller listener.
    pub voters: BTreeMap<i32, Endpoint>,
    /// `controller.listener.names`: a broker-only node connects to the voters with the first one's protocol.
    pub controller_listener_names: Vec<String>,
    /// The listener this node's quorum binds: the first of `controller.listener.names` in `listeners`.
    /// None on a broker-only node, which binds no controller listener.
    pub controller_listener: Option<ControllerListener>,
    /// Where `__cluster_metadata-0/` lives: `metadata.log.dir`, else the first log directory.
    pub metadata_log_dir: PathBuf,
    pub broker_session_timeout: Duration,
    pub broker_heartbeat_interval: Duration,
    pub initial_broker_registration_timeout: Duration,
    pub election_timeout: Duration,
    pub election_backoff_max: Duration,
    pub fetch_timeout: Duration,
    pub request_timeout: Duration,
    /// A snapshot is due once this many bytes of records follow the latest one.
    pub snapshot_max_new_record_bytes: u64,
    /// A snapshot is due this long after the latest one if records followed it; None: never by time.
    pub snapshot_max_interval: Option<Duration>,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max: Duration,
}

/// The listener the metadata quorum speaks on. Never advertised to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControllerListener {
    pub name: String,
    pub security_protocol: SecurityProtocol,
    /// Where it accepts connections.
    pub bind: Endpoint,
    /// Its `advertised.listeners` entry, else its `listeners` entry (Kafka's effective advertised
    /// controller listener).
    pub advertised: Endpoint,
}

/// Parses `process.roles`: `broker`, `controller` or both, comma-separated; empty unsets it.
pub(super) fn parse_process_roles(key: &str, value: &str) -> Result<ProcessRoles, ConfigError> {
    let mut roles = ProcessRoles::default();
    for role in value.split(',').map(str::trim).filter(|r| !r.is_empty()) {
        let seen = match role {
            "broker" => std::mem::replace(&mut roles.broker, true),
            "controller" => std::mem::replace(&mut roles.controller, true),
            _ => {
                return Err(invalid(
                    key,
                    value,
                    "String must be one of: broker, controller",
                ));
            }
        };
        if seen {
            return Err(invalid(
                key,
                value,
                &format!("Duplicate role names found in `{key}`"),
            ));
        }
    }
    Ok(roles)
}

/// Parses `controller.quorum.voters`: `{id}@{host}:{port}`, comma-separated. Kafka lets a repeated id
/// silently replace the earlier entry; brook refuses it, since two addresses for one voter is a typo.
pub(super) fn parse_voters(key: &str, value: &str) -> Result<Vec<(i32, Endpoint)>, ConfigError> {
    let form = "Each entry should be in the form `{id}@{host}:{port}`.";
    let mut voters: Vec<(i32, Endpoint)> = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((id, address)) = entry.split_once('@').filter(|(_, a)| !a.contains('@')) else {
            return Err(invalid(key, value, form));
        };
        let id: i32 = id.trim().parse().map_err(|_| {
            invalid(
                key,
                value,
                &format!("Failed to parse voter ID as an integer from {id}"),
            )
        })?;
        if id < 0 {
            return Err(invalid(key, value, &format!("voter id {id} is negative")));
        }
        let (host, port) = address.rsplit_once(':').unwrap_or((address, ""));
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let host_ok = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | ':' | '%'));
        if !host_ok {
            return Err(invalid(
                key,
                value,
                &format!("Failed to parse host name from entry {entry}. {form}"),
            ));
        }
        let port: u16 = port.parse().ok().filter(|&p| p != 0).ok_or_else(|| {
            invalid(
                key,
                value,
                &format!("Failed to parse host port from entry {entry}. {form}"),
            )
        })?;
        if super::listeners::is_wildcard_host(host) {
            return Err(invalid(
                key,
                value,
                &format!("Host string ({host}) is not routeable"),
            ));
        }
        if voters.iter().any(|(known, _)| *known == id) {
            return Err(invalid(
                key,
                value,
                &format!("voter id {id} appears more than once"),
            ));
        }
        voters.push((
            id,
            Endpoint {
                host: host.to_string(),
                port,
            },
        ));
    }
    Ok(voters)
}

/// Prints voters as they are written in the property.
pub(super) fn show_voters(voters: &[(i32, Endpoint)]) -> String {
    voters
        .iter()
        .map(|(id, e)| {
            if e.host.contains(':') {
                format!("{id}@[{}]:{}", e.host, e.port)
            } else {
                format!("{id}@{}:{}", e.host, e.port)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// Parses `controller.listener.names`: comma-separated names, upper-cased; empty unsets it.
pub(super) fn parse_listener_names(key: &str, value: &str) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let name = super::listeners::parse_listener_name(key, name)?;
        if names.contains(&name) {
            return Err(invalid(
                key,
                value,
                &format!("listener name {name} appears more than once"),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_roles_take_broker_controller_or_both() {
        let parse = |v| parse_process_roles("process.roles", v);
        assert!(parse("").unwrap().is_empty());
        assert_eq!(parse("broker").unwrap().to_string(), "broker");
        assert_eq!(parse("controller").unwrap().to_string(), "controller");
        let both = parse(" controller , broker").unwrap();
        assert!(both.is_combined());
        assert_eq!(both.to_string(), "broker,controller");
        let err = parse("broker,zookeeper").unwrap_err().to_string();
        assert!(err.contains("must be one of: broker, controller"), "{err}");
        let err = parse("broker,broker").unwrap_err().to_string();
        assert!(err.contains("Duplicate role"), "{err}");
    }

    #[test]
    fn voters_parse_and_print_back() {
        let voters = parse_voters(
            "controller.quorum.voters",
            "1@127.0.0.1:9093, 2@node2:9093,3@[::1]:9094",
        )
        .unwrap();
        assert_eq!(voters.len(), 3);
        assert_eq!(voters[2].1.host, "::1");
        assert_eq!(
            show_voters(&voters),
            "1@127.0.0.1:9093,2@node2:9093,3@[::1]:9094"
        );
        assert!(
            parse_voters("controller.quorum.voters", "")
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn voters_refuse_bad_syntax_and_duplicate_ids() {
        for (value, expected) in [
            ("127.0.0.1:9093", "{id}@{host}:{port}"),
            ("1@2@h:1", "{id}@{host}:{port}"),
            (
                "one@h:9093",
                "Failed to parse voter ID as an integer from one",
            ),
            ("-1@h:9093", "negative"),
            ("1@:9093", "Failed to parse host name"),
            ("1@h", "Failed to parse host port"),
            ("1@h:port", "Failed to parse host port"),
            ("1@h:0", "Failed to parse host port"),
            ("1@0.0.0.0:9093", "not routeable"),
            ("1@a:9093,1@b:9093", "voter id 1 appears more than once"),
        ] {
            let err = parse_voters("controller.quorum.voters", value)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(expected) && err.contains("controller.quorum.voters"),
                "{value}: {err}"
            );
        }
    }

    #[test]
    fn controller_listener_names_are_normalised_and_distinct() {
        assert_eq!(
            parse_listener_names("c", "controller, Quorum").unwrap(),
            ["CONTROLLER", "QUORUM"]
        );
        assert!(parse_listener_names("c", "A,a").is_err());
        assert!(parse_listener_names("c", "").unwrap().is_empty());
    }
}
