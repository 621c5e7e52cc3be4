//! What clients see once the broker's metadata image holds several brokers and partitions led elsewhere.
//! The image is changed by hand, as the cluster's metadata quorum will change it: a delta adds brokers
//! 2, 3 (alive), 4 (fenced) and 5 (alive, without the clients' listener) and moves leaderships; the raw
//! protocol shows each answer field by field.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use brook::api::Apis;
use brook::cluster::{
    BrokerEndpoint, BrokerRegistration, MetadataDelta, OFFSETS_TOPIC, PartitionRegistration,
    TopicDelta, TopicImage,
};
use common::{blocking, raw, start_broker};
use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::{
    OffsetFetchRequestGroup, OffsetFetchRequestTopics,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeClusterRequest, DescribeClusterResponse, FetchRequest, FetchResponse,
    FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest, HeartbeatResponse,
    MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

/// The partitions of `__consumer_offsets` in these tests.
const OFFSETS_PARTITIONS: i32 = 3;

fn broker(id: i32, fenced: bool, listener: &str, port: u16) -> Arc<BrokerRegistration> {
    Arc::new(BrokerRegistration {
        id,
        epoch: 100 + i64::from(id),
        endpoints: vec![BrokerEndpoint {
            listener: listener.into(),
            security_protocol: "PLAINTEXT".into(),
            host: "127.0.0.1".into(),
            port,
        }],
        rack: Some(format!("rack-{id}")),
        fenced,
        ..Default::default()
    })
}

fn registration(leader: i32, epoch: i32, replicas: &[i32], isr: &[i32]) -> PartitionRegistration {
    PartitionRegistration {
        replicas: replicas.to_vec(),
        isr: isr.to_vec(),
        leader,
        leader_epoch: epoch,
        partition_epoch: epoch,
        ..Default::default()
    }
}

/// `before` with the given partitions' registrations replaced.
fn changed(before: &Arc<TopicImage>, partitions: &[(i32, PartitionRegistration)]) -> TopicDelta {
    let mut after = (**before).clone();
    for (index, r) in partitions {
        after.partitions[*index as usize] = r.clone();
    }
    TopicDelta::Changed {
        before: before.clone(),
        after: Arc::new(after),
    }
}

fn apis(broker: &common::TestBroker) -> Arc<Apis> {
    broker.broker.dispatcher().apis().clone()
}

/// Publishes a delta that changes `topic`'s partitions, as the metadata quorum would.
fn move_partitions(apis: &Apis, topic: &str, partitions: &[(i32, PartitionRegistration)]) {
    let before = apis.metadata.topic(topic).expect("topic exists");
    apis.metadata.publish_delta(&MetadataDelta {
        topics: vec![changed(&before, partitions)],
        ..Default::default()
    });
}

/// A group id whose `__consumer_offsets` partition is `partition`.
fn group_on(partition: i32, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|g| brook::coordinator::partition_for(g, OFFSETS_PARTITIONS) == partition)
        .expect("some group id lands on every partition")
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn commit(addr: &str, group: &str, offset: i64) -> i16 {
    let response: OffsetCommitResponse = raw::request(
        addr,
        ApiKey::OffsetCommit,
        8,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(s(group)))
            .with_generation_id_or_member_epoch(-1)
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(s("orders")))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset),
                    ]),
            ]),
    );
    response.topics[0].partitions[0].error_code
}

/// OffsetFetch v8 of orders-0: the group's error, and the committed offset.
fn committed(addr: &str, group: &str) -> (i16, i64) {
    let response: OffsetFetchResponse = raw::request(
        addr,
        ApiKey::OffsetFetch,
        8,
        &OffsetFetchRequest::default().with_groups(vec![
            OffsetFetchRequestGroup::default()
                .with_group_id(GroupId(s(group)))
                .with_topics(Some(vec![
                    OffsetFetchRequestTopics::default()
                        .with_name(TopicName(s("orders")))
                        .with_partition_indexes(vec![0]),
                ])),
        ]),
    );
    let g = &response.groups[0];
    let offset = g
        .topics
        .first()
        .map_or(-1, |t| t.partitions[0].committed_offset);
    (g.error_code, offset)
}

fn find_coordinators(addr: &str, keys: &[&str]) -> FindCoordinatorResponse {
    raw::request(
        addr,
        ApiKey::FindCoordinator,
        4,
        &FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(keys.iter().map(|k| s(k)).collect()),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_three_broker_image_is_answered_as_kafka_answers_it() {
    let tb = start_broker(&[
        ("offsets.topic.num.partitions", "3"),
        ("auto.create.topics.enable", "false"),
    ])
    .await;
    let addr = tb.bootstrap.clone();
    let port = tb.broker.local_addr().port();
    let apis = apis(&tb);
    let orders = apis.create_topic("orders", 4, BTreeMap::new()).unwrap();
    let moved = apis.create_topic("moved", 1, BTreeMap::new()).unwrap();
    assert!(tb.data_dir.join("moved-0").exists());

    // The first commit creates __consumer_offsets, every partition led here.
    let ac = addr.clone();
    blocking(move || assert_eq!(commit(&ac, "g", 7), 0));
    let offsets = apis.metadata.topic(OFFSETS_TOPIC).unwrap();
    assert_eq!(offsets.partition_count(), OFFSETS_PARTITIONS);

    // The cluster: brokers 2 and 3 alive, 4 fenced, 5 alive with another listener only.
    apis.metadata.publish_delta(&MetadataDelta {
        brokers: vec![
            broker(2, false, "PLAINTEXT", 19092),
            broker(3, false, "PLAINTEXT", 19093),
            broker(4, true, "PLAINTEXT", 19094),
            broker(5, false, "REPLICATION", 19195),
        ],
        topics: vec![
            changed(
                &orders,
                &[
                    (0, registration(1, 2, &[1, 2, 3], &[1, 2])),
                    (1, registration(2, 1, &[2, 1, 4], &[2, 1])),
                    (2, registration(4, 1, &[4, 1], &[4])),
                    (3, registration(5, 1, &[5, 1], &[5, 1])),
                ],
            ),
            changed(&moved, &[(0, registration(2, 1, &[2, 3], &[2, 3]))]),
            changed(&offsets, &[(1, registration(2, 1, &[2, 1, 3], &[2, 1, 3]))]),
        ],
        ..Default::default()
    });
    assert!(
        !tb.data_dir.join("moved-0").exists(),
        "a partition reassigned away has its log deleted"
    );
    assert!(
        tb.data_dir.join("orders-1").exists(),
        "a follower keeps its log"
    );

    let ac = addr.clone();
    let (metadata, metadata_v5, metadata_v0): (
        MetadataResponse,
        MetadataResponse,
        MetadataResponse,
    ) = blocking(move || {
        let all = MetadataRequest::default().with_topics(None);
        (
            raw::request(&ac, ApiKey::Metadata, 12, &all),
            raw::request(&ac, ApiKey::Metadata, 5, &all),
            raw::request(
                &ac,
                ApiKey::Metadata,
                0,
                &MetadataRequest::default().with_topics(Some(Vec::new())),
            ),
        )
    });
    let brokers: Vec<(i32, i32, Option<String>)> = metadata
        .brokers
        .iter()
        .map(|b| (b.node_id.0, b.port, b.rack.as_ref().map(|r| r.to_string())))
        .collect();
    assert_eq!(
        brokers,
        vec![
            (1, i32::from(port), None),
            (2, 19092, Some("rack-2".into())),
            (3, 19093, Some("rack-3".into())),
        ],
        "unfenced brokers with the request's listener"
    );
    assert_eq!(metadata.controller_id.0, 1, "the lowest live broker id");
    let partitions = |response: &MetadataResponse| {
        response
            .topics
            .iter()
            .find(|t| t.name.as_ref().is_some_and(|n| n.0.as_str() == "orders"))
            .expect("orders listed")
            .partitions
            .clone()
    };
    let ids = |v: &[BrokerId]| v.iter().map(|b| b.0).collect::<Vec<_>>();
    let p = partitions(&metadata);
    let fields = |i: usize| {
        (
            p[i].error_code,
            p[i].leader_id.0,
            p[i].leader_epoch,
            ids(&p[i].replica_nodes),
            ids(&p[i].isr_nodes),
            ids(&p[i].offline_replicas),
        )
    };
    assert_eq!(fields(0), (0, 1, 2, vec![1, 2, 3], vec![1, 2], vec![]));
    assert_eq!(fields(1), (0, 2, 1, vec![2, 1, 4], vec![2, 1], vec![4]));
    assert_eq!(
        fields(2),
        (
            ResponseError::LeaderNotAvailable.code(),
            -1,
            1,
            vec![4, 1],
            vec![4],
            vec![4]
        ),
        "a fenced leader is no leader"
    );
    assert_eq!(
        fields(3),
        (
            ResponseError::ListenerNotFound.code(),
            -1,
            1,
            vec![5, 1],
            vec![5, 1],
            vec![5]
        ),
        "a live leader without the request's listener"
    );
    assert_eq!(
        partitions(&metadata_v5)[3].error_code,
        ResponseError::LeaderNotAvailable.code(),
        "LISTENER_NOT_FOUND only from v6"
    );
    let v0 = partitions(&metadata_v0);
    assert_eq!(
        (v0[1].error_code, ids(&v0[1].replica_nodes)),
        (ResponseError::ReplicaNotAvailable.code(), vec![2, 1]),
        "v0 lists only the replicas a client can reach"
    );

    // DescribeCluster v2: fenced brokers only when asked for.
    let ac = addr.clone();
    let (live, all, controllers): (
        DescribeClusterResponse,
        DescribeClusterResponse,
        DescribeClusterResponse,
    ) = blocking(move || {
        let request = DescribeClusterRequest::default().with_endpoint_type(1);
        (
            raw::request(&ac, ApiKey::DescribeCluster, 2, &request),
            raw::request(
                &ac,
                ApiKey::DescribeCluster,
                2,
                &request.clone().with_include_fenced_brokers(true),
            ),
            raw::request(
                &ac,
                ApiKey::DescribeCluster,
                2,
                &DescribeClusterRequest::default().with_endpoint_type(2),
            ),
        )
    });
    let described = |r: &DescribeClusterResponse| {
        r.brokers
            .iter()
            .map(|b| (b.broker_id.0, b.is_fenced))
            .collect::<Vec<_>>()
    };
    assert_eq!(described(&live), vec![(1, false), (2, false), (3, false)]);
    assert_eq!(
        described(&all),
        vec![(1, false), (2, false), (3, false), (4, true)]
    );
    assert_eq!(live.controller_id.0, 1);
    assert_eq!(
        live.brokers[1].rack.as_ref().map(|r| r.as_str()),
        Some("rack-2")
    );
    assert_eq!(
        controllers.error_code,
        ResponseError::MismatchedEndpointType.code()
    );

    // Produce to a partition broker 2 leads: NOT_LEADER_OR_FOLLOWER, with the leader named from v10.
    let ac = addr.clone();
    let (v9, v10): (ProduceResponse, ProduceResponse) = blocking(move || {
        let request = raw::produce_request("orders", 1, raw::indexed_batch(&["x"], false));
        (
            raw::request(&ac, ApiKey::Produce, 9, &request),
            raw::request(&ac, ApiKey::Produce, 10, &request),
        )
    });
    let answer = &v9.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, ResponseError::NotLeaderOrFollower.code());
    assert_eq!(answer.current_leader.leader_id.0, -1, "no hint before v10");
    assert!(v9.node_endpoints.is_empty());
    let answer = &v10.responses[0].partition_responses[0];
    assert_eq!(answer.error_code, ResponseError::NotLeaderOrFollower.code());
    assert_eq!(
        (
            answer.current_leader.leader_id.0,
            answer.current_leader.leader_epoch
        ),
        (2, 1)
    );
    let endpoints: Vec<(i32, String, i32)> = v10
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.host.to_string(), e.port))
        .collect();
    assert_eq!(endpoints, vec![(2, "127.0.0.1".to_string(), 19092)]);

    // Fetch v16 by topic id: broker 2's partition (this broker follows it: a v11+ consumer may read a
    // follower, KIP-392, so a stale epoch is what it refuses), and this broker's at a fenced epoch, both
    // with hints.
    let topic_id = orders.id;
    let fetch = move |version: i16| -> FetchResponse {
        let request = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(s("orders")))
                    .with_topic_id(topic_id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(1)
                            .with_current_leader_epoch(0)
                            .with_partition_max_bytes(1 << 20),
                        FetchPartition::default()
                            .with_partition(0)
                            .with_current_leader_epoch(1)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ]);
        raw::request(&addr, ApiKey::Fetch, version, &request)
    };
    let (v15, v16) = blocking(|| (fetch(15), fetch(16)));
    let hint = |r: &FetchResponse, i: usize| {
        let p = &r.responses[0].partitions[i];
        (
            p.error_code,
            p.current_leader.leader_id.0,
            p.current_leader.leader_epoch,
        )
    };
    assert_eq!(
        hint(&v16, 0),
        (ResponseError::FencedLeaderEpoch.code(), 2, 1)
    );
    assert_eq!(
        hint(&v16, 1),
        (ResponseError::FencedLeaderEpoch.code(), 1, 2)
    );
    let mut endpoints: Vec<(i32, i32)> = v16
        .node_endpoints
        .iter()
        .map(|e| (e.node_id.0, e.port))
        .collect();
    endpoints.sort_unstable();
    assert_eq!(endpoints, vec![(1, i32::from(port)), (2, 19092)]);
    assert_eq!(
        hint(&v15, 0),
        (ResponseError::FencedLeaderEpoch.code(), -1, -1),
        "no hint before v16"
    );
    assert!(v15.node_endpoints.is_empty());
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn coordinators_follow_the_leaders_of_the_internal_partitions() {
    let tb = start_broker(&[("offsets.topic.num.partitions", "3")]).await;
    let addr = tb.bootstrap.clone();
    let port = tb.broker.local_addr().port();
    let apis = apis(&tb);
    apis.create_topic("orders", 1, BTreeMap::new()).unwrap();
    let local_group = group_on(0, "local");
    let remote_group = group_on(1, "remote");
    let moving_group = group_on(2, "moving");
    let ac = addr.clone();
    let mg = moving_group.clone();
    blocking(move || assert_eq!(commit(&ac, &mg, 42), 0));
    apis.metadata.publish_delta(&MetadataDelta {
        brokers: vec![
            broker(2, false, "PLAINTEXT", 19092),
            broker(3, true, "PLAINTEXT", 19093),
        ],
        ..Default::default()
    });
    move_partitions(
        &apis,
        OFFSETS_TOPIC,
        &[
            (1, registration(2, 1, &[2, 1], &[2, 1])),
            (2, registration(3, 1, &[3, 1], &[3, 1])),
        ],
    );

    let ac = addr.clone();
    let (lg, rg, mg) = (
        local_group.clone(),
        remote_group.clone(),
        moving_group.clone(),
    );
    let found = blocking(move || find_coordinators(&ac, &[&lg, &rg, &mg]));
    let coordinators: Vec<(i16, i32, i32)> = found
        .coordinators
        .iter()
        .map(|c| (c.error_code, c.node_id.0, c.port))
        .collect();
    assert_eq!(
        coordinators,
        vec![
            (0, 1, i32::from(port)),
            (0, 2, 19092),
            (ResponseError::CoordinatorNotAvailable.code(), -1, -1),
        ],
        "this broker, broker 2, and a partition whose leader is fenced"
    );
    let ac = addr.clone();
    let rg = remote_group.clone();
    let v3: FindCoordinatorResponse = blocking(move || {
        raw::request(
            &ac,
            ApiKey::FindCoordinator,
            3,
            &FindCoordinatorRequest::default().with_key(s(&rg)),
        )
    });
    assert_eq!((v3.error_code, v3.node_id.0, v3.port), (0, 2, 19092));

    // The group APIs for groups coordinated elsewhere.
    let ac = addr.clone();
    let (rg, mg) = (remote_group.clone(), moving_group.clone());
    let (fetched, heartbeat, moving) = blocking(move || {
        let heartbeat: HeartbeatResponse = raw::request(
            &ac,
            ApiKey::Heartbeat,
            4,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(s(&rg)))
                .with_generation_id(1)
                .with_member_id(s("m")),
        );
        (committed(&ac, &rg), heartbeat, committed(&ac, &mg))
    });
    assert_eq!(fetched.0, ResponseError::NotCoordinator.code());
    assert_eq!(heartbeat.error_code, ResponseError::NotCoordinator.code());
    assert_eq!(moving.0, ResponseError::NotCoordinator.code());
    let ac = addr.clone();
    let rg = remote_group.clone();
    assert_eq!(
        blocking(move || commit(&ac, &rg, 1)),
        ResponseError::NotCoordinator.code()
    );
    assert_eq!(apis.groups.store().active_partitions(), vec![0]);

    // Leadership of partition 2 comes to this broker at a new epoch: its shard loads, and the offset
    // committed before it moved away is served again.
    move_partitions(
        &apis,
        OFFSETS_TOPIC,
        &[(2, registration(1, 2, &[3, 1], &[1]))],
    );
    assert_eq!(apis.groups.store().active_partitions(), vec![0, 2]);
    let ac = addr.clone();
    let mg = moving_group.clone();
    assert_eq!(blocking(move || committed(&ac, &mg)), (0, 42));
    let ac = addr.clone();
    let mg = moving_group.clone();
    let found = blocking(move || find_coordinators(&ac, &[&mg]));
    assert_eq!(found.coordinators[0].node_id.0, 1);
    let ac = addr.clone();
    assert_eq!(blocking(move || commit(&ac, &moving_group, 43)), 0);
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn partition_apis_refuse_partitions_led_elsewhere() {
    use kafka_protocol::messages::delete_records_request::{
        DeleteRecordsPartition, DeleteRecordsTopic,
    };
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::offset_for_leader_epoch_request::{
        OffsetForLeaderPartition, OffsetForLeaderTopic,
    };
    use kafka_protocol::messages::write_txn_markers_request::{
        WritableTxnMarker, WritableTxnMarkerTopic,
    };
    use kafka_protocol::messages::{
        DeleteRecordsRequest, DeleteRecordsResponse, DescribeProducersRequest,
        DescribeProducersResponse, ListOffsetsRequest, ListOffsetsResponse,
        OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse, ProducerId,
        WriteTxnMarkersRequest, WriteTxnMarkersResponse,
    };

    let tb = start_broker(&[]).await;
    let addr = tb.bootstrap.clone();
    let apis = apis(&tb);
    apis.create_topic("orders", 2, BTreeMap::new()).unwrap();
    apis.metadata.publish_delta(&MetadataDelta {
        brokers: vec![broker(2, false, "PLAINTEXT", 19092)],
        ..Default::default()
    });
    move_partitions(
        &apis,
        "orders",
        &[(1, registration(2, 1, &[2, 1], &[2, 1]))],
    );
    let name = || TopicName(s("orders"));
    // Partition 0 is led here (answered 0), partition 1 by broker 2.
    let codes = blocking(move || {
        let list: ListOffsetsResponse = raw::request(
            &addr,
            ApiKey::ListOffsets,
            7,
            &ListOffsetsRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    ListOffsetsTopic::default()
                        .with_name(name())
                        .with_partitions(
                            (0..2)
                                .map(|p| {
                                    ListOffsetsPartition::default()
                                        .with_partition_index(p)
                                        .with_current_leader_epoch(-1)
                                        .with_timestamp(-1)
                                })
                                .collect(),
                        ),
                ]),
        );
        let epochs: OffsetForLeaderEpochResponse = raw::request(
            &addr,
            ApiKey::OffsetForLeaderEpoch,
            4,
            &OffsetForLeaderEpochRequest::default()
                .with_replica_id(BrokerId(-1))
                .with_topics(vec![
                    OffsetForLeaderTopic::default()
                        .with_topic(name())
                        .with_partitions(
                            (0..2)
                                .map(|p| {
                                    OffsetForLeaderPartition::default()
                                        .with_partition(p)
                                        .with_current_leader_epoch(-1)
                                        .with_leader_epoch(0)
                                })
                                .collect(),
                        ),
                ]),
        );
        let deleted: DeleteRecordsResponse = raw::request(
            &addr,
            ApiKey::DeleteRecords,
            2,
            &DeleteRecordsRequest::default()
                .with_timeout_ms(5_000)
                .with_topics(vec![
                    DeleteRecordsTopic::default()
                        .with_name(name())
                        .with_partitions(
                            (0..2)
                                .map(|p| {
                                    DeleteRecordsPartition::default()
                                        .with_partition_index(p)
                                        .with_offset(0)
                                })
                                .collect(),
                        ),
                ]),
        );
        let producers: DescribeProducersResponse = raw::request(
            &addr,
            ApiKey::DescribeProducers,
            0,
            &DescribeProducersRequest::default().with_topics(vec![
                TopicRequest::default()
                    .with_name(name())
                    .with_partition_indexes(vec![0, 1]),
            ]),
        );
        let markers: WriteTxnMarkersResponse = raw::request(
            &addr,
            ApiKey::WriteTxnMarkers,
            1,
            &WriteTxnMarkersRequest::default().with_markers(vec![
                WritableTxnMarker::default()
                    .with_producer_id(ProducerId(77))
                    .with_producer_epoch(0)
                    .with_transaction_result(false)
                    .with_coordinator_epoch(0)
                    .with_topics(vec![
                        WritableTxnMarkerTopic::default()
                            .with_name(name())
                            .with_partition_indexes(vec![1]),
                    ]),
            ]),
        );
        [
            list.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect::<Vec<_>>(),
            epochs.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect(),
            deleted.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect(),
            producers.topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect(),
            markers.markers[0].topics[0]
                .partitions
                .iter()
                .map(|p| p.error_code)
                .collect(),
        ]
    });
    let not_leader = ResponseError::NotLeaderOrFollower.code();
    assert_eq!(
        codes,
        [
            vec![0, not_leader],
            vec![0, not_leader],
            vec![0, not_leader],
            vec![0, not_leader],
            vec![not_leader],
        ],
        "ListOffsets, OffsetForLeaderEpoch, DeleteRecords, DescribeProducers, WriteTxnMarkers"
    );
    tb.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transactional_id_led_elsewhere_is_not_coordinated_here() {
    use kafka_protocol::messages::{
        InitProducerIdRequest, InitProducerIdResponse, ProducerId, TransactionalId,
    };

    let tb = start_broker(&[("transaction.state.log.num.partitions", "2")]).await;
    let addr = tb.bootstrap.clone();
    let apis = apis(&tb);
    // The first transactional id creates __transaction_state, both partitions led here.
    let here = (0..)
        .map(|i| format!("here-{i}"))
        .find(|id| brook::coordinator::partition_for(id, 2) == 0)
        .unwrap();
    let there = (0..)
        .map(|i| format!("there-{i}"))
        .find(|id| brook::coordinator::partition_for(id, 2) == 1)
        .unwrap();
    let ac = addr.clone();
    let h = here.clone();
    blocking(move || raw::init_producer_id(&ac, Some(&h)));
    apis.metadata.publish_delta(&MetadataDelta {
        brokers: vec![broker(2, false, "PLAINTEXT", 19092)],
        ..Default::default()
    });
    move_partitions(
        &apis,
        brook::cluster::TRANSACTION_STATE_TOPIC,
        &[(1, registration(2, 1, &[2, 1], &[2, 1]))],
    );
    let (found, init_there, init_here) = blocking(move || {
        let found: FindCoordinatorResponse = raw::request(
            &addr,
            ApiKey::FindCoordinator,
            4,
            &FindCoordinatorRequest::default()
                .with_key_type(1)
                .with_coordinator_keys(vec![s(&here), s(&there)]),
        );
        let init = |id: &str| -> InitProducerIdResponse {
            raw::request(
                &addr,
                ApiKey::InitProducerId,
                4,
                &InitProducerIdRequest::default()
                    .with_transactional_id(Some(TransactionalId(s(id))))
                    .with_transaction_timeout_ms(60_000)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            )
        };
        (found, init(&there), init(&here))
    });
    let coordinators: Vec<(i16, i32)> = found
        .coordinators
        .iter()
        .map(|c| (c.error_code, c.node_id.0))
        .collect();
    assert_eq!(coordinators, vec![(0, 1), (0, 2)]);
    assert_eq!(init_there.error_code, ResponseError::NotCoordinator.code());
    assert_eq!(init_here.error_code, 0);
    tb.shutdown().await;
}

/// Stands in for the metadata quorum: creates topics with broker 2 leading every partition, as a
/// controller placing them elsewhere would, and publishes them to the broker's image.
struct ControllerStandIn(std::sync::Weak<brook::cluster::MetadataStore>);

impl brook::cluster::metadata_store::MetadataWriter for ControllerStandIn {
    fn write(
        &self,
        change: brook::cluster::metadata_store::MetadataChange,
    ) -> Result<(), brook::cluster::MetadataError> {
        let brook::cluster::metadata_store::MetadataChange::CreateTopic {
            name,
            partitions,
            configs,
            ..
        } = change
        else {
            return Err(brook::cluster::MetadataError::Corrupt(
                "the stand-in only creates topics".into(),
            ));
        };
        let store = self.0.upgrade().expect("broker running");
        let topic = TopicImage {
            name,
            id: uuid::Uuid::new_v4(),
            partitions: (0..partitions)
                .map(|_| registration(2, 0, &[2, 1], &[2, 1]))
                .collect(),
            configs,
        };
        store.publish_delta(&MetadataDelta {
            topics: vec![TopicDelta::Created(Arc::new(topic))],
            ..Default::default()
        });
        Ok(())
    }

    fn allocate_producer_ids(&self) -> Result<(i64, i64), brook::cluster::MetadataError> {
        Ok((1_000, 1_000))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn in_a_cluster_the_first_find_coordinator_creates_the_internal_topic() {
    let tb = start_broker(&[("offsets.topic.num.partitions", "3")]).await;
    let addr = tb.bootstrap.clone();
    let apis = apis(&tb);
    apis.metadata.publish_delta(&MetadataDelta {
        brokers: vec![broker(2, false, "PLAINTEXT", 19092)],
        ..Default::default()
    });
    apis.metadata
        .set_writer(Arc::new(ControllerStandIn(Arc::downgrade(&apis.metadata))));
    let ac = addr.clone();
    let (first, second) = blocking(move || {
        (
            find_coordinators(&ac, &["g"]),
            find_coordinators(&ac, &["g"]),
        )
    });
    assert_eq!(
        first.coordinators[0].error_code,
        ResponseError::CoordinatorNotAvailable.code(),
        "created, not yet answered"
    );
    let offsets = apis.metadata.topic(OFFSETS_TOPIC).expect("created");
    assert_eq!(offsets.partition_count(), 3);
    assert_eq!(
        offsets.configs.get("cleanup.policy").map(String::as_str),
        Some("compact")
    );
    assert_eq!(
        (
            second.coordinators[0].error_code,
            second.coordinators[0].node_id.0
        ),
        (0, 2)
    );
    assert_eq!(
        blocking(move || committed(&addr, "g")).0,
        ResponseError::NotCoordinator.code()
    );
    tb.shutdown().await;
}
