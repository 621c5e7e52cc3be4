//! Decodes a request frame, routes it to its API module and encodes the response frame.
//!
//! Runs on the connection's reader task, in request order: the synchronous part of every request (appends,
//! topic changes) takes effect in the order the client sent it, and only waiting (long polls, acks=-1) is
//! left to the returned future.

use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, FetchResponse, RequestHeader, RequestKind, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};
use tracing::Instrument;

use super::fetch_frame::encode_fetch_frame;
use super::{ConnectionContext, Frame, Reply, RequestHandler};
use crate::api::fetch::FetchOutcome;
use crate::api::produce::ProduceOutcome;
use crate::api::{self, Apis, api_versions};

/// Routes requests to the API modules.
pub struct Dispatcher {
    apis: Arc<Apis>,
}

impl Dispatcher {
    pub fn new(apis: Arc<Apis>) -> Dispatcher {
        Dispatcher { apis }
    }
}

/// The fixed start of every request header: api key, api version, correlation id.
const MIN_HEADER_BYTES: usize = 8;

impl RequestHandler for Dispatcher {
    fn handle(&self, frame: Bytes, ctx: &ConnectionContext) -> Reply {
        if frame.len() < MIN_HEADER_BYTES {
            return Reply::Close(format!(
                "request of {} bytes is shorter than a request header",
                frame.len()
            ));
        }
        let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
        let version = i16::from_be_bytes([frame[2], frame[3]]);
        let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
        let Ok(api_key) = ApiKey::try_from(raw_key) else {
            return Reply::Close(format!("unknown api key {raw_key}"));
        };
        if !api_versions::is_served(api_key, version) {
            if api_key == ApiKey::ApiVersions {
                // KIP-511: answer a newer ApiVersions with a v0 body so the client can pick a version we know.
                return respond(
                    correlation_id,
                    0,
                    &api_versions::unsupported_version_response(),
                );
            }
            if api_key == ApiKey::Produce
                && (0..api_versions::PRODUCE_UNSERVED_BELOW).contains(&version)
            {
                return legacy_produce(frame, correlation_id, version);
            }
            return Reply::Close(format!("unsupported request {api_key:?} version {version}"));
        }

        let mut body = frame;
        let header = match RequestHeader::decode(&mut body, api_key.request_header_version(version))
        {
            Ok(header) => header,
            Err(e) => {
                return Reply::Close(format!(
                    "malformed {api_key:?} v{version} request header: {e}"
                ));
            }
        };
        let request = match RequestKind::decode(api_key, &mut body, version) {
            Ok(request) => request,
            Err(e) => {
                return Reply::Close(format!(
                    "malformed {api_key:?} v{version} request body: {e}"
                ));
            }
        };
        let client_id = header.client_id.as_ref().map(|c| c.as_str()).unwrap_or("");
        let span = tracing::debug_span!(
            "request",
            conn = ctx.id,
            api = ?api_key,
            version,
            correlation_id,
            client_id
        );
        let _entered = span.enter();
        tracing::trace!("handling request");
        let client = api::groups::Client {
            client_id,
            host: format!("/{}", ctx.peer.ip()),
        };
        self.route(request, version, correlation_id, client, &span)
    }
}

impl Dispatcher {
    fn route(
        &self,
        request: RequestKind,
        version: i16,
        correlation_id: i32,
        client: api::groups::Client<'_>,
        span: &tracing::Span,
    ) -> Reply {
        let apis = &self.apis;
        match request {
            RequestKind::ApiVersions(req) => {
                respond(correlation_id, version, &api_versions::handle(&req))
            }
            RequestKind::Metadata(req) => respond(
                correlation_id,
                version,
                &api::metadata::handle(apis, &req, version),
            ),
            RequestKind::Produce(req) => match api::produce::handle(apis, req) {
                ProduceOutcome::NoResponse { failed: None } => Reply::None,
                ProduceOutcome::NoResponse {
                    failed: Some(reason),
                } => Reply::Close(format!(
                    "acks=0 produce failed ({reason}); closing so the producer notices"
                )),
                ProduceOutcome::Respond(response) => respond(correlation_id, version, &response),
                ProduceOutcome::Wait(pending) => later(correlation_id, version, pending, span),
            },
            RequestKind::Fetch(req) => match api::fetch::handle(apis, req) {
                FetchOutcome::Respond(response) => {
                    respond_fetch(correlation_id, version, &response)
                }
                FetchOutcome::Wait(pending) => later_fetch(correlation_id, version, pending, span),
            },
            RequestKind::FindCoordinator(req) => respond(
                correlation_id,
                version,
                &api::find_coordinator::handle(apis, &req, version),
            ),
            RequestKind::ListOffsets(req) => respond(
                correlation_id,
                version,
                &api::list_offsets::handle(apis, &req, version),
            ),
            RequestKind::CreateTopics(req) => respond(
                correlation_id,
                version,
                &api::topics::create_topics(apis, req, version),
            ),
            RequestKind::DeleteTopics(req) => respond(
                correlation_id,
                version,
                &api::topics::delete_topics(apis, req, version),
            ),
            RequestKind::JoinGroup(req) => outcome(
                correlation_id,
                version,
                api::groups::join_group(apis, req, version, client),
                span,
            ),
            RequestKind::SyncGroup(req) => outcome(
                correlation_id,
                version,
                api::groups::sync_group(apis, req),
                span,
            ),
            RequestKind::Heartbeat(req) => {
                respond(correlation_id, version, &api::groups::heartbeat(apis, &req))
            }
            RequestKind::LeaveGroup(req) => respond(
                correlation_id,
                version,
                &api::groups::leave_group(apis, &req, version),
            ),
            RequestKind::ListGroups(req) => respond(
                correlation_id,
                version,
                &api::groups::list_groups(apis, &req),
            ),
            RequestKind::DescribeGroups(req) => respond(
                correlation_id,
                version,
                &api::groups::describe_groups(apis, &req, version),
            ),
            RequestKind::DeleteGroups(req) => outcome(
                correlation_id,
                version,
                api::groups::delete_groups(apis, &req),
                span,
            ),
            RequestKind::OffsetCommit(req) => outcome(
                correlation_id,
                version,
                api::offsets::offset_commit(apis, req),
                span,
            ),
            RequestKind::OffsetFetch(req) => respond(
                correlation_id,
                version,
                &api::offsets::offset_fetch(apis, &req, version),
            ),
            RequestKind::OffsetDelete(req) => outcome(
                correlation_id,
                version,
                api::offsets::offset_delete(apis, &req),
                span,
            ),
            RequestKind::DescribeConfigs(req) => respond(
                correlation_id,
                version,
                &api::configs::describe_configs(apis, &req, version),
            ),
            RequestKind::AlterConfigs(req) => respond(
                correlation_id,
                version,
                &api::configs::alter_configs(apis, &req),
            ),
            RequestKind::IncrementalAlterConfigs(req) => respond(
                correlation_id,
                version,
                &api::configs::incremental_alter_configs(apis, &req),
            ),
            RequestKind::CreatePartitions(req) => respond(
                correlation_id,
                version,
                &api::create_partitions::handle(apis, req),
            ),
            RequestKind::DescribeCluster(req) => respond(
                correlation_id,
                version,
                &api::describe_cluster::handle(apis, &req, version),
            ),
            RequestKind::DescribeLogDirs(req) => respond(
                correlation_id,
                version,
                &api::describe_log_dirs::handle(apis, &req),
            ),
            RequestKind::OffsetForLeaderEpoch(req) => respond(
                correlation_id,
                version,
                &api::offset_for_leader_epoch::handle(apis, &req),
            ),
            // Only a bug can get here: `api_versions::is_served` admits advertised APIs only.
            RequestKind::DeleteRecords(req) => respond(
                correlation_id,
                version,
                &api::delete_records::handle(apis, &req),
            ),
            _ => Reply::Close("request is advertised but not routed".to_string()),
        }
    }
}

/// Produce v0-2: every partition is answered UNSUPPORTED_VERSION (see `api::produce_legacy`).
fn legacy_produce(frame: Bytes, correlation_id: i32, version: i16) -> Reply {
    let mut body = frame;
    // These versions use request header v1: api key, version, correlation id, nullable client id.
    if let Err(e) = RequestHeader::decode(&mut body, 1) {
        return Reply::Close(format!("malformed Produce v{version} request header: {e}"));
    }
    match api::produce_legacy::unsupported_version_frame(correlation_id, version, body) {
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
    R: Encodable + HeaderVersion + Send + 'static,
{
    match outcome {
        api::groups::Outcome::Respond(response) => respond(correlation_id, version, &response),
        api::groups::Outcome::Wait(pending) => later(correlation_id, version, pending, span),
    }
}

/// A response computed later, encoded when it is ready.
fn later<R, F>(correlation_id: i32, version: i16, pending: F, span: &tracing::Span) -> Reply
where
    R: Encodable + HeaderVersion + Send + 'static,
    F: std::future::Future<Output = R> + Send + 'static,
{
    Reply::Later(Box::pin(
        async move {
            let response = pending.await;
            match encode_frame(correlation_id, version, &response) {
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

fn respond<R: Encodable + HeaderVersion>(correlation_id: i32, version: i16, response: &R) -> Reply {
    match encode_frame(correlation_id, version, response) {
        Ok(frame) => Reply::Now(frame),
        // Only a bug can make a response we built unencodable; the client cannot be answered correctly.
        Err(e) => Reply::Close(format!("cannot encode response: {e}")),
    }
}

/// A Fetch answered now: its records go out from the buffers they were read into (see `fetch_frame`).
fn respond_fetch(correlation_id: i32, version: i16, response: &FetchResponse) -> Reply {
    match encode_fetch_frame(correlation_id, version, response) {
        Ok(frame) => Reply::Now(frame),
        // Only a bug can make a response we built unencodable; the client cannot be answered correctly.
        Err(e) => Reply::Close(format!("cannot encode response: {e}")),
    }
}

/// A long-poll Fetch, framed like [`respond_fetch`] once it has its answer.
fn later_fetch<F>(correlation_id: i32, version: i16, pending: F, span: &tracing::Span) -> Reply
where
    F: std::future::Future<Output = FetchResponse> + Send + 'static,
{
    Reply::Later(Box::pin(
        async move {
            let response = pending.await;
            match encode_fetch_frame(correlation_id, version, &response) {
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
    fn api_versions_responses_use_header_v0() {
        for version in 0..=4 {
            assert_eq!(ApiVersionsResponse::header_version(version), 0);
        }
    }
}
