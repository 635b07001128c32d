//! The /userinfo verification path (`TokenService::authorize`: header, key pinned by kid,
//! signature, claims, then the revocation lookup in the in-memory store) against the raw
//! aws-lc-rs signature verify of the same tokens, for ES256 and RS256 — raw with the key
//! parsed at every call (what jsonwebtoken does) and with the key parsed once (what the key
//! ring does since issue 15). `authorize` remembers the tokens it verified
//! (`service::VERIFIED_CACHE_ENTRIES`), so the first-sight figures cycle through more
//! distinct tokens than that (every presentation a miss) — and so do the raw baselines, over
//! the same tokens in the same order (the same memory traffic) — and a last column shows a
//! token presented again (a hit).
//!
//! Run: `cargo bench -p tokenlife --bench verify` (figures in BENCHMARKS.md). A plain timing
//! loop rather than criterion: within each round the paths take turns in batches of 64, so
//! that noise from the shared machine hits all of them alike, and the median round is
//! reported.
//!
//! Without `--bench` (as `cargo test --benches` runs it, in the test command) it is a smoke
//! run: one short round, every path exercised and checked, no figure worth reading.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::signature::{self, ParsedPublicKey, UnparsedPublicKey};
use tokenlife::clock::SystemClock;
use tokenlife::config::{Argon2Params, Config};
use tokenlife::keys::SigningAlgorithm;
use tokenlife::secrets::b64url_decode;
use tokenlife::service::{LoginRequest, RefreshRequest, VERIFIED_CACHE_ENTRIES};
use tokenlife::{App, TokenService};

/// (rounds, time per round): a measurement under `cargo bench`, a smoke run otherwise.
fn plan() -> (usize, Duration) {
    if std::env::args().any(|a| a == "--bench") {
        (7, Duration::from_millis(700))
    } else {
        (1, Duration::from_millis(30))
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

/// A service and `count` distinct access tokens of it (a refresh chain: each refresh mints
/// a new one).
fn setup(
    runtime: &tokio::runtime::Runtime,
    algorithm: SigningAlgorithm,
    count: usize,
) -> (Arc<TokenService>, Vec<String>) {
    let config = Config {
        algorithm,
        argon2: Argon2Params::CHEAPEST,
        ..Config::default()
    };
    let service = runtime
        .block_on(App::embedded(
            config,
            "https://issuer.bench",
            Arc::new(SystemClock),
        ))
        .unwrap()
        .service;
    let tokens = runtime.block_on(async {
        service
            .put_user("bench", "bench-correct-horse", vec!["user".into()])
            .await
            .unwrap();
        let mut grant = service
            .login(LoginRequest::new("bench", "bench-correct-horse"))
            .await
            .unwrap();
        let mut tokens = vec![grant.access_token.clone()];
        while tokens.len() < count {
            grant = service
                .refresh(RefreshRequest::new(grant.refresh_token.clone()))
                .await
                .unwrap();
            tokens.push(grant.access_token.clone());
        }
        tokens
    });
    (service, tokens)
}

fn main() {
    let (rounds, round_time) = plan();
    if rounds == 1 {
        println!("(smoke run: not a measurement; `cargo bench` measures)");
    }
    // Timers on: password hashing waits for a slot with a timeout.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "| alg | raw aws-lc verify, key parsed per call (ops/s) | raw, key parsed once (ops/s) | tokenlife authorize, first sight (ops/s) | ratio to raw (per call / once) | Lambda authorizer event, first sight (ops/s) | ratio (per call / once) | authorize, seen before (ops/s) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    // More distinct tokens than the cache of verified tokens holds: every one a miss.
    let distinct = if rounds == 1 {
        8
    } else {
        VERIFIED_CACHE_ENTRIES + 1
    };
    for algorithm in [SigningAlgorithm::Es256, SigningAlgorithm::Rs256] {
        let (service, tokens) = setup(&runtime, algorithm, distinct);
        let token = tokens[0].clone();
        // The raw baselines verify the same distinct tokens in the same order as the
        // first-sight loops (the same bytes in memory, so the same cache misses), already
        // split and base64-decoded: (1) with the key parsed at every call, as jsonwebtoken
        // does; (2) with the key parsed once, as the key ring does.
        let split: Vec<(String, Vec<u8>)> = tokens
            .iter()
            .map(|t| {
                let (input, signature) = t.rsplit_once('.').unwrap();
                (input.to_owned(), b64url_decode(signature).unwrap())
            })
            .collect();
        let position = std::cell::Cell::new(0usize);
        let next = || {
            let i = position.get();
            position.set(i + 1);
            &split[i % split.len()]
        };
        let jwk = runtime.block_on(service.jwks()).unwrap().keys.remove(0);
        let raw_verify: Box<dyn Fn() -> bool + '_> = match algorithm {
            SigningAlgorithm::Es256 => {
                let mut point = vec![4u8];
                point.extend(b64url_decode(jwk.x.as_ref().unwrap()).unwrap());
                point.extend(b64url_decode(jwk.y.as_ref().unwrap()).unwrap());
                Box::new(move || {
                    let (input, signature) = next();
                    UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
                        .verify(input.as_bytes(), signature)
                        .is_ok()
                })
            }
            SigningAlgorithm::Rs256 => {
                let n = b64url_decode(jwk.n.as_ref().unwrap()).unwrap();
                let e = b64url_decode(jwk.e.as_ref().unwrap()).unwrap();
                Box::new(move || {
                    let (input, signature) = next();
                    signature::RsaPublicKeyComponents { n: &n, e: &e }
                        .verify(
                            &signature::RSA_PKCS1_2048_8192_SHA256,
                            input.as_bytes(),
                            signature,
                        )
                        .is_ok()
                })
            }
        };
        assert!(raw_verify());
        let spki = runtime.block_on(service.list_keys()).unwrap()[0]
            .public_key_der
            .clone();
        let parsed = ParsedPublicKey::new(
            match algorithm {
                SigningAlgorithm::Es256 => {
                    &signature::ECDSA_P256_SHA256_FIXED
                        as &'static dyn signature::VerificationAlgorithm
                }
                SigningAlgorithm::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            },
            &spki,
        )
        .unwrap();
        let raw_parsed = || {
            let (input, signature) = next();
            parsed.verify_sig(input.as_bytes(), signature).is_ok()
        };
        assert!(raw_parsed());
        runtime.block_on(service.authorize(&token)).unwrap();

        // The authorizer's whole event path: an HTTP API v2 event in, a simple response out.
        // One event, its Authorization header swapped for each distinct token's (the header
        // strings made beforehand, as cold in memory as the tokens the raw loops read): a
        // Lambda handler gets an event just parsed, not one of 10 001 lying in memory.
        let mut event = serde_json::json!({
            "version": "2.0",
            "type": "REQUEST",
            "routeArn": "arn:aws:execute-api:eu-west-1:123456789012:abc123/$default/GET/orders",
            "identitySource": [format!("Bearer {token}")],
            "headers": { "authorization": format!("Bearer {token}"), "host": "abc123.example" },
        });
        let mut headers: Vec<serde_json::Value> = tokens
            .iter()
            .map(|t| serde_json::Value::String(format!("Bearer {t}")))
            .collect();
        let allowed = runtime
            .block_on(tokenlife::authorizer::authorize_event(&service, &event))
            .unwrap();
        assert!(matches!(
            allowed,
            tokenlife::authorizer::AuthorizerResponse::HttpApi(ref answer) if answer.is_authorized
        ));

        let (mut raw, mut raw_once, mut ours, mut authorizer, mut again) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // Where the first-sight loops are in the cycle of distinct tokens: one position for
        // both, carried over rounds, so that every presentation is of the token presented
        // least recently — more presentations ago than the cache holds.
        let mut next_token = 0usize;
        // Within a round the paths take turns in batches of 64 (a few ms each), and each
        // path's rate is its batches' count over their summed time: a slowdown of the
        // shared machine lasting longer than a few ms falls on every path alike, so the
        // ratios hold even when the absolute figures wander.
        const BATCH: u64 = 64;
        for _ in 0..rounds {
            let mut spent = [Duration::ZERO; 5];
            let mut batches = 0u64;
            let round = Instant::now();
            while round.elapsed() < round_time * 5 {
                batches += 1;
                let start = Instant::now();
                for _ in 0..BATCH {
                    assert!(black_box(raw_verify()));
                }
                spent[0] += start.elapsed();
                let start = Instant::now();
                for _ in 0..BATCH {
                    assert!(black_box(raw_parsed()));
                }
                spent[1] += start.elapsed();
                // The handlers run inside the async runtime: one block_on per batch.
                let start = Instant::now();
                runtime.block_on(async {
                    for _ in 0..BATCH {
                        let token = &tokens[next_token % tokens.len()];
                        next_token += 1;
                        assert!(black_box(service.authorize(black_box(token)).await.is_ok()));
                    }
                });
                spent[2] += start.elapsed();
                let start = Instant::now();
                runtime.block_on(async {
                    for _ in 0..BATCH {
                        let header = &mut headers[next_token % tokens.len()];
                        next_token += 1;
                        std::mem::swap(&mut event["headers"]["authorization"], header);
                        let answer =
                            tokenlife::authorizer::authorize_event(&service, black_box(&event))
                                .await;
                        std::mem::swap(&mut event["headers"]["authorization"], header);
                        assert!(black_box(answer.is_ok()));
                    }
                });
                spent[3] += start.elapsed();
                let start = Instant::now();
                runtime.block_on(async {
                    for _ in 0..BATCH {
                        assert!(black_box(
                            service.authorize(black_box(&token)).await.is_ok()
                        ));
                    }
                });
                spent[4] += start.elapsed();
            }
            // Every path ran `batches` batches this round.
            let rate = |i: usize| (batches * BATCH) as f64 / spent[i].as_secs_f64();
            raw.push(rate(0));
            raw_once.push(rate(1));
            ours.push(rate(2));
            authorizer.push(rate(3));
            again.push(rate(4));
        }
        let (raw, raw_once, ours, authorizer, again) = (
            median(raw),
            median(raw_once),
            median(ours),
            median(authorizer),
            median(again),
        );
        println!(
            "| {} | {raw:.0} | {raw_once:.0} | {ours:.0} | {:.1}% / {:.1}% | {authorizer:.0} | {:.1}% / {:.1}% | {again:.0} |",
            algorithm.name(),
            100.0 * ours / raw,
            100.0 * ours / raw_once,
            100.0 * authorizer / raw,
            100.0 * authorizer / raw_once,
        );
    }
}
