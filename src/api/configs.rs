//! DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for TOPIC, BROKER and GROUP resources.
//!
//! A topic config's value comes, in Kafka's order, from the topic's override (DYNAMIC_TOPIC_CONFIG), this
//! broker's dynamic config (DYNAMIC_BROKER_CONFIG), the cluster-wide dynamic default
//! (DYNAMIC_DEFAULT_BROKER_CONFIG), server.properties (STATIC_BROKER_CONFIG) or the built-in default
//! (DEFAULT_CONFIG). Changes are validated whole before anything is stored, persisted, and applied to every
//! partition at once.

use crate::api::context::RequestContext;
use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{
    AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::error::metadata_error_code;
use crate::cluster::TopicImage;
use crate::cluster::dynamic_config::{BrokerScope, DynamicConfigs};
use crate::cluster::group_config::{self, GROUP_CONFIG_DEFS};
use crate::cluster::topic_config::{
    ConfigType, TOPIC_CONFIG_DEFS, TopicConfigDef, apply_topic_config, list_append, list_subtract,
    render, topic_config_def, topic_config_for_broker_key,
};
use crate::config::{Config, SaslValue, is_dynamic_broker_key, key_spec};
use crate::log::LogConfig;

/// Kafka's ConfigResource types.
pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;
pub const RESOURCE_GROUP: i8 = 32;

/// Kafka's DescribeConfigs config sources.
pub mod source {
    pub const DYNAMIC_TOPIC_CONFIG: i8 = 1;
    pub const DYNAMIC_BROKER_CONFIG: i8 = 2;
    pub const DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
    pub const STATIC_BROKER_CONFIG: i8 = 4;
    pub const DEFAULT_CONFIG: i8 = 5;
    pub const GROUP_CONFIG: i8 = 8;
}

/// One described config, before it becomes a response struct of whichever API asked.
#[derive(Clone, Debug)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    pub source: i8,
    pub read_only: bool,
    pub ty: ConfigType,
    pub doc: Option<&'static str>,
    /// (name, value, source), highest precedence first; the first is where the value came from.
    pub synonyms: Vec<(String, Option<String>, i8)>,
}

type Failure = (ResponseError, String);

fn failure(error: ResponseError, message: impl Into<String>) -> Failure {
    (error, message.into())
}

/// Broker property values at each level, highest precedence first.
fn broker_synonyms(
    apis: &Apis,
    dynamic: &DynamicConfigs,
    keys: &[&str],
) -> Vec<(String, Option<String>, i8)> {
    let mut out = Vec::new();
    for (layer, src) in [
        (&dynamic.broker, source::DYNAMIC_BROKER_CONFIG),
        (
            &dynamic.cluster_default,
            source::DYNAMIC_DEFAULT_BROKER_CONFIG,
        ),
        (apis.config.explicit(), source::STATIC_BROKER_CONFIG),
    ] {
        for key in keys {
            if let Some(v) = layer.get(*key) {
                out.push((key.to_string(), Some(v.clone()), src));
            }
        }
    }
    let defaults = Config::default();
    if let Some((key, value)) = keys
        .iter()
        .find_map(|k| defaults.value_of(k).map(|v| (k, v)))
    {
        out.push((key.to_string(), Some(value), source::DEFAULT_CONFIG));
    }
    out
}

/// Every config of a topic with its value in force and where it comes from.
pub fn topic_entries(apis: &Apis, topic: &TopicImage) -> Vec<ConfigEntry> {
    let dynamic = apis.metadata.broker_configs().get();
    let effective = apis
        .config
        .with_dynamic([&dynamic.cluster_default, &dynamic.broker])
        .log;
    TOPIC_CONFIG_DEFS
        .iter()
        .map(|def| topic_entry(apis, &dynamic, &effective, topic, def))
        .collect()
}

fn topic_entry(
    apis: &Apis,
    dynamic: &DynamicConfigs,
    effective: &LogConfig,
    topic: &TopicImage,
    def: &'static TopicConfigDef,
) -> ConfigEntry {
    let mut synonyms = Vec::new();
    if let Some(v) = topic.configs.get(def.name) {
        synonyms.push((
            def.name.to_string(),
            Some(v.clone()),
            source::DYNAMIC_TOPIC_CONFIG,
        ));
    }
    synonyms.extend(broker_synonyms(apis, dynamic, def.synonyms));
    let value = match topic.configs.get(def.name) {
        Some(v) => Some(v.clone()),
        None => render(effective, def.name),
    };
    if synonyms.is_empty() {
        // Configs without a broker property of brook's own (min.insync.replicas, ...): the built-in default.
        synonyms.push((
            def.synonyms[0].to_string(),
            render(&LogConfig::default(), def.name),
            source::DEFAULT_CONFIG,
        ));
    }
    ConfigEntry {
        name: def.name.to_string(),
        value,
        source: synonyms[0].2,
        read_only: false,
        ty: def.ty,
        doc: Some(def.doc),
        synonyms,
    }
}

/// Kafka's type of a broker property.
fn broker_key_type(key: &str) -> ConfigType {
    if let Some(def) = topic_config_for_broker_key(key) {
        return match key {
            "log.roll.hours" | "log.retention.hours" | "log.retention.minutes" => ConfigType::Int,
            _ => def.ty,
        };
    }
    if let Some(ty) = key_spec(key).and_then(|spec| spec.sasl_type()) {
        return match ty {
            SaslValue::String => ConfigType::String,
            SaslValue::List => ConfigType::List,
            SaslValue::Long => ConfigType::Long,
            SaslValue::Double(..) => ConfigType::Double,
            SaslValue::Short(..) => ConfigType::Short,
        };
    }
    match key {
        "auto.create.topics.enable" | "log.cleaner.enable" | "auto.leader.rebalance.enable" => {
            ConfigType::Boolean
        }
        "listeners" | "advertised.listeners" | "log.dirs" => ConfigType::String,
        "log.dir" => ConfigType::String,
        "process.roles" | "controller.quorum.voters" => ConfigType::List,
        "controller.listener.names"
        | "listener.security.protocol.map"
        | "inter.broker.listener.name"
        | "security.inter.broker.protocol"
        | "broker.rack"
        | "metadata.log.dir" => ConfigType::String,
        "log.retention.check.interval.ms"
        | "log.cleaner.backoff.ms"
        | "log.cleaner.dedupe.buffer.size"
        | "connections.max.idle.ms"
        | "offsets.retention.check.interval.ms"
        | "queued.max.reply.bytes"
        | "metadata.log.max.record.bytes.between.snapshots"
        | "metadata.log.max.snapshot.interval.ms"
        | "leader.imbalance.check.interval.seconds" => ConfigType::Long,
        // Kafka's `default.replication.factor` is an INT; the internal topics' factors are SHORTs.
        "offsets.topic.replication.factor" | "transaction.state.log.replication.factor" => {
            ConfigType::Short
        }
        _ => ConfigType::Int,
    }
}

/// The entry of one broker property for this broker (`node id` resource).
fn broker_entry(apis: &Apis, dynamic: &DynamicConfigs, key: &str) -> ConfigEntry {
    // A property's synonyms are the less precise units of the same setting (log.retention.ms, .minutes,
    // .hours); the value shown is the property's own.
    let keys: Vec<&str> = match topic_config_for_broker_key(key) {
        Some(def) => def
            .synonyms
            .iter()
            .skip_while(|k| **k != key)
            .copied()
            .collect(),
        None => vec![key],
    };
    let synonyms = broker_synonyms(apis, dynamic, &keys);
    let own = synonyms.iter().find(|(name, _, _)| name == key);
    ConfigEntry {
        name: key.to_string(),
        value: own.and_then(|(_, v, _)| v.clone()),
        source: own.map_or(source::DEFAULT_CONFIG, |(_, _, s)| *s),
        read_only: !is_dynamic_broker_key(key),
        ty: broker_key_type(key),
        doc: topic_config_for_broker_key(key).map(|d| d.doc),
        synonyms,
    }
}

/// Which broker scope a BROKER resource name means, as Kafka reads it.
fn broker_scope(apis: &Apis, name: &str) -> Result<BrokerScope, Failure> {
    if name.is_empty() {
        return Ok(BrokerScope::ClusterDefault);
    }
    match name.parse::<i32>() {
        Ok(id) if id == apis.node_id => Ok(BrokerScope::Broker),
        Ok(_) => Err(failure(
            ResponseError::InvalidRequest,
            format!(
                "Unexpected broker id, expected {} or empty string, but received {name}",
                apis.node_id
            ),
        )),
        Err(_) => Err(failure(
            ResponseError::InvalidRequest,
            format!("Broker id must be an integer, but it is: {name}"),
        )),
    }
}

fn describe_resource(
    apis: &Apis,
    resource_type: i8,
    name: &str,
) -> Result<Vec<ConfigEntry>, Failure> {
    match resource_type {
        RESOURCE_TOPIC => {
            let topic = apis.metadata.topic(name).ok_or_else(|| {
                failure(
                    ResponseError::UnknownTopicOrPartition,
                    format!("Topic {name} does not exist"),
                )
            })?;
            Ok(topic_entries(apis, &topic))
        }
        RESOURCE_BROKER => {
            let dynamic = apis.metadata.broker_configs().get();
            Ok(match broker_scope(apis, name)? {
                // Kafka describes the cluster default resource as its dynamic default configs only.
                BrokerScope::ClusterDefault => dynamic
                    .cluster_default
                    .iter()
                    .map(|(key, value)| ConfigEntry {
                        name: key.clone(),
                        value: Some(value.clone()),
                        source: source::DYNAMIC_DEFAULT_BROKER_CONFIG,
                        read_only: false,
                        ty: broker_key_type(key),
                        doc: topic_config_for_broker_key(key).map(|d| d.doc),
                        synonyms: vec![(
                            key.clone(),
                            Some(value.clone()),
                            source::DYNAMIC_DEFAULT_BROKER_CONFIG,
                        )],
                    })
                    .collect(),
                BrokerScope::Broker => Config::known_keys()
                    .iter()
                    .map(|key| broker_entry(apis, &dynamic, key))
                    .collect(),
            })
        }
        RESOURCE_GROUP => {
            check_group_name(name)?;
            Ok(group_entries(apis, name))
        }
        other => Err(failure(
            ResponseError::InvalidRequest,
            format!(
                "Unsupported resource type {other}: brook describes TOPIC (2), BROKER (4) and GROUP (32) configs"
            ),
        )),
    }
}

pub fn describe_configs(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let name = resource.resource_name.as_str();
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone());
            match describe_resource(apis, resource.resource_type, name) {
                Ok(entries) => {
                    let configs = entries
                        .into_iter()
                        .filter(|e| {
                            resource
                                .configuration_keys
                                .as_ref()
                                .is_none_or(|keys| keys.iter().any(|k| k.as_str() == e.name))
                        })
                        .map(|e| to_describe_result(e, request, version))
                        .collect();
                    result.with_configs(configs)
                }
                Err((error, message)) => result
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message))),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn to_describe_result(
    e: ConfigEntry,
    request: &DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut out = DescribeConfigsResourceResult::default()
        .with_name(StrBytes::from_string(e.name))
        .with_value(e.value.map(StrBytes::from_string))
        .with_read_only(e.read_only)
        .with_config_source(e.source)
        .with_is_sensitive(false);
    if request.include_synonyms {
        out = out.with_synonyms(
            e.synonyms
                .into_iter()
                .map(|(name, value, src)| {
                    DescribeConfigsSynonym::default()
                        .with_name(StrBytes::from_string(name))
                        .with_value(value.map(StrBytes::from_string))
                        .with_source(src)
                })
                .collect(),
        );
    }
    if version >= 3 {
        out = out.with_config_type(e.ty as i8);
        if request.include_documentation {
            out = out.with_documentation(e.doc.map(StrBytes::from_static_str));
        }
    }
    out
}

/// IncrementalAlterConfigs' operations; AlterConfigs is a SET of every given config on an empty set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AlterOp {
    Set,
    Delete,
    Append,
    Subtract,
}

impl AlterOp {
    fn from_code(code: i8) -> Option<AlterOp> {
        match code {
            0 => Some(AlterOp::Set),
            1 => Some(AlterOp::Delete),
            2 => Some(AlterOp::Append),
            3 => Some(AlterOp::Subtract),
            _ => None,
        }
    }
}

/// One requested change.
pub struct Change {
    pub name: String,
    pub op: AlterOp,
    pub value: Option<String>,
}

/// Validates and (unless `validate_only`) applies changes to one resource. `incremental` starts from the
/// resource's current overrides; otherwise they are replaced by the given set, as AlterConfigs does.
pub fn alter_resource(
    apis: &Apis,
    resource_type: i8,
    name: &str,
    changes: Vec<Change>,
    incremental: bool,
    validate_only: bool,
) -> Result<(), Failure> {
    let mut seen = std::collections::HashSet::new();
    for change in &changes {
        if !seen.insert(change.name.as_str()) {
            return Err(failure(
                ResponseError::InvalidRequest,
                format!("Error due to duplicate config keys: {}", change.name),
            ));
        }
    }
    let _serialised = apis.metadata.admin_guard();
    match resource_type {
        RESOURCE_TOPIC => alter_topic(apis, name, changes, incremental, validate_only),
        RESOURCE_BROKER => alter_broker(apis, name, changes, incremental, validate_only),
        RESOURCE_GROUP => alter_group(apis, name, changes, incremental, validate_only),
        other => Err(failure(
            ResponseError::InvalidRequest,
            format!(
                "Unsupported resource type {other}: brook alters TOPIC (2), BROKER (4) and GROUP (32) configs"
            ),
        )),
    }
}

/// The new value of a config after one change, given its current value.
fn changed_value(
    change: &Change,
    ty: ConfigType,
    current: impl FnOnce() -> String,
) -> Result<Option<String>, Failure> {
    let value = || {
        change.value.clone().ok_or_else(|| {
            failure(
                ResponseError::InvalidConfig,
                format!("Null value not supported for: {}", change.name),
            )
        })
    };
    match change.op {
        AlterOp::Set => value().map(Some),
        AlterOp::Delete => Ok(None),
        AlterOp::Append | AlterOp::Subtract if ty != ConfigType::List => Err(failure(
            ResponseError::InvalidConfig,
            format!(
                "Config value append/subtract is not allowed for config key {}: it is not a list",
                change.name
            ),
        )),
        AlterOp::Append => Ok(Some(list_append(&current(), &value()?))),
        AlterOp::Subtract => Ok(Some(list_subtract(&current(), &value()?))),
    }
}

fn alter_topic(
    apis: &Apis,
    name: &str,
    changes: Vec<Change>,
    incremental: bool,
    validate_only: bool,
) -> Result<(), Failure> {
    let topic = apis.metadata.topic(name).ok_or_else(|| {
        failure(
            ResponseError::UnknownTopicOrPartition,
            format!("Topic {name} does not exist"),
        )
    })?;
    let defaults = apis.log_defaults();
    let mut configs = if incremental {
        topic.configs.clone()
    } else {
        BTreeMap::new()
    };
    for change in &changes {
        let def = topic_config_def(&change.name).ok_or_else(|| {
            failure(
                ResponseError::InvalidConfig,
                format!("Unknown or unsupported topic config name: {}", change.name),
            )
        })?;
        let current = || {
            configs
                .get(def.name)
                .cloned()
                .or_else(|| render(&defaults, def.name))
                .unwrap_or_default()
        };
        match changed_value(change, def.ty, current)? {
            Some(v) => configs.insert(def.name.to_string(), v),
            None => configs.remove(def.name),
        };
    }
    let mut check = defaults.clone();
    for (key, value) in &configs {
        apply_topic_config(&mut check, key, value)
            .map_err(|m| failure(ResponseError::InvalidConfig, m))?;
    }
    if validate_only || configs == topic.configs {
        return Ok(());
    }
    let updated = apis
        .metadata
        .set_topic_configs(name, configs)
        .map_err(|e| failure(metadata_error_code(&e), e.to_string()))?;
    tracing::info!(topic = name, configs = ?updated.configs, "altered topic configs");
    Ok(())
}

fn alter_broker(
    apis: &Apis,
    name: &str,
    changes: Vec<Change>,
    incremental: bool,
    validate_only: bool,
) -> Result<(), Failure> {
    let scope = broker_scope(apis, name)?;
    let dynamic = apis.metadata.broker_configs().get();
    let mut configs = if incremental {
        dynamic.scope(scope).clone()
    } else {
        BTreeMap::new()
    };
    let effective = apis
        .config
        .with_dynamic([&dynamic.cluster_default, &dynamic.broker]);
    for change in &changes {
        let key = change.name.as_str();
        if !Config::known_keys().contains(&key) {
            return Err(failure(
                ResponseError::InvalidConfig,
                format!("Unknown broker config: {key}"),
            ));
        }
        if !is_dynamic_broker_key(key) {
            return Err(failure(
                ResponseError::InvalidRequest,
                format!("Cannot update these configs dynamically: {key}"),
            ));
        }
        let current = || {
            configs
                .get(key)
                .cloned()
                .or_else(|| effective.value_of(key))
                .unwrap_or_default()
        };
        match changed_value(change, broker_key_type(key), current)? {
            Some(v) => configs.insert(key.to_string(), v),
            None => configs.remove(key),
        };
    }
    let mut check = apis.config.clone();
    for (key, value) in &configs {
        check
            .set(key, value)
            .map_err(|e| failure(ResponseError::InvalidConfig, e.to_string()))?;
    }
    if validate_only || configs == *dynamic.scope(scope) {
        return Ok(());
    }
    // Every partition's derived config changes with the broker defaults: the publishers are told.
    apis.metadata
        .replace_broker_configs(scope, configs)
        .map_err(|e| failure(metadata_error_code(&e), e.to_string()))?;
    tracing::info!(?scope, "altered dynamic broker configs");
    Ok(())
}

fn check_group_name(name: &str) -> Result<(), Failure> {
    if name.is_empty() {
        return Err(failure(
            ResponseError::InvalidRequest,
            "Group name must not be empty",
        ));
    }
    Ok(())
}

/// Every group config of `group` with its value in force: the group's override (GROUP_CONFIG) or the
/// broker's default for it (DEFAULT_CONFIG), as Kafka describes them. The group need not exist.
fn group_entries(apis: &Apis, group: &str) -> Vec<ConfigEntry> {
    let overrides = apis.metadata.group_configs().get(group);
    GROUP_CONFIG_DEFS
        .iter()
        .map(|def| {
            let (value, src) = match overrides.get(def.name) {
                Some(v) => (v.clone(), source::GROUP_CONFIG),
                None => (
                    group_config::default_value(def, &|k| apis.config.group_protocol_value(k)),
                    source::DEFAULT_CONFIG,
                ),
            };
            ConfigEntry {
                name: def.name.to_string(),
                value: Some(value.clone()),
                source: src,
                read_only: false,
                ty: def.ty,
                doc: Some(def.doc),
                synonyms: vec![(def.name.to_string(), Some(value), src)],
            }
        })
        .collect()
}

fn alter_group(
    apis: &Apis,
    group: &str,
    changes: Vec<Change>,
    incremental: bool,
    validate_only: bool,
) -> Result<(), Failure> {
    check_group_name(group)?;
    let current = apis.metadata.group_configs().get(group);
    let mut configs = if incremental {
        current.clone()
    } else {
        BTreeMap::new()
    };
    for change in &changes {
        let def = group_config::group_config_def(&change.name).ok_or_else(|| {
            failure(
                ResponseError::InvalidConfig,
                format!("Unknown group config name: {}", change.name),
            )
        })?;
        let now = || {
            configs.get(def.name).cloned().unwrap_or_else(|| {
                group_config::default_value(def, &|k| apis.config.group_protocol_value(k))
            })
        };
        match changed_value(change, def.ty, now)? {
            Some(v) => configs.insert(def.name.to_string(), v.trim().to_string()),
            None => configs.remove(def.name),
        };
    }
    group_config::validate(&configs, &|k| apis.config.group_protocol_value(k))
        .map_err(|m| failure(ResponseError::InvalidConfig, m))?;
    if validate_only || configs == current {
        return Ok(());
    }
    apis.metadata
        .replace_group_configs(group, configs)
        .map_err(|e| failure(metadata_error_code(&e), e.to_string()))?;
    tracing::info!(group, "altered group configs");
    Ok(())
}

pub fn alter_configs(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &AlterConfigsRequest,
) -> AlterConfigsResponse {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let changes = resource
                .configs
                .iter()
                .map(|c| Change {
                    name: c.name.to_string(),
                    op: AlterOp::Set,
                    value: c.value.as_ref().map(|v| v.to_string()),
                })
                .collect();
            let outcome = alter_resource(
                apis,
                resource.resource_type,
                resource.resource_name.as_str(),
                changes,
                false,
                request.validate_only,
            );
            let (code, message) = outcome_fields(outcome);
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    AlterConfigsResponse::default().with_responses(responses)
}

pub fn incremental_alter_configs(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    let responses = request
        .resources
        .iter()
        .map(|resource| {
            let changes: Result<Vec<Change>, Failure> = resource
                .configs
                .iter()
                .map(|c| {
                    let op = AlterOp::from_code(c.config_operation).ok_or_else(|| {
                        failure(
                            ResponseError::InvalidRequest,
                            format!(
                                "Unknown config operation {} for {}",
                                c.config_operation, c.name
                            ),
                        )
                    })?;
                    Ok(Change {
                        name: c.name.to_string(),
                        op,
                        value: c.value.as_ref().map(|v| v.to_string()),
                    })
                })
                .collect();
            let outcome = changes.and_then(|changes| {
                alter_resource(
                    apis,
                    resource.resource_type,
                    resource.resource_name.as_str(),
                    changes,
                    true,
                    request.validate_only,
                )
            });
            let (code, message) = outcome_fields(outcome);
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(code)
                .with_error_message(message)
        })
        .collect();
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

fn outcome_fields(outcome: Result<(), Failure>) -> (i16, Option<StrBytes>) {
    match outcome {
        Ok(()) => (0, None),
        Err((error, message)) => {
            tracing::debug!(%error, message, "config change refused");
            (error.code(), Some(StrBytes::from_string(message)))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::cluster::group_config;
    use crate::config::Config;

    fn one(k: &str, v: &str) -> BTreeMap<String, String> {
        BTreeMap::from([(k.to_string(), v.to_string())])
    }

    #[test]
    fn cluster_keys_carry_kafkas_config_types() {
        use super::broker_key_type as ty;
        use crate::cluster::topic_config::ConfigType;
        for key in ["process.roles", "controller.quorum.voters"] {
            assert_eq!(ty(key), ConfigType::List, "{key}");
        }
        for key in [
            "controller.listener.names",
            "listener.security.protocol.map",
            "inter.broker.listener.name",
            "security.inter.broker.protocol",
            "broker.rack",
            "metadata.log.dir",
        ] {
            assert_eq!(ty(key), ConfigType::String, "{key}");
        }
        for key in [
            "metadata.log.max.record.bytes.between.snapshots",
            "metadata.log.max.snapshot.interval.ms",
            "leader.imbalance.check.interval.seconds",
        ] {
            assert_eq!(ty(key), ConfigType::Long, "{key}");
        }
        assert_eq!(ty("offsets.topic.replication.factor"), ConfigType::Short);
        assert_eq!(
            ty("transaction.state.log.replication.factor"),
            ConfigType::Short
        );
        assert_eq!(ty("default.replication.factor"), ConfigType::Int);
        assert_eq!(
            ty("leader.imbalance.per.broker.percentage"),
            ConfigType::Int
        );
        assert_eq!(ty("auto.leader.rebalance.enable"), ConfigType::Boolean);
    }

    #[test]
    fn group_config_overrides_are_checked_against_the_broker_bounds() {
        let broker = Config::default();
        assert!(
            group_config::validate(&one("consumer.session.timeout.ms", "50000"), &|k| broker
                .group_protocol_value(k))
            .is_ok()
        );
        let err = group_config::validate(&one("consumer.session.timeout.ms", "1000"), &|k| {
            broker.group_protocol_value(k)
        })
        .unwrap_err();
        assert!(
            err.contains("group.consumer.min.session.timeout.ms"),
            "{err}"
        );
        let err = group_config::validate(&one("consumer.heartbeat.interval.ms", "x"), &|k| {
            broker.group_protocol_value(k)
        })
        .unwrap_err();
        assert!(err.contains("INT"), "{err}");
        let err = group_config::validate(&one("no.such.config", "1"), &|k| {
            broker.group_protocol_value(k)
        })
        .unwrap_err();
        assert_eq!(err, "Unknown group config name: no.such.config");
        let err = group_config::validate(&one("streams.num.standby.replicas", "3"), &|k| {
            broker.group_protocol_value(k)
        })
        .unwrap_err();
        assert!(err.contains("group.streams.max.standby.replicas"), "{err}");
        assert!(
            group_config::validate(
                &one("share.auto.offset.reset", "by_duration:PT1H30M"),
                &|k| broker.group_protocol_value(k)
            )
            .is_ok()
        );
        assert!(
            group_config::validate(&one("share.auto.offset.reset", "by_duration:1H"), &|k| {
                broker.group_protocol_value(k)
            })
            .is_err()
        );
        assert!(
            group_config::validate(&one("share.isolation.level", "read_committed"), &|k| broker
                .group_protocol_value(k))
            .is_ok()
        );
        let mut wide = Config::default();
        wide.set("group.consumer.min.session.timeout.ms", "1000")
            .unwrap();
        assert!(
            group_config::validate(&one("consumer.session.timeout.ms", "6000"), &|k| wide
                .group_protocol_value(k))
            .is_ok()
        );
    }
}
