//! What each response tells the metrics: its error codes and, for Fetch, the bytes and records per topic.
//!
//! Kafka counts every error code a response carries (top level, per topic, per partition, per group), so a
//! Produce to three partitions of which one is unknown counts one UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::messages::*;

use super::Apis;

/// A response whose error codes (and, for Fetch, data) the metrics record.
pub trait ResponseMetrics {
    /// The API this response answers.
    const API: ApiKey;

    /// Calls `f` with every error code in the response, NONE (0) included.
    fn error_codes(&self, f: &mut dyn FnMut(i16));

    /// Records this response in the broker's metrics.
    fn observe(&self, apis: &Apis) {
        self.observe_errors(apis);
    }

    /// Counts the response's error codes other than NONE.
    fn observe_errors(&self, apis: &Apis) {
        let mut codes = Vec::new();
        self.error_codes(&mut |c| {
            if c != 0 {
                codes.push(c);
            }
        });
        apis.metrics.response_errors(Self::API, &codes);
    }
}

/// Implements [`ResponseMetrics`] from a list of paths to the error codes: `a` is one code, `a.b` one per
/// element of the list `a`, `a.b.c` one per element of each list `b`.
macro_rules! error_codes {
    ($response:ty, $api:ident $(, $($path:ident).+)* $(,)?) => {
        impl ResponseMetrics for $response {
            const API: ApiKey = ApiKey::$api;
            #[allow(unused_variables)]
            fn error_codes(&self, f: &mut dyn FnMut(i16)) {
                $( error_codes!(@walk self, f, $($path).+); )*
            }
        }
    };
    (@walk $v:expr, $f:ident, $field:ident) => { $f($v.$field) };
    (@walk $v:expr, $f:ident, $first:ident . $($rest:ident).+) => {
        for item in $v.$first.iter() {
            error_codes!(@walk item, $f, $($rest).+);
        }
    };
}

error_codes!(ApiVersionsResponse, ApiVersions, error_code);
error_codes!(
    MetadataResponse,
    Metadata,
    topics.error_code,
    topics.partitions.error_code
);
error_codes!(
    ProduceResponse,
    Produce,
    responses.partition_responses.error_code
);
error_codes!(
    FindCoordinatorResponse,
    FindCoordinator,
    error_code,
    coordinators.error_code
);
error_codes!(
    ListOffsetsResponse,
    ListOffsets,
    topics.partitions.error_code
);
error_codes!(CreateTopicsResponse, CreateTopics, topics.error_code);
error_codes!(DeleteTopicsResponse, DeleteTopics, responses.error_code);
error_codes!(JoinGroupResponse, JoinGroup, error_code);
error_codes!(SyncGroupResponse, SyncGroup, error_code);
error_codes!(HeartbeatResponse, Heartbeat, error_code);
error_codes!(
    LeaveGroupResponse,
    LeaveGroup,
    error_code,
    members.error_code
);
error_codes!(ListGroupsResponse, ListGroups, error_code);
error_codes!(DescribeGroupsResponse, DescribeGroups, groups.error_code);
error_codes!(DeleteGroupsResponse, DeleteGroups, results.error_code);
error_codes!(
    OffsetCommitResponse,
    OffsetCommit,
    topics.partitions.error_code
);
error_codes!(
    OffsetFetchResponse,
    OffsetFetch,
    error_code,
    topics.partitions.error_code,
    groups.error_code,
    groups.topics.partitions.error_code
);
error_codes!(
    OffsetDeleteResponse,
    OffsetDelete,
    error_code,
    topics.partitions.error_code
);
error_codes!(DescribeConfigsResponse, DescribeConfigs, results.error_code);
error_codes!(AlterConfigsResponse, AlterConfigs, responses.error_code);
error_codes!(
    IncrementalAlterConfigsResponse,
    IncrementalAlterConfigs,
    responses.error_code
);
error_codes!(
    CreatePartitionsResponse,
    CreatePartitions,
    results.error_code
);
error_codes!(DescribeClusterResponse, DescribeCluster, error_code);
error_codes!(
    DescribeLogDirsResponse,
    DescribeLogDirs,
    error_code,
    results.error_code
);
error_codes!(
    OffsetForLeaderEpochResponse,
    OffsetForLeaderEpoch,
    topics.partitions.error_code
);
error_codes!(
    DeleteRecordsResponse,
    DeleteRecords,
    topics.partitions.error_code
);

impl ResponseMetrics for FetchResponse {
    const API: ApiKey = ApiKey::Fetch;

    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.error_code);
        for topic in &self.responses {
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }

    /// Also counts the bytes and records returned per topic (topics named by id are looked up).
    fn observe(&self, apis: &Apis) {
        self.observe_errors(apis);
        for topic in &self.responses {
            let by_id;
            let name = if topic.topic.0.is_empty() {
                match apis.metadata.topic_by_id(topic.topic_id) {
                    Some(meta) => {
                        by_id = meta;
                        by_id.name.as_str()
                    }
                    None => continue,
                }
            } else {
                topic.topic.0.as_str()
            };
            for partition in &topic.partitions {
                if let Some(records) = &partition.records {
                    apis.metrics.fetched(name, records);
                }
            }
        }
    }
}
