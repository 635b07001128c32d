//! Just enough DER to read the two structures signing keys arrive in: a
//! SubjectPublicKeyInfo (RFC 5280; what aws-lc-rs and KMS GetPublicKey return) for EC P-256
//! and RSA keys, and an ECDSA signature `SEQUENCE { r INTEGER, s INTEGER }`.

/// One DER element's tag and contents, plus what follows it.
fn read_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (first as usize, rest)
    } else {
        let count = (first & 0x7f) as usize;
        if count == 0 || count > 4 || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | b as usize);
        (len, &rest[count..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
    let (found, contents, rest) = read_element(input)?;
    (found == tag).then_some((contents, rest))
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BIT_STRING: u8 = 0x03;
const OID: u8 = 0x06;

/// 1.2.840.10045.2.1 id-ecPublicKey
const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// 1.2.840.10045.3.1.7 prime256v1 / P-256
const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// 1.2.840.113549.1.1.1 rsaEncryption
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// The public key inside a SubjectPublicKeyInfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpkiKey {
    /// P-256 affine coordinates, 32 bytes each.
    P256 { x: Vec<u8>, y: Vec<u8> },
    /// Big-endian modulus and exponent without leading zero bytes.
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

pub fn parse_spki(der: &[u8]) -> Option<SpkiKey> {
    let (spki, trailing) = expect(der, SEQUENCE)?;
    if !trailing.is_empty() {
        return None;
    }
    let (algorithm, rest) = expect(spki, SEQUENCE)?;
    let (bits, rest) = expect(rest, BIT_STRING)?;
    if !rest.is_empty() {
        return None;
    }
    let (unused_bits, key) = bits.split_first()?;
    if *unused_bits != 0 {
        return None;
    }
    let (oid, params) = expect(algorithm, OID)?;
    if oid == OID_EC_PUBLIC_KEY {
        let (curve, _) = expect(params, OID)?;
        if curve != OID_P256 || key.len() != 65 || key[0] != 0x04 {
            return None;
        }
        Some(SpkiKey::P256 {
            x: key[1..33].to_vec(),
            y: key[33..].to_vec(),
        })
    } else if oid == OID_RSA {
        let (rsa, _) = expect(key, SEQUENCE)?;
        let (n, rest) = expect(rsa, INTEGER)?;
        let (e, _) = expect(rest, INTEGER)?;
        Some(SpkiKey::Rsa {
            n: strip_leading_zeros(n).to_vec(),
            e: strip_leading_zeros(e).to_vec(),
        })
    } else {
        None
    }
}

fn strip_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while bytes.len() > 1 && bytes[0] == 0 {
        bytes = &bytes[1..];
    }
    bytes
}

/// Converts a DER ECDSA signature to the fixed-width `R || S` form JWS needs (RFC 7518
/// 3.4), each half left-padded to `half_len` bytes. DER drops leading zero bytes (and adds
/// one when the top bit is set); forgetting to pad back is a classic bug that fails about
/// one token in 128.
pub fn ecdsa_der_to_fixed(der: &[u8], half_len: usize) -> Option<Vec<u8>> {
    let (seq, trailing) = expect(der, SEQUENCE)?;
    if !trailing.is_empty() {
        return None;
    }
    let (r, rest) = expect(seq, INTEGER)?;
    let (s, rest) = expect(rest, INTEGER)?;
    if !rest.is_empty() {
        return None;
    }
    let mut out = vec![0u8; 2 * half_len];
    for (i, int) in [r, s].into_iter().enumerate() {
        let int = strip_leading_zeros(int);
        if int.len() > half_len {
            return None;
        }
        let end = (i + 1) * half_len;
        out[end - int.len()..end].copy_from_slice(int);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der_int(bytes: &[u8]) -> Vec<u8> {
        let mut body = strip_leading_zeros(bytes).to_vec();
        if body[0] & 0x80 != 0 {
            body.insert(0, 0);
        }
        let mut out = vec![INTEGER, body.len() as u8];
        out.extend(body);
        out
    }

    fn der_sig(r: &[u8], s: &[u8]) -> Vec<u8> {
        let mut body = der_int(r);
        body.extend(der_int(s));
        let mut out = vec![SEQUENCE, body.len() as u8];
        out.extend(body);
        out
    }

    #[test]
    fn der_signature_halves_are_left_padded() {
        let mut r = [0x11u8; 32];
        r[0] = 0;
        r[1] = 0; // two leading zero bytes: DER carries 30 bytes
        let mut s = [0x92u8; 32]; // top bit set: DER carries 33 bytes
        s[31] = 0x01;
        let fixed = ecdsa_der_to_fixed(&der_sig(&r, &s), 32).unwrap();
        assert_eq!(&fixed[..32], &r);
        assert_eq!(&fixed[32..], &s);
    }

    #[test]
    fn der_signature_with_short_s_is_padded() {
        let r = [0x7fu8; 32];
        let mut s = [0u8; 32];
        s[31] = 0x05; // s = 5: a single byte in DER
        let fixed = ecdsa_der_to_fixed(&der_sig(&r, &s), 32).unwrap();
        assert_eq!(&fixed[32..], &s);
    }

    #[test]
    fn malformed_der_signatures_are_rejected() {
        assert!(ecdsa_der_to_fixed(&[], 32).is_none());
        assert!(ecdsa_der_to_fixed(&[0x30, 0x02, 0x02, 0x00], 32).is_none());
        let mut too_long = der_sig(&[0x11; 32], &[0x22; 32]);
        too_long.push(0);
        assert!(ecdsa_der_to_fixed(&too_long, 32).is_none());
        let big = [0x11u8; 40];
        assert!(ecdsa_der_to_fixed(&der_sig(&big, &[1]), 32).is_none());
    }

    #[test]
    fn garbage_is_not_a_public_key() {
        assert!(parse_spki(b"").is_none());
        assert!(parse_spki(&[0x30, 0x81]).is_none());
        assert!(parse_spki(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
