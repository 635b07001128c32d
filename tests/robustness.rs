//! Robustness: many thousands of malformed inputs — random bytes, mutations of real tokens
//! (bit flips, truncations, swapped parts, re-encoded headers), hostile JSON and form bodies,
//! odd headers — through the token verifier, the refresh-token parser and the HTTP handler.
//! Never a panic; every HTTP answer is a 4xx JSON error (or 200 where the protocol says so:
//! RFC 7009 revocation), and the service is unchanged afterwards. Deterministic (a fixed
//! seed), so a failure reproduces.

use std::sync::Arc;

use lambda_http::Body;
use tokenlife::TokenService;
use tokenlife::http::handle;
use tokenlife::refresh::RefreshToken;
use tokenlife::secrets::{b64url, b64url_decode};
use tokenlife::service::RefreshRequest;
use tokenlife::testkit::{Embedded, Users, body_json};

/// xorshift64*: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// One mutation of `text`, never `text` itself.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mutated = mutate_once(rng, text);
    if mutated == text {
        format!("{text}~")
    } else {
        mutated
    }
}

fn mutate_once(rng: &mut Rng, text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    match rng.below(9) {
        0 if !bytes.is_empty() => {
            let i = rng.below(bytes.len());
            bytes[i] ^= 1 << rng.below(8);
        }
        1 => bytes.truncate(rng.below(bytes.len() + 1)),
        2 => {
            let i = rng.below(bytes.len() + 1);
            let len = 1 + rng.below(8);
            let junk = rng.bytes(len);
            bytes.splice(i..i, junk);
        }
        3 => {
            let parts: Vec<&str> = text.split('.').collect();
            let mut shuffled = parts.clone();
            shuffled.rotate_left(1);
            return shuffled.join(".");
        }
        4 => return format!("{text}.{text}"),
        5 => return text.replace('.', ""),
        6 => {
            // Re-encode the first part as some other JSON.
            let header = rng.pick(&[
                r#"{"alg":"none","typ":"at+jwt"}"#,
                r#"{"alg":"HS256","typ":"at+jwt","kid":"x"}"#,
                r#"{"alg":"ES256","typ":"at+jwt","kid":null}"#,
                r#"{"alg":"ES256","typ":["at+jwt"],"kid":1}"#,
                r#"{"alg":"ES256","typ":"at+jwt","kid":"","crit":["b64"]}"#,
                r#"[]"#,
                r#""string""#,
                r#"{"#,
            ]);
            let rest = text.split_once('.').map_or("", |(_, r)| r);
            return format!("{}.{rest}", b64url(header.as_bytes()));
        }
        7 => return "A".repeat(rng.below(20_000)),
        _ => {
            let len = rng.below(300);
            return String::from_utf8_lossy(&rng.bytes(len)).into_owned();
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn service() -> (Arc<TokenService>, String, String) {
    let f = Embedded::start_now(|c| c.cors_origins = vec!["https://app.example.com".into()]).await;
    f.add_user("alice", &["user", "admin"]).await;
    let grant = f.login("alice").await;
    (f.service, grant.access_token, grant.refresh_token)
}

#[tokio::test]
async fn mutated_tokens_never_verify_and_never_panic() {
    let (service, access, refresh) = service().await;
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for round in 0..20_000 {
        let base = if round % 2 == 0 { &access } else { &refresh };
        let candidate = mutate(&mut rng, base);
        if candidate == access {
            continue;
        }
        // A mutation that re-signs is impossible; any change must fail verification.
        assert!(
            service.authorize(&candidate).await.is_err(),
            "a mutated token verified: {candidate:.60}"
        );
        // The refresh-token parser takes anything without panicking.
        let _ = RefreshToken::parse(&candidate);
        let _ = b64url_decode(&candidate);
    }
    // Still fine afterwards.
    service.authorize(&access).await.unwrap();
    service.refresh(RefreshRequest::new(refresh)).await.unwrap();
}

#[tokio::test]
async fn hostile_requests_get_4xx_json_and_change_nothing() {
    let (service, access, refresh) = service().await;
    let mut rng = Rng(0x0bad_cafe_0000_0002);
    let paths = [
        "/login",
        "/token",
        "/refresh",
        "/revoke",
        "/userinfo",
        "/admin/users/alice/revoke",
        "/admin/users/%00/revoke",
        "/.well-known/jwks.json",
        "/.well-known/oauth-authorization-server",
        "/nope",
        "/login/../token",
    ];
    let methods = ["GET", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "HEAD"];
    let content_types = [
        "application/json",
        "application/x-www-form-urlencoded",
        "application/json; charset=utf-8",
        "text/plain",
        "multipart/form-data; boundary=x",
        "",
    ];
    let fields = [
        "username",
        "password",
        "grant_type",
        "refresh_token",
        "token",
        "token_type_hint",
        "client_id",
        "scope",
    ];
    for _ in 0..5_000 {
        let method = rng.pick(&methods);
        let path = rng.pick(&paths);
        let content_type = rng.pick(&content_types);
        let body: Vec<u8> = match rng.below(6) {
            0 => {
                let len = rng.below(512);
                rng.bytes(len)
            }
            1 => {
                let mut object = serde_json::Map::new();
                for _ in 0..rng.below(5) {
                    let value = match rng.below(6) {
                        0 => serde_json::json!(rng.next()),
                        1 => serde_json::json!([mutate(&mut rng, &refresh)]),
                        2 => serde_json::json!({"nested": true}),
                        3 => serde_json::Value::Null,
                        4 => serde_json::json!(mutate(&mut rng, &access)),
                        _ => serde_json::json!(rng.pick(&[
                            "password",
                            "refresh_token",
                            "x\u{0}y",
                            "",
                            "é"
                        ])),
                    };
                    object.insert(rng.pick(&fields).to_owned(), value);
                }
                serde_json::to_vec(&object).unwrap()
            }
            2 => {
                let mut form = String::new();
                for _ in 0..rng.below(6) {
                    let seed = rng.pick(&["password", "refresh_token", "alice", "%zz", "a+b"]);
                    let value = mutate(&mut rng, seed);
                    form.push_str(&format!("{}={}&", rng.pick(&fields), value));
                }
                form.into_bytes()
            }
            3 => vec![b'{'; 70 * 1024],
            4 => format!("token={}", mutate(&mut rng, &refresh)).into_bytes(),
            _ => Vec::new(),
        };
        let mut builder = lambda_http::http::Request::builder()
            .method(method)
            .uri(path);
        if !content_type.is_empty() {
            builder = builder.header("content-type", content_type);
        }
        match rng.below(5) {
            0 => {
                builder = builder.header(
                    "authorization",
                    format!("Bearer {}", mutate(&mut rng, &access)),
                )
            }
            1 => builder = builder.header("authorization", "Basic YWxpY2U6YWxpY2UgcGFzc3dvcmQ="),
            2 => {
                builder = builder.header(
                    "cookie",
                    format!("tokenlife_refresh={}", mutate(&mut rng, &refresh)),
                )
            }
            3 => {
                builder = builder.header(
                    "origin",
                    rng.pick(&["https://app.example.com", "null", "https://evil.test", "::"]),
                )
            }
            _ => {}
        }
        // A header value HTTP cannot carry (a mutation put a newline in it) never arrives.
        let Ok(request) = builder.body(if body.is_empty() {
            Body::Empty
        } else {
            Body::Binary(body)
        }) else {
            continue;
        };
        let response = handle(&service, None, request).await;
        let status = response.status().as_u16();
        let json = body_json(response.body());
        let ok_answers = matches!(
            (method, path),
            ("POST", "/revoke")
                | ("GET", "/.well-known/jwks.json")
                | ("GET", "/.well-known/oauth-authorization-server")
        ) || (method == "OPTIONS" && status == 204);
        if ok_answers && (200..300).contains(&status) {
            continue;
        }
        assert!(
            (400..500).contains(&status),
            "{method} {path} ({content_type}) answered {status}: {json}"
        );
        assert!(
            json["error"].is_string(),
            "{method} {path}: not a JSON error: {json}"
        );
    }
    // Nothing changed: the tokens issued before all that still work.
    service.authorize(&access).await.unwrap();
    service.refresh(RefreshRequest::new(refresh)).await.unwrap();
}
