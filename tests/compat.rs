//! Runs every compat/ script (kcat, kafka-python 2.x and 3.x, aiokafka, confluent-kafka, kafkajs)
//! against its own in-process broker and requires a PASS line for each of its scenarios. For kcat it
//! also checks on disk that the compressed topics really hold compressed batches: old librdkafka
//! silently stops compressing when the broker's advertised versions disappoint it. For every client it
//! reads the `idempotent` scenario's batches from disk: the producer id, epoch and sequence numbers
//! brook stored are the idempotent producer's, whatever the client could show of them.
//! The clients come from `compat/install.sh` (pinned versions under compat/.deps/ and
//! compat/kafkajs/node_modules); a missing client is a skip, except with CI=true, where it fails.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;

fn kcat_installed() -> bool {
    Command::new("kcat")
        .arg("-V")
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The `<prefix>*-0` partition directory's topic name, e.g. kcat's `kcat-gzip-<run id>`.
fn topic_with_prefix(data_dir: &Path, prefix: &str) -> Option<String> {
    std::fs::read_dir(data_dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .find(|n| n.starts_with(prefix) && n.ends_with("-0"))
        .map(|n| n.trim_end_matches("-0").to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kcat_matrix_passes_against_in_process_broker() {
    if !kcat_installed() {
        skip_or_fail("kcat", "apt-get install kcat; .ci/run does this");
        return;
    }
    let b = start_broker(&[]).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/kcat.sh");
    let output = blocking(|| {
        Command::new("bash")
            .arg(&script)
            .arg(&b.bootstrap)
            .env("KCAT_RUN_ID", "test")
            // cargo puts the build's own librdkafka (2.12) on LD_LIBRARY_PATH; without this, kcat
            // would load it instead of the system library the matrix is meant to test.
            .env_remove("LD_LIBRARY_PATH")
            .output()
    })
    .expect("run compat/kcat.sh");
    check_matrix(
        "kcat",
        &output,
        &[
            "metadata-list",
            "produce-consume-10k",
            "metadata-topic",
            "consume-from-offset",
            "query-offsets",
            "keyed",
            "compression-gzip",
            "compression-snappy",
            "compression-lz4",
            "compression-zstd",
            "keyed-headers",
            "group-balanced",
            "metadata-all-after-commit",
            "idempotent",
        ],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    check_idempotent_batches(
        &b.data_dir,
        "kcat-idempotent-test",
        1,
        10_000,
        &stdout,
        "kcat",
    );

    let mut problems = Vec::new();
    for (codec, id) in [("gzip", 1), ("snappy", 2), ("lz4", 3), ("zstd", 4)] {
        let Some(topic) = topic_with_prefix(&b.data_dir, &format!("kcat-{codec}-test")) else {
            problems.push(format!("{codec}: no partition directory for kcat's topic"));
            continue;
        };
        let batches = stored_batches(&b.data_dir, &topic, 0);
        let compressed = records_stored_with_codec(&batches, id);
        eprintln!(
            "kcat -z {codec}: {compressed} records stored with codec {id}, batches {batches:?}"
        );
        if compressed == 0 {
            problems.push(format!(
                "{codec}: no batch stored with codec id {id}: {batches:?}"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "kcat's librdkafka stored uncompressed batches. librdkafka enables lz4 only if the broker \
         advertises FindCoordinator, zstd only with Produce >= 7 and Fetch >= 10, and before \
         2.11.1 any codec only if Produce is advertised from v0: {problems:?}"
    );
    b.shutdown().await;
}

/// The scenarios every script besides kcat runs (compat/README.md describes them).
const SCENARIOS: [&str; 8] = [
    "admin",
    "produce-consume",
    "produce-consume-gzip",
    "consumer-group",
    "describe-all-after-commit",
    "admin-alter-partitions",
    "idempotent",
    "transactional",
];

fn compat_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("compat")
}

/// A missing client fails the test in CI and is a printed skip elsewhere.
fn skip_or_fail(client: &str, install: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{client} is required in CI ({install})"
    );
    eprintln!("SKIP {client} compat matrix: {client} not installed ({install})");
}

/// Asserts the script exited 0 and printed `<client> <scenario> PASS` for each expected scenario, so
/// a script that silently ran fewer scenarios cannot pass.
fn check_matrix(client: &str, output: &Output, scenarios: &[&str]) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    let passed: Vec<&str> = stdout
        .lines()
        .filter_map(
            |line| match line.split_whitespace().collect::<Vec<_>>()[..] {
                [c, scenario, "PASS", ..] if c == client => Some(scenario),
                _ => None,
            },
        )
        .collect();
    let missing: Vec<&&str> = scenarios.iter().filter(|s| !passed.contains(s)).collect();
    let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
    let tail: Vec<&str> = tail.into_iter().rev().collect();
    assert!(
        output.status.success() && missing.is_empty(),
        "{client} matrix failed ({}), scenarios without PASS: {missing:?} (matrix above)\n\
         --- stderr, last 40 lines ---\n{}",
        output.status,
        tail.join("\n")
    );
}

/// The pinned Python client in compat/.deps/<dir>, if compat/install.sh installed it.
fn python_client(dir: &str, module: &str) -> Option<PathBuf> {
    let path = compat_dir().join(".deps").join(dir);
    // Imported from that directory: a system-wide install of another version must not stand in.
    let check = "import importlib, sys; \
                 sys.exit(not importlib.import_module(sys.argv[1]).__file__.startswith(sys.argv[2]))";
    Command::new("python3")
        .args(["-c", check, module])
        .arg(&path)
        .env("PYTHONPATH", &path)
        .output()
        .is_ok_and(|o| o.status.success())
        .then_some(path)
}

/// One stored batch's producer fields: (base offset, producer id, producer epoch, base sequence, records).
fn producer_batches(
    data_dir: &Path,
    topic: &str,
    partition: i32,
) -> Vec<(i64, i64, i16, i32, i32)> {
    let dir = data_dir.join(format!("{topic}-{partition}"));
    let mut segments: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("partition dir {}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "log"))
        .collect();
    segments.sort();
    let mut batches = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(&segment).expect("read segment");
        let mut pos = 0usize;
        // v2 batch header: producer id at 43, epoch at 51, base sequence at 53, record count at 57.
        while pos + 61 <= bytes.len() {
            let at = |from: usize, n: usize| &bytes[pos + from..pos + from + n];
            let base = i64::from_be_bytes(at(0, 8).try_into().expect("8 bytes"));
            let len = i32::from_be_bytes(at(8, 4).try_into().expect("4 bytes"));
            assert!(
                len >= 49,
                "batch at {pos} of {} has length {len}",
                segment.display()
            );
            batches.push((
                base,
                i64::from_be_bytes(at(43, 8).try_into().expect("8 bytes")),
                i16::from_be_bytes(at(51, 2).try_into().expect("2 bytes")),
                i32::from_be_bytes(at(53, 4).try_into().expect("4 bytes")),
                i32::from_be_bytes(at(57, 4).try_into().expect("4 bytes")),
            ));
            pos += 12 + len as usize;
        }
    }
    batches
}

/// The `idempotent` scenario's topic as stored: in every partition, `records` records in more than one
/// batch, each batch carrying one producer id (the one the script reported, when it printed
/// `producer id N`) at epoch 0 and a base sequence equal to its base offset (one producer from an empty
/// partition: sequences dense from 0, no batch stored twice).
fn check_idempotent_batches(
    data_dir: &Path,
    topic: &str,
    partitions: i32,
    records: i32,
    stdout: &str,
    client: &str,
) {
    let reported: Option<i64> = stdout
        .lines()
        .find(|l| {
            l.split_whitespace()
                .take(3)
                .eq([client, "idempotent", "PASS"])
        })
        .and_then(|l| l.split("producer id ").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|id| id.parse().expect("reported producer id"));
    let mut ids = std::collections::BTreeSet::new();
    for partition in 0..partitions {
        let batches = producer_batches(data_dir, topic, partition);
        let total: i32 = batches.iter().map(|b| b.4).sum();
        assert!(
            total == records && batches.len() > 1,
            "{client}: {topic}-{partition} holds {total} records in {} batches, expected {records} in several",
            batches.len()
        );
        let wrong: Vec<_> = batches
            .iter()
            .filter(|&&(base, id, epoch, sequence, _)| {
                id < 0 || epoch != 0 || i64::from(sequence) != base
            })
            .take(3)
            .collect();
        assert!(
            wrong.is_empty(),
            "{client}: {topic}-{partition} batches (base offset, producer id, epoch, base sequence, \
             records) without the idempotent producer's id, epoch 0 and dense sequences: {wrong:?}"
        );
        ids.extend(batches.iter().map(|b| b.1));
    }
    assert_eq!(
        ids.len(),
        1,
        "{client}: {topic} written by producer ids {ids:?}"
    );
    let stored = ids.pop_first().expect("one producer id");
    if let Some(reported) = reported {
        assert_eq!(
            stored, reported,
            "{client}: batches carry producer id {stored}, the client reported {reported}"
        );
    }
    eprintln!(
        "{client}: {topic} stored with producer id {stored}, epoch 0, sequences dense (reported: {reported:?})"
    );
}

/// Runs compat/<script> with the client in `deps` against a fresh in-process broker; its topics are
/// named `<topics>-test-<scenario>`.
async fn python_matrix(
    client: &str,
    dir: &str,
    module: &str,
    script: &str,
    topics: &str,
    scenarios: &[&str],
) {
    let Some(deps) = python_client(dir, module) else {
        skip_or_fail(client, "run compat/install.sh; .ci/run does this");
        return;
    };
    let b = start_broker(&[]).await;
    let script = compat_dir().join(script);
    let output = blocking(|| {
        Command::new("python3")
            .arg(&script)
            .arg(&b.bootstrap)
            .env("PYTHONPATH", &deps)
            .env("COMPAT_RUN_ID", "test")
            // confluent-kafka must load the librdkafka it bundles, not the build's own.
            .env_remove("LD_LIBRARY_PATH")
            .output()
    })
    .unwrap_or_else(|e| panic!("run compat/{script:?}: {e}"));
    check_matrix(client, &output, scenarios);
    let stdout = String::from_utf8_lossy(&output.stdout);
    check_idempotent_batches(
        &b.data_dir,
        &format!("{topics}-test-idempotent"),
        2,
        1000,
        &stdout,
        client,
    );
    b.shutdown().await;
}

/// compat/kafka_python.py under kafka-python 3.x (pure Python; alters configs incrementally).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_3_matrix_passes_against_in_process_broker() {
    python_matrix(
        "kafka-python-3",
        "kafka-python-3",
        "kafka",
        "kafka_python.py",
        "kafka-python",
        &SCENARIOS,
    )
    .await;
}

/// The same script under kafka-python 2.x, which asks for authorized operations in Metadata and
/// DescribeGroups and decodes them strictly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_2_matrix_passes_against_in_process_broker() {
    python_matrix(
        "kafka-python-2",
        "kafka-python-2",
        "kafka",
        "kafka_python.py",
        "kafka-python",
        &SCENARIOS,
    )
    .await;
}

/// compat/aiokafka_compat.py: the asyncio client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aiokafka_matrix_passes_against_in_process_broker() {
    python_matrix(
        "aiokafka",
        "aiokafka",
        "aiokafka",
        "aiokafka_compat.py",
        "aiokafka",
        &SCENARIOS,
    )
    .await;
}

/// compat/confluent_kafka_compat.py: Python over the current librdkafka it bundles (zstd instead of gzip).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_kafka_matrix_passes_against_in_process_broker() {
    let scenarios = SCENARIOS.map(|s| {
        if s == "produce-consume-gzip" {
            "produce-consume-zstd"
        } else {
            s
        }
    });
    python_matrix(
        "confluent-kafka",
        "confluent-kafka",
        "confluent_kafka",
        "confluent_kafka_compat.py",
        "confluent-kafka",
        &scenarios,
    )
    .await;
}

/// compat/kafkajs/compat.js: kafkajs 2.2.4 from compat/kafkajs/node_modules.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafkajs_matrix_passes_against_in_process_broker() {
    let dir = compat_dir().join("kafkajs");
    let node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !node || !dir.join("node_modules/kafkajs/package.json").is_file() {
        skip_or_fail(
            "kafkajs",
            "node 18+ and npm, then compat/install.sh; .ci/run does this",
        );
        return;
    }
    let b = start_broker(&[]).await;
    let output = blocking(|| {
        Command::new("node")
            .arg(dir.join("compat.js"))
            .arg(&b.bootstrap)
            .env("COMPAT_RUN_ID", "test")
            .output()
    })
    .expect("run compat/kafkajs/compat.js");
    check_matrix("kafkajs", &output, &SCENARIOS);
    let stdout = String::from_utf8_lossy(&output.stdout);
    check_idempotent_batches(
        &b.data_dir,
        "kafkajs-test-idempotent",
        2,
        1000,
        &stdout,
        "kafkajs",
    );
    b.shutdown().await;
}

/// compat/sarama.sh: Debian's Sarama 1.22, a Go client that sends the request versions Kafka 4 removed
/// (KIP-896) and brook serves as Kafka 3.9 did.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sarama_1_22_matrix_passes_against_in_process_broker() {
    let go = Command::new("go")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !go || !Path::new("/usr/share/gocode/src/github.com/Shopify/sarama").is_dir() {
        skip_or_fail(
            "sarama",
            "apt-get install golang-go golang-github-shopify-sarama-dev; .ci/run does this",
        );
        return;
    }
    let b = start_broker(&[]).await;
    let output = blocking(|| {
        Command::new("sh")
            .arg(compat_dir().join("sarama.sh"))
            .arg(&b.bootstrap)
            .output()
    })
    .expect("run compat/sarama.sh");
    check_matrix(
        "sarama",
        &output,
        &[
            "create-topics-v0",
            "create-topics-v1-already-exists",
            "create-topics-v1-validate-only",
            "describe-configs-v0",
            "produce-v3-5-messages",
            "produce-v3-idempotent",
            "list-offsets-v0",
            "offset-commit-v1-fetch-v1",
            "delete-topics-v0",
        ],
    );
    // The topic is sarama-<nanos>-idempotent.
    let idempotent = std::fs::read_dir(&b.data_dir)
        .expect("data dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .find(|n| n.starts_with("sarama-") && n.ends_with("-idempotent-0"))
        .expect("sarama's idempotent topic on disk");
    check_idempotent_batches(
        &b.data_dir,
        idempotent.trim_end_matches("-0"),
        1,
        500,
        &String::from_utf8_lossy(&output.stdout),
        "sarama",
    );
    b.shutdown().await;
}
