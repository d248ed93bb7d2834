//! A miss becoming an entry: concurrent misses of one key are coalesced into
//! one origin request (the leader's; the others wait for it, then look
//! again), and the leader's response is captured into an entry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::header;
use pingora::http::ResponseHeader;
use tokio::sync::watch;

use super::generations::Generations;
use super::key::TableRef;
use super::rules;
use super::store::{Entry, Lookup, TableCache};

/// The role of a request for a missing key.
pub enum Flight {
    /// Go to the origin; dropping the guard wakes the followers.
    Leader(FlightGuard),
    /// Another request is fetching; wait on this, then look again.
    Follower(watch::Receiver<()>),
}

/// Held by the request that fills a key.
pub struct FlightGuard {
    key: String,
    flights: Arc<Mutex<HashMap<String, watch::Receiver<()>>>>,
    _tx: watch::Sender<()>,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        if let Ok(mut flights) = self.flights.lock() {
            flights.remove(&self.key);
        }
        // Dropping the sender wakes every follower.
    }
}

/// The keys being filled now, each with the receiver its followers wait on.
#[derive(Default)]
pub(crate) struct Flights(Arc<Mutex<HashMap<String, watch::Receiver<()>>>>);

impl Flights {
    /// Joins the request already filling `key`, or becomes the one that does.
    pub(crate) fn join(&self, key: &str) -> Flight {
        let Ok(mut flights) = self.0.lock() else {
            let (tx, _) = watch::channel(());
            return Flight::Leader(FlightGuard {
                key: key.to_string(),
                flights: self.0.clone(),
                _tx: tx,
            });
        };
        if let Some(rx) = flights.get(key) {
            return Flight::Follower(rx.clone());
        }
        let (tx, rx) = watch::channel(());
        flights.insert(key.to_string(), rx);
        Flight::Leader(FlightGuard {
            key: key.to_string(),
            flights: self.0.clone(),
            _tx: tx,
        })
    }
}

/// What the cache has for a table load.
pub(crate) enum Found {
    /// A fresh entry: serve it.
    Hit(Arc<Entry>),
    /// Nothing fresh: go to the origin and capture the response.
    Miss {
        /// An entry to serve if no origin answers.
        stale: Option<Arc<Entry>>,
        /// Held by the request that fills the key (`None` for a follower
        /// that waited and still found nothing).
        flight: Option<FlightGuard>,
    },
}

impl TableCache {
    /// Looks `key` up; on a miss joins the request filling it (waiting at
    /// most `wait` for it, `on_wait` called first, then looking again) or
    /// becomes the one that fills it.
    // TinyUFO takes `&K`: a `&str` would cost the hit path a copy of the key.
    #[allow(clippy::ptr_arg)]
    pub(crate) async fn find(
        &self,
        key: &String,
        table: &TableRef,
        wait: Duration,
        on_wait: impl FnOnce(),
    ) -> Found {
        let mut stale = None;
        let mut on_wait = Some(on_wait);
        for round in 0..2 {
            match self.lookup(key, table) {
                Lookup::Fresh(entry) => return Found::Hit(entry),
                Lookup::Stale(entry) => stale = Some(entry),
                Lookup::Miss => {}
            }
            if round == 1 {
                break;
            }
            match self.flight(key) {
                Flight::Leader(guard) => {
                    return Found::Miss {
                        stale,
                        flight: Some(guard),
                    };
                }
                Flight::Follower(mut done) => {
                    if let Some(on_wait) = on_wait.take() {
                        on_wait();
                    }
                    let _ = tokio::time::timeout(wait, done.changed()).await;
                }
            }
        }
        Found::Miss {
            stale,
            flight: None,
        }
    }
}

/// A table load's response being captured into the cache.
pub(crate) struct Fill {
    table: TableRef,
    key: String,
    generations: Generations,
    capture: Option<Capture>,
}

struct Capture {
    etag: String,
    content_type: String,
    /// `Content-Length` of the response, when the origin sent one.
    expected: Option<usize>,
    body: BytesMut,
}

/// Where a capture stands after a chunk of the body.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Progress {
    /// Not capturing (the response was not storable).
    Idle,
    /// More to come.
    Partial,
    /// Over what the cache admits: give up.
    TooLarge,
    /// The last byte is in.
    Complete,
}

impl Fill {
    /// A fill of `key` for a load of `table` that started under `generations`.
    pub(crate) fn new(table: TableRef, key: String, generations: Generations) -> Self {
        Self {
            table,
            key,
            generations,
            capture: None,
        }
    }

    /// Starts capturing the response of `head` when the rules let it be
    /// stored and `admits` its announced length; false when not.
    pub(crate) fn begin(&mut self, head: &ResponseHeader, admits: impl Fn(usize) -> bool) -> bool {
        let text =
            |name: header::HeaderName| head.headers.get(name).and_then(|value| value.to_str().ok());
        let length = text(header::CONTENT_LENGTH).and_then(|l| l.parse::<usize>().ok());
        let etag = text(header::ETAG);
        let storable = rules::storable(head.status.as_u16(), text(header::CACHE_CONTROL), etag)
            && length.is_none_or(&admits);
        match etag {
            Some(etag) if storable => {
                self.capture = Some(Capture {
                    etag: etag.to_string(),
                    content_type: text(header::CONTENT_TYPE)
                        .unwrap_or("application/json")
                        .to_string(),
                    expected: length,
                    body: BytesMut::with_capacity(length.unwrap_or(0)),
                });
                true
            }
            _ => false,
        }
    }

    /// Appends a chunk of the body (`admits` the length so far); complete
    /// when the stream ends or the announced length is in.
    pub(crate) fn append(
        &mut self,
        chunk: Option<&Bytes>,
        end_of_stream: bool,
        admits: impl Fn(usize) -> bool,
    ) -> Progress {
        let Some(capture) = &mut self.capture else {
            return Progress::Idle;
        };
        if let Some(chunk) = chunk {
            capture.body.extend_from_slice(chunk);
        }
        let complete = end_of_stream || capture.expected == Some(capture.body.len());
        if !admits(capture.body.len()) {
            Progress::TooLarge
        } else if complete {
            Progress::Complete
        } else {
            Progress::Partial
        }
    }

    /// `stale` confirmed by the origin (a 304 carrying its ETag): the same
    /// entry stored again as new, under the generations this fill started
    /// with, so an invalidation since still wins.
    pub(crate) fn revalidated(self, stale: &Entry) -> (TableRef, pingora::Result<Entry>) {
        let entry = Entry::new(
            self.key,
            self.generations,
            stale.etag.clone(),
            stale.content_type.clone(),
            stale.body.clone(),
        );
        (self.table, entry)
    }

    /// The captured entry and its table (`None` when nothing was captured);
    /// an error when an origin header cannot go into a head.
    pub(crate) fn finish(self) -> Option<(TableRef, pingora::Result<Entry>)> {
        let capture = self.capture?;
        let entry = Entry::new(
            self.key,
            self.generations,
            capture.etag,
            capture.content_type,
            capture.body.freeze(),
        );
        Some((self.table, entry))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::key::variant_key;
    use crate::cache::store::tests::cache;

    #[tokio::test]
    async fn one_leader_per_key_and_followers_wake() {
        let c = cache();
        let leader = match c.flight("k") {
            Flight::Leader(g) => g,
            Flight::Follower(_) => panic!("first is the leader"),
        };
        let mut follower = match c.flight("k") {
            Flight::Follower(rx) => rx,
            Flight::Leader(_) => panic!("second follows"),
        };
        drop(leader);
        assert!(
            follower.changed().await.is_err(),
            "woken when the leader finishes"
        );
        assert!(
            matches!(c.flight("k"), Flight::Leader(_)),
            "next miss leads again"
        );
    }

    fn table() -> TableRef {
        TableRef {
            warehouse: "w".into(),
            namespace: "ns".into(),
            table: "t".into(),
        }
    }

    fn head(status: u16, headers: &[(&'static str, &str)]) -> ResponseHeader {
        let mut head = ResponseHeader::build(status, None).expect("head");
        for (name, value) in headers {
            head.insert_header(*name, *value).expect("header");
        }
        head
    }

    #[tokio::test]
    async fn a_follower_waits_for_the_leader_then_hits() {
        let c = Arc::new(cache());
        let t = table();
        let key = variant_key(&t, "", "");
        let Found::Miss {
            flight: Some(leader),
            stale: None,
        } = c.find(&key, &t, Duration::from_secs(30), || {}).await
        else {
            panic!("the first miss leads");
        };
        let follower = {
            let (c, t, key) = (c.clone(), t.clone(), key.clone());
            tokio::spawn(async move {
                let mut waited = false;
                let found = c
                    .find(&key, &t, Duration::from_secs(30), || waited = true)
                    .await;
                (waited, matches!(found, Found::Hit(_)))
            })
        };
        // The follower waits once it holds a receiver of the flight (the
        // registry holds the other).
        while leader._tx.receiver_count() < 2 {
            tokio::task::yield_now().await;
        }
        let mut fill = Fill::new(t.clone(), key.clone(), c.generations(&t));
        assert!(fill.begin(&head(200, &[("etag", "\"e\"")]), |_| true));
        assert_eq!(
            fill.append(Some(&Bytes::from_static(b"{}")), true, |_| true),
            Progress::Complete
        );
        let (filled, entry) = fill.finish().expect("captured");
        assert!(c.store(&filled, entry.expect("entry")));
        drop(leader);
        assert_eq!(follower.await.expect("follower"), (true, true));
    }

    #[test]
    fn only_storable_responses_are_captured() {
        let t = table();
        let fill = || Fill::new(t.clone(), "k".into(), Generations::default());
        let mut f = fill();
        assert!(!f.begin(&head(200, &[("cache-control", "private")]), |_| true));
        assert_eq!(f.append(None, true, |_| true), Progress::Idle);
        assert!(f.finish().is_none());
        let announced = [("etag", "\"e\""), ("content-length", "10")];
        assert!(
            !fill().begin(&head(200, &announced), |l| l < 10),
            "too long"
        );
        assert!(!fill().begin(&head(500, &announced), |_| true));
        let mut f = fill();
        assert!(f.begin(&head(200, &announced), |_| true));
        let chunk = Bytes::from_static(b"01234");
        assert_eq!(f.append(Some(&chunk), false, |_| true), Progress::Partial);
        // Complete at the announced length, before the end of the stream.
        assert_eq!(f.append(Some(&chunk), false, |_| true), Progress::Complete);
        let (_, entry) = f.finish().expect("captured");
        let entry = entry.expect("entry");
        assert_eq!(
            (
                entry.etag.as_str(),
                entry.content_type.as_str(),
                &entry.body[..]
            ),
            ("\"e\"", "application/json", &b"0123401234"[..])
        );
        // A body without a length that grows past the bound is given up.
        let mut f = fill();
        assert!(f.begin(&head(200, &[("etag", "\"e\"")]), |_| true));
        assert_eq!(f.append(Some(&chunk), false, |l| l < 5), Progress::TooLarge);
    }
}
