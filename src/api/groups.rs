//! The classic group APIs: JoinGroup, SyncGroup, Heartbeat, LeaveGroup, ListGroups, DescribeGroups and
//! DeleteGroups. Each turns the request into a call on the [`GroupCoordinator`](crate::group::coordinator)
//! and the result into a response; JoinGroup and SyncGroup may wait for the rest of the group.

use crate::api::context::RequestContext;
use std::future::Future;
use std::pin::Pin;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse,
    LeaveGroupRequest, LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest,
    SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use super::acl_operations::{ResourceType, authorized_operations};
use crate::group::coordinator::{JoinParams, JoinResult, Pending, SyncParams, SyncResult};

/// A response ready now, or one that resolves once the group gets far enough.
pub enum Outcome<R> {
    Respond(R),
    Wait(Pin<Box<dyn Future<Output = R> + Send>>),
}

/// Who sent the request, for the member's description.
pub struct Client<'a> {
    pub client_id: &'a str,
    pub host: String,
}

fn code(e: Option<ResponseError>) -> i16 {
    e.map(|e| e.code()).unwrap_or(0)
}

fn s(v: &str) -> StrBytes {
    StrBytes::from_string(v.to_string())
}

fn join_response(r: JoinResult, version: i16) -> JoinGroupResponse {
    // Before v7 the protocol name is not nullable.
    let protocol_name = match r.protocol_name {
        Some(p) => Some(s(&p)),
        None if version < 7 => Some(StrBytes::default()),
        None => None,
    };
    JoinGroupResponse::default()
        .with_error_code(code(r.error))
        .with_generation_id(r.generation)
        .with_protocol_type(r.protocol_type.as_deref().map(s))
        .with_protocol_name(protocol_name)
        .with_leader(s(&r.leader))
        .with_skip_assignment(r.skip_assignment && version >= 9)
        .with_member_id(s(&r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(s(&m.member_id))
                        .with_group_instance_id(m.group_instance_id.as_deref().map(s))
                        .with_metadata(m.metadata)
                })
                .collect(),
        )
}

pub fn join_group(
    apis: &Apis,
    _ctx: &RequestContext,
    req: JoinGroupRequest,
    version: i16,
    client: Client<'_>,
) -> Outcome<JoinGroupResponse> {
    let params = JoinParams {
        group_id: req.group_id.0.to_string(),
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        client_id: client.client_id.to_string(),
        client_host: client.host,
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout serves as both.
        rebalance_timeout_ms: if version == 0 {
            req.session_timeout_ms
        } else {
            req.rebalance_timeout_ms
        },
        protocol_type: req.protocol_type.to_string(),
        protocols: req
            .protocols
            .iter()
            .map(|p| (p.name.to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: version >= 4,
    };
    let member_id = params.member_id.clone();
    match apis.groups.join_group(params) {
        Pending::Now(r) => Outcome::Respond(join_response(r, version)),
        Pending::Later(rx) => Outcome::Wait(Box::pin(async move {
            let r = rx
                .await
                .unwrap_or_else(|_| JoinResult::error(ResponseError::NotCoordinator, &member_id));
            join_response(r, version)
        })),
    }
}

fn sync_response(r: SyncResult) -> SyncGroupResponse {
    SyncGroupResponse::default()
        .with_error_code(code(r.error))
        .with_protocol_type(r.protocol_type.as_deref().map(s))
        .with_protocol_name(r.protocol_name.as_deref().map(s))
        .with_assignment(r.assignment)
}

pub fn sync_group(
    apis: &Apis,
    _ctx: &RequestContext,
    req: SyncGroupRequest,
) -> Outcome<SyncGroupResponse> {
    let params = SyncParams {
        group_id: req.group_id.0.to_string(),
        generation: req.generation_id,
        member_id: req.member_id.to_string(),
        group_instance_id: req.group_instance_id.as_ref().map(|i| i.to_string()),
        protocol_type: req.protocol_type.as_ref().map(|t| t.to_string()),
        protocol_name: req.protocol_name.as_ref().map(|t| t.to_string()),
        assignments: req
            .assignments
            .into_iter()
            .map(|a| (a.member_id.to_string(), a.assignment))
            .collect(),
    };
    match apis.groups.sync_group(params) {
        Pending::Now(r) => Outcome::Respond(sync_response(r)),
        Pending::Later(rx) => Outcome::Wait(Box::pin(async move {
            let r = rx.await.unwrap_or_else(|_| SyncResult {
                error: Some(ResponseError::NotCoordinator),
                ..Default::default()
            });
            sync_response(r)
        })),
    }
}

pub fn heartbeat(apis: &Apis, _ctx: &RequestContext, req: &HeartbeatRequest) -> HeartbeatResponse {
    let result = apis.groups.heartbeat(
        req.group_id.0.as_str(),
        req.generation_id,
        req.member_id.as_str(),
        req.group_instance_id.as_ref().map(|i| i.as_str()),
    );
    HeartbeatResponse::default().with_error_code(code(result.err()))
}

pub fn leave_group(
    apis: &Apis,
    _ctx: &RequestContext,
    req: &LeaveGroupRequest,
    version: i16,
) -> LeaveGroupResponse {
    let group = req.group_id.0.as_str();
    if version < 3 {
        let results = apis
            .groups
            .leave_group(group, &[(req.member_id.to_string(), None)]);
        let error = results.into_iter().next().and_then(|r| r.err());
        return LeaveGroupResponse::default().with_error_code(code(error));
    }
    let leaving: Vec<(String, Option<String>)> = req
        .members
        .iter()
        .map(|m| {
            (
                m.member_id.to_string(),
                m.group_instance_id.as_ref().map(|i| i.to_string()),
            )
        })
        .collect();
    let results = apis.groups.leave_group(group, &leaving);
    LeaveGroupResponse::default().with_members(
        req.members
            .iter()
            .zip(results)
            .map(|(m, r)| {
                MemberResponse::default()
                    .with_member_id(m.member_id.clone())
                    .with_group_instance_id(m.group_instance_id.clone())
                    .with_error_code(code(r.err()))
            })
            .collect(),
    )
}

pub fn list_groups(
    apis: &Apis,
    _ctx: &RequestContext,
    req: &ListGroupsRequest,
) -> ListGroupsResponse {
    let states: Vec<String> = req
        .states_filter
        .iter()
        .map(|s| s.to_ascii_lowercase())
        .collect();
    // Every group here is a classic group.
    let classic_wanted = req.types_filter.is_empty()
        || req
            .types_filter
            .iter()
            .any(|t| t.eq_ignore_ascii_case("classic"));
    let groups = if classic_wanted {
        apis.groups
            .list_groups()
            .into_iter()
            .filter(|g| states.is_empty() || states.contains(&g.state.name().to_ascii_lowercase()))
            .map(|g| {
                ListedGroup::default()
                    .with_group_id(GroupId(s(&g.group_id)))
                    .with_protocol_type(s(&g.protocol_type))
                    .with_group_state(StrBytes::from_static_str(g.state.name()))
                    .with_group_type(StrBytes::from_static_str("classic"))
            })
            .collect()
    } else {
        Vec::new()
    };
    ListGroupsResponse::default().with_groups(groups)
}

pub fn describe_groups(
    apis: &Apis,
    _ctx: &RequestContext,
    req: &DescribeGroupsRequest,
    version: i16,
) -> DescribeGroupsResponse {
    let groups = req
        .groups
        .iter()
        .map(|id| {
            let described = DescribedGroup::default().with_group_id(id.clone());
            if let Err(e) = apis.groups.store().check_coordinator(id.0.as_str()) {
                return described.with_error_code(e.code());
            }
            let mut described = match apis.groups.describe_group(id.0.as_str()) {
                Some(d) => described
                    .with_group_state(StrBytes::from_static_str(d.state.name()))
                    .with_protocol_type(s(&d.protocol_type))
                    .with_protocol_data(s(&d.protocol))
                    .with_members(
                        d.members
                            .into_iter()
                            .map(|m| {
                                DescribedGroupMember::default()
                                    .with_member_id(s(&m.member_id))
                                    .with_group_instance_id(m.group_instance_id.as_deref().map(s))
                                    .with_client_id(s(&m.client_id))
                                    .with_client_host(s(&m.client_host))
                                    .with_member_metadata(m.metadata)
                                    .with_member_assignment(m.assignment)
                            })
                            .collect(),
                    ),
                // Kafka answers an unknown group as Dead; from v6 with GROUP_ID_NOT_FOUND as well.
                None => {
                    let dead = described.with_group_state(StrBytes::from_static_str("Dead"));
                    if version >= 6 {
                        dead.with_error_code(ResponseError::GroupIdNotFound.code())
                            .with_error_message(Some(s(&format!(
                                "group {} not found",
                                id.0.as_str()
                            ))))
                    } else {
                        dead
                    }
                }
            };
            // As Kafka: groups answered with an error carry no operations.
            if described.error_code == 0 {
                described.authorized_operations =
                    authorized_operations(ResourceType::Group, req.include_authorized_operations);
            }
            described
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

pub fn delete_groups(
    apis: &Apis,
    _ctx: &RequestContext,
    req: &DeleteGroupsRequest,
) -> Outcome<DeleteGroupsResponse> {
    let mut results = Vec::with_capacity(req.groups_names.len());
    let mut writes = Vec::new();
    for id in &req.groups_names {
        let error = match apis.groups.delete_group(id.0.as_str()) {
            Ok(wait) => {
                writes.push((results.len(), wait));
                None
            }
            Err(e) => Some(e),
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id.clone())
                .with_error_code(code(error)),
        );
    }
    if writes.is_empty() {
        return Outcome::Respond(DeleteGroupsResponse::default().with_results(results));
    }
    Outcome::Wait(Box::pin(async move {
        for (index, wait) in writes {
            if let Err(e) = wait.await {
                // Debug: the cause is logged once where it happens (the log layer).
                tracing::debug!(error = %e, "group deletion not durable");
                if let Some(r) = results.get_mut(index) {
                    r.error_code = ResponseError::CoordinatorNotAvailable.code();
                }
            }
        }
        DeleteGroupsResponse::default().with_results(results)
    }))
}
