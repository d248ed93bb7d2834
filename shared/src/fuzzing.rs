//! Entry points of the fuzz targets in `fuzz/` and of the tests that replay
//! their corpora (`shared/tests/fuzz_corpus.rs`): each takes one raw input,
//! runs it through the code a request runs through, and panics when a
//! property of that code does not hold. Not part of the API.

use std::sync::{Arc, OnceLock};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::auth::oidc::OidcVerifier;
use crate::auth::{
    Access, AuthError, Authenticator, CATALOG_SCOPE, Identity, OAuthError, Required, TokenRequest,
    bearer, parse_api_key, required,
};
use crate::token::{Claims, TokenSigner, TokenVerifier};
use crate::wire::decode_path_segment;

/// What Java's `URLEncoder` leaves as it is (besides the space, sent as `+`).
const JAVA_URL_ENCODER: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'.')
    .remove(b'-')
    .remove(b'*')
    .remove(b'_');

/// A segment as Iceberg's Java client (`URLEncoder`) sends it.
pub fn java_encode(segment: &str) -> String {
    segment
        .split(' ')
        .map(|part| utf8_percent_encode(part, JAVA_URL_ENCODER).to_string())
        .collect::<Vec<_>>()
        .join("+")
}

/// The namespace levels the authorizer reads out of a decoded segment.
fn nonempty_levels(decoded: &str) -> Vec<String> {
    decoded
        .split('\u{1f}')
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// Path segment decoding (`decode_path_segment`) and the authorizer's
/// reading of paths (`required`).
///
/// Properties: a segment without escapes decodes to itself; whatever a Java
/// client encodes decodes back to what it meant; the authorizer names the
/// warehouse and namespace the segments decode to; any path and query is
/// classified without panicking.
pub fn path_segment(data: &[u8]) {
    let input = String::from_utf8_lossy(data);
    let decoded = decode_path_segment(&input);
    if !input.contains(['%', '+']) {
        assert_eq!(
            decoded, input,
            "a segment without escapes decodes to itself"
        );
    }
    // What a Java client sends for the input (and for its decoded form).
    for meant in [input.as_ref(), decoded.as_str()] {
        let sent = java_encode(meant);
        assert!(
            sent.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-*_+%".contains(&b)),
            "encoded segment {sent:?} is path-safe"
        );
        assert_eq!(decode_path_segment(&sent), meant, "round trip of {sent:?}");
    }
    // The authorizer reads the warehouse and namespace the way the segment decodes.
    let segment = input.as_ref();
    if !segment.is_empty() && !segment.contains(['/', '?', '#']) {
        for method in ["GET", "HEAD", "POST", "DELETE"] {
            let path = format!("/v1/wh/namespaces/{segment}");
            let role = match method {
                "GET" | "HEAD" => crate::auth::Role::Reader,
                "DELETE" => crate::auth::Role::Admin,
                // No operation posts to a namespace: no route (405), so
                // authentication is all it needs.
                _ => {
                    assert_eq!(
                        required(method, &path, None, "default"),
                        Required::Authenticated,
                        "{method} {path}"
                    );
                    continue;
                }
            };
            assert_eq!(
                required(method, &path, None, "default"),
                Required::Access(Access {
                    warehouse: Some("wh".into()),
                    namespace: nonempty_levels(&decoded),
                    role,
                }),
                "{method} {path}"
            );
        }
        if !crate::route::UNPREFIXED.contains(&segment) {
            let path = format!("/v1/{segment}/namespaces/db/tables/t");
            match required("GET", &path, None, "default") {
                Required::Access(access) => {
                    assert_eq!(
                        access.warehouse.as_deref(),
                        Some(decoded.as_str()),
                        "{path}"
                    );
                }
                other => panic!("{path} needs {other:?}"),
            }
        }
        let query = format!("parent={segment}");
        if let Required::List(access) = required("GET", "/v1/wh/namespaces", Some(&query), "d") {
            let parent = form_urlencoded::parse(query.as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            assert_eq!(access.namespace, nonempty_levels(&parent), "?{query}");
        } else {
            panic!("listing namespaces is a listing");
        }
    }
    // Any path and query: classified without panicking.
    let (path, query) = match input.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (input.as_ref(), None),
    };
    for method in ["GET", "POST", "DELETE", "PATCH"] {
        let _ = required(method, path, query, "default");
    }
    let _ = crate::auth::is_public(path);
}

/// The scopes a parsed token request may carry.
fn scope_is_catalog(scope: &str) -> bool {
    scope.split(' ').all(|s| s.is_empty() || s == CATALOG_SCOPE)
}

/// The form a client would send for a parsed request, checked on the way:
/// it names a client and a secret (or a subject token), and only the
/// catalog scope.
fn checked_form(request: &TokenRequest) -> String {
    let mut form = form_urlencoded::Serializer::new(String::new());
    let scope = match request {
        TokenRequest::ClientCredentials {
            client_id,
            client_secret,
            scope,
        } => {
            assert!(!client_id.is_empty() && !client_secret.is_empty());
            form.append_pair("grant_type", "client_credentials")
                .append_pair("client_id", client_id)
                .append_pair("client_secret", client_secret);
            scope
        }
        TokenRequest::Exchange {
            subject_token,
            scope,
        } => {
            assert!(!subject_token.is_empty());
            form.append_pair(
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            )
            .append_pair("subject_token", subject_token)
            .append_pair("subject_token_type", crate::auth::ACCESS_TOKEN_TYPE);
            scope
        }
    };
    assert!(scope_is_catalog(scope), "scope {scope:?}");
    form.append_pair("scope", scope);
    form.finish()
}

/// OAuth2 token form bodies (`TokenRequest::parse`, `POST /v1/oauth/tokens`).
///
/// The input is the `Authorization` header value up to the first newline
/// (an empty first line: no header) and the form body after it; without a
/// newline it is all body.
///
/// Properties: a refusal is a 400 or 401 with an RFC 6749 error code and a
/// JSON body; an accepted request names a client and a secret (or a subject
/// token) and only the catalog scope; what it parsed to, sent again as a
/// form, parses to the same request.
pub fn token_form(data: &[u8]) {
    let (authorization, body) = match data.iter().position(|&b| b == b'\n') {
        Some(at) => (
            Some(String::from_utf8_lossy(&data[..at]).into_owned()).filter(|h| !h.is_empty()),
            &data[at + 1..],
        ),
        None => (None, data),
    };
    let parsed = TokenRequest::parse(body, authorization.as_deref());
    assert_eq!(
        parsed,
        TokenRequest::parse(body, authorization.as_deref()),
        "parsing is deterministic"
    );
    match parsed {
        Err(OAuthError {
            status,
            error,
            ref error_description,
        }) => {
            assert!(matches!(status, 400 | 401), "status {status}");
            assert!(
                matches!(
                    error,
                    "invalid_request"
                        | "invalid_client"
                        | "invalid_grant"
                        | "unsupported_grant_type"
                        | "invalid_scope"
                ),
                "error {error}"
            );
            assert_eq!(
                status == 401,
                error == "invalid_client",
                "{error} is {status}"
            );
            let err = parsed.clone().expect_err("the Err arm");
            let body: serde_json::Value =
                serde_json::from_slice(&err.body()).expect("the error body is JSON");
            assert_eq!(body["error"], error);
            assert_eq!(body["error_description"], error_description.as_str());
        }
        Ok(ref request) => {
            let again = checked_form(request);
            assert_eq!(
                TokenRequest::parse(again.as_bytes(), None).as_ref(),
                Ok(request),
                "{again}"
            );
        }
    }
}

/// The instant tokens are checked at (seconds since the epoch).
pub const JWT_NOW: u64 = 1_800_000_000;

/// The fixed key of the JWT target; its corpus holds tokens it signed.
pub fn jwt_signer() -> TokenSigner {
    TokenSigner::from_seed(&[0x42; 32], "fuzz")
}

/// Tokens signed by nobody the harness knows (another seed, the same key id).
fn foreign_verifier() -> TokenVerifier {
    TokenSigner::from_seed(&[0x43; 32], "fuzz").verifier()
}

/// An OpenID Connect issuer whose key signs nothing here.
fn oidc_verifier() -> Arc<OidcVerifier> {
    let public = ed25519_dalek::SigningKey::from_bytes(&[0x44; 32]).verifying_key();
    let jwks = serde_json::json!({"keys": [{
        "kty": "OKP",
        "crv": "Ed25519",
        "alg": "EdDSA",
        "use": "sig",
        "kid": "oidc",
        "x": URL_SAFE_NO_PAD.encode(public.as_bytes()),
    }]});
    Arc::new(
        OidcVerifier::new("https://issuer.example", "floe", &jwks.to_string())
            .expect("the fixed JWKS is valid"),
    )
}

fn authenticator() -> &'static Authenticator {
    static AUTHENTICATOR: OnceLock<Authenticator> = OnceLock::new();
    AUTHENTICATOR.get_or_init(|| {
        Authenticator::from_parts("floe", jwt_signer().verifier(), Some(oidc_verifier()), 60)
    })
}

/// Claims of the tokens in the JWT corpus.
pub fn jwt_claims(sub: &str, exp: u64, generation: u64) -> Claims {
    Claims {
        iss: "floe".into(),
        sub: sub.into(),
        iat: JWT_NOW - 60,
        exp,
        jti: "fuzz-corpus".into(),
        scope: CATALOG_SCOPE.into(),
        generation,
    }
}

/// JWT parsing and verification: `TokenVerifier::verify` with a fixed key
/// and the `Authenticator` a request goes through (Floe tokens, the
/// verified-token cache, the external OpenID Connect issuer, API keys).
///
/// The input is a token, or an `Authorization` header value when it
/// starts with a scheme (`Bearer `, `Basic `).
///
/// Properties: nothing panics; a token is accepted only when the fixed key
/// signed exactly it (it equals the token issued anew for its claims); a
/// verifier with another key accepts nothing; the external issuer, whose
/// key signs nothing here, accepts nothing; an accepted token is accepted
/// again (from the cache) with the same claims.
pub fn jwt(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (header, token) = match bearer(&text) {
        Some(token) => (text.to_string(), token.to_string()),
        None => (format!("Bearer {text}"), text.to_string()),
    };
    let signer = jwt_signer();
    if let Ok(claims) = signer.verifier().verify(&token, JWT_NOW) {
        let reissued = signer.issue(&claims).expect("the fixed key signs");
        assert_eq!(
            token.as_bytes(),
            reissued.as_ref(),
            "accepted a token the key did not sign as such"
        );
        assert!(claims.exp > JWT_NOW);
    }
    assert!(
        foreign_verifier().verify(&token, JWT_NOW).is_err(),
        "a verifier with another key accepted {token:?}"
    );
    let authenticator = authenticator();
    let first = authenticator.identify(Some(&header), JWT_NOW);
    match &first {
        Ok(Identity::Token(claims)) => {
            let credential = bearer(&header).expect("identified as a bearer token");
            let reissued = signer.issue(claims).expect("the fixed key signs");
            assert_eq!(
                credential.as_bytes(),
                reissued.as_ref(),
                "forged {header:?}"
            );
            assert_eq!(claims.iss, "floe");
            let again = authenticator.identify(Some(&header), JWT_NOW);
            assert_eq!(again.as_ref().ok(), first.as_ref().ok(), "cached answer");
        }
        Ok(Identity::External { .. }) => {
            panic!("the external issuer's key signs nothing here: {header:?}")
        }
        Ok(Identity::ApiKey { id, secret }) => {
            let credential = bearer(&header).expect("identified as a bearer credential");
            assert_eq!(
                parse_api_key(credential),
                Some((id.as_str(), secret.as_str()))
            );
        }
        Err(AuthError::Missing) => panic!("a header was sent"),
        Err(_) => {}
    }
}

/// Runs `entry` on every file of the corpus `fuzz/corpus/<target>` (the
/// repository's, found from `manifest_dir`, a crate's directory) and
/// returns how many there were. A missing or empty corpus is a failure,
/// and so is a failing file, named in the panic.
pub fn replay_corpus(manifest_dir: &str, target: &str, entry: fn(&[u8])) -> usize {
    let dir = std::path::Path::new(manifest_dir)
        .join("../fuzz/corpus")
        .join(target);
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("fuzz corpus {} is missing: {e}", dir.display()));
    let mut files: Vec<std::path::PathBuf> = entries
        .map(|entry| entry.expect("corpus directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "fuzz corpus {} is empty", dir.display());
    for file in &files {
        let data = std::fs::read(file)
            .unwrap_or_else(|e| panic!("cannot read corpus file {}: {e}", file.display()));
        if let Err(panic) = std::panic::catch_unwind(|| entry(&data)) {
            eprintln!("fuzz corpus file {} fails", file.display());
            std::panic::resume_unwind(panic);
        }
    }
    files.len()
}
