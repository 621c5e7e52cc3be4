//! Request frames through the real `Dispatcher` of a running broker (temp-dir data, one per fuzz process):
//! decoding, routing and every API module, against state that earlier inputs built up (topics, records,
//! groups, committed offsets). Stateful, so a crash may need the inputs before it to reproduce; the
//! `request` target covers decoding alone, deterministically.
//!
//! Invariants: no panic, no abort, no hang (libFuzzer's -timeout); a reply due now, or ready at its first
//! poll, is a well formed frame that echoes the correlation id. A reply that would wait (long-poll fetch,
//! join, acks=-1) is dropped after one poll, as when the client disconnects.
#![no_main]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::OnceLock;

use brook::api::context::SecurityProtocol;
use brook::server::dispatch::Dispatcher;
use brook::server::{Reply, RequestHandler, Session};
use brook::{Broker, Config};
use bytes::{Bytes, BytesMut};
use futures_util::FutureExt;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::{ApiKey, CreateTopicsRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use libfuzzer_sys::fuzz_target;

struct Harness {
    runtime: tokio::runtime::Runtime,
    dispatcher: Dispatcher,
    /// Each input runs on a fresh copy, as if on a new connection.
    session: Session,
    _broker: Broker,
}

static HARNESS: OnceLock<Harness> = OnceLock::new();
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();

extern "C" fn remove_data_dir() {
    if let Some(dir) = DATA_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn harness() -> &'static Harness {
    HARNESS.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("brook-fuzz-dispatch-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        DATA_DIR.set(dir.clone()).expect("set once");
        // SAFETY: registers a plain extern "C" function with no arguments, as atexit requires.
        unsafe { libc::atexit(remove_data_dir) };

        let mut config = Config::new();
        for (key, value) in [
            ("listeners", "PLAINTEXT://127.0.0.1:0"),
            ("log.dirs", dir.to_str().expect("temp dir path is UTF-8")),
            ("offsets.topic.num.partitions", "2"),
            ("group.initial.rebalance.delay.ms", "0"),
        ] {
            config.set(key, value).expect("valid fuzz broker property");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let broker = runtime
            .block_on(Broker::start(config))
            .expect("fuzz broker starts");
        let dispatcher = broker.dispatcher();
        let session = Session::new(
            1,
            "PLAINTEXT".into(),
            SecurityProtocol::Plaintext,
            SocketAddr::from(([127, 0, 0, 1], 40000)),
            SocketAddr::from(([127, 0, 0, 1], 9092)),
        );
        let h = Harness {
            runtime,
            dispatcher,
            session,
            _broker: broker,
        };
        // The seeds' topic: two partitions named "t".
        let _enter = h.runtime.enter();
        let create = CreateTopicsRequest::default()
            .with_topics(vec![
                CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_num_partitions(2)
                    .with_replication_factor(1),
            ])
            .with_timeout_ms(10_000);
        let frame = request_frame(ApiKey::CreateTopics, 5, &create);
        assert!(
            matches!(
                h.dispatcher.handle(frame, &mut h.session.clone()),
                Reply::Now(_)
            ),
            "creating the seed topic"
        );
        h
    })
}

fn request_frame<R: Encodable>(key: ApiKey, version: i16, body: &R) -> Bytes {
    let mut out = BytesMut::new();
    RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(1)
        .encode(&mut out, key.request_header_version(version))
        .expect("header encodes");
    body.encode(&mut out, version).expect("body encodes");
    out.freeze()
}

fuzz_target!(|data: &[u8]| {
    let h = harness();
    let _enter = h.runtime.enter();
    match h
        .dispatcher
        .handle(Bytes::copy_from_slice(data), &mut h.session.clone())
    {
        Reply::Now(out) => check_frame(&out.to_bytes(), data),
        Reply::Later(pending) => {
            if let Some(Some(out)) = pending.now_or_never() {
                check_frame(&out.to_bytes(), data);
            }
        }
        Reply::None | Reply::Close(_) => {}
    }
});

/// A response frame: size prefix equal to the rest, then the request's correlation id.
fn check_frame(out: &[u8], request: &[u8]) {
    assert!(out.len() >= 8, "response frame of {} bytes", out.len());
    let size = i32::from_be_bytes([out[0], out[1], out[2], out[3]]);
    assert_eq!(size as usize, out.len() - 4, "size prefix");
    assert_eq!(&out[4..8], &request[4..8], "correlation id echoed");
}
