//! Decodes a request frame, routes it to its API module and encodes the response frame.
//!
//! Runs on the connection's reader task, in request order: the synchronous part of every request (appends,
//! topic changes) takes effect in the order the client sent it, and only waiting (long polls, acks=-1) is
//! left to the returned future.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tracing::Instrument;

use super::fetch_frame::encode_fetch_reply;
use super::request_metrics;
use super::{Frame, Reply, RequestHandler, Session};
use crate::api::context::RequestContext;
use crate::api::legacy::{self, LegacyError, LegacyRequest};
use crate::api::registry::Answer;
use crate::api::response_metrics::ResponseMetrics;
use crate::api::{self, Apis, api_versions};

/// Routes requests to the API modules.
pub struct Dispatcher {
    apis: Arc<Apis>,
}

impl Dispatcher {
    pub fn new(apis: Arc<Apis>) -> Dispatcher {
        Dispatcher { apis }
    }

    /// The broker state the handlers share: for tests that stand in for the cluster's metadata quorum
    /// (publishing a delta to `metadata`) and look at what the broker made of it.
    #[doc(hidden)]
    pub fn apis(&self) -> &Arc<Apis> {
        &self.apis
    }
}

/// The fixed start of every request header: api key, api version, correlation id.
const MIN_HEADER_BYTES: usize = 8;

/// A request frame decoded exactly as [`Dispatcher`] decodes it, before any API module runs.
#[doc(hidden)]
// Built and consumed once per frame, never stored: boxing the request would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Decoded {
    /// A request for its API module.
    Request {
        api_key: ApiKey,
        version: i16,
        correlation_id: i32,
        header: RequestHeader,
        request: Body,
    },
    /// Answered or refused without an API module: KIP-511 ApiVersions, Produce v0-2, malformed frames.
    Reply(Reply),
}

/// Decodes one request frame (without its size prefix) the way the server does. Public so the fuzz targets
/// run the server's own decoding path on arbitrary bytes, without a socket or a broker.
#[doc(hidden)]
pub fn decode_request(frame: Bytes) -> Decoded {
    if frame.len() < MIN_HEADER_BYTES {
        return Decoded::Reply(Reply::Close(format!(
            "request of {} bytes is shorter than a request header",
            frame.len()
        )));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(api_key) = ApiKey::try_from(raw_key) else {
        return Decoded::Reply(Reply::Close(format!("unknown api key {raw_key}")));
    };
    if !api_versions::is_served(api_key, version) {
        if api_key == ApiKey::ApiVersions {
            // KIP-511: answer a newer ApiVersions with a v0 body so the client can pick a version we know.
            return Decoded::Reply(respond(
                correlation_id,
                0,
                &api_versions::unsupported_version_response(),
            ));
        }
        if api_key == ApiKey::Produce
            && (0..api_versions::PRODUCE_UNSERVED_BELOW).contains(&version)
        {
            return Decoded::Reply(legacy_produce(frame, correlation_id, version));
        }
        return Decoded::Reply(Reply::Close(format!(
            "unsupported request {api_key:?} version {version}"
        )));
    }

    if legacy::is_legacy(api_key, version) {
        return decode_legacy(frame, api_key, version, correlation_id);
    }
    let mut body = frame;
    let header = match RequestHeader::decode(&mut body, api_key.request_header_version(version)) {
        Ok(header) => header,
        Err(e) => {
            return Decoded::Reply(Reply::Close(format!(
                "malformed {api_key:?} v{version} request header: {e}"
            )));
        }
    };
    match RequestKind::decode(api_key, &mut body, version) {
        Ok(request) => Decoded::Request {
            api_key,
            version,
            correlation_id,
            header,
            request: Body::Current(request),
        },
        Err(e) => Decoded::Reply(Reply::Close(format!(
            "malformed {api_key:?} v{version} request body: {e}"
        ))),
    }
}

/// A legacy version's request: header v1 (every removed version predates flexible headers), then the body
/// by `api::legacy`.
fn decode_legacy(frame: Bytes, api_key: ApiKey, version: i16, correlation_id: i32) -> Decoded {
    let mut body = frame;
    let header = match RequestHeader::decode(&mut body, 1) {
        Ok(header) => header,
        Err(e) => {
            return Decoded::Reply(Reply::Close(format!(
                "malformed {api_key:?} v{version} request header: {e}"
            )));
        }
    };
    match legacy::decode(api_key, version, body) {
        Ok(request) => Decoded::Request {
            api_key,
            version,
            correlation_id,
            header,
            request: Body::Legacy(request),
        },
        Err(e) => Decoded::Reply(Reply::Close(format!(
            "malformed {api_key:?} v{version} request body: {e}"
        ))),
    }
}

/// A decoded request body: today's versions by kafka-protocol, the versions Kafka 4 removed by hand.
pub enum Body {
    Current(RequestKind),
    Legacy(LegacyRequest),
}

impl RequestHandler for Dispatcher {
    fn handle(&self, frame: Bytes, session: &mut Session) -> Reply {
        let (api_key, version, correlation_id, header, request) = match decode_request(frame) {
            Decoded::Request {
                api_key,
                version,
                correlation_id,
                header,
                request,
            } => (api_key, version, correlation_id, header, request),
            Decoded::Reply(reply) => return reply,
        };
        if let Body::Current(RequestKind::ApiVersions(req)) = &request {
            // KIP-511: v3+ names the client library; the fields are empty in older versions.
            session
                .observe_client_software(&req.client_software_name, &req.client_software_version);
        }
        let client_id = header.client_id.as_ref().map(|c| c.as_str()).unwrap_or("");
        let ctx = session.request_context(api_key, version, correlation_id, client_id);
        // A child of the connection span (peer, client id). DEBUG, so at the default INFO it is disabled and
        // costs a level check; `RUST_LOG=info,brook::request=debug` turns it (and a line per request) on.
        let span = tracing::debug_span!(
            target: "brook::request",
            "request",
            api = ?api_key,
            version,
            correlation_id
        );
        let _entered = span.enter();
        tracing::debug!(target: "brook::request", "request");
        request_metrics::in_request(&self.apis, api_key, || match request {
            Body::Current(request) => self.route(request, &ctx, &span),
            Body::Legacy(request) => self.route_legacy(request, &ctx, &span),
        })
    }

    fn client_id<'a>(&self, frame: &'a [u8]) -> Option<&'a str> {
        request_client_id(frame)
    }
}

/// Longest client id put in the connection's log lines (Kafka allows 32767 bytes).
const MAX_LOGGED_CLIENT_ID: usize = 256;

/// The client id in a request header, without decoding the body: header v1 and v2 both put it right after
/// the correlation id, as a nullable (non-compact) string. None for null, header v0, or a malformed frame.
fn request_client_id(frame: &[u8]) -> Option<&str> {
    let api_key = ApiKey::try_from(i16::from_be_bytes(*frame.first_chunk::<2>()?)).ok()?;
    let version = i16::from_be_bytes(*frame.get(2..4)?.first_chunk::<2>()?);
    if api_key.request_header_version(version) < 1 {
        return None;
    }
    let len = usize::try_from(i16::from_be_bytes(*frame.get(8..10)?.first_chunk::<2>()?)).ok()?;
    let bytes = frame.get(10..10 + len)?;
    let bytes = &bytes[..len.min(MAX_LOGGED_CLIENT_ID)];
    match std::str::from_utf8(bytes) {
        Ok(id) => Some(id),
        // Cut inside a character by the cap: keep the whole characters before it.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&bytes[..e.valid_up_to()]).ok(),
        Err(_) => None,
    }
}

/// Chooses how a response type becomes a frame: Fetch's records go out from the buffers they were read into.
macro_rules! encoder {
    (Fetch) => {
        encode_fetch_reply
    };
    ($key:ident) => {
        encode_frame
    };
}

/// Expands the registry into [`Dispatcher::route`]: one match arm per registered API.
macro_rules! routes {
    ($($key:ident, $min:literal, $max:literal, $response:ident [$($codes:tt)*], |$apis:ident, $ctx:ident, $req:ident| $answer:expr;)*) => {
        impl Dispatcher {
            fn route(&self, request: RequestKind, ctx: &RequestContext, span: &tracing::Span) -> Reply {
                match request {
                    $(RequestKind::$key($req) => {
                        let $apis: &Arc<Apis> = &self.apis;
                        let $ctx: &RequestContext = ctx;
                        answer(ctx, span, $answer, encoder!($key))
                    })*
                    // Only a bug can get here: `api_versions::is_served` admits registered APIs only.
                    _ => Reply::Close("request is advertised but not routed".to_string()),
                }
            }
        }
    };
}
api::registry::registrations!(routes);

/// Turns a handler's answer into the connection's reply, recording the response in the metrics.
fn answer<R: ResponseMetrics + Send + 'static>(
    ctx: &RequestContext,
    span: &tracing::Span,
    answer: Answer<R>,
    encode: Encode<R>,
) -> Reply {
    let (correlation_id, version) = (ctx.correlation_id, ctx.api_version);
    match answer {
        Answer::Now(response) => respond_with(correlation_id, version, &response, encode),
        Answer::Later(pending) => later_with(correlation_id, version, pending, span, encode),
        Answer::NoResponse(None) => Reply::None,
        Answer::NoResponse(Some(reason)) => Reply::Close(format!(
            "acks=0 produce failed ({reason}); closing so the producer notices"
        )),
    }
}

impl Dispatcher {
    /// Legacy versions: each API module answers as for the oldest version the codec knows, and the answer
    /// goes out in the old format (by the codec where Kafka 3.9's schemas make it byte-identical to a
    /// version the codec knows, by `api::legacy` otherwise).
    fn route_legacy(
        &self,
        request: LegacyRequest,
        ctx: &RequestContext,
        span: &tracing::Span,
    ) -> Reply {
        let apis = &self.apis;
        let correlation_id = ctx.correlation_id;
        match request {
            LegacyRequest::ListOffsetsV0 {
                request,
                max_num_offsets,
            } => legacy_respond(
                correlation_id,
                &api::list_offsets::handle(apis, ctx, &request, 1),
                |r| legacy::list_offsets_v0_response(&request, &max_num_offsets, r),
            ),
            // OffsetCommit responses v0 and v1 are v2's.
            LegacyRequest::OffsetCommitV0(req) => respond(
                correlation_id,
                2,
                &legacy::offset_commit_v0_refusal(apis, &req),
            ),
            LegacyRequest::OffsetCommitV1(req) => outcome(
                correlation_id,
                2,
                api::offsets::offset_commit(apis, ctx, req),
                span,
            ),
            // OffsetFetch's response v0 is v1's.
            LegacyRequest::OffsetFetchV0(req) => {
                respond(correlation_id, 1, &legacy::offset_fetch_v0_refusal(&req))
            }
            LegacyRequest::CreateTopics { version, request } => legacy_respond(
                correlation_id,
                &api::topics::create_topics(apis, ctx, request, 2),
                |r| legacy::create_topics_response(version, r),
            ),
            LegacyRequest::DeleteTopicsV0(req) => legacy_respond(
                correlation_id,
                &api::topics::delete_topics(apis, ctx, req, 1),
                legacy::delete_topics_v0_response,
            ),
            LegacyRequest::DescribeConfigsV0(req) => legacy_respond(
                correlation_id,
                &api::configs::describe_configs(apis, ctx, &req, 1),
                legacy::describe_configs_v0_response,
            ),
            // DescribeLogDirs' response v0 is v1's.
            LegacyRequest::DescribeLogDirsV0(req) => respond(
                correlation_id,
                1,
                &api::describe_log_dirs::handle(apis, ctx, &req),
            ),
            LegacyRequest::OffsetForLeaderEpoch { version, request } => legacy_respond(
                correlation_id,
                &api::offset_for_leader_epoch::handle(apis, ctx, &request),
                |r| legacy::offset_for_leader_epoch_response(version, r),
            ),
        }
    }
}

/// An answer in a legacy format: `encode` writes the body, the frame gets response header v0.
fn legacy_respond<R: ResponseMetrics>(
    correlation_id: i32,
    response: &R,
    encode: impl FnOnce(&R) -> Result<Vec<u8>, LegacyError>,
) -> Reply {
    request_metrics::observe_response(response);
    match encode(response).and_then(|body| legacy::frame(correlation_id, &body)) {
        Ok(frame) => Reply::Now(frame.into()),
        // Only a bug (or a name longer than the wire allows) makes our own answer unencodable.
        Err(e) => Reply::Close(format!("cannot encode legacy response: {e}")),
    }
}

/// Produce v0-2: every partition is answered UNSUPPORTED_VERSION (see `api::legacy`).
fn legacy_produce(frame: Bytes, correlation_id: i32, version: i16) -> Reply {
    let mut body = frame;
    // These versions use request header v1: api key, version, correlation id, nullable client id.
    if let Err(e) = RequestHeader::decode(&mut body, 1) {
        return Reply::Close(format!("malformed Produce v{version} request header: {e}"));
    }
    match legacy::produce_unsupported_version_frame(correlation_id, version, body) {
        Some(Some(frame)) => Reply::Now(frame.into()),
        Some(None) => Reply::None,
        None => Reply::Close(format!("malformed Produce v{version} request body")),
    }
}

/// A group API's answer: now, or once the group (or the offsets topic) gets there.
fn outcome<R>(
    correlation_id: i32,
    version: i16,
    outcome: api::groups::Outcome<R>,
    span: &tracing::Span,
) -> Reply
where
    R: Encodable + HeaderVersion + ResponseMetrics + Send + 'static,
{
    match outcome {
        api::groups::Outcome::Respond(response) => respond(correlation_id, version, &response),
        api::groups::Outcome::Wait(pending) => later(correlation_id, version, pending, span),
    }
}

/// How a response type becomes a frame: [`encode_frame`], or [`encode_fetch_frame`] for Fetch (its records go
/// out from the buffers they were read into).
type Encode<R> = fn(i32, i16, &R) -> anyhow::Result<Frame>;

/// A response computed later, encoded when it is ready.
fn later<R, F>(correlation_id: i32, version: i16, pending: F, span: &tracing::Span) -> Reply
where
    R: Encodable + HeaderVersion + ResponseMetrics + Send + 'static,
    F: std::future::Future<Output = R> + Send + 'static,
{
    later_with(correlation_id, version, pending, span, encode_frame::<R>)
}

fn later_with<R, F>(
    correlation_id: i32,
    version: i16,
    pending: F,
    span: &tracing::Span,
    encode: Encode<R>,
) -> Reply
where
    R: ResponseMetrics + Send + 'static,
    F: std::future::Future<Output = R> + Send + 'static,
{
    let observer = request_metrics::later_observer();
    Reply::Later(Box::pin(
        async move {
            let response = pending.await;
            observer.observe(&response);
            match encode(correlation_id, version, &response) {
                Ok(frame) => Some(frame),
                Err(e) => {
                    tracing::error!(error = %e, "cannot encode response");
                    None
                }
            }
        }
        .instrument(span.clone()),
    ))
}

fn respond<R: Encodable + HeaderVersion + ResponseMetrics>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> Reply {
    respond_with(correlation_id, version, response, encode_frame::<R>)
}

fn respond_with<R: ResponseMetrics>(
    correlation_id: i32,
    version: i16,
    response: &R,
    encode: Encode<R>,
) -> Reply {
    request_metrics::observe_response(response);
    match encode(correlation_id, version, response) {
        Ok(frame) => Reply::Now(frame),
        // Only a bug can make a response we built unencodable; the client cannot be answered correctly.
        Err(e) => Reply::Close(format!("cannot encode response: {e}")),
    }
}

/// Encodes a size-prefixed response frame with the header version the API and version call for.
pub fn encode_frame<R: Encodable + HeaderVersion>(
    correlation_id: i32,
    version: i16,
    response: &R,
) -> anyhow::Result<Frame> {
    let header_version = R::header_version(version);
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    let size = header.compute_size(header_version)? + response.compute_size(version)?;
    let mut buf = BytesMut::with_capacity(4 + size);
    buf.put_i32(size as i32);
    header.encode(&mut buf, header_version)?;
    response.encode(&mut buf, version)?;
    debug_assert_eq!(
        buf.len(),
        4 + size,
        "computed response size must match the encoding"
    );
    Ok(buf.freeze().into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::ApiVersionsResponse;

    #[test]
    fn client_id_is_read_from_the_request_header() {
        let mut frame = vec![0, 18, 0, 3, 0, 0, 0, 7]; // ApiVersions v3, correlation id 7
        frame.extend_from_slice(&5i16.to_be_bytes());
        frame.extend_from_slice(b"kcat!tagged fields and body");
        assert_eq!(request_client_id(&frame), Some("kcat!"));
        frame[8..10].copy_from_slice(&(-1i16).to_be_bytes());
        assert_eq!(request_client_id(&frame), None, "null client id");
        frame[8..10].copy_from_slice(&100i16.to_be_bytes());
        assert_eq!(request_client_id(&frame), None, "longer than the frame");
        assert_eq!(request_client_id(&frame[..9]), None, "truncated header");
    }

    #[test]
    fn logged_client_id_is_capped_at_a_character_boundary() {
        let id = "é".repeat(200); // 400 bytes
        let mut frame = vec![0, 18, 0, 3, 0, 0, 0, 7];
        frame.extend_from_slice(&(id.len() as i16).to_be_bytes());
        frame.extend_from_slice(id.as_bytes());
        assert_eq!(request_client_id(&frame), Some(&id[..MAX_LOGGED_CLIENT_ID]));
        let mut odd = vec![0, 18, 0, 3, 0, 0, 0, 7];
        let id = format!("x{id}");
        odd.extend_from_slice(&(id.len() as i16).to_be_bytes());
        odd.extend_from_slice(id.as_bytes());
        assert_eq!(
            request_client_id(&odd),
            Some(&id[..MAX_LOGGED_CLIENT_ID - 1])
        );
    }

    /// A request frame with header v1 and a 4-byte body: enough for the version check to be the refusal.
    fn header_only(key: ApiKey, version: i16) -> Bytes {
        let mut frame = BytesMut::new();
        frame.put_i16(key as i16);
        frame.put_i16(version);
        frame.put_i32(3);
        frame.put_i16(-1);
        frame.put_i32(0);
        frame.freeze()
    }

    #[test]
    fn unserved_versions_are_refused_with_a_reason() {
        // Every Close reason is logged by the connection before it closes ("protocol violation").
        let mut refused = 0;
        for key in ApiKey::iter() {
            let range = api_versions::supported_range(key);
            let mut versions = vec![-1, 0, key.valid_versions().max + 1, i16::MAX];
            if let Some((min, max)) = range {
                versions.extend([min - 1, max + 1]);
            }
            for version in versions {
                if api_versions::is_served(key, version)
                    || key == ApiKey::ApiVersions
                    || (key == ApiKey::Produce && (0..3).contains(&version))
                {
                    continue;
                }
                match decode_request(header_only(key, version)) {
                    Decoded::Reply(Reply::Close(reason)) => {
                        assert!(
                            reason.contains(&format!("{key:?} version {version}")),
                            "{reason}"
                        );
                        refused += 1;
                    }
                    _ => panic!("{key:?} v{version} was not refused"),
                }
            }
        }
        assert!(refused > 100, "{refused} refusals checked");
        // Too new for ApiVersions: answered (KIP-511) with error 35, not closed.
        let Decoded::Reply(Reply::Now(frame)) =
            decode_request(header_only(ApiKey::ApiVersions, 99))
        else {
            panic!("KIP-511");
        };
        assert_eq!(&frame.to_bytes()[8..10], &35i16.to_be_bytes());
    }

    /// An encoded request frame (without size prefix) as a client would send it.
    pub(crate) fn request_frame<R: Encodable + HeaderVersion>(
        key: ApiKey,
        version: i16,
        correlation_id: i32,
        client_id: &str,
        request: &R,
    ) -> Bytes {
        let header = RequestHeader::default()
            .with_request_api_key(key as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(kafka_protocol::protocol::StrBytes::from_string(
                client_id.to_string(),
            )));
        let mut buf = BytesMut::new();
        header
            .encode(&mut buf, key.request_header_version(version))
            .expect("encode a request header");
        request.encode(&mut buf, version).expect("encode a request");
        buf.freeze()
    }

    pub(crate) fn test_session() -> Session {
        Session::new(
            1,
            std::sync::Arc::from("PLAINTEXT"),
            crate::api::context::SecurityProtocol::Plaintext,
            "127.0.0.1:40000".parse().expect("literal address"),
            "127.0.0.1:9092".parse().expect("literal address"),
        )
    }

    #[tokio::test]
    async fn api_versions_v3_teaches_the_session_its_client_software() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dispatcher = Dispatcher::new(Arc::new(api::test_apis(dir.path())));
        let mut session = test_session();
        let request = kafka_protocol::messages::ApiVersionsRequest::default()
            .with_client_software_name(kafka_protocol::protocol::StrBytes::from_static_str(
                "librdkafka",
            ))
            .with_client_software_version(kafka_protocol::protocol::StrBytes::from_static_str(
                "2.11.1",
            ));
        let frame = request_frame(ApiKey::ApiVersions, 3, 5, "kcat", &request);
        assert!(matches!(
            dispatcher.handle(frame, &mut session),
            Reply::Now(_)
        ));
        let software = session.client_software.clone().expect("recorded");
        assert_eq!(
            (&*software.name, &*software.version),
            ("librdkafka", "2.11.1")
        );
        assert_eq!(session.client_id.as_deref(), Some("kcat"));
        // v0 carries no software fields: what the session learned stays.
        let frame = request_frame(ApiKey::ApiVersions, 0, 6, "kcat", &request);
        assert!(matches!(
            dispatcher.handle(frame, &mut session),
            Reply::Now(_)
        ));
        assert_eq!(session.client_software, Some(software));
    }

    /// A whole connection (reader, dispatcher, writer) over an in-memory stream: the connection does not
    /// depend on TCP, so TLS can wrap the socket underneath it.
    #[tokio::test]
    async fn connection_over_an_in_memory_stream_answers_api_versions() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let dir = tempfile::tempdir().expect("temp dir");
        let handler: Arc<dyn RequestHandler> =
            Arc::new(Dispatcher::new(Arc::new(api::test_apis(dir.path()))));
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let (_stop, shutdown) = tokio::sync::watch::channel(None);
        let settings = (&super::super::ServerLimits::default()).into();
        let connection = tokio::spawn(super::super::connection::serve(
            server,
            test_session(),
            handler,
            settings,
            shutdown,
        ));
        let request = kafka_protocol::messages::ApiVersionsRequest::default();
        let frame = request_frame(ApiKey::ApiVersions, 3, 77, "duplex", &request);
        let mut sized = BytesMut::new();
        sized.put_u32(frame.len() as u32);
        sized.extend_from_slice(&frame);
        client.write_all(&sized).await.expect("send the request");

        let deadline = std::time::Duration::from_secs(10);
        let size = tokio::time::timeout(deadline, client.read_u32())
            .await
            .expect("a response before the deadline")
            .expect("a response size");
        let mut body = vec![0u8; size as usize];
        client
            .read_exact(&mut body)
            .await
            .expect("the response body");
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, 0).expect("response header v0");
        assert_eq!(header.correlation_id, 77);
        let response =
            ApiVersionsResponse::decode(&mut body, 3).expect("an ApiVersions v3 response");
        assert_eq!(response.error_code, 0);
        assert_eq!(response.api_keys.len(), api_versions::SUPPORTED.len());

        drop(client);
        tokio::time::timeout(deadline, connection)
            .await
            .expect("the connection ends when the client goes")
            .expect("the connection task does not panic");
    }

    /// A default request of every registered API, made from the same table the router is.
    macro_rules! default_requests {
        ($($key:ident, $min:literal, $max:literal, $response:ident [$($codes:tt)*], |$apis:ident, $ctx:ident, $req:ident| $answer:expr;)*) => {
            vec![$((ApiKey::$key, $max, RequestKind::$key(Default::default()))),*]
        };
    }

    #[tokio::test]
    async fn every_registered_api_is_routed_to_its_handler() {
        let dir = tempfile::tempdir().expect("temp dir");
        let dispatcher = Dispatcher::new(Arc::new(api::test_apis(dir.path())));
        let requests: Vec<(ApiKey, i16, RequestKind)> =
            api::registry::registrations!(default_requests);
        assert_eq!(requests.len(), api_versions::SUPPORTED.len());
        let span = tracing::Span::none();
        for (key, version, request) in requests {
            assert!(api_versions::supported_range(key).is_some(), "{key:?}");
            let ctx = test_session().request_context(key, version, 1, "t");
            match dispatcher.route(request, &ctx, &span) {
                Reply::Close(reason) => {
                    assert!(!reason.contains("not routed"), "{key:?}: {reason}")
                }
                Reply::Now(_) | Reply::Later(_) | Reply::None => {}
            }
        }
    }

    #[test]
    fn api_versions_responses_use_header_v0() {
        for version in 0..=4 {
            assert_eq!(ApiVersionsResponse::header_version(version), 0);
        }
    }
}
