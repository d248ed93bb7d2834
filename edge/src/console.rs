//! The web console's files (`edge/ui/`), served at `/ui/` on the edge's
//! address. The console is a client of the REST API like any other: its
//! pages call `/v1/…` and `/management/…` with the signed-in principal's
//! token, so it can show nothing that principal may not read. The files are
//! compiled into the binary; no build tool produces them.

use bytes::Bytes;
use floe_shared::auth::OidcConfig;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &[u8] = include_bytes!("../ui/console.js");
const STYLE: &[u8] = include_bytes!("../ui/console.css");

/// Where the console lives.
pub const ROOT: &str = "/ui/";

/// The content security policy of every console answer: nothing but the
/// edge's own scripts, styles and API (and the OpenID Connect issuer's
/// origin when the console signs in through it), never framed.
fn content_security_policy(issuer_origin: Option<&str>) -> String {
    let connect = issuer_origin.map_or_else(|| "'self'".to_string(), |o| format!("'self' {o}"));
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {connect}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )
}

/// The other security headers: no referrer, no sniffing, always revalidated.
const HEADERS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-cache"),
];

/// Text for an HTML attribute value.
fn attribute(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// What a console path answers.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// A file: its content type and bytes.
    File(&'static str, Bytes),
    /// `/ui` without its slash: a redirect to [`ROOT`].
    Redirect,
    /// A path under `/ui/` that names no file.
    NotFound,
}

/// The console's files, the page told whether authentication is on and
/// which OpenID Connect issuer it may sign in through.
pub struct Console {
    index: Bytes,
    csp: String,
}

impl Console {
    /// The console of an edge whose authentication is `auth_on`, with the
    /// edge's OpenID Connect settings.
    pub fn new(auth_on: bool, oidc: &OidcConfig) -> Self {
        let origin = oidc.console_origin().filter(|_| auth_on);
        let (issuer, client) = if origin.is_some() {
            (oidc.issuer.as_str(), oidc.console_client_id.as_str())
        } else {
            ("", "")
        };
        let index = INDEX
            .replace("{{AUTH}}", if auth_on { "on" } else { "off" })
            .replace("{{OIDC_ISSUER}}", &attribute(issuer))
            .replace("{{OIDC_CLIENT}}", &attribute(client));
        Self {
            index: Bytes::from(index),
            csp: content_security_policy(origin.as_deref()),
        }
    }

    /// The headers of every console answer.
    pub fn headers(&self) -> impl Iterator<Item = (&str, &str)> {
        std::iter::once(("content-security-policy", self.csp.as_str())).chain(HEADERS)
    }

    /// Whether `path` is the console's.
    pub fn owns(path: &str) -> bool {
        path == "/ui" || path.starts_with(ROOT)
    }

    /// The answer for `path` (one [`Console::owns`]).
    pub fn answer(&self, path: &str) -> Answer {
        match path {
            "/ui" => Answer::Redirect,
            "/ui/" | "/ui/index.html" => {
                Answer::File("text/html; charset=utf-8", self.index.clone())
            }
            "/ui/console.js" => {
                Answer::File("text/javascript; charset=utf-8", Bytes::from_static(SCRIPT))
            }
            "/ui/console.css" => Answer::File("text/css; charset=utf-8", Bytes::from_static(STYLE)),
            _ => Answer::NotFound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_says_whether_authentication_is_on() {
        for (auth, meta) in [(true, "content=\"on\""), (false, "content=\"off\"")] {
            let Answer::File(kind, body) =
                Console::new(auth, &OidcConfig::default()).answer("/ui/")
            else {
                panic!("the index is a file");
            };
            assert!(kind.starts_with("text/html"));
            let text = String::from_utf8(body.to_vec()).expect("utf-8");
            assert!(text.contains(meta), "{text}");
            assert!(!text.contains("{{AUTH}}"));
        }
    }

    #[test]
    fn an_openid_connect_sign_in_names_its_issuer_and_may_reach_it_alone() {
        let oidc = OidcConfig {
            issuer: "https://login.example.test/realms/a\"b".into(),
            audience: "floe".into(),
            console_client_id: "floe-console".into(),
            ..OidcConfig::default()
        };
        let console = Console::new(true, &oidc);
        let Answer::File(_, body) = console.answer("/ui/") else {
            panic!("the index is a file");
        };
        let text = String::from_utf8(body.to_vec()).expect("utf-8");
        assert!(
            text.contains(r#"content="https://login.example.test/realms/a&quot;b""#),
            "{text}"
        );
        assert!(text.contains(r#"content="floe-console""#), "{text}");
        let csp = console.headers().next().expect("csp").1.to_string();
        assert!(
            csp.contains("connect-src 'self' https://login.example.test;"),
            "{csp}"
        );

        // Without authentication, or without a console client, no sign-in
        // through the issuer and no origin beyond the edge's own.
        for console in [
            Console::new(false, &oidc),
            Console::new(
                true,
                &OidcConfig {
                    console_client_id: String::new(),
                    ..oidc.clone()
                },
            ),
        ] {
            let Answer::File(_, body) = console.answer("/ui/") else {
                panic!("the index is a file");
            };
            let text = String::from_utf8(body.to_vec()).expect("utf-8");
            assert!(
                !text.contains("login.example.test") && !text.contains("{{"),
                "{text}"
            );
            assert!(
                console
                    .headers()
                    .next()
                    .expect("csp")
                    .1
                    .contains("connect-src 'self';")
            );
        }
    }

    #[test]
    fn only_the_consoles_files_are_served() {
        let console = Console::new(true, &OidcConfig::default());
        assert_eq!(console.answer("/ui"), Answer::Redirect);
        assert!(
            matches!(console.answer("/ui/console.js"), Answer::File(k, _) if k.starts_with("text/javascript"))
        );
        assert!(
            matches!(console.answer("/ui/console.css"), Answer::File(k, _) if k.starts_with("text/css"))
        );
        for path in [
            "/ui/../Cargo.toml",
            "/ui/src/console.rs",
            "/ui/console.js/",
            "/ui/x",
        ] {
            assert_eq!(console.answer(path), Answer::NotFound, "{path}");
        }
        assert!(Console::owns("/ui") && Console::owns("/ui/x"));
        assert!(!Console::owns("/uix") && !Console::owns("/v1/ui/"));
    }
}
