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
    /// Reads the directory's identity, or creates one with a fresh cluster id. A directory that belongs to
    /// another node id is refused, as Kafka does, so two brokers never share data by mistake.
    /// The data directory's identity, None when it has none yet (a cluster member records the id its
    /// quorum agreed on, [`Self::store`]). A file of another node is refused.
    pub fn load(dir: &Path) -> Result<Option<MetaProperties>, MetadataError> {
        if !dir.join(FILE_NAME).exists() {
            return Ok(None);
        }
        let node_id = Self::stored_node_id(dir)?;
        Self::load_or_create(dir, node_id).map(Some)
    }

    fn stored_node_id(dir: &Path) -> Result<i32, MetadataError> {
        let path = dir.join(FILE_NAME);
        let text = std::fs::read_to_string(&path)?;
        text.lines()
            .find_map(|l| {
                l.trim()
                    .strip_prefix("node.id=")
                    .and_then(|v| v.parse().ok())
            })
            .ok_or_else(|| MetadataError::Corrupt(format!("{}: no node.id", path.display())))
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

    pub fn load_or_create(dir: &Path, node_id: i32) -> Result<MetaProperties, MetadataError> {
        let path = dir.join(FILE_NAME);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let mut cluster_id = None;
                let mut stored_node = None;
                for line in text.lines().map(str::trim) {
                    if let Some(v) = line.strip_prefix("cluster.id=") {
                        cluster_id = Some(v.to_string());
                    } else if let Some(v) = line.strip_prefix("node.id=") {
                        stored_node = v.parse::<i32>().ok();
                    }
                }
                let cluster_id = cluster_id.filter(|c| !c.is_empty()).ok_or_else(|| {
                    MetadataError::Corrupt(format!("{}: no cluster.id", path.display()))
                })?;
                match stored_node {
                    Some(n) if n == node_id => Ok(MetaProperties {
                        cluster_id,
                        node_id,
                    }),
                    Some(n) => Err(MetadataError::Corrupt(format!(
                        "{} belongs to node.id={n}, but this broker is node.id={node_id}",
                        path.display()
                    ))),
                    None => Err(MetadataError::Corrupt(format!(
                        "{}: no node.id",
                        path.display()
                    ))),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let props = MetaProperties {
                    cluster_id: new_cluster_id(),
                    node_id,
                };
                let text = format!(
                    "#\n#brook\nversion=1\ncluster.id={}\nnode.id={}\n",
                    props.cluster_id, props.node_id
                );
                write_atomically(&path, text.as_bytes())?;
                Ok(props)
            }
            Err(e) => Err(MetadataError::Io(e)),
        }
    }
}

/// A random 16-byte id in Kafka's printable form: URL-safe base64 without padding (22 characters).
pub fn new_cluster_id() -> String {
    base64_url(uuid::Uuid::new_v4().as_bytes())
}

fn base64_url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | (b as u32) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..chars {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
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

    #[test]
    fn base64_matches_rfc4648_url_alphabet() {
        assert_eq!(base64_url(b"\xfb\xff"), "-_8");
        assert_eq!(base64_url(b"Man"), "TWFu");
    }
}
