//! Runs compat/kcat.sh (Debian's kcat, built on librdkafka 2.0.2) and compat/kafka_python.py against an in-process broker,
//! then checks on disk that kcat's compressed topics really hold compressed batches: old
//! librdkafka silently stops compressing when the broker's advertised versions disappoint it.

mod common;

use std::path::Path;
use std::process::Command;

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
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kcat is required in CI (apt-get install kcat; .ci/run does this)"
        );
        eprintln!("SKIP kcat_matrix_passes_against_in_process_broker: kcat not installed");
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
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "compat/kcat.sh failed ({}):\n{stdout}\n{stderr}",
        output.status
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

fn kafka_python_installed() -> bool {
    Command::new("python3")
        .args(["-c", "import kafka"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// compat/kafka_python.py: an independent (pure Python) client for admin, produce and consume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_python_matrix_passes_against_in_process_broker() {
    if !kafka_python_installed() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "kafka-python is required in CI (pip install kafka-python; .ci/run does this)"
        );
        eprintln!(
            "SKIP kafka_python_matrix_passes_against_in_process_broker: kafka-python not installed"
        );
        return;
    }
    let b = start_broker(&[]).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("compat/kafka_python.py");
    let output = blocking(|| {
        Command::new("python3")
            .arg(&script)
            .arg(&b.bootstrap)
            .output()
    })
    .expect("run compat/kafka_python.py");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "compat/kafka_python.py failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        stdout.matches("  PASS  ").count(),
        6,
        "every scenario ran:\n{stdout}"
    );
    b.shutdown().await;
}
