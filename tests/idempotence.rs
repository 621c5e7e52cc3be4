//! The idempotent producer (KIP-98, KIP-360) end to end: producer ids that are never reused, retries that
//! land once at their original offset, gaps and stale epochs refused, unknown producers accepted, and the
//! producer state surviving a clean restart and a crash. Raw requests where a property needs exact batches;
//! rdkafka's idempotent producer for what users run.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::raw;
use common::*;
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceResponse,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::Message;
use rdkafka::producer::FutureRecord;

const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_REQUEST: i16 = 42;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;

fn init_producer_id(addr: &str) -> (i64, i16) {
    raw::init_producer_id(addr, None)
}

fn pid_batch(pid: i64, epoch: i16, base_seq: i32, n: i32) -> Bytes {
    raw::producer_batch(pid, epoch, base_seq, n, false)
}

/// Produces one batch to partition 0; returns (error code, base offset).
fn produce(addr: &str, topic: &str, batch: Bytes) -> (i16, i64) {
    let response: ProduceResponse = raw::request(
        addr,
        ApiKey::Produce,
        9,
        &raw::produce_request(topic, 0, batch),
    );
    let p = &response.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn produce_async(addr: &str, topic: &str, batch: Bytes) -> (i16, i64) {
    let (addr, topic) = (addr.to_string(), topic.to_string());
    tokio::task::spawn_blocking(move || produce(&addr, &topic, batch))
        .await
        .expect("produce task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_ids_are_never_reused_across_restarts_and_crashes() {
    let b = start_broker(&[]).await;
    let addr = b.bootstrap.clone();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let a = addr.clone();
        seen.push(blocking(move || init_producer_id(&a)));
    }
    assert!(seen.iter().all(|(_, epoch)| *epoch == 0));

    let a = addr.clone();
    let empty: InitProducerIdResponse = blocking(move || {
        raw::request(
            &a,
            ApiKey::InitProducerId,
            4,
            &InitProducerIdRequest::default()
                .with_transactional_id(Some(kafka_protocol::messages::TransactionalId(
                    StrBytes::from_static_str(""),
                )))
                .with_transaction_timeout_ms(60_000),
        )
    });
    assert_eq!(empty.error_code, INVALID_REQUEST, "empty transactional id");

    let (dir, tmp) = b.shutdown().await;
    let b = start_broker_in(&dir, &[]).await;
    let a = b.bootstrap.clone();
    seen.push(blocking(move || init_producer_id(&a)));
    b.crash().await;
    let b = start_broker_in(&dir, &[]).await;
    let a = b.bootstrap.clone();
    seen.push(blocking(move || init_producer_id(&a)));

    let ids: Vec<i64> = seen.iter().map(|(id, _)| *id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), ids.len(), "every id is new: {ids:?}");
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids grow, also across restarts: {ids:?}"
    );
    b.shutdown().await;
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_lands_once_at_its_original_offset() {
    let b = start_broker(&[]).await;
    let topic = unique_topic("dedup");
    create_topic(&b.bootstrap, &topic, 1).await;
    let addr = b.bootstrap.clone();
    let (pid, epoch) = blocking({
        let a = addr.clone();
        move || init_producer_id(&a)
    });

    // Six batches of 2: the broker keeps the last five per producer.
    let mut offsets = Vec::new();
    for i in 0..6 {
        offsets.push(produce_async(&addr, &topic, pid_batch(pid, epoch, i * 2, 2)).await);
    }
    assert_eq!(
        offsets,
        (0..6).map(|i| (0, i64::from(i) * 2)).collect::<Vec<_>>()
    );
    // Retries of the last five answer their original offsets and append nothing.
    for i in 1..6 {
        let retry = produce_async(&addr, &topic, pid_batch(pid, epoch, i * 2, 2)).await;
        assert_eq!(retry, (0, i64::from(i) * 2), "retry of batch {i}");
    }
    assert_eq!(
        watermarks(&addr, &topic, 0),
        (0, 12),
        "nothing appended twice"
    );
    // The sixth-oldest is out of the window: Kafka answers OUT_OF_ORDER_SEQUENCE_NUMBER.
    let (code, _) = produce_async(&addr, &topic, pid_batch(pid, epoch, 0, 2)).await;
    assert_eq!(code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaps_and_stale_epochs_are_refused_and_unknown_producers_accepted() {
    let b = start_broker(&[]).await;
    let topic = unique_topic("seq");
    create_topic(&b.bootstrap, &topic, 1).await;
    let addr = b.bootstrap.clone();

    // An unknown producer (no state here, e.g. expired) is accepted at any sequence (KIP-360).
    let pid = 777_000;
    assert_eq!(
        produce_async(&addr, &topic, pid_batch(pid, 3, 41, 1)).await,
        (0, 0)
    );
    // A gap is refused and nothing is written.
    let (code, _) = produce_async(&addr, &topic, pid_batch(pid, 3, 43, 1)).await;
    assert_eq!(code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    assert_eq!(watermarks(&addr, &topic, 0), (0, 1));
    // The next sequence is fine.
    assert_eq!(
        produce_async(&addr, &topic, pid_batch(pid, 3, 42, 1)).await,
        (0, 1)
    );
    // An older epoch is fenced.
    let (code, _) = produce_async(&addr, &topic, pid_batch(pid, 2, 43, 1)).await;
    assert_eq!(code, INVALID_PRODUCER_EPOCH);
    // A newer epoch must start at sequence 0 ...
    let (code, _) = produce_async(&addr, &topic, pid_batch(pid, 4, 43, 1)).await;
    assert_eq!(code, OUT_OF_ORDER_SEQUENCE_NUMBER);
    // ... and does.
    assert_eq!(
        produce_async(&addr, &topic, pid_batch(pid, 4, 0, 1)).await,
        (0, 2)
    );
    // Sequences wrap from i32::MAX to 0.
    let wrap = 888_000;
    assert_eq!(
        produce_async(&addr, &topic, pid_batch(wrap, 0, i32::MAX - 1, 2)).await,
        (0, 3)
    );
    assert_eq!(
        produce_async(&addr, &topic, pid_batch(wrap, 0, 0, 1)).await,
        (0, 5)
    );
    assert_eq!(watermarks(&addr, &topic, 0), (0, 6));
    b.shutdown().await;
}

/// The dedup window and the sequence survive a clean restart and a crash (from the snapshot plus the log).
async fn producer_state_survives(crash: bool) {
    let b = start_broker(&[]).await;
    let topic = unique_topic(if crash {
        "pstate-crash"
    } else {
        "pstate-clean"
    });
    create_topic(&b.bootstrap, &topic, 1).await;
    let addr = b.bootstrap.clone();
    let (pid, epoch) = blocking({
        let a = addr.clone();
        move || init_producer_id(&a)
    });
    assert_eq!(
        produce_async(&addr, &topic, pid_batch(pid, epoch, 0, 3)).await,
        (0, 0)
    );
    assert_eq!(
        produce_async(&addr, &topic, pid_batch(pid, epoch, 3, 2)).await,
        (0, 3)
    );

    let (dir, tmp) = if crash {
        b.crash().await
    } else {
        b.shutdown().await
    };
    let b = start_broker_in(&dir, &[]).await;
    let addr = b.bootstrap.clone();
    assert_eq!(
        produce_async(&addr, &topic, pid_batch(pid, epoch, 3, 2)).await,
        (0, 3),
        "the last batch retried after the restart lands at its original offset"
    );
    let (code, _) = produce_async(&addr, &topic, pid_batch(pid, epoch, 6, 1)).await;
    assert_eq!(code, OUT_OF_ORDER_SEQUENCE_NUMBER, "the sequence is known");
    assert_eq!(
        produce_async(&addr, &topic, pid_batch(pid, epoch, 5, 1)).await,
        (0, 5)
    );
    assert_eq!(watermarks(&addr, &topic, 0), (0, 6));
    b.shutdown().await;
    drop(tmp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_survives_a_clean_restart() {
    producer_state_survives(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producer_state_survives_a_crash() {
    producer_state_survives(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rdkafka_idempotent_producer_delivers_every_message_once_in_order() {
    let b = start_broker(&[]).await;
    let topic = unique_topic("idem-rdkafka");
    create_topic(&b.bootstrap, &topic, 4).await;
    let producer = producer(
        &b.bootstrap,
        &[
            ("enable.idempotence", "true"),
            ("max.in.flight.requests.per.connection", "5"),
            ("linger.ms", "2"),
            ("batch.num.messages", "50"),
        ],
    );
    const N: usize = 4000;
    let mut deliveries = Vec::with_capacity(N);
    for i in 0..N {
        let payload = format!("m-{i}");
        let key = format!("k-{}", i % 16);
        deliveries.push(
            producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                .unwrap_or_else(|(e, _)| panic!("enqueue: {e:?}")),
        );
    }
    for d in deliveries {
        d.await
            .expect("delivery future")
            .unwrap_or_else(|(e, _)| panic!("delivery failed: {e:?}"));
    }

    let consumer = consumer(&b.bootstrap, &[]);
    assign(&consumer, &topic, &[(0, 0), (1, 0), (2, 0), (3, 0)]);
    let messages = consume_n(&consumer, N, Duration::from_secs(30)).await;
    assert_no_more(&consumer, Duration::from_millis(500)).await;
    let mut per_key: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for m in &messages {
        let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
        let value = String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned();
        let n: usize = value[2..].parse().expect("payload number");
        per_key.entry(key).or_default().push(n);
    }
    let total: usize = per_key.values().map(Vec::len).sum();
    assert_eq!(total, N, "each message exactly once");
    for (key, ns) in per_key {
        assert!(
            ns.windows(2).all(|w| w[0] < w[1]),
            "{key}: in production order"
        );
    }
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transactional_batch_without_a_transactional_id_is_refused_whole() {
    let b = start_broker(&[]).await;
    let topic = unique_topic("txn-auth");
    create_topic(&b.bootstrap, &topic, 1).await;
    let (code, offset) =
        produce_async(&b.bootstrap, &topic, raw::producer_batch(5, 0, 0, 2, true)).await;
    assert_eq!((code, offset), (TRANSACTIONAL_ID_AUTHORIZATION_FAILED, -1));
    assert_eq!(
        watermarks(&b.bootstrap, &topic, 0),
        (0, 0),
        "nothing written"
    );
    b.shutdown().await;
}
