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

/// (offset, commit) of every control batch stored for the partition: attributes bit 5 marks a control
/// batch; its one record's key is (version i16, type i16), 1 = COMMIT, 0 = ABORT.
fn stored_markers(data_dir: &Path, topic: &str, partition: i32) -> Vec<(i64, bool)> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut out = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(&segment).unwrap();
        let mut pos = 0usize;
        while pos + 61 <= bytes.len() {
            let base = i64::from_be_bytes(bytes[pos..pos + 8].try_into().unwrap());
            let len = i32::from_be_bytes(bytes[pos + 8..pos + 12].try_into().unwrap()) as usize;
            let attributes = u16::from_be_bytes([bytes[pos + 21], bytes[pos + 22]]);
            if attributes & 0x20 != 0 {
                assert!(attributes & 0x10 != 0, "a marker is transactional");
                // Record: length, attributes, timestamp delta, offset delta, key length (one byte each
                // for a marker), then the 4-byte key.
                let key = &bytes[pos + 66..pos + 70];
                out.push((base, i16::from_be_bytes([key[2], key[3]]) == 1));
            }
            pos += 12 + len;
        }
    }
    out
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
