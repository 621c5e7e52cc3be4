//! One registration per API: its key, the versions brook serves in full, and its handler. The ApiVersions
//! answer, the dispatcher's routing (and with it the per-response metrics) are all expanded from the one
//! table in [`registrations!`], so adding an API is one entry there.
//!
//! Produce is advertised from version 0 although versions 0-2 are answered with UNSUPPORTED_VERSION, as Kafka
//! 4.x does: librdkafka before 2.11.1 (Debian's kcat) turns compression off when Produce does not start at 0.
//! FindCoordinator must be advertised for librdkafka to use lz4 compression at all.
//! OffsetCommit and OffsetFetch stop at 9: v10 (topic ids) cannot be decoded by the codec yet.
//! TxnOffsetCommit stops at 4: v5 means transaction version 2 (KIP-890 part 2), which brook does not finalize.
//! The versions Kafka 4 removed but 3.9 served (KIP-896) are decoded by `api::legacy`, not the codec.
//! Transactions stop before TV2 (`transaction.version` is not finalized): EndTxn at 4 (v5 means an epoch
//! bump per transaction). AddPartitionsToTxn goes to 5: v4-5 are the brokers' requests (a partition leader
//! verifying a transactional produce with a coordinator on another broker); clients send at most 3, and
//! Kafka's own producer caps itself at 3 unless TV2 is finalized.
//! ElectLeaders, AlterPartitionReassignments and ListPartitionReassignments go through the metadata quorum in
//! a cluster (Kafka's brokers forward them to the active controller).
//! WriteTxnMarkers is v1 only, as Kafka 4 (KIP-896 removed v0); it serves an operator's admin abort.
//! DescribeTopicPartitions (v0) shows the eligible leader replicas (KIP-966) that Metadata cannot.

use std::future::Future;
use std::pin::Pin;

use kafka_protocol::messages::{ApiKey, ProduceResponse};

use super::fetch::{FetchOutcome, FetchReply};
use super::groups::Outcome;
use super::produce::ProduceOutcome;

/// What a registered handler decided, for the dispatcher to encode.
pub enum Answer<R> {
    /// The response, ready now.
    Now(R),
    /// The response once the future is ready (long polls, acks=-1, group rebalances).
    Later(Pin<Box<dyn Future<Output = R> + Send>>),
    /// No response is due (acks=0). With a reason, the connection closes so the producer notices.
    NoResponse(Option<String>),
}

impl<R> From<Outcome<R>> for Answer<R> {
    fn from(outcome: Outcome<R>) -> Self {
        match outcome {
            Outcome::Respond(response) => Answer::Now(response),
            Outcome::Wait(pending) => Answer::Later(pending),
        }
    }
}

impl From<ProduceOutcome> for Answer<ProduceResponse> {
    fn from(outcome: ProduceOutcome) -> Self {
        match outcome {
            ProduceOutcome::NoResponse { failed } => Answer::NoResponse(failed),
            ProduceOutcome::Respond(response) => Answer::Now(response),
            ProduceOutcome::Wait(pending) => Answer::Later(pending),
        }
    }
}

impl From<FetchOutcome> for Answer<FetchReply> {
    fn from(outcome: FetchOutcome) -> Self {
        match outcome {
            FetchOutcome::Respond(response) => Answer::Now(response),
            FetchOutcome::Wait(pending) => Answer::Later(pending),
        }
    }
}

/// The table of APIs, in the order ApiVersions lists them. Each entry is
/// `Key, min, max, Response [error code paths], |apis, ctx, request| answer;`: the versions served, the
/// response type and where its error codes are for the metrics (`a.b.c`: each `c` of each element of the
/// lists `a` and `b`; `custom` when `response_metrics` implements them by hand), and the handler, which gets
/// `&Apis`, `&RequestContext` and the decoded request (by value) and returns an [`Answer`]. Expands by
/// calling `$expand!` with every entry.
macro_rules! registrations {
    ($expand:ident) => {
        $expand! {
            Produce, 0, 13, ProduceResponse [responses.partition_responses.error_code], |apis, ctx, req| Answer::from($crate::api::produce::handle(apis, ctx, req));
            Fetch, 4, 18, FetchReply [custom], |apis, ctx, req| Answer::from($crate::api::fetch::handle(apis, ctx, req));
            ListOffsets, 0, 10, ListOffsetsResponse [topics.partitions.error_code], |apis, ctx, req| Answer::Now($crate::api::list_offsets::handle(apis, ctx, &req, ctx.api_version));
            Metadata, 0, 13, MetadataResponse [topics.error_code, topics.partitions.error_code], |apis, ctx, req| Answer::Now($crate::api::metadata::handle(apis, ctx, &req, ctx.api_version));
            FindCoordinator, 0, 6, FindCoordinatorResponse [error_code, coordinators.error_code], |apis, ctx, req| Answer::Now($crate::api::find_coordinator::handle(apis, ctx, &req, ctx.api_version));
            ApiVersions, 0, 4, ApiVersionsResponse [error_code], |_apis, ctx, req| Answer::Now($crate::api::api_versions::handle(ctx, &req));
            CreateTopics, 0, 7, CreateTopicsResponse [topics.error_code], |apis, ctx, req| Answer::Now($crate::api::topics::create_topics(apis, ctx, req, ctx.api_version));
            DeleteTopics, 0, 6, DeleteTopicsResponse [responses.error_code], |apis, ctx, req| Answer::Now($crate::api::topics::delete_topics(apis, ctx, req, ctx.api_version));
            JoinGroup, 0, 9, JoinGroupResponse [error_code], |apis, ctx, req| Answer::from($crate::api::groups::join_group(
                apis,
                ctx,
                req,
                ctx.api_version,
                $crate::api::groups::Client { client_id: &ctx.client_id, host: ctx.client_host() },
            ));
            SyncGroup, 0, 5, SyncGroupResponse [error_code], |apis, ctx, req| Answer::from($crate::api::groups::sync_group(apis, ctx, req));
            Heartbeat, 0, 4, HeartbeatResponse [error_code], |apis, ctx, req| Answer::Now($crate::api::groups::heartbeat(apis, ctx, &req));
            LeaveGroup, 0, 5, LeaveGroupResponse [error_code, members.error_code], |apis, ctx, req| Answer::Now($crate::api::groups::leave_group(apis, ctx, &req, ctx.api_version));
            OffsetCommit, 0, 9, OffsetCommitResponse [topics.partitions.error_code], |apis, ctx, req| Answer::from($crate::api::offsets::offset_commit(apis, ctx, req));
            OffsetFetch, 0, 9, OffsetFetchResponse [error_code, topics.partitions.error_code, groups.error_code, groups.topics.partitions.error_code], |apis, ctx, req| Answer::Now($crate::api::offsets::offset_fetch(apis, ctx, &req, ctx.api_version));
            ListGroups, 0, 5, ListGroupsResponse [error_code], |apis, ctx, req| Answer::Now($crate::api::groups::list_groups(apis, ctx, &req));
            DescribeGroups, 0, 6, DescribeGroupsResponse [groups.error_code], |apis, ctx, req| Answer::Now($crate::api::groups::describe_groups(apis, ctx, &req, ctx.api_version));
            DeleteGroups, 0, 2, DeleteGroupsResponse [results.error_code], |apis, ctx, req| Answer::from($crate::api::groups::delete_groups(apis, ctx, &req));
            OffsetDelete, 0, 0, OffsetDeleteResponse [error_code, topics.partitions.error_code], |apis, ctx, req| Answer::from($crate::api::offsets::offset_delete(apis, ctx, &req));
            DescribeConfigs, 0, 4, DescribeConfigsResponse [results.error_code], |apis, ctx, req| Answer::Now($crate::api::configs::describe_configs(apis, ctx, &req, ctx.api_version));
            AlterConfigs, 0, 2, AlterConfigsResponse [responses.error_code], |apis, ctx, req| Answer::Now($crate::api::configs::alter_configs(apis, ctx, &req));
            IncrementalAlterConfigs, 0, 1, IncrementalAlterConfigsResponse [responses.error_code], |apis, ctx, req| Answer::Now($crate::api::configs::incremental_alter_configs(apis, ctx, &req));
            CreatePartitions, 0, 3, CreatePartitionsResponse [results.error_code], |apis, ctx, req| Answer::from($crate::api::create_partitions::handle_request(apis, ctx, req));
            ElectLeaders, 0, 2, ElectLeadersResponse [error_code, replica_election_results.partition_result.error_code], |apis, ctx, req| Answer::from($crate::api::elect_leaders::handle(apis, ctx, req));
            AlterPartitionReassignments, 0, 1, AlterPartitionReassignmentsResponse [error_code, responses.partitions.error_code], |apis, ctx, req| Answer::from($crate::api::partition_reassignments::alter_partition_reassignments(apis, ctx, req));
            ListPartitionReassignments, 0, 0, ListPartitionReassignmentsResponse [error_code], |apis, ctx, req| Answer::Now($crate::api::partition_reassignments::list_partition_reassignments(apis, ctx, &req));
            DescribeCluster, 0, 2, DescribeClusterResponse [error_code], |apis, ctx, req| Answer::Now($crate::api::describe_cluster::handle(apis, ctx, &req, ctx.api_version));
            DescribeQuorum, 0, 2, DescribeQuorumResponse [error_code, topics.partitions.error_code], |apis, _ctx, req| Answer::from($crate::api::describe_quorum::handle(apis, req));
            DescribeLogDirs, 0, 4, DescribeLogDirsResponse [error_code, results.error_code], |apis, ctx, req| Answer::Now($crate::api::describe_log_dirs::handle(apis, ctx, &req));
            OffsetForLeaderEpoch, 0, 4, OffsetForLeaderEpochResponse [topics.partitions.error_code], |apis, ctx, req| Answer::Now($crate::api::offset_for_leader_epoch::handle(apis, ctx, &req));
            DeleteRecords, 0, 2, DeleteRecordsResponse [topics.partitions.error_code], |apis, ctx, req| Answer::Now($crate::api::delete_records::handle(apis, ctx, &req));
            DescribeProducers, 0, 0, DescribeProducersResponse [topics.partitions.error_code], |apis, ctx, req| Answer::Now($crate::api::describe_producers::handle(apis, ctx, &req));
            InitProducerId, 0, 5, InitProducerIdResponse [error_code], |apis, ctx, req| Answer::from($crate::api::init_producer_id::handle(apis, ctx, &req));
            AddPartitionsToTxn, 0, 5, AddPartitionsToTxnResponse [error_code, results_by_topic_v3_and_below.results_by_partition.partition_error_code, results_by_transaction.topic_results.results_by_partition.partition_error_code], |apis, ctx, req| Answer::from($crate::api::txn::add_partitions_to_txn(apis, ctx, req));
            AddOffsetsToTxn, 0, 4, AddOffsetsToTxnResponse [error_code], |apis, ctx, req| Answer::from($crate::api::txn::add_offsets_to_txn(apis, ctx, req));
            EndTxn, 0, 4, EndTxnResponse [error_code], |apis, ctx, req| Answer::from($crate::api::txn::end_txn(apis, ctx, req));
            DescribeTransactions, 0, 0, DescribeTransactionsResponse [transaction_states.error_code], |apis, ctx, req| Answer::Now($crate::api::txn::describe_transactions(apis, ctx, &req));
            ListTransactions, 0, 2, ListTransactionsResponse [error_code], |apis, ctx, req| Answer::Now($crate::api::txn::list_transactions(apis, ctx, &req));
            WriteTxnMarkers, 1, 1, WriteTxnMarkersResponse [markers.topics.partitions.error_code], |apis, ctx, req| Answer::from($crate::api::write_txn_markers::handle(apis, ctx, req));
            TxnOffsetCommit, 0, 4, TxnOffsetCommitResponse [topics.partitions.error_code], |apis, ctx, req| Answer::from($crate::api::txn_offset_commit::handle(apis, ctx, req));
            DescribeTopicPartitions, 0, 0, DescribeTopicPartitionsResponse [topics.error_code, topics.partitions.error_code], |apis, ctx, req| Answer::Now($crate::api::describe_topic_partitions::handle(apis, ctx, &req));
        }
    };
}
pub(crate) use registrations;

macro_rules! supported {
    ($($key:ident, $min:literal, $max:literal, $response:ident [$($codes:tt)*], |$apis:ident, $ctx:ident, $req:ident| $answer:expr;)*) => {
        /// The APIs brook answers, with the version ranges it implements in full.
        pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[$((ApiKey::$key, $min, $max)),*];
    };
}
registrations!(supported);
