//! WriteTxnMarkers v1 as `kafka-transactions.sh abort` (KIP-664) sends it: a hanging transaction (a
//! transactional batch whose coordinator no longer knows the transaction) holds the last stable offset
//! back until an operator writes its ABORT marker with the epochs DescribeProducers shows; then the LSO
//! advances. The per-partition errors are Kafka's.

mod common;

use common::raw;
use common::*;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::describe_producers_response::ProducerState;
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn txn_id() -> TransactionalId {
    TransactionalId(StrBytes::from_static_str("hanging"))
}

/// The latest offset of partition 0: the high watermark (isolation 0) or the last stable offset (1).
async fn latest(bootstrap: &str, topic: &str, isolation_level: i8) -> i64 {
    let (bs, topic) = (bootstrap.to_string(), topic.to_string());
    blocking(move || raw::latest_offset(&bs, &topic, 0, isolation_level))
}

async fn describe_producers(bootstrap: &str, topic: &str) -> Vec<ProducerState> {
    let request = DescribeProducersRequest::default().with_topics(vec![
        TopicRequest::default()
            .with_name(name(topic))
            .with_partition_indexes(vec![0]),
    ]);
    let bs = bootstrap.to_string();
    let response: DescribeProducersResponse =
        blocking(move || raw::request(bs, ApiKey::DescribeProducers, 0, &request));
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "DescribeProducers");
    p.active_producers.clone()
}

/// Writes one marker per `(topic, partitions)` for the producer and answers each partition's error code,
/// in request order.
async fn write_markers(
    bootstrap: &str,
    pid: i64,
    epoch: i16,
    commit: bool,
    coordinator_epoch: i32,
    topics: &[(&str, &[i32])],
) -> Vec<(String, i32, i16)> {
    let request = WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default()
            .with_producer_id(ProducerId(pid))
            .with_producer_epoch(epoch)
            .with_transaction_result(commit)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(topic, partitions)| {
                        WritableTxnMarkerTopic::default()
                            .with_name(name(topic))
                            .with_partition_indexes(partitions.to_vec())
                    })
                    .collect(),
            ),
    ]);
    let bs = bootstrap.to_string();
    let response: WriteTxnMarkersResponse =
        blocking(move || raw::request(bs, ApiKey::WriteTxnMarkers, 1, &request));
    assert_eq!(response.markers.len(), 1);
    assert_eq!(response.markers[0].producer_id.0, pid);
    response.markers[0]
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (t.name.to_string(), p.partition_index, p.error_code))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_abort_closes_a_hanging_transaction_and_the_last_stable_offset_advances() {
    init_tracing();
    let broker = start_broker(&[]).await;
    let bootstrap = broker.bootstrap.clone();
    let topic = unique_topic("hanging");
    create_topic(&bootstrap, &topic, 1).await;

    // A transactional producer adds the partition and writes one batch, then nothing more.
    let bs = bootstrap.clone();
    let (pid, epoch) = blocking(move || raw::init_producer_id(&bs, Some("hanging")));
    let bs = bootstrap.clone();
    let added: AddPartitionsToTxnResponse = blocking(|| {
        raw::request(
            bs,
            ApiKey::AddPartitionsToTxn,
            3,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(txn_id())
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![
                    AddPartitionsToTxnTopic::default()
                        .with_name(name(&topic))
                        .with_partitions(vec![0]),
                ]),
        )
    });
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    let batch = raw::producer_batch(pid, epoch, 0, 1, true);
    let request = raw::produce_request(&topic, 0, batch).with_transactional_id(Some(txn_id()));
    let bs = bootstrap.clone();
    let produced: ProduceResponse =
        blocking(move || raw::request(bs, ApiKey::Produce, 9, &request));
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(
        (
            latest(&bootstrap, &topic, 0).await,
            latest(&bootstrap, &topic, 1).await
        ),
        (1, 0)
    );

    // The coordinator loses its state (its log is gone): the transaction now hangs.
    let (data_dir, tmp) = broker.shutdown().await;
    let mut removed = 0;
    for entry in std::fs::read_dir(&data_dir).unwrap() {
        let path = entry.unwrap().path();
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        if file_name.starts_with("__transaction_state-") {
            std::fs::remove_dir_all(&path).unwrap();
            removed += 1;
        }
    }
    assert!(removed > 0, "the coordinator had a log");
    let broker = start_broker_in(&data_dir, &[]).await;
    let bootstrap = broker.bootstrap.clone();
    let bs = bootstrap.clone();
    let described: DescribeTransactionsResponse = blocking(|| {
        raw::request(
            bs,
            ApiKey::DescribeTransactions,
            0,
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id()]),
        )
    });
    assert_eq!(
        described.transaction_states[0].error_code, 105,
        "TRANSACTIONAL_ID_NOT_FOUND: the coordinator forgot it"
    );
    assert_eq!(
        (
            latest(&bootstrap, &topic, 0).await,
            latest(&bootstrap, &topic, 1).await
        ),
        (1, 0),
        "the open transaction survives the restart and holds the LSO"
    );

    // What `kafka-transactions.sh find-hanging` shows, and what `abort` sends from it.
    let producers = describe_producers(&bootstrap, &topic).await;
    assert_eq!(producers.len(), 1);
    let hanging = &producers[0];
    assert_eq!(hanging.producer_id.0, pid);
    assert_eq!(hanging.current_txn_start_offset, 0);
    let (epoch, coordinator_epoch) = (
        i16::try_from(hanging.producer_epoch).unwrap(),
        hanging.coordinator_epoch,
    );

    // Errors first, each partition on its own: nothing is written for them.
    let answers = write_markers(
        &bootstrap,
        pid,
        epoch - 1,
        false,
        coordinator_epoch,
        &[(&topic, &[0, 7]), ("no-such-topic", &[0])],
    )
    .await;
    assert_eq!(
        answers,
        vec![
            (topic.clone(), 0, 47), // INVALID_PRODUCER_EPOCH
            (topic.clone(), 7, 3),  // UNKNOWN_TOPIC_OR_PARTITION
            ("no-such-topic".to_string(), 0, 3),
        ]
    );
    assert_eq!(latest(&bootstrap, &topic, 1).await, 0, "still hanging");

    // The admin abort: the marker lands at offset 1, and the LSO passes it.
    let answers = write_markers(
        &bootstrap,
        pid,
        epoch,
        false,
        coordinator_epoch,
        &[(&topic, &[0])],
    )
    .await;
    assert_eq!(answers, vec![(topic.clone(), 0, 0)]);
    assert_eq!(
        (
            latest(&bootstrap, &topic, 0).await,
            latest(&bootstrap, &topic, 1).await
        ),
        (2, 2),
        "the hanging transaction is closed"
    );
    let producers = describe_producers(&bootstrap, &topic).await;
    assert_eq!(
        producers[0].current_txn_start_offset, -1,
        "no open transaction"
    );

    // A later coordinator epoch is remembered; an older one is fenced.
    let newer = coordinator_epoch + 5;
    let answers = write_markers(&bootstrap, pid, epoch, false, newer, &[(&topic, &[0])]).await;
    assert_eq!(
        answers,
        vec![(topic.clone(), 0, 0)],
        "an empty transaction's marker"
    );
    let answers = write_markers(&bootstrap, pid, epoch, true, newer - 1, &[(&topic, &[0])]).await;
    assert_eq!(
        answers,
        vec![(topic.clone(), 0, 52)],
        "TRANSACTION_COORDINATOR_FENCED"
    );
    assert_eq!(
        describe_producers(&bootstrap, &topic).await[0].coordinator_epoch,
        newer
    );

    // read_committed sees no record of the aborted transaction.
    let consumer = consumer(&bootstrap, &[("isolation.level", "read_committed")]);
    assign(&consumer, &topic, &[(0, 0)]);
    assert_no_more(&consumer, std::time::Duration::from_secs(2)).await;
    drop(consumer);
    broker.shutdown().await;
    drop(tmp);
}

/// The offsets a transaction staged in `__consumer_offsets` are committed by a COMMIT marker written there
/// with WriteTxnMarkers (through the group coordinator, as Kafka does).
#[tokio::test(flavor = "multi_thread")]
async fn a_marker_for_consumer_offsets_goes_through_the_group_coordinator() {
    init_tracing();
    let broker = start_broker(&[]).await;
    let bootstrap = broker.bootstrap.clone();
    // No offsets topic on a fresh broker yet: its partitions are unknown.
    let answers = write_markers(&bootstrap, 1, 0, true, 0, &[("__consumer_offsets", &[0])]).await;
    assert_eq!(answers, vec![("__consumer_offsets".to_string(), 0, 3)]);

    // A transaction stages an offset of a group; its coordinator never ends it.
    let topic = unique_topic("offsets");
    create_topic(&bootstrap, &topic, 1).await;
    let id = || TransactionalId(StrBytes::from_static_str("offsets-txn"));
    let group = || GroupId(StrBytes::from_static_str("marker-group"));
    let bs = bootstrap.clone();
    let (pid, epoch) = blocking(move || raw::init_producer_id(&bs, Some("offsets-txn")));
    let bs = bootstrap.clone();
    let added: AddOffsetsToTxnResponse = blocking(|| {
        raw::request(
            bs,
            ApiKey::AddOffsetsToTxn,
            3,
            &AddOffsetsToTxnRequest::default()
                .with_transactional_id(id())
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_group_id(group()),
        )
    });
    assert_eq!(added.error_code, 0);
    let bs = bootstrap.clone();
    let tp = topic.clone();
    let staged: TxnOffsetCommitResponse = blocking(move || {
        raw::request(
            bs,
            ApiKey::TxnOffsetCommit,
            3,
            &TxnOffsetCommitRequest::default()
                .with_transactional_id(id())
                .with_group_id(group())
                .with_producer_id(ProducerId(pid))
                .with_producer_epoch(epoch)
                .with_generation_id(-1)
                .with_member_id(StrBytes::from_static_str(""))
                .with_topics(vec![
                    txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                        .with_name(name(&tp))
                        .with_partitions(vec![
                            txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                                .with_partition_index(0)
                                .with_committed_offset(42)
                                .with_committed_leader_epoch(-1),
                        ]),
                ]),
        )
    });
    assert_eq!(staged.topics[0].partitions[0].error_code, 0);
    let fetch_offset = || {
        let bs = bootstrap.clone();
        let tp = topic.clone();
        blocking(move || {
            let fetched: OffsetFetchResponse = raw::request(
                bs,
                ApiKey::OffsetFetch,
                7,
                &OffsetFetchRequest::default()
                    .with_group_id(group())
                    .with_require_stable(true)
                    .with_topics(Some(vec![
                        offset_fetch_request::OffsetFetchRequestTopic::default()
                            .with_name(name(&tp))
                            .with_partition_indexes(vec![0]),
                    ])),
            );
            let p = &fetched.topics[0].partitions[0];
            (p.error_code, p.committed_offset)
        })
    };
    assert_eq!(fetch_offset().0, 88, "UNSTABLE_OFFSET_COMMIT while staged");

    // The COMMIT marker, to every offsets partition: the one holding the group's staged offset commits it.
    let partitions = blocking({
        let bs = bootstrap.clone();
        move || topic_partition_count(&bs, "__consumer_offsets").unwrap() as i32
    });
    let all: Vec<i32> = (0..partitions).collect();
    let answers = write_markers(
        &bootstrap,
        pid,
        epoch,
        true,
        0,
        &[("__consumer_offsets", &all)],
    )
    .await;
    assert_eq!(answers.len(), all.len());
    assert!(
        answers.iter().all(|(_, _, code)| *code == 0),
        "every offsets partition takes the marker: {answers:?}"
    );
    assert_eq!(fetch_offset(), (0, 42), "committed by the marker");

    // A request naming more partitions than a broker takes at once writes nothing.
    let too_many = vec![0; 100_001];
    let answers = write_markers(&bootstrap, pid, epoch, false, 0, &[(&topic, &too_many)]).await;
    assert_eq!(answers.len(), too_many.len());
    assert!(
        answers.iter().all(|(_, _, code)| *code == 42),
        "INVALID_REQUEST"
    );
    assert_eq!(latest(&bootstrap, &topic, 0).await, 0, "no marker written");
    broker.shutdown().await;
}
