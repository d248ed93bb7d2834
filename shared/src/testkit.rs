//! Test support shared by every crate's tests (feature `testkit`): a fresh
//! PostgreSQL database per test on the server named by `FLOE_TEST_PG_URL`.

use sqlx::Connection;

/// Admin URL of the test PostgreSQL server.
pub fn pg_admin_url() -> String {
    std::env::var("FLOE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

async fn admin(sql: &str) {
    sqlx::any::install_default_drivers();
    let url = pg_admin_url();
    let mut conn = sqlx::AnyConnection::connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL at {url} is required for these tests ({e}); run scripts/test")
        });
    sqlx::query(sql)
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A database that lives as long as the value.
pub struct PgDb {
    /// Connection URL of the database.
    pub url: String,
    name: String,
}

impl PgDb {
    /// Creates a database named after `purpose` and a random suffix.
    pub async fn new(purpose: &str) -> PgDb {
        let name = format!("floe_{purpose}_{}", uuid::Uuid::new_v4().simple());
        admin(&format!("CREATE DATABASE {name}")).await;
        let base = pg_admin_url();
        let base = base
            .rsplit_once('/')
            .map_or(base.clone(), |(b, _)| b.to_string());
        PgDb {
            url: format!("{base}/{name}"),
            name,
        }
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        // Drop cannot await: drop the database from a thread of its own.
        let name = std::mem::take(&mut self.name);
        let _ = std::thread::spawn(move || {
            if let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                rt.block_on(admin(&format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )));
            }
        })
        .join();
    }
}

/// Writes a fresh Ed25519 private key (PKCS#8 PEM) to `dir/name` and
/// returns its path.
pub fn ed25519_key_file(dir: &std::path::Path, name: &str) -> String {
    let path = dir.join(name);
    crate::auth::generate_key_files(&path).expect("key files");
    path.display().to_string()
}

/// An enabled `auth` section signing with a fresh key under `dir`.
pub fn auth_config(dir: &std::path::Path) -> crate::auth::AuthConfig {
    crate::auth::AuthConfig {
        enabled: true,
        signing_key: crate::auth::KeyFile {
            kid: "test-1".into(),
            path: ed25519_key_file(dir, "signing.pem"),
        },
        ..crate::auth::AuthConfig::default()
    }
}

/// A token for `sub` signed with the configured key.
pub fn token(config: &crate::auth::AuthConfig, sub: &str, iat: u64, exp: u64) -> String {
    let claims = crate::token::Claims {
        iss: config.issuer.clone(),
        sub: sub.into(),
        iat,
        exp,
        jti: String::new(),
        scope: crate::auth::CATALOG_SCOPE.into(),
        generation: 0,
    };
    let bytes = config
        .signer()
        .expect("signer")
        .issue(&claims)
        .expect("token");
    String::from_utf8(bytes.to_vec()).expect("ascii")
}

/// Seconds since the epoch.
pub fn now() -> u64 {
    crate::auth::now_secs()
}

/// A role on a warehouse (`*` for all) or on a namespace of it.
pub fn grant(warehouse: &str, namespace: &[&str], role: crate::auth::Role) -> crate::auth::Grant {
    crate::auth::Grant {
        warehouse: warehouse.into(),
        namespace: namespace.iter().map(ToString::to_string).collect(),
        role,
    }
}

/// A misspelt key of a configuration file, and what the error must say.
#[derive(Debug)]
pub struct Typo {
    /// The YAML text holding the misspelt key.
    pub yaml: String,
    /// Dotted path of the misspelt key.
    pub wrong: String,
    /// The key the error must suggest.
    pub meant: String,
}

/// One misspelling (the key with an `x` appended) of every key of every
/// section of `T`'s configuration, and of every top-level scalar key.
pub fn config_typos<T: serde::Serialize + Default>() -> Vec<Typo> {
    let defaults = serde_json::to_value(T::default()).expect("serializable configuration");
    let mut typos = Vec::new();
    for (section, value) in defaults.as_object().expect("a mapping") {
        match value {
            serde_json::Value::Object(keys) => {
                for key in keys.keys() {
                    typos.push(Typo {
                        yaml: format!("{section}:\n  {key}x: 1\n"),
                        wrong: format!("{section}.{key}x"),
                        meant: key.clone(),
                    });
                }
            }
            _ => typos.push(Typo {
                yaml: format!("{section}x: 1\n"),
                wrong: format!("{section}x"),
                meant: section.clone(),
            }),
        }
    }
    typos
}

/// Loads a configuration through `load` from `yaml` (written to a file named
/// `file_name` in a fresh directory; no file when `None`) and the variables
/// `env`, expecting a refusal: returns its message and the file's path.
pub fn config_error<T, E: std::fmt::Display>(
    file_name: &str,
    yaml: Option<&str>,
    env: &[(&str, &str)],
    load: impl Fn(Option<&std::path::Path>, &dyn crate::config::ConfigSource) -> Result<T, E>,
) -> (String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("floe-config-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("temporary directory");
    let path = dir.join(file_name);
    if let Some(yaml) = yaml {
        std::fs::write(&path, yaml).expect("configuration file");
    }
    let result = load(yaml.map(|_| path.as_path()), &crate::config::StaticEnv(env));
    // Best effort: a leftover temporary directory fails no test.
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(_) => panic!("{yaml:?} with {env:?} was accepted"),
        Err(e) => (e.to_string(), path),
    }
}

/// Asserts that every one of (at least `at_least`) [`config_typos`] of `T`
/// is refused with the file, the misspelt key and the key meant.
pub fn assert_typos_named<T: serde::Serialize + Default, E: std::fmt::Display>(
    file_name: &str,
    at_least: usize,
    load: impl Fn(Option<&std::path::Path>, &dyn crate::config::ConfigSource) -> Result<T, E>,
) {
    let typos = config_typos::<T>();
    assert!(typos.len() >= at_least, "{typos:?}");
    for typo in typos {
        let (e, path) = config_error(file_name, Some(&typo.yaml), &[], &load);
        let want = format!(
            "{}: unknown key `{}`; did you mean `{}`?",
            path.display(),
            typo.wrong,
            typo.meant
        );
        assert_eq!(e, want, "{}", typo.yaml);
    }
}
