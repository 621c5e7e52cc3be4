//! Raw Kafka protocol over a TCP socket, frames built with kafka-protocol's encoders: corrupt
//! batches, version negotiation, frame limits, hostile bodies, unknown APIs and pipelining.
//! Every hostile case must cost at most its own connection; the others keep being answered.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use common::raw::{self, Conn, Outcome};
use common::*;
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, FetchRequest, FetchResponse, MetadataRequest,
    MetadataResponse, ProduceRequest, ProduceResponse, RequestHeader, TopicName,
    fetch_request::{FetchPartition, FetchTopic},
    metadata_request::MetadataRequestTopic,
    produce_request::{PartitionProduceData, TopicProduceData},
};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tokio::io::AsyncWriteExt;

const CORRUPT_MESSAGE: i16 = 2;
const UNSUPPORTED_VERSION: i16 = 35;
/// Highest versions these tests know how to build (Produce/Fetch v13+ address topics by id).
const OUR_MAX: [(ApiKey, i16); 4] = [
    (ApiKey::Produce, 12),
    (ApiKey::Fetch, 12),
    (ApiKey::Metadata, 12),
    (ApiKey::ApiVersions, 3),
];

fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("brook-tests"))
        .with_client_software_version(StrBytes::from_static_str("0.1.0"))
}

/// Asks the broker for its version ranges; also serves as the "this connection works" probe.
/// Like a real client, falls back to the broker's highest ApiVersions version on error 35.
async fn api_versions(conn: &mut Conn) -> HashMap<i16, (i16, i16)> {
    let mut resp: ApiVersionsResponse = conn
        .call(ApiKey::ApiVersions, 3, &api_versions_request())
        .await;
    if resp.error_code == UNSUPPORTED_VERSION {
        let max = resp
            .api_keys
            .iter()
            .find(|k| k.api_key == ApiKey::ApiVersions as i16)
            .map_or(0, |k| k.max_version.min(3));
        resp = conn
            .call(ApiKey::ApiVersions, max, &api_versions_request())
            .await;
    }
    assert_eq!(resp.error_code, 0, "ApiVersions error code");
    resp.api_keys
        .iter()
        .map(|k| (k.api_key, (k.min_version, k.max_version)))
        .collect()
}

/// The highest version both sides speak.
fn pick(ranges: &HashMap<i16, (i16, i16)>, key: ApiKey) -> i16 {
    let ours = OUR_MAX
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .expect("key listed in OUR_MAX");
    let (min, max) = *ranges
        .get(&(key as i16))
        .unwrap_or_else(|| panic!("broker does not advertise {key:?}"));
    let v = max.min(ours);
    assert!(
        v >= min,
        "no common version for {key:?}: broker {min}..{max}, tests up to {ours}"
    );
    v
}

/// The broker still answers on a brand-new connection.
async fn assert_broker_alive(addr: &str) {
    let mut fresh = Conn::open(addr).await;
    let ranges = api_versions(&mut fresh).await;
    assert!(!ranges.is_empty());
}

fn records_batch(values: &[&str]) -> Bytes {
    raw::indexed_batch(values, true)
}

fn produce_request(topic: &str, records: Bytes) -> ProduceRequest {
    raw::produce_request(topic, 0, records)
}

/// (error code, base offset) of the single partition in a Produce response.
fn produce_result(resp: &ProduceResponse) -> (i16, i64) {
    assert_eq!(resp.responses.len(), 1, "one topic in the Produce response");
    let parts = &resp.responses[0].partition_responses;
    assert_eq!(parts.len(), 1, "one partition in the Produce response");
    (parts[0].error_code, parts[0].base_offset)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_bad_crc_gets_corrupt_message_and_connection_stays_usable() {
    let b = start_broker(&[]).await;
    let topic = "crc";
    create_topic(&b.bootstrap, topic, 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    let ranges = api_versions(&mut conn).await;
    let v = pick(&ranges, ApiKey::Produce);

    let good = records_batch(&["one", "two", "three"]);
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0x5a; // inside the records, covered by the CRC
    let resp: ProduceResponse = conn
        .call(ApiKey::Produce, v, &produce_request(topic, bad.freeze()))
        .await;
    assert_eq!(
        produce_result(&resp).0,
        CORRUPT_MESSAGE,
        "error for a batch with a wrong CRC"
    );
    assert_eq!(
        watermarks(&b.bootstrap, topic, 0),
        (0, 0),
        "corrupt batch not stored"
    );

    // Same connection: still answered, and the valid batch lands at offset 0.
    api_versions(&mut conn).await;
    let resp: ProduceResponse = conn
        .call(ApiKey::Produce, v, &produce_request(topic, good))
        .await;
    assert_eq!(
        produce_result(&resp),
        (0, 0),
        "valid batch after a corrupt one"
    );
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (0, 3));
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_versions_with_unsupported_version_gets_v0_body_with_error_35() {
    let b = start_broker(&[]).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    // Header says v127 (request header v2, as for any flexible ApiVersions); the body is v3's.
    assert_eq!(ApiKey::ApiVersions.request_header_version(127), 2);
    let (sent, framed) = conn.frame(ApiKey::ApiVersions, 127, 3, &api_versions_request());
    conn.stream.write_all(&framed).await.expect("write");
    // The answer always uses response header v0 and, for an unknown version, a v0 body.
    let (got, resp): (i32, ApiVersionsResponse) = conn.recv(ApiKey::ApiVersions, 0).await;
    assert_eq!(got, sent, "correlation id");
    assert_eq!(resp.error_code, UNSUPPORTED_VERSION);
    assert!(
        !resp.api_keys.is_empty(),
        "the error response still lists the supported APIs"
    );
    let av = resp
        .api_keys
        .iter()
        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
        .expect("ApiVersions is listed");
    assert!(
        av.min_version == 0 && av.max_version >= 3,
        "ApiVersions range {av:?}"
    );

    // The client retries with a version it supports on the same connection.
    api_versions(&mut conn).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frame_larger_than_socket_request_max_bytes_closes_only_that_connection() {
    let b = start_broker(&[("socket.request.max.bytes", "1048576")]).await;
    let mut bystander = Conn::open(&b.bootstrap).await;
    api_versions(&mut bystander).await;

    for claimed in [2 * 1024 * 1024, i32::MAX, -1] {
        let mut offender = Conn::open(&b.bootstrap).await;
        let mut frame = BytesMut::new();
        frame.put_i32(claimed);
        // The start of a plausible header; the rest never comes.
        frame.put_i16(ApiKey::Metadata as i16);
        frame.put_i16(1);
        frame.put_i32(99);
        offender.stream.write_all(&frame).await.expect("write");
        let outcome = offender.outcome().await;
        assert!(
            matches!(outcome, Outcome::Closed),
            "size prefix {claimed} must close the connection, got {outcome:?}"
        );
        api_versions(&mut bystander).await;
    }
    assert_broker_alive(&b.bootstrap).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_body_claiming_2_billion_topics_costs_only_its_connection() {
    let b = start_broker(&[]).await;
    let mut bystander = Conn::open(&b.bootstrap).await;
    let ranges = api_versions(&mut bystander).await;
    let (min, max) = ranges[&(ApiKey::Metadata as i16)];
    assert!(min <= 1 && 1 <= max, "Metadata v1 supported ({min}..{max})");

    // Metadata v1: header v1, then a 7-byte body: topics count 0x7fffffff and 3 stray bytes.
    // A decoder that pre-allocates from the count asks for hundreds of GB and aborts.
    let mut offender = Conn::open(&b.bootstrap).await;
    let mut payload = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(ApiKey::Metadata as i16)
        .with_request_api_version(1)
        .with_correlation_id(7)
        .with_client_id(Some(StrBytes::from_static_str("hostile")))
        .encode(&mut payload, 1)
        .expect("encode header");
    payload.extend_from_slice(&[0x7f, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00]);
    let mut framed = BytesMut::new();
    framed.put_i32(payload.len() as i32);
    framed.extend_from_slice(&payload);
    offender.stream.write_all(&framed).await.expect("write");
    let outcome = offender.outcome().await;
    eprintln!("hostile Metadata body: {outcome:?}");
    if let Outcome::Answered(id) = outcome {
        assert_eq!(
            id, 7,
            "an error response carries the request's correlation id"
        );
    }

    // Everyone else is still served, including a real Metadata request.
    api_versions(&mut bystander).await;
    let v = pick(&ranges, ApiKey::Metadata);
    let md: MetadataResponse = bystander
        .call(
            ApiKey::Metadata,
            v,
            &MetadataRequest::default().with_topics(Some(vec![])),
        )
        .await;
    assert_eq!(md.brokers.len(), 1, "one broker in metadata");
    assert_broker_alive(&b.bootstrap).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_api_key_closes_or_errors_and_broker_lives() {
    let b = start_broker(&[]).await;
    let mut bystander = Conn::open(&b.bootstrap).await;
    api_versions(&mut bystander).await;

    for (key, version) in [(999i16, 0i16), (-1, 0), (ApiKey::Metadata as i16, 9999)] {
        let mut offender = Conn::open(&b.bootstrap).await;
        let mut payload = BytesMut::new();
        payload.put_i16(key);
        payload.put_i16(version);
        payload.put_i32(42);
        payload.put_i16(-1); // null client id
        payload.extend_from_slice(&[0, 0, 0, 0]);
        let mut framed = BytesMut::new();
        framed.put_i32(payload.len() as i32);
        framed.extend_from_slice(&payload);
        offender.stream.write_all(&framed).await.expect("write");
        let outcome = offender.outcome().await;
        eprintln!("api key {key} v{version}: {outcome:?}");
        if let Outcome::Answered(id) = outcome {
            assert_eq!(
                id, 42,
                "an error response carries the request's correlation id"
            );
        }
        api_versions(&mut bystander).await;
    }
    // Frames too short to hold a header must not crash anything either.
    for short in [
        &[][..],
        &[0u8][..],
        &[0, 3][..],
        &[0, 3, 0][..],
        &[0, 3, 0, 1, 0, 0][..],
    ] {
        let mut offender = Conn::open(&b.bootstrap).await;
        let mut framed = BytesMut::new();
        framed.put_i32(short.len() as i32);
        framed.extend_from_slice(short);
        offender.stream.write_all(&framed).await.expect("write");
        let outcome = offender.outcome().await;
        eprintln!("{}-byte frame: {outcome:?}", short.len());
        api_versions(&mut bystander).await;
    }
    assert_broker_alive(&b.bootstrap).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_requests_are_answered_in_request_order() {
    let b = start_broker(&[]).await;
    let topic = "pipeline";
    create_topic(&b.bootstrap, topic, 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    let ranges = api_versions(&mut conn).await;
    let fetch_v = pick(&ranges, ApiKey::Fetch);

    // A Fetch that must wait (empty partition, min_bytes 1, 500 ms), then three quick requests,
    // all in one write: the quick answers must queue behind the Fetch's.
    let fetch = FetchRequest::default()
        .with_max_wait_ms(500)
        .with_min_bytes(1)
        .with_max_bytes(1024 * 1024)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1024 * 1024),
                ]),
        ]);
    let (c1, f1) = conn.frame(ApiKey::Fetch, fetch_v, fetch_v, &fetch);
    let (c2, f2) = conn.frame(ApiKey::ApiVersions, 3, 3, &api_versions_request());
    let (c2b, f2b) = conn.frame(ApiKey::ApiVersions, 3, 3, &api_versions_request());
    let meta = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]));
    let meta_v = pick(&ranges, ApiKey::Metadata);
    let (c3, f3) = conn.frame(ApiKey::Metadata, meta_v, meta_v, &meta);
    let mut all = BytesMut::new();
    all.extend_from_slice(&f1);
    all.extend_from_slice(&f2);
    all.extend_from_slice(&f2b);
    all.extend_from_slice(&f3);
    let started = Instant::now();
    conn.stream.write_all(&all).await.expect("write pipeline");

    let (g1, fetch_resp): (i32, FetchResponse) = conn.recv(ApiKey::Fetch, fetch_v).await;
    eprintln!(
        "fetch on empty partition answered after {:?}",
        started.elapsed()
    );
    let (g2, _): (i32, ApiVersionsResponse) = conn.recv(ApiKey::ApiVersions, 3).await;
    let (g2b, _): (i32, ApiVersionsResponse) = conn.recv(ApiKey::ApiVersions, 3).await;
    let (g3, md): (i32, MetadataResponse) = conn.recv(ApiKey::Metadata, meta_v).await;
    assert_eq!(
        [g1, g2, g2b, g3],
        [c1, c2, c2b, c3],
        "responses in request order"
    );

    assert_eq!(fetch_resp.error_code, 0);
    let part = &fetch_resp.responses[0].partitions[0];
    assert_eq!(part.error_code, 0, "fetch partition error");
    assert_eq!(part.high_watermark, 0);
    assert!(
        part.records.as_ref().is_none_or(|r| r.is_empty()),
        "no records yet"
    );
    assert_eq!(md.topics.len(), 1);
    assert_eq!(md.topics[0].error_code, 0);
    b.shutdown().await;
}

/// KIP-516: Produce v13 and Fetch v13+ address topics by id only; the id survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_fetch_by_topic_id_and_id_survives_restart() {
    const UNKNOWN_TOPIC_ID: i16 = 100;
    let b = start_broker(&[]).await;
    let topic = "by-id";
    create_topic(&b.bootstrap, topic, 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    let ranges = api_versions(&mut conn).await;
    assert!(
        ranges[&(ApiKey::Produce as i16)].1 >= 13,
        "Produce v13 advertised"
    );
    assert!(
        ranges[&(ApiKey::Fetch as i16)].1 >= 13,
        "Fetch v13 advertised"
    );

    let topic_id = metadata_topic_id(&mut conn, topic).await;
    assert!(!topic_id.is_nil(), "a topic has an id");

    let by_id = |id: uuid::Uuid, records: Bytes| {
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(10_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_topic_id(id)
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records)),
                    ]),
            ])
    };
    let resp: ProduceResponse = conn
        .call(
            ApiKey::Produce,
            13,
            &by_id(topic_id, records_batch(&["a", "b"])),
        )
        .await;
    assert_eq!(
        resp.responses[0].topic_id, topic_id,
        "the response names the topic by id"
    );
    assert_eq!(produce_result(&resp), (0, 0));
    let resp: ProduceResponse = conn
        .call(
            ApiKey::Produce,
            13,
            &by_id(uuid::Uuid::new_v4(), records_batch(&["x"])),
        )
        .await;
    assert_eq!(produce_result(&resp).0, UNKNOWN_TOPIC_ID);

    let fetch = |id: uuid::Uuid| {
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic_id(id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ])
    };
    for version in [13, 16] {
        let resp: FetchResponse = conn.call(ApiKey::Fetch, version, &fetch(topic_id)).await;
        let t = &resp.responses[0];
        assert_eq!(t.topic_id, topic_id);
        let p = &t.partitions[0];
        assert_eq!(
            (p.error_code, p.high_watermark),
            (0, 2),
            "Fetch v{version} by id"
        );
        let records = p.records.clone().expect("records");
        assert_eq!(
            records.len(),
            records_batch(&["a", "b"]).len(),
            "the stored batch, whole"
        );
        let resp: FetchResponse = conn
            .call(ApiKey::Fetch, version, &fetch(uuid::Uuid::new_v4()))
            .await;
        assert_eq!(resp.responses[0].partitions[0].error_code, UNKNOWN_TOPIC_ID);
    }
    drop(conn);

    let (dir, tmp) = b.shutdown().await;
    let b = start_broker_in(&dir, &[]).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    api_versions(&mut conn).await;
    assert_eq!(
        metadata_topic_id(&mut conn, topic).await,
        topic_id,
        "the id is persisted"
    );
    let resp: FetchResponse = conn.call(ApiKey::Fetch, 13, &fetch(topic_id)).await;
    assert_eq!(resp.responses[0].partitions[0].high_watermark, 2);
    drop(conn);
    b.shutdown().await;
    drop(tmp);
}

async fn metadata_topic_id(conn: &mut Conn, topic: &str) -> uuid::Uuid {
    let request = MetadataRequest::default()
        .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
            TopicName(StrBytes::from_string(topic.to_string())),
        ))]));
    let resp: MetadataResponse = conn.call(ApiKey::Metadata, 12, &request).await;
    assert_eq!(resp.topics[0].error_code, 0);
    resp.topics[0].topic_id
}

/// A clean shutdown answers fetches parked in a long poll at once instead of waiting out their
/// max_wait_ms (or dropping them): the client gets its response, and the stop is not held up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clean_shutdown_answers_parked_fetches() {
    const MAX_WAIT_MS: i32 = 60_000;
    let b = start_broker(&[]).await;
    let topic = "parked";
    create_topic(&b.bootstrap, topic, 1).await;
    let mut conn = Conn::open(&b.bootstrap).await;
    let ranges = api_versions(&mut conn).await;
    let v = pick(&ranges, ApiKey::Fetch);
    let fetch = FetchRequest::default()
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(topic)))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let sent = conn.send(ApiKey::Fetch, v, &fetch).await;
    poll_until(DEADLINE, "the fetch to park", || {
        (b.broker.parked_fetches() == 1).then_some(())
    })
    .await;

    let stopping = Instant::now();
    let shutdown = tokio::spawn(b.shutdown());
    let (got, resp): (i32, FetchResponse) = conn.recv(ApiKey::Fetch, v).await;
    assert_eq!(got, sent);
    let p = &resp.responses[0].partitions[0];
    assert_eq!((p.error_code, p.high_watermark), (0, 0));
    shutdown.await.expect("shutdown task");
    // Without the wake-up the stop would wait for the 5 s grace period, the fetch for 60 s.
    assert!(
        stopping.elapsed() < Duration::from_millis(MAX_WAIT_MS as u64 / 20),
        "shutdown held up by a parked fetch: {:?}",
        stopping.elapsed()
    );
}
