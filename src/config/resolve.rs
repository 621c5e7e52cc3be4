//! How the listener and KRaft keys combine: the listeners a broker binds and advertises, the cluster a node
//! joins, and the checks that run once every source is applied (Kafka's `KafkaConfig.validateValues`, with
//! its messages). Each key is validated alone when it is set; these checks need several keys, which may
//! come in any order, so they run at start.

use std::collections::BTreeMap;
use std::time::Duration;

use super::listeners::SUPPORTED_PROTOCOLS;
use super::{
    Advertised, BrokerListener, ClusterConfig, Config, ConfigError, ControllerListener,
    ListenerEndpoint, SecurityProtocol,
};

impl Config {
    /// The security protocol of the listener called `name`: `listener.security.protocol.map`, and in a
    /// cluster, when that map is left at its default and nothing uses SSL or SASL, PLAINTEXT for the
    /// controller listeners (as Kafka assumes).
    pub fn listener_protocol(&self, name: &str) -> Option<SecurityProtocol> {
        if let Some(protocol) = self.listener_security_protocol_map.get(name) {
            return Some(protocol);
        }
        let implicit_plaintext = !self.kraft.process_roles.is_empty()
            && !self.explicit.contains_key("listener.security.protocol.map")
            && self
                .kraft
                .controller_listener_names
                .iter()
                .any(|n| n == name)
            && !self
                .kraft
                .controller_listener_names
                .iter()
                .map(String::as_str)
                .chain(self.listeners.iter().map(|l| l.name.as_str()))
                .any(|n| matches!(n, "SSL" | "SASL_SSL" | "SASL_PLAINTEXT"));
        implicit_plaintext.then_some(SecurityProtocol::Plaintext)
    }

    /// `inter.broker.listener.name`, or the listener named after `security.inter.broker.protocol`.
    pub fn inter_broker_listener_name(&self) -> &str {
        self.inter_broker_listener_name
            .as_deref()
            .unwrap_or(SecurityProtocol::Plaintext.name())
    }

    /// Whether `name` is one of `controller.listener.names`.
    pub fn is_controller_listener(&self, name: &str) -> bool {
        self.kraft
            .controller_listener_names
            .iter()
            .any(|n| n == name)
    }

    /// The listeners a broker binds for clients and other brokers, in `listeners` order: every listener but
    /// the controller ones (which the quorum binds and which are never advertised to clients). Empty on a
    /// controller-only node. Assumes [`Config::validate`] passed (an unmapped name reads as PLAINTEXT).
    pub fn broker_listeners(&self) -> Vec<BrokerListener> {
        let roles = self.kraft.process_roles;
        if !roles.is_empty() && !roles.broker {
            return Vec::new();
        }
        self.listeners
            .iter()
            .filter(|l| !self.is_controller_listener(&l.name))
            .map(|l| BrokerListener {
                name: l.name.clone(),
                security_protocol: self
                    .listener_protocol(&l.name)
                    .unwrap_or(SecurityProtocol::Plaintext),
                bind: l.endpoint.clone(),
                advertised: if self.advertised_listeners.is_empty() {
                    Advertised::Bound
                } else {
                    find(&self.advertised_listeners, &l.name).map_or(Advertised::Hidden, |a| {
                        Advertised::Given(a.endpoint.clone())
                    })
                },
            })
            .collect()
    }

    /// The broker listener that `Broker::local_addr` reports and that other brokers use: the inter-broker
    /// listener, else the first broker listener. None on a controller-only node.
    pub fn primary_listener(&self) -> Option<BrokerListener> {
        let listeners = self.broker_listeners();
        let inter_broker = self.inter_broker_listener_name();
        listeners
            .iter()
            .find(|l| l.name == inter_broker)
            .or(listeners.first())
            .cloned()
    }

    /// The node's place in a cluster, None on a single node (`process.roles` unset). Assumes
    /// [`Config::validate`] passed.
    pub fn cluster_mode(&self) -> Option<ClusterConfig> {
        let kraft = &self.kraft;
        let roles = kraft.process_roles;
        if roles.is_empty() {
            return None;
        }
        let controller_listener = if roles.controller {
            kraft.controller_listener_names.iter().find_map(|name| {
                let bound = find(&self.listeners, name)?;
                Some(ControllerListener {
                    name: name.clone(),
                    security_protocol: self
                        .listener_protocol(name)
                        .unwrap_or(SecurityProtocol::Plaintext),
                    bind: bound.endpoint.clone(),
                    advertised: find(&self.advertised_listeners, name)
                        .unwrap_or(bound)
                        .endpoint
                        .clone(),
                })
            })
        } else {
            None
        };
        let ms = Duration::from_millis;
        Some(ClusterConfig {
            node_id: self.node_id,
            roles,
            voters: kraft.voters.iter().cloned().collect::<BTreeMap<_, _>>(),
            controller_listener_names: kraft.controller_listener_names.clone(),
            controller_listener,
            metadata_log_dir: kraft
                .metadata_log_dir
                .clone()
                .unwrap_or_else(|| self.log_dir.clone()),
            broker_session_timeout: ms(kraft.broker_session_timeout_ms),
            broker_heartbeat_interval: ms(kraft.broker_heartbeat_interval_ms),
            initial_broker_registration_timeout: ms(kraft.initial_broker_registration_timeout_ms),
            election_timeout: ms(kraft.election_timeout_ms),
            election_backoff_max: ms(kraft.election_backoff_max_ms),
            fetch_timeout: ms(kraft.fetch_timeout_ms),
            request_timeout: ms(kraft.request_timeout_ms),
            snapshot_max_new_record_bytes: kraft.snapshot_max_new_record_bytes,
            snapshot_max_interval: (kraft.snapshot_max_interval_ms > 0)
                .then(|| ms(kraft.snapshot_max_interval_ms)),
            replica_lag_time_max: ms(kraft.replica_lag_time_max_ms),
        })
    }

    /// The checks that need several keys, run once every source is applied: the first failure, with
    /// Kafka's message where Kafka has one. A single-node config (no `process.roles`) that passed before
    /// KRaft existed still passes.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError::Inconsistent(message));
        let explicit = |key: &str| self.explicit.contains_key(key);
        let kraft = &self.kraft;
        let roles = kraft.process_roles;

        if explicit("node.id")
            && explicit("broker.id")
            && self.explicit["node.id"] != self.explicit["broker.id"]
        {
            return fail("You must set `node.id` to the same value as `broker.id`.".into());
        }
        self.check_listener_protocols()?;

        let voter_ids: Vec<i32> = kraft.voters.iter().map(|(id, _)| *id).collect();
        let voters_shown = format!("{voter_ids:?}");
        let listener_names: Vec<&str> = self.listeners.iter().map(|l| l.name.as_str()).collect();
        let controller_names = &kraft.controller_listener_names;
        let controllers_in_listeners = controller_names
            .iter()
            .filter(|n| listener_names.contains(&n.as_str()))
            .count();
        if roles.is_empty() {
            if !controller_names.is_empty() {
                return fail(format!(
                    "controller.listener.names must be empty when not running in KRaft mode: {controller_names:?}"
                ));
            }
            if !kraft.voters.is_empty() {
                return fail(
                    "controller.quorum.voters is set but process.roles is not: a single node has no \
                     metadata quorum (set process.roles to run in a cluster)"
                        .into(),
                );
            }
        } else {
            if !explicit("node.id") && !explicit("broker.id") {
                return fail(
                    "Missing configuration `node.id` which is required when `process.roles` is defined \
                     (i.e. when running in KRaft mode)."
                        .into(),
                );
            }
            if kraft.voters.is_empty() {
                return fail(
                    "If using process.roles, controller.quorum.voters must contain a parseable set of \
                     controllers."
                        .into(),
                );
            }
            let in_voters = voter_ids.contains(&self.node_id);
            if roles.controller && !in_voters {
                return fail(format!(
                    "If process.roles contains the 'controller' role, the node id {} must be included in \
                     the set of voters controller.quorum.voters={voters_shown}",
                    self.node_id
                ));
            }
            if !roles.controller && in_voters {
                return fail(format!(
                    "If process.roles contains just the 'broker' role, the node id {} must not be included \
                     in the set of voters controller.quorum.voters={voters_shown}",
                    self.node_id
                ));
            }
            Self::check_controller_listeners(
                roles.controller,
                roles.broker,
                controller_names.len(),
                controllers_in_listeners,
                listener_names.len(),
            )?;
            // A broker-only node connects to the voters with the controller listener's protocol.
            for name in controller_names {
                match self.listener_protocol(name) {
                    None => {
                        return fail(format!(
                            "Controller listener with name {name} defined in controller.listener.names not \
                             found in listener.security.protocol.map (an explicit security mapping for each \
                             controller listener is required if listener.security.protocol.map is non-empty, \
                             or if there are security protocols other than PLAINTEXT in use)"
                        ));
                    }
                    Some(protocol) if !SUPPORTED_PROTOCOLS.contains(&protocol) => {
                        return fail(unsupported(name, protocol));
                    }
                    Some(_) => {}
                }
            }
        }

        if roles.is_empty() || roles.broker {
            self.check_broker_listeners(&listener_names)?;
        }
        Ok(())
    }

    /// Where the controller listeners may appear in `listeners`, by role (Kafka's messages).
    fn check_controller_listeners(
        controller: bool,
        broker: bool,
        controller_names: usize,
        controllers_in_listeners: usize,
        listeners: usize,
    ) -> Result<(), ConfigError> {
        if controller {
            if controllers_in_listeners == 0 {
                return Err(ConfigError::Inconsistent(
                    "controller.listener.names must contain at least one value appearing in the \
                     'listeners' configuration when running the KRaft controller role"
                        .into(),
                ));
            }
            if controllers_in_listeners != controller_names {
                return Err(ConfigError::Inconsistent(
                    "controller.listener.names must only contain values appearing in the 'listeners' \
                     configuration when running the KRaft controller role"
                        .into(),
                ));
            }
            if !broker && controllers_in_listeners != listeners {
                return Err(ConfigError::Inconsistent(
                    "The listeners config must only contain KRaft controller listeners from \
                     controller.listener.names when process.roles=controller"
                        .into(),
                ));
            }
        } else {
            if controller_names == 0 {
                return Err(ConfigError::Inconsistent(
                    "controller.listener.names must contain at least one value when running KRaft with \
                     just the broker role"
                        .into(),
                ));
            }
            if controllers_in_listeners > 0 {
                return Err(ConfigError::Inconsistent(
                    "controller.listener.names must not contain a value appearing in the 'listeners' \
                     configuration when running KRaft with just the broker role"
                        .into(),
                ));
            }
        }
        Ok(())
    }

    /// Every listener and advertised listener has a security protocol, and brook speaks it.
    fn check_listener_protocols(&self) -> Result<(), ConfigError> {
        for (key, list) in [
            ("listeners", &self.listeners),
            ("advertised.listeners", &self.advertised_listeners),
        ] {
            for listener in list.iter() {
                match self.listener_protocol(&listener.name) {
                    None => {
                        let shown: Vec<String> = list.iter().map(|l| l.to_string()).collect();
                        return Err(ConfigError::Inconsistent(format!(
                            "Error creating broker listeners from '{}' ({key}): No security protocol \
                             defined for listener {} (map it in listener.security.protocol.map)",
                            shown.join(","),
                            listener.name
                        )));
                    }
                    Some(protocol) if !SUPPORTED_PROTOCOLS.contains(&protocol) => {
                        return Err(ConfigError::Inconsistent(unsupported(
                            &listener.name,
                            protocol,
                        )));
                    }
                    Some(_) => {}
                }
            }
        }
        Ok(())
    }

    /// The rules for every node that serves clients (a single node, a broker, a combined node).
    fn check_broker_listeners(&self, listener_names: &[&str]) -> Result<(), ConfigError> {
        let fail = |message: String| Err(ConfigError::Inconsistent(message));
        let advertised = if self.advertised_listeners.is_empty() {
            &self.listeners
        } else {
            &self.advertised_listeners
        };
        let advertised_names: Vec<&str> = advertised
            .iter()
            .map(|l| l.name.as_str())
            .filter(|n| !self.is_controller_listener(n))
            .collect();
        if advertised_names.is_empty() {
            let hint = if self.kraft.process_roles.broker {
                " Perhaps all listeners appear in controller.listener.names?"
            } else {
                ""
            };
            return fail(format!(
                "There must be at least one broker advertised listener.{hint}"
            ));
        }
        if self.explicit.contains_key("inter.broker.listener.name")
            && self.explicit.contains_key("security.inter.broker.protocol")
        {
            return fail(
                "Only one of inter.broker.listener.name and security.inter.broker.protocol should be set."
                    .into(),
            );
        }
        let inter_broker = self.inter_broker_listener_name();
        // Unset, it is the listener named after security.inter.broker.protocol, which needs no mapping.
        if self.inter_broker_listener_name.is_some()
            && self.listener_protocol(inter_broker).is_none()
        {
            return fail(format!(
                "Listener with name {inter_broker} defined in inter.broker.listener.name not found in \
                 listener.security.protocol.map."
            ));
        }
        if !advertised_names.contains(&inter_broker) {
            return fail(format!(
                "inter.broker.listener.name must be a listener name defined in advertised.listeners. The \
                 valid options based on currently configured listeners are {}",
                advertised_names.join(",")
            ));
        }
        if let Some(stray) = advertised_names
            .iter()
            .find(|n| !listener_names.contains(n))
        {
            return fail(format!(
                "advertised.listeners listener names must be equal to or a subset of the ones defined in \
                 listeners. Found {}. The valid options based on the current configuration are {} \
                 ({stray} is not a listener)",
                advertised_names.join(","),
                listener_names.join(",")
            ));
        }
        Ok(())
    }
}

fn find<'a>(list: &'a [ListenerEndpoint], name: &str) -> Option<&'a ListenerEndpoint> {
    list.iter().find(|l| l.name == name)
}

fn unsupported(name: &str, protocol: SecurityProtocol) -> String {
    format!(
        "listener {name} uses the {protocol} security protocol; only the PLAINTEXT security protocol is \
         supported for now"
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Endpoint, ProcessRoles, env_name};
    use super::*;

    fn config(pairs: &[(&str, &str)]) -> Config {
        let mut config = Config::new();
        for (key, value) in pairs {
            config
                .set(key, value)
                .unwrap_or_else(|e| panic!("{key}={value}: {e}"));
        }
        config
    }

    /// A combined node of a three-voter cluster, as Kafka's quickstart writes it.
    const COMBINED: &[(&str, &str)] = &[
        ("process.roles", "broker,controller"),
        ("node.id", "1"),
        (
            "controller.quorum.voters",
            "1@127.0.0.1:9093,2@127.0.0.1:9193,3@127.0.0.1:9293",
        ),
        (
            "listeners",
            "PLAINTEXT://127.0.0.1:9092,CONTROLLER://127.0.0.1:9093",
        ),
        ("controller.listener.names", "CONTROLLER"),
    ];

    fn with(base: &[(&str, &str)], more: &[(&str, &str)]) -> Config {
        let mut pairs = base.to_vec();
        pairs.extend_from_slice(more);
        config(&pairs)
    }

    fn error(config: &Config) -> String {
        match config.validate() {
            Ok(()) => format!("no error for {:?}", config.explicit()),
            Err(e) => e.to_string(),
        }
    }

    fn endpoint(host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.into(),
            port,
        }
    }

    #[test]
    fn combined_node_resolves_its_cluster_and_listeners() {
        let config = with(
            COMBINED,
            &[
                ("broker.rack", "rack-a"),
                ("broker.session.timeout.ms", "4500"),
                ("metadata.log.max.snapshot.interval.ms", "0"),
            ],
        );
        config.validate().unwrap();
        let cluster = config.cluster_mode().expect("process.roles is set");
        assert_eq!(
            cluster.roles,
            ProcessRoles {
                broker: true,
                controller: true
            }
        );
        assert_eq!(cluster.node_id, 1);
        assert_eq!(
            cluster.voters.into_iter().collect::<Vec<_>>(),
            vec![
                (1, endpoint("127.0.0.1", 9093)),
                (2, endpoint("127.0.0.1", 9193)),
                (3, endpoint("127.0.0.1", 9293))
            ]
        );
        let controller = cluster
            .controller_listener
            .expect("a controller binds its listener");
        assert_eq!(controller.name, "CONTROLLER");
        assert_eq!(
            controller.security_protocol,
            SecurityProtocol::Plaintext,
            "Kafka maps controller listeners to PLAINTEXT when nothing else is in use"
        );
        assert_eq!(controller.bind, endpoint("127.0.0.1", 9093));
        assert_eq!(controller.advertised, endpoint("127.0.0.1", 9093));
        assert_eq!(
            cluster.metadata_log_dir, config.log_dir,
            "the first log dir"
        );
        assert_eq!(cluster.broker_session_timeout, Duration::from_millis(4500));
        assert_eq!(
            cluster.broker_heartbeat_interval,
            Duration::from_millis(2000)
        );
        assert_eq!(cluster.election_timeout, Duration::from_millis(1000));
        assert_eq!(cluster.fetch_timeout, Duration::from_millis(2000));
        assert_eq!(cluster.request_timeout, Duration::from_millis(2000));
        assert_eq!(cluster.snapshot_max_new_record_bytes, 20 * 1024 * 1024);
        assert_eq!(cluster.snapshot_max_interval, None);
        assert_eq!(config.rack.as_deref(), Some("rack-a"));

        // The controller listener is bound by the quorum and never offered to clients.
        let brokers = config.broker_listeners();
        assert_eq!(brokers.len(), 1);
        assert_eq!(brokers[0].name, "PLAINTEXT");
        assert_eq!(brokers[0].advertised, Advertised::Bound);
        assert_eq!(config.primary_listener().unwrap().name, "PLAINTEXT");
    }

    #[test]
    fn metadata_log_dir_and_advertised_controller_listener_can_be_set() {
        let config = with(
            COMBINED,
            &[
                ("metadata.log.dir", "/var/brook/meta"),
                (
                    "advertised.listeners",
                    "PLAINTEXT://broker1.example:9092,CONTROLLER://ctl1.example:9093",
                ),
            ],
        );
        config.validate().unwrap();
        let cluster = config.cluster_mode().unwrap();
        assert_eq!(
            cluster.metadata_log_dir,
            std::path::PathBuf::from("/var/brook/meta")
        );
        assert_eq!(
            cluster.controller_listener.unwrap().advertised,
            endpoint("ctl1.example", 9093)
        );
        assert_eq!(
            config.broker_listeners()[0].advertised,
            Advertised::Given(endpoint("broker1.example", 9092))
        );
    }

    #[test]
    fn broker_only_node_connects_to_the_voters_and_binds_no_controller_listener() {
        let config = config(&[
            ("process.roles", "broker"),
            ("node.id", "4"),
            ("controller.quorum.voters", "1@127.0.0.1:9093"),
            ("listeners", "PLAINTEXT://127.0.0.1:9092"),
            ("controller.listener.names", "CONTROLLER"),
        ]);
        config.validate().unwrap();
        let cluster = config.cluster_mode().unwrap();
        assert!(cluster.roles.broker && !cluster.roles.controller);
        assert_eq!(cluster.controller_listener, None);
        assert_eq!(cluster.controller_listener_names, ["CONTROLLER"]);
        assert_eq!(config.broker_listeners().len(), 1);
    }

    #[test]
    fn controller_only_node_has_no_broker_listener() {
        let config = config(&[
            ("process.roles", "controller"),
            ("node.id", "1"),
            ("controller.quorum.voters", "1@127.0.0.1:9093"),
            ("listeners", "CONTROLLER://127.0.0.1:9093"),
            ("controller.listener.names", "CONTROLLER"),
        ]);
        config.validate().unwrap();
        assert!(config.broker_listeners().is_empty());
        assert!(config.primary_listener().is_none());
        assert!(config.cluster_mode().unwrap().controller_listener.is_some());
    }

    #[test]
    fn kraft_errors_use_kafkas_words() {
        let without_node_id: Vec<(&str, &str)> = COMBINED
            .iter()
            .copied()
            .filter(|(key, _)| *key != "node.id")
            .collect();
        let err = error(&config(&without_node_id));
        assert!(
            err.contains(
                "Missing configuration `node.id` which is required when `process.roles` is defined"
            ),
            "{err}"
        );
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("controller.quorum.voters", "")],
                "controller.quorum.voters must contain a parseable set of controllers",
            ),
            (
                &[("node.id", "7")],
                "the node id 7 must be included in the set of voters controller.quorum.voters=[1, 2, 3]",
            ),
            (
                &[
                    ("controller.listener.names", "QUORUM"),
                    (
                        "listener.security.protocol.map",
                        "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,QUORUM:PLAINTEXT",
                    ),
                ],
                "controller.listener.names must contain at least one value appearing in the 'listeners' configuration",
            ),
            (
                &[("controller.listener.names", "CONTROLLER,QUORUM")],
                "controller.listener.names must only contain values appearing in the 'listeners' configuration",
            ),
            (
                &[("process.roles", "broker")],
                "If process.roles contains just the 'broker' role, the node id 1 must not be included in the set of voters",
            ),
            (
                &[("process.roles", "broker"), ("node.id", "4")],
                "controller.listener.names must not contain a value appearing in the 'listeners' configuration when running KRaft with just the broker role",
            ),
            (
                &[
                    ("process.roles", "broker"),
                    ("node.id", "4"),
                    ("listeners", "PLAINTEXT://:9092"),
                    ("controller.listener.names", ""),
                ],
                "controller.listener.names must contain at least one value when running KRaft with just the broker role",
            ),
            (
                &[("process.roles", "controller")],
                "The listeners config must only contain KRaft controller listeners from controller.listener.names when process.roles=controller",
            ),
            (
                &[
                    ("process.roles", "broker"),
                    ("node.id", "4"),
                    ("listeners", "PLAINTEXT://:9092"),
                    ("listener.security.protocol.map", "PLAINTEXT:PLAINTEXT"),
                ],
                "Controller listener with name CONTROLLER defined in controller.listener.names not found in listener.security.protocol.map",
            ),
            (
                &[("inter.broker.listener.name", "CONTROLLER")],
                "inter.broker.listener.name must be a listener name defined in advertised.listeners. The valid options based on currently configured listeners are PLAINTEXT",
            ),
            (
                &[("listeners", "CONTROLLER://127.0.0.1:9093")],
                "There must be at least one broker advertised listener. Perhaps all listeners appear in controller.listener.names?",
            ),
        ];
        for (overrides, expected) in cases {
            let config = with(COMBINED, overrides);
            let err = error(&config);
            assert!(err.contains(expected), "{overrides:?}:\n{err}");
        }
    }

    #[test]
    fn listener_errors_use_kafkas_words() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[(
                    "listeners",
                    "PLAINTEXT://127.0.0.1:9092,INTERNAL://127.0.0.1:9094",
                )],
                "No security protocol defined for listener INTERNAL",
            ),
            (
                &[
                    ("listeners", "CLIENT://127.0.0.1:9092"),
                    ("listener.security.protocol.map", "CLIENT:SSL"),
                ],
                "listener CLIENT uses the SSL security protocol; only the PLAINTEXT security protocol is supported",
            ),
            (
                &[
                    ("listeners", "CLIENT://127.0.0.1:9092"),
                    ("listener.security.protocol.map", "CLIENT:PLAINTEXT"),
                ],
                "inter.broker.listener.name must be a listener name defined in advertised.listeners. The valid options based on currently configured listeners are CLIENT",
            ),
            (
                &[("inter.broker.listener.name", "REPLICATION")],
                "Listener with name REPLICATION defined in inter.broker.listener.name not found in listener.security.protocol.map.",
            ),
            (
                &[
                    ("inter.broker.listener.name", "PLAINTEXT"),
                    ("security.inter.broker.protocol", "PLAINTEXT"),
                ],
                "Only one of inter.broker.listener.name and security.inter.broker.protocol should be set.",
            ),
            (
                &[
                    (
                        "listener.security.protocol.map",
                        "PLAINTEXT:PLAINTEXT,EXTERNAL:PLAINTEXT",
                    ),
                    (
                        "advertised.listeners",
                        "PLAINTEXT://b1:9092,EXTERNAL://b1.example:19092",
                    ),
                ],
                "advertised.listeners listener names must be equal to or a subset of the ones defined in listeners. Found PLAINTEXT,EXTERNAL",
            ),
            (
                &[("controller.listener.names", "CONTROLLER")],
                "controller.listener.names must be empty when not running in KRaft mode",
            ),
            (
                &[("controller.quorum.voters", "1@127.0.0.1:9093")],
                "controller.quorum.voters is set but process.roles is not",
            ),
            (
                &[("node.id", "2"), ("broker.id", "3")],
                "You must set `node.id` to the same value as `broker.id`.",
            ),
        ];
        for (pairs, expected) in cases {
            let err = error(&config(pairs));
            assert!(err.contains(expected), "{pairs:?}:\n{err}");
        }
    }

    #[test]
    fn named_listeners_on_a_single_node() {
        let config = config(&[
            (
                "listeners",
                "INTERNAL://127.0.0.1:0,EXTERNAL://0.0.0.0:0,plaintext://127.0.0.1:0",
            ),
            (
                "listener.security.protocol.map",
                "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            ),
            ("inter.broker.listener.name", "internal"),
            (
                "advertised.listeners",
                "INTERNAL://127.0.0.1:0,EXTERNAL://broker.example:0",
            ),
        ]);
        config.validate().unwrap();
        assert!(config.cluster_mode().is_none());
        let names: Vec<(String, bool)> = config
            .broker_listeners()
            .into_iter()
            .map(|l| (l.name, l.advertised != Advertised::Hidden))
            .collect();
        assert_eq!(
            names,
            [
                ("INTERNAL".to_string(), true),
                ("EXTERNAL".to_string(), true),
                ("PLAINTEXT".to_string(), false)
            ],
            "a listener left out of advertised.listeners is bound but not advertised"
        );
        assert_eq!(config.primary_listener().unwrap().name, "INTERNAL");
        assert_eq!(
            config.value_of("listeners").as_deref(),
            Some("INTERNAL://127.0.0.1:0,EXTERNAL://0.0.0.0:0,plaintext://127.0.0.1:0"),
            "DescribeConfigs shows what was set"
        );
        assert_eq!(
            config.value_of("inter.broker.listener.name").as_deref(),
            Some("internal"),
            "DescribeConfigs shows what was set"
        );
    }

    #[test]
    fn a_listener_named_after_an_unsupported_protocol_is_refused_when_set() {
        let mut config = Config::new();
        for value in ["SSL://127.0.0.1:9093", "PLAINTEXT://:9092,SASL_SSL://:9094"] {
            let err = config.set("listeners", value).unwrap_err().to_string();
            assert!(
                err.contains("listeners") && err.contains("only the PLAINTEXT security protocol"),
                "{err}"
            );
        }
        let err = config
            .set("advertised.listeners", "PLAINTEXT://0.0.0.0:9092")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nonroutable meta-address 0.0.0.0"), "{err}");
        let err = config
            .set("security.inter.broker.protocol", "SSL")
            .unwrap_err()
            .to_string();
        assert!(err.contains("only the PLAINTEXT"), "{err}");
        assert!(config.set("security.inter.broker.protocol", "TLS").is_err());
    }

    #[test]
    fn kraft_keys_come_from_the_environment_like_every_key() {
        let env: Vec<(String, String)> = COMBINED
            .iter()
            .map(|(key, value)| (env_name(key), value.to_string()))
            .chain([(
                env_name("controller.quorum.election.timeout.ms"),
                "1500".to_string(),
            )])
            .collect();
        assert!(
            env.iter()
                .any(|(k, _)| k == "BROOK_CONTROLLER_QUORUM_VOTERS")
        );
        let mut config = Config::new();
        config.apply_env(env).unwrap();
        config.validate().unwrap();
        let cluster = config.cluster_mode().unwrap();
        assert_eq!(cluster.voters.len(), 3);
        assert_eq!(cluster.election_timeout, Duration::from_millis(1500));
        let err = Config::new()
            .apply_env([(env_name("process.roles"), "broker,zookeeper".to_string())])
            .unwrap_err()
            .to_string();
        assert!(err.contains("process.roles"), "{err}");
    }

    #[test]
    fn kraft_defaults_are_kafkas_and_described() {
        let config = Config::new();
        for (key, value) in [
            ("broker.session.timeout.ms", Some("9000")),
            ("broker.heartbeat.interval.ms", Some("2000")),
            ("initial.broker.registration.timeout.ms", Some("60000")),
            ("controller.quorum.election.timeout.ms", Some("1000")),
            ("controller.quorum.election.backoff.max.ms", Some("1000")),
            ("controller.quorum.fetch.timeout.ms", Some("2000")),
            ("controller.quorum.request.timeout.ms", Some("2000")),
            (
                "metadata.log.max.record.bytes.between.snapshots",
                Some("20971520"),
            ),
            ("metadata.log.max.snapshot.interval.ms", Some("3600000")),
            ("default.replication.factor", Some("1")),
            ("offsets.topic.replication.factor", Some("3")),
            ("transaction.state.log.replication.factor", Some("3")),
            ("transaction.state.log.min.isr", Some("2")),
            (
                "listener.security.protocol.map",
                Some(super::super::DEFAULT_SECURITY_PROTOCOL_MAP),
            ),
            ("security.inter.broker.protocol", Some("PLAINTEXT")),
            ("controller.quorum.voters", Some("")),
            ("process.roles", None),
            ("controller.listener.names", None),
            ("inter.broker.listener.name", None),
            ("metadata.log.dir", None),
            ("broker.rack", None),
        ] {
            assert_eq!(config.value_of(key).as_deref(), value, "{key}");
        }
        let err = Config::new()
            .set("offsets.topic.replication.factor", "0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("offsets.topic.replication.factor"), "{err}");
    }
}
