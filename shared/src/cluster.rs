//! `GET /management/v1/cluster`: what a deployment's processes say of
//! themselves, for operators (the console's cluster page). Admins only, like
//! every `/management/…` route.
//!
//! An origin answers with itself alone. An edge answers it without
//! forwarding: itself, and each origin it balances over — what its health
//! checks say and, for an origin that answers, that origin's own report
//! (fetched with the caller's credential, so the origin authorizes it too).

use serde::{Deserialize, Serialize};

/// The answer: the edges and origins the answering process knows.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct ClusterStatus {
    /// The answering edge (empty when an origin answers).
    pub edges: Vec<EdgeStatus>,
    /// Origins: the answering one, or those the edge balances over.
    pub origins: Vec<OriginStatus>,
}

/// One edge, as it sees itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct EdgeStatus {
    /// The crate version of the binary.
    pub version: String,
    /// Seconds since the process started.
    pub uptime_seconds: u64,
    /// The change-event subscription that keeps the cache fresh.
    pub event_stream: StreamStatus,
    /// The table-load cache.
    pub cache: CacheStatus,
}

/// The edge's change-event subscription.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct StreamStatus {
    /// Subscribed now (while it is not, loads bypass the cache).
    pub up: bool,
    /// Times the subscription was lost since the start.
    pub reconnects: u64,
}

/// The edge's table-load cache.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct CacheStatus {
    /// Whether entries are served fresh (off while the event stream is down).
    pub enabled: bool,
    /// Entries held (approximate, like the bytes).
    pub entries: u64,
    /// Bytes held: bodies, keys and heads.
    pub bytes: u64,
    /// Loads answered from the cache with a body.
    pub hits: u64,
    /// Loads answered from the cache with 304 Not Modified.
    pub not_modified: u64,
    /// Loads the cache could not answer.
    pub misses: u64,
    /// `(hits + not_modified) / (hits + not_modified + misses)`, absent
    /// before the first cacheable load.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hit_ratio: Option<f64>,
}

impl CacheStatus {
    /// The hit ratio of these counts.
    pub fn ratio(hits: u64, not_modified: u64, misses: u64) -> Option<f64> {
        let answered = hits + not_modified;
        let all = answered + misses;
        #[allow(clippy::cast_precision_loss)] // counts far below 2^52
        (all > 0).then(|| answered as f64 / all as f64)
    }
}

/// One origin: its own report, and what the asking edge knows of it.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
pub struct OriginStatus {
    /// The address the edge reaches it at (absent when the origin answers
    /// for itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// The edge's health check passes (absent when the origin answers).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
    /// The crate version of the binary.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Seconds since the process started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uptime_seconds: Option<u64>,
    /// Whether its database is reachable: `up` or `down`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    /// Why the edge has no report of the origin's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ratio_counts_304s_as_answered_and_is_absent_before_any_load() {
        assert_eq!(CacheStatus::ratio(0, 0, 0), None);
        assert_eq!(CacheStatus::ratio(2, 1, 1), Some(0.75));
        assert_eq!(CacheStatus::ratio(0, 0, 5), Some(0.0));
    }

    #[test]
    fn an_origins_own_report_leaves_out_what_only_an_edge_knows() {
        let own = OriginStatus {
            version: Some("1.0.0".into()),
            uptime_seconds: Some(3),
            database: Some("up".into()),
            ..OriginStatus::default()
        };
        let text = serde_json::to_value(&own).expect("json");
        assert_eq!(
            text,
            serde_json::json!({"version": "1.0.0", "uptime-seconds": 3, "database": "up"})
        );
        let back: OriginStatus = serde_json::from_value(text).expect("parse");
        assert_eq!(back, own);
    }
}
