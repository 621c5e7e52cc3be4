//! Records refused one by one, as Kafka's ProduceResponse v8+ reports them (`record_errors` with each
//! record's index in its batch, and an `error_message`): keyless records on a compacted topic
//! (INVALID_RECORD) and CreateTime timestamps out of the topic's window (INVALID_TIMESTAMP). The whole batch
//! is refused; librdkafka then fails the named records with the error and the rest of the batch with
//! `_INVALID_DIFFERENT_RECORD`, so the valid records of a batch can be sent again.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::raw::{encode_batch, produce_request, record, request};
use common::*;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureRecord;

async fn create_compacted(bootstrap: &str, topic: &str) {
    create_topic_with(bootstrap, topic, 1, &[("cleanup.policy", "compact")]).await;
}

/// Sends `keys` (None = keyless) to partition 0 of `topic` without waiting between them, then waits for
/// every delivery report: Ok(offset) or the error code.
async fn send_all(
    bootstrap: &str,
    topic: &str,
    keys: &[Option<&str>],
    overrides: &[(&str, &str)],
) -> Vec<Result<i64, RDKafkaErrorCode>> {
    let mut settings = vec![("retries", "0")];
    settings.extend_from_slice(overrides);
    let producer = producer(bootstrap, &settings);
    let mut pending = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        let value = format!("value-{i}");
        let mut record = FutureRecord::<str, str>::to(topic)
            .partition(0)
            .payload(&value);
        if let Some(key) = key {
            record = record.key(key);
        }
        pending.push(producer.send_result(record).expect("queued"));
    }
    let mut outcomes = Vec::new();
    for delivery in pending {
        outcomes.push(match delivery.await.expect("delivery report") {
            Ok(d) => Ok(d.offset),
            Err((KafkaError::MessageProduction(code), _)) => Err(code),
            Err((other, _)) => panic!("unexpected error {other:?}"),
        });
    }
    outcomes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keyless_record_fails_its_batch_record_by_record() {
    let b = start_broker(&[]).await;
    let topic = "compact-batch";
    create_compacted(&b.bootstrap, topic).await;
    // Two keyless records, as librdkafka's test 0011 has several: with a single record error librdkafka
    // reports the partition's error on every record of the batch (its on_acknowledgement path), against
    // Kafka as here.
    let keys = [Some("a"), None, Some("b"), None, Some("c")];
    // One batch: everything waits for the linger.
    let outcomes = send_all(
        &b.bootstrap,
        topic,
        &keys,
        &[("linger.ms", "1000"), ("batch.num.messages", "100")],
    )
    .await;
    use RDKafkaErrorCode::{InvalidDifferentRecord, InvalidRecord};
    assert_eq!(
        outcomes,
        vec![
            Err(InvalidDifferentRecord),
            Err(InvalidRecord),
            Err(InvalidDifferentRecord),
            Err(InvalidRecord),
            Err(InvalidDifferentRecord),
        ]
    );
    // One record per batch: the keyed ones are stored, densely.
    let outcomes = send_all(
        &b.bootstrap,
        topic,
        &keys,
        &[("linger.ms", "0"), ("batch.num.messages", "1")],
    )
    .await;
    assert_eq!(
        outcomes,
        vec![Ok(0), Err(InvalidRecord), Ok(1), Err(InvalidRecord), Ok(2)]
    );
    b.shutdown().await;
}

/// A record at `offset` of one batch (kafka-protocol starts a new batch where offset - sequence changes).
fn keyed(offset: i64, ts: i64, key: Option<&str>) -> kafka_protocol::records::Record {
    let mut r = record(
        offset,
        ts,
        key.map(|k| Bytes::from(k.to_string())),
        Bytes::from_static(b"value"),
    );
    r.sequence = offset as i32 - 1;
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_v8_and_later_name_each_refused_record() {
    let b = start_broker(&[]).await;
    let topic = "compact-raw";
    create_compacted(&b.bootstrap, topic).await;
    let ts = 1_700_000_000_000;
    let batch = encode_batch(&[
        keyed(0, ts, Some("k0")),
        keyed(1, ts, None),
        keyed(2, ts, Some("k2")),
        keyed(3, ts, None),
    ]);
    let addr = b.bootstrap.clone();
    let (v9, v7, after): (ProduceResponse, ProduceResponse, ProduceResponse) =
        blocking(move || {
            let req = produce_request(topic, 0, batch);
            let good = produce_request(topic, 0, encode_batch(&[keyed(0, ts, Some("k"))]));
            (
                request(&addr, ApiKey::Produce, 9, &req),
                request(&addr, ApiKey::Produce, 7, &req),
                request(&addr, ApiKey::Produce, 9, &good),
            )
        });
    let p = &v9.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidRecord.code());
    assert_eq!(p.base_offset, -1);
    let errors: Vec<(i32, String)> = p
        .record_errors
        .iter()
        .map(|e| {
            let message = e.batch_index_error_message.as_ref().map(|m| m.to_string());
            (e.batch_index, message.unwrap_or_default())
        })
        .collect();
    let why =
        format!("Compacted topic cannot accept message without key in topic partition {topic}-0.");
    assert_eq!(errors, vec![(1, why.clone()), (3, why)]);
    let message = p
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(
        message
            .starts_with("One or more records have been rejected due to 2 record errors in total"),
        "{message}"
    );
    // Before v8 the response has no room for them: the error code alone.
    let p = &v7.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidRecord.code());
    assert!(p.record_errors.is_empty() && p.error_message.is_none());
    // Nothing of the refused batches was stored.
    let p = &after.responses[0].partition_responses[0];
    assert_eq!((p.error_code, p.base_offset), (0, 0));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_out_of_the_window_are_named_record_by_record() {
    let b = start_broker(&[]).await;
    let topic = "ts-window";
    create_topic_with(
        &b.bootstrap,
        topic,
        1,
        &[("message.timestamp.before.max.ms", "3600000")],
    )
    .await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let old = now - Duration::from_secs(86_400).as_millis() as i64;
    let batch = encode_batch(&[
        keyed(0, now, Some("a")),
        keyed(1, old, Some("b")),
        keyed(2, now, Some("c")),
    ]);
    let addr = b.bootstrap.clone();
    let response: ProduceResponse =
        blocking(move || request(&addr, ApiKey::Produce, 9, &produce_request(topic, 0, batch)));
    let p = &response.responses[0].partition_responses[0];
    assert_eq!(p.error_code, ResponseError::InvalidTimestamp.code());
    assert_eq!(p.record_errors.len(), 1);
    assert_eq!(p.record_errors[0].batch_index, 1);
    let why = p.record_errors[0]
        .batch_index_error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(
        why.starts_with(&format!(
            "Timestamp {old} of message with offset 1 is out of range"
        )),
        "{why}"
    );
    assert_eq!(
        p.error_message.as_ref().map(|m| m.to_string()).as_deref(),
        Some("One or more records have been rejected due to invalid timestamp")
    );
    b.shutdown().await;
}
