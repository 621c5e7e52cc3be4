//! The questions every client-facing answer asks of the metadata image about brokers (Kafka's
//! `KRaftMetadataCache`): which brokers are alive, where a client reaches one on the listener its request
//! came in on, who leads a partition, and which broker to name as the controller.
//!
//! A broker is alive when it is registered and not fenced. A client is only ever given an endpoint of the
//! listener it is connected to: a broker without that listener is left out, as Kafka leaves it out.

use crate::cluster::image::NO_LEADER;
use crate::cluster::{BrokerRegistration, MetadataImage};

/// A broker as a client reaches it on one listener (Kafka's `Node`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub id: i32,
    pub host: String,
    pub port: u16,
    pub rack: Option<String>,
    pub fenced: bool,
}

impl Node {
    /// `broker`'s endpoint on `listener`, fenced or not; None when it has no such listener.
    pub fn of(broker: &BrokerRegistration, listener: &str) -> Option<Node> {
        let endpoint = broker.endpoints.iter().find(|e| e.listener == listener)?;
        Some(Node {
            id: broker.id,
            host: endpoint.host.clone(),
            port: endpoint.port,
            rack: broker.rack.clone(),
            fenced: broker.fenced,
        })
    }
}

/// Broker `id` on `listener` if it is registered, unfenced and has that listener.
pub fn alive_broker_node(image: &MetadataImage, id: i32, listener: &str) -> Option<Node> {
    image
        .broker(id)
        .filter(|b| !b.fenced)
        .and_then(|b| Node::of(b, listener))
}

/// Every unfenced broker that has `listener`, by id.
pub fn alive_broker_nodes(image: &MetadataImage, listener: &str) -> Vec<Node> {
    image
        .live_brokers()
        .filter_map(|b| Node::of(b, listener))
        .collect()
}

/// Every registered broker that has `listener`, fenced ones included, by id (DescribeCluster v2).
pub fn broker_nodes(image: &MetadataImage, listener: &str) -> Vec<Node> {
    image
        .brokers()
        .filter_map(|b| Node::of(b, listener))
        .collect()
}

/// The broker clients are told is the controller. Under KRaft, brokers forward admin requests to the
/// quorum themselves, so Kafka names any live broker (a random one per request); brook names the lowest
/// live broker id of the image, so that every answer from one image agrees. -1 when no broker is alive.
pub fn controller_id(image: &MetadataImage) -> i32 {
    image.live_brokers().next().map_or(-1, |b| b.id)
}

/// Where a client should send a partition's requests instead (KIP-951): its leader and leader epoch from
/// the image, with the leader's endpoint on the client's listener when the leader is alive and has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaderHint {
    pub leader_id: i32,
    pub leader_epoch: i32,
    pub node: Option<Node>,
}

/// The leader of `topic`-`partition` as the image says (-1, -1 for a partition the image does not know).
pub fn current_leader(
    image: &MetadataImage,
    topic: &str,
    partition: i32,
    listener: &str,
) -> LeaderHint {
    let Some(registration) = image.topic(topic).and_then(|t| t.partition(partition)) else {
        return LeaderHint {
            leader_id: NO_LEADER,
            leader_epoch: -1,
            node: None,
        };
    };
    LeaderHint {
        leader_id: registration.leader,
        leader_epoch: registration.leader_epoch,
        node: alive_broker_node(image, registration.leader, listener),
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::sync::Arc;

    use crate::cluster::{BrokerEndpoint, BrokerRegistration};

    /// A broker registration with one PLAINTEXT endpoint per `(listener, port)`.
    pub fn broker(id: i32, fenced: bool, listeners: &[(&str, u16)]) -> Arc<BrokerRegistration> {
        Arc::new(BrokerRegistration {
            id,
            endpoints: listeners
                .iter()
                .map(|(listener, port)| BrokerEndpoint {
                    listener: listener.to_string(),
                    security_protocol: "PLAINTEXT".into(),
                    host: format!("broker{id}.test"),
                    port: *port,
                })
                .collect(),
            rack: Some(format!("rack{id}")),
            fenced,
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::broker;
    use super::*;
    use crate::cluster::MetadataDelta;

    #[test]
    fn only_live_brokers_with_the_listener_are_offered() {
        let image = MetadataImage::default().apply(&MetadataDelta {
            brokers: vec![
                broker(3, false, &[("PLAINTEXT", 9093)]),
                broker(1, true, &[("PLAINTEXT", 9091)]),
                broker(2, false, &[("INTERNAL", 9192), ("PLAINTEXT", 9092)]),
                broker(4, false, &[("INTERNAL", 9194)]),
            ],
            ..Default::default()
        });
        let ids = |nodes: Vec<Node>| nodes.iter().map(|n| n.id).collect::<Vec<_>>();
        assert_eq!(ids(alive_broker_nodes(&image, "PLAINTEXT")), [2, 3]);
        assert_eq!(ids(alive_broker_nodes(&image, "INTERNAL")), [2, 4]);
        assert_eq!(ids(broker_nodes(&image, "PLAINTEXT")), [1, 2, 3]);
        let two = alive_broker_node(&image, 2, "PLAINTEXT").unwrap();
        assert_eq!((two.host.as_str(), two.port), ("broker2.test", 9092));
        assert_eq!(alive_broker_node(&image, 1, "PLAINTEXT"), None, "fenced");
        assert_eq!(
            alive_broker_node(&image, 4, "PLAINTEXT"),
            None,
            "no listener"
        );
        assert_eq!(alive_broker_node(&image, 9, "PLAINTEXT"), None, "unknown");
        assert_eq!(controller_id(&image), 2, "lowest live id");
        assert_eq!(controller_id(&MetadataImage::default()), -1);
    }
}
