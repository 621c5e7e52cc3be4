//! Several named listeners (`listeners` + `listener.security.protocol.map`): every broker listener accepts
//! stock clients, `Broker::local_addr` is the inter-broker one, and a configuration whose keys do not fit
//! together stops the broker before it opens anything.

mod common;

use std::time::Duration;

use brook::{Broker, BrokerError};
use common::*;
use rdkafka::consumer::{BaseConsumer, Consumer};

const TWO_LISTENERS: &[(&str, &str)] = &[
    (
        "listeners",
        "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
    ),
    (
        "listener.security.protocol.map",
        "PLAINTEXT:PLAINTEXT,INTERNAL:PLAINTEXT",
    ),
    ("inter.broker.listener.name", "INTERNAL"),
    ("broker.rack", "rack-a"),
];

/// The brokers (id, host, port) a Metadata request through `bootstrap` returns.
fn metadata_brokers(bootstrap: &str) -> Vec<(i32, String, i32)> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "listeners-test")
        .create()
        .expect("consumer");
    let metadata = blocking(|| consumer.fetch_metadata(None, Duration::from_secs(20)))
        .unwrap_or_else(|e| panic!("metadata through {bootstrap}: {e}"));
    metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.host().to_string(), b.port()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broker_listener_serves_clients() {
    let b = start_broker(TWO_LISTENERS).await;
    let plaintext = b
        .broker
        .listener_addr("PLAINTEXT")
        .expect("PLAINTEXT is a broker listener");
    let internal = b
        .broker
        .listener_addr("internal")
        .expect("listener names are matched in any case");
    assert_ne!(plaintext.port(), internal.port(), "two ephemeral ports");
    assert_eq!(
        b.broker.local_addr(),
        internal,
        "local_addr is the inter-broker listener"
    );
    assert_eq!(b.broker.listener_addr("CONTROLLER"), None);

    // Metadata answers by listener, as Kafka: each names the broker by its endpoint on the listener the
    // request came in on.
    for addr in [plaintext, internal] {
        let brokers = metadata_brokers(&addr.to_string());
        assert_eq!(
            brokers,
            [(1, "127.0.0.1".to_string(), i32::from(addr.port()))],
            "through {addr}"
        );
    }

    // A client that bootstraps through one listener produces and consumes like any other.
    create_topic(&internal.to_string(), "through-internal", 1).await;
    wait_for_partitions(&plaintext.to_string(), "through-internal", 1).await;
    b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inconsistent_configuration_stops_the_broker_before_it_binds() {
    init_tracing();
    let tmp = tempfile::tempdir().expect("temp dir");
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[(
                "listeners",
                "PLAINTEXT://127.0.0.1:0,INTERNAL://127.0.0.1:0",
            )],
            "No security protocol defined for listener INTERNAL",
        ),
        (
            &[
                ("process.roles", "broker,controller"),
                ("node.id", "1"),
                ("controller.quorum.voters", "2@127.0.0.1:9093"),
                (
                    "listeners",
                    "PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:9093",
                ),
                ("controller.listener.names", "CONTROLLER"),
            ],
            "the node id 1 must be included in the set of voters",
        ),
    ];
    for (i, (overrides, expected)) in cases.iter().enumerate() {
        let data = tmp.path().join(format!("data-{i}"));
        let config = base_config(&data, overrides);
        let err = match Broker::start(config).await {
            Ok(broker) => {
                broker.shutdown().await.expect("shutdown");
                panic!("{overrides:?} started");
            }
            Err(e) => e,
        };
        assert!(
            matches!(err, BrokerError::Config(_)) && err.to_string().contains(expected),
            "{overrides:?}: {err}"
        );
        assert!(
            !data.exists(),
            "nothing is written for a refused configuration"
        );
    }
}
