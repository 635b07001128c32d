//! Login limiting: how many failed logins a username, and a source address, may have
//! within a window before logins as that user (or from that address) are refused with 429,
//! with no password work at all. The policy, after OWASP's Authentication and Credential
//! Stuffing cheat sheets:
//!
//! - **Per username** (`TOKENLIFE_LOGIN_FAILURES_PER_USER`, default 10 per 15 minutes):
//!   password guessing against one account from any number of addresses gets 10 tries per
//!   window. Unknown usernames are counted the same, so the answer tells nothing.
//! - **Per source address** (`TOKENLIFE_LOGIN_FAILURES_PER_ADDRESS`, default 100): credential
//!   stuffing — many usernames from one address — stops after 100 failures per window.
//! - **A lock-out is bounded**: counts live in fixed windows (`TOKENLIFE_LOGIN_WINDOW`,
//!   default 900 s) and start again at the next one; an attacker can keep a user from
//!   logging in for at most the rest of the current window at a time, never longer, and a
//!   refused attempt does not extend it. A success does not reset the count (an attacker
//!   who knows the password needs no more tries).
//! - Where the source address comes from: API Gateway's request context, or `serve`'s
//!   connection peer — never a forwarded header (see [`crate::http::request::device`]).
//!
//! The counters live in the revocations table (`fail#user#<name>#<window>`,
//! `fail#addr#<address>#<window>`, with a TTL) and are read in the same BatchGetItem as the
//! user record, so a login that is not refused costs no extra round trip; a failure adds
//! one write.

use crate::config::Config;
use crate::error::Error;

/// The limits in force at one moment: the window and its counters' keys.
pub struct Limits {
    per_user: u64,
    per_address: u64,
    window: u64,
    index: u64,
    now_secs: u64,
}

impl Limits {
    pub fn of(config: &Config, now_secs: u64) -> Self {
        let window = config.login_window_secs.max(1);
        Self {
            per_user: config.login_failures_per_user,
            per_address: config.login_failures_per_address,
            window,
            index: now_secs / window,
            now_secs,
        }
    }

    /// The counters of this window: the username's, then the address's (if known).
    pub fn keys(&self, username: &str, source_ip: Option<&str>) -> Vec<String> {
        let mut keys = vec![format!("fail#user#{username}#{}", self.index)];
        if let Some(ip) = source_ip {
            keys.push(format!("fail#addr#{ip}#{}", self.index));
        }
        keys
    }

    /// Refuses (429) when a counter has reached its limit, until the window ends.
    pub fn check(&self, counts: &[u64]) -> Result<(), Error> {
        let limits = [self.per_user, self.per_address];
        if counts
            .iter()
            .zip(limits)
            .any(|(count, limit)| *count >= limit)
        {
            return Err(Error::TooManyRequests {
                retry_after_secs: self.window_end() - self.now_secs,
            });
        }
        Ok(())
    }

    /// When this window's counters may be deleted (TTL): a minute after it ends.
    pub fn counters_expire_at(&self) -> u64 {
        self.window_end() + 60
    }

    fn window_end(&self) -> u64 {
        (self.index + 1) * self.window
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_keys_and_refusals() {
        let config = Config {
            login_failures_per_user: 3,
            login_failures_per_address: 5,
            login_window_secs: 900,
            ..Config::default()
        };
        let limits = Limits::of(&config, 1_800_000_100);
        assert_eq!(
            limits.keys("alice", Some("192.0.2.7")),
            ["fail#user#alice#2000000", "fail#addr#192.0.2.7#2000000"]
        );
        assert_eq!(limits.keys("alice", None).len(), 1);
        limits.check(&[2, 4]).unwrap();
        assert_eq!(
            limits.check(&[3, 0]),
            Err(Error::TooManyRequests {
                retry_after_secs: 800
            })
        );
        assert!(limits.check(&[0, 5]).is_err());
        assert_eq!(limits.counters_expire_at(), 1_800_000_960);
    }
}
