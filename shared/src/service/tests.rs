//! Unit tests of the lifecycle logic on the in-memory store, a local signer and a manual
//! clock: rotation, grace window, reuse detection, revocation and user-wide revocation.

use super::*;
use crate::testkit::{Embedded, START_MS, Users, password_of, public_client};

fn assert_invalid_grant<T>(result: Result<T, Error>) {
    match result {
        Err(Error::InvalidGrant(_)) => {}
        Err(other) => panic!("expected invalid_grant, got {other:?}"),
        Ok(_) => panic!("expected invalid_grant, got success"),
    }
}

#[tokio::test]
async fn login_issues_verifiable_tokens() {
    let f = Embedded::start().await;
    f.add_user("alice", &["user", "admin"]).await;
    let grant = f.login("alice").await;
    assert_eq!(grant.token_type, "Bearer");
    assert_eq!(grant.expires_in, 900);
    assert_eq!(grant.scope, "user admin");
    let claims = f.service.authorize(&grant.access_token).await.unwrap();
    assert_eq!(claims.iss, "https://issuer.test");
    assert_eq!(claims.aud, "tokenlife");
    assert_eq!(claims.exp, claims.iat + 900);
    assert_eq!(claims.sid, grant.refresh_token.split('.').next().unwrap());
    // A refresh token is not a bearer token.
    assert!(matches!(
        f.service.authorize(&grant.refresh_token).await,
        Err(Error::InvalidToken(TokenError::Malformed))
    ));
}

#[tokio::test]
async fn wrong_password_unknown_user_and_disabled_user_look_the_same() {
    let f = Embedded::start().await;
    f.add_user("alice", &["user"]).await;
    let attempt =
        |username: &str, password: &str| f.service.login(LoginRequest::new(username, password));
    let wrong = attempt("alice", "nope").await.err().unwrap();
    let unknown = attempt("mallory", "nope").await.err().unwrap();
    assert_eq!(wrong, unknown);
    assert_eq!(wrong, Error::invalid_grant("invalid username or password"));
    let disable = UserChange {
        disabled: Some(true),
        ..UserChange::default()
    };
    f.service.change_user("alice", disable).await.unwrap();
    assert_eq!(
        attempt("alice", &password_of("alice")).await.err().unwrap(),
        wrong
    );
    assert_eq!(f.store.session_count(), 0);
}

#[tokio::test]
async fn scopes_can_be_narrowed_not_widened() {
    let f = Embedded::start().await;
    f.add_user("bob", &["user"]).await;
    let request = |scope: &str| LoginRequest {
        username: "bob".into(),
        password: password_of("bob"),
        client: Some(public_client("cli")),
        scope: Some(scope.into()),
        device: Device::default(),
    };
    assert_eq!(
        f.service.login(request("user")).await.unwrap().scope,
        "user"
    );
    assert!(matches!(
        f.service.login(request("user admin")).await,
        Err(Error::InvalidScope(_))
    ));
}

#[tokio::test]
async fn refresh_rotates_and_spent_tokens_are_reuse() {
    let f = Embedded::start_with(|c| c.refresh_grace_secs = 0).await;
    f.add_user("alice", &["user"]).await;
    let first = f.login("alice").await;
    let second = f.refresh(&first.refresh_token).await.unwrap();
    assert_ne!(second.refresh_token, first.refresh_token);
    let third = f.refresh(&second.refresh_token).await.unwrap();
    f.service.authorize(&third.access_token).await.unwrap();

    // The first token, two generations old, comes back: theft. The session ends...
    let error = f.refresh(&first.refresh_token).await.err().unwrap();
    assert!(error.to_string().contains("already used"), "{error}");
    // ...with its current refresh token and every access token it issued.
    assert_invalid_grant(f.refresh(&third.refresh_token).await);
    for token in [
        &first.access_token,
        &second.access_token,
        &third.access_token,
    ] {
        assert!(matches!(
            f.service.authorize(token).await,
            Err(Error::InvalidToken(TokenError::Revoked))
        ));
    }
}

#[tokio::test]
async fn grace_window_returns_the_same_successor_then_becomes_reuse() {
    let f = Embedded::start_with(|c| c.refresh_grace_secs = 5).await;
    f.add_user("alice", &["user"]).await;
    let first = f.login("alice").await;
    let second = f.refresh(&first.refresh_token).await.unwrap();
    f.clock.advance_secs(3);
    let retry = f.refresh(&first.refresh_token).await.unwrap();
    assert_eq!(retry.refresh_token, second.refresh_token);
    assert_ne!(retry.access_token, second.access_token);
    // The successor still works and rotates normally.
    f.clock.advance_secs(3);
    let third = f.refresh(&second.refresh_token).await.unwrap();
    // Outside the window the spent token is reuse.
    assert_invalid_grant(f.refresh(&first.refresh_token).await);
    assert_invalid_grant(f.refresh(&third.refresh_token).await);
}

#[tokio::test]
async fn just_spent_token_after_the_window_is_reuse() {
    let f = Embedded::start_with(|c| c.refresh_grace_secs = 2).await;
    f.add_user("alice", &["user"]).await;
    let first = f.login("alice").await;
    let second = f.refresh(&first.refresh_token).await.unwrap();
    f.clock.advance_ms(2_001);
    assert_invalid_grant(f.refresh(&first.refresh_token).await);
    assert_invalid_grant(f.refresh(&second.refresh_token).await);
}

#[tokio::test]
async fn guesses_and_garbage_change_nothing() {
    let f = Embedded::start_with(|c| c.refresh_grace_secs = 0).await;
    f.add_user("alice", &["user"]).await;
    let grant = f.login("alice").await;
    let sid = grant.refresh_token.split('.').next().unwrap();
    let secret = crate::secrets::b64url(&[9u8; 48]);
    for guess in [
        format!("{sid}.0.{secret}"),
        format!("{sid}.1.{secret}"),
        format!("{sid}.5.{secret}"),
        "garbage".to_owned(),
        String::new(),
        format!("{}.0.{secret}", crate::refresh::new_session_id(START_MS)),
    ] {
        assert_invalid_grant(f.refresh(&guess).await);
        assert_eq!(
            f.service.revoke(&guess, None).await.unwrap(),
            Revoked::Nothing
        );
    }
    // The real token still works: nothing was revoked by the guesses.
    f.service.authorize(&grant.access_token).await.unwrap();
    f.refresh(&grant.refresh_token).await.unwrap();
}

#[tokio::test]
async fn sessions_end_at_their_absolute_lifetime_and_idle_timeout() {
    let f = Embedded::start_with(|c| {
        c.refresh_ttl_secs = 3600;
        c.refresh_idle_secs = 600;
    })
    .await;
    f.add_user("alice", &["user"]).await;
    let mut token = f.login("alice").await.refresh_token;
    for _ in 0..6 {
        f.clock.advance_secs(500);
        token = f.refresh(&token).await.unwrap().refresh_token;
    }
    f.clock.advance_secs(601); // now past 3600 s in total as well
    assert_invalid_grant(f.refresh(&token).await);

    let token = f.login("alice").await.refresh_token;
    f.clock.advance_secs(601);
    let error = f.refresh(&token).await.err().unwrap();
    assert!(error.to_string().contains("idle"), "{error}");
}

#[tokio::test]
async fn access_tokens_expire() {
    let f = Embedded::start_with(|c| {
        c.access_ttl_secs = 60;
        c.leeway_secs = 0;
    })
    .await;
    f.add_user("alice", &["user"]).await;
    let grant = f.login("alice").await;
    f.clock.advance_secs(59);
    f.service.authorize(&grant.access_token).await.unwrap();
    f.clock.advance_secs(1);
    assert!(matches!(
        f.service.authorize(&grant.access_token).await,
        Err(Error::InvalidToken(TokenError::Expired))
    ));
}

#[tokio::test]
async fn revoking_a_refresh_token_ends_the_session_and_its_access_tokens() {
    let f = Embedded::start().await;
    f.add_user("alice", &["user"]).await;
    let grant = f.login("alice").await;
    let other = f.login("alice").await;
    assert_eq!(
        f.service
            .revoke(&grant.refresh_token, Some("refresh_token"))
            .await
            .unwrap(),
        Revoked::Session
    );
    assert_invalid_grant(f.refresh(&grant.refresh_token).await);
    assert!(f.service.authorize(&grant.access_token).await.is_err());
    // Another session of the same user is untouched.
    f.service.authorize(&other.access_token).await.unwrap();
    // Revoking again is fine and does nothing.
    assert_eq!(
        f.service.revoke(&grant.refresh_token, None).await.unwrap(),
        Revoked::Nothing
    );
}

#[tokio::test]
async fn revoking_an_access_token_blocklists_its_jti_until_exp() {
    let f = Embedded::start_with(|c| c.leeway_secs = 0).await;
    f.add_user("alice", &["user"]).await;
    let grant = f.login("alice").await;
    let sibling = f.refresh(&grant.refresh_token).await.unwrap();
    assert_eq!(
        f.service
            .revoke(&grant.access_token, Some("access_token"))
            .await
            .unwrap(),
        Revoked::AccessToken
    );
    assert!(matches!(
        f.service.authorize(&grant.access_token).await,
        Err(Error::InvalidToken(TokenError::Revoked))
    ));
    // Only that token: the session and its other access tokens live on.
    f.service.authorize(&sibling.access_token).await.unwrap();
    f.refresh(&sibling.refresh_token).await.unwrap();
    // An expired entry is treated as absent even while still stored.
    let entries = f
        .store
        .find_revocations(&[RevocationKey::Token(
            f.service
                .verifier
                .verify_ignoring_time(
                    &f.service.deps.keys.ring().await.unwrap(),
                    &grant.access_token,
                )
                .unwrap()
                .jti,
        )])
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    // The entry outlives the token's exp by any verifier's leeway and clock skew.
    assert_eq!(
        entries[0].expires_at,
        START_MS / 1000 + 900 + crate::config::BLOCKLIST_MARGIN_SECS
    );
}

#[tokio::test]
async fn revoke_user_spares_later_logins() {
    let f = Embedded::start().await;
    f.add_user("alice", &["user"]).await;
    let alice = f.login("alice").await;
    // (That only an admin may do this is checked by the HTTP layer: see
    // `http::tests::admin_routes_need_the_admin_scope`.)
    assert!(matches!(
        f.service.revoke_user("nobody").await,
        Err(Error::NotFound(_))
    ));

    f.service.revoke_user("alice").await.unwrap();
    assert!(f.service.authorize(&alice.access_token).await.is_err());
    assert_invalid_grant(f.refresh(&alice.refresh_token).await);

    // A login one millisecond later, in the same second, works.
    f.clock.advance_ms(1);
    let again = f.login("alice").await;
    f.service.authorize(&again.access_token).await.unwrap();
    f.refresh(&again.refresh_token).await.unwrap();
}

#[tokio::test]
async fn user_revocation_also_stops_the_grace_window() {
    let f = Embedded::start_with(|c| c.refresh_grace_secs = 5).await;
    f.add_user("alice", &["user"]).await;
    let first = f.login("alice").await;
    f.refresh(&first.refresh_token).await.unwrap();
    f.clock.advance_ms(5);
    f.service.revoke_user("alice").await.unwrap();
    assert_invalid_grant(f.refresh(&first.refresh_token).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_rotate_exactly_once() {
    for grace in [0, 5] {
        let f = Embedded::start_with(|c| c.refresh_grace_secs = grace).await;
        f.add_user("alice", &["user"]).await;
        crate::testkit::thirty_concurrent_refreshes_rotate_exactly_once(&f.service, &*f.store)
            .await;
    }
}

#[tokio::test]
async fn stored_sessions_hold_no_usable_token() {
    let f = Embedded::start().await;
    f.add_user("alice", &["user"]).await;
    let first = f.login("alice").await;
    let second = f.refresh(&first.refresh_token).await.unwrap();
    let session = f
        .store
        .find_session(first.refresh_token.split('.').next().unwrap())
        .await
        .unwrap()
        .unwrap();
    let dump = format!("{session:?}");
    for token in [&first.refresh_token, &second.refresh_token] {
        let secret = token.rsplit('.').next().unwrap();
        let raw = crate::secrets::b64url_decode(secret).unwrap();
        assert!(!dump.contains(secret));
        let stored = [
            &session.current_hash[..],
            &session.reuse_key[..],
            &session.last_rotation.as_ref().unwrap().sealed_successor[..],
        ];
        for field in stored {
            assert!(!field.windows(16).any(|w| raw.windows(16).any(|r| r == w)));
        }
    }
}

#[tokio::test]
async fn revoked_answers_are_cached_until_the_token_expires() {
    let f = Embedded::start_with(|c| c.leeway_secs = 0).await;
    f.add_user("alice", &["user"]).await;
    let grant = f.login("alice").await;
    f.service.revoke(&grant.access_token, None).await.unwrap();
    assert!(f.service.authorize(&grant.access_token).await.is_err());
    // The process now remembers the answer (no lookup next time) until exp, not after.
    let jti = f
        .service
        .verifier
        .verify_ignoring_time(
            &f.service.deps.keys.ring().await.unwrap(),
            &grant.access_token,
        )
        .unwrap()
        .jti;
    assert!(f.service.revoked.contains(&jti, START_MS / 1000));
    assert!(!f.service.revoked.contains(&jti, START_MS / 1000 + 900));
    let other = f.login("alice").await;
    f.service.authorize(&other.access_token).await.unwrap();
}

#[tokio::test]
async fn reuse_is_detected_whatever_else_the_request_says() {
    let f = Embedded::start_with(|c| c.refresh_grace_secs = 0).await;
    f.add_user("alice", &["user"]).await;
    let first = f.login("alice").await;
    let second = f.refresh(&first.refresh_token).await.unwrap();
    // The thief asks for a scope the session never had: still reuse, the session ends.
    let attempt = f
        .service
        .refresh(RefreshRequest {
            refresh_token: first.refresh_token.clone(),
            client: Some(public_client("other-client")),
            scope: Some("admin".into()),
            device: Device::default(),
        })
        .await;
    assert!(matches!(attempt, Err(Error::InvalidGrant(ref d)) if d.contains("already used")));
    assert_invalid_grant(f.refresh(&second.refresh_token).await);
}

#[tokio::test]
async fn a_session_bound_to_a_client_refreshes_only_for_that_client() {
    let f = Embedded::start().await;
    f.add_user("alice", &["user"]).await;
    let grant = f
        .service
        .login(LoginRequest {
            client: Some(public_client("app")),
            ..LoginRequest::new("alice", password_of("alice"))
        })
        .await
        .unwrap();
    let with = |client_id: Option<&str>| RefreshRequest {
        client: client_id.map(public_client),
        ..RefreshRequest::new(grant.refresh_token.clone())
    };
    // No client, or another one: refused, and nothing changes (not reuse, not a rotation).
    assert_invalid_grant(f.service.refresh(with(None)).await);
    assert_invalid_grant(f.service.refresh(with(Some("other"))).await);
    f.service.authorize(&grant.access_token).await.unwrap();
    let next = f.service.refresh(with(Some("app"))).await.unwrap();
    assert_eq!(next.refresh_token.split('.').nth(1), Some("1"));
}

/// Issue 11 item 4: a blocklist entry outlives every token it blocks, even when the
/// process that wrote it runs with a shorter access-token lifetime than the one that
/// issued the token (a deploy changed `TOKENLIFE_ACCESS_TTL` in between).
#[tokio::test]
async fn a_session_ended_by_a_process_with_a_shorter_access_ttl_stays_revoked() {
    let f = Embedded::start_with(|c| {
        c.access_ttl_secs = 3600;
        c.leeway_secs = 0;
    })
    .await;
    f.add_user("alice", &["user"]).await;
    let grant = f.login("alice").await;
    let redeployed = f
        .another_process(|c| {
            c.access_ttl_secs = 900;
            c.leeway_secs = 0;
        })
        .await;
    assert_eq!(
        redeployed.revoke(&grant.refresh_token, None).await.unwrap(),
        Revoked::Session
    );
    // Past the new lifetime, inside the old one: the token must still be refused.
    f.clock.advance_secs(1000);
    assert!(matches!(
        f.service.authorize(&grant.access_token).await,
        Err(Error::InvalidToken(TokenError::Revoked))
    ));
}

/// The cache of verified tokens never outlives the key ring that verified them: after an
/// emergency retirement of the signing key (a new ring), a token this process verified —
/// and would otherwise find in its cache — is refused at once.
#[tokio::test]
async fn a_cached_verification_does_not_outlive_its_key() {
    // A key cache that outlives the access token, so that the expiry below is checked on
    // a cache hit (same ring), not after a reload.
    let f = Embedded::start_with(|c| c.key_cache_ttl_secs = 3600).await;
    f.add_user("alice", &["user"]).await;
    let grant = f.login("alice").await;
    // Verified twice (the cache then holds its claims), the third presentation from it.
    for _ in 0..3 {
        f.service.authorize(&grant.access_token).await.unwrap();
    }
    let keys = f.service.list_keys().await.unwrap();
    let active = keys.iter().find(|k| k.state.name() == "active").unwrap();
    f.service.retire_key(&active.kid).await.unwrap();
    assert!(matches!(
        f.service.authorize(&grant.access_token).await,
        Err(Error::InvalidToken(TokenError::UnknownKey))
    ));
    // And the cache keeps checking the times: an expired token is refused though cached
    // (verified twice: the cache holds its claims).
    let fresh = f.login("alice").await;
    f.service.authorize(&fresh.access_token).await.unwrap();
    f.service.authorize(&fresh.access_token).await.unwrap();
    f.clock
        .advance_secs(f.service.config().access_ttl_secs + f.service.config().leeway_secs + 1);
    assert!(matches!(
        f.service.authorize(&fresh.access_token).await,
        Err(Error::InvalidToken(TokenError::Expired))
    ));
}

/// A cached verification is only ever used for the very bytes that were verified: after a
/// token is in the cache, the same token with its claims or signature altered is refused.
#[tokio::test]
async fn the_cache_of_verified_tokens_never_accepts_other_bytes() {
    let f = Embedded::start().await;
    f.add_user("alice", &["user"]).await;
    let token = f.login("alice").await.access_token;
    for _ in 0..3 {
        f.service.authorize(&token).await.unwrap();
    }
    let (header, rest) = token.split_once('.').unwrap();
    let (payload, signature) = rest.split_once('.').unwrap();
    let mut claims: serde_json::Value =
        serde_json::from_slice(&crate::secrets::b64url_decode(payload).unwrap()).unwrap();
    claims["scope"] = "user admin".into();
    let raised = format!(
        "{header}.{}.{signature}",
        crate::secrets::b64url(claims.to_string().as_bytes())
    );
    let mut flipped = token.clone().into_bytes();
    let last = flipped.len() - 2;
    flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    for forged in [raised, flipped, format!("{token} "), format!("{token}.")] {
        assert!(f.service.authorize(&forged).await.is_err(), "{forged}");
    }
    f.service.authorize(&token).await.unwrap();
}
