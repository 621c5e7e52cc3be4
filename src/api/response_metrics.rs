//! What each response tells the metrics: its error codes and, for Fetch, the bytes and records per topic.
//!
//! Kafka counts every error code a response carries (top level, per topic, per partition, per group), so a
//! Produce to three partitions of which one is unknown counts one UNKNOWN_TOPIC_OR_PARTITION.

use kafka_protocol::messages::*;

use super::Apis;
use super::fetch::FetchReply;

/// A response whose error codes (and, for Fetch, data) the metrics record.
pub trait ResponseMetrics {
    /// The API this response answers.
    const API: ApiKey;

    /// Calls `f` with every error code in the response, NONE (0) included.
    fn error_codes(&self, f: &mut dyn FnMut(i16));

    /// Records this response in the broker's metrics.
    fn observe(&self, apis: &Apis) {
        self.observe_errors(apis);
    }

    /// Counts the response's error codes other than NONE.
    fn observe_errors(&self, apis: &Apis) {
        let mut codes = Vec::new();
        self.error_codes(&mut |c| {
            if c != 0 {
                codes.push(c);
            }
        });
        apis.metrics.response_errors(Self::API, &codes);
    }
}

/// Implements [`ResponseMetrics`] from a list of paths to the error codes (written in `api::registry`): `a`
/// is one code, `a.b` one per element of the list `a`, `a.b.c` one per element of each list `b`.
macro_rules! error_codes {
    // Implemented by hand below.
    ($response:ident, $api:ident [custom]) => {};
    ($response:ident, $api:ident [$($($path:ident).+),* $(,)?]) => {
        impl ResponseMetrics for $response {
            const API: ApiKey = ApiKey::$api;
            #[allow(unused_variables)]
            fn error_codes(&self, f: &mut dyn FnMut(i16)) {
                $( error_codes!(@walk self, f, $($path).+); )*
            }
        }
    };
    (@walk $v:expr, $f:ident, $field:ident) => { $f($v.$field) };
    (@walk $v:expr, $f:ident, $first:ident . $($rest:ident).+) => {
        for item in $v.$first.iter() {
            error_codes!(@walk item, $f, $($rest).+);
        }
    };
}

/// Every registered API's response but Fetch's, from the error code paths in the registry.
macro_rules! response_metrics {
    ($($key:ident, $min:literal, $max:literal, $response:ident [$($codes:tt)*], |$apis:ident, $ctx:ident, $req:ident| $answer:expr;)*) => {
        $( error_codes!($response, $key [$($codes)*]); )*
    };
}
super::registry::registrations!(response_metrics);

impl ResponseMetrics for FetchReply {
    const API: ApiKey = ApiKey::Fetch;

    fn error_codes(&self, f: &mut dyn FnMut(i16)) {
        f(self.response.error_code);
        for topic in &self.response.responses {
            for partition in &topic.partitions {
                f(partition.error_code);
            }
        }
    }

    /// Also counts the bytes and records returned per topic (topics named by id are looked up), those
    /// sent from a segment file included.
    fn observe(&self, apis: &Apis) {
        self.observe_errors(apis);
        for (index, topic) in self.response.responses.iter().enumerate() {
            let by_id;
            let name = if topic.topic.0.is_empty() {
                match apis.metadata.topic_by_id(topic.topic_id) {
                    Some(meta) => {
                        by_id = meta;
                        by_id.name.as_str()
                    }
                    None => continue,
                }
            } else {
                topic.topic.0.as_str()
            };
            for partition in &topic.partitions {
                if let Some(records) = &partition.records {
                    apis.metrics.fetched(name, records);
                }
            }
            for file in self.files.iter().filter(|f| f.topic == index) {
                apis.metrics
                    .fetched_counted(name, file.slice.len() as u64, file.slice.records());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    macro_rules! response_apis {
        ($($key:ident, $min:literal, $max:literal, $response:ident [$($codes:tt)*], |$apis:ident, $ctx:ident, $req:ident| $answer:expr;)*) => {
            vec![$((ApiKey::$key, <$response as ResponseMetrics>::API)),*]
        };
    }

    #[test]
    fn every_registered_response_is_counted_under_its_own_api() {
        let apis: Vec<(ApiKey, ApiKey)> = crate::api::registry::registrations!(response_apis);
        assert_eq!(apis.len(), crate::api::api_versions::SUPPORTED.len());
        for (registered, counted) in apis {
            assert_eq!(registered, counted);
        }
    }

    #[test]
    fn error_codes_are_read_from_every_path() {
        let mut response = OffsetFetchResponse::default().with_error_code(16);
        response.groups =
            vec![offset_fetch_response::OffsetFetchResponseGroup::default().with_error_code(15)];
        let mut codes = Vec::new();
        response.error_codes(&mut |c| codes.push(c));
        assert_eq!(codes, vec![16, 15]);
    }
}
