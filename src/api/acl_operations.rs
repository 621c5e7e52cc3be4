//! Authorized-operations bitfields (KIP-430): the operations a caller may perform on a resource, answered
//! by Metadata, DescribeGroups and DescribeCluster when the request asks for them.
//!
//! brook has no authorizer yet, and Kafka without one allows every operation a resource type supports
//! (its `AclEntry.supportedOperations`). This is the one place an authorizer will replace.

/// Kafka's AclOperation codes; bit `code` of a bitfield is set when the operation is allowed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum AclOperation {
    Read = 3,
    Write = 4,
    Create = 5,
    Delete = 6,
    Alter = 7,
    Describe = 8,
    ClusterAction = 9,
    DescribeConfigs = 10,
    AlterConfigs = 11,
    IdempotentWrite = 12,
}

/// Kafka's resource types that answer authorized operations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
}

/// Kafka's "authorized operations were not requested" marker (INT32_MIN).
pub const NOT_REQUESTED: i32 = i32::MIN;

impl ResourceType {
    /// The operations Kafka 4.1 defines for this resource type.
    pub fn supported_operations(self) -> &'static [AclOperation] {
        use AclOperation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Describe,
                Delete,
                Alter,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete, DescribeConfigs, AlterConfigs],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
        }
    }
}

/// The bitfield to answer for `resource` when `requested`; [`NOT_REQUESTED`] otherwise. Without an
/// authorizer every supported operation is allowed.
pub fn authorized_operations(resource: ResourceType, requested: bool) -> i32 {
    if !requested {
        return NOT_REQUESTED;
    }
    resource
        .supported_operations()
        .iter()
        .fold(0, |bits, op| bits | (1 << *op as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitfields_match_kafkas_supported_operations() {
        // READ WRITE CREATE DELETE ALTER DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS
        assert_eq!(
            authorized_operations(ResourceType::Topic, true),
            0b1101_1111_1000
        );
        // READ DELETE DESCRIBE DESCRIBE_CONFIGS ALTER_CONFIGS
        assert_eq!(
            authorized_operations(ResourceType::Group, true),
            0b1101_0100_1000
        );
        // CREATE ALTER DESCRIBE CLUSTER_ACTION DESCRIBE_CONFIGS ALTER_CONFIGS IDEMPOTENT_WRITE
        assert_eq!(
            authorized_operations(ResourceType::Cluster, true),
            0b1_1111_1010_0000
        );
        for resource in [
            ResourceType::Topic,
            ResourceType::Group,
            ResourceType::Cluster,
        ] {
            assert_eq!(authorized_operations(resource, false), i32::MIN);
        }
    }
}
