//! "Your devices": a user's live sessions — listed newest first with where they were last
//! used from, ended one at a time, or all but the current one. The routes give a user
//! their own sessions (by the `sub` of their access token) and an admin anyone's; a
//! session of another user is "not found", never a hint that it exists.
//!
//! Live means: not ended, not past its absolute end, and not made under a user-record
//! version that a user-wide revocation has since ended (a password change, say).

use serde::Serialize;

use super::TokenService;
use crate::audit;
use crate::error::Error;
use crate::metrics::{self, Count};
use crate::secrets::{b64url, b64url_decode};
use crate::store::{RevocationKey, Session, SessionCursor, SessionSummary};

/// The default and largest page of a session listing.
pub const DEFAULT_SESSION_PAGE: usize = 20;
pub const MAX_SESSION_PAGE: usize = 100;
/// The most sessions one "sign out everywhere else" ends, and the most listing pages it
/// reads: a user with more calls again (the answer says `more`).
pub const MAX_ENDED_AT_ONCE: usize = 200;
const MAX_PAGES_AT_ONCE: usize = 5;

/// A session as its user (or an admin) sees it: never a token or a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionView {
    pub sid: String,
    /// Epoch seconds.
    pub created_at: u64,
    pub last_used_at: u64,
    pub expires_at: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
    /// The session of the access token that asked.
    pub current: bool,
}

/// One page of sessions; `next_cursor` continues it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionList {
    pub sessions: Vec<SessionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

impl TokenService {
    /// A page of `user_id`'s live sessions, newest first; `current` marks the asking one.
    /// One store query, plus one read of the user-wide revocation entry.
    pub async fn list_sessions(
        &self,
        user_id: &str,
        current: Option<&str>,
        cursor: Option<&str>,
        limit: Option<usize>,
    ) -> Result<SessionList, Error> {
        let limit = limit.unwrap_or(DEFAULT_SESSION_PAGE);
        if !(1..=MAX_SESSION_PAGE).contains(&limit) {
            return Err(Error::invalid_request(format!(
                "limit must be 1 to {MAX_SESSION_PAGE}"
            )));
        }
        let after = cursor.map(decode_cursor).transpose()?;
        let below_version = self.user_revoked_below(user_id).await?;
        let page = self
            .deps
            .sessions
            .list_sessions(user_id, after.as_ref(), limit)
            .await?;
        let sessions = page
            .sessions
            .iter()
            .filter(|s| s.user_version >= below_version)
            .map(|s| view(s, current))
            .collect();
        Ok(SessionList {
            sessions,
            next_cursor: page.next.as_ref().map(encode_cursor),
        })
    }

    /// Ends one of `user_id`'s live sessions (and its access tokens). Any other sid — of
    /// another user, ended, unknown — is 404 alike. `reason`: [`audit::BY_USER`] or
    /// [`audit::BY_ADMIN`], for the audit trail.
    pub async fn end_session_of(
        &self,
        user_id: &str,
        sid: &str,
        reason: &'static str,
    ) -> Result<(), Error> {
        let not_found = || Error::NotFound("no such session".into());
        if sid.len() > 64 {
            return Err(not_found());
        }
        let session = self
            .deps
            .sessions
            .find_session(sid)
            .await?
            .ok_or_else(not_found)?;
        if session.user_id != user_id || !self.is_live(&session).await? {
            return Err(not_found());
        }
        self.end_session(&session).await?;
        super::session_ended(&session, reason);
        Ok(())
    }

    /// Ends every live session of `user_id` but `keep` ("sign out everywhere else"): how
    /// many it ended, and whether more are left for another call (at most
    /// [`MAX_ENDED_AT_ONCE`] sessions and a few listing pages per call, so that one request
    /// stays short). One write per session ended, no read.
    pub async fn end_other_sessions(
        &self,
        user_id: &str,
        keep: &str,
    ) -> Result<(usize, bool), Error> {
        let mut ended = 0;
        let outcome = self.end_others(user_id, keep, &mut ended).await;
        // Recorded whatever happened after: the sessions ended so far stay ended.
        if ended > 0 {
            metrics::count_n(Count::RevokedSession, ended as u64);
            audit::Record::new(audit::Event::OtherSessionsEnded, "succeeded")
                .subject(user_id)
                .sid(keep)
                .count(ended as u64)
                .emit();
        }
        outcome.map(|more| (ended, more))
    }

    /// [`Self::end_other_sessions`]' work, counting into `ended`; whether more are left.
    async fn end_others(
        &self,
        user_id: &str,
        keep: &str,
        ended: &mut usize,
    ) -> Result<bool, Error> {
        let below_version = self.user_revoked_below(user_id).await?;
        let mut after: Option<SessionCursor> = None;
        for _ in 0..MAX_PAGES_AT_ONCE {
            let page = self
                .deps
                .sessions
                .list_sessions(user_id, after.as_ref(), MAX_SESSION_PAGE)
                .await?;
            let live = page
                .sessions
                .iter()
                .filter(|s| s.id != keep && s.user_version >= below_version);
            for summary in live {
                if *ended >= MAX_ENDED_AT_ONCE {
                    return Ok(true);
                }
                self.end_session_id(&summary.id).await?;
                *ended += 1;
            }
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(false),
            }
        }
        Ok(true)
    }

    /// The `sub` of user `username` (the admin session routes).
    pub async fn user_id_of(&self, username: &str) -> Result<String, Error> {
        Ok(self.existing_user(username).await?.id)
    }

    async fn is_live(&self, session: &Session) -> Result<bool, Error> {
        Ok(!session.ended
            && session.expires_at > self.deps.clock.now_secs()
            && session.user_version >= self.user_revoked_below(&session.user_id).await?)
    }

    /// The user-record version below which `user_id`'s sessions are revoked (0: none).
    pub(super) async fn user_revoked_below(&self, user_id: &str) -> Result<u64, Error> {
        let now = self.deps.clock.now_secs();
        let entries = self
            .deps
            .sessions
            .find_revocations(&[RevocationKey::User(user_id.to_owned())])
            .await?;
        Ok(entries
            .iter()
            .filter(|e| e.expires_at > now)
            .map(|e| e.below_version)
            .max()
            .unwrap_or(0))
    }
}

fn view(session: &SessionSummary, current: Option<&str>) -> SessionView {
    SessionView {
        sid: session.id.clone(),
        created_at: session.created_ms / 1000,
        last_used_at: session.last_used_ms / 1000,
        expires_at: session.expires_at,
        client_id: session.client_id.clone(),
        user_agent: session.device.user_agent.clone(),
        source_ip: session.device.source_ip.clone(),
        current: current == Some(session.id.as_str()),
    }
}

fn encode_cursor(cursor: &SessionCursor) -> String {
    b64url(format!("{}.{}", cursor.created_ms, cursor.id).as_bytes())
}

fn decode_cursor(text: &str) -> Result<SessionCursor, Error> {
    let bad = || Error::invalid_request("cursor is not one this API gave");
    let bytes = b64url_decode(text)
        .filter(|b| b.len() <= 128)
        .ok_or_else(bad)?;
    let text = String::from_utf8(bytes).map_err(|_| bad())?;
    let (created, id) = text.split_once('.').ok_or_else(bad)?;
    if id.is_empty() {
        return Err(bad());
    }
    Ok(SessionCursor {
        created_ms: created.parse().map_err(|_| bad())?,
        id: id.to_owned(),
    })
}
