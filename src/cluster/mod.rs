//! The cluster's metadata: the [`MetadataImage`] everyone reads (topics, partitions with their leaders and
//! epochs, brokers, configs), the store that produces its deltas on a single node, and this broker's identity.

pub mod dynamic_config;
pub mod group_config;
pub mod image;
pub mod meta_properties;
pub mod metadata_store;
pub mod producer_ids;
pub mod topic_config;
pub mod topic_name;

pub use image::{
    BrokerEndpoint, BrokerRegistration, MetadataDelta, MetadataImage, OFFSETS_TOPIC,
    PartitionRegistration, TRANSACTION_STATE_TOPIC, TopicDelta, TopicImage,
};
pub use meta_properties::MetaProperties;
pub use metadata_store::{
    MetadataChange, MetadataError, MetadataPublisher, MetadataStore, MetadataWriter,
};
pub use producer_ids::{ProducerIdError, ProducerIdManager};
