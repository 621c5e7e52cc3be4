//! What every API handler knows about the request in front of it: its header and the facts of the session
//! it arrived on. Built once per request by the dispatcher, so authorization, quotas and SASL have a single
//! place to look instead of each handler learning about connections.

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

pub use crate::config::SecurityProtocol;

/// Who a session acts as: a principal type and name, written `Type:name` as in Kafka's ACLs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KafkaPrincipal {
    pub principal_type: Arc<str>,
    pub name: Arc<str>,
}

impl KafkaPrincipal {
    /// `User:ANONYMOUS`: the principal of every unauthenticated (PLAINTEXT) session.
    pub fn anonymous() -> KafkaPrincipal {
        KafkaPrincipal {
            principal_type: Arc::from("User"),
            name: Arc::from("ANONYMOUS"),
        }
    }
}

impl std::fmt::Display for KafkaPrincipal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.principal_type, self.name)
    }
}

/// The client library a session announced in its ApiVersions request (v3 and later, KIP-511).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientSoftware {
    pub name: Arc<str>,
    pub version: Arc<str>,
}

/// One request's header and the facts of its session, handed to every API handler.
#[derive(Debug, Clone)]
pub struct RequestContext {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    /// The header's client id; empty when the client sent null.
    pub client_id: Arc<str>,
    /// The name of the listener the request arrived on.
    pub listener: Arc<str>,
    pub security_protocol: SecurityProtocol,
    pub principal: KafkaPrincipal,
    pub client_address: SocketAddr,
    /// None until the session's ApiVersions v3+ request named it (and for clients that never do).
    pub client_software: Option<ClientSoftware>,
}

impl RequestContext {
    /// The client's host as Kafka reports it in group descriptions: a slash, then the IP address.
    pub fn client_host(&self) -> String {
        format!("/{}", self.client_address.ip())
    }

    /// A context for handler tests: an anonymous PLAINTEXT client on loopback.
    #[doc(hidden)]
    pub fn for_test(api_key: ApiKey, api_version: i16) -> RequestContext {
        RequestContext {
            api_key,
            api_version,
            correlation_id: 0,
            client_id: Arc::from("test"),
            listener: Arc::from("PLAINTEXT"),
            security_protocol: SecurityProtocol::Plaintext,
            principal: KafkaPrincipal::anonymous(),
            client_address: SocketAddr::from(([127, 0, 0, 1], 0)),
            client_software: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn principals_and_protocols_print_under_kafkas_names() {
        assert_eq!(KafkaPrincipal::anonymous().to_string(), "User:ANONYMOUS");
        assert_eq!(SecurityProtocol::default().to_string(), "PLAINTEXT");
        assert_eq!(SecurityProtocol::SaslSsl.to_string(), "SASL_SSL");
    }

    #[test]
    fn client_host_is_the_address_with_a_leading_slash() {
        let mut ctx = RequestContext::for_test(ApiKey::JoinGroup, 5);
        ctx.client_address = "10.1.2.3:4567".parse().expect("literal address");
        assert_eq!(ctx.client_host(), "/10.1.2.3");
    }
}
