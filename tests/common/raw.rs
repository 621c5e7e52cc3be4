//! Raw Kafka protocol for the tests that need frames rdkafka never sends (hostile bodies, unwrapped
//! APIs, exact versions): a pipelining async connection, a blocking one-shot request, and record
//! batch / Produce builders. Frames are built with kafka-protocol's encoders.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream as StdTcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Bound on any single response; only a hung broker reaches it.
pub const IO_LIMIT: Duration = Duration::from_secs(15);
/// Largest response frame the tests accept: anything bigger is a corrupt size prefix.
const MAX_RESPONSE: i32 = 64 * 1024 * 1024;
const CLIENT_ID: &str = "brook-test";

/// Header + body, size-prefixed. `header_api_version` may differ from `body_version` (to claim a
/// version the body was not encoded with).
pub fn encode_request<R: Encodable>(
    key: ApiKey,
    header_api_version: i16,
    body_version: i16,
    correlation_id: i32,
    body: &R,
) -> BytesMut {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(header_api_version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    let mut payload = BytesMut::new();
    header
        .encode(&mut payload, key.request_header_version(header_api_version))
        .expect("encode request header");
    body.encode(&mut payload, body_version)
        .expect("encode request body");
    let mut framed = BytesMut::with_capacity(payload.len() + 4);
    framed.put_i32(payload.len() as i32);
    framed.extend_from_slice(&payload);
    framed
}

/// One client connection speaking raw frames; requests may be pipelined with `send` + `recv`.
pub struct Conn {
    pub stream: TcpStream,
    next_correlation_id: i32,
}

/// How a connection ended up after a request the broker may refuse.
#[derive(Debug)]
pub enum Outcome {
    Closed,
    Answered(i32),
}

impl Conn {
    pub async fn open(addr: &str) -> Conn {
        let stream = TcpStream::connect(addr).await.expect("connect to broker");
        stream.set_nodelay(true).expect("nodelay");
        Conn {
            stream,
            next_correlation_id: 1,
        }
    }

    /// A framed request with the next correlation id (see [`encode_request`]).
    pub fn frame<R: Encodable>(
        &mut self,
        key: ApiKey,
        header_api_version: i16,
        body_version: i16,
        body: &R,
    ) -> (i32, BytesMut) {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id += 1;
        let framed = encode_request(key, header_api_version, body_version, correlation_id, body);
        (correlation_id, framed)
    }

    /// Writes one request; returns its correlation id.
    pub async fn send<R: Encodable>(&mut self, key: ApiKey, version: i16, body: &R) -> i32 {
        let (correlation_id, framed) = self.frame(key, version, version, body);
        self.stream.write_all(&framed).await.expect("write request");
        correlation_id
    }

    /// The next response frame (without its size prefix); `None` when the broker closed.
    pub async fn read_frame(&mut self) -> io::Result<Option<Bytes>> {
        let mut len = [0u8; 4];
        match self.stream.read_exact(&mut len).await {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
            Err(e) => return Err(e),
        }
        let len = i32::from_be_bytes(len);
        assert!(
            (4..=MAX_RESPONSE).contains(&len),
            "response size prefix out of range: {len}"
        );
        let mut body = vec![0u8; len as usize];
        self.stream.read_exact(&mut body).await?;
        Ok(Some(Bytes::from(body)))
    }

    /// Reads one response and decodes it as the answer to (`key`, `version`).
    pub async fn recv<R: Decodable>(&mut self, key: ApiKey, version: i16) -> (i32, R) {
        let mut frame = tokio::time::timeout(IO_LIMIT, self.read_frame())
            .await
            .unwrap_or_else(|_| panic!("no {key:?} response within {IO_LIMIT:?}"))
            .expect("read response")
            .unwrap_or_else(|| panic!("broker closed the connection instead of answering {key:?}"));
        let header = ResponseHeader::decode(&mut frame, key.response_header_version(version))
            .expect("decode response header");
        let body = R::decode(&mut frame, version)
            .unwrap_or_else(|e| panic!("decode {key:?} v{version} response: {e}"));
        (header.correlation_id, body)
    }

    /// One request and its response, checking the correlation id.
    pub async fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        body: &Req,
    ) -> Resp {
        let sent = self.send(key, version, body).await;
        let (got, resp) = self.recv(key, version).await;
        assert_eq!(got, sent, "correlation id of the {key:?} response");
        resp
    }

    /// After a request the broker may refuse: wait for either a close or a response frame.
    pub async fn outcome(&mut self) -> Outcome {
        match tokio::time::timeout(IO_LIMIT, self.read_frame()).await {
            Err(_) => panic!("broker neither answered nor closed within {IO_LIMIT:?}"),
            Ok(Err(_)) | Ok(Ok(None)) => Outcome::Closed,
            Ok(Ok(Some(mut frame))) => Outcome::Answered(frame.get_i32()),
        }
    }
}

/// One request on a fresh blocking connection, answered and fully decoded; `Err` says what failed
/// (for callers that poll a broker that may not be up yet). Not for async contexts: wrap in
/// `blocking`.
pub fn try_request<Req: Encodable, Resp: Decodable>(
    addr: impl ToSocketAddrs,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Result<Resp, String> {
    const CORRELATION_ID: i32 = 7;
    let addr: SocketAddr = addr
        .to_socket_addrs()
        .map_err(|e| format!("resolve: {e}"))?
        .next()
        .ok_or("resolve: no address")?;
    let mut stream = StdTcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| format!("connect: {e}"))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    let frame = encode_request(key, version, version, CORRELATION_ID, body);
    stream
        .write_all(&frame)
        .map_err(|e| format!("write: {e}"))?;
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .map_err(|e| format!("read: {e}"))?;
    let len = i32::from_be_bytes(len);
    if !(4..=MAX_RESPONSE).contains(&len) {
        return Err(format!("response size {len}"));
    }
    let mut response = vec![0u8; len as usize];
    stream
        .read_exact(&mut response)
        .map_err(|e| format!("read: {e}"))?;
    let mut buf = Bytes::from(response);
    let header = ResponseHeader::decode(&mut buf, key.response_header_version(version))
        .map_err(|e| format!("response header: {e}"))?;
    if header.correlation_id != CORRELATION_ID {
        return Err(format!("correlation id {}", header.correlation_id));
    }
    let decoded =
        Resp::decode(&mut buf, version).map_err(|e| format!("decode {key:?} v{version}: {e}"))?;
    if buf.remaining() != 0 {
        return Err(format!(
            "{key:?} v{version} response has {} undecoded bytes",
            buf.remaining()
        ));
    }
    Ok(decoded)
}

/// [`try_request`] that panics on failure.
pub fn request<Req: Encodable, Resp: Decodable>(
    addr: impl ToSocketAddrs,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    try_request(addr, key, version, body).unwrap_or_else(|e| panic!("raw {key:?} request: {e}"))
}

/// A plain (non-transactional, no producer id) record at `offset` within its batch.
pub fn record(offset: i64, timestamp: i64, key: Option<Bytes>, value: Bytes) -> Record {
    Record {
        transactional: false,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: -1,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset,
        sequence: -1,
        timestamp,
        key,
        value: Some(value),
        headers: Default::default(),
    }
}

/// An uncompressed v2 record batch of `records`.
pub fn encode_batch(records: &[Record]) -> Bytes {
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records,
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode record batch");
    buf.freeze()
}

/// A batch of `values` at offsets 0.., stamped 1_700_000_000_000 + offset ms, keyed `key-<offset>`
/// when `keyed`.
pub fn indexed_batch<V: AsRef<[u8]>>(values: &[V], keyed: bool) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let key = keyed.then(|| Bytes::from(format!("key-{i}")));
            let value = Bytes::copy_from_slice(v.as_ref());
            record(i as i64, 1_700_000_000_000 + i as i64, key, value)
        })
        .collect();
    encode_batch(&records)
}

/// A Produce (acks=-1, 10 s timeout) of one batch to `topic`/`partition`.
pub fn produce_request(topic: &str, partition: i32, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(partition)
                        .with_records(Some(records)),
                ]),
        ])
}

/// InitProducerId v4 (without a transactional id: an idempotent producer); panics on an error. Blocking.
pub fn init_producer_id(addr: &str, transactional_id: Option<&str>) -> (i64, i16) {
    use kafka_protocol::messages::{
        InitProducerIdRequest, InitProducerIdResponse, ProducerId, TransactionalId,
    };
    let response: InitProducerIdResponse = request(
        addr,
        ApiKey::InitProducerId,
        4,
        &InitProducerIdRequest::default()
            .with_transactional_id(
                transactional_id.map(|id| TransactionalId(StrBytes::from_string(id.to_string()))),
            )
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    assert_eq!(response.error_code, 0, "InitProducerId");
    (response.producer_id.0, response.producer_epoch)
}

/// A batch of `n` records from producer `pid` at `epoch`, sequences `base_seq..base_seq+n` (wrapping),
/// transactional or only idempotent. Stamped now: a producer whose last timestamp is older than
/// `producer.id.expiration.ms` (a day) is expired, and dropped when a snapshot is loaded, as in Kafka.
pub fn producer_batch(pid: i64, epoch: i16, base_seq: i32, n: i32, transactional: bool) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64;
    let records: Vec<Record> = (0..n)
        .map(|i| Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: -1,
            producer_id: pid,
            producer_epoch: epoch,
            timestamp_type: TimestampType::Creation,
            offset: i64::from(i),
            sequence: base_seq.wrapping_add(i),
            timestamp: now + i64::from(i),
            key: None,
            value: Some(Bytes::from(format!(
                "pid{pid}-e{epoch}-s{}",
                base_seq.wrapping_add(i)
            ))),
            headers: Default::default(),
        })
        .collect();
    encode_batch(&records)
}

/// ListOffsets LATEST (v7) of `topic`/`partition`: the high watermark under isolation 0, the last stable
/// offset under 1 (read_committed); panics on an error. Blocking.
pub fn latest_offset(addr: &str, topic: &str, partition: i32, isolation_level: i8) -> i64 {
    use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
    use kafka_protocol::messages::{BrokerId, ListOffsetsRequest, ListOffsetsResponse};
    let response: ListOffsetsResponse = request(
        addr,
        ApiKey::ListOffsets,
        7,
        &ListOffsetsRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_isolation_level(isolation_level)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(partition)
                            .with_timestamp(-1),
                    ]),
            ]),
    );
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0, "ListOffsets");
    p.offset
}
