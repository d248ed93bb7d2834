//! The records both tiers check credentials against, cached, and the one
//! way a verified identity becomes its principal.
//!
//! Each tier says where records come from ([`RecordSource`]): the origin
//! reads its database, the edge the origin's internal API. What is kept:
//! principal and API-key records for `auth.principal_cache_seconds`, and
//! each secret that passed argon2id as a digest bound to the hash it
//! matched (never the secret) for `auth.credential_cache_seconds`. A record
//! ages from the moment its read began, and a change heard meanwhile wins
//! over what the read returned ([`ExpiringMap::insert_since`]).
//!
//! A secret refused against a cached record is checked once more against a
//! fresh read, so a rotated secret works at once everywhere. That read
//! follows a failed argon2id check, and argon2id runs on at most one
//! blocking thread per core, so those reads can never come more often.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::{
    ApiKeyRecord, AuthConfig, AuthError, Authenticator, Identity, Principal, credential_digest,
    hash_memory_slots, verify_secret,
};
use crate::expiring::ExpiringMap;
use crate::token::Claims;

const CAPACITY: usize = 100_000;

/// A cached principal younger than this is not read again on suspicion alone
/// (a token minted from a newer record than the cached one).
const REREAD_AFTER: Duration = Duration::from_secs(1);

/// A principal as records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalRef<'a> {
    /// One of Floe's clients, by id.
    Client(&'a str),
    /// A subject of the external OpenID Connect issuer.
    Subject(&'a str),
}

impl PrincipalRef<'_> {
    fn cache_key(self) -> String {
        match self {
            Self::Client(id) => format!("c:{id}"),
            Self::Subject(subject) => format!("s:{subject}"),
        }
    }
}

/// Where a tier reads principal and API-key records.
pub trait RecordSource: Send + Sync {
    /// Why a read failed (the database or the origins are out of reach), and
    /// what a refused credential becomes.
    type Error: From<AuthError> + Send;

    /// The principal's record; `None` when there is none.
    fn principal(
        &self,
        who: PrincipalRef<'_>,
    ) -> impl Future<Output = Result<Option<Principal>, Self::Error>> + Send;

    /// The API key's record; `None` when there is none.
    fn api_key(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<ApiKeyRecord>, Self::Error>> + Send;
}

/// How many argon2id checks run at once: now, the most ever seen, the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashingStats {
    /// Running now.
    pub running: usize,
    /// The most that ever ran at once.
    pub peak: usize,
    /// The bound (one per core).
    pub limit: usize,
}

/// Cached records over a [`RecordSource`].
pub struct Credentials<S> {
    source: S,
    /// `c:<client id>` / `s:<subject>` → principal.
    principals: ExpiringMap<Arc<Principal>>,
    /// API key id → record.
    api_keys: ExpiringMap<Arc<ApiKeyRecord>>,
    /// `c:<client id>` / `k:<key id>` → digest of the secret that verified.
    verified: ExpiringMap<[u8; 32]>,
    hashing: tokio::sync::Semaphore,
    hashing_now: AtomicUsize,
    hashing_peak: AtomicUsize,
}

impl<S> std::fmt::Debug for Credentials<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("principals", &self.principals.len())
            .field("api_keys", &self.api_keys.len())
            .finish_non_exhaustive()
    }
}

impl<S: RecordSource> Credentials<S> {
    /// Empty caches over `source`, kept as long as `config` says.
    pub fn new(source: S, config: &AuthConfig) -> Self {
        let records = Duration::from_secs(config.principal_cache_seconds);
        Self {
            source,
            principals: ExpiringMap::new(records, CAPACITY),
            api_keys: ExpiringMap::new(records, CAPACITY),
            verified: ExpiringMap::new(
                Duration::from_secs(config.credential_cache_seconds),
                CAPACITY,
            ),
            hashing: tokio::sync::Semaphore::new(hash_memory_slots()),
            hashing_now: AtomicUsize::new(0),
            hashing_peak: AtomicUsize::new(0),
        }
    }

    /// Where the records come from.
    pub fn source(&self) -> &S {
        &self.source
    }

    /// The principal a verified identity stands for, or why it is refused.
    /// Who may present which identity where is the caller's rule.
    pub async fn resolve(&self, identity: Identity) -> Result<Arc<Principal>, S::Error> {
        let revoked = || S::Error::from(AuthError::Revoked);
        match identity {
            Identity::Token(claims) => {
                let principal = self.token_principal(&claims).await?.ok_or_else(revoked)?;
                Authenticator::check_token(&principal, &claims)?;
                Ok(principal)
            }
            Identity::External { subject, iat } => {
                let principal = self
                    .principal(PrincipalRef::Subject(&subject))
                    .await?
                    .ok_or_else(revoked)?;
                Authenticator::check_external(&principal, iat)?;
                Ok(principal)
            }
            Identity::ApiKey { id, secret } => {
                let key = self
                    .api_key_matching(&id, &secret)
                    .await?
                    .ok_or_else(revoked)?;
                let principal = self
                    .principal(PrincipalRef::Client(&key.principal))
                    .await?
                    .ok_or_else(revoked)?;
                Authenticator::check_key_holder(&principal)?;
                Ok(principal)
            }
        }
    }

    /// The client whose secret `secret` is (the token endpoint's check);
    /// `None` when there is no such client, it is disabled or the secret
    /// does not match.
    pub async fn client_with_secret(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<Option<Arc<Principal>>, S::Error> {
        let who = PrincipalRef::Client(id);
        let cached = self.principals.get(&who.cache_key());
        let from_cache = cached.is_some();
        let principal = match cached {
            Some(principal) => principal,
            None => match self.read_principal(who).await? {
                Some(principal) => principal,
                None => return Ok(None),
            },
        };
        let cache_key = who.cache_key();
        if self
            .client_secret_matches(&principal, &cache_key, secret)
            .await
        {
            return Ok(Some(principal));
        }
        if !from_cache || principal.secret_hash.is_none() || principal.disabled {
            return Ok(None);
        }
        let Some(fresh) = self.read_principal(who).await? else {
            return Ok(None);
        };
        let changed = fresh.secret_hash != principal.secret_hash || fresh.disabled;
        Ok(
            (changed && self.client_secret_matches(&fresh, &cache_key, secret).await)
                .then_some(fresh),
        )
    }

    /// Drops what is cached about a principal and its keys (and `api_key`,
    /// which may belong to it).
    pub fn forget(&self, principal: &str, api_key: Option<&str>) {
        let client = PrincipalRef::Client(principal).cache_key();
        self.principals.remove(&client);
        self.principals.remove_where(|p| p.id == principal);
        self.verified.remove(&client);
        let keys = Mutex::new(api_key.map(str::to_owned).into_iter().collect::<Vec<_>>());
        self.api_keys.remove_where(|k| {
            let held = k.principal == principal;
            if held && let Ok(mut keys) = keys.lock() {
                keys.push(k.id.clone());
            }
            held
        });
        for key in keys.into_inner().unwrap_or_default() {
            self.api_keys.remove(&key);
            self.verified.remove(&format!("k:{key}"));
        }
    }

    /// Drops everything cached (what changed meanwhile is unknown).
    pub fn forget_all(&self) {
        self.principals.clear();
        self.api_keys.clear();
        self.verified.clear();
    }

    /// argon2id checks: running now, the most at once, the bound.
    pub fn hashing_stats(&self) -> HashingStats {
        HashingStats {
            running: self.hashing_now.load(Ordering::Relaxed),
            peak: self.hashing_peak.load(Ordering::Relaxed),
            limit: hash_memory_slots(),
        }
    }

    async fn principal(&self, who: PrincipalRef<'_>) -> Result<Option<Arc<Principal>>, S::Error> {
        match self.principals.get(&who.cache_key()) {
            Some(principal) => Ok(Some(principal)),
            None => self.read_principal(who).await,
        }
    }

    /// Reads a principal and caches it (unless a change arrived meanwhile:
    /// then the read may predate it).
    async fn read_principal(
        &self,
        who: PrincipalRef<'_>,
    ) -> Result<Option<Arc<Principal>>, S::Error> {
        let ticket = self.principals.ticket();
        let Some(principal) = self.source.principal(who).await? else {
            return Ok(None);
        };
        let principal = Arc::new(principal);
        self.principals
            .insert_since(who.cache_key(), principal.clone(), ticket);
        Ok(Some(principal))
    }

    /// The principal of a Floe token. A token minted from a newer record than
    /// the cached one proves the cache stale (a change was missed): the
    /// record is read again, at most once a second.
    async fn token_principal(&self, claims: &Claims) -> Result<Option<Arc<Principal>>, S::Error> {
        let who = PrincipalRef::Client(&claims.sub);
        match self.principals.get_aged(&who.cache_key()) {
            Some((principal, age))
                if claims.generation <= principal.generation || age < REREAD_AFTER =>
            {
                Ok(Some(principal))
            }
            _ => self.read_principal(who).await,
        }
    }

    async fn api_key(&self, id: &str, fresh: bool) -> Result<Option<Arc<ApiKeyRecord>>, S::Error> {
        if !fresh && let Some(record) = self.api_keys.get(id) {
            return Ok(Some(record));
        }
        let ticket = self.api_keys.ticket();
        let Some(record) = self.source.api_key(id).await? else {
            return Ok(None);
        };
        let record = Arc::new(record);
        self.api_keys.insert_since(id, record.clone(), ticket);
        Ok(Some(record))
    }

    /// The key's record when `secret` is its secret and it is not revoked.
    async fn api_key_matching(
        &self,
        id: &str,
        secret: &str,
    ) -> Result<Option<Arc<ApiKeyRecord>>, S::Error> {
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

    async fn client_secret_matches(
        &self,
        client: &Principal,
        cache_key: &str,
        secret: &str,
    ) -> bool {
        match client.secret_hash.as_deref() {
            Some(hash) if !client.disabled => self.verify(cache_key, secret, hash).await,
            _ => false,
        }
    }

    /// Whether `secret` matches `hash`: argon2id on a blocking thread (at
    /// most one per core at once), remembered as a digest bound to the hash.
    async fn verify(&self, cache_key: &str, secret: &str, hash: &str) -> bool {
        let digest = credential_digest(secret, hash);
        if self.verified.get(cache_key) == Some(digest) {
            return true;
        }
        let ticket = self.verified.ticket();
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let running = self.hashing_now.fetch_add(1, Ordering::Relaxed) + 1;
        self.hashing_peak.fetch_max(running, Ordering::Relaxed);
        let (secret, hash) = (secret.to_owned(), hash.to_owned());
        let ok = tokio::task::spawn_blocking(move || verify_secret(&secret, &hash))
            .await
            .unwrap_or(false);
        self.hashing_now.fetch_sub(1, Ordering::Relaxed);
        if ok {
            self.verified.insert_since(cache_key, digest, ticket);
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::auth::hash_secret;

    /// Records in memory, counting reads.
    #[derive(Default)]
    struct Memory {
        principals: Mutex<HashMap<String, Principal>>,
        keys: Mutex<HashMap<String, ApiKeyRecord>>,
        reads: AtomicU32,
    }

    impl RecordSource for Arc<Memory> {
        type Error = AuthError;

        async fn principal(&self, who: PrincipalRef<'_>) -> Result<Option<Principal>, AuthError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            let PrincipalRef::Client(id) = who else {
                return Ok(None);
            };
            Ok(self.principals.lock().unwrap().get(id).cloned())
        }

        async fn api_key(&self, id: &str) -> Result<Option<ApiKeyRecord>, AuthError> {
            self.reads.fetch_add(1, Ordering::Relaxed);
            Ok(self.keys.lock().unwrap().get(id).cloned())
        }
    }

    fn client(id: &str, secret: &str) -> Principal {
        Principal {
            id: id.into(),
            disabled: false,
            not_before: 0,
            generation: 1,
            grants: Vec::new(),
            secret_hash: Some(hash_secret(secret).unwrap()),
            default_warehouse: String::new(),
        }
    }

    fn key(id: &str, principal: &str, secret: &str) -> ApiKeyRecord {
        ApiKeyRecord {
            id: id.into(),
            principal: principal.into(),
            secret_hash: hash_secret(secret).unwrap(),
            revoked: false,
        }
    }

    fn setup() -> (Arc<Memory>, Credentials<Arc<Memory>>) {
        let memory = Arc::new(Memory::default());
        let config = AuthConfig {
            principal_cache_seconds: 3600,
            credential_cache_seconds: 3600,
            ..AuthConfig::default()
        };
        (memory.clone(), Credentials::new(memory, &config))
    }

    #[tokio::test]
    async fn a_rotated_secret_works_at_once_and_the_old_one_stops() {
        let (memory, credentials) = setup();
        let set_secret = |secret: &str| {
            let record = client("a", secret);
            memory.principals.lock().unwrap().insert("a".into(), record);
        };
        let accepts = async |id: &str, secret: &str| {
            let found = credentials.client_with_secret(id, secret).await;
            found.unwrap().is_some()
        };
        set_secret("old");
        assert!(accepts("a", "old").await);
        let reads = memory.reads.load(Ordering::Relaxed);
        assert!(accepts("a", "old").await);
        assert_eq!(memory.reads.load(Ordering::Relaxed), reads, "cached");

        // Rotated by another process; no change heard here.
        set_secret("new");
        assert!(accepts("a", "new").await);
        assert!(!accepts("a", "old").await);
        assert!(!accepts("b", "old").await);
    }

    #[tokio::test]
    async fn api_keys_resolve_to_their_holder_until_revoked() {
        let (memory, credentials) = setup();
        memory
            .principals
            .lock()
            .unwrap()
            .insert("a".into(), client("a", "s"));
        memory
            .keys
            .lock()
            .unwrap()
            .insert("k1".into(), key("k1", "a", "secret"));
        let presented = |secret: &str| Identity::ApiKey {
            id: "k1".into(),
            secret: secret.into(),
        };
        let holder = credentials.resolve(presented("secret")).await.unwrap();
        assert_eq!(holder.id, "a");
        assert!(matches!(
            credentials.resolve(presented("guess")).await,
            Err(AuthError::Revoked)
        ));

        memory.keys.lock().unwrap().get_mut("k1").unwrap().revoked = true;
        // Still cached: the change has not been heard.
        assert!(credentials.resolve(presented("secret")).await.is_ok());
        credentials.forget("a", Some("k1"));
        assert!(matches!(
            credentials.resolve(presented("secret")).await,
            Err(AuthError::Revoked)
        ));
        let stats = credentials.hashing_stats();
        assert!(stats.peak >= 1 && stats.peak <= stats.limit, "{stats:?}");
        assert_eq!(stats.running, 0);
    }
}
