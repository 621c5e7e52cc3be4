//! Topics, partitions and this broker's identity. Single node for now (design.md section 6).

pub mod dynamic_config;
pub mod group_config;
pub mod meta_properties;
pub mod metadata_store;
pub mod topic_config;
pub mod topic_name;

pub use meta_properties::MetaProperties;
pub use metadata_store::{MetadataError, MetadataStore, TopicMetadata};
