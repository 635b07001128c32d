//! Token introspection (RFC 7662) for resource servers that cannot verify our JWTs
//! themselves, or want the revocation answer without reading our tables: the same checks
//! as the authorizer for an access token ([`TokenService::authorize`]: signature, times,
//! revocation), and for a refresh token the checks a refresh makes before rotating (its
//! session live, this token the current one, no user-wide revocation, not idle too long).
//!
//! Introspection is read-only: a spent refresh token is inactive here, and presenting it to
//! introspection is not a reuse (only a refresh that presents it ends the session).
//!
//! Who sees what: the caller is an authenticated confidential client (the HTTP layer
//! checks). It sees the claims of tokens issued to itself, or of any token when it may
//! introspect (`may_introspect`); any other token, like an expired, revoked, malformed or
//! unknown one, is `{"active": false}` and nothing else (section 2.2), so an answer never
//! tells a client more than that about someone else's token. A dependency that is down is
//! an error (503), never `active: false` taken for a verdict.

use serde::Serialize;

use super::TokenService;
use crate::error::Error;
use crate::refresh::RefreshToken;
use crate::secrets::constant_time_eq;
use crate::store::Client;
use crate::token::AccessClaims;

/// An introspection answer: `{"active": false}`, or `active: true` with the token's claims.
/// Holds identifiers only, never a token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Introspection {
    pub active: bool,
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub token: Option<ActiveToken>,
}

/// The claims of an active token (RFC 7662 section 2.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveToken {
    /// `access_token` or `refresh_token`.
    pub token_use: &'static str,
    /// `Bearer` for an access token (RFC 6749 section 5.1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    pub sub: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub scope: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    pub iss: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    pub sid: String,
}

impl ActiveToken {
    fn of_access_token(claims: AccessClaims) -> Self {
        Self {
            token_use: "access_token",
            token_type: Some("Bearer"),
            sub: claims.sub,
            client_id: claims.client_id,
            scope: claims.scope,
            exp: claims.exp,
            iat: claims.iat,
            nbf: Some(claims.nbf),
            jti: Some(claims.jti),
            iss: claims.iss,
            aud: Some(claims.aud),
            sid: claims.sid,
        }
    }
}

impl TokenService {
    /// Introspects `token` for `caller` (see the module doc).
    pub async fn introspect(&self, token: &str, caller: &Client) -> Result<Introspection, Error> {
        let active = match RefreshToken::parse(token) {
            Some(refresh) => self.live_refresh_token(&refresh).await?,
            None => match self.authorize(token).await {
                Ok(claims) => Some(ActiveToken::of_access_token(claims)),
                Err(error) if error.private_detail().is_some() => return Err(error),
                Err(_) => None,
            },
        };
        let visible = active.filter(|token| {
            caller.may_introspect || token.client_id.as_deref() == Some(caller.id.as_str())
        });
        Ok(Introspection {
            active: visible.is_some(),
            token: visible,
        })
    }

    /// The claims of `presented` if a refresh would accept it now: its session live and
    /// not idle too long, it the session's current token (a spent one, even within the
    /// grace window, is not active), no user-wide revocation covering the session.
    async fn live_refresh_token(
        &self,
        presented: &RefreshToken,
    ) -> Result<Option<ActiveToken>, Error> {
        let Some(session) = self
            .deps
            .sessions
            .find_session(presented.session_id())
            .await?
        else {
            return Ok(None);
        };
        let now_ms = self.deps.clock.now_ms();
        let idle = self.config.refresh_idle_secs;
        let live = presented.is_genuine(&session.reuse_key)
            && !session.ended
            && session.expires_at > now_ms / 1000
            && presented.generation() == session.generation
            && constant_time_eq(&presented.hash(), &session.current_hash)
            && (idle == 0 || now_ms.saturating_sub(session.last_used_ms) <= idle * 1000);
        if !live || self.user_revocation_covers(&session).await? {
            return Ok(None);
        }
        let issued_ms = session
            .last_rotation
            .as_ref()
            .map_or(session.created_ms, |rotation| rotation.at_ms);
        // It stops working at the session's end, or sooner when left idle.
        let idle_end = (idle > 0).then(|| session.last_used_ms / 1000 + idle);
        let exp = idle_end.map_or(session.expires_at, |end| end.min(session.expires_at));
        Ok(Some(ActiveToken {
            token_use: "refresh_token",
            token_type: None,
            sub: session.user_id,
            client_id: session.client_id,
            scope: session.scope,
            exp,
            iat: issued_ms / 1000,
            nbf: None,
            jti: None,
            iss: self.issuer.clone(),
            aud: None,
            sid: session.id,
        }))
    }
}
