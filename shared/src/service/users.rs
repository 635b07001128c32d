//! User administration: create, show, list, change (password, scopes, disabled), remove.
//! For trusted callers only — the admin routes check the admin scope before they call in
//! (see [`crate::http::routes`]), the CLI runs with the operator's AWS credentials.
//!
//! The rule every change follows: **a change that reduces what a user may do ends their
//! sessions in the same write.** Every change bumps the user record's version; disabling,
//! a new password, a scope taken away, removal and "revoke all sessions" are written
//! together with a user-wide revocation entry `below_version` = the new version (one
//! DynamoDB transaction; one lock in memory). Sessions carry the version they were made
//! under, and access tokens carry it as `uv`: after the change answers, no refresh mints a
//! token for a session of an earlier version and those access tokens are refused (the same
//! entry the authorizer reads). A login that checked the password against the old record
//! cannot slip a session in: its session is written only if the user record still has the
//! version it read. No clock decides any of this. Changes that only add (a scope,
//! enabling) take effect at the next login.

use serde::Serialize;

use super::{TokenService, check_username};
use crate::audit::{Event, Record};
use crate::config::{ACCESS_TTL_MAX_SECS, BLOCKLIST_MARGIN_SECS, REFRESH_TTL_MAX_SECS};
use crate::error::Error;
use crate::metrics::{self, Count};
use crate::passwords::MAX_PASSWORD_BYTES;
use crate::secrets::{b64url, random_bytes};
use crate::store::{Revocation, RevocationKey, SaveOutcome, User};

/// The shortest password accepted when one is set: NIST SP 800-63B-4 (section 3.1.1.2)
/// asks for at least 15 characters when the password is the only authentication factor,
/// as it is here. No composition rules (the same section forbids them). Logins are not
/// checked against it: a wrong password is just wrong.
pub const MIN_PASSWORD_CHARS: usize = 15;
/// The most scopes one user may hold, and the longest scope name.
pub const MAX_SCOPES: usize = 32;
pub const MAX_SCOPE_CHARS: usize = 64;
/// The default and largest page of `list_users`.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 200;
/// How often a change is re-applied when another change of the same user won the race.
const MAX_CHANGE_ATTEMPTS: usize = 4;

/// A user as the admin routes and the CLI show it: never the password hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserView {
    pub username: String,
    /// The `sub` of the user's tokens.
    pub sub: String,
    pub scopes: Vec<String>,
    pub disabled: bool,
    /// Epoch seconds.
    pub created_at: u64,
}

impl From<&User> for UserView {
    fn from(user: &User) -> Self {
        Self {
            username: user.username.clone(),
            sub: user.id.clone(),
            scopes: user.scopes.clone(),
            disabled: user.disabled,
            created_at: user.created_ms / 1000,
        }
    }
}

/// One page of the user list; `next_cursor` continues it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserList {
    pub users: Vec<UserView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What to change of a user; `None` leaves that part as it is. Holds a password: no Debug.
#[derive(Default)]
pub struct UserChange {
    pub password: Option<String>,
    pub scopes: Option<Vec<String>>,
    pub disabled: Option<bool>,
    /// End every session even if nothing else changes (the admin "revoke user" route).
    pub end_sessions: bool,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub user: UserView,
    /// Whether the user's sessions were ended (the change reduced what the user may do).
    pub sessions_ended: bool,
}

impl TokenService {
    /// Creates a user; `Conflict` if the username is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        scopes: Vec<String>,
    ) -> Result<UserView, Error> {
        check_username(username)?;
        check_new_password(password)?;
        let scopes = check_scopes(scopes)?;
        let user = User {
            id: b64url(&random_bytes::<16>()),
            username: username.to_owned(),
            password_hash: self.hash_password(password).await?,
            scopes,
            disabled: false,
            created_ms: self.deps.clock.now_ms(),
            version: 1,
        };
        match self.deps.users.create_user(&user).await? {
            SaveOutcome::Saved => {
                Record::new(Event::UserCreated, "succeeded")
                    .subject(&user.id)
                    .username(&user.username)
                    .reason(&user.scopes.join(" "))
                    .emit();
                Ok(UserView::from(&user))
            }
            SaveOutcome::Conflict => Err(Error::Conflict(format!(
                "a user named {username:?} exists already"
            ))),
        }
    }

    pub async fn user(&self, username: &str) -> Result<UserView, Error> {
        Ok(UserView::from(&self.existing_user(username).await?))
    }

    /// A page of users. `cursor` is a previous page's `next_cursor`; `limit` defaults to
    /// [`DEFAULT_PAGE`] and is at most [`MAX_PAGE`]. On DynamoDB a page is one bounded Scan
    /// request (it reads at most `limit` items; a page may come back short, even empty,
    /// with a cursor: follow the cursor until there is none).
    pub async fn list_users(
        &self,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<UserList, Error> {
        let limit = limit.unwrap_or(DEFAULT_PAGE);
        if !(1..=MAX_PAGE).contains(&limit) {
            return Err(Error::invalid_request(format!(
                "limit must be 1 to {MAX_PAGE}"
            )));
        }
        let after = match cursor {
            None => None,
            Some(cursor) => Some(
                crate::secrets::b64url_decode(cursor)
                    .and_then(|bytes| String::from_utf8(bytes).ok())
                    .filter(|name| check_username(name).is_ok())
                    .ok_or_else(|| Error::invalid_request("cursor is not one this API gave"))?,
            ),
        };
        let page = self.deps.users.list_users(after.as_deref(), limit).await?;
        Ok(UserList {
            users: page.users.iter().map(UserView::from).collect(),
            next_cursor: page.next.map(|name| b64url(name.as_bytes())),
        })
    }

    /// Changes a user; ends their sessions in the same write when the change takes
    /// something away (see the module docs).
    pub async fn change_user(&self, username: &str, change: UserChange) -> Result<Changed, Error> {
        check_username(username)?;
        if let Some(password) = &change.password {
            check_new_password(password)?;
        }
        let scopes = change.scopes.map(check_scopes).transpose()?;
        let password_hash = match &change.password {
            Some(password) => Some(self.hash_password(password).await?),
            None => None,
        };
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let stored = self.existing_user(username).await?;
            let mut updated = stored.clone();
            if let Some(hash) = &password_hash {
                updated.password_hash = hash.clone();
            }
            if let Some(scopes) = &scopes {
                updated.scopes = scopes.clone();
            }
            if let Some(disabled) = change.disabled {
                updated.disabled = disabled;
            }
            // What changes, and whether it takes something away.
            let scopes_removed = stored.scopes.iter().any(|s| !updated.scopes.contains(s));
            let changes = [
                ("password", password_hash.is_some(), true),
                ("scopes", updated.scopes != stored.scopes, scopes_removed),
                ("disabled", updated.disabled && !stored.disabled, true),
                ("enabled", stored.disabled && !updated.disabled, false),
                ("revoke_all", change.end_sessions, true),
            ];
            let reduces = changes.iter().any(|(_, changed, takes)| *changed && *takes);
            if updated == stored && !reduces {
                return Ok(Changed {
                    user: UserView::from(&stored),
                    sessions_ended: false,
                });
            }
            updated.version = next_version(&stored)?;
            let ending = reduces.then(|| self.user_wide_revocation(&updated));
            match self
                .deps
                .users
                .update_user(&updated, ending.as_ref())
                .await?
            {
                SaveOutcome::Saved => {
                    let list = |reducing_only: bool| {
                        changes
                            .iter()
                            .filter(|(_, changed, takes)| *changed && (*takes || !reducing_only))
                            .map(|(name, _, _)| *name)
                            .collect::<Vec<_>>()
                            .join(",")
                    };
                    let record = |event, reason: &str| {
                        Record::new(event, "succeeded")
                            .subject(&updated.id)
                            .username(&updated.username)
                            .reason(reason)
                            .emit()
                    };
                    record(Event::UserChanged, &list(false));
                    if reduces {
                        record(Event::UserSessionsRevoked, &list(true));
                        metrics::count(Count::RevokedUser);
                    }
                    return Ok(Changed {
                        user: UserView::from(&updated),
                        sessions_ended: reduces,
                    });
                }
                SaveOutcome::Conflict => continue,
            }
        }
        Err(Error::unavailable(
            "the user kept changing under this request; retry",
            "user change lost the race repeatedly",
        ))
    }

    /// Removes a user and ends their sessions in the same write.
    pub async fn remove_user(&self, username: &str) -> Result<(), Error> {
        check_username(username)?;
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let stored = self.existing_user(username).await?;
            // Every session so far was made under a version up to the stored one.
            let ending = self.user_wide_revocation(&User {
                version: next_version(&stored)?,
                ..stored.clone()
            });
            match self.deps.users.delete_user(&stored, &ending).await? {
                SaveOutcome::Saved => {
                    for event in [Event::UserRemoved, Event::UserSessionsRevoked] {
                        Record::new(event, "succeeded")
                            .subject(&stored.id)
                            .username(&stored.username)
                            .reason("removed")
                            .emit();
                    }
                    metrics::count(Count::RevokedUser);
                    return Ok(());
                }
                SaveOutcome::Conflict => continue,
            }
        }
        Err(Error::unavailable(
            "the user kept changing under this request; retry",
            "user removal lost the race repeatedly",
        ))
    }

    /// Creates the user, or sets the password and scopes of an existing one (ending their
    /// sessions if that takes something away) and enables it: `serve --user` (development)
    /// and tests.
    pub async fn put_user(
        &self,
        username: &str,
        password: &str,
        scopes: Vec<String>,
    ) -> Result<UserView, Error> {
        match self.create_user(username, password, scopes.clone()).await {
            Err(Error::Conflict(_)) => {
                let change = UserChange {
                    password: Some(password.to_owned()),
                    scopes: Some(scopes),
                    disabled: Some(false),
                    end_sessions: false,
                };
                Ok(self.change_user(username, change).await?.user)
            }
            other => other,
        }
    }

    pub(super) async fn existing_user(&self, username: &str) -> Result<User, Error> {
        check_username(username)?;
        self.deps
            .users
            .find_user(username)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no user named {username:?}")))
    }

    pub(super) async fn hash_password(&self, password: &str) -> Result<String, Error> {
        let password = password.to_owned();
        self.deps
            .passwords
            .run(move |worker| worker.hash(&password))
            .await?
            .map_err(|e| Error::internal(format!("password hashing failed: {e}")))
    }

    /// The entry that revokes every session of `user` made under an earlier version than
    /// its (new) one, and their access tokens. It must outlive them all: sessions made until
    /// now live at most the longest session lifetime the settings allow (a deploy may have
    /// shortened it since), their tokens a margin beyond.
    fn user_wide_revocation(&self, user: &User) -> Revocation {
        let longest = REFRESH_TTL_MAX_SECS.max(ACCESS_TTL_MAX_SECS);
        Revocation {
            key: RevocationKey::User(user.id.clone()),
            expires_at: self.deps.clock.now_secs() + longest + BLOCKLIST_MARGIN_SECS,
            below_version: user.version,
        }
    }
}

/// The version after the stored one.
fn next_version(stored: &User) -> Result<u64, Error> {
    stored
        .version
        .checked_add(1)
        .ok_or_else(|| Error::internal("a user record's version cannot grow further"))
}

/// A password being set: [`MIN_PASSWORD_CHARS`] to [`MAX_PASSWORD_BYTES`].
pub fn check_new_password(password: &str) -> Result<(), Error> {
    if password.contains('\0') {
        return Err(Error::invalid_request(
            "password must not contain NUL characters",
        ));
    }
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Error::invalid_request(format!(
            "password must be at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Error::invalid_request(format!(
            "password must be at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    Ok(())
}

/// Scope names as RFC 6749 section 3.3 allows them (printable ASCII but space, `"` and
/// `\`), each at most [`MAX_SCOPE_CHARS`], at most [`MAX_SCOPES`] of them; repeats dropped.
pub fn check_scopes(scopes: Vec<String>) -> Result<Vec<String>, Error> {
    let mut kept: Vec<String> = Vec::new();
    for scope in scopes {
        let valid = !scope.is_empty()
            && scope.len() <= MAX_SCOPE_CHARS
            && scope
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\');
        if !valid {
            return Err(Error::invalid_request(format!(
                "a scope is 1 to {MAX_SCOPE_CHARS} printable ASCII characters without space, '\"' or '\\'"
            )));
        }
        if !kept.contains(&scope) {
            kept.push(scope);
        }
    }
    if kept.len() > MAX_SCOPES {
        return Err(Error::invalid_request(format!(
            "a user holds at most {MAX_SCOPES} scopes"
        )));
    }
    Ok(kept)
}
