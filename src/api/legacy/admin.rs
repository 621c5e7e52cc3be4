//! CreateTopics v0-1, DeleteTopics v0, DescribeConfigs v0 and DescribeLogDirs v0 (Kafka 3.9's schemas).

use bytes::BufMut;
use kafka_protocol::messages::create_topics_request::{
    CreatableReplicaAssignment, CreatableTopic, CreatableTopicConfig,
};
use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::describe_log_dirs_request::DescribableLogDirTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, CreateTopicsResponse, DeleteTopicsRequest, DeleteTopicsResponse,
    DescribeConfigsRequest, DescribeConfigsResponse, DescribeLogDirsRequest, TopicName,
};

use super::LegacyError;
use super::wire::{MIN_ARRAY, MIN_STRING, Reader, Writer};

/// DescribeConfigs' config source for a value nobody set (`ConfigSource.DEFAULT_CONFIG`).
const DEFAULT_CONFIG: i8 = 5;

/// CreateTopics v0 and v1 (v1 adds validate_only at the end). v2 and v3 only changed the response, so the
/// request goes to the API module as the v2 request it is byte for byte.
pub(super) fn create_topics(
    r: &mut Reader,
    version: i16,
) -> Result<CreateTopicsRequest, LegacyError> {
    let min_topic = MIN_STRING + 4 + 2 + MIN_ARRAY + MIN_ARRAY;
    let topics = (0..r.count("topics", min_topic)?)
        .map(|_| {
            let name = TopicName(r.string("topic name")?);
            let num_partitions = r.i32("num_partitions")?;
            let replication_factor = r.i16("replication_factor")?;
            let assignments = (0..r.count("assignments", 4 + MIN_ARRAY)?)
                .map(|_| {
                    Ok(CreatableReplicaAssignment::default()
                        .with_partition_index(r.i32("partition_index")?)
                        .with_broker_ids(
                            r.i32_array("broker_ids")?
                                .into_iter()
                                .map(Into::into)
                                .collect(),
                        ))
                })
                .collect::<Result<_, LegacyError>>()?;
            let configs = (0..r.count("configs", MIN_STRING + MIN_STRING)?)
                .map(|_| {
                    Ok(CreatableTopicConfig::default()
                        .with_name(r.string("config name")?)
                        .with_value(r.nullable_string("config value")?))
                })
                .collect::<Result<_, LegacyError>>()?;
            Ok(CreatableTopic::default()
                .with_name(name)
                .with_num_partitions(num_partitions)
                .with_replication_factor(replication_factor)
                .with_assignments(assignments)
                .with_configs(configs))
        })
        .collect::<Result<_, LegacyError>>()?;
    let timeout_ms = r.i32("timeout_ms")?;
    let validate_only = version >= 1 && r.bool("validate_only")?;
    Ok(CreateTopicsRequest::default()
        .with_topics(topics)
        .with_timeout_ms(timeout_ms)
        .with_validate_only(validate_only))
}

/// CreateTopics v0 (name, error code) and v1 (adds the error message); no throttle time before v2.
pub fn create_topics_response(
    version: i16,
    response: &CreateTopicsResponse,
) -> Result<Vec<u8>, LegacyError> {
    let mut w = Writer::new();
    w.count(response.topics.len())?;
    for topic in &response.topics {
        w.string(&topic.name)?;
        w.buf.put_i16(topic.error_code);
        if version >= 1 {
            w.nullable_string(topic.error_message.as_deref())?;
        }
    }
    Ok(w.buf.to_vec())
}

/// DeleteTopics v0: topic names and a timeout, the same request as v1.
pub(super) fn delete_topics_v0(r: &mut Reader) -> Result<DeleteTopicsRequest, LegacyError> {
    let names = (0..r.count("topic_names", MIN_STRING)?)
        .map(|_| Ok(TopicName(r.string("topic name")?)))
        .collect::<Result<_, LegacyError>>()?;
    Ok(DeleteTopicsRequest::default()
        .with_topic_names(names)
        .with_timeout_ms(r.i32("timeout_ms")?))
}

/// DeleteTopics v0: (name, error code) per topic; no throttle time before v1.
pub fn delete_topics_v0_response(response: &DeleteTopicsResponse) -> Result<Vec<u8>, LegacyError> {
    let mut w = Writer::new();
    w.count(response.responses.len())?;
    for result in &response.responses {
        // v0 deletes by name only, so every result carries the name it was asked for.
        w.string(result.name.as_deref().map_or("", |n| n.as_str()))?;
        w.buf.put_i16(result.error_code);
    }
    Ok(w.buf.to_vec())
}

/// DescribeConfigs v0: per resource (type, name, keys or null for all); v1 added include_synonyms.
pub(super) fn describe_configs_v0(r: &mut Reader) -> Result<DescribeConfigsRequest, LegacyError> {
    let resources = (0..r.count("resources", 1 + MIN_STRING + MIN_ARRAY)?)
        .map(|_| {
            let resource_type = r.i8("resource_type")?;
            let resource_name = r.string("resource_name")?;
            let keys = match r.nullable_count("configuration_keys", MIN_STRING)? {
                None => None,
                Some(count) => Some(
                    (0..count)
                        .map(|_| r.string("configuration key"))
                        .collect::<Result<_, LegacyError>>()?,
                ),
            };
            Ok(DescribeConfigsResource::default()
                .with_resource_type(resource_type)
                .with_resource_name(resource_name)
                .with_configuration_keys(keys))
        })
        .collect::<Result<_, LegacyError>>()?;
    Ok(DescribeConfigsRequest::default().with_resources(resources))
}

/// DescribeConfigs v0: each config says `is_default` where v1+ gives its source, and has no synonyms.
/// `is_default` is true for a value nobody set (source DEFAULT_CONFIG), as the v0 schema defines it.
pub fn describe_configs_v0_response(
    response: &DescribeConfigsResponse,
) -> Result<Vec<u8>, LegacyError> {
    let mut w = Writer::new();
    w.buf.put_i32(response.throttle_time_ms);
    w.count(response.results.len())?;
    for result in &response.results {
        w.buf.put_i16(result.error_code);
        w.nullable_string(result.error_message.as_deref())?;
        w.buf.put_i8(result.resource_type);
        w.string(&result.resource_name)?;
        w.count(result.configs.len())?;
        for config in &result.configs {
            w.string(&config.name)?;
            w.nullable_string(config.value.as_deref())?;
            w.buf.put_i8(i8::from(config.read_only));
            w.buf
                .put_i8(i8::from(config.config_source == DEFAULT_CONFIG));
            w.buf.put_i8(i8::from(config.is_sensitive));
        }
    }
    Ok(w.buf.to_vec())
}

/// DescribeLogDirs v0: topics (null for all) with their partitions, the same request as v1.
pub(super) fn describe_log_dirs_v0(r: &mut Reader) -> Result<DescribeLogDirsRequest, LegacyError> {
    let topics = match r.nullable_count("topics", MIN_STRING + MIN_ARRAY)? {
        None => None,
        Some(count) => Some(
            (0..count)
                .map(|_| {
                    Ok(DescribableLogDirTopic::default()
                        .with_topic(TopicName(r.string("topic")?))
                        .with_partitions(r.i32_array("partitions")?))
                })
                .collect::<Result<_, LegacyError>>()?,
        ),
    };
    Ok(DescribeLogDirsRequest::default().with_topics(topics))
}
