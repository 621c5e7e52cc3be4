//! DescribeLogDirs: the data directory, its partitions' sizes on disk, and (v4) the file system's total and
//! usable bytes.

use crate::api::context::RequestContext;
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::Apis;
use crate::log::TopicPartition;

pub fn handle(
    apis: &Apis,
    _ctx: &RequestContext,
    request: &DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    // None: every partition; otherwise the named ones that this broker has (others are left out, as Kafka).
    let wanted: Vec<(String, Vec<i32>)> = match &request.topics {
        None => apis
            .metadata
            .topics()
            .iter()
            .map(|t| (t.name.clone(), (0..t.partition_count()).collect()))
            .collect(),
        Some(topics) => topics
            .iter()
            .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
            .collect(),
    };
    let topics = wanted
        .into_iter()
        .filter_map(|(name, partitions)| {
            let partitions: Vec<DescribeLogDirsPartition> = partitions
                .into_iter()
                .filter_map(|p| {
                    let log = apis
                        .replicas
                        .partition(&TopicPartition::new(name.clone(), p))?;
                    Some(
                        DescribeLogDirsPartition::default()
                            .with_partition_index(p)
                            .with_partition_size(
                                i64::try_from(log.log().size_bytes()).unwrap_or(i64::MAX),
                            )
                            .with_offset_lag(0)
                            .with_is_future_key(false),
                    )
                })
                .collect();
            (!partitions.is_empty()).then(|| {
                DescribeLogDirsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name)))
                    .with_partitions(partitions)
            })
        })
        .collect();
    let dir = apis.logs.dir();
    let dir_name = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let (total, usable) = disk_space(dir).unwrap_or((-1, -1));
    let result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(dir_name.display().to_string()))
        .with_topics(topics)
        .with_total_bytes(total)
        .with_usable_bytes(usable);
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// Total and available bytes of the file system holding `dir` (statvfs); None when it cannot be asked.
pub fn disk_space(dir: &Path) -> Option<(i64, i64)> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain old data (all-zero is a valid value), written by the call through a valid
    // pointer; the path is a NUL-terminated C string that outlives the call.
    let (rc, stat) = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        (libc::statvfs(path.as_ptr(), &mut stat), stat)
    };
    if rc != 0 {
        return None;
    }
    let block = stat.f_frsize as u128;
    let clamp = |v: u128| i64::try_from(v).unwrap_or(i64::MAX);
    Some((
        clamp(stat.f_blocks as u128 * block),
        clamp(stat.f_bavail as u128 * block),
    ))
}
