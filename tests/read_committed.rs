//! read_committed Fetch over the wire: the aborted transactions a partition's `.txnindex` files hold come
//! back in `aborted_transactions` under isolation_level 1 and never under 0, in the non-flexible and the
//! flexible encodings. The index is written into the data directory while the broker is stopped, as a
//! transaction coordinator's markers would have left it (clients cannot write markers).

mod common;

use bytes::Bytes;
use common::raw::{self, Conn};
use common::*;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, ProduceResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

/// Kafka's `AbortedTxn` on disk: version 0, producer id, first offset, last offset (the marker), LSO.
fn aborted_txn_entry(producer_id: i64, first: i64, last: i64, lso: i64) -> Vec<u8> {
    let mut out = 0i16.to_be_bytes().to_vec();
    for v in [producer_id, first, last, lso] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    out
}

fn fetch_request(
    topic: &str,
    offset: i64,
    partition_max_bytes: i32,
    isolation: i8,
) -> FetchRequest {
    FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(isolation)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(partition_max_bytes),
                ]),
        ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_fetch_returns_the_aborted_transactions_of_the_txn_index() {
    let b = start_broker(&[]).await;
    let topic = "rc";
    create_topic(&b.bootstrap, topic, 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    // Three batches of two records: offsets 0-1, 2-3, 4-5.
    for _ in 0..3 {
        let batch: Bytes = raw::indexed_batch(&["a", "b"], false);
        let resp: ProduceResponse = conn
            .call(ApiKey::Produce, 9, &raw::produce_request(topic, 0, batch))
            .await;
        assert_eq!(resp.responses[0].partition_responses[0].error_code, 0);
    }
    drop(conn);
    let (data_dir, tmp) = b.shutdown().await;
    // Producer 42's transaction spans offsets 2-3 and was aborted by a marker at 3; producer 43's began
    // at 4 and was aborted by a marker at 5.
    let index = [
        aborted_txn_entry(42, 2, 3, 2),
        aborted_txn_entry(43, 4, 5, 4),
    ]
    .concat();
    std::fs::write(
        data_dir.join("rc-0").join("00000000000000000000.txnindex"),
        index,
    )
    .unwrap();
    let b = start_broker_in(&data_dir, &[]).await;
    let mut conn = Conn::open(&b.bootstrap).await;

    for version in [4, 12] {
        let committed: FetchResponse = conn
            .call(ApiKey::Fetch, version, &fetch_request(topic, 0, 1 << 20, 1))
            .await;
        let p = &committed.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(
            (p.high_watermark, p.last_stable_offset),
            (6, 6),
            "v{version}"
        );
        let aborted: Vec<(i64, i64)> = p
            .aborted_transactions
            .as_ref()
            .unwrap_or_else(|| panic!("v{version}: read_committed carries a list"))
            .iter()
            .map(|t| (t.producer_id.0, t.first_offset))
            .collect();
        assert_eq!(aborted, vec![(42, 2), (43, 4)], "v{version}");
        assert!(!p.records.as_ref().unwrap().is_empty());

        // Only the first batch fits: no aborted transaction overlaps offsets 0-1.
        let first: FetchResponse = conn
            .call(ApiKey::Fetch, version, &fetch_request(topic, 0, 1, 1))
            .await;
        let p = &first.responses[0].partitions[0];
        assert_eq!(p.aborted_transactions.as_deref().map(<[_]>::len), Some(0));

        let uncommitted: FetchResponse = conn
            .call(ApiKey::Fetch, version, &fetch_request(topic, 0, 1 << 20, 0))
            .await;
        let p = &uncommitted.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        assert!(
            p.aborted_transactions.is_none(),
            "v{version}: read_uncommitted gets null, never a list to drop records by"
        );
        assert_eq!(p.last_stable_offset, 6);
        assert_eq!(
            p.records.as_ref().unwrap().len(),
            committed.responses[0].partitions[0]
                .records
                .as_ref()
                .unwrap()
                .len(),
            "the same data either way"
        );
    }
    drop(conn);
    b.shutdown().await;
    drop(tmp);
}
