//! Authentication at the edge: the OAuth2 token endpoint, and verification
//! plus authorization of every request before the cache answers or the
//! request is forwarded.
//!
//! Credentials are checked against principal and API-key records read from
//! the origin's internal API and cached by [`Credentials`] (what is kept,
//! for how long, and the re-read of a rotated secret are described there).
//! The origin's change events for a principal or key drop what is cached
//! about it at once, and the whole cache is flushed whenever the event
//! stream is (re)established; so a disabled or rotated client stops working
//! within the event delay, and within `principal_cache_seconds` when events
//! are lost. Tokens carry the credential generation of the record they were
//! minted from, so a token minted from a stale record is refused everywhere
//! once the change is known, whatever its `iat`.
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
    API_KEYS_PATH, ApiKeyRecord, AuthConfig, AuthError, Authenticator, Credentials, INTERNAL_SCOPE,
    Identity, OAuthError, PRINCIPALS_PATH, Principal, PrincipalRef, RecordSource, Required,
    TokenRequest, allows, now_secs, required, service_claims, write_token_response,
};
use floe_shared::pool::{BufferPool, PooledBuf};
use floe_shared::token::{Claims, TokenSigner};
use pingora::lb::LoadBalancer;
use pingora::lb::selection::RoundRobin;
use pingora_limits::rate::Rate;

use crate::metrics::EdgeMetrics;

const SUBJECTS_PATH: &str = "/internal/v1/subjects";
/// Width of the failure counters (count-min sketches, 4 rows): 4 × 16384
/// counters per window, two windows, 1 MiB per limiter whatever the traffic.
/// Raising every counter to a limit of 10 by spraying random keys takes about
/// 160,000 failures a minute, from thousands of addresses (each is stopped
/// at its own limit).
const LIMITER_SLOTS: usize = 16_384;
const LIMITER_HASHES: usize = 4;

/// Why a request was refused.
#[derive(Debug)]
pub enum Refusal {
    /// 401.
    Unauthorized(AuthError),
    /// 403.
    Forbidden(String),
    /// 503: the origin could not be asked.
    Unavailable(String),
    /// 429: too many failed attempts from this address.
    TooMany,
}

impl From<AuthError> for Refusal {
    fn from(refused: AuthError) -> Self {
        Self::Unauthorized(refused)
    }
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
    credentials: Credentials<OriginRecords>,
    /// Failed attempts per (client id, address).
    failures_by_client: Rate,
    /// Failed attempts per address.
    failures_by_address: Rate,
    tokens: BufferPool,
    metrics: EdgeMetrics,
}

/// The edge reads principal and API-key records from the origins' internal
/// API, with a service token of its own.
struct OriginRecords {
    lb: Arc<LoadBalancer<RoundRobin>>,
    client: reqwest::Client,
    signer: TokenSigner,
    issuer: String,
}

impl OriginRecords {
    /// A service token for the origin's internal API.
    fn service_token(&self) -> Option<String> {
        let claims = service_claims(&self.issuer, now_secs(), 300);
        let token = self.signer.issue(&claims).ok()?;
        String::from_utf8(token.to_vec()).ok()
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
}

impl RecordSource for OriginRecords {
    type Error = Refusal;

    async fn principal(&self, who: PrincipalRef<'_>) -> Result<Option<Principal>, Refusal> {
        let path = match who {
            PrincipalRef::Client(id) => format!("{PRINCIPALS_PATH}/{}", encode(id)),
            PrincipalRef::Subject(subject) => format!("{SUBJECTS_PATH}/{}", encode(subject)),
        };
        self.fetch(&path).await
    }

    async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, Refusal> {
        self.fetch(&format!("{API_KEYS_PATH}/{}", encode(id))).await
    }
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
        oidc: Option<Arc<floe_shared::auth::oidc::OidcVerifier>>,
        lb: Arc<LoadBalancer<RoundRobin>>,
        tokens: BufferPool,
        metrics: EdgeMetrics,
    ) -> anyhow::Result<Self> {
        config.validate(true).map_err(anyhow::Error::msg)?;
        // One key read: the same signer mints client tokens and the
        // service tokens the internal API reads take.
        let signer = config.signer().map_err(anyhow::Error::msg)?;
        let records = OriginRecords {
            lb,
            client: reqwest::Client::builder()
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(10))
                .build()?,
            signer: signer.clone(),
            issuer: config.issuer.clone(),
        };
        Ok(Self {
            authenticator: Authenticator::new(config, oidc).map_err(anyhow::Error::msg)?,
            signer,
            credentials: Credentials::new(records, config),
            config: config.clone(),
            failures_by_client: limiter(),
            failures_by_address: limiter(),
            tokens,
            metrics,
        })
    }

    /// A service token for the origin's internal API.
    pub fn service_token(&self) -> Option<String> {
        self.credentials.source().service_token()
    }

    /// Drops what is cached about a principal (and one of its keys).
    pub fn forget(&self, principal: &str, api_key: Option<&str>) {
        self.credentials.forget(principal, api_key);
    }

    /// Drops everything cached (the event stream was re-established).
    pub fn forget_all(&self) {
        self.credentials.forget_all();
    }

    /// The principal of a verified identity. Service tokens are not
    /// accepted here, and guessing API keys costs argon2id: limited like the
    /// token endpoint.
    async fn resolve(
        &self,
        identity: Identity,
        address: IpAddr,
    ) -> Result<Arc<Principal>, Refusal> {
        match &identity {
            Identity::Token(claims) if claims.scope == INTERNAL_SCOPE => Err(Refusal::Forbidden(
                "Service tokens are not accepted here".into(),
            )),
            Identity::ApiKey { .. } => {
                if self.limited(None, address).is_some() {
                    return Err(Refusal::TooMany);
                }
                let resolved = self.credentials.resolve(identity).await;
                if matches!(resolved, Err(Refusal::Unauthorized(_))) {
                    self.failed(None, address);
                }
                resolved
            }
            _ => self.credentials.resolve(identity).await,
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
            let identity = self.authenticator.identify(authorization, now_secs())?;
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
        let client = self
            .credentials
            .client_with_secret(id, secret)
            .await
            .map_err(|_| OAuthError {
                status: 503,
                error: "invalid_request",
                error_description: "The catalog origin could not be asked about this client".into(),
            })?
            .ok_or_else(OAuthError::invalid_client)?;
        // The token carries the generation of the record its secret matched.
        Ok(self.claims(id, client.generation))
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
                Refusal::Unauthorized(refused) => OAuthError::invalid_grant(refused.to_string()),
                Refusal::Forbidden(m) => OAuthError::invalid_grant(m),
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
