//! One client connection's session: what the broker knows about the peer for as long as the connection
//! lasts. Owned by the connection's reader, which hands it to the dispatcher with every frame; the
//! dispatcher copies its facts into each request's [`RequestContext`] and records what requests teach it
//! (the client id, the client software).

use std::net::SocketAddr;
use std::sync::Arc;

use kafka_protocol::messages::ApiKey;

use crate::api::context::{ClientSoftware, KafkaPrincipal, RequestContext, SecurityProtocol};

/// A connection's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Unique per listener, increasing from 1.
    pub id: u64,
    pub listener: Arc<str>,
    pub security_protocol: SecurityProtocol,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// `User:ANONYMOUS` until authentication (SASL, TLS client certificates) exists.
    pub principal: KafkaPrincipal,
    /// The client id of the latest request that named one.
    pub client_id: Option<Arc<str>>,
    /// Learned from the ApiVersions v3+ request (KIP-511).
    pub client_software: Option<ClientSoftware>,
}

impl Session {
    /// A new, anonymous session on a listener.
    pub fn new(
        id: u64,
        listener: Arc<str>,
        security_protocol: SecurityProtocol,
        peer: SocketAddr,
        local: SocketAddr,
    ) -> Session {
        Session {
            id,
            listener,
            security_protocol,
            peer,
            local,
            principal: KafkaPrincipal::anonymous(),
            client_id: None,
            client_software: None,
        }
    }

    /// Remembers a request's client id, reusing the stored one when it did not change (the usual case),
    /// so a request costs no allocation for it.
    pub fn observe_client_id(&mut self, client_id: &str) -> Arc<str> {
        match &self.client_id {
            Some(known) if &**known == client_id => known.clone(),
            _ => {
                let id: Arc<str> = Arc::from(client_id);
                self.client_id = Some(id.clone());
                id
            }
        }
    }

    /// Remembers the client software an ApiVersions request announced. Empty names (clients that send
    /// the field without filling it) are not recorded.
    pub fn observe_client_software(&mut self, name: &str, version: &str) {
        if name.is_empty() {
            return;
        }
        let unchanged = self
            .client_software
            .as_ref()
            .is_some_and(|s| &*s.name == name && &*s.version == version);
        if !unchanged {
            self.client_software = Some(ClientSoftware {
                name: Arc::from(name),
                version: Arc::from(version),
            });
        }
    }

    /// The context of one request on this session.
    pub fn request_context(
        &mut self,
        api_key: ApiKey,
        api_version: i16,
        correlation_id: i32,
        client_id: &str,
    ) -> RequestContext {
        RequestContext {
            api_key,
            api_version,
            correlation_id,
            client_id: self.observe_client_id(client_id),
            listener: self.listener.clone(),
            security_protocol: self.security_protocol,
            principal: self.principal.clone(),
            client_address: self.peer,
            client_software: self.client_software.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session() -> Session {
        Session::new(
            1,
            Arc::from("PLAINTEXT"),
            SecurityProtocol::Plaintext,
            "10.0.0.1:5000".parse().expect("literal address"),
            "10.0.0.2:9092".parse().expect("literal address"),
        )
    }

    #[test]
    fn new_session_is_anonymous() {
        let s = session();
        assert_eq!(s.principal.to_string(), "User:ANONYMOUS");
        assert!(s.client_id.is_none() && s.client_software.is_none());
    }

    #[test]
    fn request_context_carries_the_session_facts() {
        let mut s = session();
        s.observe_client_software("librdkafka", "2.11.1");
        let ctx = s.request_context(ApiKey::Metadata, 12, 42, "kcat");
        assert_eq!(ctx.api_key, ApiKey::Metadata);
        assert_eq!((ctx.api_version, ctx.correlation_id), (12, 42));
        assert_eq!(&*ctx.client_id, "kcat");
        assert_eq!(&*ctx.listener, "PLAINTEXT");
        assert_eq!(ctx.client_address, s.peer);
        assert_eq!(ctx.client_host(), "/10.0.0.1");
        let software = ctx.client_software.expect("software was announced");
        assert_eq!(
            (&*software.name, &*software.version),
            ("librdkafka", "2.11.1")
        );
    }

    #[test]
    fn unchanged_client_id_is_shared_not_copied() {
        let mut s = session();
        let a = s.observe_client_id("app");
        let b = s.observe_client_id("app");
        assert!(Arc::ptr_eq(&a, &b));
        let c = s.observe_client_id("other");
        assert_eq!(&*c, "other");
        assert_eq!(s.client_id.as_deref(), Some("other"));
    }

    #[test]
    fn empty_software_name_is_not_recorded() {
        let mut s = session();
        s.observe_client_software("", "1.0");
        assert!(s.client_software.is_none());
    }
}
