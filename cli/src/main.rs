//! `tokenlife`: the local server and operator commands.
//!
//! `tokenlife serve` runs every route of the Lambda functions in one process, on the backend
//! the configuration names (the embedded default, or DynamoDB + KMS), through the very same
//! handler code (`tokenlife::http::handle`). `tokenlife setup` creates the AWS resources;
//! `tokenlife keys` lists, rotates and retires signing keys.

mod keys;
mod serve;
mod setup;

use std::process::ExitCode;

const USAGE: &str = "\
tokenlife — token lifecycle service

USAGE:
    tokenlife serve [--addr HOST:PORT] [--user NAME:PASSWORD[:admin]]...
    tokenlife setup
    tokenlife keys list | rotate | retire <kid>
    tokenlife help

serve   Run every route in one local server, on the backend TOKENLIFE_BACKEND names
        (memory, the default: in-memory, key generated at start; or aws: DynamoDB + KMS).
        --addr   where to listen (default 127.0.0.1:3000; port 0 picks a free port)
        --user   create or update a user at start (repeatable); ':admin' adds the admin scope
setup   Create the DynamoDB tables of the aws backend and, if there is none, an active KMS
        signing key (idempotent).
keys    The signing keys of the aws backend: list them (kid, state, since); rotate (one
        step: retire keys whose tokens have all expired, promote the pre-published key,
        pre-publish the next); retire <kid> at once (a leaked key: out of the JWKS, its
        tokens refused within TOKENLIFE_KEY_CACHE_TTL; if it was active, the next key
        signs at once).

Configuration comes from TOKENLIFE_* environment variables (see README.md).";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") => match serve::ServeArgs::parse(&args[1..]) {
            Ok(serve_args) => {
                // Logs to stderr: stdout's first line is the base URL (scripts read it).
                lambda_http::tracing::init_default_subscriber_with_writer(std::io::stderr);
                with_config_and_runtime("serve", |config, runtime| {
                    serve::run(serve_args, config, runtime)
                })
            }
            Err(problem) => {
                eprintln!("tokenlife serve: {problem}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("setup") if args.len() == 1 => {
            // Logs (with the details behind an error) to stderr; the report to stdout.
            lambda_http::tracing::init_default_subscriber_with_writer(std::io::stderr);
            with_config_and_runtime("setup", setup::run)
        }
        Some("keys") => match keys::KeysCommand::parse(&args[1..]) {
            Ok(command) => {
                lambda_http::tracing::init_default_subscriber_with_writer(std::io::stderr);
                with_config_and_runtime("keys", |config, runtime| {
                    keys::run(command, config, runtime)
                })
            }
            Err(problem) => {
                eprintln!("tokenlife keys: {problem}\n\n{USAGE}");
                ExitCode::from(2)
            }
        },
        Some("help" | "--help" | "-h") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("tokenlife: unknown command {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
        None => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// Reads the configuration and starts the async runtime, then runs `command`; a bad
/// setting exits with 2, naming the variable.
fn with_config_and_runtime(
    command: &str,
    run: impl FnOnce(tokenlife::Config, tokio::runtime::Runtime) -> ExitCode,
) -> ExitCode {
    let config = match tokenlife::Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tokenlife {command}: {error}");
            return ExitCode::from(2);
        }
    };
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => run(config, runtime),
        Err(error) => {
            eprintln!("tokenlife {command}: cannot start the async runtime: {error}");
            ExitCode::FAILURE
        }
    }
}
