//! The committed fuzz seed corpus (fuzz/corpus/), replayed in the ordinary test suite: the seeds are what
//! they claim to be (a real request for every advertised api key and version, real batches for every
//! codec), and the hostile ones cost a connection, not the process. The fuzz targets themselves run under
//! cargo-fuzz (fuzz/run.sh).

use std::path::PathBuf;

use brook::api::api_versions;
use brook::group::records::{GroupRecordKey, decode_key, walk_batches};
use brook::log::LogError;
use brook::log::record_batch::validate_batches;
use brook::server::Reply;
use brook::server::dispatch::{Body, Decoded, decode_request};
use bytes::Bytes;

fn corpus(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target)
}

fn seed(target: &str, name: &str) -> Vec<u8> {
    let path = corpus(target).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("seed {}: {e}", path.display()))
}

/// Default `message.max.bytes`.
const MAX_MESSAGE_BYTES: u32 = 1_048_588;

#[test]
fn every_advertised_api_version_has_a_seed_that_decodes() {
    for &(key, min, max) in api_versions::SUPPORTED {
        for version in min..=max {
            let frame = Bytes::from(seed("request", &format!("{key:?}-v{version}")));
            match decode_request(frame) {
                Decoded::Request {
                    api_key,
                    version: v,
                    request: Body::Current(_),
                    ..
                } => {
                    assert!(api_versions::is_served(key, version));
                    assert_eq!((api_key, v), (key, version));
                }
                // The versions Kafka 4 removed: hand-decoded (api::legacy), then routed.
                Decoded::Request {
                    api_key,
                    version: v,
                    request: Body::Legacy(_),
                    ..
                } => {
                    assert!(brook::api::legacy::is_legacy(key, version));
                    assert_eq!((api_key, v), (key, version));
                }
                // Produce v0-2: advertised for old clients, answered UNSUPPORTED_VERSION per partition.
                Decoded::Reply(Reply::Now(response)) => assert!(
                    !api_versions::is_served(key, version) && response.len() > 8,
                    "{key:?} v{version} answered without routing"
                ),
                Decoded::Reply(other) => panic!("{key:?} v{version} seed: {other:?}"),
            }
        }
    }
}

#[test]
fn crafted_metadata_array_count_closes_only_the_connection() {
    assert!(brook::alloc_guard::is_installed());
    let frame = Bytes::from(seed("request", "Metadata-v4-crafted-count"));
    assert_eq!(
        frame.len() - 7,
        8 + 2 + "fuzz-seed".len(),
        "header + 7-byte body"
    );
    match decode_request(frame) {
        Decoded::Reply(Reply::Close(reason)) => {
            assert!(
                reason.contains("malformed Metadata v4 request body"),
                "{reason}"
            )
        }
        other => panic!("crafted frame was not refused: {}", describe(&other)),
    }
}

#[test]
fn newer_api_versions_request_gets_a_v0_answer() {
    let frame = Bytes::from(seed("request", "ApiVersions-v5-kip511"));
    let Decoded::Reply(Reply::Now(response)) = decode_request(frame) else {
        panic!("KIP-511 ApiVersions must be answered");
    };
    // size, correlation id 5, error code 35 (UNSUPPORTED_VERSION).
    let response = response.to_bytes();
    assert_eq!(&response[4..8], &5i32.to_be_bytes());
    assert_eq!(&response[8..10], &35i16.to_be_bytes());
}

#[test]
fn every_request_seed_decodes_without_panicking() {
    for entry in std::fs::read_dir(corpus("request")).expect("request corpus") {
        let path = entry.expect("dir entry").path();
        let frame = Bytes::from(std::fs::read(&path).expect("read seed"));
        // Any outcome but a panic: unserved versions and hostile frames are refused.
        let _ = decode_request(frame);
    }
}

#[test]
fn rdkafka_batches_of_every_codec_validate() {
    for (codec, id) in [
        ("none", 0),
        ("gzip", 1),
        ("snappy", 2),
        ("lz4", 3),
        ("zstd", 4),
    ] {
        let data = seed("record_batch", &format!("rdkafka-{codec}"));
        // The first byte is the fuzz target's mode (0: default limit, CRC as stored).
        let batch = &data[1..];
        assert_eq!(batch[22] & 7, id, "{codec} seed carries its codec");
        let summary = validate_batches(batch, MAX_MESSAGE_BYTES)
            .unwrap_or_else(|e| panic!("{codec} seed rejected: {e}"));
        assert_eq!(summary.batch_count, 1);
        assert!(summary.record_count >= 1);
    }
}

#[test]
fn hostile_batch_seeds_are_rejected() {
    for name in ["negative-length", "record-count-mismatch", "truncated"] {
        let data = seed("record_batch", name);
        assert!(
            matches!(
                validate_batches(&data[1..], MAX_MESSAGE_BYTES),
                Err(LogError::CorruptMessage(_))
            ),
            "{name} accepted"
        );
    }
    let data = seed("record_batch", "over-small-limit");
    assert!(matches!(
        validate_batches(&data[1..], 64),
        Err(LogError::MessageTooLarge { .. })
    ));
}

#[test]
fn group_record_seed_walks_to_its_records() {
    let data = seed("group_records", "walk-batch");
    let walked = walk_batches(&Bytes::copy_from_slice(&data[1..]));
    assert!(walked.problems.is_empty(), "{:?}", walked.problems);
    assert_eq!(walked.records.len(), 3);
    let key = walked.records[1].key.as_ref().expect("group metadata key");
    assert_eq!(
        decode_key(key),
        Ok(GroupRecordKey::GroupMetadata {
            group: "g".to_string()
        })
    );
    assert!(walked.records[2].value.is_none(), "tombstone");
}

fn describe(d: &Decoded) -> String {
    match d {
        Decoded::Request {
            api_key,
            request: Body::Current(_),
            ..
        } => format!("decoded as {api_key:?}"),
        Decoded::Request {
            api_key,
            request: Body::Legacy(_),
            ..
        } => format!("decoded as legacy {api_key:?}"),
        Decoded::Reply(r) => format!("{r:?}"),
    }
}
