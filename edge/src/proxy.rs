//! The edge's request path: Pingora's `ProxyHttp` phases. What the cache
//! holds and decides (bypass, keys, coalescing, what may be stored, what a
//! write invalidates) is [`crate::cache`]'s; the phases call it.
//!
//! - `request_filter`: table loads are answered from the cache (200 or 304)
//!   when fresh; concurrent misses for one key wait for the single request
//!   that fills it; writes invalidate what they touch before they are
//!   forwarded.
//! - `upstream_peer` / `fail_to_connect` / `error_while_proxy`: round-robin
//!   over healthy origins; after a connect failure every request goes to
//!   another origin; after a failure once connected, reads (and writes that carry an
//!   `Idempotency-Key`) are tried on another origin. Other writes never are.
//! - `upstream_response_filter` / `upstream_response_body_filter`: a 200 table
//!   load is captured into the cache unless an invalidation happened since the
//!   request started.
//! - `response_filter`: a write invalidates what it touched again before its
//!   response reaches the client.
//! - `fail_to_proxy`: no origin answered: cached loads are served stale
//!   (within `stale_if_error_seconds`, marked), everything else gets a 503
//!   ErrorModel. Never a hang.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use floe_shared::ErrorModel;
use floe_shared::error::types;
use floe_shared::etag::if_none_match_matches;
use floe_shared::route::Resource;
use http::{Method, header};
use pingora::lb::LoadBalancer;
use pingora::lb::selection::RoundRobin;
use pingora::prelude::*;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::proxy::FailToProxy;
use pingora::upstreams::peer::HttpPeer;

use crate::auth::{EdgeAuth, Refusal};
use crate::cache::{
    CACHE_HEADER, Entry, Fill, FlightGuard, Found, Invalidation, Kind, Progress, TableCache,
    classify, rules, variant_key,
};
use crate::cluster::Reporter;
use crate::config::EdgeConfig;
use crate::console::{self, Console};
use crate::metrics::EdgeMetrics;

/// Whether the edge forwards `path` to an origin. The Iceberg REST API
/// (`/v1/…`) and the management API (`/management/…`, admins only) are for
/// clients; `/health` and `/ready` answer load balancers and probes through
/// the edge (up or not, nothing more). Everything else an origin serves is
/// for operators and other tiers only: its `/metrics` (unauthenticated, and
/// the edge's own are on `metrics_listen`) and `/internal/…` (principal
/// records, change events) are answered 404 here, as is any path no origin
/// route needs, so an origin-only route added later is not exposed by default.
pub fn forwarded(path: &str) -> bool {
    path.starts_with("/v1/")
        || path.starts_with("/management/")
        || path == "/health"
        || path == "/ready"
}

/// The client's IP address (the rate limits' key); unspecified for non-IP sockets.
fn client_ip(session: &Session) -> std::net::IpAddr {
    session.client_addr().and_then(|a| a.as_inet()).map_or(
        std::net::IpAddr::from([0, 0, 0, 0]),
        std::net::SocketAddr::ip,
    )
}

/// Per-request state.
pub struct Ctx {
    started: Instant,
    upstream_started: Option<Instant>,
    route: &'static str,
    kind: Kind,
    retryable: bool,
    attempts: u32,
    tried: Vec<SocketAddr>,
    flight: Option<FlightGuard>,
    fill: Option<Fill>,
    stale: Option<Arc<Entry>>,
    body_bytes: usize,
}

/// Answers with `head` and the whole of `body` (its length set here); the
/// head alone for a `HEAD` request.
async fn write_whole(
    session: &mut Session,
    mut head: ResponseHeader,
    body: Bytes,
    head_only: bool,
) -> Result<()> {
    head.set_content_length(body.len())?;
    session
        .write_response_header(Box::new(head), head_only)
        .await?;
    if !head_only {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// The edge proxy.
pub struct EdgeProxy {
    /// Connection groups of attempts that must not reuse a pooled connection.
    fresh_connections: AtomicU64,
    lb: Arc<LoadBalancer<RoundRobin>>,
    cache: Arc<TableCache>,
    metrics: EdgeMetrics,
    config: Arc<EdgeConfig>,
    auth: Option<Arc<EdgeAuth>>,
    console: Console,
    cluster: Reporter,
}

impl EdgeProxy {
    /// A proxy over `lb`, caching in `cache`; `auth` when authentication is on.
    pub fn new(
        lb: Arc<LoadBalancer<RoundRobin>>,
        cache: Arc<TableCache>,
        metrics: EdgeMetrics,
        config: Arc<EdgeConfig>,
        auth: Option<Arc<EdgeAuth>>,
    ) -> Self {
        Self {
            fresh_connections: AtomicU64::new(0),
            console: Console::new(auth.is_some(), &config.auth.oidc),
            cluster: Reporter::new(lb.clone(), cache.clone(), metrics.clone()),
            lb,
            cache,
            metrics,
            config,
            auth,
        }
    }

    /// Answers `POST /v1/oauth/tokens` at the edge.
    async fn serve_token(&self, session: &mut Session) -> Result<()> {
        let limit = self.config.limits.max_token_request_bytes;
        let mut body = BytesMut::new();
        let mut too_large = false;
        while let Some(chunk) = session.read_request_body().await? {
            if body.len() + chunk.len() > limit {
                // Answer now; the rest of the body is not read, so the
                // connection is not reused.
                too_large = true;
                session.set_keepalive(None);
                break;
            }
            body.extend_from_slice(&chunk);
        }
        let (status, payload, retry_after) = if too_large {
            let e = floe_shared::auth::OAuthError {
                status: 413,
                error: "invalid_request",
                error_description: format!("token requests are limited to {limit} bytes"),
            };
            (413, Bytes::from(e.body()), None)
        } else if let Some(auth) = &self.auth {
            let req = session.req_header();
            let authorization = req
                .headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let answer = auth
                .token(&body, authorization.as_deref(), client_ip(session))
                .await;
            (answer.status, answer.body, answer.retry_after)
        } else {
            let e = floe_shared::auth::OAuthError::invalid_request(
                "Authentication is disabled on this catalog: connect without credentials",
            );
            (400, Bytes::from(e.body()), None)
        };
        let mut head = ResponseHeader::build(status, Some(5))?;
        head.insert_header(header::CONTENT_TYPE, "application/json")?;
        head.insert_header(header::CACHE_CONTROL, "no-store")?;
        if let Some(seconds) = retry_after {
            head.insert_header(header::RETRY_AFTER, seconds.to_string())?;
        }
        write_whole(session, head, payload, false).await
    }

    /// The web console's files (`/ui/…`): public, like any page that asks
    /// for a sign-in; what they show comes from the API with the user's token.
    async fn serve_console(&self, session: &mut Session) -> Result<()> {
        let method = session.req_header().method.clone();
        if method != Method::GET && method != Method::HEAD {
            let mut head = ResponseHeader::build(405, Some(2))?;
            head.insert_header(header::ALLOW, "GET, HEAD")?;
            head.set_content_length(0)?;
            return session.write_response_header(Box::new(head), true).await;
        }
        let (status, kind, body) = match self.console.answer(session.req_header().uri.path()) {
            console::Answer::File(kind, body) => (200, kind, body),
            console::Answer::Redirect => {
                let mut head = ResponseHeader::build(308, Some(2))?;
                head.insert_header(header::LOCATION, console::ROOT)?;
                head.set_content_length(0)?;
                return session.write_response_header(Box::new(head), true).await;
            }
            console::Answer::NotFound => (
                404,
                "text/plain; charset=utf-8",
                Bytes::from_static(b"not found\n"),
            ),
        };
        let mut head = ResponseHeader::build(status, Some(6))?;
        head.insert_header(header::CONTENT_TYPE, kind)?;
        for (name, value) in self.console.headers() {
            head.insert_header(name.to_string(), value.to_string())?;
        }
        write_whole(session, head, body, method == Method::HEAD).await
    }

    /// `GET /management/v1/cluster`, answered by the edge itself (its
    /// authentication has already passed: admins only).
    async fn serve_cluster(&self, session: &mut Session) -> Result<()> {
        let authorization = session
            .req_header()
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let report = self.cluster.report(authorization.as_deref()).await;
        let body = floe_shared::json::to_json_bytes(&report).unwrap_or_default();
        let mut head = ResponseHeader::build(200, Some(3))?;
        head.insert_header(header::CONTENT_TYPE, "application/json")?;
        head.insert_header(header::CACHE_CONTROL, "no-store")?;
        write_whole(session, head, body, false).await
    }

    /// 431/413 before anything else reads the request.
    async fn enforce_limits(&self, session: &mut Session) -> Result<bool> {
        let req = session.req_header();
        let limits = &self.config.limits;
        let head_bytes: usize = req.uri.path().len()
            + req.uri.query().map_or(0, str::len)
            + req
                .headers
                .iter()
                .map(|(k, v)| k.as_str().len() + v.len() + 4)
                .sum::<usize>();
        if head_bytes > limits.max_header_bytes {
            self.write_error(
                session,
                431,
                "RequestHeaderFieldsTooLargeException",
                &format!(
                    "Request headers are limited to {} bytes",
                    limits.max_header_bytes
                ),
                None,
            )
            .await?;
            return Ok(true);
        }
        let length = req
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if length.is_some_and(|l| l > limits.max_body_bytes) {
            self.write_too_large(session).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Verifies and authorizes; writes the 401/403/503 and returns true when refused.
    async fn authenticate(&self, session: &mut Session) -> Result<bool> {
        let Some(auth) = &self.auth else {
            return Ok(false);
        };
        let address = client_ip(session);
        let req = session.req_header();
        let authorization = req
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let refusal = auth
            .check(
                req.method.as_str(),
                req.uri.path(),
                req.uri.query(),
                authorization,
                address,
            )
            .await;
        let refusal = match refusal {
            Ok(()) => return Ok(false),
            Err(refusal) => refusal,
        };
        let refused_text;
        let (status, kind, message, challenge) = match &refusal {
            Refusal::Unauthorized(refused) => (
                401,
                types::NOT_AUTHORIZED,
                {
                    refused_text = refused.to_string();
                    refused_text.as_str()
                },
                Some(if refused.presented() {
                    floe_shared::auth::WWW_AUTHENTICATE_INVALID
                } else {
                    floe_shared::auth::WWW_AUTHENTICATE
                }),
            ),
            Refusal::Forbidden(message) => (403, types::FORBIDDEN, message.as_str(), None),
            Refusal::TooMany => (
                429,
                "TooManyRequestsException",
                "Too many failed credential checks from this address; retry later",
                None,
            ),
            Refusal::Unavailable(message) => {
                (503, types::SERVICE_UNAVAILABLE, message.as_str(), None)
            }
        };
        self.write_error(session, status, kind, message, challenge)
            .await?;
        Ok(true)
    }

    async fn serve_entry(
        &self,
        session: &mut Session,
        entry: &Entry,
        result: &'static str,
    ) -> Result<()> {
        let not_modified = session
            .req_header()
            .headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|inm| if_none_match_matches(inm, &entry.etag));
        if not_modified {
            let head = if result == "hit" {
                entry.not_modified_head.clone()
            } else {
                let mut head = ResponseHeader::build(304, Some(3))?;
                head.insert_header(header::ETAG, entry.etag.as_str())?;
                head.insert_header(CACHE_HEADER, result)?;
                head
            };
            session.write_response_header(Box::new(head), true).await?;
            self.metrics.cache_not_modified();
            return Ok(());
        }
        if result == "hit" {
            session
                .write_response_header(Box::new(entry.hit_head.clone()), false)
                .await?;
            session
                .write_response_body(Some(entry.body.clone()), true)
                .await?;
            self.metrics.cache_hit();
            return Ok(());
        }
        let mut head = ResponseHeader::build(200, Some(5))?;
        head.insert_header(header::CONTENT_TYPE, entry.content_type.as_str())?;
        head.insert_header(header::ETAG, entry.etag.as_str())?;
        head.insert_header(CACHE_HEADER, result)?;
        if result == "stale" {
            head.insert_header(header::WARNING, "110 - \"Response is Stale\"")?;
        }
        head.set_content_length(entry.body.len())?;
        session.write_response_header(Box::new(head), false).await?;
        session
            .write_response_body(Some(entry.body.clone()), true)
            .await?;
        self.metrics.cache(result);
        Ok(())
    }

    async fn write_error(
        &self,
        session: &mut Session,
        status: u16,
        r#type: &str,
        message: &str,
        challenge: Option<&'static str>,
    ) -> Result<()> {
        let body = floe_shared::json::to_json_bytes(
            &ErrorModel::new(status, r#type, message).into_response_body(),
        )
        .unwrap_or_default();
        let mut head = ResponseHeader::build(status, Some(4))?;
        head.insert_header(header::CONTENT_TYPE, "application/json")?;
        if let Some(challenge) = challenge {
            head.insert_header(header::WWW_AUTHENTICATE, challenge)?;
        }
        write_whole(session, head, body, false).await
    }

    /// The 413 of a request body over `limits.max_body_bytes`.
    async fn write_too_large(&self, session: &mut Session) -> Result<()> {
        let message = format!(
            "Request bodies are limited to {} bytes",
            self.config.limits.max_body_bytes
        );
        self.write_error(session, 413, types::PAYLOAD_TOO_LARGE, &message, None)
            .await
    }

    fn invalidate(&self, invalidation: &Invalidation, source: &str) {
        self.cache.invalidate(invalidation);
        self.metrics.invalidation(source);
    }
}

#[async_trait]
impl ProxyHttp for EdgeProxy {
    type CTX = Ctx;

    /// No downstream modules: the edge answers bodies as the origin and its
    /// cache hold them (the framework's default adds a response-compression
    /// module that is disabled yet still runs on every request).
    fn init_downstream_modules(&self, _modules: &mut pingora::modules::http::HttpModules) {}

    fn new_ctx(&self) -> Ctx {
        Ctx {
            started: Instant::now(),
            upstream_started: None,
            route: "other",
            kind: Kind::Other,
            retryable: false,
            attempts: 0,
            tried: Vec::new(),
            flight: None,
            fill: None,
            stale: None,
            body_bytes: 0,
        }
    }

    async fn request_filter(&self, session: &mut Session, ctx: &mut Ctx) -> Result<bool> {
        let path = session.req_header().uri.path();
        if path == "/v1/oauth/tokens" && session.req_header().method == Method::POST {
            ctx.route = "/v1/oauth/tokens";
            if !self.enforce_limits(session).await? {
                self.serve_token(session).await?;
            }
            return Ok(true);
        }
        if Console::owns(path) {
            ctx.route = console::ROOT;
            self.serve_console(session).await?;
            return Ok(true);
        }
        if !forwarded(path) {
            ctx.route = "unserved";
            self.write_error(
                session,
                404,
                types::NOT_FOUND,
                "Not served to clients: the edge forwards /v1/…, /management/…, /health and /ready, and serves the console at /ui/",
                None,
            )
            .await?;
            return Ok(true);
        }
        if self.enforce_limits(session).await? || self.authenticate(session).await? {
            return Ok(true);
        }
        let req = session.req_header();
        let (kind, route) = classify(&req.method, req.uri.path());
        ctx.route = route;
        if req.method == Method::GET && req.uri.path() == Resource::Cluster.pattern() {
            self.serve_cluster(session).await?;
            return Ok(true);
        }
        ctx.retryable = matches!(req.method, Method::GET | Method::HEAD)
            || req.headers.contains_key("idempotency-key");
        // A load's table moves into the fill; ctx.kind stays Other for it.
        let table = match kind {
            Kind::Load(table) => table,
            other => {
                if let Kind::Write(invalidation) = &other {
                    // Before forwarding too: loads that start now will not fill
                    // the cache with what this write is about to replace.
                    self.invalidate(invalidation, "local");
                }
                ctx.kind = other;
                return Ok(false);
            }
        };
        let bypass = rules::bypasses(
            self.config.cache.enabled,
            self.auth.is_some(),
            req.headers.contains_key(header::AUTHORIZATION),
        );
        if bypass {
            self.metrics.cache("bypass");
            return Ok(false);
        }
        let delegation = req
            .headers
            .get("x-iceberg-access-delegation")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let key = variant_key(&table, req.uri.query().unwrap_or(""), delegation);
        let wait = Duration::from_millis(self.config.cache.coalesce_timeout_ms);
        let found = self
            .cache
            .find(&key, &table, wait, || self.metrics.cache("coalesced"))
            .await;
        match found {
            Found::Hit(entry) => {
                self.serve_entry(session, &entry, "hit").await?;
                return Ok(true);
            }
            Found::Miss { stale, flight } => {
                ctx.stale = stale;
                ctx.flight = flight;
            }
        }
        self.metrics.cache("miss");
        let generations = self.cache.generations(&table);
        ctx.fill = Some(Fill::new(table, key, generations));
        Ok(false)
    }

    async fn request_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        _end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<()> {
        // Bodies without a Content-Length are counted as they stream.
        if let Some(chunk) = body {
            ctx.body_bytes += chunk.len();
            if ctx.body_bytes > self.config.limits.max_body_bytes {
                return Err(Error::explain(
                    ErrorType::HTTPStatus(413),
                    "request body over the limit",
                ));
            }
        }
        Ok(())
    }

    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut Ctx) -> Result<Box<HttpPeer>> {
        ctx.attempts += 1;
        let tried = &ctx.tried;
        // A healthy origin not tried yet; else any not tried; else (a retry
        // after every origin failed once, e.g. the only one, whose pooled
        // connection was stale) any healthy one again.
        let (backend, healthy) = match self
            .lb
            .select_with(b"", 256, |b, healthy| healthy && !tried.contains(&b.addr))
        {
            Some(backend) => (backend, true),
            None => (
                self.lb
                    .select_with(b"", 256, |b, _| !tried.contains(&b.addr))
                    .or_else(|| self.lb.select_with(b"", 256, |_, healthy| healthy))
                    .ok_or_else(|| {
                        Error::explain(ErrorType::ConnectNoRoute, "no origin left to try")
                    })?,
                false,
            ),
        };
        let mut peer = HttpPeer::new(&backend, false, String::new());
        if !healthy || ctx.attempts > 1 {
            // An origin that failed its health check, or a second attempt:
            // a new connection, never one from the pool, which may be to an
            // origin gone silent (a partition leaves pooled connections open
            // but mute, and a request on one waits the whole read timeout).
            peer.group_key = self.fresh_connections.fetch_add(1, Ordering::Relaxed) + 1;
        }
        let up = &self.config.upstream;
        peer.options.connection_timeout = Some(Duration::from_millis(up.connect_timeout_ms));
        peer.options.read_timeout = Some(Duration::from_millis(up.read_timeout_ms));
        peer.options.idle_timeout = Some(Duration::from_millis(up.idle_timeout_ms));
        ctx.upstream_started = Some(Instant::now());
        Ok(Box::new(peer))
    }

    fn fail_to_connect(
        &self,
        _session: &mut Session,
        peer: &HttpPeer,
        ctx: &mut Ctx,
        mut e: Box<Error>,
    ) -> Box<Error> {
        ctx.tried.push(peer._address.clone());
        // Nothing reached the origin: any request, whatever its method, may
        // go to another one.
        if ctx.attempts <= self.config.upstream.retries {
            e.set_retry(true);
        }
        e
    }

    fn error_while_proxy(
        &self,
        peer: &HttpPeer,
        session: &mut Session,
        e: Box<Error>,
        ctx: &mut Ctx,
        _client_reused: bool,
    ) -> Box<Error> {
        let mut e = e.more_context(format!("Peer: {peer}"));
        ctx.tried.push(peer._address.clone());
        // The request may have reached the origin. Replayed elsewhere only
        // when replaying is harmless (a read, or a write the origins
        // recognise by its Idempotency-Key), its body is all still at hand,
        // and the client has seen nothing of this attempt. An unkeyed write
        // answers CommitStateUnknownException: the contract.
        let replayable = ctx.retryable
            && !session.as_ref().retry_buffer_truncated()
            && session.response_written().is_none()
            && ctx.attempts <= self.config.upstream.retries;
        e.set_retry(replayable);
        e
    }

    async fn upstream_response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Some(started) = ctx.upstream_started {
            self.metrics
                .upstream(ctx.route, started.elapsed().as_secs_f64());
        }
        if response.status == http::StatusCode::NOT_MODIFIED
            && let Some(stale) = &ctx.stale
            && ctx.fill.is_some()
            && response
                .headers
                .get(header::ETAG)
                .is_some_and(|etag| etag.as_bytes() == stale.etag.as_bytes())
        {
            // The origin confirmed the version the entry holds (the client's
            // own, see `upstream_request_filter`): the entry is fresh again.
            if let Some(fill) = ctx.fill.take() {
                let (table, entry) = fill.revalidated(stale);
                match entry {
                    Ok(entry) => {
                        self.cache.store(&table, entry);
                    }
                    Err(e) => tracing::warn!(error = %e, "revalidated table load not cached"),
                }
            }
            ctx.flight = None;
            response.insert_header(CACHE_HEADER, "revalidated")?;
            return Ok(());
        }
        if let Some(fill) = &mut ctx.fill {
            if !fill.begin(response, |length| self.cache.admits(length)) {
                ctx.fill = None;
            }
            response.insert_header(CACHE_HEADER, "miss")?;
        }
        Ok(())
    }

    async fn upstream_request_filter(
        &self,
        session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if ctx.fill.is_none() {
            return Ok(());
        }
        // A load that fills the cache asks the origin conditionally only to
        // revalidate the stale entry with the client's own version; else
        // it asks for the body, which a 304 would not give: without it,
        // every conditional load of the table would go to an origin until
        // an unconditional one came by.
        let revalidates = ctx.stale.as_ref().is_some_and(|stale| {
            session
                .req_header()
                .headers
                .get(header::IF_NONE_MATCH)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|inm| if_none_match_matches(inm, &stale.etag))
        });
        if !revalidates {
            upstream_request.remove_header(&header::IF_NONE_MATCH);
            upstream_request.remove_header(&header::IF_MODIFIED_SINCE);
        }
        Ok(())
    }

    fn upstream_response_body_filter(
        &self,
        _session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut Ctx,
    ) -> Result<Option<Duration>> {
        let Some(fill) = &mut ctx.fill else {
            return Ok(None);
        };
        match fill.append(body.as_ref(), end_of_stream, |l| self.cache.admits(l)) {
            Progress::Idle | Progress::Partial => {}
            Progress::TooLarge => ctx.fill = None,
            // Complete when the last byte is in: store before that byte goes
            // to the client, so the client's next request already hits.
            Progress::Complete => {
                if let Some((table, entry)) = ctx.fill.take().and_then(Fill::finish) {
                    match entry {
                        Ok(entry) => {
                            self.cache.store(&table, entry);
                        }
                        // An origin header Pingora cannot put in a head: not cached.
                        Err(e) => tracing::warn!(error = %e, "table load not cached"),
                    }
                }
                // Wake the requests waiting for this key.
                ctx.flight = None;
            }
        }
        Ok(None)
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        _response: &mut ResponseHeader,
        ctx: &mut Ctx,
    ) -> Result<()> {
        if let Kind::Write(invalidation) = &ctx.kind {
            // Again after the origin answered, before the client sees it:
            // anything filled meanwhile is older than this write.
            self.invalidate(invalidation, "local");
        }
        Ok(())
    }

    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut Ctx) -> FailToProxy {
        ctx.flight = None;
        // Read what is left of the request body first: closing a socket with
        // unread data resets it, and the client would lose our answer.
        let _ = tokio::time::timeout(Duration::from_secs(5), session.drain_request_body()).await;
        // Pingora closes the client connection after a failed proxy attempt;
        // with keep-alive off the response says so (`Connection: close`).
        session.set_keepalive(None);
        let written = if let ErrorType::HTTPStatus(413) = e.etype()
            && session.response_written().is_none()
        {
            self.write_too_large(session).await.map(|_| 413)
        } else if let Some(entry) = ctx.stale.take()
            && session.response_written().is_none()
        {
            self.serve_entry(session, &entry, "stale")
                .await
                .map(|_| 200)
        } else if session.response_written().is_some() {
            Ok(0)
        } else {
            let connect = matches!(
                e.etype(),
                ErrorType::ConnectTimedout
                    | ErrorType::ConnectRefused
                    | ErrorType::ConnectNoRoute
                    | ErrorType::ConnectError
                    | ErrorType::SocketError
            );
            if connect {
                self.write_error(
                    session,
                    503,
                    types::SERVICE_UNAVAILABLE,
                    "No catalog origin is reachable; nothing was changed",
                    None,
                )
                .await
                .map(|_| 503)
            } else {
                let kind = if matches!(ctx.kind, Kind::Write(_)) {
                    types::COMMIT_STATE_UNKNOWN
                } else {
                    "BadGatewayException"
                };
                self.write_error(
                    session,
                    502,
                    kind,
                    "The catalog origin failed while answering",
                    None,
                )
                .await
                .map(|_| 502)
            }
        };
        FailToProxy {
            error_code: written.unwrap_or(0),
            can_reuse_downstream: false,
        }
    }

    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut Ctx) {
        let status = session
            .response_written()
            .map_or("0", |r| r.status.as_str());
        self.metrics.request(
            session.req_header().method.as_str(),
            ctx.route,
            status,
            ctx.started.elapsed().as_secs_f64(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_client_routes_are_forwarded() {
        for path in [
            "/v1/config",
            "/v1/wh/namespaces/a/tables/t",
            "/management/v1/warehouses",
            "/health",
            "/ready",
        ] {
            assert!(forwarded(path), "{path}");
        }
        for path in [
            "/metrics",
            "/metrics/",
            "/internal/v1/events",
            "/internal/v1/principals/x",
            "/",
            "",
            "/v1",
            "/managementx",
            "/Metrics",
            "//metrics",
            "/%6detrics",
            "*",
        ] {
            assert!(!forwarded(path), "{path}");
        }
    }
}
