//! `meta.properties`: which cluster and node a data directory belongs to, as Kafka writes it.

use std::path::Path;

use super::metadata_store::{MetadataError, write_atomically};

pub const FILE_NAME: &str = "meta.properties";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MetaProperties {
    pub cluster_id: String,
    pub node_id: i32,
}

impl MetaProperties {
    /// The data directory's identity, None when it has none yet (a cluster member records the id its
    /// quorum agreed on with [`Self::store`]).
    pub fn load(dir: &Path) -> Result<Option<MetaProperties>, MetadataError> {
        let path = dir.join(FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(MetadataError::Io(e)),
        };
        let value = |key: &str| {
            text.lines()
                .map(str::trim)
                .find_map(|line| line.strip_prefix(key))
                .filter(|v| !v.is_empty())
        };
        let missing = |key: &str| MetadataError::Corrupt(format!("{}: no {key}", path.display()));
        let cluster_id = value("cluster.id=").ok_or_else(|| missing("cluster.id"))?;
        let node_id = value("node.id=")
            .and_then(|v| v.parse::<i32>().ok())
            .ok_or_else(|| missing("node.id"))?;
        Ok(Some(MetaProperties {
            cluster_id: cluster_id.to_string(),
            node_id,
        }))
    }

    /// [`Self::load`], refusing a directory that belongs to another node id.
    pub fn load_of_node(dir: &Path, node_id: i32) -> Result<Option<MetaProperties>, MetadataError> {
        match Self::load(dir)? {
            Some(props) if props.node_id != node_id => Err(MetadataError::Corrupt(format!(
                "{} belongs to node.id={}, but this broker is node.id={node_id}",
                dir.join(FILE_NAME).display(),
                props.node_id
            ))),
            found => Ok(found),
        }
    }

    /// Writes `props` as the data directory's identity.
    pub fn store(dir: &Path, props: &MetaProperties) -> Result<(), MetadataError> {
        std::fs::create_dir_all(dir)?;
        let text = format!(
            "#\n#brook\nversion=1\ncluster.id={}\nnode.id={}\n",
            props.cluster_id, props.node_id
        );
        write_atomically(&dir.join(FILE_NAME), text.as_bytes())?;
        Ok(())
    }

    /// Reads the directory's identity, or creates one with a fresh cluster id. A directory that belongs to
    /// another node id is refused, as Kafka does, so two brokers never share data by mistake.
    pub fn load_or_create(dir: &Path, node_id: i32) -> Result<MetaProperties, MetadataError> {
        match Self::load_of_node(dir, node_id)? {
            Some(props) => Ok(props),
            None => {
                let props = MetaProperties {
                    cluster_id: new_cluster_id(),
                    node_id,
                };
                Self::store(dir, &props)?;
                Ok(props)
            }
        }
    }
}

/// A random 16-byte id in Kafka's printable form (URL-safe base64 without padding, 22 characters), as
/// Kafka prints topic ids too.
pub fn new_cluster_id() -> String {
    crate::log::partition_metadata::encode_topic_id(uuid::Uuid::new_v4())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_id_is_kafka_shaped_and_stable() {
        let dir = tempfile::tempdir().unwrap();
        let first = MetaProperties::load_or_create(dir.path(), 1).unwrap();
        assert_eq!(first.cluster_id.len(), 22);
        let again = MetaProperties::load_or_create(dir.path(), 1).unwrap();
        assert_eq!(first, again);
        let err = MetaProperties::load_or_create(dir.path(), 2).unwrap_err();
        assert!(err.to_string().contains("node.id=1"), "{err}");
    }
}
