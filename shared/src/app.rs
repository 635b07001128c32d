//! Wiring: builds a [`TokenService`] and its dependencies once, at start. Today the embedded
//! default (in-memory stores and a signing key generated at start); the AWS backends plug
//! into the same constructor.

use std::sync::Arc;

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError};
use crate::keys::{KeyError, KeyRing, LocalSigner};
use crate::passwords::{PasswordError, PasswordHasher};
use crate::service::{Dependencies, TokenService};
use crate::store::MemoryStore;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("signing key: {0}")]
    Key(#[from] KeyError),
    #[error("argon2 parameters: {0}")]
    Password(#[from] PasswordError),
}

/// The embedded default: the service and the memory store it runs on.
pub struct App {
    pub service: Arc<TokenService>,
    pub store: Arc<MemoryStore>,
}

impl App {
    /// In-memory stores and a fresh local signing key of `config.algorithm`; tokens are
    /// issued by `config.issuer`, or `default_issuer` when that is unset.
    pub fn embedded(
        config: Config,
        default_issuer: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let issuer = config.issuer_or(default_issuer);
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let signer = Arc::new(LocalSigner::generate(config.algorithm)?);
        let keys = Arc::new(KeyRing::single(signer)?);
        let passwords = Arc::new(PasswordHasher::new(config.argon2)?);
        let deps = Dependencies {
            users: store.clone(),
            sessions: store.clone(),
            keys,
            clock,
            passwords,
        };
        let service = Arc::new(TokenService::new(config, issuer, deps));
        Ok(Self { service, store })
    }

    /// What a Lambda function builds at init: config from the environment (which must name
    /// the issuer: a deployed function has no "own URL" to default to).
    pub fn for_lambda() -> Result<Self, StartError> {
        let config = Config::from_env()?;
        if config.issuer.is_none() {
            return Err(ConfigError {
                variable: "TOKENLIFE_ISSUER",
                problem: "must be set for a Lambda function (the API's public base URL)".into(),
            }
            .into());
        }
        Self::embedded(config, "", Arc::new(SystemClock))
    }
}
