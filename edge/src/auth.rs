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
//! within `principal_cache_seconds` when events are lost.

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
    failures_by_client: Rate,
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
            failures_by_client: Rate::new(Duration::from_secs(60)),
            failures_by_address: Rate::new(Duration::from_secs(60)),
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
        let path = match key.split_once(':') {
            Some(("c", id)) => format!("{PRINCIPALS_PATH}/{}", encode(id)),
            Some((_, subject)) => format!("{SUBJECTS_PATH}/{}", encode(subject)),
            None => return Ok(None),
        };
        // A change event during the fetch must win over what the fetch read.
        let generation = self.principals.generation();
        let fetched: Option<Principal> = self.fetch(&path).await?;
        Ok(fetched.map(|p| {
            let p = Arc::new(p);
            self.principals.insert_since(&key, p.clone(), generation);
            p
        }))
    }

    /// argon2id off the async runtime (a few at a time), remembered as a
    /// digest of the secret and the hash it matched.
    async fn verify(&self, cache_key: &str, secret: &str, hash: &str) -> bool {
        let digest = credential_digest(secret, hash);
        if self.verified.get(cache_key) == Some(digest) {
            return true;
        }
        let generation = self.verified.generation();
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let (secret, hash) = (secret.to_string(), hash.to_string());
        let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
            .await
            .unwrap_or(false);
        if ok {
            self.verified.insert_since(cache_key, digest, generation);
        }
        ok
    }

    async fn resolve(
        &self,
        identity: Identity,
        address: IpAddr,
    ) -> Result<Arc<Principal>, Refusal> {
        let revoked = || unauthorized(AuthError::Revoked);
        let (principal, iat) = match identity {
            Identity::Token(claims) => {
                if claims.scope == INTERNAL_SCOPE {
                    return Err(Refusal::Forbidden(
                        "Service tokens are not accepted here".into(),
                    ));
                }
                (
                    self.principal(format!("c:{}", claims.sub)).await?,
                    claims.iat,
                )
            }
            Identity::External { subject, iat } => {
                (self.principal(format!("s:{subject}")).await?, iat)
            }
            Identity::ApiKey { id, secret } => {
                // Guessing API keys costs argon2id: limited like the token endpoint.
                if self.limited(None, address).is_some() {
                    return Err(Refusal::TooMany);
                }
                let record = match self.api_keys.get(&id) {
                    Some(r) => r,
                    None => {
                        let generation = self.api_keys.generation();
                        let Some(r) = self
                            .fetch::<ApiKeyRecord>(&format!("{API_KEYS_PATH}/{id}"))
                            .await?
                        else {
                            self.failed(None, address);
                            return Err(revoked());
                        };
                        let r = Arc::new(r);
                        self.api_keys.insert_since(&id, r.clone(), generation);
                        r
                    }
                };
                if record.revoked
                    || !self
                        .verify(&format!("k:{id}"), &secret, &record.secret_hash)
                        .await
                {
                    self.failed(None, address);
                    return Err(revoked());
                }
                (
                    self.principal(format!("c:{}", record.principal)).await?,
                    u64::MAX,
                )
            }
        };
        let principal = principal.ok_or_else(revoked)?;
        Authenticator::check_principal(&principal, iat).map_err(unauthorized)?;
        Ok(principal)
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
        let result = self
            .check_inner(method, path, query, authorization, address)
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

    async fn check_inner(
        &self,
        method: &str,
        path: &str,
        query: Option<&str>,
        authorization: Option<&str>,
        address: IpAddr,
    ) -> Result<(), Refusal> {
        let identity = self
            .authenticator
            .identify(authorization, now_secs())
            .map_err(unauthorized)?;
        let principal = self.resolve(identity, address).await?;
        match required(method, path, query, &principal.default_warehouse) {
            Required::Access(access) if !allows(&principal.grants, &access) => Err(
                Refusal::Forbidden(format!("Principal {} may not do this here", principal.id)),
            ),
            Required::Internal => Err(Refusal::Forbidden(
                "Internal endpoints are not served here".into(),
            )),
            _ => Ok(()),
        }
    }

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
                &c,
                limits.failures_per_client_per_minute,
            )
        });
        blocked.then_some(60)
    }

    fn failed(&self, client: Option<&str>, address: IpAddr) {
        self.failures_by_address.observe(&address, 1);
        if let Some(c) = client {
            self.failures_by_client.observe(&c, 1);
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

    fn claims(&self, sub: &str) -> Claims {
        let now = now_secs();
        Claims {
            iss: self.config.issuer.clone(),
            sub: sub.to_string(),
            iat: now,
            exp: now + self.config.token_ttl_seconds,
            jti: String::new(),
            scope: floe_shared::auth::CATALOG_SCOPE.to_string(),
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
        let principal = self
            .principal(format!("c:{id}"))
            .await
            .map_err(|_| OAuthError {
                status: 503,
                error: "invalid_request",
                error_description: "The catalog origin could not be asked about this client".into(),
            })?
            .ok_or_else(OAuthError::invalid_client)?;
        let hash = principal
            .secret_hash
            .as_deref()
            .ok_or_else(OAuthError::invalid_client)?;
        if principal.disabled || !self.verify(&format!("c:{id}"), secret, hash).await {
            return Err(OAuthError::invalid_client());
        }
        Ok(self.claims(id))
    }

    async fn exchange(&self, subject_token: &str) -> Result<Claims, OAuthError> {
        let header = format!("Bearer {subject_token}");
        let identity = self
            .authenticator
            .identify(Some(&header), now_secs())
            .map_err(|e| OAuthError::invalid_grant(e.to_string()))?;
        let Identity::Token(_) = &identity else {
            return Err(OAuthError::invalid_grant(
                "only Floe access tokens can be exchanged",
            ));
        };
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
        Ok(self.claims(&principal.id))
    }
}

fn encode(segment: &str) -> String {
    percent_encoding::utf8_percent_encode(segment, percent_encoding::NON_ALPHANUMERIC).to_string()
}
