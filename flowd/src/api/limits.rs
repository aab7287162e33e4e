//! What one client may ask of the API: each bound is a setting, so a node's owner can raise it,
//! and a request beyond one is refused with a message naming the setting.

use std::time::Duration;

use tonic::Status;

use crate::proto::v1 as pb;

/// The defaults of the `maxSubscribers`, `maxFilters`, `maxFilterValues`, `maxRequestBytes`,
/// `keepaliveInterval` and `keepaliveTimeout` settings.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 256;
/// GetGraph and RecommendPolicy calls at once (each reads its whole window): `maxQueries`.
pub const DEFAULT_MAX_QUERIES: usize = 4;
pub const DEFAULT_MAX_FILTERS: usize = 64;
pub const DEFAULT_MAX_FILTER_VALUES: usize = 1024;
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 1 << 20;
pub const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ApiLimits {
    /// GetFlows calls open at once; one more gets RESOURCE_EXHAUSTED.
    pub max_subscribers: usize,
    /// Filters in one GetFlows request, allow and deny together.
    pub max_filters: usize,
    /// Values in one field of one filter (addresses, ports, names...).
    pub max_filter_values: usize,
    /// The largest request message the server decodes.
    pub max_request_bytes: usize,
    /// HTTP/2 pings on a quiet connection, so a client that vanished is noticed.
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed.
    pub keepalive_timeout: Duration,
    /// Edges a GetGraph answer holds when the request does not ask for fewer.
    pub graph_max_edges: usize,
    /// GetGraph and RecommendPolicy calls served at once; one more gets RESOURCE_EXHAUSTED.
    pub max_queries: usize,
}

impl Default for ApiLimits {
    fn default() -> Self {
        Self {
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            max_filters: DEFAULT_MAX_FILTERS,
            max_filter_values: DEFAULT_MAX_FILTER_VALUES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            graph_max_edges: crate::graph::DEFAULT_MAX_EDGES,
            max_queries: DEFAULT_MAX_QUERIES,
        }
    }
}

impl ApiLimits {
    /// Refuses a request with more filters, or longer lists, than the settings allow: compiling
    /// and matching them costs the agent time per stored and per new record.
    pub fn check(&self, request: &pb::GetFlowsRequest) -> Result<(), Status> {
        self.check_filters(&request.allow, &request.deny)
    }

    /// A permit for one window-reading call, or RESOURCE_EXHAUSTED naming the setting.
    pub fn query_permit(
        queries: &std::sync::Arc<tokio::sync::Semaphore>,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, Status> {
        queries.clone().try_acquire_owned().map_err(|_| {
            Status::resource_exhausted(
                "as many GetGraph and RecommendPolicy calls as maxQueries allows are running \
                 (each reads its whole window); retry when one ends, or raise maxQueries",
            )
        })
    }

    /// Edges a GetGraph answer may hold: what the request asks, within graphMaxEdges.
    pub fn graph_edges(&self, asked: u32) -> usize {
        match usize::try_from(asked) {
            Ok(0) | Err(_) => self.graph_max_edges,
            Ok(asked) => asked.min(self.graph_max_edges),
        }
    }

    /// As `check`, for any request carrying allow and deny filters.
    pub fn check_filters(
        &self,
        allow: &[pb::FlowFilter],
        deny: &[pb::FlowFilter],
    ) -> Result<(), Status> {
        let filters = allow.len() + deny.len();
        if filters > self.max_filters {
            return Err(Status::invalid_argument(format!(
                "{filters} filters (allow and deny together), more than maxFilters \
                 ({}); combine values into fewer filters or raise maxFilters",
                self.max_filters
            )));
        }
        for filter in allow.iter().chain(deny) {
            if let Some((field, count)) = longest_list(filter) {
                if count > self.max_filter_values {
                    return Err(Status::invalid_argument(format!(
                        "filter field {field} has {count} values, more than maxFilterValues \
                         ({}); use a CIDR or a label selector, or raise maxFilterValues",
                        self.max_filter_values
                    )));
                }
            }
        }
        Ok(())
    }
}

/// The filter's longest list and its length.
fn longest_list(f: &pb::FlowFilter) -> Option<(&'static str, usize)> {
    [
        ("source_ip", f.source_ip.len()),
        ("destination_ip", f.destination_ip.len()),
        ("ip", f.ip.len()),
        ("source_port", f.source_port.len()),
        ("destination_port", f.destination_port.len()),
        ("port", f.port.len()),
        ("protocol", f.protocol.len()),
        ("ip_version", f.ip_version.len()),
        ("verdict", f.verdict.len()),
        ("drop_reason", f.drop_reason.len()),
        ("direction", f.direction.len()),
        ("outcome", f.outcome.len()),
        ("namespace", f.namespace.len()),
        ("pod", f.pod.len()),
        ("label", f.label.len()),
        ("workload", f.workload.len()),
        ("service", f.service.len()),
        ("policy", f.policy.len()),
        ("node", f.node.len()),
        ("interface", f.interface.len()),
    ]
    .into_iter()
    .max_by_key(|(_, count)| *count)
}

#[cfg(test)]
mod tests {

    #[test]
    fn queries_beyond_max_queries_are_refused_naming_it() {
        let queries = std::sync::Arc::new(tokio::sync::Semaphore::new(1));
        let first = ApiLimits::query_permit(&queries).expect("one fits");
        let refused = ApiLimits::query_permit(&queries).expect_err("a second does not");
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(refused.message().contains("maxQueries"), "{refused:?}");
        drop(first);
        assert!(
            ApiLimits::query_permit(&queries).is_ok(),
            "the permit came back"
        );
    }

    use super::*;

    #[test]
    fn too_many_filters_or_values_are_refused_naming_the_setting() {
        let limits = ApiLimits {
            max_filters: 2,
            max_filter_values: 3,
            ..ApiLimits::default()
        };
        let filter = |ports: usize| pb::FlowFilter {
            port: (0..ports as u32).collect(),
            ..Default::default()
        };
        let fits = pb::GetFlowsRequest {
            allow: vec![filter(3)],
            deny: vec![filter(1)],
            ..Default::default()
        };
        assert!(limits.check(&fits).is_ok());
        let too_many = pb::GetFlowsRequest {
            allow: vec![filter(1), filter(1)],
            deny: vec![filter(1)],
            ..Default::default()
        };
        let refused = limits.check(&too_many).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert!(refused.message().contains("maxFilters"), "{refused:?}");
        let too_long = pb::GetFlowsRequest {
            deny: vec![filter(4)],
            ..Default::default()
        };
        let refused = limits.check(&too_long).unwrap_err();
        assert!(
            refused.message().contains("port has 4 values")
                && refused.message().contains("maxFilterValues"),
            "{refused:?}"
        );
    }
}
