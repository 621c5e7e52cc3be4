//! Transactions (KIP-98, TV1) with librdkafka's transactional producer: the coordinator answers
//! FindCoordinator(TRANSACTION), InitProducerId, AddPartitionsToTxn and EndTxn, and writes a COMMIT or
//! ABORT marker into each partition of each transaction; a second producer with the same transactional
//! id fences the first.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;

const TIMEOUT: Duration = Duration::from_secs(30);

/// (offset, commit) of every marker stored for the partition (none of them cleaned away here).
fn stored_markers(data_dir: &Path, topic: &str, partition: i32) -> Vec<(i64, bool)> {
    common::stored_markers(data_dir, topic, partition)
        .into_iter()
        .map(|(offset, marker)| (offset, marker.expect("a marker with its record")))
        .collect()
}

fn transactional_producer(bootstrap: &str, id: &str) -> rdkafka::producer::FutureProducer {
    producer(
        bootstrap,
        &[
            ("transactional.id", id),
            ("transaction.timeout.ms", "60000"),
        ],
    )
}

async fn send(p: &rdkafka::producer::FutureProducer, topic: &str, value: &str) {
    p.send(
        FutureRecord::<(), _>::to(topic).partition(0).payload(value),
        Timeout::After(TIMEOUT),
    )
    .await
    .unwrap_or_else(|(e, _)| panic!("send {value}: {e}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn committed_and_aborted_transactions_end_with_their_markers() {
    init_tracing();
    let broker = start_broker(&[]).await;
    let bootstrap = broker.bootstrap.clone();
    let topic = unique_topic("txn");
    create_topic(&bootstrap, &topic, 1).await;
    let p = transactional_producer(&bootstrap, "committer");
    blocking(|| p.init_transactions(TIMEOUT)).expect("init_transactions");

    p.begin_transaction().unwrap();
    for v in ["a", "b", "c"] {
        send(&p, &topic, v).await;
    }
    blocking(|| p.commit_transaction(TIMEOUT)).expect("commit");
    p.begin_transaction().unwrap();
    for v in ["x", "y"] {
        send(&p, &topic, v).await;
    }
    blocking(|| p.abort_transaction(TIMEOUT)).expect("abort");
    p.begin_transaction().unwrap();
    send(&p, &topic, "d").await;
    blocking(|| p.commit_transaction(TIMEOUT)).expect("second commit");

    // Six records and three markers: EndTxn answers once the transaction is prepared, so wait for the last.
    let high = poll_until(TIMEOUT, "the last marker", || {
        let (_, high) = watermarks(&bootstrap, &topic, 0);
        (high == 9).then_some(high)
    })
    .await;
    assert_eq!(high, 9);
    let data_dir = broker.data_dir.clone();
    assert_eq!(
        stored_markers(&data_dir, &topic, 0),
        vec![(3, true), (6, false), (8, true)]
    );
    drop(p);
    broker.shutdown().await;
}

/// P10: a second producer with the same transactional id fences the first; the first's commit fails.
#[tokio::test(flavor = "multi_thread")]
async fn a_new_producer_instance_fences_the_old_one() {
    init_tracing();
    let broker = start_broker(&[]).await;
    let bootstrap = broker.bootstrap.clone();
    let topic = unique_topic("fenced");
    create_topic(&bootstrap, &topic, 1).await;
    let old = transactional_producer(&bootstrap, "fenced-id");
    blocking(|| old.init_transactions(TIMEOUT)).expect("init old");
    old.begin_transaction().unwrap();
    send(&old, &topic, "zombie").await;

    // The new instance meets the old one's open transaction: it is aborted, then the new one gets its epoch.
    let new = transactional_producer(&bootstrap, "fenced-id");
    blocking(|| new.init_transactions(TIMEOUT)).expect("init new");
    let data_dir = broker.data_dir.clone();
    let markers = poll_until(
        TIMEOUT,
        "the abort marker of the fenced transaction",
        || {
            let m = stored_markers(&data_dir, &topic, 0);
            (!m.is_empty()).then_some(m)
        },
    )
    .await;
    assert_eq!(markers, vec![(1, false)]);

    let err = blocking(|| old.commit_transaction(TIMEOUT)).expect_err("the old instance is fenced");
    match &err {
        rdkafka::error::KafkaError::Transaction(e) => {
            assert!(e.is_fatal(), "fencing is fatal to the old producer: {e}")
        }
        other => panic!("expected a transaction error, got {other}"),
    }
    new.begin_transaction().unwrap();
    send(&new, &topic, "fresh").await;
    blocking(|| new.commit_transaction(TIMEOUT)).expect("the new instance commits");
    poll_until(TIMEOUT, "the commit marker", || {
        let m = stored_markers(&data_dir, &topic, 0);
        (m.len() == 2).then_some(())
    })
    .await;
    assert!(stored_markers(&data_dir, &topic, 0)[1].1, "a COMMIT marker");
    drop((old, new));
    broker.shutdown().await;
}

/// A consume-transform-produce transaction: the offsets sent to it are committed with it (through the
/// group coordinator's marker), and those of an aborted one never are.
#[tokio::test(flavor = "multi_thread")]
async fn offsets_sent_to_a_transaction_commit_and_abort_with_it() {
    use rdkafka::consumer::Consumer;
    use rdkafka::{Offset, TopicPartitionList};

    init_tracing();
    let broker = start_broker(&[]).await;
    let bootstrap = broker.bootstrap.clone();
    let input = unique_topic("in");
    let output = unique_topic("out");
    create_topic(&bootstrap, &input, 1).await;
    create_topic(&bootstrap, &output, 1).await;
    let group = unique_topic("etl");
    let c = consumer(&bootstrap, &[("group.id", &group)]);
    let metadata = c
        .group_metadata()
        .expect("a consumer with a group id has group metadata");
    let p = transactional_producer(&bootstrap, "etl");
    blocking(|| p.init_transactions(TIMEOUT)).expect("init_transactions");

    let committed = || {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&input, 0);
        let got = blocking(|| c.committed_offsets(tpl, TIMEOUT)).expect("committed offsets");
        got.find_partition(&input, 0).map(|e| e.offset())
    };
    let offsets = |at: i64| {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(&input, 0, Offset::Offset(at))
            .unwrap();
        tpl
    };

    p.begin_transaction().unwrap();
    send(&p, &output, "transformed").await;
    blocking(|| p.send_offsets_to_transaction(&offsets(5), &metadata, TIMEOUT))
        .expect("send_offsets_to_transaction");
    blocking(|| p.commit_transaction(TIMEOUT)).expect("commit");
    let at = poll_until(TIMEOUT, "the committed offset", || {
        (committed() == Some(Offset::Offset(5))).then_some(5)
    })
    .await;
    assert_eq!(at, 5);

    p.begin_transaction().unwrap();
    send(&p, &output, "dropped").await;
    blocking(|| p.send_offsets_to_transaction(&offsets(9), &metadata, TIMEOUT))
        .expect("send_offsets_to_transaction");
    blocking(|| p.abort_transaction(TIMEOUT)).expect("abort");
    // The abort's marker reaches __consumer_offsets; the offset stays where the commit left it.
    let data_dir = broker.data_dir.clone();
    poll_until(TIMEOUT, "both markers on the output", || {
        (stored_markers(&data_dir, &output, 0).len() == 2).then_some(())
    })
    .await;
    let offsets_partition = brook::coordinator::partition_for(&group, 50);
    let on_offsets = poll_until(TIMEOUT, "both markers on __consumer_offsets", || {
        let m = stored_markers(&data_dir, "__consumer_offsets", offsets_partition);
        (m.len() == 2).then_some(m)
    })
    .await;
    assert_eq!(
        on_offsets.iter().map(|m| m.1).collect::<Vec<_>>(),
        vec![true, false],
        "COMMIT then ABORT"
    );
    assert_eq!(committed(), Some(Offset::Offset(5)));
    drop((p, c));
    broker.shutdown().await;
}

/// P11: a transaction left open past its timeout is aborted by the broker's sweep, which bumps the epoch: the
/// producer that left it is fenced.
#[tokio::test(flavor = "multi_thread")]
async fn an_abandoned_transaction_is_aborted_after_its_timeout() {
    init_tracing();
    let broker = start_broker(&[(
        "transaction.abort.timed.out.transaction.cleanup.interval.ms",
        "50",
    )])
    .await;
    let bootstrap = broker.bootstrap.clone();
    let topic = unique_topic("abandoned");
    create_topic(&bootstrap, &topic, 1).await;
    let p = producer(
        &bootstrap,
        &[
            ("transactional.id", "abandoned"),
            ("transaction.timeout.ms", "1000"),
            ("message.timeout.ms", "1000"),
            ("socket.timeout.ms", "1000"),
        ],
    );
    blocking(|| p.init_transactions(TIMEOUT)).expect("init_transactions");
    p.begin_transaction().unwrap();
    send(&p, &topic, "left open").await;
    let data_dir = broker.data_dir.clone();
    let markers = poll_until(TIMEOUT, "the timeout's ABORT marker", || {
        let m = stored_markers(&data_dir, &topic, 0);
        (!m.is_empty()).then_some(m)
    })
    .await;
    assert_eq!(markers, vec![(1, false)]);
    assert!(
        blocking(|| p.commit_transaction(TIMEOUT)).is_err(),
        "the producer of a timed-out transaction cannot commit it"
    );
    drop(p);
    broker.shutdown().await;
}

/// The values a consumer with `isolation` reads from partition 0 from the start, until `quiet` passes
/// without a message.
async fn read_all(bootstrap: &str, topic: &str, isolation: &str, quiet: Duration) -> Vec<String> {
    use rdkafka::Message;
    let c = consumer(bootstrap, &[("isolation.level", isolation)]);
    assign(&c, topic, &[(0, 0)]);
    let mut out = Vec::new();
    while let Ok(Ok(m)) = tokio::time::timeout(quiet, c.recv()).await {
        out.push(String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned());
    }
    out
}

/// ListOffsets LATEST for partition 0 under `isolation_level` (1 = read_committed: the last stable offset).
fn latest(bootstrap: &str, topic: &str, isolation_level: i8) -> i64 {
    common::raw::latest_offset(bootstrap, topic, 0, isolation_level)
}

/// P7-P9: read_committed consumers see exactly the committed and the non-transactional records, never an
/// aborted or still open transaction's, and stop at the last stable offset; read_uncommitted sees it all.
#[tokio::test(flavor = "multi_thread")]
async fn read_committed_sees_only_committed_records_and_stops_at_the_last_stable_offset() {
    init_tracing();
    let broker = start_broker(&[]).await;
    let bootstrap = broker.bootstrap.clone();
    let topic = unique_topic("isolation");
    create_topic(&bootstrap, &topic, 1).await;
    let txn = transactional_producer(&bootstrap, "isolation");
    blocking(|| txn.init_transactions(TIMEOUT)).expect("init_transactions");
    let plain = producer(&bootstrap, &[]);

    txn.begin_transaction().unwrap();
    send(&txn, &topic, "c1").await;
    send(&plain, &topic, "p1").await;
    send(&txn, &topic, "c2").await;
    blocking(|| txn.commit_transaction(TIMEOUT)).expect("commit");
    txn.begin_transaction().unwrap();
    send(&txn, &topic, "a1").await;
    send(&plain, &topic, "p2").await;
    send(&txn, &topic, "a2").await;
    blocking(|| txn.abort_transaction(TIMEOUT)).expect("abort");
    send(&plain, &topic, "p3").await;
    // Left open: everything from its first record on is unstable.
    txn.begin_transaction().unwrap();
    send(&txn, &topic, "o1").await;
    send(&plain, &topic, "p4").await;

    // c1 p1 c2 COMMIT a1 p2 a2 ABORT p3 o1 p4: o1 is at offset 9.
    // (rdkafka's watermarks ask under its consumers' default isolation, read_committed: raw requests here.)
    let (bs, tp) = (bootstrap.clone(), topic.clone());
    poll_until(TIMEOUT, "the abort marker in place", move || {
        (latest(&bs, &tp, 0) == 11).then_some(())
    })
    .await;
    let (bs, tp) = (bootstrap.clone(), topic.clone());
    assert_eq!(blocking(move || latest(&bs, &tp, 0)), 11, "high watermark");
    let (bs, tp) = (bootstrap.clone(), topic.clone());
    assert_eq!(
        blocking(move || latest(&bs, &tp, 1)),
        9,
        "last stable offset"
    );
    let quiet = Duration::from_millis(1500);
    assert_eq!(
        read_all(&bootstrap, &topic, "read_committed", quiet).await,
        vec!["c1", "p1", "c2", "p2", "p3"],
        "p4 is plain but above the open transaction's start: not yet"
    );
    assert_eq!(
        read_all(&bootstrap, &topic, "read_uncommitted", quiet).await,
        vec!["c1", "p1", "c2", "a1", "p2", "a2", "p3", "o1", "p4"]
    );

    blocking(|| txn.commit_transaction(TIMEOUT)).expect("commit the open one");
    let (bs, tp) = (bootstrap.clone(), topic.clone());
    poll_until(
        TIMEOUT,
        "the last stable offset reaches the end",
        move || (latest(&bs, &tp, 1) == 12).then_some(()),
    )
    .await;
    assert_eq!(
        read_all(&bootstrap, &topic, "read_committed", quiet).await,
        vec!["c1", "p1", "c2", "p2", "p3", "o1", "p4"]
    );
    drop((txn, plain));
    broker.shutdown().await;
}

/// P13 (KIP-890 part 1): a transactional batch for a partition its transaction never added is refused,
/// INVALID_TXN_STATE before Produce v11 and TRANSACTION_ABORTABLE from it, and nothing is written; once
/// added, the same batch is accepted. DescribeProducers then shows the open transaction (P17).
#[tokio::test(flavor = "multi_thread")]
async fn a_transactional_write_outside_its_transaction_is_refused() {
    use common::raw;
    use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
    use kafka_protocol::messages::describe_producers_request::TopicRequest;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::StrBytes;

    init_tracing();
    let broker = start_broker(&[]).await;
    let bootstrap = broker.bootstrap.clone();
    let topic = unique_topic("verify");
    create_topic(&bootstrap, &topic, 1).await;
    let id = || TransactionalId(StrBytes::from_static_str("verify-id"));
    let name = || TopicName(StrBytes::from_string(topic.clone()));

    let bs = bootstrap.clone();
    let (pid, epoch) = blocking(move || raw::init_producer_id(&bs, Some("verify-id")));
    let batch = |seq: i32| raw::producer_batch(pid, epoch, seq, 1, true);
    let produce = |version: i16, seq: i32| -> i16 {
        let bs = bootstrap.clone();
        let request = raw::produce_request(&topic, 0, batch(seq)).with_transactional_id(Some(id()));
        let response: ProduceResponse =
            blocking(move || raw::request(bs, ApiKey::Produce, version, &request));
        response.responses[0].partition_responses[0].error_code
    };
    assert_eq!(produce(9, 0), 48, "INVALID_TXN_STATE before v11");
    assert_eq!(produce(11, 0), 120, "TRANSACTION_ABORTABLE from v11");
    let high = |isolation: i8| {
        let (bs, tp) = (bootstrap.clone(), topic.clone());
        blocking(move || latest(&bs, &tp, isolation))
    };
    assert_eq!(high(0), 0, "nothing written");

    let bs = bootstrap.clone();
    let added: AddPartitionsToTxnResponse = blocking(|| {
        raw::request(
            bs,
            ApiKey::AddPartitionsToTxn,
            3,
            &AddPartitionsToTxnRequest::default()
                .with_v3_and_below_transactional_id(id())
                .with_v3_and_below_producer_id(ProducerId(pid))
                .with_v3_and_below_producer_epoch(epoch)
                .with_v3_and_below_topics(vec![
                    AddPartitionsToTxnTopic::default()
                        .with_name(name())
                        .with_partitions(vec![0]),
                ]),
        )
    });
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    assert_eq!(produce(9, 0), 0, "added: accepted");
    assert_eq!(
        (high(0), high(1)),
        (1, 0),
        "written, and unstable while open"
    );

    let bs = bootstrap.clone();
    let described: DescribeProducersResponse = blocking(|| {
        raw::request(
            bs,
            ApiKey::DescribeProducers,
            0,
            &DescribeProducersRequest::default().with_topics(vec![
                TopicRequest::default()
                    .with_name(name())
                    .with_partition_indexes(vec![0, 5]),
            ]),
        )
    });
    let partitions = &described.topics[0].partitions;
    assert_eq!(partitions[0].error_code, 0);
    let producers = &partitions[0].active_producers;
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].producer_id.0, pid);
    assert_eq!(producers[0].producer_epoch, i32::from(epoch));
    assert_eq!(producers[0].last_sequence, 0);
    assert_eq!(producers[0].current_txn_start_offset, 0, "open transaction");
    assert_eq!(
        partitions[1].error_code, 3,
        "no partition 5: UNKNOWN_TOPIC_OR_PARTITION"
    );
    broker.shutdown().await;
}

/// One stored record as a raw fetch shows it.
#[derive(Clone, Debug)]
struct Stored {
    offset: i64,
    producer_id: i64,
    transactional: bool,
    /// Some(commit) for a marker.
    marker: Option<bool>,
    value: String,
}

/// One raw Fetch of partition 0: (records, aborted (producer id, first offset), last stable offset).
async fn fetch_raw(
    conn: &mut common::raw::Conn,
    topic: &str,
    offset: i64,
    max_bytes: i32,
    isolation: i8,
) -> (Vec<Vec<Stored>>, Option<Vec<(i64, i64)>>, i64) {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::RecordBatchDecoder;
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_min_bytes(0)
        .with_max_bytes(max_bytes)
        .with_isolation_level(isolation)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_partition_max_bytes(max_bytes),
                ]),
        ]);
    let response: FetchResponse = conn.call(ApiKey::Fetch, 12, &request).await;
    let p = &response.responses[0].partitions[0];
    assert_eq!(p.error_code, 0, "fetch at {offset}");
    let mut batches = Vec::new();
    if let Some(records) = &p.records {
        let mut buf = records.clone();
        for set in RecordBatchDecoder::decode_all(&mut buf).expect("decode fetched batches") {
            batches.push(
                set.records
                    .iter()
                    .map(|r| Stored {
                        offset: r.offset,
                        producer_id: r.producer_id,
                        transactional: r.transactional,
                        marker: r.control.then(|| {
                            let key = r.key.as_ref().expect("control key");
                            i16::from_be_bytes([key[2], key[3]]) == 1
                        }),
                        value: String::from_utf8_lossy(r.value.as_deref().unwrap_or_default())
                            .into_owned(),
                    })
                    .collect(),
            );
        }
    }
    let aborted = p.aborted_transactions.as_ref().map(|list| {
        list.iter()
            .map(|a| (a.producer_id.0, a.first_offset))
            .collect()
    });
    (batches, aborted, p.last_stable_offset)
}

/// What a read_committed consumer keeps of one fetch, by the Java consumer's algorithm: a producer is
/// aborted from the first offset of an aborted transaction until its ABORT marker; its transactional
/// batches meanwhile are dropped, and markers are never records.
fn committed_records(batches: &[Vec<Stored>], aborted: &[(i64, i64)]) -> Vec<Stored> {
    let mut pending: Vec<(i64, i64)> = aborted.to_vec();
    pending.sort_by_key(|a| a.1);
    let mut aborted_producers = std::collections::HashSet::new();
    let mut out = Vec::new();
    for batch in batches {
        let Some(first) = batch.first() else { continue };
        let last = batch.last().map_or(first.offset, |r| r.offset);
        while pending.first().is_some_and(|a| a.1 <= last) {
            aborted_producers.insert(pending.remove(0).0);
        }
        if let Some(commit) = first.marker {
            if !commit {
                aborted_producers.remove(&first.producer_id);
            }
            continue;
        }
        if first.transactional && aborted_producers.contains(&first.producer_id) {
            continue;
        }
        out.extend(batch.iter().cloned());
    }
    out
}

/// P8: over a seeded random interleaving of three transactional producers (each transaction committed or
/// aborted, one left open) and a plain one, a read_committed reader starting at every offset, with fetch
/// sizes from one batch to everything, gets exactly the committed and plain records below the last stable
/// offset, in log order; read_uncommitted gets every record.
#[tokio::test(flavor = "multi_thread")]
async fn read_committed_is_exact_from_every_offset_and_fetch_size() {
    init_tracing();
    let seed: u64 = std::env::var("BROOK_TXN_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("BROOK_TXN_SEED={seed}");
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };

    let broker = start_broker(&[]).await;
    let bootstrap = broker.bootstrap.clone();
    let topic = unique_topic("p8");
    create_topic(&bootstrap, &topic, 1).await;
    let producers: Vec<_> = (0..3)
        .map(|i| transactional_producer(&bootstrap, &format!("p8-{seed}-{i}")))
        .collect();
    for p in &producers {
        blocking(|| p.init_transactions(TIMEOUT)).expect("init_transactions");
    }
    let plain = producer(&bootstrap, &[]);
    let mut open = [false; 3];
    let mut visible = std::collections::HashSet::new();
    let mut in_txn: [Vec<String>; 3] = Default::default();
    let mut ended = 0;
    for step in 0..60 {
        let who = next(4) as usize;
        let value = format!("v{step}");
        if who == 3 {
            send(&plain, &topic, &value).await;
            visible.insert(value);
            continue;
        }
        let p = &producers[who];
        if !open[who] {
            p.begin_transaction().unwrap();
            open[who] = true;
        }
        send(p, &topic, &value).await;
        in_txn[who].push(value);
        if next(3) == 0 {
            if next(2) == 0 {
                blocking(|| p.commit_transaction(TIMEOUT)).expect("commit");
                visible.extend(in_txn[who].drain(..));
            } else {
                blocking(|| p.abort_transaction(TIMEOUT)).expect("abort");
                in_txn[who].clear();
            }
            open[who] = false;
            ended += 1;
        }
    }
    // Producer 0 keeps its transaction open (with a record in it); the others end theirs.
    let mut sent = 60;
    if !open[0] {
        producers[0].begin_transaction().unwrap();
        send(&producers[0], &topic, "left-open").await;
        sent += 1;
    }
    for who in 1..3 {
        if open[who] {
            let p = &producers[who];
            blocking(|| p.commit_transaction(TIMEOUT)).expect("commit");
            visible.extend(in_txn[who].drain(..));
            ended += 1;
        }
    }
    let data_dir = broker.data_dir.clone();
    poll_until(TIMEOUT, "every marker written", || {
        (stored_markers(&data_dir, &topic, 0).len() == ended).then_some(())
    })
    .await;

    let mut conn = common::raw::Conn::open(&bootstrap).await;
    let (everything, _, lso) = fetch_raw(&mut conn, &topic, 0, 64 << 20, 0).await;
    let log: Vec<Stored> = everything.into_iter().flatten().collect();
    let log_end = log.last().map_or(0, |r| r.offset + 1);
    let data: Vec<&Stored> = log.iter().filter(|r| r.marker.is_none()).collect();
    assert_eq!(
        data.len(),
        sent,
        "read_uncommitted sees every record (seed {seed})"
    );
    let open_start = data
        .iter()
        .find(|r| in_txn[0].contains(&r.value) || r.value == "left-open")
        .map(|r| r.offset)
        .expect("the open transaction is in the log");
    assert_eq!(
        lso, open_start,
        "the LSO is the open transaction's start (seed {seed})"
    );

    for start in 0..=log_end {
        for max_bytes in [1, 300, 64 << 20] {
            let expected: Vec<&str> = data
                .iter()
                .filter(|r| r.offset >= start && r.offset < lso && visible.contains(&r.value))
                .map(|r| r.value.as_str())
                .collect();
            let mut got = Vec::new();
            let mut position = start;
            loop {
                let (batches, aborted, lso_now) =
                    fetch_raw(&mut conn, &topic, position, max_bytes, 1).await;
                assert_eq!(lso_now, lso);
                let Some(last) = batches.last().and_then(|b| b.last()) else {
                    break;
                };
                assert!(
                    last.offset < lso,
                    "read_committed returned offset {} at or above the LSO {lso} (seed {seed})",
                    last.offset
                );
                let aborted = aborted.expect("read_committed always lists aborted transactions");
                got.extend(
                    committed_records(&batches, &aborted)
                        .into_iter()
                        .map(|r| r.value),
                );
                position = last.offset + 1;
            }
            assert_eq!(
                got, expected,
                "read_committed from {start} with max_bytes {max_bytes} (seed {seed})"
            );
        }
    }
    drop((producers, plain));
    broker.shutdown().await;
}

/// P18: a read_committed long poll parked at the open transaction's start returns as soon as the COMMIT
/// marker lands, not at its max wait.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_committed_long_poll_wakes_when_the_commit_marker_lands() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
    use kafka_protocol::protocol::StrBytes;

    init_tracing();
    let broker = start_broker(&[]).await;
    let bootstrap = broker.bootstrap.clone();
    let topic = unique_topic("wake");
    create_topic(&bootstrap, &topic, 1).await;
    let p = transactional_producer(&bootstrap, "wake");
    blocking(|| p.init_transactions(TIMEOUT)).expect("init_transactions");
    p.begin_transaction().unwrap();
    send(&p, &topic, "pending").await;

    const MAX_WAIT_MS: i32 = 30_000;
    let request = FetchRequest::default()
        .with_max_wait_ms(MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.clone())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let mut conn = common::raw::Conn::open(&bootstrap).await;
    let started = std::time::Instant::now();
    let sent = conn.send(ApiKey::Fetch, 12, &request).await;
    // Parked: nothing is stable yet.
    tokio::time::sleep(Duration::from_millis(500)).await;
    blocking(|| p.commit_transaction(TIMEOUT)).expect("commit");
    let (got, response): (i32, FetchResponse) = conn.recv(ApiKey::Fetch, 12).await;
    assert_eq!(got, sent);
    let waited = started.elapsed();
    let partition = &response.responses[0].partitions[0];
    assert!(
        partition.records.as_ref().is_some_and(|r| !r.is_empty()),
        "the committed record is returned"
    );
    assert_eq!(
        partition.last_stable_offset, 2,
        "record and marker are stable"
    );
    assert!(
        waited < Duration::from_millis(MAX_WAIT_MS as u64 / 2),
        "woken by the marker, not by the max wait ({waited:?})"
    );
    drop(p);
    broker.shutdown().await;
}
