//! Request frames: arbitrary bytes go through the server's own frame decoding
//! (`brook::server::dispatch::decode_request`, which `Dispatcher::handle` runs on every frame): the header by
//! api key and version, the body with kafka-protocol, the KIP-511 ApiVersions fallback, the hand-decoded
//! Produce v0-2 and the other versions Kafka 4 removed (`api::legacy`). Whatever it answers without an API
//! module is checked as a response frame; a decoded ApiVersions request is answered and encoded as the
//! server would.
//!
//! Invariants: no panic, no abort (crafted array counts are served by the alloc guard without committing
//! memory), only advertised api keys and versions reach an API module, every immediate reply is a well
//! formed frame that echoes the request's correlation id.
#![no_main]

use std::sync::Once;

use brook::api::api_versions;
use brook::api::context::RequestContext;
use brook::server::Reply;
use brook::server::dispatch::{Body, Decoded, decode_request, encode_frame};
use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestKind};
use libfuzzer_sys::fuzz_target;

static GUARD_CHECK: Once = Once::new();

fuzz_target!(|data: &[u8]| {
    GUARD_CHECK.call_once(|| {
        assert!(
            brook::alloc_guard::is_installed(),
            "the alloc guard must be this binary's global allocator, as in the broker"
        );
    });
    let frame = Bytes::copy_from_slice(data);
    match decode_request(frame) {
        Decoded::Reply(Reply::Now(out)) => check_frame(&out.to_bytes(), data),
        Decoded::Reply(Reply::Close(reason)) => {
            assert!(!reason.is_empty(), "a close names its reason")
        }
        Decoded::Reply(Reply::None) => {
            // Only an acks=0 Produce v0-2 gets no answer.
            assert_eq!(
                &data[0..2],
                &0i16.to_be_bytes(),
                "only Produce may go unanswered"
            );
        }
        Decoded::Reply(Reply::Later(_)) => panic!("decoding alone never defers a reply"),
        Decoded::Request {
            api_key,
            version,
            correlation_id,
            request: Body::Legacy(_),
            ..
        } => {
            assert!(
                api_versions::is_served(api_key, version)
                    && brook::api::legacy::is_legacy(api_key, version),
                "{api_key:?} v{version} reached the legacy decoders"
            );
            assert_eq!(i16::from_be_bytes([data[0], data[1]]), api_key as i16);
            assert_eq!(i16::from_be_bytes([data[2], data[3]]), version);
            assert_eq!(
                i32::from_be_bytes([data[4], data[5], data[6], data[7]]),
                correlation_id
            );
        }
        Decoded::Request {
            api_key,
            version,
            correlation_id,
            request: Body::Current(request),
            ..
        } => {
            assert!(
                api_versions::is_served(api_key, version),
                "{api_key:?} v{version} is not advertised but reached routing"
            );
            assert_eq!(i16::from_be_bytes([data[0], data[1]]), api_key as i16);
            assert_eq!(i16::from_be_bytes([data[2], data[3]]), version);
            assert_eq!(
                i32::from_be_bytes([data[4], data[5], data[6], data[7]]),
                correlation_id
            );
            if let Some(kind) = kind_key(&request) {
                assert_eq!(kind, api_key, "body decoded as another api");
            }
            if let RequestKind::ApiVersions(req) = &request {
                let ctx = RequestContext::for_test(api_key, version);
                let out = encode_frame(correlation_id, version, &api_versions::handle(&ctx, req))
                    .expect("an ApiVersions response always encodes");
                check_frame(&out.to_bytes(), data);
            }
        }
    }
});

/// A response frame: size prefix equal to the rest, then the request's correlation id.
fn check_frame(out: &[u8], request: &[u8]) {
    assert!(out.len() >= 8, "response frame of {} bytes", out.len());
    let size = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
    assert_eq!(size as usize, out.len() - 4, "size prefix");
    assert_eq!(&out[4..8], &request[4..8], "correlation id echoed");
}

/// The api key of a decoded body, for the kinds brook can route (None for the others).
fn kind_key(request: &RequestKind) -> Option<ApiKey> {
    Some(match request {
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        RequestKind::ListOffsets(_) => ApiKey::ListOffsets,
        RequestKind::Metadata(_) => ApiKey::Metadata,
        RequestKind::OffsetCommit(_) => ApiKey::OffsetCommit,
        RequestKind::OffsetFetch(_) => ApiKey::OffsetFetch,
        RequestKind::FindCoordinator(_) => ApiKey::FindCoordinator,
        RequestKind::JoinGroup(_) => ApiKey::JoinGroup,
        RequestKind::Heartbeat(_) => ApiKey::Heartbeat,
        RequestKind::LeaveGroup(_) => ApiKey::LeaveGroup,
        RequestKind::SyncGroup(_) => ApiKey::SyncGroup,
        RequestKind::DescribeGroups(_) => ApiKey::DescribeGroups,
        RequestKind::ListGroups(_) => ApiKey::ListGroups,
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::DeleteTopics(_) => ApiKey::DeleteTopics,
        RequestKind::DeleteGroups(_) => ApiKey::DeleteGroups,
        RequestKind::OffsetDelete(_) => ApiKey::OffsetDelete,
        RequestKind::DeleteRecords(_) => ApiKey::DeleteRecords,
        RequestKind::OffsetForLeaderEpoch(_) => ApiKey::OffsetForLeaderEpoch,
        RequestKind::DescribeConfigs(_) => ApiKey::DescribeConfigs,
        RequestKind::AlterConfigs(_) => ApiKey::AlterConfigs,
        RequestKind::IncrementalAlterConfigs(_) => ApiKey::IncrementalAlterConfigs,
        RequestKind::CreatePartitions(_) => ApiKey::CreatePartitions,
        RequestKind::DescribeCluster(_) => ApiKey::DescribeCluster,
        RequestKind::DescribeLogDirs(_) => ApiKey::DescribeLogDirs,
        _ => return None,
    })
}
