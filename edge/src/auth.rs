//! Authentication at the edge: the OAuth2 token endpoint, and verification
//! plus authorization of every request before the cache answers or the
//! request is forwarded.
//!
//! What is kept, and for how long:
//! - principal records (grants, state, secret hash) and API-key records, read
//!   from the origin's internal API: `auth.principal_cache_seconds`;
//! - verified credentials, as the SHA-256 of the secret that passed argon2id
//!   (never the secret): `auth.credential_cache_seconds`.
//!
//! Both are dropped at once by the origin's change events for that principal
//! or key, and flushed whenever the event stream is (re)established; so a
//! disabled or rotated client stops working within the event delay, and
//! within `principal_cache_seconds` when events are lost (a record ages from
//! the moment its read began). Tokens carry the credential generation of the
//! record they were minted from, so a token minted from a stale record is
//! refused everywhere once the change is known, whatever its `iat`.
//!
//! A secret or API key refused against a cached record is checked once more
//! against a fresh read of the record, so a rotated secret works at once on
//! every edge. That read follows a failed argon2id check (one blocking thread
//! per core at most), so it can never come more often than those.
//!
//! Failed attempts are counted per (client id, source address) and per
//! source address, never per client id alone: one address cannot lock a
//! client out for everyone else. The counters are count-min sketches of
//! fixed size, whatever the number of addresses and client ids.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use floe_shared::auth::{
    API_KEYS_PATH, ApiKeyRecord, AuthConfig, AuthError, Authenticator, ExpiringMap, INTERNAL_SCOPE,
    Identity, OAuthError, PRINCIPALS_PATH, Principal, Required, TokenRequest, allows,
    credential_digest, now_secs, required, service_claims, verify_secret, write_token_response,
};
use floe_shared::pool::{BufferPool, PooledBuf};
use floe_shared::token::{Claims, TokenSigner};
use pingora::lb::LoadBalancer;
use pingora::lb::selection::RoundRobin;
use pingora_limits::rate::Rate;

use crate::metrics::EdgeMetrics;

const CACHE_CAPACITY: usize = 100_000;
const SUBJECTS_PATH: &str = "/internal/v1/subjects";
/// Width of the failure counters (count-min sketches, 4 rows): 4 × 16384
/// counters per window, two windows, 1 MiB per limiter whatever the traffic.
/// Raising every counter to a limit of 10 by spraying random keys takes about
/// 160,000 failures a minute, from thousands of addresses (each is stopped
/// at its own limit).
const LIMITER_SLOTS: usize = 16_384;
const LIMITER_HASHES: usize = 4;
/// A cached record younger than this is not read again on suspicion alone
/// (a token minted from a newer record).
const REREAD_AFTER: Duration = Duration::from_secs(1);

/// Why a request was refused.
#[derive(Debug)]
pub enum Refusal {
    /// 401 (`true`: a credential was presented).
    Unauthorized(String, bool),
    /// 403.
    Forbidden(String),
    /// 503: the origin could not be asked.
    Unavailable(String),
    /// 429: too many failed attempts from this address.
    TooMany,
}

fn unauthorized(e: AuthError) -> Refusal {
    Refusal::Unauthorized(e.to_string(), e.presented())
}

/// Whether `principal` may make the request (the shared rule, `required`).
fn authorize(
    principal: &Principal,
    method: &str,
    path: &str,
    query: Option<&str>,
) -> Result<(), Refusal> {
    match required(method, path, query, &principal.default_warehouse) {
        Required::Access(access) if !allows(&principal.grants, &access) => Err(Refusal::Forbidden(
            format!("Principal {} may not do this here", principal.id),
        )),
        Required::Internal => Err(Refusal::Forbidden(
            "Internal endpoints are not served here".into(),
        )),
        _ => Ok(()),
    }
}

/// The edge's authentication state.
pub struct EdgeAuth {
    config: AuthConfig,
    authenticator: Authenticator,
    signer: TokenSigner,
    lb: Arc<LoadBalancer<RoundRobin>>,
    client: reqwest::Client,
    /// `c:<id>` / `s:<subject>` → principal.
    principals: ExpiringMap<Arc<Principal>>,
    api_keys: ExpiringMap<Arc<ApiKeyRecord>>,
    /// `c:<client id>` / `k:<key id>` → SHA-256 of the secret that verified.
    verified: ExpiringMap<[u8; 32]>,
    /// Failed attempts per (client id, address).
    failures_by_client: Rate,
    /// Failed attempts per address.
    failures_by_address: Rate,
    tokens: BufferPool,
    metrics: EdgeMetrics,
    /// argon2id runs on at most this many blocking threads at once.
    hashing: tokio::sync::Semaphore,
}

/// A token answer or an OAuth error: status and JSON body.
pub struct TokenAnswer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Bytes,
    /// Seconds to wait (429).
    pub retry_after: Option<u64>,
}

impl TokenAnswer {
    fn error(e: OAuthError) -> Self {
        Self {
            status: e.status,
            body: Bytes::from(e.body()),
            retry_after: None,
        }
    }
}

impl EdgeAuth {
    /// From configuration (`auth.enabled` must be on) and the external
    /// issuer's verifier, when one is configured.
    pub fn new(
        config: &AuthConfig,
        oidc: Option<Arc<floe_shared::oidc::OidcVerifier>>,
        lb: Arc<LoadBalancer<RoundRobin>>,
        tokens: BufferPool,
        metrics: EdgeMetrics,
    ) -> anyhow::Result<Self> {
        config.validate(true).map_err(anyhow::Error::msg)?;
        let ttl = Duration::from_secs(config.principal_cache_seconds);
        Ok(Self {
            authenticator: Authenticator::new(config, oidc).map_err(anyhow::Error::msg)?,
            signer: config.signer().map_err(anyhow::Error::msg)?,
            config: config.clone(),
            lb,
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(10))
                .build()?,
            principals: ExpiringMap::new(ttl, CACHE_CAPACITY),
            api_keys: ExpiringMap::new(ttl, CACHE_CAPACITY),
            verified: ExpiringMap::new(
                Duration::from_secs(config.credential_cache_seconds),
                CACHE_CAPACITY,
            ),
            failures_by_client: limiter(),
            failures_by_address: limiter(),
            tokens,
            metrics,
            hashing: tokio::sync::Semaphore::new(
                std::thread::available_parallelism().map_or(2, usize::from),
            ),
        })
    }

    /// A service token for the origin's internal API.
    pub fn service_token(&self) -> Option<String> {
        let claims = service_claims(&self.config.issuer, now_secs(), 300);
        let token = self.signer.issue(&claims).ok()?;
        String::from_utf8(token.to_vec()).ok()
    }

    /// Drops what is cached about a principal (and one of its keys).
    pub fn forget(&self, principal: &str, api_key: Option<&str>) {
        self.principals.remove(&format!("c:{principal}"));
        self.principals.remove_where(|p| p.id == principal);
        self.verified.remove(&format!("c:{principal}"));
        if let Some(key) = api_key {
            self.api_keys.remove(key);
            self.verified.remove(&format!("k:{key}"));
        }
        for key in self.keys_of(principal) {
            self.api_keys.remove(&key);
            self.verified.remove(&format!("k:{key}"));
        }
    }

    fn keys_of(&self, principal: &str) -> Vec<String> {
        let ids = std::sync::Mutex::new(Vec::new());
        self.api_keys.remove_where(|k| {
            let hit = k.principal == principal;
            if hit && let Ok(mut ids) = ids.lock() {
                ids.push(k.id.clone());
            }
            hit
        });
        ids.into_inner().unwrap_or_default()
    }

    /// Drops everything cached (the event stream was re-established).
    pub fn forget_all(&self) {
        self.principals.clear();
        self.api_keys.clear();
        self.verified.clear();
    }

    /// GETs an internal record from an origin: `None` on 404.
    async fn fetch<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
    ) -> Result<Option<T>, Refusal> {
        let token = self
            .service_token()
            .ok_or_else(|| Refusal::Unavailable("cannot sign a service token".into()))?;
        let mut last = String::from("no origin");
        for _ in 0..2 {
            let Some(backend) = self.lb.select(b"", 256) else {
                break;
            };
            let url = format!("http://{}{path}", backend.addr);
            match self.client.get(&url).bearer_auth(&token).send().await {
                Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => return Ok(None),
                Ok(r) if r.status().is_success() => {
                    return r
                        .json::<T>()
                        .await
                        .map(Some)
                        .map_err(|e| Refusal::Unavailable(format!("bad internal answer: {e}")));
                }
                Ok(r) => last = format!("origin answered {}", r.status()),
                Err(e) => last = e.to_string(),
            }
        }
        tracing::warn!(reason = %last, "cannot read a principal from the origins");
        Err(Refusal::Unavailable(
            "The catalog origin could not be asked about these credentials".into(),
        ))
    }

    async fn principal(&self, key: String) -> Result<Option<Arc<Principal>>, Refusal> {
        if let Some(p) = self.principals.get(&key) {
            return Ok(Some(p));
        }
        self.read_principal(key).await
    }

    /// Reads a principal from an origin and caches it.
    async fn read_principal(&self, key: String) -> Result<Option<Arc<Principal>>, Refusal> {
        let path = match key.split_once(':') {
            Some(("c", id)) => format!("{PRINCIPALS_PATH}/{}", encode(id)),
            Some((_, subject)) => format!("{SUBJECTS_PATH}/{}", encode(subject)),
            None => return Ok(None),
        };
        // A change event during the fetch must win over what the fetch read,
        // and the record ages from the start of the fetch.
        let ticket = self.principals.ticket();
        let fetched: Option<Principal> = self.fetch(&path).await?;
        Ok(fetched.map(|p| {
            let p = Arc::new(p);
            self.principals.insert_since(&key, p.clone(), ticket);
            p
        }))
    }

    /// The principal of a Floe token. A token minted from a newer record than
    /// the cached one proves the cache stale (a change event was missed): the
    /// record is read again, at most once a second.
    async fn token_principal(&self, claims: &Claims) -> Result<Option<Arc<Principal>>, Refusal> {
        let key = format!("c:{}", claims.sub);
        match self.principals.get_aged(&key) {
            Some((p, age)) if claims.generation <= p.generation || age < REREAD_AFTER => {
                Ok(Some(p))
            }
            _ => self.read_principal(key).await,
        }
    }

    async fn api_key(&self, id: &str, fresh: bool) -> Result<Option<Arc<ApiKeyRecord>>, Refusal> {
        if !fresh && let Some(r) = self.api_keys.get(id) {
            return Ok(Some(r));
        }
        let ticket = self.api_keys.ticket();
        let Some(r) = self
            .fetch::<ApiKeyRecord>(&format!("{API_KEYS_PATH}/{}", encode(id)))
            .await?
        else {
            return Ok(None);
        };
        let r = Arc::new(r);
        self.api_keys.insert_since(id, r.clone(), ticket);
        Ok(Some(r))
    }

    /// argon2id off the async runtime (a few at a time), remembered as a
    /// digest of the secret and the hash it matched.
    async fn verify(&self, cache_key: &str, secret: &str, hash: &str) -> bool {
        let digest = credential_digest(secret, hash);
        if self.verified.get(cache_key) == Some(digest) {
            return true;
        }
        let ticket = self.verified.ticket();
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let (secret, hash) = (secret.to_string(), hash.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
            .await
            .unwrap_or(false);
        if ok {
            self.verified.insert_since(cache_key, digest, ticket);
        }
        ok
    }

    /// Whether `secret` is the API key's; a refusal against a cached record
    /// is checked again against a fresh read (the key may have been rotated
    /// by a process whose change event has not arrived).
    async fn api_key_matches(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<Option<Arc<ApiKeyRecord>>, Refusal> {
        let Some(record) = self.api_key(id, false).await? else {
            return Ok(None);
        };
        if record.revoked {
            return Ok(None);
        }
        let cache_key = format!("k:{id}");
        if self.verify(&cache_key, secret, &record.secret_hash).await {
            return Ok(Some(record));
        }
        let Some(fresh) = self.api_key(id, true).await? else {
            return Ok(None);
        };
        if fresh.revoked || fresh.secret_hash == record.secret_hash {
            return Ok(None);
        }
        Ok(self
            .verify(&cache_key, secret, &fresh.secret_hash)
            .await
            .then_some(fresh))
    }

    async fn resolve(
        &self,
        identity: Identity,
        address: IpAddr,
    ) -> Result<Arc<Principal>, Refusal> {
        let revoked = || unauthorized(AuthError::Revoked);
        match identity {
            Identity::Token(claims) => {
                if claims.scope == INTERNAL_SCOPE {
                    return Err(Refusal::Forbidden(
                        "Service tokens are not accepted here".into(),
                    ));
                }
                let principal = self.token_principal(&claims).await?.ok_or_else(revoked)?;
                Authenticator::check_token(&principal, &claims).map_err(unauthorized)?;
                Ok(principal)
            }
            Identity::External { subject, iat } => {
                let principal = self
                    .principal(format!("s:{subject}"))
                    .await?
                    .ok_or_else(revoked)?;
                Authenticator::check_external(&principal, iat).map_err(unauthorized)?;
                Ok(principal)
            }
            Identity::ApiKey { id, secret } => {
                // Guessing API keys costs argon2id: limited like the token endpoint.
                if self.limited(None, address).is_some() {
                    return Err(Refusal::TooMany);
                }
                let Some(record) = self.api_key_matches(&id, &secret).await? else {
                    self.failed(None, address);
                    return Err(revoked());
                };
                let principal = self
                    .principal(format!("c:{}", record.principal))
                    .await?
                    .ok_or_else(revoked)?;
                Authenticator::check_key_holder(&principal).map_err(unauthorized)?;
                Ok(principal)
            }
        }
    }

    /// Verifies the request's credential and authorizes the request.
    pub async fn check(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        authorization: Option<&str>,
        address: IpAddr,
    ) -> Result<(), Refusal> {
        if floe_shared::auth::is_public(path) {
            return Ok(());
        }
        let result = async {
            let identity = self
                .authenticator
                .identify(authorization, now_secs())
                .map_err(unauthorized)?;
            let principal = self.resolve(identity, address).await?;
            authorize(&principal, method, path, query)
        }
        .await;
        self.metrics.auth(
            "request",
            match &result {
                Ok(()) => "ok",
                Err(Refusal::Unauthorized(..)) => "unauthorized",
                Err(Refusal::Forbidden(_)) => "forbidden",
                Err(Refusal::Unavailable(_)) => "unavailable",
                Err(Refusal::TooMany) => "rate_limited",
            },
        );
        result
    }

    /// `Retry-After` seconds when this address (or this client id from this
    /// address) failed too often in the last minute.
    fn limited(&self, client: Option<&str>, address: IpAddr) -> Option<u64> {
        fn over<K: std::hash::Hash>(rate: &Rate, key: &K, limit: u32) -> bool {
            let limit = f64::from(limit.max(1));
            rate.observe(key, 0) as f64 >= limit || rate.rate(key) * 60.0 >= limit
        }
        let limits = &self.config.rate_limit;
        let blocked = over(
            &self.failures_by_address,
            &address,
            limits.failures_per_address_per_minute,
        ) || client.is_some_and(|c| {
            over(
                &self.failures_by_client,
                &(c, address),
                limits.failures_per_client_per_minute,
            )
        });
        blocked.then_some(60)
    }

    fn failed(&self, client: Option<&str>, address: IpAddr) {
        self.failures_by_address.observe(&address, 1);
        if let Some(c) = client {
            self.failures_by_client.observe(&(c, address), 1);
        }
    }

    /// `POST /v1/oauth/tokens`: a form body, the `Authorization` header, the
    /// client's address.
    pub async fn token(
        &self,
        body: &[u8],
        authorization: Option<&str>,
        address: IpAddr,
    ) -> TokenAnswer {
        let request = TokenRequest::parse(body, authorization);
        let client_owned = match &request {
            Ok(TokenRequest::ClientCredentials { client_id, .. }) => Some(client_id.clone()),
            _ => None,
        };
        let client = client_owned.as_deref();
        if let Some(retry_after) = self.limited(client, address) {
            self.metrics.auth("token", "rate_limited");
            let mut answer = TokenAnswer::error(OAuthError {
                status: 429,
                error: "invalid_request",
                error_description: "Too many failed attempts; retry later".into(),
            });
            answer.retry_after = Some(retry_after);
            return answer;
        }
        let outcome = match &request {
            Err(e) => Err(e.clone()),
            Ok(TokenRequest::ClientCredentials {
                client_id,
                client_secret,
                ..
            }) => self.client_credentials(client_id, client_secret).await,
            Ok(TokenRequest::Exchange { subject_token, .. }) => self.exchange(subject_token).await,
        };
        match outcome {
            Ok(claims) => match self.issue(&claims) {
                Some(body) => {
                    self.metrics.auth("token", "issued");
                    TokenAnswer {
                        status: 200,
                        body,
                        retry_after: None,
                    }
                }
                None => TokenAnswer::error(OAuthError {
                    status: 500,
                    error: "invalid_request",
                    error_description: "token signing failed".into(),
                }),
            },
            Err(e) => {
                if matches!(e.error, "invalid_client" | "invalid_grant") {
                    self.failed(client, address);
                }
                self.metrics.auth("token", e.error);
                TokenAnswer::error(e)
            }
        }
    }

    /// Claims of a new token for `sub`, of credential `generation`.
    fn claims(&self, sub: &str, generation: u64) -> Claims {
        let now = now_secs();
        Claims {
            iss: self.config.issuer.clone(),
            sub: sub.to_string(),
            iat: now,
            exp: now + self.config.token_ttl_seconds,
            jti: String::new(),
            scope: floe_shared::auth::CATALOG_SCOPE.to_string(),
            generation,
        }
    }

    /// Token and answer body, both in pooled buffers.
    fn issue(&self, claims: &Claims) -> Option<Bytes> {
        let token = self.signer.issue_pooled(claims, &self.tokens).ok()?;
        let mut body = self.tokens.borrow(token.len() + 160);
        write_token_response(&mut body, &token, self.config.token_ttl_seconds);
        Some(PooledBuf::into_bytes(body))
    }

    async fn client_credentials(&self, id: &str, secret: &str) -> Result<Claims, OAuthError> {
        let unavailable = |_| OAuthError {
            status: 503,
            error: "invalid_request",
            error_description: "The catalog origin could not be asked about this client".into(),
        };
        let key = format!("c:{id}");
        let cached = self.principals.get(&key);
        let from_cache = cached.is_some();
        let mut principal = match cached {
            Some(p) => p,
            None => self
                .read_principal(key.clone())
                .await
                .map_err(unavailable)?
                .ok_or_else(OAuthError::invalid_client)?,
        };
        let mut ok = self.secret_matches(&principal, id, secret).await;
        if !ok && from_cache && principal.secret_hash.is_some() && !principal.disabled {
            // The secret may have been rotated by a process whose change event
            // has not arrived: one fresh read before refusing (only after a
            // failed argon2id check, so never more often than those).
            let fresh = self
                .read_principal(key)
                .await
                .map_err(unavailable)?
                .ok_or_else(OAuthError::invalid_client)?;
            if fresh.secret_hash != principal.secret_hash || fresh.disabled {
                ok = self.secret_matches(&fresh, id, secret).await;
            }
            principal = fresh;
        }
        if !ok {
            return Err(OAuthError::invalid_client());
        }
        // The token carries the generation of the record its secret matched.
        Ok(self.claims(id, principal.generation))
    }

    async fn secret_matches(&self, principal: &Principal, id: &str, secret: &str) -> bool {
        match principal.secret_hash.as_deref() {
            Some(hash) if !principal.disabled => {
                self.verify(&format!("c:{id}"), secret, hash).await
            }
            _ => false,
        }
    }

    async fn exchange(&self, subject_token: &str) -> Result<Claims, OAuthError> {
        let header = format!("Bearer {subject_token}");
        let identity = self
            .authenticator
            .identify(Some(&header), now_secs())
            .map_err(|e| OAuthError::invalid_grant(e.to_string()))?;
        let Identity::Token(subject) = &identity else {
            return Err(OAuthError::invalid_grant(
                "only Floe access tokens can be exchanged",
            ));
        };
        // The new token keeps the subject token's credential generation: it
        // is revoked with it, however often it is exchanged again.
        let generation = subject.generation;
        let principal = self
            .resolve(identity, IpAddr::from([0, 0, 0, 0]))
            .await
            .map_err(|r| match r {
                Refusal::Unavailable(m) => OAuthError {
                    status: 503,
                    error: "invalid_request",
                    error_description: m,
                },
                Refusal::TooMany => OAuthError::invalid_grant("too many failed attempts"),
                Refusal::Unauthorized(m, _) | Refusal::Forbidden(m) => OAuthError::invalid_grant(m),
            })?;
        Ok(self.claims(&principal.id, generation))
    }
}

fn limiter() -> Rate {
    Rate::new_with_estimator_config(Duration::from_secs(60), LIMITER_HASHES, LIMITER_SLOTS)
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}
