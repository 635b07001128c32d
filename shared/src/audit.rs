//! The audit trail: every security-relevant event as one log record on the `audit` tracing
//! target (JSON under `AWS_LAMBDA_LOG_FORMAT=JSON`, see [`crate::logging`]). This module
//! owns the event names, their fields and their levels; the code where an event happens
//! calls [`Record::emit`].
//!
//! A record says what happened (`event`, `outcome`, `reason`), to whom (`sub`,
//! `username`, `sid`, `client_id`), where the request came from (`request_id`,
//! `source_ip`, `user_agent` — truncated, control characters removed) and who acted
//! (`actor`: the `sub` of the bearer token, `cli`, `schedule`, `deploy`). The last four
//! come from the task's [`Context`], set once at the edge (the HTTP handler, rotate-keys,
//! the CLI), so the code where an event happens names only what it knows.
//!
//! **Never a secret**: no password, token, refresh token, key material or part of one. A
//! failed login names the username only when such a user exists (an unknown "username"
//! may be a password typed into the wrong field). The `sid` is an identifier, not a
//! credential (a refresh token is the sid plus a secret the record never holds).

use crate::store::Device;

/// The tracing target of every audit record.
pub const TARGET: &str = "audit";

/// Why a session ended ([`Event::SessionEnded`]).
pub const REVOKED: &str = "revoked";
pub const LOGOUT: &str = "logout";
pub const BY_USER: &str = "by_user";
pub const BY_ADMIN: &str = "by_admin";

/// Who acted, when no bearer token says it: an operator command, the rotation schedule,
/// the deploy-time custom resource.
pub const ACTOR_CLI: &str = "cli";
pub const ACTOR_SCHEDULE: &str = "schedule";
pub const ACTOR_DEPLOY: &str = "deploy";

/// Every audit event; [`Event::describe`] says when it is written and with which
/// outcomes (the README's table of events is rendered from it, and a test keeps the two
/// equal).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Login,
    RefreshReuseDetected,
    SessionEnded,
    OtherSessionsEnded,
    AccessTokenRevoked,
    UserSessionsRevoked,
    UserCreated,
    UserChanged,
    UserRemoved,
    AdminRefused,
    ClientRegistered,
    ClientSecretRotated,
    ClientRemoved,
    ClientAuthenticationFailed,
    SigningKeyChanged,
    SigningKeyEmergencyRetirement,
}

impl Event {
    pub const ALL: [Event; 16] = [
        Event::Login,
        Event::RefreshReuseDetected,
        Event::SessionEnded,
        Event::OtherSessionsEnded,
        Event::AccessTokenRevoked,
        Event::UserSessionsRevoked,
        Event::UserCreated,
        Event::UserChanged,
        Event::UserRemoved,
        Event::AdminRefused,
        Event::ClientRegistered,
        Event::ClientSecretRotated,
        Event::ClientRemoved,
        Event::ClientAuthenticationFailed,
        Event::SigningKeyChanged,
        Event::SigningKeyEmergencyRetirement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Event::Login => "login",
            Event::RefreshReuseDetected => "refresh_reuse_detected",
            Event::SessionEnded => "session_ended",
            Event::OtherSessionsEnded => "other_sessions_ended",
            Event::AccessTokenRevoked => "access_token_revoked",
            Event::UserSessionsRevoked => "user_sessions_revoked",
            Event::UserCreated => "user_created",
            Event::UserChanged => "user_changed",
            Event::UserRemoved => "user_removed",
            Event::AdminRefused => "admin_refused",
            Event::ClientRegistered => "client_registered",
            Event::ClientSecretRotated => "client_secret_rotated",
            Event::ClientRemoved => "client_removed",
            Event::ClientAuthenticationFailed => "client_authentication_failed",
            Event::SigningKeyChanged => "signing_key_changed",
            Event::SigningKeyEmergencyRetirement => "signing_key_emergency_retirement",
        }
    }

    /// When the event is written, its outcomes and reasons.
    pub fn describe(self) -> &'static str {
        match self {
            Event::Login => {
                "A password login (`/login`, `/token` password grant). Outcome `succeeded` (with `sid`), `failed` (WARN; reason `bad_password`, `unknown_user` — no username then —, `disabled`) or `throttled` (WARN; reason: the limit reached, `user_and_address`, `user` or `address`)."
            }
            Event::RefreshReuseDetected => {
                "WARN. A spent refresh token presented again outside the grace window; outcome `session_ended` (the session and its access tokens are revoked)."
            }
            Event::SessionEnded => {
                "A session ended; reason `revoked` (RFC 7009 `/revoke`), `logout`, `by_user` (`DELETE /sessions/{sid}`) or `by_admin`."
            }
            Event::OtherSessionsEnded => {
                "\"Sign out everywhere else\": `count` sessions ended (at least one; also when the request then failed part-way), `sid` the one kept."
            }
            Event::AccessTokenRevoked => {
                "An access token revoked by its `jti` (RFC 7009); `sid` is its session."
            }
            Event::UserSessionsRevoked => {
                "Every session and access token of a user ended in one write; reason: what took something away (`password`, `disabled`, `scopes` — some removed —, `revoke_all`, `removed`)."
            }
            Event::UserCreated => "A user created; reason: its scopes.",
            Event::UserChanged => {
                "A user changed; reason lists what (`password`, `scopes`, `disabled`, `enabled`, `revoke_all`)."
            }
            Event::UserRemoved => "A user removed (with a `user_sessions_revoked`).",
            Event::AdminRefused => {
                "WARN. A valid token without the `admin` scope at an admin route (reason: the route); outcome `refused`."
            }
            Event::ClientRegistered => {
                "A client registered (`client_id`); reason: `public` or `confidential`."
            }
            Event::ClientSecretRotated => {
                "A confidential client got a new secret (`client_id`); reason: how long the previous one still works (`overlap <seconds>`)."
            }
            Event::ClientRemoved => {
                "A client removed (`client_id`), its client-credentials tokens revoked."
            }
            Event::ClientAuthenticationFailed => {
                "WARN. Client authentication failed (401 `invalid_client`); `client_id` only when such a client exists (an unknown one may be a secret pasted into the wrong field); reason `unknown_client`, `wrong_secret`, `secret_missing` or `public_with_secret`."
            }
            Event::SigningKeyChanged => {
                "The signing-key registry changed (a rotation step or an emergency retirement), one record per change; reason e.g. `created pending key <kid>`, `promoted <kid> to active`, `retired <kid> (was active)`."
            }
            Event::SigningKeyEmergencyRetirement => {
                "WARN. An emergency retirement was asked for (reason: the kid); outcome `succeeded` or `failed` (recorded either way: a failed one may have destroyed the key before the registry write failed)."
            }
        }
    }

    /// Signs of an attack are warnings; the rest is information.
    fn is_warning(self, outcome: &str) -> bool {
        matches!(
            self,
            Event::RefreshReuseDetected
                | Event::AdminRefused
                | Event::ClientAuthenticationFailed
                | Event::SigningKeyEmergencyRetirement
        ) || (self == Event::Login && outcome != "succeeded")
    }
}

/// The README's table of audit events, rendered from [`Event`].
pub fn readme_table() -> String {
    let mut table = "| `event` | When, outcomes, reasons |\n|---|---|\n".to_owned();
    for event in Event::ALL {
        table += &format!("| `{}` | {} |\n", event.name(), event.describe());
    }
    table
}

/// One audit record, built with the fields known where the event happens. Holds no
/// secret by construction: each field is an identifier or a fixed word.
#[derive(Debug, Clone)]
pub struct Record<'a> {
    event: Event,
    outcome: &'static str,
    reason: Option<&'a str>,
    sub: Option<&'a str>,
    username: Option<&'a str>,
    sid: Option<&'a str>,
    client_id: Option<&'a str>,
    count: Option<u64>,
}

impl<'a> Record<'a> {
    pub fn new(event: Event, outcome: &'static str) -> Self {
        Self {
            event,
            outcome,
            reason: None,
            sub: None,
            username: None,
            sid: None,
            client_id: None,
            count: None,
        }
    }

    pub fn reason(mut self, reason: impl Field<'a>) -> Self {
        self.reason = reason.field();
        self
    }

    pub fn subject(mut self, sub: impl Field<'a>) -> Self {
        self.sub = sub.field();
        self
    }

    pub fn username(mut self, username: impl Field<'a>) -> Self {
        self.username = username.field();
        self
    }

    pub fn sid(mut self, sid: impl Field<'a>) -> Self {
        self.sid = sid.field();
        self
    }

    pub fn client_id(mut self, client_id: impl Field<'a>) -> Self {
        self.client_id = client_id.field();
        self
    }

    pub fn count(mut self, count: u64) -> Self {
        self.count = Some(count);
        self
    }

    /// Writes the record (INFO, or WARN for signs of an attack).
    pub fn emit(self) {
        let event = self.event;
        let context = CONTEXT.try_with(|c| {
            (
                c.request_id.clone(),
                c.source_ip.clone(),
                c.user_agent.clone(),
                c.actor(),
            )
        });
        let (request_id, source_ip, user_agent, actor) = context.unwrap_or_else(|_| {
            let actor = PROCESS_ACTOR.get().map(|actor| actor.to_string());
            (None, None, None, actor)
        });
        macro_rules! record {
            ($level:expr) => {
                tracing::event!(
                    target: TARGET,
                    $level,
                    event = event.name(),
                    outcome = self.outcome,
                    reason = self.reason,
                    sub = self.sub,
                    username = self.username,
                    sid = self.sid,
                    client_id = self.client_id,
                    count = self.count,
                    request_id = request_id.as_deref(),
                    source_ip = source_ip.as_deref(),
                    user_agent = user_agent.as_deref(),
                    actor = actor.as_deref(),
                )
            };
        }
        if event.is_warning(self.outcome) {
            record!(tracing::Level::WARN);
        } else {
            record!(tracing::Level::INFO);
        }
    }
}

/// A value of a text field of a [`Record`]: a string, or an optional one (absent: not
/// written).
pub trait Field<'a> {
    fn field(self) -> Option<&'a str>;
}

impl<'a> Field<'a> for &'a str {
    fn field(self) -> Option<&'a str> {
        Some(self)
    }
}

impl<'a> Field<'a> for &'a String {
    fn field(self) -> Option<&'a str> {
        Some(self.as_str())
    }
}

impl<'a> Field<'a> for Option<&'a str> {
    fn field(self) -> Option<&'a str> {
        self
    }
}

/// Where the work in progress came from: set once at the edge for the task that does it
/// ([`in_context`]), read by every record the task emits. A task-local, not a tracing
/// span: a span's registry and field formatting would be paid on every request, and most
/// requests emit no record; this costs a few small copies.
#[derive(Debug, Default)]
pub struct Context {
    request_id: Option<String>,
    source_ip: Option<String>,
    user_agent: Option<String>,
    actor: std::sync::Mutex<Option<String>>,
}

impl Context {
    /// An HTTP request's: its id and the device it came from.
    pub fn request(request_id: String, device: &Device) -> Self {
        Self {
            request_id: Some(request_id),
            source_ip: device.source_ip.clone(),
            user_agent: device
                .user_agent
                .as_deref()
                .map(|ua| truncated(ua).to_owned()),
            actor: Default::default(),
        }
    }

    /// Work no HTTP request asked for, by `actor` (the schedule, the custom resource).
    pub fn acting(actor: &str) -> Self {
        Self {
            actor: std::sync::Mutex::new(Some(actor.to_owned())),
            ..Self::default()
        }
    }

    fn actor(&self) -> Option<String> {
        self.actor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

tokio::task_local! {
    static CONTEXT: Context;
}

/// Runs `work` with `context` as its audit context.
pub async fn in_context<F: std::future::Future>(context: Context, work: F) -> F::Output {
    CONTEXT.scope(context, work).await
}

/// The actor of records made outside any context in this process (the CLI's `cli`).
static PROCESS_ACTOR: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Names the actor of every record this process makes outside a context (once).
pub fn set_process_actor(actor: &'static str) {
    let _ = PROCESS_ACTOR.set(actor);
}

/// Names the verified caller of the current request (its bearer token's `sub`).
pub fn record_actor(sub: &str) {
    let _ = CONTEXT.try_with(|context| {
        *context
            .actor
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(sub.to_owned());
    });
}

/// The current request's id, if the work in progress is a request's.
pub fn request_id() -> Option<String> {
    CONTEXT
        .try_with(|context| context.request_id.clone())
        .ok()
        .flatten()
}

/// A user agent as the audit trail keeps it: at most this many characters.
pub const MAX_USER_AGENT_CHARS: usize = 120;

fn truncated(user_agent: &str) -> &str {
    match user_agent.char_indices().nth(MAX_USER_AGENT_CHARS) {
        Some((end, _)) => &user_agent[..end],
        None => user_agent,
    }
}
