//! Access tokens: the RFC 9068 claims, signing through a [`Signer`](crate::keys::Signer),
//! and verification (aws-lc-rs, keys parsed once per key ring).
//!
//! Verification order: size and shape, header (`typ` must be `at+jwt`, `kid` must be a
//! published key, `alg` must be that key's algorithm), signature, `iss`/`aud`, then times
//! (`exp`, `nbf`, `iat` against our [`Clock`](crate::clock::Clock) with a leeway). The
//! revocation check comes after, in the service, because it needs the store.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::keys::{KeyError, KeyRing};
use crate::secrets::b64url;

/// The JOSE `typ` of access tokens (RFC 9068 section 2.1).
pub const ACCESS_TOKEN_TYPE: &str = "at+jwt";
/// Longest access token accepted for verification.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub iat: u64,
    pub nbf: u64,
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    pub scope: String,
    pub sid: String,
    /// The version of the user record the token's session was made under: a user-wide
    /// revocation (a change that took something away) refuses tokens of earlier versions.
    /// Absent in tokens of older tokenlife releases (read as 0).
    #[serde(default)]
    pub uv: u64,
}

impl AccessClaims {
    pub fn has_scope(&self, wanted: &str) -> bool {
        self.scope.split(' ').any(|s| s == wanted)
    }
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Signs `claims` with the ring's active key: `header.claims.signature`, base64url.
pub async fn sign_access_token(keys: &KeyRing, claims: &AccessClaims) -> Result<String, KeyError> {
    let (signer, kid) = keys.signer()?;
    let header = Header {
        alg: signer.algorithm().name(),
        typ: ACCESS_TOKEN_TYPE,
        kid,
    };
    let header = serde_json::to_vec(&header).map_err(|e| KeyError::Invalid(e.to_string()))?;
    let claims = serde_json::to_vec(claims).map_err(|e| KeyError::Invalid(e.to_string()))?;
    let mut token = format!("{}.{}", b64url(&header), b64url(&claims));
    let signature = signer.sign(token.as_bytes()).await?;
    token.push('.');
    token.push_str(&b64url(&signature));
    Ok(token)
}

/// Why an access token was refused. The descriptions are safe to show the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token was presented")]
    Missing,
    #[error("the token is too large")]
    TooLarge,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is not an access token (typ must be at+jwt)")]
    WrongType,
    #[error("the token was signed by an unknown key")]
    UnknownKey,
    #[error("the token's algorithm does not match its key")]
    WrongAlgorithm,
    #[error("the token's signature is invalid")]
    BadSignature,
    #[error("the token was issued by someone else")]
    WrongIssuer,
    #[error("the token is for another audience")]
    WrongAudience,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has been revoked")]
    Revoked,
}

/// The JOSE header members we read; anything else is ignored, except `crit` (we support no
/// extensions, so a token that marks one critical is refused, RFC 7515 section 4.1.11).
///
/// Borrowed from the decoded bytes: a member with a JSON escape in it does not parse (the
/// token is malformed). We never write one, and a `kid` or `alg` that needs escaping names
/// no key of ours.
#[derive(Deserialize)]
struct JoseHeader<'a> {
    alg: &'a str,
    #[serde(default)]
    typ: Option<&'a str>,
    #[serde(default)]
    kid: Option<&'a str>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

/// Verifies access tokens against a [`KeyRing`]: our counterpart of jsonwebtoken's
/// `Validation`, done in one pass (header and claims decoded on the stack and parsed once
/// each, the header borrowed; the signature checked by aws-lc-rs with the key the ring
/// parsed once).
pub struct AccessTokenVerifier {
    issuer: String,
    audience: String,
    leeway_secs: u64,
}

impl AccessTokenVerifier {
    pub fn new(issuer: &str, audience: &str, leeway_secs: u64) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            leeway_secs,
        }
    }

    /// Signature, type, issuer, audience and times; not revocation.
    pub fn verify(
        &self,
        keys: &KeyRing,
        token: &str,
        now_secs: u64,
    ) -> Result<AccessClaims, TokenError> {
        let claims = self.verify_ignoring_time(keys, token)?;
        self.check_times(&claims, now_secs)?;
        Ok(claims)
    }

    /// The time checks of [`Self::verify`] (`exp`, `nbf`, `iat`, with the leeway), for
    /// claims whose signature and the rest were verified already.
    pub fn check_times(&self, claims: &AccessClaims, now_secs: u64) -> Result<(), TokenError> {
        let leeway = self.leeway_secs;
        if claims.exp.saturating_add(leeway) <= now_secs {
            return Err(TokenError::Expired);
        }
        if claims.nbf > now_secs.saturating_add(leeway)
            || claims.iat > now_secs.saturating_add(leeway)
        {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    /// Everything but the times: used by revocation, which accepts tokens that have expired.
    pub fn verify_ignoring_time(
        &self,
        keys: &KeyRing,
        token: &str,
    ) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge);
        }
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let key = with_decoded(header, |bytes| {
            let header: JoseHeader =
                serde_json::from_slice(bytes).map_err(|_| TokenError::Malformed)?;
            let typ_ok = header.typ.is_some_and(|t| {
                t.eq_ignore_ascii_case(ACCESS_TOKEN_TYPE)
                    || t.eq_ignore_ascii_case("application/at+jwt")
            });
            if !typ_ok {
                return Err(TokenError::WrongType);
            }
            if header.crit.is_some() {
                return Err(TokenError::Malformed);
            }
            let kid = header.kid.ok_or(TokenError::UnknownKey)?;
            let key = keys.verification_key(kid).ok_or(TokenError::UnknownKey)?;
            // The algorithm comes from the published key, never from the token's header.
            if header.alg != key.algorithm.name() {
                return Err(TokenError::WrongAlgorithm);
            }
            Ok(key)
        })?;
        let signing_input = &token[..header_and_payload_len(token)];
        // Decoded on the stack: RSA signatures up to 4096 bits (the keys we publish are
        // 2048), ES256's 64 bytes.
        let mut signature_bytes = [0u8; 512];
        let length = URL_SAFE_NO_PAD
            .decode_slice(signature, &mut signature_bytes)
            .map_err(|_| TokenError::Malformed)?;
        if !key.verifies(signing_input.as_bytes(), &signature_bytes[..length]) {
            return Err(TokenError::BadSignature);
        }
        let claims: AccessClaims = with_decoded(payload, |bytes| {
            serde_json::from_slice(bytes).map_err(|_| TokenError::Malformed)
        })?;
        if claims.iss != self.issuer {
            return Err(TokenError::WrongIssuer);
        }
        if claims.aud != self.audience {
            return Err(TokenError::WrongAudience);
        }
        Ok(claims)
    }
}

/// The `kid` a token's header names, if it has a readable header with one.
pub fn header_kid(token: &str) -> Option<String> {
    if token.len() > MAX_TOKEN_BYTES {
        return None;
    }
    with_decoded(token.split('.').next()?, |bytes| {
        let header: JoseHeader =
            serde_json::from_slice(bytes).map_err(|_| TokenError::Malformed)?;
        Ok(header.kid.map(str::to_owned))
    })
    .ok()
    .flatten()
}

/// Length of `header.payload` (the JWS signing input) in a three-part token.
fn header_and_payload_len(token: &str) -> usize {
    token.rfind('.').unwrap_or(0)
}

/// Runs `read` on the base64url-decoded `part`: decoded on the stack when it fits (every
/// header, and the claims of any ordinary token), else on the heap.
fn with_decoded<R>(
    part: &str,
    read: impl FnOnce(&[u8]) -> Result<R, TokenError>,
) -> Result<R, TokenError> {
    let mut buffer = [0u8; 1024];
    if base64::decoded_len_estimate(part.len()) <= buffer.len() {
        let length = URL_SAFE_NO_PAD
            .decode_slice(part, &mut buffer)
            .map_err(|_| TokenError::Malformed)?;
        read(&buffer[..length])
    } else {
        let bytes = crate::secrets::b64url_decode(part).ok_or(TokenError::Malformed)?;
        read(&bytes)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::keys::{LocalSigner, SigningAlgorithm};
    use crate::secrets::b64url_decode;

    const NOW: u64 = 1_800_000_000;

    fn claims() -> AccessClaims {
        AccessClaims {
            iss: "https://issuer.test".into(),
            sub: "user-1".into(),
            aud: "api".into(),
            exp: NOW + 900,
            iat: NOW,
            nbf: NOW,
            jti: "jti-1".into(),
            client_id: None,
            scope: "user admin".into(),
            sid: "sid-1".into(),
            uv: 1,
        }
    }

    fn ring(alg: SigningAlgorithm) -> KeyRing {
        KeyRing::single(Arc::new(LocalSigner::generate(alg).unwrap())).unwrap()
    }

    fn verifier() -> AccessTokenVerifier {
        AccessTokenVerifier::new("https://issuer.test", "api", 30)
    }

    fn sign(keys: &KeyRing, claims: &AccessClaims) -> String {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(sign_access_token(keys, claims))
            .unwrap()
    }

    /// Re-encodes a token with a different header or payload (keeping the old signature).
    fn tamper(token: &str, part: usize, edit: impl Fn(&mut serde_json::Value)) -> String {
        let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
        let mut json: serde_json::Value =
            serde_json::from_slice(&b64url_decode(&parts[part]).unwrap()).unwrap();
        edit(&mut json);
        parts[part] = b64url(&serde_json::to_vec(&json).unwrap());
        parts.join(".")
    }

    #[test]
    fn round_trip_es256_and_rs256() {
        for alg in [SigningAlgorithm::Es256, SigningAlgorithm::Rs256] {
            let keys = ring(alg);
            let token = sign(&keys, &claims());
            let header: serde_json::Value =
                serde_json::from_slice(&b64url_decode(token.split('.').next().unwrap()).unwrap())
                    .unwrap();
            assert_eq!(header["typ"], "at+jwt");
            assert_eq!(header["alg"], alg.name());
            assert_eq!(header["kid"], keys.signer().unwrap().1);
            assert_eq!(verifier().verify(&keys, &token, NOW).unwrap(), claims());
        }
    }

    #[test]
    fn times_are_checked_with_leeway() {
        let keys = ring(SigningAlgorithm::Es256);
        let token = sign(&keys, &claims());
        let v = verifier();
        assert!(v.verify(&keys, &token, NOW + 900 + 29).is_ok());
        assert_eq!(
            v.verify(&keys, &token, NOW + 900 + 30),
            Err(TokenError::Expired)
        );
        assert!(v.verify(&keys, &token, NOW - 30).is_ok());
        assert_eq!(
            v.verify(&keys, &token, NOW - 31),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn wrong_issuer_audience_and_foreign_keys_are_refused() {
        let keys = ring(SigningAlgorithm::Es256);
        let mut other = claims();
        other.iss = "https://evil.test".into();
        assert_eq!(
            verifier().verify(&keys, &sign(&keys, &other), NOW),
            Err(TokenError::WrongIssuer)
        );
        let mut other = claims();
        other.aud = "other-api".into();
        assert_eq!(
            verifier().verify(&keys, &sign(&keys, &other), NOW),
            Err(TokenError::WrongAudience)
        );
        let stranger = ring(SigningAlgorithm::Es256);
        assert_eq!(
            verifier().verify(&keys, &sign(&stranger, &claims()), NOW),
            Err(TokenError::UnknownKey)
        );
    }

    #[test]
    fn tampered_tokens_are_refused() {
        let keys = ring(SigningAlgorithm::Es256);
        let token = sign(&keys, &claims());
        let v = verifier();
        let more_scope = tamper(&token, 1, |c| c["scope"] = "superuser".into());
        assert_eq!(
            v.verify(&keys, &more_scope, NOW),
            Err(TokenError::BadSignature)
        );
        let not_at = tamper(&token, 0, |h| h["typ"] = "JWT".into());
        assert_eq!(v.verify(&keys, &not_at, NOW), Err(TokenError::WrongType));
        let no_typ = tamper(&token, 0, |h| {
            h.as_object_mut().unwrap().remove("typ");
        });
        assert_eq!(v.verify(&keys, &no_typ, NOW), Err(TokenError::WrongType));
        let none = tamper(&token, 0, |h| h["alg"] = "none".into());
        assert_eq!(v.verify(&keys, &none, NOW), Err(TokenError::WrongAlgorithm));
        let crit = tamper(&token, 0, |h| h["crit"] = serde_json::json!(["exp"]));
        assert_eq!(v.verify(&keys, &crit, NOW), Err(TokenError::Malformed));
        let no_exp = tamper(&token, 1, |c| {
            c.as_object_mut().unwrap().remove("exp");
        });
        assert!(v.verify(&keys, &no_exp, NOW).is_err());
        let hmac = tamper(&token, 0, |h| h["alg"] = "HS256".into());
        assert_eq!(v.verify(&keys, &hmac, NOW), Err(TokenError::WrongAlgorithm));
        let rs = tamper(&token, 0, |h| h["alg"] = "RS256".into());
        assert_eq!(v.verify(&keys, &rs, NOW), Err(TokenError::WrongAlgorithm));
        let no_kid = tamper(&token, 0, |h| {
            h.as_object_mut().unwrap().remove("kid");
        });
        assert_eq!(v.verify(&keys, &no_kid, NOW), Err(TokenError::UnknownKey));
        let unsigned = format!("{}.", token.rsplit_once('.').unwrap().0);
        assert!(v.verify(&keys, &unsigned, NOW).is_err());
        let wrong_sig_len = format!("{}.AAAA", token.rsplit_once('.').unwrap().0);
        assert!(v.verify(&keys, &wrong_sig_len, NOW).is_err());
        let media_type = tamper(&token, 0, |h| h["typ"] = "application/at+jwt".into());
        assert_eq!(
            v.verify(&keys, &media_type, NOW),
            Err(TokenError::BadSignature),
            "typ accepted, signature checked"
        );
    }

    #[test]
    fn garbage_and_huge_tokens_are_refused() {
        let keys = ring(SigningAlgorithm::Es256);
        let v = verifier();
        for junk in [
            "",
            ".",
            "..",
            "a.b.c",
            "eyJ.eyJ.x",
            "\0\0\0",
            "x.y.z.w",
            "é.é.é",
        ] {
            assert_eq!(
                v.verify(&keys, junk, NOW),
                Err(TokenError::Malformed),
                "{junk:?}"
            );
        }
        let huge = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(v.verify(&keys, &huge, NOW), Err(TokenError::TooLarge));
    }

    /// jsonwebtoken (an independent JWT implementation, on aws-lc too) accepts what we sign
    /// and refuses what we refuse: our own signature check (aws-lc keys parsed once, see
    /// `keys::PublicKey`) agrees with it on genuine and forged tokens of both algorithms.
    #[test]
    fn jsonwebtoken_agrees_with_our_signature_check() {
        for alg in [SigningAlgorithm::Es256, SigningAlgorithm::Rs256] {
            let keys = ring(alg);
            let token = sign(&keys, &claims());
            let jwk = keys.jwks().keys.remove(0);
            let key = match alg {
                SigningAlgorithm::Es256 => jsonwebtoken::DecodingKey::from_ec_components(
                    jwk.x.as_deref().unwrap(),
                    jwk.y.as_deref().unwrap(),
                )
                .unwrap(),
                SigningAlgorithm::Rs256 => jsonwebtoken::DecodingKey::from_rsa_components(
                    jwk.n.as_deref().unwrap(),
                    jwk.e.as_deref().unwrap(),
                )
                .unwrap(),
            };
            let algorithm = match alg {
                SigningAlgorithm::Es256 => jsonwebtoken::Algorithm::ES256,
                SigningAlgorithm::Rs256 => jsonwebtoken::Algorithm::RS256,
            };
            let theirs = |token: &str| {
                let (input, signature) = token.rsplit_once('.').unwrap();
                jsonwebtoken::crypto::verify(signature, input.as_bytes(), &key, algorithm)
                    .unwrap_or(false)
            };
            let ours = |token: &str| verifier().verify_ignoring_time(&keys, token).is_ok();
            assert!(theirs(&token) && ours(&token), "{alg:?}");
            let (input, signature) = token.rsplit_once('.').unwrap();
            let mut bytes = b64url_decode(signature).unwrap();
            for position in [0, bytes.len() / 2, bytes.len() - 1] {
                bytes[position] ^= 1;
                let forged = format!("{input}.{}", b64url(&bytes));
                bytes[position] ^= 1;
                assert!(!theirs(&forged) && !ours(&forged), "{alg:?} at {position}");
            }
            let other = sign(&ring(alg), &claims());
            let (_, foreign) = other.rsplit_once('.').unwrap();
            let swapped = format!("{input}.{foreign}");
            assert!(!theirs(&swapped) && !ours(&swapped), "{alg:?}");
        }
    }

    /// Encodings we never write are refused whatever their signature; parts too long for
    /// the stack buffers take the heap path and verify the same.
    #[test]
    fn odd_encodings_are_refused_and_long_parts_still_verify() {
        let keys = ring(SigningAlgorithm::Es256);
        let token = sign(&keys, &claims());
        let (input, signature) = token.rsplit_once('.').unwrap();
        for odd in [
            format!("{input}.{signature}=="),
            format!("{input}."),
            format!("{input}.{}", b64url(&[7u8; 600])),
            format!("{input}.{signature}A"),
        ] {
            assert!(
                verifier().verify_ignoring_time(&keys, &odd).is_err(),
                "{odd}"
            );
        }
        // A 1 500-byte header member: decoded on the heap, signed by us, accepted.
        let (signer, kid) = keys.signer().unwrap();
        let header = serde_json::json!({
            "alg": "ES256", "typ": ACCESS_TOKEN_TYPE, "kid": kid, "x": "a".repeat(1500),
        });
        let input = format!(
            "{}.{}",
            b64url(header.to_string().as_bytes()),
            b64url(&serde_json::to_vec(&claims()).unwrap())
        );
        let signature = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(signer.sign(input.as_bytes()))
            .unwrap();
        let long = format!("{input}.{}", b64url(&signature));
        assert_eq!(
            verifier().verify_ignoring_time(&keys, &long).unwrap(),
            claims()
        );
        assert_eq!(header_kid(&long).as_deref(), Some(kid));
    }
}
