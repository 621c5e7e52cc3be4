//! How the listener and KRaft keys combine: the listeners a broker binds and advertises, the cluster a node
//! joins, and the checks that run once every source is applied (Kafka's `KafkaConfig.validateValues`, with
//! its messages). Each key is validated alone when it is set; these checks need several keys, which may
//! come in any order, so they run at start.

use std::collections::BTreeMap;
use std::time::Duration;

use super::listeners::SUPPORTED_PROTOCOLS;
use super::{
    BrokerListener, ClusterConfig, Config, ConfigError, ControllerListener, ListenerEndpoint,
    SecurityProtocol,
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
                    Some(l.endpoint.clone())
                } else {
                    find(&self.advertised_listeners, &l.name).map(|a| a.endpoint.clone())
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
            if roles.controller {
                if controllers_in_listeners == 0 {
                    return fail(
                        "controller.listener.names must contain at least one value appearing in the \
                         'listeners' configuration when running the KRaft controller role"
                            .into(),
                    );
                }
                if controllers_in_listeners != controller_names.len() {
                    return fail(
                        "controller.listener.names must only contain values appearing in the 'listeners' \
                         configuration when running the KRaft controller role"
                            .into(),
                    );
                }
                if !roles.broker && controllers_in_listeners != listener_names.len() {
                    return fail(
                        "The listeners config must only contain KRaft controller listeners from \
                         controller.listener.names when process.roles=controller"
                            .into(),
                    );
                }
            } else {
                if controller_names.is_empty() {
                    return fail(
                        "controller.listener.names must contain at least one value when running KRaft with \
                         just the broker role"
                            .into(),
                    );
                }
                if controllers_in_listeners > 0 {
                    return fail(
                        "controller.listener.names must not contain a value appearing in the 'listeners' \
                         configuration when running KRaft with just the broker role"
                            .into(),
                    );
                }
            }
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
        if self.listener_protocol(inter_broker).is_none() {
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
