//! The change-event stream between origin and edges.
//!
//! An origin serves `GET /internal/v1/events` as newline-delimited JSON
//! frames: a `hello` first (the stream is live from here on), then one
//! `change` per committed change, and a `ping` every few seconds so a dead
//! connection is noticed. A subscriber that loses the stream must treat every
//! cached entry as unknown until it has subscribed again.

use serde::{Deserialize, Serialize};

/// Path of the stream on the origin.
pub const EVENTS_PATH: &str = "/internal/v1/events";

/// Seconds between `ping` frames; a subscriber that hears nothing for three
/// intervals considers the stream lost.
pub const PING_INTERVAL_SECS: u64 = 5;

/// One committed change to a table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeEvent {
    /// Warehouse name (the URL prefix).
    pub warehouse: String,
    /// Namespace levels.
    pub namespace: Vec<String>,
    /// Table name.
    pub table: String,
    /// What happened: `commit`, `create`, `drop`, `rename`, `register`.
    pub action: String,
    /// The new metadata location, when the table still exists.
    #[serde(
        default,
        rename = "metadata-location",
        skip_serializing_if = "Option::is_none"
    )]
    pub metadata_location: Option<String>,
    /// Id of the origin process that committed it.
    pub origin: String,
    /// The change is to a view of that name (edges cache no views: they
    /// ignore it); absent for tables.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub view: bool,
}

/// A change to a principal, its grants or one of its API keys: caches of
/// principals, verified credentials and API keys drop what it names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthEvent {
    /// The principal (client id).
    pub principal: String,
    /// The API key, when one changed.
    #[serde(default, rename = "api-key", skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    /// Id of the origin process that made the change.
    pub origin: String,
}

/// A frame of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Frame {
    /// First frame: the stream is live.
    Hello {
        /// Id of the serving origin process.
        origin: String,
    },
    /// Keep-alive.
    Ping,
    /// A change.
    Change(ChangeEvent),
    /// A principal or API key changed.
    Auth(AuthEvent),
}

impl Frame {
    /// One NDJSON line (with its newline).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }

    /// Parses one line (without its newline).
    pub fn parse(line: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let change = Frame::Change(ChangeEvent {
            warehouse: "w".into(),
            namespace: vec!["a".into(), "b".into()],
            table: "t".into(),
            action: "commit".into(),
            metadata_location: Some("s3://x/m.json".into()),
            origin: "o1".into(),
            view: false,
        });
        let line = change.to_line();
        assert!(
            !String::from_utf8_lossy(&line).contains("view"),
            "table changes keep the wire form edges of older releases read"
        );
        let view_change = Frame::Change(ChangeEvent {
            warehouse: "w".into(),
            namespace: vec!["a".into()],
            table: "v".into(),
            action: "commit".into(),
            metadata_location: None,
            origin: "o1".into(),
            view: true,
        });
        for frame in [
            view_change,
            Frame::Hello {
                origin: "o1".into(),
            },
            Frame::Ping,
            change,
            Frame::Auth(AuthEvent {
                principal: "etl".into(),
                api_key: Some("00ff".into()),
                origin: "o1".into(),
            }),
        ] {
            let line = frame.to_line();
            assert_eq!(line.last(), Some(&b'\n'));
            assert_eq!(Frame::parse(&line[..line.len() - 1]).unwrap(), frame);
        }
        assert!(Frame::parse(b"{\"type\":\"nope\"}").is_err());
    }
}
