//! Produce and consume with librdkafka (rdkafka crate) against an in-process broker: volume,
//! compression codecs, acks levels, long-poll wake-up and the message size limit.

mod common;

use std::time::{Duration, Instant};

use common::*;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::FutureRecord;

fn expected_value(i: usize) -> Vec<u8> {
    // Varied sizes (10..~400 bytes) so batches hold records of different lengths.
    let mut v = format!("value-{i}-").into_bytes();
    v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 391));
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_100k_keyed_messages_with_headers() {
    produce_and_consume_100k(&[]).await;
}

/// The same with the answers' batches sent from the segment files (batches of up to 256 KiB: most reads
/// are large enough to go out with sendfile).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_and_consume_100k_keyed_messages_sent_from_the_segment_files() {
    produce_and_consume_100k(&[("fetch.sendfile.enable", "true")]).await;
}

async fn produce_and_consume_100k(overrides: &[(&str, &str)]) {
    const N: usize = 100_000;
    const PARTITIONS: i32 = 4;
    let b = start_broker(overrides).await;
    let topic = "volume";
    create_topic(&b.bootstrap, topic, PARTITIONS).await;

    let producer = producer(
        &b.bootstrap,
        &[("linger.ms", "20"), ("batch.size", "262144")],
    );
    let started = Instant::now();
    let mut futures = Vec::with_capacity(N);
    for i in 0..N {
        let key = format!("key-{i}");
        let value = expected_value(i);
        let idx = i.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "idx",
                value: Some(idx.as_bytes()),
            })
            .insert(Header {
                key: "source",
                value: Some("brook-test".as_bytes()),
            })
            .insert(Header::<&[u8]> {
                key: "empty",
                value: None,
            });
        let record = FutureRecord::to(topic)
            .key(&key)
            .payload(&value)
            .headers(headers);
        match producer.send_result(record) {
            Ok(f) => futures.push(f),
            Err((e, _)) => panic!("enqueue message {i}: {e:?}"),
        }
    }
    // Delivery reports: (partition, offset) of every message, by send index.
    let mut placed = Vec::with_capacity(N);
    for (i, f) in futures.into_iter().enumerate() {
        let delivery = f
            .await
            .expect("delivery future not cancelled")
            .unwrap_or_else(|(e, _)| panic!("delivery of message {i} failed: {e:?}"));
        placed.push((delivery.partition, delivery.offset));
    }
    eprintln!("produced {N} messages in {:?}", started.elapsed());

    // Per partition, offsets are dense from 0 and follow send order.
    let mut expected_per_partition: Vec<Vec<usize>> = vec![Vec::new(); PARTITIONS as usize];
    for (i, (p, offset)) in placed.iter().enumerate() {
        let list = &mut expected_per_partition[*p as usize];
        assert_eq!(
            *offset,
            list.len() as i64,
            "message {i} offset in partition {p}"
        );
        list.push(i);
    }
    assert!(
        expected_per_partition
            .iter()
            .filter(|l| !l.is_empty())
            .count()
            > 1,
        "keys spread over more than one partition"
    );
    for p in 0..PARTITIONS {
        let len = expected_per_partition[p as usize].len() as i64;
        assert_eq!(
            watermarks(&b.bootstrap, topic, p),
            (0, len),
            "watermarks of partition {p}"
        );
    }

    let consumer = consumer(&b.bootstrap, &[]);
    assign(
        &consumer,
        topic,
        &(0..PARTITIONS).map(|p| (p, 0)).collect::<Vec<_>>(),
    );
    let started = Instant::now();
    let msgs = consume_n(&consumer, N, Duration::from_secs(180)).await;
    eprintln!("consumed {N} messages in {:?}", started.elapsed());
    assert_no_more(&consumer, Duration::from_millis(300)).await;

    for (p, got) in by_partition(msgs) {
        let expected = &expected_per_partition[p as usize];
        assert_eq!(got.len(), expected.len(), "message count in partition {p}");
        for (pos, (m, &i)) in got.iter().zip(expected).enumerate() {
            assert_eq!(m.offset(), pos as i64, "offset order in partition {p}");
            assert_eq!(
                m.key(),
                Some(format!("key-{i}").as_bytes()),
                "key at {p}/{pos}"
            );
            assert_eq!(
                m.payload(),
                Some(expected_value(i).as_slice()),
                "value at {p}/{pos}"
            );
            assert_eq!(
                headers_of(m),
                vec![
                    ("idx".to_string(), Some(i.to_string().into_bytes())),
                    ("source".to_string(), Some(b"brook-test".to_vec())),
                    ("empty".to_string(), None),
                ],
                "headers at {p}/{pos}"
            );
        }
    }
    b.shutdown().await;
}

/// Produces 2,000 compressible records with `codec`, checks the broker stored them compressed
/// with that codec (librdkafka silently falls back to no compression when it believes the broker
/// lacks support), and reads them back intact.
async fn round_trip_with_compression(codec: &str, codec_id: u16) {
    const N: usize = 2_000;
    let b = start_broker(&[]).await;
    let topic = format!("compressed-{codec}");
    create_topic(&b.bootstrap, &topic, 1).await;

    let producer = producer(
        &b.bootstrap,
        &[("compression.type", codec), ("linger.ms", "50")],
    );
    let mut futures = Vec::with_capacity(N);
    for i in 0..N {
        let key = format!("k{i}");
        let value = expected_value(i);
        let record = FutureRecord::to(&topic)
            .partition(0)
            .key(&key)
            .payload(&value);
        futures.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for (i, f) in futures.into_iter().enumerate() {
        let d = f
            .await
            .expect("delivery future not cancelled")
            .unwrap_or_else(|(e, _)| panic!("{codec}: delivery of {i} failed: {e:?}"));
        assert_eq!(d.offset, i as i64, "{codec}: offset of message {i}");
    }
    assert_eq!(watermarks(&b.bootstrap, &topic, 0), (0, N as i64));
    let batches = stored_batches(&b.data_dir, &topic, 0);
    let compressed = records_stored_with_codec(&batches, codec_id);
    eprintln!(
        "{codec}: {compressed} of {N} records stored in {codec} batches ({} batches)",
        batches.len()
    );
    assert!(
        compressed >= N as i64 / 2,
        "{codec}: only {compressed} of {N} records stored compressed with codec {codec_id}; \
         batches (base, count, codec): {batches:?}"
    );

    let consumer = consumer(&b.bootstrap, &[]);
    assign(&consumer, &topic, &[(0, 0)]);
    let msgs = consume_n(&consumer, N, DEADLINE).await;
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.offset(), i as i64, "{codec}: offset");
        assert_eq!(
            m.key(),
            Some(format!("k{i}").as_bytes()),
            "{codec}: key {i}"
        );
        assert_eq!(
            m.payload(),
            Some(expected_value(i).as_slice()),
            "{codec}: value {i}"
        );
    }

    // A consumer starting in the middle of a compressed batch gets exactly the asked-for offset
    // onwards (the client skips the earlier records of the batch the broker returns).
    let consumer = consumer_from(&b.bootstrap, &topic, 1234);
    let msgs = consume_n(&consumer, N - 1234, DEADLINE).await;
    assert_eq!(
        msgs[0].offset(),
        1234,
        "{codec}: first offset after mid-batch start"
    );
    assert_eq!(msgs[0].payload(), Some(expected_value(1234).as_slice()));
    b.shutdown().await;
}

fn consumer_from(bootstrap: &str, topic: &str, offset: i64) -> rdkafka::consumer::StreamConsumer {
    let c = consumer(bootstrap, &[]);
    assign(&c, topic, &[(0, offset)]);
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_compressed_batches_round_trip() {
    round_trip_with_compression("gzip", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snappy_compressed_batches_round_trip() {
    round_trip_with_compression("snappy", 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lz4_compressed_batches_round_trip() {
    round_trip_with_compression("lz4", 3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zstd_compressed_batches_round_trip() {
    round_trip_with_compression("zstd", 4).await;
}

/// Every acks level gets its messages into the log; acks=0 has no offsets to report, so the
/// consumer is the proof.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_with_acks_0_1_and_all_lands_every_message() {
    let b = start_broker(&[]).await;
    for acks in ["0", "1", "-1", "all"] {
        let topic = format!("acks{}", acks.replace('-', "minus"));
        produce_and_read_back(&b, acks, &topic).await;
    }
    b.shutdown().await;
}

/// Durable mode (log.flush.interval.messages=1): the high watermark only moves once the flusher has
/// fsynced (the log's unit tests check that gating), so acks=-1 and consumers depend on the flusher
/// making progress for every partition; every acknowledged message is readable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_mode_acknowledges_after_fsync() {
    let b = start_broker(&[("log.flush.interval.messages", "1")]).await;
    for acks in ["-1", "1"] {
        let topic = format!("durable{}", acks.replace('-', "minus"));
        produce_and_read_back(&b, acks, &topic).await;
    }
    b.shutdown().await;
}

async fn produce_and_read_back(b: &TestBroker, acks: &str, topic: &str) {
    const N: usize = 200;
    create_topic(&b.bootstrap, topic, 1).await;
    let producer = producer(&b.bootstrap, &[("acks", acks)]);
    let mut futures = Vec::with_capacity(N);
    for i in 0..N {
        let value = format!("acks={acks} #{i}");
        let record = FutureRecord::<(), _>::to(topic)
            .partition(0)
            .payload(&value);
        futures.push(
            producer
                .send_result(record)
                .map_err(|(e, _)| e)
                .expect("enqueue"),
        );
    }
    for (i, f) in futures.into_iter().enumerate() {
        let d = f
            .await
            .expect("delivery future not cancelled")
            .unwrap_or_else(|(e, _)| panic!("acks={acks}: delivery of {i} failed: {e:?}"));
        if acks != "0" {
            assert_eq!(d.offset, i as i64, "acks={acks}: offset of message {i}");
        }
    }
    // acks=0: the producer considers a message delivered once written to the socket, so
    // wait for the broker to have appended them all.
    poll_until(
        DEADLINE,
        &format!("high watermark {N} for acks={acks}"),
        || (watermarks(&b.bootstrap, topic, 0) == (0, N as i64)).then_some(()),
    )
    .await;

    let consumer = consumer(&b.bootstrap, &[]);
    assign(&consumer, topic, &[(0, 0)]);
    let msgs = consume_n(&consumer, N, DEADLINE).await;
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.offset(), i as i64);
        assert_eq!(m.payload(), Some(format!("acks={acks} #{i}").as_bytes()));
    }
}

/// A consumer parked in a long-poll Fetch (fetch.wait.max.ms = 10 s) must be woken by a produce,
/// not left waiting for its deadline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_fetch_receives_new_message_promptly() {
    const WAIT_MS: u64 = 10_000;
    let b = start_broker(&[]).await;
    let topic = "longpoll";
    create_topic(&b.bootstrap, topic, 1).await;
    let producer = producer(&b.bootstrap, &[("linger.ms", "0")]);
    let consumer = consumer(
        &b.bootstrap,
        &[
            ("fetch.wait.max.ms", &WAIT_MS.to_string()),
            ("fetch.min.bytes", "1"),
        ],
    );
    assign(&consumer, topic, &[(0, 0)]);

    // First message: proves the fetcher is running; after it the client immediately sends the
    // next Fetch at offset 1, which parks on the empty tail.
    let send = |v: &'static str| {
        producer.send(
            FutureRecord::<(), _>::to(topic).partition(0).payload(v),
            Duration::from_secs(5),
        )
    };
    send("first").await.expect("produce first");
    let first = consume_n(&consumer, 1, DEADLINE).await;
    assert_eq!(first[0].payload(), Some(&b"first"[..]));

    // The client sends its next Fetch at once; wait until the broker has it parked, so the
    // produce below must wake it.
    poll_until(DEADLINE, "the consumer's fetch to park", || {
        (b.broker.parked_fetches() >= 1).then_some(())
    })
    .await;

    let d = send("second").await.expect("produce second");
    let acked = Instant::now();
    let second = consume_n(&consumer, 1, Duration::from_millis(WAIT_MS * 3)).await;
    let delay = acked.elapsed();
    eprintln!("long poll: produce ack -> consume took {delay:?} (fetch.wait.max.ms = {WAIT_MS})");
    assert_eq!(second[0].offset(), d.offset);
    assert_eq!(second[0].payload(), Some(&b"second"[..]));
    assert!(
        delay < Duration::from_millis(WAIT_MS / 2),
        "parked fetch was not woken by the produce: waited {delay:?}"
    );
    b.shutdown().await;
}

/// A batch larger than the broker's message.max.bytes is refused with MESSAGE_TOO_LARGE and not
/// stored; smaller messages still go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn produce_larger_than_message_max_bytes_fails_with_message_too_large() {
    let b = start_broker(&[("message.max.bytes", "10000")]).await;
    let topic = "limits";
    create_topic(&b.bootstrap, topic, 1).await;
    let producer = producer(
        &b.bootstrap,
        &[("linger.ms", "0"), ("compression.type", "none")],
    );

    let big = vec![b'x'; 20_000];
    let result = producer
        .send(
            FutureRecord::<(), _>::to(topic).partition(0).payload(&big),
            Duration::from_secs(5),
        )
        .await;
    match result {
        Err((KafkaError::MessageProduction(code), _)) => {
            assert_eq!(
                code,
                RDKafkaErrorCode::MessageSizeTooLarge,
                "error for oversized batch"
            )
        }
        other => panic!("expected MESSAGE_TOO_LARGE, got {other:?}"),
    }
    assert_eq!(watermarks(&b.bootstrap, topic, 0), (0, 0), "nothing stored");

    let small = vec![b'y'; 1_000];
    let d = producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(&small),
            Duration::from_secs(5),
        )
        .await
        .expect("a message under the limit is accepted");
    assert_eq!(d.offset, 0);
    b.shutdown().await;
}
