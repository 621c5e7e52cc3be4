//! The client against fake brokers on ephemeral ports: each test scripts what the peer does with the
//! frames it reads.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::api_versions_response::{ApiVersion, ApiVersionsResponse};
use kafka_protocol::messages::write_txn_markers_request::WritableTxnMarker;
use kafka_protocol::messages::write_txn_markers_response::WritableTxnMarkerResult;
use kafka_protocol::messages::{
    ProducerId, RequestHeader, ResponseHeader, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

const DEADLINE: Duration = Duration::from_secs(10);

/// One accepted connection of a fake broker.
struct Peer {
    stream: TcpStream,
}

impl Peer {
    /// The next request's header and body; None at EOF.
    async fn read(&mut self) -> Option<(RequestHeader, Bytes)> {
        let size = self.stream.read_i32().await.ok()?;
        let mut frame = vec![0u8; size as usize];
        self.stream.read_exact(&mut frame).await.ok()?;
        let mut frame = Bytes::from(frame);
        let key = (&frame[..2]).get_i16();
        let version = (&frame[2..4]).get_i16();
        let header_version = kafka_protocol::messages::ApiKey::try_from(key)
            .unwrap()
            .request_header_version(version);
        let header = RequestHeader::decode(&mut frame, header_version).unwrap();
        Some((header, frame))
    }

    async fn write<M: Encodable>(
        &mut self,
        correlation_id: i32,
        header_version: i16,
        body: &M,
        version: i16,
    ) {
        let mut frame = BytesMut::new();
        frame.put_i32(0);
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut frame, header_version)
            .unwrap();
        body.encode(&mut frame, version).unwrap();
        let size = (frame.len() - 4) as i32;
        frame[..4].copy_from_slice(&size.to_be_bytes());
        self.stream.write_all(&frame).await.unwrap();
    }

    /// Reads the ApiVersions request and answers it with `keys` (api key, min, max).
    async fn handshake(&mut self, keys: &[(i16, i16, i16)]) {
        let (header, _) = self.read().await.expect("ApiVersions");
        assert_eq!(header.request_api_key, 18, "ApiVersions comes first");
        let response = ApiVersionsResponse::default().with_api_keys(
            keys.iter()
                .map(|&(key, min, max)| {
                    ApiVersion::default()
                        .with_api_key(key)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        );
        self.write(
            header.correlation_id,
            0,
            &response,
            header.request_api_version,
        )
        .await;
    }

    /// Reads one WriteTxnMarkers request: its correlation id and the first marker's producer id.
    async fn read_markers(&mut self) -> Option<(i32, i64)> {
        let (header, mut body) = self.read().await?;
        assert_eq!(header.request_api_key, 27);
        let request =
            WriteTxnMarkersRequest::decode(&mut body, header.request_api_version).unwrap();
        Some((header.correlation_id, request.markers[0].producer_id.0))
    }

    /// Answers a WriteTxnMarkers request with `producer_id` echoed.
    async fn answer_markers(&mut self, correlation_id: i32, producer_id: i64) {
        let response = WriteTxnMarkersResponse::default().with_markers(vec![
            WritableTxnMarkerResult::default().with_producer_id(ProducerId(producer_id)),
        ]);
        self.write(correlation_id, 1, &response, 1).await;
    }
}

const KEYS: &[(i16, i16, i16)] = &[(18, 0, 4), (27, 1, 1)];

/// A fake broker on an ephemeral port running `script` on each connection it accepts; counts them.
async fn fake_broker<F, Fut>(script: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(Peer, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let n = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(script(Peer { stream }, n));
        }
    });
    (addr, accepted)
}

fn client_to(addr: &str, tune: impl FnOnce(&mut NetworkClientConfig)) -> Arc<NetworkClient> {
    let mut config = NetworkClientConfig::for_broker(1);
    config.request_timeout = DEADLINE;
    config.reconnect_backoff = Duration::from_millis(50);
    config.reconnect_backoff_max = Duration::from_millis(200);
    tune(&mut config);
    let addr = addr.to_string();
    NetworkClient::new(config, Arc::new(move |_| Ok(addr.clone())))
}

fn markers(producer_id: i64) -> WriteTxnMarkersRequest {
    WriteTxnMarkersRequest::default().with_markers(vec![
        WritableTxnMarker::default().with_producer_id(ProducerId(producer_id)),
    ])
}

fn echoed(response: &WriteTxnMarkersResponse) -> i64 {
    response.markers[0].producer_id.0
}

#[tokio::test]
async fn pipelined_requests_get_their_own_responses_in_any_order() {
    let (addr, _) = fake_broker(|mut peer, _| async move {
        peer.handshake(KEYS).await;
        // All ten arrive before any is answered: they were in flight together.
        let mut received = Vec::new();
        for _ in 0..10 {
            received.push(peer.read_markers().await.unwrap());
        }
        for (correlation_id, producer_id) in received.into_iter().rev() {
            peer.answer_markers(correlation_id, producer_id).await;
        }
        while peer.read().await.is_some() {}
    })
    .await;
    let client = client_to(&addr, |_| {});
    let sends = (0..10).map(|pid| {
        let client = client.clone();
        async move {
            client
                .send_with(2, markers(pid), SendOptions::default())
                .await
        }
    });
    let answers = futures_util::future::join_all(sends).await;
    for (pid, answer) in answers.into_iter().enumerate() {
        let (version, response) = answer.unwrap();
        assert_eq!(version, 1, "the version both support");
        assert_eq!(echoed(&response), pid as i64);
    }
}

#[tokio::test]
async fn in_flight_requests_are_bounded_per_connection() {
    let (addr, _) = fake_broker(|mut peer, _| async move {
        peer.handshake(KEYS).await;
        let first = peer.read_markers().await.unwrap();
        let second = peer.read_markers().await.unwrap();
        // The third waits for a slot: nothing more arrives while two are unanswered.
        let more = tokio::time::timeout(Duration::from_millis(300), peer.read()).await;
        assert!(more.is_err(), "a third request was sent with two in flight");
        peer.answer_markers(first.0, first.1).await;
        let third = peer.read_markers().await.unwrap();
        peer.answer_markers(second.0, second.1).await;
        peer.answer_markers(third.0, third.1).await;
        while peer.read().await.is_some() {}
    })
    .await;
    let client = client_to(&addr, |c| c.max_in_flight = 2);
    let sends = (0..3).map(|pid| {
        let client = client.clone();
        async move { client.send(2, markers(pid)).await }
    });
    let answers = futures_util::future::join_all(sends).await;
    let mut pids: Vec<i64> = answers
        .iter()
        .map(|a| echoed(a.as_ref().unwrap()))
        .collect();
    pids.sort();
    assert_eq!(pids, vec![0, 1, 2]);
}

#[tokio::test]
async fn a_request_times_out_and_the_next_one_uses_a_new_connection() {
    let (addr, accepted) = fake_broker(|mut peer, n| async move {
        peer.handshake(KEYS).await;
        while let Some((correlation_id, pid)) = peer.read_markers().await {
            // The first connection never answers.
            if n > 0 {
                peer.answer_markers(correlation_id, pid).await;
            }
        }
    })
    .await;
    let client = client_to(&addr, |_| {});
    let quick = SendOptions {
        timeout: Some(Duration::from_millis(300)),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let err = client.send_with(2, markers(7), quick).await.unwrap_err();
    assert!(matches!(err, NetworkError::Timeout(_)), "{err:?}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(err.is_retriable());
    let response = client.send(2, markers(8)).await.unwrap();
    assert_eq!(echoed(&response), 8);
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "reconnected once");
}

#[tokio::test]
async fn a_broker_that_comes_up_later_is_reached_after_the_backoff() {
    // A port nobody listens on, for now.
    let addr = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap()
    };
    let client = client_to(&addr.to_string(), |c| {
        c.reconnect_backoff = Duration::from_millis(400);
        c.reconnect_backoff_max = Duration::from_millis(400);
    });
    let err = client.send(2, markers(1)).await.unwrap_err();
    assert!(matches!(err, NetworkError::Connect { .. }), "{err:?}");
    let failed_at = std::time::Instant::now();

    let listener = TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut peer = Peer { stream };
        peer.handshake(KEYS).await;
        while let Some((correlation_id, pid)) = peer.read_markers().await {
            peer.answer_markers(correlation_id, pid).await;
        }
    });
    let response = client.send(2, markers(5)).await.unwrap();
    assert_eq!(echoed(&response), 5);
    // At least the backoff less its jitter (up to 20%).
    assert!(
        failed_at.elapsed() >= Duration::from_millis(300),
        "retried after {:?}",
        failed_at.elapsed()
    );
}

#[tokio::test]
async fn a_dropped_connection_fails_its_requests_and_is_remade() {
    let (addr, accepted) = fake_broker(|mut peer, n| async move {
        peer.handshake(KEYS).await;
        while let Some((correlation_id, pid)) = peer.read_markers().await {
            if n == 0 {
                return; // drops the connection with the request in flight
            }
            peer.answer_markers(correlation_id, pid).await;
        }
    })
    .await;
    let client = client_to(&addr, |_| {});
    let err = client.send(2, markers(1)).await.unwrap_err();
    assert!(matches!(err, NetworkError::Disconnected(_)), "{err:?}");
    let response = client.send(2, markers(2)).await.unwrap();
    assert_eq!(echoed(&response), 2);
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_oversized_response_frame_closes_the_connection() {
    let (addr, _) = fake_broker(|mut peer, _| async move {
        peer.handshake(KEYS).await;
        if peer.read_markers().await.is_some() {
            // Announces 1 GiB; the client must not try to read (or allocate) it.
            peer.stream.write_i32(1 << 30).await.unwrap();
            peer.stream.write_all(&[0u8; 64]).await.unwrap();
        }
        while peer.read().await.is_some() {}
    })
    .await;
    let client = client_to(&addr, |c| c.max_response_bytes = 1 << 20);
    let err = client.send(2, markers(1)).await.unwrap_err();
    assert!(matches!(err, NetworkError::Disconnected(_)), "{err:?}");
}

#[tokio::test]
async fn an_api_the_peer_does_not_serve_is_refused_before_sending() {
    let (addr, _) = fake_broker(|mut peer, _| async move {
        peer.handshake(&[(18, 0, 4)]).await;
        assert!(peer.read().await.is_none(), "nothing is sent");
    })
    .await;
    let client = client_to(&addr, |_| {});
    let err = client.send(2, markers(1)).await.unwrap_err();
    assert!(
        matches!(err, NetworkError::UnsupportedVersion { api_key: 27, .. }),
        "{err:?}"
    );
    assert!(!err.is_retriable());
}

#[tokio::test]
async fn an_older_peer_answers_api_versions_v0_and_is_asked_again() {
    let (addr, _) = fake_broker(|mut peer, _| async move {
        // KIP-511: a v0 body, UNSUPPORTED_VERSION, and the peer's own ApiVersions range.
        let (header, _) = peer.read().await.unwrap();
        assert_eq!(header.request_api_version, 3);
        let refusal = ApiVersionsResponse::default()
            .with_error_code(35)
            .with_api_keys(vec![
                ApiVersion::default()
                    .with_api_key(18)
                    .with_min_version(0)
                    .with_max_version(2),
            ]);
        peer.write(header.correlation_id, 0, &refusal, 0).await;
        let (header, _) = peer.read().await.unwrap();
        assert_eq!(
            header.request_api_version, 2,
            "asked again at the peer's version"
        );
        let keys = ApiVersionsResponse::default().with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(27)
                .with_min_version(1)
                .with_max_version(1),
        ]);
        peer.write(header.correlation_id, 0, &keys, 2).await;
        while let Some((correlation_id, pid)) = peer.read_markers().await {
            peer.answer_markers(correlation_id, pid).await;
        }
    })
    .await;
    let client = client_to(&addr, |_| {});
    assert_eq!(echoed(&client.send(2, markers(3)).await.unwrap()), 3);
}

#[tokio::test]
async fn an_unknown_broker_is_an_error_of_the_address_book() {
    let client = NetworkClient::new(
        NetworkClientConfig::for_broker(1),
        Arc::new(|id| Err(NetworkError::UnknownBroker(id))),
    );
    assert_eq!(
        client.send(9, markers(1)).await.unwrap_err(),
        NetworkError::UnknownBroker(9)
    );
}

#[tokio::test]
async fn a_broker_registered_at_a_new_address_is_reached_there() {
    let script = |mut peer: Peer, _| async move {
        peer.handshake(KEYS).await;
        while let Some((correlation_id, pid)) = peer.read_markers().await {
            peer.answer_markers(correlation_id, pid).await;
        }
    };
    let (first, first_accepted) = fake_broker(script).await;
    let (second, second_accepted) = fake_broker(script).await;
    let current = Arc::new(std::sync::Mutex::new(first));
    let book = current.clone();
    let client = NetworkClient::new(
        NetworkClientConfig::for_broker(1),
        Arc::new(move |_| Ok(book.lock().unwrap().clone())),
    );
    assert_eq!(echoed(&client.send(2, markers(1)).await.unwrap()), 1);
    // A restarted broker registers again with another port; its old connection may well still be open.
    *current.lock().unwrap() = second;
    assert_eq!(echoed(&client.send(2, markers(2)).await.unwrap()), 2);
    assert_eq!(first_accepted.load(Ordering::SeqCst), 1);
    assert_eq!(second_accepted.load(Ordering::SeqCst), 1);
}
