//! Dynamic broker configs: the `log.*` topic defaults (and the other properties Kafka lets an admin change
//! while the broker runs) set through AlterConfigs / IncrementalAlterConfigs on a BROKER resource.
//!
//! Two scopes, as in Kafka: this broker (resource name = its node id, source DYNAMIC_BROKER_CONFIG) and the
//! cluster-wide default (resource name "", source DYNAMIC_DEFAULT_BROKER_CONFIG). Per-broker values win over
//! the cluster default, both win over server.properties. Kept in `brook-broker-configs.json`, rewritten
//! atomically on every change, and applied again at start.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::MetadataError;
use super::metadata_store::JsonState;

pub const FILE_NAME: &str = "brook-broker-configs.json";

/// Which set of dynamic broker configs a change is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BrokerScope {
    /// This broker only (resource name = node id).
    Broker,
    /// The cluster-wide default (empty resource name).
    ClusterDefault,
}

/// Both scopes' overrides by broker property name.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DynamicConfigs {
    #[serde(default)]
    pub broker: BTreeMap<String, String>,
    #[serde(default)]
    pub cluster_default: BTreeMap<String, String>,
}

impl DynamicConfigs {
    pub fn scope(&self, scope: BrokerScope) -> &BTreeMap<String, String> {
        match scope {
            BrokerScope::Broker => &self.broker,
            BrokerScope::ClusterDefault => &self.cluster_default,
        }
    }
}

/// The persisted dynamic broker configs.
pub struct DynamicConfigStore(JsonState<DynamicConfigs>);

impl DynamicConfigStore {
    /// Loads `<dir>/brook-broker-configs.json`, or starts empty when there is none.
    pub fn open(dir: &Path) -> Result<DynamicConfigStore, MetadataError> {
        JsonState::open(dir.join(FILE_NAME)).map(DynamicConfigStore)
    }

    /// No file: a mirror of the configs the cluster's metadata quorum committed.
    pub fn in_memory() -> DynamicConfigStore {
        DynamicConfigStore(JsonState::in_memory())
    }

    /// Sets the mirror (in a cluster) to what the quorum committed.
    pub fn mirror(&self, configs: DynamicConfigs) {
        let _ = self.0.update(|next| {
            *next = configs;
            Ok(())
        });
    }

    pub fn get(&self) -> DynamicConfigs {
        self.0.read(DynamicConfigs::clone)
    }

    /// Replaces one scope's configs durably.
    pub fn replace(
        &self,
        scope: BrokerScope,
        configs: BTreeMap<String, String>,
    ) -> Result<(), MetadataError> {
        self.0.update(|next| {
            match scope {
                BrokerScope::Broker => next.broker = configs,
                BrokerScope::ClusterDefault => next.cluster_default = configs,
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_configs_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let store = DynamicConfigStore::open(dir.path()).unwrap();
        store
            .replace(
                BrokerScope::ClusterDefault,
                BTreeMap::from([("log.retention.ms".into(), "1000".into())]),
            )
            .unwrap();
        let reopened = DynamicConfigStore::open(dir.path()).unwrap().get();
        assert_eq!(reopened.cluster_default["log.retention.ms"], "1000");
        assert!(reopened.broker.is_empty());
    }
}
