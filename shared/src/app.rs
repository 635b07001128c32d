//! Wiring: builds a [`TokenService`] and its dependencies once, at start, for the backend
//! the configuration names — the embedded default (in-memory stores, signing keys held in
//! this process, one made at start) or AWS (DynamoDB tables, KMS keys listed in the keys
//! table; clients from the standard SDK configuration).

use std::sync::Arc;
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::timeout::TimeoutConfig;

use crate::clock::{Clock, SystemClock};
use crate::config::{Backend, Config, ConfigError, Signing};
use crate::error::Error;
use crate::keys::{
    KeyCache, KeyError, KeyRegistry, KeyRotation, KeyVault, KmsVault, LocalVault, RotationPolicy,
};
use crate::metrics::{AwsCallTimer, AwsService};
use crate::passwords::{PasswordError, PasswordHasher};

/// The password hasher the configuration asks for.
fn password_hasher(config: &Config) -> Result<PasswordHasher, PasswordError> {
    PasswordHasher::new(
        config.argon2,
        usize::try_from(config.hashing_slots).unwrap_or(1),
        std::time::Duration::from_millis(config.hashing_wait_ms),
    )
}
use crate::service::{Dependencies, TokenService};
use crate::store::{DynamoStore, MemoryStore};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("signing key: {0}")]
    Key(#[from] KeyError),
    #[error("argon2 parameters: {0}")]
    Password(#[from] PasswordError),
    #[error("signing keys: {}", .0.for_operator())]
    Keys(#[from] Error),
}

/// The key ring cache and the rotation over one registry and vault (the rotation forgets
/// the cache after each change).
fn key_management(
    config: &Config,
    registry: Arc<dyn KeyRegistry>,
    vault: Arc<dyn KeyVault>,
    clock: &Arc<dyn Clock>,
) -> (Arc<KeyCache>, KeyRotation) {
    let keys = Arc::new(KeyCache::new(
        registry.clone(),
        vault.clone(),
        clock.clone(),
        config.key_cache_ttl_secs,
    ));
    let rotation = KeyRotation::new(
        registry,
        vault,
        clock.clone(),
        RotationPolicy::from_config(config),
    )
    .invalidating(keys.clone());
    (keys, rotation)
}

/// The AWS SDK clients, built once from the standard configuration: region, credential
/// chain, and endpoint overrides such as `AWS_ENDPOINT_URL_DYNAMODB` / `AWS_ENDPOINT_URL_KMS`.
#[derive(Clone)]
pub struct AwsClients {
    pub dynamodb: aws_sdk_dynamodb::Client,
    pub kms: aws_sdk_kms::Client,
}

impl AwsClients {
    /// Short timeouts so that a dependency that is down becomes a quick 503: 1 s to
    /// connect, 2 s per attempt, 5 s per operation including the SDK's retries.
    pub async fn from_env() -> Self {
        let timeouts = TimeoutConfig::builder()
            .connect_timeout(Duration::from_secs(1))
            .operation_attempt_timeout(Duration::from_secs(2))
            .operation_timeout(Duration::from_secs(5))
            .build();
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .timeout_config(timeouts)
            .load()
            .await;
        Self::timed(&sdk)
    }

    /// Clients from `sdk` whose every call's duration is recorded ([`crate::metrics`]).
    pub fn timed(sdk: &aws_config::SdkConfig) -> Self {
        let dynamodb = aws_sdk_dynamodb::config::Builder::from(sdk)
            .interceptor(AwsCallTimer(AwsService::DynamoDb))
            .build();
        let kms = aws_sdk_kms::config::Builder::from(sdk)
            .interceptor(AwsCallTimer(AwsService::Kms))
            .build();
        Self {
            dynamodb: aws_sdk_dynamodb::Client::from_conf(dynamodb),
            kms: aws_sdk_kms::Client::from_conf(kms),
        }
    }
}

pub struct App {
    pub service: Arc<TokenService>,
}

impl App {
    /// The backend `config.backend` names; tokens are issued by `config.issuer`, or
    /// `default_issuer` when that is unset.
    pub async fn from_config(
        config: Config,
        default_issuer: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        match config.backend {
            Backend::Memory => Self::embedded(config, default_issuer, clock).await,
            Backend::Aws => {
                let clients = AwsClients::from_env().await;
                Self::aws(config, default_issuer, clients, clock).await
            }
        }
    }

    /// In-memory stores and signing keys held in this process, with one active key made at
    /// start.
    pub async fn embedded(
        config: Config,
        default_issuer: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        Ok(Self::embedded_with_store(config, default_issuer, clock)
            .await?
            .0)
    }

    /// [`App::embedded`], also handing back the store (tests look inside it).
    pub async fn embedded_with_store(
        config: Config,
        default_issuer: &str,
        clock: Arc<dyn Clock>,
    ) -> Result<(Self, Arc<MemoryStore>), StartError> {
        let store = Arc::new(MemoryStore::new(clock.clone()));
        let vault = Arc::new(LocalVault::default());
        let app = Self::embedded_on(config, default_issuer, clock, store.clone(), vault).await?;
        Ok((app, store))
    }

    /// [`App::embedded`] on a given store and vault: several services on one store are
    /// several processes of one deployment (tests).
    pub async fn embedded_on(
        config: Config,
        default_issuer: &str,
        clock: Arc<dyn Clock>,
        store: Arc<MemoryStore>,
        vault: Arc<LocalVault>,
    ) -> Result<Self, StartError> {
        let issuer = config.issuer_or(default_issuer);
        let (keys, rotation) = key_management(&config, store.clone(), vault, &clock);
        let deps = Dependencies {
            users: store.clone(),
            clients: store.clone(),
            sessions: store.clone(),
            keys,
            rotation,
            clock,
            passwords: Arc::new(password_hasher(&config)?),
        };
        let service = Arc::new(TokenService::new(config, issuer, deps));
        service.ensure_active_key().await?;
        Ok(Self { service })
    }

    /// DynamoDB tables and KMS keys named in `config`, through `clients`. Makes no network
    /// call: the key ring is read from the registry on first use.
    pub async fn aws(
        config: Config,
        default_issuer: &str,
        clients: AwsClients,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let issuer = config.issuer_or(default_issuer);
        let store = Arc::new(DynamoStore::new(
            clients.dynamodb,
            config.tables.clone(),
            clock.clone(),
        ));
        let vault = KmsVault::new(
            clients.kms,
            &config.tables.keys,
            config.key_deletion_window_days,
            config.key_manager_role.as_deref(),
        );
        let vault = Arc::new(match config.signing {
            Signing::Kms => vault,
            Signing::DataKey => vault.making_data_keys(&config.wrapping_key()),
        });
        let (keys, rotation) = key_management(&config, store.clone(), vault, &clock);
        let deps = Dependencies {
            users: store.clone(),
            clients: store.clone(),
            sessions: store,
            keys,
            rotation,
            clock,
            passwords: Arc::new(password_hasher(&config)?),
        };
        Ok(Self {
            service: Arc::new(TokenService::new(config, issuer, deps)),
        })
    }

    /// What a Lambda function builds at init: config from the environment (which must name
    /// the issuer: a deployed function has no "own URL" to default to).
    pub async fn for_lambda() -> Result<Self, StartError> {
        let config = Config::from_env()?;
        if config.issuer.is_none() {
            return Err(ConfigError {
                variable: "TOKENLIFE_ISSUER".into(),
                problem: "must be set for a Lambda function (the API's public base URL)".into(),
            }
            .into());
        }
        Self::from_config(config, "", Arc::new(SystemClock)).await
    }
}
