//! `tokenlife keys list|rotate|retire <kid>`: the signing-key registry of the `aws` backend,
//! through the same rotation code as the rotate-keys function and the admin routes.
//! (The embedded default keeps its keys inside the running `serve` process: use its admin
//! routes there.)

use std::process::ExitCode;

use clap::Subcommand;
use tokenlife::Config;
use tokenlife::clock::{Clock, SystemClock};
use tokenlife::http::Function;
use tokenlife::keys::{KeyRecord, RotationReport};

/// What `tokenlife keys` was asked to do.
#[derive(Subcommand)]
pub enum KeysCommand {
    /// List the signing keys: kid, state, algorithm, since when.
    List {
        /// One JSON document (`{"keys": [...]}`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One rotation step: retire keys whose tokens have all expired, promote the
    /// pre-published key, pre-publish the next.
    Rotate,
    /// Retire a key at once (it leaked): out of the JWKS, its tokens refused within
    /// TOKENLIFE_KEY_CACHE_TTL; if it was active, the next key signs at once.
    Retire {
        /// The key's kid (see `keys list`). A kid may start with `-` (base64url): it is
        /// taken as the kid, not an option.
        #[arg(allow_hyphen_values = true)]
        kid: String,
    },
}

pub fn run(command: KeysCommand, config: Config, runtime: tokio::runtime::Runtime) -> ExitCode {
    runtime.block_on(async {
        let app = match crate::deployment("keys", config, Function::RotateKeys).await {
            Ok(app) => app,
            Err(code) => return code,
        };
        let service = &app.service;
        let result = match command {
            KeysCommand::List { json: false } => {
                service.list_keys().await.map(|keys| print_keys(&keys))
            }
            KeysCommand::List { json: true } => service.list_keys().await.map(|keys| {
                let keys = tokenlife::http::handlers::key_list(&keys);
                println!("{}", serde_json::json!({ "keys": keys }));
            }),
            KeysCommand::Rotate => service.rotate_keys().await.map(|r| print_report(&r)),
            KeysCommand::Retire { kid } => service.retire_key(&kid).await.map(|r| print_report(&r)),
        };
        crate::finish("keys", result)
    })
}

fn print_report(report: &RotationReport) {
    for action in &report.actions {
        println!("{action}");
    }
    println!();
    print_keys(&report.keys);
}

fn print_keys(keys: &[KeyRecord]) {
    let now = SystemClock.now_secs();
    println!("{:<43}  {:<8}  {:<5}  SINCE", "KID", "STATE", "ALG");
    for key in keys {
        println!(
            "{:<43}  {:<8}  {:<5}  {} ({} ago)",
            key.kid,
            key.state.name(),
            key.algorithm.name(),
            utc(key.state_since),
            duration(now.saturating_sub(key.state_since)),
        );
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for epoch seconds (proleptic Gregorian calendar, UTC).
pub fn utc(epoch_secs: u64) -> String {
    let days = (epoch_secs / 86_400) as i64;
    let secs = epoch_secs % 86_400;
    // Days since 1970-01-01 to a civil date, counting in 400-year eras from 0000-03-01.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153; // 0 = March
    let day = day_of_year - (153 * month_index + 2) / 5 + 1;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

fn duration(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        7200..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} days", secs / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(utc(1_795_856_400), "2026-11-28T09:00:00Z");
        assert_eq!(utc(4_107_542_399), "2100-02-28T23:59:59Z");
    }
}
