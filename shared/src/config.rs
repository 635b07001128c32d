//! Every setting of tokenlife, read once from environment variables into a typed [`Config`].
//!
//! Each `TOKENLIFE_*` setting is declared once, in [`SETTINGS`]: its name, default, accepted
//! values, one-line doc, and the field it sets. Parsing and defaults derive from that table,
//! and a test checks the README's configuration table against it. A bad value, or an
//! unknown `TOKENLIFE_*` variable (a typo), fails at start with a [`ConfigError`] naming it;
//! nothing reads the environment after start.

use std::collections::HashMap;

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

/// How signing keys are made and where they sign (`TOKENLIFE_SIGNING`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// KMS asymmetric keys: one `kms:Sign` per token; private keys never leave KMS.
    Kms,
    /// KMS-wrapped data key pairs, unwrapped once per process and key, signing locally
    /// (see [`crate::keys::data_key`]).
    DataKey,
}

/// How a verification learns of revocations (`TOKENLIFE_REVOCATION_CHECK`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevocationCheck {
    /// One strongly consistent lookup per verification: a revocation binds the next one.
    Lookup,
    /// A copy of the live entries in each process, refreshed every poll interval: no AWS
    /// call per verification (see [`crate::service::mirror`]).
    Mirror,
}

/// The typed settings. Field docs say what a value means to the code; the variables, their
/// defaults and ranges are in [`SETTINGS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub backend: Backend,
    /// The deployment's name (`TOKENLIFE_STACK`): its tables' prefix and its metrics'
    /// namespace ([`Config::metrics_namespace`]).
    pub stack: String,
    /// DynamoDB table names (`aws` backend).
    pub tables: TableNames,
    /// `iss` of every access token; `None` means "the server's own base URL" (serve sets it).
    pub issuer: Option<String>,
    /// `aud` of every access token, and the only audience accepted on verification.
    pub audience: String,
    pub access_ttl_secs: u64,
    /// No session outlives it, however often it is refreshed.
    pub refresh_ttl_secs: u64,
    /// 0 disables.
    pub refresh_idle_secs: u64,
    /// 0 disables.
    pub refresh_grace_secs: u64,
    /// Login limiting: failed logins allowed per username from one address, per username
    /// from all addresses, and per source address, within one window of
    /// `login_window_secs`; past one, 429 until the window ends. See
    /// [`crate::service::login_limits`].
    pub login_failures_per_user_and_address: u64,
    pub login_failures_per_user: u64,
    pub login_failures_per_address: u64,
    pub login_window_secs: u64,
    pub leeway_secs: u64,
    pub algorithm: SigningAlgorithm,
    /// How the keys rotation makes sign (the registry may hold both kinds).
    pub signing: Signing,
    /// The symmetric KMS key data keys are wrapped under; `None`: see
    /// [`Config::wrapping_key`].
    pub wrapping_key: Option<String>,
    pub revocation_check: RevocationCheck,
    /// `mirror`: the longest a copy is used before it is refreshed, and the longest it may
    /// go unrefreshed before verifications fail closed.
    pub revocation_poll_secs: u64,
    pub revocation_max_staleness_secs: u64,
    pub cors_origins: Vec<String>,
    pub refresh_cookie: bool,
    /// Requests naming no client are accepted (see `TOKENLIFE_ANONYMOUS_CLIENT`).
    pub anonymous_client: bool,
    pub jwks_max_age_secs: u64,
    /// The longest a promotion or an emergency retirement takes to reach every process.
    pub key_cache_ttl_secs: u64,
    /// `None`: see [`Config::key_publish_delay_secs`].
    pub key_publish_delay: Option<u64>,
    pub key_deletion_window_days: u8,
    /// The role that creates this deployment's KMS keys and may tag and retire them, named
    /// in each new key's own policy; `None`: KMS's default key policy.
    pub key_manager_role: Option<String>,
    pub argon2: Argon2Params,
    /// Password hashes at once per process (0: one per core), and the longest wait for a
    /// slot before a 503 (see [`crate::passwords`]).
    pub hashing_slots: u64,
    pub hashing_wait_ms: u64,
    /// `tokenlife serve` only: how many reverse proxies in front of it append to
    /// `X-Forwarded-For` (0: the header is never believed; see
    /// [`crate::http::request::client_address`]).
    pub trusted_proxy_hops: u64,
}

/// argon2id cost parameters.
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

/// The longest access-token lifetime the settings allow (`TOKENLIFE_ACCESS_TTL`'s maximum).
/// Blocklist entries are sized by it, not by the current setting: a token issued before a
/// deploy shortened the lifetime may still be in circulation.
pub const ACCESS_TTL_MAX_SECS: u64 = 86_400;
/// The longest session lifetime the settings allow (`TOKENLIFE_REFRESH_TTL`'s maximum).
pub const REFRESH_TTL_MAX_SECS: u64 = 366 * 86_400;
/// The largest clock-skew leeway the settings allow (`TOKENLIFE_LEEWAY`'s maximum).
pub const LEEWAY_MAX_SECS: u64 = 600;
/// How far apart two instances' clocks may be (Lambda's are NTP-synchronised to well under
/// a second; this is a wide allowance).
pub const CLOCK_SKEW_ALLOWANCE_SECS: u64 = 300;
/// What every blocklist entry adds to the last moment a token it blocks could expire: any
/// verifier's leeway, plus the skew twice (the writer's clock behind, the verifier's ahead).
pub const BLOCKLIST_MARGIN_SECS: u64 = LEEWAY_MAX_SECS + 2 * CLOCK_SKEW_ALLOWANCE_SECS;

/// One `TOKENLIFE_*` setting.
pub struct Setting {
    pub name: &'static str,
    /// The default, parsed like a set value; `None`: unset unless given (the doc says what
    /// that means).
    pub default: Option<&'static str>,
    pub doc: &'static str,
    pub kind: Kind,
}

/// What a setting accepts, and the field it sets.
pub enum Kind {
    /// A whole number in `min..=max`.
    Number {
        min: u64,
        max: u64,
        set: fn(&mut Config, u64),
    },
    /// true/false (also 1/0, yes/no, on/off).
    Flag { set: fn(&mut Config, bool) },
    /// A DynamoDB table name: 3-255 of `[A-Za-z0-9_.-]`.
    Table { set: fn(&mut Config, String) },
    /// Anything else: `set` parses the (non-empty, untrimmed) text or says what it expected.
    Text {
        set: fn(&mut Config, &str) -> Result<(), String>,
    },
}

/// Every setting. The README's configuration table lists the same names and defaults.
pub const SETTINGS: &[Setting] = &[
    Setting {
        name: "TOKENLIFE_BACKEND",
        default: Some("memory"),
        doc: "`memory` (in-memory, keys held in the process) or `aws` (DynamoDB + KMS).",
        kind: Kind::Text {
            set: |c, text| {
                c.backend = match text.trim().to_ascii_lowercase().as_str() {
                    "memory" => Backend::Memory,
                    "aws" => Backend::Aws,
                    _ => return Err(format!("expected memory or aws, got {text:?}")),
                };
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_STACK",
        default: Some("tokenlife"),
        doc: "Name of the deployment — the CloudFormation stack's name (`aws`): its tables are `<name>-users`, `-sessions`, `-revocations` and `-keys`, as template.yaml names them, and its CloudWatch metrics' namespace `tokenlife/<name>`. 1–128 of `A-Z a-z 0-9 -`, starting with a letter.",
        kind: Kind::Text {
            set: |c, text| {
                let stack = text.trim();
                let valid = (1..=128).contains(&stack.len())
                    && stack.starts_with(|ch: char| ch.is_ascii_alphabetic())
                    && stack
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || ch == '-');
                if !valid {
                    return Err(format!(
                        "expected a stack name (1-128 of A-Z a-z 0-9 -, starting with a letter), got {text:?}"
                    ));
                }
                c.tables = TableNames::for_stack(stack);
                c.stack = stack.to_owned();
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_USERS_TABLE",
        default: None,
        doc: "DynamoDB table of users (`aws`), if not `<TOKENLIFE_STACK>-users`.",
        kind: Kind::Table {
            set: |c, name| c.tables.users = name,
        },
    },
    Setting {
        name: "TOKENLIFE_SESSIONS_TABLE",
        default: None,
        doc: "DynamoDB table of sessions/refresh tokens (`aws`), if not `<TOKENLIFE_STACK>-sessions`.",
        kind: Kind::Table {
            set: |c, name| c.tables.sessions = name,
        },
    },
    Setting {
        name: "TOKENLIFE_REVOCATIONS_TABLE",
        default: None,
        doc: "DynamoDB table of revocation entries (`aws`), if not `<TOKENLIFE_STACK>-revocations`.",
        kind: Kind::Table {
            set: |c, name| c.tables.revocations = name,
        },
    },
    Setting {
        name: "TOKENLIFE_KEYS_TABLE",
        default: None,
        doc: "DynamoDB table of the signing-key registry (`aws`), if not `<TOKENLIFE_STACK>-keys`; its KMS keys are tagged `tokenlife-registry=<this name>`.",
        kind: Kind::Table {
            set: |c, name| c.tables.keys = name,
        },
    },
    Setting {
        name: "TOKENLIFE_CLIENTS_TABLE",
        default: None,
        doc: "DynamoDB table of registered clients (`aws`), if not `<TOKENLIFE_STACK>-clients`.",
        kind: Kind::Table {
            set: |c, name| c.tables.clients = name,
        },
    },
    Setting {
        name: "TOKENLIFE_ISSUER",
        default: None,
        doc: "`iss` of the tokens and base of the metadata URLs, an http(s) URL. Unset: `serve` uses its own base URL; a Lambda function refuses to start.",
        kind: Kind::Text {
            set: |c, text| {
                let issuer = text.trim().trim_end_matches('/');
                if origin_of(issuer).is_none() {
                    return Err(format!(
                        "expected an http(s) URL such as https://auth.example.com, got {text:?}"
                    ));
                }
                c.issuer = Some(issuer.to_owned());
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_AUDIENCE",
        default: Some("tokenlife"),
        doc: "`aud` of the tokens; the only audience accepted.",
        kind: Kind::Text {
            set: |c, text| {
                c.audience = text.to_owned();
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_ACCESS_TTL",
        default: Some("900"),
        doc: "Access-token lifetime, seconds.",
        kind: Kind::Number {
            min: 1,
            max: ACCESS_TTL_MAX_SECS,
            set: |c, n| c.access_ttl_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_REFRESH_TTL",
        default: Some("2592000"),
        doc: "Absolute session lifetime, seconds (30 days): however often it is refreshed, a session ends then.",
        kind: Kind::Number {
            min: 60,
            max: REFRESH_TTL_MAX_SECS,
            set: |c, n| c.refresh_ttl_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_REFRESH_IDLE",
        default: Some("0"),
        doc: "Idle timeout, seconds: a session unused this long can no longer refresh. `0`: off.",
        kind: Kind::Number {
            min: 0,
            max: 366 * 86_400,
            set: |c, n| c.refresh_idle_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_REFRESH_GRACE",
        default: Some("5"),
        doc: "Seconds during which a just-spent refresh token returns the same successor (lost responses, two tabs). `0` disables: any second use is reuse.",
        kind: Kind::Number {
            min: 0,
            max: 300,
            set: |c, n| c.refresh_grace_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_LOGIN_FAILURES_PER_USER_AND_ADDRESS",
        default: Some("10"),
        doc: "Failed logins allowed for one username from one source address (an IPv6 /64 counts as one) within a `TOKENLIFE_LOGIN_WINDOW`; then that address's logins as that user are refused (429, `Retry-After`) until the window ends, without a password check. The user's logins from elsewhere go on.",
        kind: Kind::Number {
            min: 1,
            max: 1_000_000,
            set: |c, n| c.login_failures_per_user_and_address = n,
        },
    },
    Setting {
        name: "TOKENLIFE_LOGIN_FAILURES_PER_USER",
        default: Some("100"),
        doc: "Failed logins allowed for one username from all addresses together within a `TOKENLIFE_LOGIN_WINDOW`; then every login as that user is refused (429) until the window ends. Bounds password guessing spread over many addresses.",
        kind: Kind::Number {
            min: 1,
            max: 1_000_000,
            set: |c, n| c.login_failures_per_user = n,
        },
    },
    Setting {
        name: "TOKENLIFE_LOGIN_FAILURES_PER_ADDRESS",
        default: Some("100"),
        doc: "Failed logins allowed from one source address within a `TOKENLIFE_LOGIN_WINDOW`, whatever the usernames; then logins from it are refused (429) until the window ends. Bounds credential stuffing from one address.",
        kind: Kind::Number {
            min: 1,
            max: 1_000_000,
            set: |c, n| c.login_failures_per_address = n,
        },
    },
    Setting {
        name: "TOKENLIFE_LOGIN_WINDOW",
        default: Some("900"),
        doc: "The login-limiting window, seconds (fixed windows: counts start again at each multiple of it).",
        kind: Kind::Number {
            min: 10,
            max: 86_400,
            set: |c, n| c.login_window_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_LEEWAY",
        default: Some("30"),
        doc: "Clock-skew allowance on `exp`, `nbf`, `iat`, seconds.",
        kind: Kind::Number {
            min: 0,
            max: LEEWAY_MAX_SECS,
            set: |c, n| c.leeway_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_ALG",
        default: Some("ES256"),
        doc: "`ES256` (P-256) or `RS256` (RSA 2048).",
        kind: Kind::Text {
            set: |c, text| {
                c.algorithm = SigningAlgorithm::from_name(text)
                    .ok_or_else(|| format!("expected ES256 or RS256, got {text:?}"))?;
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_SIGNING",
        default: Some("kms"),
        doc: "How new signing keys sign (`aws`): `kms` (a KMS key; one `kms:Sign` per token, the private key never leaves KMS) or `data-key` (a KMS-wrapped data key pair, unwrapped once per process with `kms:Decrypt` and used in memory: no KMS call per token). Takes effect at the next rotation; both kinds verify.",
        kind: Kind::Text {
            set: |c, text| {
                c.signing = match text.trim().to_ascii_lowercase().as_str() {
                    "kms" => Signing::Kms,
                    "data-key" => Signing::DataKey,
                    _ => return Err(format!("expected kms or data-key, got {text:?}")),
                };
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_WRAPPING_KEY",
        default: None,
        doc: "The symmetric KMS key (id, ARN or `alias/…`) that wraps data keys (`TOKENLIFE_SIGNING=data-key`). Unset: `alias/tokenlife/<TOKENLIFE_STACK>/wrapping`, which `tokenlife setup` creates.",
        kind: Kind::Text {
            set: |c, text| {
                let key = text.trim();
                let valid = key.len() <= 2048
                    && key
                        .chars()
                        .all(|ch| ch.is_ascii_alphanumeric() || "/:_-".contains(ch));
                if !valid {
                    return Err(format!(
                        "expected a KMS key id, key ARN or alias/name, got {text:?}"
                    ));
                }
                c.wrapping_key = Some(key.to_owned());
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_REVOCATION_CHECK",
        default: Some("lookup"),
        doc: "How verifications (authorizer, `/userinfo`, introspection) learn of revocations: `lookup` (one strongly consistent read per verification; a revocation binds the next one) or `mirror` (each process keeps a copy of the live entries, refreshed from the changes at most every `TOKENLIFE_REVOCATION_POLL`: no AWS call per verification, and a revocation takes effect within the poll interval).",
        kind: Kind::Text {
            set: |c, text| {
                c.revocation_check = match text.trim().to_ascii_lowercase().as_str() {
                    "lookup" => RevocationCheck::Lookup,
                    "mirror" => RevocationCheck::Mirror,
                    _ => return Err(format!("expected lookup or mirror, got {text:?}")),
                };
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_REVOCATION_POLL",
        default: Some("1"),
        doc: "`mirror`: seconds a process's copy of the revocation entries is used before it reads the changes again.",
        kind: Kind::Number {
            min: 1,
            max: 60,
            set: |c, n| c.revocation_poll_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_REVOCATION_MAX_STALENESS",
        default: Some("10"),
        doc: "`mirror`: seconds a copy may go without a successful read before verifications fail closed (503); more than `TOKENLIFE_REVOCATION_POLL`.",
        kind: Kind::Number {
            min: 2,
            max: 600,
            set: |c, n| c.revocation_max_staleness_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_CORS_ORIGINS",
        default: None,
        doc: "Comma-separated browser origins (`https://app.example.com`) allowed to call with credentials and to refresh by cookie. Unset: none.",
        kind: Kind::Text {
            set: |c, text| {
                c.cors_origins = parse_origins(text)?;
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_ANONYMOUS_CLIENT",
        default: Some("true"),
        doc: "Whether `/login`, `/token` (password and refresh grants), `/refresh` and `/revoke` accept requests that name no `client_id`: an unregistered public client, whose sessions are bound to no client. `false`: every such request names a registered client.",
        kind: Kind::Flag {
            set: |c, on| c.anonymous_client = on,
        },
    },
    Setting {
        name: "TOKENLIFE_REFRESH_COOKIE",
        default: Some("true"),
        doc: "Whether `/login` and `/refresh` also set the refresh token as a cookie.",
        kind: Kind::Flag {
            set: |c, on| c.refresh_cookie = on,
        },
    },
    Setting {
        name: "TOKENLIFE_JWKS_MAX_AGE",
        default: Some("300"),
        doc: "`Cache-Control: max-age` of the JWKS, seconds: how long clients may keep our key set.",
        kind: Kind::Number {
            min: 0,
            max: 86_400,
            set: |c, n| c.jwks_max_age_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_KEY_CACHE_TTL",
        default: Some("60"),
        doc: "How long each process keeps its key ring before re-reading the registry, seconds: the longest a promotion or an emergency retirement takes to reach every process.",
        kind: Kind::Number {
            min: 1,
            max: 3600,
            set: |c, n| c.key_cache_ttl_secs = n,
        },
    },
    Setting {
        name: "TOKENLIFE_KEY_PUBLISH_DELAY",
        default: None,
        doc: "How long a new key is published before it may sign, seconds. Unset: `TOKENLIFE_JWKS_MAX_AGE` + `TOKENLIFE_KEY_CACHE_TTL` (360). Shorter than that risks clients that have not seen the key yet.",
        kind: Kind::Number {
            min: 0,
            max: 30 * 86_400,
            set: |c, n| c.key_publish_delay = Some(n),
        },
    },
    Setting {
        name: "TOKENLIFE_KEY_DELETION_WINDOW_DAYS",
        default: Some("30"),
        doc: "KMS deletion window of retired keys, days.",
        kind: Kind::Number {
            min: 7,
            max: 30,
            set: |c, n| c.key_deletion_window_days = n as u8,
        },
    },
    Setting {
        name: "TOKENLIFE_KEY_MANAGER_ROLE",
        default: None,
        doc: "The IAM role ARN that creates this deployment's KMS keys (`aws`; template.yaml: the rotate-keys role). Each key it creates gets its own key policy letting this role (and the account's administrators) tag and retire it, so the role needs no IAM right to tag any key. Unset: KMS's default key policy.",
        kind: Kind::Text {
            set: |c, text| {
                c.key_manager_role = Some(role_arn(text.trim())?);
                Ok(())
            },
        },
    },
    Setting {
        name: "TOKENLIFE_HASHING_SLOTS",
        default: Some("0"),
        doc: "Password hashes (argon2id) at once per process; `0`: one per core. Bounds a login flood's memory to this many times `TOKENLIFE_ARGON2_MEMORY_KIB`.",
        kind: Kind::Number {
            min: 0,
            max: 1024,
            set: |c, n| c.hashing_slots = n,
        },
    },
    Setting {
        name: "TOKENLIFE_HASHING_WAIT_MS",
        default: Some("2000"),
        doc: "How long a login or password change waits for a hashing slot before it is refused with 503 and `Retry-After`, milliseconds.",
        kind: Kind::Number {
            min: 0,
            max: 60_000,
            set: |c, n| c.hashing_wait_ms = n,
        },
    },
    Setting {
        name: "TOKENLIFE_TRUSTED_PROXY_HOPS",
        default: Some("0"),
        doc: "`tokenlife serve` only: the number of reverse proxies in front of it, each appending the address it saw to `X-Forwarded-For`; the client's address (for login limiting, sessions and the audit trail) is then that header's entry this many places from the right. `0`: the header is ignored and the connection's peer is the address. Set it only when every request passes through those proxies (else a client can name any address). In Lambda, API Gateway's `sourceIp` is used whatever this says.",
        kind: Kind::Number {
            min: 0,
            max: 10,
            set: |c, n| c.trusted_proxy_hops = n,
        },
    },
    Setting {
        name: "TOKENLIFE_ARGON2_MEMORY_KIB",
        default: Some("19456"),
        doc: "argon2id memory cost, KiB (OWASP: 19 MiB); at least 8 per lane.",
        kind: Kind::Number {
            min: 8,
            max: 4 * 1024 * 1024,
            set: |c, n| c.argon2.memory_kib = n as u32,
        },
    },
    Setting {
        name: "TOKENLIFE_ARGON2_ITERATIONS",
        default: Some("2"),
        doc: "argon2id passes.",
        kind: Kind::Number {
            min: 1,
            max: 100,
            set: |c, n| c.argon2.iterations = n as u32,
        },
    },
    Setting {
        name: "TOKENLIFE_ARGON2_PARALLELISM",
        default: Some("1"),
        doc: "argon2id lanes.",
        kind: Kind::Number {
            min: 1,
            max: 64,
            set: |c, n| c.argon2.parallelism = n as u32,
        },
    },
];

/// `TOKENLIFE_*` variables that are not settings of the service: the test and install
/// scripts' own (`TOKENLIFE_CACHE`, and any `TOKENLIFE_TEST_*`). Every other unknown
/// `TOKENLIFE_*` variable stops the start.
const NOT_SETTINGS: &[&str] = &["TOKENLIFE_CACHE"];
const TEST_PREFIX: &str = "TOKENLIFE_TEST_";

/// A setting that could not be used; names the variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {variable}: {problem}")]
pub struct ConfigError {
    pub variable: String,
    pub problem: String,
}

impl Default for Config {
    /// Every setting at its declared default.
    fn default() -> Self {
        match Self::from_lookup(|_| None) {
            Ok(config) => config,
            // Unreachable for the declared defaults (`defaults_apply_when_nothing_is_set`
            // parses them all); a wrong default is a bug to see at once.
            Err(error) => panic!("a declared default does not parse: {error}"),
        }
    }
}

impl Config {
    /// Reads the process environment: every `TOKENLIFE_*` variable must be a known setting.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut vars = HashMap::new();
        for (name, value) in std::env::vars_os() {
            let Some(name) = name.to_str().filter(|n| n.starts_with("TOKENLIFE_")) else {
                continue;
            };
            let value = value.into_string().map_err(|_| ConfigError {
                variable: name.to_owned(),
                problem: "is not valid UTF-8".into(),
            })?;
            vars.insert(name.to_owned(), value);
        }
        Self::from_vars(&vars)
    }

    /// Reads `vars` (name -> value), refusing unknown `TOKENLIFE_*` names.
    pub fn from_vars(vars: &HashMap<String, String>) -> Result<Self, ConfigError> {
        let mut unknown: Vec<&String> = vars
            .keys()
            .filter(|name| name.starts_with("TOKENLIFE_"))
            .filter(|name| {
                !name.starts_with(TEST_PREFIX)
                    && !NOT_SETTINGS.contains(&name.as_str())
                    && !SETTINGS.iter().any(|s| s.name == name.as_str())
            })
            .collect();
        unknown.sort();
        if let Some(name) = unknown.first() {
            // A setting that contains the rest of the name (TOKENLIFE_GRACE), else the
            // nearest by edits (TOKENLIFE_ACESS_TTL).
            let rest = name.trim_start_matches("TOKENLIFE_");
            let closest = SETTINGS
                .iter()
                .min_by_key(|s| (!s.name.contains(rest), edit_distance(s.name, name)))
                .map_or("", |s| s.name);
            return Err(ConfigError {
                variable: (*name).clone(),
                problem: format!(
                    "is not a tokenlife setting (did you mean {closest}?); the settings are listed in the README"
                ),
            });
        }
        Self::from_lookup(|name| vars.get(name).cloned())
    }

    /// Reads settings through `lookup`; an empty value counts as unset.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let mut config = Self::unset();
        for setting in SETTINGS {
            let given = lookup(setting.name).filter(|v| !v.trim().is_empty());
            let Some(text) = given.as_deref().or(setting.default) else {
                continue;
            };
            setting
                .apply(&mut config, text)
                .map_err(|problem| ConfigError {
                    variable: setting.name.to_owned(),
                    problem,
                })?;
        }
        if config.signing == Signing::DataKey && config.backend != Backend::Aws {
            return Err(ConfigError {
                variable: "TOKENLIFE_SIGNING".into(),
                problem: "data-key signing needs TOKENLIFE_BACKEND=aws (the memory backend's keys are already in the process)".into(),
            });
        }
        if config.revocation_max_staleness_secs <= config.revocation_poll_secs {
            return Err(ConfigError {
                variable: "TOKENLIFE_REVOCATION_MAX_STALENESS".into(),
                problem: "must be more than TOKENLIFE_REVOCATION_POLL".into(),
            });
        }
        if config.argon2.memory_kib < 8 * config.argon2.parallelism {
            return Err(ConfigError {
                variable: "TOKENLIFE_ARGON2_MEMORY_KIB".into(),
                problem: "must be at least 8 KiB per lane of TOKENLIFE_ARGON2_PARALLELISM".into(),
            });
        }
        Ok(config)
    }

    /// The CloudWatch namespace of the deployment's metrics: `tokenlife/<stack>`, so that
    /// two stacks in one account keep theirs apart.
    pub fn metrics_namespace(&self) -> String {
        format!("tokenlife/{}", self.stack)
    }

    /// The values before settings apply: every field is then set from its setting (given
    /// or default), except the optional ones whose setting is unset.
    fn unset() -> Self {
        Config {
            backend: Backend::Memory,
            stack: String::new(),
            tables: TableNames {
                users: String::new(),
                sessions: String::new(),
                revocations: String::new(),
                keys: String::new(),
                clients: String::new(),
            },
            issuer: None,
            audience: String::new(),
            access_ttl_secs: 0,
            refresh_ttl_secs: 0,
            refresh_idle_secs: 0,
            refresh_grace_secs: 0,
            login_failures_per_user_and_address: 0,
            login_failures_per_user: 0,
            login_failures_per_address: 0,
            login_window_secs: 0,
            leeway_secs: 0,
            algorithm: SigningAlgorithm::Es256,
            signing: Signing::Kms,
            wrapping_key: None,
            revocation_check: RevocationCheck::Lookup,
            revocation_poll_secs: 0,
            revocation_max_staleness_secs: 0,
            cors_origins: Vec::new(),
            refresh_cookie: false,
            anonymous_client: true,
            jwks_max_age_secs: 0,
            key_cache_ttl_secs: 0,
            key_publish_delay: None,
            key_deletion_window_days: 0,
            key_manager_role: None,
            argon2: Argon2Params {
                memory_kib: 0,
                iterations: 0,
                parallelism: 0,
            },
            hashing_slots: 0,
            hashing_wait_ms: 0,
            trusted_proxy_hops: 0,
        }
    }

    /// The wrapping key of data keys: the setting, or the alias `tokenlife setup` makes.
    pub fn wrapping_key(&self) -> String {
        self.wrapping_key
            .clone()
            .unwrap_or_else(|| format!("alias/tokenlife/{}/wrapping", self.stack))
    }

    /// The issuer, or `fallback` when none was configured.
    pub fn issuer_or(&self, fallback: &str) -> String {
        self.issuer.clone().unwrap_or_else(|| fallback.to_owned())
    }

    /// How long a pending key is published before it may sign, seconds: the setting, or
    /// by default the JWKS max-age plus the key cache TTL (our JWKS route may serve a ring
    /// that old).
    pub fn key_publish_delay_secs(&self) -> u64 {
        self.key_publish_delay
            .unwrap_or(self.jwks_max_age_secs + self.key_cache_ttl_secs)
    }
}

/// An IAM role ARN (`arn:<partition>:iam::<12-digit account>:role/<path/name>`).
fn role_arn(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.splitn(6, ':').collect();
    let valid = matches!(parts.as_slice(), ["arn", partition, "iam", "", account, resource]
        if !partition.is_empty()
            && account.len() == 12
            && account.bytes().all(|b| b.is_ascii_digit())
            && resource.starts_with("role/")
            && resource.len() > 5
            && !text.contains(['"', '\\', ',']));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "expected an IAM role ARN such as arn:aws:iam::123456789012:role/name, got {text:?}"
        ))
    }
}

impl Setting {
    /// Numbers, flags and table names are read trimmed; text settings trim what they need
    /// (the audience is taken as given).
    fn apply(&self, config: &mut Config, text: &str) -> Result<(), String> {
        let trimmed = text.trim();
        match self.kind {
            Kind::Number { min, max, set } => {
                let text = trimmed;
                let value: u64 = text
                    .parse()
                    .map_err(|_| format!("expected a whole number, got {text:?}"))?;
                if !(min..=max).contains(&value) {
                    return Err(format!("{value} is outside {min}..={max}"));
                }
                set(config, value);
            }
            Kind::Flag { set } => match trimmed.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" | "on" => set(config, true),
                "0" | "false" | "no" | "off" => set(config, false),
                _ => return Err(format!("expected true or false, got {text:?}")),
            },
            Kind::Table { set } => {
                let text = trimmed;
                let valid = (3..=255).contains(&text.len())
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !valid {
                    return Err(format!(
                        "{text:?} is not a DynamoDB table name (3-255 of A-Z a-z 0-9 _ . -)"
                    ));
                }
                set(config, text.to_owned());
            }
            Kind::Text { set } => set(config, text)?,
        }
        Ok(())
    }

    /// The setting's row in the README's configuration table.
    fn readme_row(&self) -> String {
        let default = self
            .default
            .map_or("unset".to_owned(), |d| format!("`{d}`"));
        let accepts = match self.kind {
            Kind::Number { min, max, .. } => format!(" Accepts {min}–{max}."),
            Kind::Flag { .. } => " `true` or `false`.".to_owned(),
            Kind::Table { .. } | Kind::Text { .. } => String::new(),
        };
        format!("| `{}` | {default} | {}{accepts} |", self.name, self.doc)
    }
}

/// The README's configuration table of the `TOKENLIFE_*` settings, rendered from
/// [`SETTINGS`] (a test keeps the README equal to it).
pub fn readme_table() -> String {
    let mut table = "| Variable | Default | Meaning |\n|---|---|---|\n".to_owned();
    for setting in SETTINGS {
        table += &setting.readme_row();
        table.push('\n');
    }
    table
}

fn parse_origins(list: &str) -> Result<Vec<String>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| {
            let item = item.trim_end_matches('/');
            match origin_of(item) {
                Some(origin) if origin == item.to_ascii_lowercase() => Ok(origin),
                _ => Err(format!(
                    "expected origins like https://app.example.com (scheme, host, optional port; no path), got {item:?}"
                )),
            }
        })
        .collect()
}

/// Levenshtein distance, for "did you mean".
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
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
        let config = config_from(&[]).unwrap();
        assert_eq!(config, Config::default());
        assert_eq!(config.backend, Backend::Memory);
        assert_eq!(config.tables.users, "tokenlife-users");
        assert_eq!(config.tables.sessions, "tokenlife-sessions");
        assert_eq!(config.tables.revocations, "tokenlife-revocations");
        assert_eq!(config.tables.keys, "tokenlife-keys");
        assert_eq!(config.issuer, None);
        assert_eq!(config.audience, "tokenlife");
        assert_eq!(config.access_ttl_secs, 900);
        assert_eq!(config.refresh_ttl_secs, 30 * 24 * 3600);
        assert_eq!(config.refresh_idle_secs, 0);
        assert_eq!(config.refresh_grace_secs, 5);
        assert_eq!(config.leeway_secs, 30);
        assert_eq!(config.algorithm, SigningAlgorithm::Es256);
        assert!(config.cors_origins.is_empty());
        assert!(config.refresh_cookie);
        assert_eq!(config.jwks_max_age_secs, 300);
        assert_eq!(config.key_cache_ttl_secs, 60);
        assert_eq!(config.key_publish_delay_secs(), 300 + 60);
        assert_eq!(config.key_deletion_window_days, 30);
        // OWASP's first argon2id recommendation: 19 MiB, 2 passes, 1 lane.
        assert_eq!(
            config.argon2,
            Argon2Params {
                memory_kib: 19 * 1024,
                iterations: 2,
                parallelism: 1
            }
        );
    }

    #[test]
    fn unknown_tokenlife_variables_stop_the_start() {
        let vars = |pairs: &[(&str, &str)]| -> HashMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let error = Config::from_vars(&vars(&[("TOKENLIFE_ACESS_TTL", "60")])).unwrap_err();
        assert_eq!(error.variable, "TOKENLIFE_ACESS_TTL");
        assert!(
            error
                .to_string()
                .contains("did you mean TOKENLIFE_ACCESS_TTL?"),
            "{error}"
        );
        let error = Config::from_vars(&vars(&[("TOKENLIFE_GRACE", "1")])).unwrap_err();
        assert!(
            error.to_string().contains("TOKENLIFE_REFRESH_GRACE"),
            "{error}"
        );
        // Known settings, other programs' variables and the scripts' own are fine.
        let config = Config::from_vars(&vars(&[
            ("TOKENLIFE_ACCESS_TTL", "60"),
            ("TOKENLIFE_CACHE", "/tmp/cache"),
            ("TOKENLIFE_TEST_JOSE_VERIFIER", "/x.mjs"),
            ("RUST_LOG", "debug"),
        ]))
        .unwrap();
        assert_eq!(config.access_ttl_secs, 60);
    }

    #[test]
    fn readme_lists_every_setting_as_declared() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let table = readme_table();
        assert!(
            readme.contains(&table),
            "README.md's configuration table differs from config::SETTINGS; it should read:\n\n{table}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
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
        // The key manager: a role ARN only.
        let manager = config_from(&[(
            "TOKENLIFE_KEY_MANAGER_ROLE",
            "arn:aws:iam::123456789012:role/tokenlife-RotateKeysFunctionRole-X1",
        )])
        .unwrap();
        assert!(manager.key_manager_role.is_some());
        for bad in [
            "arn:aws:iam::123456789012:user/a",
            "arn:aws:iam::12345:role/a",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:kms:eu-west-1:123456789012:key/a",
            "role/a",
        ] {
            let error = config_from(&[("TOKENLIFE_KEY_MANAGER_ROLE", bad)]).unwrap_err();
            assert_eq!(error.variable, "TOKENLIFE_KEY_MANAGER_ROLE", "{bad}");
        }
        // A stack name names all four tables; a table variable overrides one.
        let stack = config_from(&[
            ("TOKENLIFE_STACK", "auth-prod"),
            ("TOKENLIFE_KEYS_TABLE", "legacy-keys"),
        ])
        .unwrap();
        assert_eq!(stack.tables.users, "auth-prod-users");
        assert_eq!(stack.tables.revocations, "auth-prod-revocations");
        assert_eq!(stack.tables.keys, "legacy-keys");
        for bad in ["1st", "a_b", "a.b", &"x".repeat(129)] {
            let error = config_from(&[("TOKENLIFE_STACK", bad)]).unwrap_err();
            assert_eq!(error.variable, "TOKENLIFE_STACK");
        }
        // The publish delay defaults to what the JWKS caches can hold.
        assert_eq!(config.key_publish_delay_secs(), 120);
        assert_eq!(config.key_deletion_window_days, 7);
        let explicit = config_from(&[("TOKENLIFE_KEY_PUBLISH_DELAY", "5")]).unwrap();
        assert_eq!(explicit.key_publish_delay_secs(), 5);
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

    #[test]
    fn data_key_signing_needs_aws_and_defaults_its_wrapping_key_to_the_stack_alias() {
        let config = config_from(&[
            ("TOKENLIFE_BACKEND", "aws"),
            ("TOKENLIFE_STACK", "orders"),
            ("TOKENLIFE_SIGNING", "data-key"),
        ])
        .unwrap();
        assert_eq!(config.signing, Signing::DataKey);
        assert_eq!(config.wrapping_key(), "alias/tokenlife/orders/wrapping");
        let named = config_from(&[
            ("TOKENLIFE_BACKEND", "aws"),
            ("TOKENLIFE_SIGNING", "data-key"),
            (
                "TOKENLIFE_WRAPPING_KEY",
                "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab",
            ),
        ])
        .unwrap();
        assert_eq!(
            named.wrapping_key(),
            "arn:aws:kms:eu-west-1:123456789012:key/1234abcd-12ab"
        );
        let error = config_from(&[("TOKENLIFE_SIGNING", "data-key")]).unwrap_err();
        assert_eq!(error.variable, "TOKENLIFE_SIGNING");
        assert!(config_from(&[("TOKENLIFE_SIGNING", "hsm")]).is_err());
        assert!(config_from(&[("TOKENLIFE_WRAPPING_KEY", "alias/a b")]).is_err());
    }
}
