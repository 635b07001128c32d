//! `tokenlife`: the local server and operator commands.
//!
//! `tokenlife serve` runs every route of the Lambda functions in one process, on the backend
//! the configuration names (the embedded default, or DynamoDB + KMS), through the very same
//! handler code (`tokenlife::http::handle`). `tokenlife setup` creates the AWS resources,
//! `tokenlife check` tells whether they are usable;
//! `tokenlife keys` and `tokenlife users` administer a deployment's signing keys and users
//! through the same service code as the admin routes.
//!
//! Conventions: `--help` on every command, `--version`; usage errors exit 2 with a hint
//! (clap), a bad `TOKENLIFE_*` setting exits 2 naming it, runtime errors exit 1 with a
//! message on stderr; list commands take `--json`.

mod clients;
mod keys;
mod serve;
mod setup;
mod users;

use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, Parser, Subcommand};
use tokenlife::clock::SystemClock;
use tokenlife::config::Backend;
use tokenlife::http::Function;
use tokenlife::{App, Config};

#[derive(Parser)]
#[command(
    name = "tokenlife",
    version,
    about = "Token lifecycle service: JWT access tokens, rotating refresh tokens, revocation, JWKS",
    after_help = "Configuration comes from TOKENLIFE_* environment variables (see README.md)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run every route in one local server, on the backend TOKENLIFE_BACKEND names
    /// (memory, the default: in-memory, key generated at start; or aws: DynamoDB + KMS).
    Serve(serve::ServeArgs),
    /// Create the DynamoDB tables of the aws backend and, if there is none, an active KMS
    /// signing key (idempotent).
    Setup,
    /// Tell whether the configuration names a usable deployment, changing nothing: tables
    /// (ACTIVE, TTL on), an active signing key, KMS answering for it. Exits 1 naming what
    /// is wrong.
    Check,
    /// The signing keys of the aws backend.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// The users of the aws backend (for the embedded default, use the admin routes of the
    /// running server). Passwords are read from a prompt or stdin, never from arguments.
    #[command(subcommand)]
    Users(users::UsersCommand),
    /// The registered OAuth clients of the aws backend (for the embedded default, use the
    /// admin routes of the running server, or `serve --client`). Secrets are printed once.
    #[command(subcommand)]
    Clients(clients::ClientsCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions { shell: clap_complete::Shell },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs (with the details behind an error) go to stderr; stdout is the command's output.
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "tokenlife",
                &mut std::io::stdout(),
            );
            ExitCode::SUCCESS
        }
        Command::Serve(args) => {
            tokenlife::logging::init_for_cli();
            tokenlife::audit::set_process_actor(tokenlife::audit::ACTOR_CLI);
            with_config_and_runtime("serve", |config, runtime| serve::run(args, config, runtime))
        }
        Command::Setup => {
            tokenlife::logging::init_for_cli();
            tokenlife::audit::set_process_actor(tokenlife::audit::ACTOR_CLI);
            with_config_and_runtime("setup", setup::run)
        }
        Command::Check => {
            tokenlife::logging::init_for_cli();
            with_config_and_runtime("check", setup::run_check)
        }
        Command::Keys(command) => {
            tokenlife::logging::init_for_cli();
            tokenlife::audit::set_process_actor(tokenlife::audit::ACTOR_CLI);
            with_config_and_runtime("keys", |config, runtime| {
                keys::run(command, config, runtime)
            })
        }
        Command::Clients(command) => {
            tokenlife::logging::init_for_cli();
            tokenlife::audit::set_process_actor(tokenlife::audit::ACTOR_CLI);
            with_config_and_runtime("clients", |config, runtime| {
                clients::run(command, config, runtime)
            })
        }
        Command::Users(command) => {
            tokenlife::logging::init_for_cli();
            tokenlife::audit::set_process_actor(tokenlife::audit::ACTOR_CLI);
            with_config_and_runtime("users", |config, runtime| {
                users::run(command, config, runtime)
            })
        }
    }
}

/// Reads the configuration and starts the async runtime, then runs `command`; a bad
/// setting exits with 2, naming the variable.
fn with_config_and_runtime(
    command: &str,
    run: impl FnOnce(Config, tokio::runtime::Runtime) -> ExitCode,
) -> ExitCode {
    let config = match Config::from_env() {
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

/// The service of a deployment (the aws backend) for an operator command; the embedded
/// default has no state outside a running server, so `command` refuses it (exit 2) and
/// names the admin routes of `function` (the route table's) to use instead.
async fn deployment(command: &str, config: Config, function: Function) -> Result<App, ExitCode> {
    if config.backend != Backend::Aws {
        let routes: Vec<String> = function
            .routes()
            .filter(|route| matches!(route.handler, tokenlife::http::Handler::Admin(_)))
            .map(|route| format!("{} {}", route.method, route.path))
            .collect();
        eprintln!(
            "tokenlife {command}: works on the aws backend (TOKENLIFE_BACKEND=aws). The \
             embedded default keeps its state inside the running server: use its admin \
             routes ({}).",
            routes.join(", ")
        );
        return Err(ExitCode::from(2));
    }
    let clients = tokenlife::app::AwsClients::from_env().await;
    App::aws(
        config,
        "https://cli.invalid",
        clients,
        Arc::new(SystemClock),
    )
    .await
    .map_err(|error| {
        eprintln!("tokenlife {command}: {error}");
        ExitCode::FAILURE
    })
}

/// Runs an operator command's work and turns its outcome into the exit code (runtime
/// errors: 1, with the operator's view of the error).
fn finish(command: &str, result: Result<(), tokenlife::Error>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("tokenlife {command}: {}", error.for_operator());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// A kid is base64url and one in 64 starts with `-` (found by the rotation e2e test,
    /// which failed on such a key): `keys retire` takes it as the kid.
    #[test]
    fn a_kid_may_start_with_a_hyphen() {
        let cli = Cli::try_parse_from(["tokenlife", "keys", "retire", "-2lSQ3cVkgR_0fK1OYph"]);
        match cli.map(|cli| cli.command) {
            Ok(Command::Keys(keys::KeysCommand::Retire { kid })) => {
                assert_eq!(kid, "-2lSQ3cVkgR_0fK1OYph")
            }
            _ => panic!("a kid starting with '-' was not taken as the kid"),
        }
    }
}
