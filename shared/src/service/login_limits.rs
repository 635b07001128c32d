//! Login limiting: how many failed logins a username may have from one source address,
//! from all addresses together, and an address for all usernames, within a window, before
//! further logins are refused with 429 — with no password work at all. The policy, after
//! OWASP's Authentication and Credential Stuffing cheat sheets (the settings' defaults in
//! [`crate::config::SETTINGS`], the reasoning in README "Login limiting"):
//!
//! - **username from one address** (default 10): one client guessing one password;
//! - **username from all addresses** (default 100): guessing spread over many addresses —
//!   the only limit that locks a user out everywhere, so it is ten times higher;
//! - **one address, any usernames** (default 100): credential stuffing.
//!
//! Counts live in fixed windows and start again at the next one; a refused attempt counts
//! nothing. An IPv6 address counts as its /64 (one customer's block); a request with no
//! known address counts under `unknown`. Counter keys hold no username or address in the
//! clear (a password typed into the username field must not be stored): they are
//! SHA-256 digests of them.
//!
//! The counters live in the revocations table (`fail#<digest>#<window>`, with a TTL) and are
//! read in the same BatchGetItem as the user record, so a login that is not refused costs
//! no extra round trip; a failure adds one write. Concurrent logins read the counts before
//! any of them writes: at most the number of logins in flight at once (the login
//! function's reserved concurrency) can pass a limit in one window.

use std::net::IpAddr;

use crate::config::Config;
use crate::error::Error;
use crate::secrets::{b64url, sha256};

/// The limits in force at one moment: the window and its counters' keys.
pub struct Limits {
    limits: [u64; 3],
    window: u64,
    index: u64,
    now_secs: u64,
}

impl Limits {
    pub fn of(config: &Config, now_secs: u64) -> Self {
        let window = config.login_window_secs.max(1);
        Self {
            limits: [
                config.login_failures_per_user_and_address,
                config.login_failures_per_user,
                config.login_failures_per_address,
            ],
            window,
            index: now_secs / window,
            now_secs,
        }
    }

    /// This window's counters, in the order of the limits: (username, address), username,
    /// address.
    pub fn keys(&self, username: &str, source_ip: Option<&str>) -> Vec<String> {
        let address = address_key(source_ip);
        let key = |parts: &[&str]| {
            let digest = sha256(parts.join("\u{0}").as_bytes());
            format!("fail#{}#{}", b64url(&digest[..18]), self.index)
        };
        vec![
            key(&["user+addr", username, &address]),
            key(&["user", username]),
            key(&["addr", &address]),
        ]
    }

    /// Refuses (429) when a counter has reached its limit, until the window ends.
    pub fn check(&self, counts: &[u64]) -> Result<(), Error> {
        if self.exceeded(counts).is_some() {
            return Err(Error::TooManyRequests {
                retry_after_secs: self.window_end() - self.now_secs,
            });
        }
        Ok(())
    }

    /// The first limit `counts` reach, by name: `user_and_address`, `user`, `address`.
    pub fn exceeded(&self, counts: &[u64]) -> Option<&'static str> {
        let names = ["user_and_address", "user", "address"];
        counts
            .iter()
            .zip(self.limits)
            .zip(names)
            .find(|((count, limit), _)| **count >= *limit)
            .map(|(_, name)| name)
    }

    /// When this window's counters may be deleted (TTL): a minute after it ends.
    pub fn counters_expire_at(&self) -> u64 {
        self.window_end() + 60
    }

    fn window_end(&self) -> u64 {
        (self.index + 1) * self.window
    }
}

/// The address a counter is for: IPv4 as is (an IPv4-mapped IPv6 address as its IPv4), an
/// IPv6 address as its /64, `unknown` when there is none.
fn address_key(source_ip: Option<&str>) -> String {
    match source_ip.and_then(|ip| ip.parse::<IpAddr>().ok()) {
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_keys_and_refusals() {
        let config = Config {
            login_failures_per_user_and_address: 3,
            login_failures_per_user: 10,
            login_failures_per_address: 5,
            login_window_secs: 900,
            ..Config::default()
        };
        let limits = Limits::of(&config, 1_800_000_100);
        let keys = limits.keys("alice", Some("192.0.2.7"));
        assert_eq!(keys.len(), 3);
        assert!(
            keys.iter()
                .all(|k| k.starts_with("fail#") && k.ends_with("#2000000"))
        );
        assert!(
            keys.iter()
                .all(|k| !k.contains("alice") && !k.contains("192.0.2"))
        );
        // The same client, another /64 host, the same IPv4 mapped: the same counters.
        assert_eq!(
            limits.keys("alice", Some("2001:db8:1:2::1")),
            limits.keys("alice", Some("2001:db8:1:2:ffff::9"))
        );
        assert_eq!(keys, limits.keys("alice", Some("::ffff:192.0.2.7")));
        assert_ne!(keys[0], limits.keys("bob", Some("192.0.2.7"))[0]);
        assert_eq!(keys[2], limits.keys("bob", Some("192.0.2.7"))[2]);
        assert_eq!(
            limits.keys("alice", None)[2],
            limits.keys("bob", Some("not an address"))[2]
        );
        limits.check(&[2, 9, 4]).unwrap();
        assert_eq!(
            limits.check(&[3, 0, 0]),
            Err(Error::TooManyRequests {
                retry_after_secs: 800
            })
        );
        assert!(limits.check(&[0, 10, 0]).is_err());
        assert!(limits.check(&[0, 0, 5]).is_err());
        assert_eq!(limits.counters_expire_at(), 1_800_000_960);
    }
}
