//! Layered configuration for both tiers: defaults, then a YAML file, then
//! environment variables, read through [`ConfigSource`] so tests never touch
//! the process environment.
//!
//! A variable `<PREFIX><SECTION>__<KEY>` sets `section.key`: with the prefix
//! `FLOE_`, `FLOE_DATABASE__URL` sets `database.url`.
//!
//! Loading is strict. A key of the YAML file that no setting reads, and a
//! configuration variable that maps to no setting, is an error naming the
//! key, where it came from (the file or the variable) and the closest valid
//! key. A value of the wrong type is an error naming the key and its source.
//!
//! Which variables are configuration variables (the rule, see
//! [`is_config_variable`]): a variable under the tier's prefix (and under no
//! prefix of another tier) whose rest contains `__`, names a top-level key,
//! starts with a top-level key followed by `_`, or is one edit away from a
//! top-level key. Every other variable under the prefix (`FLOE_CONFIG`,
//! `FLOE_EDGE_CONFIG`, `FLOE_TEST_…`, `FLOE_BIN`, …) belongs to something
//! else and is left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use figment::providers::{Format, Serialized, Yaml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where environment-style overrides come from.
pub trait ConfigSource {
    /// All `(name, value)` pairs.
    fn vars(&self) -> Vec<(String, String)>;
}

/// The process environment.
pub struct ProcessEnv;

impl ConfigSource for ProcessEnv {
    fn vars(&self) -> Vec<(String, String)> {
        std::env::vars().collect()
    }
}

/// A fixed list of variables (tests, embedding).
pub struct StaticEnv<'a>(pub &'a [(&'a str, &'a str)]);

impl ConfigSource for StaticEnv<'_> {
    fn vars(&self) -> Vec<(String, String)> {
        self.0
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }
}

/// Which environment variables configure a tier.
#[derive(Debug, Clone, Copy)]
pub struct EnvScheme<'a> {
    /// The tier's prefix: `FLOE_` (origin) or `FLOE_EDGE_` (edge).
    pub prefix: &'a str,
    /// Prefixes of other tiers nested in this one (`FLOE_EDGE_` for the
    /// origin): their variables are not this tier's.
    pub others: &'a [&'a str],
}

/// One configuration variable as a figment provider, so that errors about
/// its value name the variable.
struct EnvVar {
    name: String,
    key: String,
    value: Value,
}

impl Provider for EnvVar {
    fn metadata(&self) -> Metadata {
        Metadata::named(format!("environment variable {}", self.name))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Serialized::default(&self.key, &self.value).data()
    }
}

/// Whether the variable rest `lower` (lowercased, prefix removed) is meant
/// as configuration, given the top-level keys of the configuration.
pub fn is_config_variable(lower: &str, top_keys: &[String]) -> bool {
    lower.contains("__")
        || top_keys.iter().any(|k| {
            k == lower
                || lower
                    .strip_prefix(k.as_str())
                    .is_some_and(|r| r.starts_with('_'))
                || strsim::levenshtein(k, lower) <= 1
        })
}

/// The valid key closest to `wrong` among `candidates`, when one is close
/// enough to be a plausible typo.
pub fn closest<'c>(wrong: &str, candidates: impl IntoIterator<Item = &'c str>) -> Option<&'c str> {
    let wrong = wrong.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::levenshtein(&wrong, c), c))
        .filter(|(d, c)| *d <= 2.max(c.len().max(wrong.len()) / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Why a configuration was refused. The text names the key and where it
/// came from (the file or the variable), one line per problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The configuration file named does not exist.
    #[error("config file {} does not exist", .0.display())]
    MissingFile(PathBuf),
    /// A configuration variable with an empty key segment (the variable is named).
    #[error("environment variable {0}: empty key segment (levels are separated by one `__`)")]
    EmptySegment(String),
    /// Values of the wrong type or shape, one line each.
    #[error("{0}")]
    Invalid(String),
    /// Keys no setting reads, one message each (with the closest valid key).
    #[error("{}", .0.join("\n"))]
    UnknownKeys(Vec<String>),
    /// The defaults or the merged configuration could not be represented as JSON.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Reads `T::default()`, then the YAML `file`, then the configuration
/// variables of `env` (see the module's rule), refusing unknown keys.
pub fn load_layered<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    env: &dyn ConfigSource,
    scheme: EnvScheme<'_>,
) -> Result<T, ConfigError> {
    let defaults = serde_json::to_value(T::default())?;
    let top_keys: Vec<String> = defaults
        .as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default();

    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(ConfigError::MissingFile(path.to_path_buf()));
        }
        figment = figment.merge(Yaml::file_exact(path));
    }
    let mut vars = env.vars();
    vars.sort();
    // Setting path (segments) -> variable that set it.
    let mut from_env: BTreeMap<Vec<String>, String> = BTreeMap::new();
    for (name, raw) in vars {
        let Some(rest) = name.strip_prefix(scheme.prefix) else {
            continue;
        };
        if scheme.others.iter().any(|o| name.starts_with(o)) {
            continue;
        }
        let lower = rest.to_ascii_lowercase();
        if !is_config_variable(&lower, &top_keys) {
            continue;
        }
        if lower.split("__").any(str::is_empty) {
            return Err(ConfigError::EmptySegment(name));
        }
        let key = lower.replace("__", ".");
        let value: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.clone()));
        from_env.insert(key.split('.').map(str::to_string).collect(), name.clone());
        figment = figment.merge(EnvVar { name, key, value });
    }

    let config: T = figment.extract().map_err(|e| describe_errors(e, scheme))?;

    // Keys nothing reads: deserialize the merged tree once more, watching
    // for ignored keys.
    let merged: Dict = figment.extract().map_err(|e| describe_errors(e, scheme))?;
    let merged = Value::from(merged);
    let mut unknown: Vec<Vec<String>> = Vec::new();
    let _: Result<T, _> = serde_ignored::deserialize(&merged, |path| {
        let mut segments = Vec::new();
        path_segments(&path, &mut segments);
        unknown.push(segments);
    });
    if unknown.is_empty() {
        return Ok(config);
    }
    let effective = serde_json::to_value(&config)?;
    let messages: Vec<String> = unknown
        .iter()
        .map(|segments| describe_unknown(segments, &effective, file, &from_env, scheme))
        .collect();
    Err(ConfigError::UnknownKeys(messages))
}

fn path_segments(path: &serde_ignored::Path<'_>, out: &mut Vec<String>) {
    use serde_ignored::Path as P;
    match path {
        P::Root => {}
        P::Seq { parent, index } => {
            path_segments(parent, out);
            out.push(index.to_string());
        }
        P::Map { parent, key } => {
            path_segments(parent, out);
            out.push(key.clone());
        }
        P::Some { parent } | P::NewtypeStruct { parent } | P::NewtypeVariant { parent } => {
            path_segments(parent, out);
        }
    }
}

/// Names the variable spelling of a key path.
fn variable_name(prefix: &str, segments: &[&str]) -> String {
    format!("{prefix}{}", segments.join("__").to_ascii_uppercase())
}

fn describe_unknown(
    segments: &[String],
    effective: &serde_json::Value,
    file: Option<&Path>,
    from_env: &BTreeMap<Vec<String>, String>,
    scheme: EnvScheme<'_>,
) -> String {
    let (last, parents): (&str, &[String]) = segments
        .split_last()
        .map_or(("", &[]), |(l, p)| (l.as_str(), p));
    // The valid keys beside the unknown one.
    let mut level = Some(effective);
    for p in parents {
        level = level.and_then(|v| match v {
            serde_json::Value::Object(o) => o.get(p),
            serde_json::Value::Array(a) => p.parse::<usize>().ok().and_then(|i| a.get(i)),
            _ => None,
        });
    }
    let valid: Vec<&str> = level
        .and_then(|v| v.as_object())
        .map(|o| o.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let mut prefix_keys: Vec<&str> = parents.iter().map(String::as_str).collect();
    let mut suggestion = closest(last, valid.iter().copied());
    // `database_url` for `database.url`: one `_` where levels need `__`.
    let mut split = None;
    if let Some((section, key)) = split_section(last, level) {
        prefix_keys.push(section);
        suggestion = Some(key);
        split = Some(section);
    }
    let dotted = segments.join(".");
    // A variable set this key, a key under it (a misspelt section), or one
    // of its parents.
    let variable = from_env
        .iter()
        .find(|(key, _)| key.starts_with(segments) || segments.starts_with(key))
        .map(|(_, name)| name);
    match variable {
        Some(name) => {
            let hint = match suggestion {
                Some(s) => {
                    let mut keys = prefix_keys.clone();
                    keys.push(s);
                    format!(
                        "; did you mean {} (`{}`)?",
                        variable_name(scheme.prefix, &keys),
                        keys.join(".")
                    )
                }
                None => valid_list(&valid),
            };
            format!("environment variable {name}: unknown configuration key `{dotted}`{hint}")
        }
        None => {
            let hint = match (suggestion, split) {
                (Some(s), Some(section)) => {
                    format!("; did you mean `{section}.{s}` (`{section}:` then `{s}:` nested)?")
                }
                (Some(s), None) => format!("; did you mean `{s}`?"),
                (None, _) => valid_list(&valid),
            };
            let place =
                file.map_or_else(|| "configuration".to_string(), |f| f.display().to_string());
            format!("{place}: unknown key `{dotted}`{hint}")
        }
    }
}

/// `section_key` where `section` is an object at `level` holding `key`
/// (or a key close to it).
fn split_section<'v>(
    wrong: &str,
    level: Option<&'v serde_json::Value>,
) -> Option<(&'v str, &'v str)> {
    let object = level?.as_object()?;
    object.iter().find_map(|(section, inner)| {
        let rest = wrong.strip_prefix(section.as_str())?.strip_prefix('_')?;
        let keys = inner.as_object()?;
        let key = closest(rest, keys.keys().map(String::as_str))?;
        Some((section.as_str(), key))
    })
}

fn valid_list(valid: &[&str]) -> String {
    if valid.is_empty() {
        String::new()
    } else {
        format!("; valid keys here: {}", valid.join(", "))
    }
}

/// Every error figment found, each naming the key and where its value came from.
fn describe_errors(error: figment::Error, scheme: EnvScheme<'_>) -> ConfigError {
    let _ = scheme;
    let lines = error
        .into_iter()
        .map(|e| {
            let key = e.path.join(".");
            let place = match &e.metadata {
                Some(m) => match m.source.as_ref().and_then(|s| s.file_path()) {
                    Some(path) => path.display().to_string(),
                    None => m.name.to_string(),
                },
                None => "configuration".to_string(),
            };
            if key.is_empty() {
                format!("{place}: {}", e.kind)
            } else {
                format!("{place}: key `{key}`: {}", e.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    ConfigError::Invalid(lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variables_meant_as_configuration() {
        let top: Vec<String> = ["server", "database", "log", "auth", "listen"]
            .iter()
            .map(ToString::to_string)
            .collect();
        for yes in [
            "server__listen",
            "database_url",
            "listn",
            "log",
            "nosuch__key",
        ] {
            assert!(is_config_variable(yes, &top), "{yes}");
        }
        for no in ["config", "test_pg_url", "bin", "profile", "edge_config"] {
            assert!(!is_config_variable(no, &top), "{no}");
        }
    }

    #[test]
    fn closest_key() {
        assert_eq!(
            closest("listn", ["listen", "body_limit_bytes"]),
            Some("listen")
        );
        assert_eq!(closest("LISTN", ["listen"]), Some("listen"));
        assert_eq!(closest("zzzzzzzz", ["listen", "h2c"]), None);
    }
}
