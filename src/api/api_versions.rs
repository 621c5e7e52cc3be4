//! ApiVersions: which APIs and versions this broker implements completely.

use kafka_protocol::ResponseError;

use crate::api::context::RequestContext;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};

/// The registered APIs and versions: the table lives in [`super::registry`].
pub use super::registry::SUPPORTED;

/// Produce versions that are advertised for old clients' sake but cannot be served.
pub const PRODUCE_UNSERVED_BELOW: i16 = 3;

/// The advertised range for `key`, if brook answers it at all.
pub fn supported_range(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED
        .iter()
        .find(|(k, _, _)| *k == key)
        .map(|&(_, min, max)| (min, max))
}

/// Whether requests of this key and version can be decoded and answered.
pub fn is_served(key: ApiKey, version: i16) -> bool {
    match supported_range(key) {
        Some((_, max)) if key == ApiKey::Produce => {
            (PRODUCE_UNSERVED_BELOW..=max).contains(&version)
        }
        Some((min, max)) => (min..=max).contains(&version),
        None => false,
    }
}

fn api_list() -> Vec<ApiVersion> {
    SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default()
                .with_api_key(key as i16)
                .with_min_version(min)
                .with_max_version(max)
        })
        .collect()
}

/// The context is unused: every client is offered the same APIs (it is where per-listener APIs would go).
pub fn handle(_ctx: &RequestContext, _request: &ApiVersionsRequest) -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_api_keys(api_list())
        .with_finalized_features_epoch(-1)
}

/// KIP-511: the answer to an ApiVersions request newer than brook knows, encoded by the caller as v0.
pub fn unsupported_version_response() -> ApiVersionsResponse {
    ApiVersionsResponse::default()
        .with_error_code(ResponseError::UnsupportedVersion.code())
        .with_api_keys(api_list())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_versions_are_advertised_and_below_the_codec() {
        for &(key, min, max) in crate::api::legacy::LEGACY_VERSIONS {
            let (advertised_min, _) = supported_range(key).expect("legacy api is advertised");
            assert!(advertised_min <= min, "{key:?} v{min} is not advertised");
            assert!(
                max < key.valid_versions().min,
                "{key:?} v{max} is in the codec"
            );
        }
    }

    #[test]
    fn advertised_ranges_are_within_what_the_codec_supports() {
        for &(key, min, max) in SUPPORTED {
            let codec = key.valid_versions();
            let decodable_min = if key == ApiKey::Produce {
                PRODUCE_UNSERVED_BELOW
            } else {
                (min..=max)
                    .find(|&v| !crate::api::legacy::is_legacy(key, v))
                    .unwrap_or(max)
            };
            assert!(
                codec.min <= decodable_min && max <= codec.max,
                "{key:?} {min}..{max} vs {codec:?}"
            );
        }
    }
}
