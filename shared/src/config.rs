//! Every setting of tokenlife, read once from environment variables into a typed [`Config`].
//!
//! A bad value fails at start with a [`ConfigError`] naming the variable; nothing reads the
//! environment after start. The README documents each variable and its default.

use crate::http::origin_of;
use crate::keys::SigningAlgorithm;
use crate::store::TableNames;

/// Where state and keys live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// In-memory stores and a key generated at start (the embedded default).
    Memory,
    /// DynamoDB tables and a KMS key; endpoints and credentials from the standard AWS SDK
    /// configuration (region, credential chain, `AWS_ENDPOINT_URL_*`).
    Aws,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub backend: Backend,
    /// DynamoDB table names (`aws` backend).
    pub tables: TableNames,
    /// `iss` of every access token; `None` means "the server's own base URL" (serve sets it).
    pub issuer: Option<String>,
    /// `aud` of every access token, and the only audience accepted on verification.
    pub audience: String,
    /// Access-token lifetime, seconds.
    pub access_ttl_secs: u64,
    /// Absolute refresh-session lifetime, seconds: no session outlives it.
    pub refresh_ttl_secs: u64,
    /// Idle timeout of a refresh session, seconds; 0 disables.
    pub refresh_idle_secs: u64,
    /// How long a just-spent refresh token still yields the same successor; 0 disables.
    pub refresh_grace_secs: u64,
    /// Clock-skew allowance on exp/nbf/iat, seconds.
    pub leeway_secs: u64,
    pub algorithm: SigningAlgorithm,
    /// Browser origins allowed to call with credentials (CORS) and to refresh by cookie.
    pub cors_origins: Vec<String>,
    /// Whether login and refresh also set the refresh token as an HttpOnly cookie.
    pub refresh_cookie: bool,
    /// `Cache-Control: max-age` of the JWKS, seconds.
    pub jwks_max_age_secs: u64,
    /// How long a process keeps its key ring before re-reading the key registry, seconds:
    /// the longest a promotion or an emergency retirement takes to reach every process.
    pub key_cache_ttl_secs: u64,
    /// How long a pending key is published before it may sign, seconds. Default: the JWKS
    /// max-age plus the key cache TTL (our JWKS route may serve a ring that old).
    pub key_publish_delay_secs: u64,
    /// KMS deletion window of retired keys, days (7-30).
    pub key_deletion_window_days: u8,
    pub argon2: Argon2Params,
}

/// argon2id cost parameters (OWASP's first recommendation by default: 19 MiB, 2 passes, 1 lane).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl Argon2Params {
    /// The cheapest setting the configuration accepts: for tests and benchmarks, where
    /// password hashing is not what is being measured. Never for real passwords.
    pub const CHEAPEST: Argon2Params = Argon2Params {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
}

impl Default for Argon2Params {
    fn default() -> Self {
        Self {
            memory_kib: 19 * 1024,
            iterations: 2,
            parallelism: 1,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            backend: Backend::Memory,
            tables: TableNames {
                users: "tokenlife-users".to_owned(),
                sessions: "tokenlife-sessions".to_owned(),
                revocations: "tokenlife-revocations".to_owned(),
                keys: "tokenlife-keys".to_owned(),
            },
            issuer: None,
            audience: "tokenlife".to_owned(),
            access_ttl_secs: 900,
            refresh_ttl_secs: 30 * 24 * 3600,
            refresh_idle_secs: 0,
            refresh_grace_secs: 5,
            leeway_secs: 30,
            algorithm: SigningAlgorithm::Es256,
            cors_origins: Vec::new(),
            refresh_cookie: true,
            jwks_max_age_secs: 300,
            key_cache_ttl_secs: 60,
            key_publish_delay_secs: 300 + 60,
            key_deletion_window_days: 30,
            argon2: Argon2Params::default(),
        }
    }
}

/// A setting that could not be used; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup` (the environment, or a map in tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let defaults = Config::default();
        let mut config = Config {
            backend: match env
                .text("TOKENLIFE_BACKEND")?
                .map(|b| b.trim().to_ascii_lowercase())
            {
                None => defaults.backend,
                Some(b) if b == "memory" => Backend::Memory,
                Some(b) if b == "aws" => Backend::Aws,
                Some(other) => {
                    return Err(ConfigError {
                        variable: "TOKENLIFE_BACKEND",
                        problem: format!("expected memory or aws, got {other:?}"),
                    });
                }
            },
            tables: TableNames {
                users: env
                    .table_name("TOKENLIFE_USERS_TABLE")?
                    .unwrap_or(defaults.tables.users),
                sessions: env
                    .table_name("TOKENLIFE_SESSIONS_TABLE")?
                    .unwrap_or(defaults.tables.sessions),
                revocations: env
                    .table_name("TOKENLIFE_REVOCATIONS_TABLE")?
                    .unwrap_or(defaults.tables.revocations),
                keys: env
                    .table_name("TOKENLIFE_KEYS_TABLE")?
                    .unwrap_or(defaults.tables.keys),
            },
            issuer: env
                .text("TOKENLIFE_ISSUER")?
                .map(parse_issuer)
                .transpose()?,
            audience: env.text("TOKENLIFE_AUDIENCE")?.unwrap_or(defaults.audience),
            access_ttl_secs: env
                .seconds("TOKENLIFE_ACCESS_TTL", 1..=86_400)?
                .unwrap_or(defaults.access_ttl_secs),
            refresh_ttl_secs: env
                .seconds("TOKENLIFE_REFRESH_TTL", 60..=366 * 86_400)?
                .unwrap_or(defaults.refresh_ttl_secs),
            refresh_idle_secs: env
                .seconds("TOKENLIFE_REFRESH_IDLE", 0..=366 * 86_400)?
                .unwrap_or(defaults.refresh_idle_secs),
            refresh_grace_secs: env
                .seconds("TOKENLIFE_REFRESH_GRACE", 0..=300)?
                .unwrap_or(defaults.refresh_grace_secs),
            leeway_secs: env
                .seconds("TOKENLIFE_LEEWAY", 0..=600)?
                .unwrap_or(defaults.leeway_secs),
            algorithm: match env.text("TOKENLIFE_ALG")? {
                None => defaults.algorithm,
                Some(name) => SigningAlgorithm::from_name(&name).ok_or(ConfigError {
                    variable: "TOKENLIFE_ALG",
                    problem: format!("expected ES256 or RS256, got {name:?}"),
                })?,
            },
            cors_origins: match env.text("TOKENLIFE_CORS_ORIGINS")? {
                None => Vec::new(),
                Some(list) => parse_origins(&list)?,
            },
            refresh_cookie: env
                .boolean("TOKENLIFE_REFRESH_COOKIE")?
                .unwrap_or(defaults.refresh_cookie),
            jwks_max_age_secs: env
                .seconds("TOKENLIFE_JWKS_MAX_AGE", 0..=86_400)?
                .unwrap_or(defaults.jwks_max_age_secs),
            key_cache_ttl_secs: env
                .seconds("TOKENLIFE_KEY_CACHE_TTL", 1..=3600)?
                .unwrap_or(defaults.key_cache_ttl_secs),
            // Set below: its default depends on two other settings.
            key_publish_delay_secs: 0,
            key_deletion_window_days: env
                .number("TOKENLIFE_KEY_DELETION_WINDOW_DAYS", 7..=30)?
                .map_or(defaults.key_deletion_window_days, |days| days as u8),
            argon2: Argon2Params {
                memory_kib: env
                    .number("TOKENLIFE_ARGON2_MEMORY_KIB", 8..=4 * 1024 * 1024)?
                    .unwrap_or(defaults.argon2.memory_kib),
                iterations: env
                    .number("TOKENLIFE_ARGON2_ITERATIONS", 1..=100)?
                    .unwrap_or(defaults.argon2.iterations),
                parallelism: env
                    .number("TOKENLIFE_ARGON2_PARALLELISM", 1..=64)?
                    .unwrap_or(defaults.argon2.parallelism),
            },
        };
        config.key_publish_delay_secs = env
            .seconds("TOKENLIFE_KEY_PUBLISH_DELAY", 0..=30 * 86_400)?
            .unwrap_or(config.jwks_max_age_secs + config.key_cache_ttl_secs);
        if config.argon2.memory_kib < 8 * config.argon2.parallelism {
            return Err(ConfigError {
                variable: "TOKENLIFE_ARGON2_MEMORY_KIB",
                problem: "must be at least 8 KiB per lane of TOKENLIFE_ARGON2_PARALLELISM".into(),
            });
        }
        Ok(config)
    }

    /// The issuer, or `fallback` when none was configured.
    pub fn issuer_or(&self, fallback: &str) -> String {
        self.issuer.clone().unwrap_or_else(|| fallback.to_owned())
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// A set, non-empty value (an empty variable counts as unset).
    fn text(&self, variable: &'static str) -> Result<Option<String>, ConfigError> {
        Ok(self.0(variable).filter(|v| !v.trim().is_empty()))
    }

    /// A DynamoDB table name: 3-255 of `[A-Za-z0-9_.-]`.
    fn table_name(&self, variable: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(name) = self.text(variable)? else {
            return Ok(None);
        };
        let name = name.trim().to_owned();
        let valid = (3..=255).contains(&name.len())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if !valid {
            return Err(ConfigError {
                variable,
                problem: format!(
                    "{name:?} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"
                ),
            });
        }
        Ok(Some(name))
    }

    fn number(
        &self,
        variable: &'static str,
        range: std::ops::RangeInclusive<u32>,
    ) -> Result<Option<u32>, ConfigError> {
        self.seconds(variable, (*range.start() as u64)..=(*range.end() as u64))
            .map(|v| v.map(|n| n as u32))
    }

    fn seconds(
        &self,
        variable: &'static str,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(text) = self.text(variable)? else {
            return Ok(None);
        };
        let value: u64 = text.trim().parse().map_err(|_| ConfigError {
            variable,
            problem: format!("expected a whole number, got {text:?}"),
        })?;
        if !range.contains(&value) {
            return Err(ConfigError {
                variable,
                problem: format!("{value} is outside {}..={}", range.start(), range.end()),
            });
        }
        Ok(Some(value))
    }

    fn boolean(&self, variable: &'static str) -> Result<Option<bool>, ConfigError> {
        let Some(text) = self.text(variable)? else {
            return Ok(None);
        };
        match text.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(Some(true)),
            "0" | "false" | "no" | "off" => Ok(Some(false)),
            _ => Err(ConfigError {
                variable,
                problem: format!("expected true or false, got {text:?}"),
            }),
        }
    }
}

fn parse_issuer(text: String) -> Result<String, ConfigError> {
    let issuer = text.trim().trim_end_matches('/').to_owned();
    if origin_of(&issuer).is_none() {
        return Err(ConfigError {
            variable: "TOKENLIFE_ISSUER",
            problem: format!(
                "expected an http(s) URL such as https://auth.example.com, got {text:?}"
            ),
        });
    }
    Ok(issuer)
}

fn parse_origins(list: &str) -> Result<Vec<String>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let item = item.trim_end_matches('/');
            match origin_of(item) {
                Some(origin) if origin == item.to_ascii_lowercase() => Ok(origin),
                _ => Err(ConfigError {
                    variable: "TOKENLIFE_CORS_ORIGINS",
                    problem: format!(
                        "expected origins like https://app.example.com (scheme, host, optional port; no path), got {item:?}"
                    ),
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config_from(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        assert_eq!(config_from(&[]).unwrap(), Config::default());
    }

    #[test]
    fn values_are_parsed() {
        let config = config_from(&[
            ("TOKENLIFE_ISSUER", "https://auth.example.com/"),
            ("TOKENLIFE_ACCESS_TTL", "60"),
            ("TOKENLIFE_REFRESH_GRACE", "0"),
            ("TOKENLIFE_ALG", "rs256"),
            (
                "TOKENLIFE_CORS_ORIGINS",
                "https://app.example.com, http://localhost:5173",
            ),
            ("TOKENLIFE_REFRESH_COOKIE", "false"),
            ("TOKENLIFE_BACKEND", "AWS"),
            ("TOKENLIFE_SESSIONS_TABLE", "prod.sessions"),
            ("TOKENLIFE_KEYS_TABLE", "prod.keys"),
            ("TOKENLIFE_JWKS_MAX_AGE", "100"),
            ("TOKENLIFE_KEY_CACHE_TTL", "20"),
            ("TOKENLIFE_KEY_DELETION_WINDOW_DAYS", "7"),
        ])
        .unwrap();
        assert_eq!(config.issuer.as_deref(), Some("https://auth.example.com"));
        assert_eq!(config.access_ttl_secs, 60);
        assert_eq!(config.refresh_grace_secs, 0);
        assert_eq!(config.algorithm, SigningAlgorithm::Rs256);
        assert_eq!(
            config.cors_origins,
            vec!["https://app.example.com", "http://localhost:5173"]
        );
        assert!(!config.refresh_cookie);
        assert_eq!(config.backend, Backend::Aws);
        assert_eq!(config.tables.sessions, "prod.sessions");
        assert_eq!(config.tables.users, "tokenlife-users");
        assert_eq!(config.tables.keys, "prod.keys");
        // The publish delay defaults to what the JWKS caches can hold.
        assert_eq!(config.key_publish_delay_secs, 120);
        assert_eq!(config.key_deletion_window_days, 7);
        let explicit = config_from(&[("TOKENLIFE_KEY_PUBLISH_DELAY", "5")]).unwrap();
        assert_eq!(explicit.key_publish_delay_secs, 5);
    }

    #[test]
    fn bad_values_name_the_variable() {
        for (variable, value) in [
            ("TOKENLIFE_ACCESS_TTL", "fifteen"),
            ("TOKENLIFE_ACCESS_TTL", "0"),
            ("TOKENLIFE_REFRESH_GRACE", "-1"),
            ("TOKENLIFE_ALG", "HS256"),
            ("TOKENLIFE_ALG", "none"),
            ("TOKENLIFE_ISSUER", "auth.example.com"),
            ("TOKENLIFE_CORS_ORIGINS", "https://app.example.com/path"),
            ("TOKENLIFE_CORS_ORIGINS", "*"),
            ("TOKENLIFE_REFRESH_COOKIE", "maybe"),
            ("TOKENLIFE_BACKEND", "postgres"),
            ("TOKENLIFE_SESSIONS_TABLE", "my table"),
            ("TOKENLIFE_USERS_TABLE", "x"),
            ("TOKENLIFE_LEEWAY", "100000"),
            ("TOKENLIFE_KEY_CACHE_TTL", "0"),
            ("TOKENLIFE_KEY_DELETION_WINDOW_DAYS", "6"),
            ("TOKENLIFE_KEY_PUBLISH_DELAY", "soon"),
            ("TOKENLIFE_KEYS_TABLE", "a b"),
        ] {
            let error = config_from(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
            assert!(error.to_string().contains(variable));
        }
    }
}
