//! The token endpoint (`POST /v1/oauth/tokens`): parsing its form (client
//! credentials, or an RFC 8693 exchange of a Floe token), its RFC 6749
//! errors, and the successful answer.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Serialize;

/// Scope of the tokens issued to clients.
pub const CATALOG_SCOPE: &str = "catalog";

/// An OAuth2 token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRequest {
    /// `client_credentials`.
    ClientCredentials {
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: String,
        /// Requested scope.
        scope: String,
    },
    /// RFC 8693 token exchange of a Floe access token (refresh).
    Exchange {
        /// The token being exchanged.
        subject_token: String,
        /// Requested scope.
        scope: String,
    },
}

/// An OAuth2 error answer (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OAuthError {
    /// HTTP status.
    #[serde(skip)]
    pub status: u16,
    /// `invalid_request`, `invalid_client`, `invalid_grant`,
    /// `unsupported_grant_type`, `invalid_scope`.
    pub error: &'static str,
    /// What went wrong.
    pub error_description: String,
}

impl OAuthError {
    /// 400 `invalid_request`.
    pub fn invalid_request(description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "invalid_request",
            error_description: description.into(),
        }
    }
    /// 401 `invalid_client`.
    pub fn invalid_client() -> Self {
        Self {
            status: 401,
            error: "invalid_client",
            error_description: "Client authentication failed".into(),
        }
    }
    /// 400 `invalid_grant`.
    pub fn invalid_grant(description: impl Into<String>) -> Self {
        Self {
            status: 400,
            error: "invalid_grant",
            error_description: description.into(),
        }
    }
    /// The JSON body.
    pub fn body(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// The token-type URN of access tokens (RFC 8693).
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const JWT_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

fn basic_credentials(header: &str) -> Result<(String, String), OAuthError> {
    let (scheme, value) = header
        .trim()
        .split_once(' ')
        .ok_or_else(OAuthError::invalid_client)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client());
    }
    let decoded = STANDARD
        .decode(value.trim())
        .map_err(|_| OAuthError::invalid_client())?;
    let text = String::from_utf8(decoded).map_err(|_| OAuthError::invalid_client())?;
    let (id, secret) = text
        .split_once(':')
        .ok_or_else(OAuthError::invalid_client)?;
    // RFC 6749 §2.3.1: both parts are form-urlencoded before encoding.
    let unescape = |s: &str| -> String {
        form_urlencoded::parse(format!("v={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    Ok((unescape(id), unescape(secret)))
}

impl TokenRequest {
    /// Parses a form body and the optional `Authorization` header.
    pub fn parse(body: &[u8], authorization: Option<&str>) -> Result<Self, OAuthError> {
        let mut grant_type = None;
        let mut client_id = None;
        let mut client_secret = None;
        let mut subject_token = None;
        let mut subject_token_type = None;
        let mut scope = None;
        for (key, value) in form_urlencoded::parse(body) {
            let slot = match key.as_ref() {
                "grant_type" => &mut grant_type,
                "client_id" => &mut client_id,
                "client_secret" => &mut client_secret,
                "subject_token" => &mut subject_token,
                "subject_token_type" => &mut subject_token_type,
                "scope" => &mut scope,
                _ => continue,
            };
            if slot.is_some() {
                return Err(OAuthError::invalid_request(format!(
                    "parameter {key} is repeated"
                )));
            }
            *slot = Some(value.into_owned());
        }
        let scope = scope.unwrap_or_else(|| CATALOG_SCOPE.to_string());
        if scope
            .split(' ')
            .any(|s| !s.is_empty() && s != CATALOG_SCOPE)
        {
            return Err(OAuthError {
                status: 400,
                error: "invalid_scope",
                error_description: format!("only the scope {CATALOG_SCOPE:?} is issued"),
            });
        }
        match grant_type.as_deref() {
            None => Err(OAuthError::invalid_request("grant_type is required")),
            Some("client_credentials") => {
                // Only HTTP Basic authenticates a client; clients that keep
                // sending their previous bearer token (PyIceberg on refresh)
                // are not using a second method.
                let basic = authorization.filter(|h| {
                    h.trim_start()
                        .get(..6)
                        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("basic "))
                });
                let (client_id, client_secret) = match (basic, client_id, client_secret) {
                    (Some(header), None, None) => basic_credentials(header)?,
                    (None, Some(id), Some(secret)) => (id, secret),
                    (Some(_), _, _) => {
                        return Err(OAuthError::invalid_request(
                            "send client credentials either in the body or with HTTP Basic, not both",
                        ));
                    }
                    _ => {
                        return Err(OAuthError::invalid_request(
                            "client_id and client_secret are required",
                        ));
                    }
                };
                if client_id.is_empty() || client_secret.is_empty() {
                    return Err(OAuthError::invalid_client());
                }
                Ok(TokenRequest::ClientCredentials {
                    client_id,
                    client_secret,
                    scope,
                })
            }
            Some(EXCHANGE_GRANT) => {
                let subject_token = subject_token
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| OAuthError::invalid_request("subject_token is required"))?;
                match subject_token_type.as_deref() {
                    Some(ACCESS_TOKEN_TYPE | JWT_TOKEN_TYPE) => {}
                    _ => {
                        return Err(OAuthError::invalid_request(
                            "subject_token_type must be an access token or JWT",
                        ));
                    }
                }
                Ok(TokenRequest::Exchange {
                    subject_token,
                    scope,
                })
            }
            Some(other) => Err(OAuthError {
                status: 400,
                error: "unsupported_grant_type",
                error_description: format!("grant_type {other:?} is not supported"),
            }),
        }
    }
}

/// A successful token answer, written into `out` (a pooled buffer).
pub fn write_token_response(out: &mut Vec<u8>, token: &[u8], expires_in: u64) {
    out.extend_from_slice(b"{\"access_token\":\"");
    // Tokens are base64url parts joined by dots: nothing to escape.
    out.extend_from_slice(token);
    out.extend_from_slice(b"\",\"token_type\":\"bearer\",\"expires_in\":");
    out.extend_from_slice(expires_in.to_string().as_bytes());
    out.extend_from_slice(b",\"issued_token_type\":\"");
    out.extend_from_slice(ACCESS_TOKEN_TYPE.as_bytes());
    out.extend_from_slice(b"\",\"scope\":\"catalog\"}");
}

#[cfg(test)]
mod tests {
    use super::super::noise::Noise;
    use super::*;

    #[test]
    fn token_requests_parse_as_the_spec_says() {
        let r = TokenRequest::parse(
            b"grant_type=client_credentials&client_id=etl&client_secret=s%3Dx&scope=catalog",
            None,
        )
        .unwrap();
        assert_eq!(
            r,
            TokenRequest::ClientCredentials {
                client_id: "etl".into(),
                client_secret: "s=x".into(),
                scope: "catalog".into()
            }
        );
        let basic = format!("Basic {}", STANDARD.encode("etl:se%3Acret"));
        let r = TokenRequest::parse(b"grant_type=client_credentials", Some(&basic)).unwrap();
        assert!(
            matches!(r, TokenRequest::ClientCredentials { client_secret, .. } if client_secret == "se:cret")
        );
        let r = TokenRequest::parse(
            b"grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=t&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token",
            None,
        )
        .unwrap();
        assert!(matches!(r, TokenRequest::Exchange { .. }));
        let err = |body: &[u8], auth: Option<&str>| TokenRequest::parse(body, auth).unwrap_err();
        assert_eq!(err(b"", None).error, "invalid_request");
        assert_eq!(
            err(b"grant_type=password", None).error,
            "unsupported_grant_type"
        );
        assert_eq!(
            err(b"grant_type=client_credentials&client_id=a", None).error,
            "invalid_request"
        );
        assert_eq!(
            err(
                b"grant_type=client_credentials&client_id=a&client_id=b&client_secret=c",
                None
            )
            .error,
            "invalid_request"
        );
        assert_eq!(
            err(
                b"grant_type=client_credentials&client_id=a&client_secret=b&scope=admin",
                None
            )
            .error,
            "invalid_scope"
        );
        let e = err(b"grant_type=client_credentials", Some("Basic !!!"));
        assert_eq!((e.status, e.error), (401, "invalid_client"));
        assert_eq!(
            err(
                b"grant_type=client_credentials",
                Some(&basic.replace("Basic", "Bearer"))
            )
            .error,
            "invalid_request",
            "a bearer header is no client authentication"
        );
        let r = TokenRequest::parse(
            b"grant_type=client_credentials&client_id=etl&client_secret=s",
            Some("Bearer old.token.here"),
        );
        assert!(
            r.is_ok(),
            "a stale bearer header beside form credentials is ignored"
        );
        assert_eq!(
            err(
                b"grant_type=client_credentials&client_id=etl&client_secret=s",
                Some(&basic)
            )
            .error,
            "invalid_request",
            "two client authentication methods"
        );
    }

    #[test]
    fn malformed_forms_are_refused_without_panicking() {
        let mut noise = Noise(0x9E37_79B9_7F4A_7C15);
        let form_alphabet = b"=&%+grant_type=client_credentialsurn:ietf:%ZZ%FF\xff\x00 ";
        for _ in 0..20_000 {
            let body = noise.bytes(form_alphabet, 120);
            let auth_raw = noise.bytes(b"Basic Bearer YWJj:=+/\xff ", 24);
            let auth = String::from_utf8_lossy(&auth_raw).into_owned();
            if let Err(e) =
                TokenRequest::parse(&body, Some(auth.as_str()).filter(|a| !a.is_empty()))
            {
                assert!(matches!(e.status, 400 | 401), "{e:?}");
            }
        }
    }
}
