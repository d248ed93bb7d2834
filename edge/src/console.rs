//! The web console's files (`edge/ui/`), served at `/ui/` on the edge's
//! address. The console is a client of the REST API like any other: its
//! pages call `/v1/…` and `/management/…` with the signed-in principal's
//! token, so it can show nothing that principal may not read. The files are
//! compiled into the binary; no build tool produces them.

use bytes::Bytes;

const INDEX: &str = include_str!("../ui/index.html");
const SCRIPT: &[u8] = include_bytes!("../ui/console.js");
const STYLE: &[u8] = include_bytes!("../ui/console.css");

/// Where the console lives.
pub const ROOT: &str = "/ui/";

/// The security headers of every console answer: nothing but the edge's own
/// scripts, styles and API, never framed, no referrer, no sniffing.
pub const HEADERS: [(&str, &str); 4] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
    ("cache-control", "no-cache"),
];

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

/// The console's files, the page told whether authentication is on.
pub struct Console {
    index: Bytes,
}

impl Console {
    /// The console of an edge whose authentication is `auth_on`.
    pub fn new(auth_on: bool) -> Self {
        let index = INDEX.replace("{{AUTH}}", if auth_on { "on" } else { "off" });
        Self {
            index: Bytes::from(index),
        }
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
            let Answer::File(kind, body) = Console::new(auth).answer("/ui/") else {
                panic!("the index is a file");
            };
            assert!(kind.starts_with("text/html"));
            let text = String::from_utf8(body.to_vec()).expect("utf-8");
            assert!(text.contains(meta), "{text}");
            assert!(!text.contains("{{AUTH}}"));
        }
    }

    #[test]
    fn only_the_consoles_files_are_served() {
        let console = Console::new(true);
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
