//! Publishing committed changes to subscribed edges.
//!
//! Every change is sent on an in-process broadcast channel that the event
//! stream endpoint serves. With PostgreSQL the change is also sent with
//! `NOTIFY`, and every origin process `LISTEN`s, so an edge subscribed to any
//! origin hears about commits made through all of them. When the listener
//! loses its connection, notifications may have been missed: every open
//! stream is closed, and subscribers flush their caches and subscribe again.
//!
//! Principal changes are also appended to the database's change log
//! (`auth_changes`), whatever process makes them: every serving origin reads
//! the log once a second ([`EventBus::watch_principals`]) and publishes what
//! other processes changed, so a change made by the CLI (which serves no
//! stream) reaches every edge within [`PRINCIPAL_POLL`] plus delivery, on
//! SQLite as on PostgreSQL.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use floe_shared::events::{AuthEvent, ChangeEvent, Frame, PING_INTERVAL_SECS};
use futures::Stream;
use tokio::sync::broadcast;

use crate::store::{Backend, Store};

const CHANNEL: &str = "floe_events";

/// How often a serving origin reads the principal change log.
pub const PRINCIPAL_POLL: Duration = Duration::from_secs(1);
/// Rows of the principal change log kept (older ones are pruned).
const CHANGES_KEPT: i64 = 10_000;
/// Rows read per poll at most (the rest on the next round, at once).
const CHANGES_PER_READ: i64 = 256;

/// What the broadcast channel carries.
#[derive(Debug, Clone)]
enum Signal {
    Change(ChangeEvent),
    Auth(AuthEvent),
    /// Changes may have been lost: close every stream.
    Reset,
}

/// Called synchronously with every principal change (`None`: changes may
/// have been missed, forget everything).
pub type AuthHook = Arc<dyn Fn(Option<&AuthEvent>) + Send + Sync>;

/// The origin's change publisher.
#[derive(Clone)]
pub struct EventBus {
    tx: broadcast::Sender<Signal>,
    origin: String,
    store: Store,
    hooks: Arc<RwLock<Vec<AuthHook>>>,
}

impl std::fmt::Debug for EventBus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBus")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl EventBus {
    /// A bus for this origin process; with PostgreSQL it also starts the
    /// listener that relays other processes' changes.
    pub fn start(store: Store, database_url: &str) -> Self {
        let (tx, _) = broadcast::channel(4096);
        let bus = Self {
            tx,
            origin: store.instance().to_string(),
            store,
            hooks: Arc::default(),
        };
        if bus.store.backend() == Backend::Postgres {
            tokio::spawn(listen(bus.clone(), database_url.to_string()));
        }
        bus
    }

    /// This process's id.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Publishes a change made by this process.
    pub async fn publish(
        &self,
        warehouse: &str,
        namespace: &[String],
        table: &str,
        action: &str,
        metadata_location: Option<&str>,
    ) {
        let event = ChangeEvent {
            warehouse: warehouse.to_string(),
            namespace: namespace.to_vec(),
            table: table.to_string(),
            action: action.to_string(),
            metadata_location: metadata_location.map(str::to_string),
            origin: self.origin.clone(),
            view: false,
        };
        self.send_change(event).await;
    }

    /// Publishes a change to a view (edges ignore it; other subscribers see
    /// every change of the catalog).
    pub async fn publish_view(
        &self,
        warehouse: &str,
        namespace: &[String],
        view: &str,
        action: &str,
    ) {
        let event = ChangeEvent {
            warehouse: warehouse.to_string(),
            namespace: namespace.to_vec(),
            table: view.to_string(),
            action: action.to_string(),
            metadata_location: None,
            origin: self.origin.clone(),
            view: true,
        };
        self.send_change(event).await;
    }

    async fn send_change(&self, event: ChangeEvent) {
        if self.store.backend() == Backend::Postgres {
            let payload = serde_json::to_string(&event).unwrap_or_default();
            if let Err(err) = self.store.notify(CHANNEL, &payload).await {
                tracing::warn!(error = %err, "could not relay a change to other origins");
            }
        }
        let _ = self.tx.send(Signal::Change(event));
    }

    /// Publishes a change to a principal (and one of its API keys): in the
    /// database's change log (for origins of other processes, and changes
    /// made by the CLI), over NOTIFY, and to this process's hooks and streams.
    pub async fn publish_auth(&self, principal: &str, api_key: Option<&str>) {
        let event = AuthEvent {
            principal: principal.to_string(),
            api_key: api_key.map(str::to_string),
            origin: self.origin.clone(),
        };
        if let Err(err) = self
            .store
            .record_auth_change(principal, api_key, &self.origin)
            .await
        {
            tracing::warn!(error = %err, "could not log a principal change for other origins");
        }
        if self.store.backend() == Backend::Postgres {
            let payload = serde_json::to_string(&Frame::Auth(event.clone())).unwrap_or_default();
            if let Err(err) = self.store.notify(CHANNEL, &payload).await {
                tracing::warn!(error = %err, "could not relay a principal change to other origins");
            }
        }
        self.run_hooks(Some(&event));
        let _ = self.tx.send(Signal::Auth(event));
    }

    /// Reads the principal change log every [`PRINCIPAL_POLL`] and publishes
    /// the changes other processes made (to hooks and streams), until the
    /// store is closed. Serving origins start it; the CLI does not.
    pub fn watch_principals(&self) {
        tokio::spawn(watch_principals(self.clone()));
    }

    fn relay_auth(&self, event: AuthEvent) {
        self.run_hooks(Some(&event));
        let _ = self.tx.send(Signal::Auth(event));
    }

    /// Registers a hook run (before this process answers) on every principal change.
    pub fn on_auth(&self, hook: AuthHook) {
        if let Ok(mut hooks) = self.hooks.write() {
            hooks.push(hook);
        }
    }

    fn run_hooks(&self, event: Option<&AuthEvent>) {
        if let Ok(hooks) = self.hooks.read() {
            for hook in hooks.iter() {
                hook(event);
            }
        }
    }

    /// Ends every open subscription (at shutdown, so draining can finish).
    pub fn close(&self) {
        let _ = self.tx.send(Signal::Reset);
    }

    /// The NDJSON frames of one subscription: hello, changes, pings.
    pub fn subscribe(
        &self,
    ) -> impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
        let rx = self.tx.subscribe();
        let hello = Frame::Hello {
            origin: self.origin.clone(),
        };
        let mut ticker = tokio::time::interval(Duration::from_secs(PING_INTERVAL_SECS));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        futures::stream::unfold(
            (rx, ticker, Some(hello)),
            |(mut rx, mut ticker, hello)| async move {
                if let Some(hello) = hello {
                    ticker.reset();
                    return Some((Ok(bytes::Bytes::from(hello.to_line())), (rx, ticker, None)));
                }
                let frame = tokio::select! {
                    signal = rx.recv() => match signal {
                        Ok(Signal::Change(event)) => Frame::Change(event),
                        Ok(Signal::Auth(event)) => Frame::Auth(event),
                        // A lagging subscriber has missed changes; a reset means
                        // the relay did. Either way: end the stream.
                        Ok(Signal::Reset) | Err(_) => return None,
                    },
                    _ = ticker.tick() => Frame::Ping,
                };
                Some((Ok(bytes::Bytes::from(frame.to_line())), (rx, ticker, None)))
            },
        )
    }
}

/// Relays other origin processes' changes from PostgreSQL to local streams.
async fn listen(bus: EventBus, url: String) {
    loop {
        match sqlx::postgres::PgListener::connect(&url).await {
            Ok(mut listener) => {
                if let Err(err) = listener.listen(CHANNEL).await {
                    tracing::warn!(error = %err, "LISTEN failed");
                } else {
                    // try_recv answers None when the connection dropped.
                    while let Ok(Some(note)) = listener.try_recv().await {
                        if let Ok(event) = serde_json::from_str::<ChangeEvent>(note.payload()) {
                            if event.origin != bus.origin {
                                let _ = bus.tx.send(Signal::Change(event));
                            }
                        } else if let Ok(Frame::Auth(event)) =
                            Frame::parse(note.payload().as_bytes())
                            && event.origin != bus.origin
                        {
                            bus.relay_auth(event);
                        }
                    }
                }
            }
            Err(err) => tracing::warn!(error = %err, "event relay cannot connect to PostgreSQL"),
        }
        // Anything may have been missed while the listener was down.
        bus.run_hooks(None);
        let _ = bus.tx.send(Signal::Reset);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The principal change log, read once a second: what other processes
/// changed is published here as if this process had changed it.
async fn watch_principals(bus: EventBus) {
    let mut last = loop {
        if bus.store.is_closed() {
            return;
        }
        match bus.store.last_auth_change().await {
            Ok(seq) => break seq,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the principal change log; retrying");
                tokio::time::sleep(PRINCIPAL_POLL).await;
            }
        }
    };
    let mut ticker = tokio::time::interval(PRINCIPAL_POLL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rounds: u64 = 0;
    loop {
        ticker.tick().await;
        if bus.store.is_closed() {
            return;
        }
        rounds += 1;
        loop {
            let changes = match bus.store.auth_changes_since(last, CHANGES_PER_READ).await {
                Ok(changes) => changes,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the principal change log");
                    break;
                }
            };
            let full = changes.len() as i64 == CHANGES_PER_READ;
            if changes.first().is_some_and(|c| c.seq > last + 1) {
                // Rows were pruned before this origin read them: what
                // changed is unknown, so everything is forgotten.
                tracing::warn!(
                    after = last,
                    "principal changes were pruned unread; dropping every cached principal"
                );
                bus.run_hooks(None);
                let _ = bus.tx.send(Signal::Reset);
            }
            for change in changes {
                last = change.seq;
                if change.origin != bus.origin {
                    bus.relay_auth(AuthEvent {
                        principal: change.principal,
                        api_key: change.api_key,
                        origin: change.origin,
                    });
                }
            }
            if !full {
                break;
            }
        }
        // Now and then, and never the last row.
        if rounds % 600 == 1
            && let Err(err) = bus.store.prune_auth_changes(CHANGES_KEPT).await
        {
            tracing::debug!(error = %err, "could not prune the principal change log");
        }
    }
}
