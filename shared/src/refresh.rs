//! Refresh tokens and session ids.
//!
//! A refresh token is `<session-id>.<generation>.<secret>`: the session id finds the session
//! without a scan; the generation says which rotation of the session it belongs to; the
//! secret is 32 random bytes followed by a 16-byte tag, `HMAC-SHA-256(reuse_key, sid ‖
//! generation ‖ random)`, base64url. The store keeps only SHA-256 of the current secret and
//! the session's `reuse_key`.
//!
//! Why the tag: a spent token presented again is theft (RFC 9700) and must end the session,
//! but a guess with a real session id and a made-up secret must not. The tag tells a
//! genuinely issued old token from a guess, for every past generation, without storing one
//! hash per rotation. Someone holding a dump of the tables can forge only *spent* tokens
//! (and so end a session, which they could do anyway); the current secret's hash is one-way.
//!
//! Grace window: on rotation the successor's secret is sealed (AES-256-GCM) under a key
//! derived (HKDF-SHA-256) from the presented secret, which only its holder has; a retry with
//! the just-spent token opens it and gets the SAME successor.
//!
//! Session ids are 16 bytes: the creation time in milliseconds (48 bits, like UUIDv7) and
//! 80 random bits, base64url. Access tokens carry the session id as `sid`, so a user-wide
//! revocation ("sessions created before T") can be checked from the token alone, with
//! millisecond precision rather than `iat`'s whole seconds.

use std::fmt;

use aws_lc_rs::{aead, hkdf};

use crate::secrets::{b64url, b64url_decode, constant_time_eq, hmac_sha256, random_bytes, sha256};

const RANDOM_LEN: usize = 32;
const TAG_LEN: usize = 16;
const SECRET_LEN: usize = RANDOM_LEN + TAG_LEN;
const SESSION_ID_BYTES: usize = 16;
const NONCE_LEN: usize = 12;
/// Longer than any token we issue; anything longer is refused before parsing.
pub const MAX_REFRESH_TOKEN_LEN: usize = 128;

/// A new session id created at `now_ms`.
pub fn new_session_id(now_ms: u64) -> String {
    let mut bytes = [0u8; SESSION_ID_BYTES];
    bytes[..6].copy_from_slice(&now_ms.to_be_bytes()[2..]);
    bytes[6..].copy_from_slice(&random_bytes::<10>());
    b64url(&bytes)
}

/// When a session id was created, in milliseconds; `None` if it is not one of ours.
pub fn session_created_ms(session_id: &str) -> Option<u64> {
    let bytes = b64url_decode(session_id)?;
    if bytes.len() != SESSION_ID_BYTES {
        return None;
    }
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&bytes[..6]);
    Some(u64::from_be_bytes(ms))
}

/// A fresh per-session key for the reuse tags.
pub fn new_reuse_key() -> [u8; 32] {
    random_bytes()
}

#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken {
    session_id: String,
    generation: u64,
    secret: [u8; SECRET_LEN],
}

impl fmt::Debug for RefreshToken {
    // Never print the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshToken")
            .field("session_id", &self.session_id)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl RefreshToken {
    /// A new token for `generation` of the session.
    pub fn issue(session_id: &str, generation: u64, reuse_key: &[u8; 32]) -> Self {
        let random: [u8; RANDOM_LEN] = random_bytes();
        let mut secret = [0u8; SECRET_LEN];
        secret[..RANDOM_LEN].copy_from_slice(&random);
        secret[RANDOM_LEN..].copy_from_slice(&tag(reuse_key, session_id, generation, &random));
        Self {
            session_id: session_id.to_owned(),
            generation,
            secret,
        }
    }

    /// Parses the text form; `None` for anything that is not shaped like our tokens.
    pub fn parse(text: &str) -> Option<Self> {
        if text.len() > MAX_REFRESH_TOKEN_LEN {
            return None;
        }
        let mut parts = text.split('.');
        let (session_id, generation, secret) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || session_created_ms(session_id).is_none() {
            return None;
        }
        if generation.is_empty()
            || generation.len() > 20
            || !generation.bytes().all(|b| b.is_ascii_digit())
            || (generation.len() > 1 && generation.starts_with('0'))
        {
            return None;
        }
        let generation = generation.parse().ok()?;
        let secret: [u8; SECRET_LEN] = b64url_decode(secret)?.try_into().ok()?;
        Some(Self {
            session_id: session_id.to_owned(),
            generation,
            secret,
        })
    }

    /// The text form handed to the client. It is a credential: never log it.
    pub fn expose(&self) -> String {
        format!(
            "{}.{}.{}",
            self.session_id,
            self.generation,
            b64url(&self.secret)
        )
    }

    pub fn session_id(&self) -> &str {
        &self.session_id
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// What the store keeps: SHA-256 of the secret.
    pub fn hash(&self) -> [u8; 32] {
        sha256(&self.secret)
    }

    /// Whether this token was issued by us for its session (current or spent), as opposed
    /// to a guess.
    pub fn is_genuine(&self, reuse_key: &[u8; 32]) -> bool {
        let (random, presented_tag) = self.secret.split_at(RANDOM_LEN);
        let expected = tag(reuse_key, &self.session_id, self.generation, random);
        constant_time_eq(presented_tag, &expected)
    }

    /// Seals `successor`'s secret so that only a holder of `self` can open it.
    pub fn seal_successor(&self, successor: &RefreshToken) -> Vec<u8> {
        let nonce_bytes: [u8; NONCE_LEN] = random_bytes();
        let mut sealed = successor.secret.to_vec();
        self.grace_key()
            .seal_in_place_append_tag(
                aead::Nonce::assume_unique_for_key(nonce_bytes),
                aead::Aad::from(self.session_id.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM sealing of 48 bytes cannot fail");
        let mut out = nonce_bytes.to_vec();
        out.extend(sealed);
        out
    }

    /// Opens what [`seal_successor`](Self::seal_successor) sealed with this token; `None` if
    /// this is not the token it was sealed for.
    pub fn open_successor(&self, sealed: &[u8]) -> Option<RefreshToken> {
        if sealed.len() != NONCE_LEN + SECRET_LEN + aead::AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
        let nonce = aead::Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buffer = ciphertext.to_vec();
        let plain = self
            .grace_key()
            .open_in_place(
                nonce,
                aead::Aad::from(self.session_id.as_bytes()),
                &mut buffer,
            )
            .ok()?;
        Some(RefreshToken {
            session_id: self.session_id.clone(),
            generation: self.generation.checked_add(1)?,
            secret: plain.try_into().ok()?,
        })
    }

    fn grace_key(&self) -> aead::LessSafeKey {
        let generation = self.generation.to_be_bytes();
        let info: [&[u8]; 2] = [self.session_id.as_bytes(), &generation];
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"tokenlife grace successor v1")
            .extract(&self.secret);
        let okm = prk
            .expand(&info, &aead::AES_256_GCM)
            .expect("HKDF output of one AES-256 key is within limits");
        aead::LessSafeKey::new(aead::UnboundKey::from(okm))
    }
}

fn tag(reuse_key: &[u8; 32], session_id: &str, generation: u64, random: &[u8]) -> [u8; TAG_LEN] {
    let full = hmac_sha256(
        reuse_key,
        &[
            b"tokenlife refresh v1",
            session_id.as_bytes(),
            &generation.to_be_bytes(),
            random,
        ],
    );
    let mut out = [0u8; TAG_LEN];
    out.copy_from_slice(&full[..TAG_LEN]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_carry_their_creation_time() {
        let id = new_session_id(1_800_000_000_123);
        assert_eq!(id.len(), 22);
        assert_eq!(session_created_ms(&id), Some(1_800_000_000_123));
        assert_ne!(new_session_id(5), new_session_id(5));
        assert_eq!(session_created_ms("not-a-session"), None);
    }

    #[test]
    fn tokens_round_trip_and_have_256_random_bits() {
        let key = new_reuse_key();
        let sid = new_session_id(1);
        let token = RefreshToken::issue(&sid, 7, &key);
        let text = token.expose();
        assert!(text.len() <= MAX_REFRESH_TOKEN_LEN);
        let parsed = RefreshToken::parse(&text).unwrap();
        assert_eq!(parsed, token);
        assert_eq!(parsed.generation(), 7);
        assert!(parsed.is_genuine(&key));
        assert!(!format!("{parsed:?}").contains(text.rsplit('.').next().unwrap()));
    }

    #[test]
    fn guesses_are_not_genuine() {
        let key = new_reuse_key();
        let sid = new_session_id(1);
        let token = RefreshToken::issue(&sid, 3, &key);
        assert!(!token.is_genuine(&new_reuse_key()));
        // Same session, other generation or secret: not genuine.
        let text = token.expose();
        let other_gen = text.replacen(".3.", ".2.", 1);
        assert!(!RefreshToken::parse(&other_gen).unwrap().is_genuine(&key));
        let guess = format!("{sid}.3.{}", b64url(&[7u8; SECRET_LEN]));
        assert!(!RefreshToken::parse(&guess).unwrap().is_genuine(&key));
    }

    #[test]
    fn malformed_tokens_do_not_parse() {
        let sid = new_session_id(1);
        let secret = b64url(&[1u8; SECRET_LEN]);
        for text in [
            String::new(),
            "a.b.c".into(),
            format!("{sid}.1"),
            format!("{sid}.01.{secret}"),
            format!("{sid}.+1.{secret}"),
            format!("{sid}.-1.{secret}"),
            format!("{sid}.99999999999999999999.{secret}"),
            format!("{sid}.1.{secret}.x"),
            format!("{sid}.1.{}", b64url(&[1u8; 47])),
            format!("{sid}.1.{secret}="),
            format!("{sid}.1.{}", "A".repeat(200)),
            format!("{sid}\0.1.{secret}"),
        ] {
            assert!(RefreshToken::parse(&text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn successor_opens_only_with_the_spent_token() {
        let key = new_reuse_key();
        let sid = new_session_id(1);
        let spent = RefreshToken::issue(&sid, 4, &key);
        let successor = RefreshToken::issue(&sid, 5, &key);
        let sealed = spent.seal_successor(&successor);
        assert_eq!(spent.open_successor(&sealed), Some(successor.clone()));
        let stranger = RefreshToken::issue(&sid, 4, &key);
        assert_eq!(stranger.open_successor(&sealed), None);
        let mut flipped = sealed.clone();
        flipped[20] ^= 1;
        assert_eq!(spent.open_successor(&flipped), None);
        // The sealed form does not contain the successor's secret.
        assert!(
            !sealed
                .windows(8)
                .any(|w| successor.secret.windows(8).any(|s| s == w))
        );
    }
}
