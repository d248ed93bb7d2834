//! The request metrics both tiers keep, under the tier's own names
//! (`floe_edge_http_…`, `floe_origin_http_…`).
//!
//! Every label value comes from a closed set: `route` is a pattern the
//! caller names, `method` goes through [`method_label`]. A client choosing
//! methods or paths cannot add series.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

use crate::wire::method_label;

/// `<prefix>_http_requests_total` and `<prefix>_http_request_duration_seconds`.
#[derive(Clone, Debug)]
pub struct RequestMetrics {
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl RequestMetrics {
    /// Registers both families in `registry`; `prefix` is the tier's
    /// (`floe_edge`), `buckets` its latency buckets in seconds.
    pub fn register(
        registry: &Registry,
        prefix: &str,
        buckets: &[f64],
    ) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_http_requests_total"),
                "HTTP requests by route and status",
            ),
            &["method", "route", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                format!("{prefix}_http_request_duration_seconds"),
                "HTTP request latency by route",
            )
            .buckets(buckets.to_vec()),
            &["method", "route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Self { requests, latency })
    }

    /// One finished request; `route` is a pattern, `method` is mapped by
    /// [`method_label`].
    pub fn record(&self, method: &str, route: &str, status: &str, seconds: f64) {
        let method = method_label(method);
        self.requests
            .with_label_values(&[method, route, status])
            .inc();
        self.latency
            .with_label_values(&[method, route])
            .observe(seconds);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn methods_outside_http_share_one_label() {
        let registry = Registry::new();
        let metrics = RequestMetrics::register(&registry, "floe_test", &[0.1, 1.0])
            .expect("valid definitions");
        metrics.record("BREW", "/v1/config", "405", 0.01);
        metrics.record("GET", "/v1/config", "200", 0.01);
        let families = registry.gather();
        let requests = families
            .iter()
            .find(|f| f.name() == "floe_test_http_requests_total")
            .expect("requests family");
        let mut methods: Vec<&str> = requests
            .get_metric()
            .iter()
            .flat_map(|m| m.get_label().iter())
            .filter(|l| l.name() == "method")
            .map(prometheus::proto::LabelPair::value)
            .collect();
        methods.sort_unstable();
        assert_eq!(methods, ["GET", "OTHER"]);
    }
}
