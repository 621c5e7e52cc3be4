//! The metrics settings (`metrics.listener`, `metrics.partition.level.enable`): configuration, so the
//! config layer owns them and the metrics read them.

use super::Endpoint;

/// What the metrics subsystem is told by the broker configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `metrics.listener`: where `GET /metrics` is served; None (an empty value) disables metrics.
    pub listener: Option<Endpoint>,
    /// `metrics.partition.level.enable`: per-partition series (true) or sums per topic (false).
    pub partition_level: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listener: Some(Endpoint {
                host: "127.0.0.1".into(),
                port: 9464,
            }),
            partition_level: true,
        }
    }
}
