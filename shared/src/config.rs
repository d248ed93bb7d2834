//! Layered configuration for both tiers: defaults, then a YAML file, then
//! environment variables, read through [`ConfigSource`] so tests never touch
//! the process environment.
//!
//! A variable `<PREFIX><SECTION>__<KEY>` sets `section.key`: with the prefix
//! `FLOE_`, `FLOE_DATABASE__URL` sets `database.url`.

use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Yaml};
use figment::value::Value;
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

/// Reads `T::default()`, then the YAML `file`, then the variables of `env`
/// that start with `prefix`.
pub fn load_layered<T: Serialize + DeserializeOwned + Default>(
    file: Option<&Path>,
    env: &dyn ConfigSource,
    prefix: &str,
) -> Result<T, String> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(format!("config file {} does not exist", path.display()));
        }
        figment = figment.merge(Yaml::file_exact(path));
    }
    for (name, raw) in env.vars() {
        let Some(rest) = name.strip_prefix(prefix) else {
            continue;
        };
        let key = rest.to_ascii_lowercase().replace("__", ".");
        let value: Value = raw.parse().unwrap_or_else(|_| Value::from(raw.clone()));
        figment = figment.merge((key, value));
    }
    figment.extract().map_err(|e| e.to_string())
}
