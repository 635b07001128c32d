//! `tokenlife users add|passwd|disable|enable|scopes|show|list|remove`: the users of the
//! `aws` backend, through the same service code as the admin user routes (so a change that
//! takes something away ends the user's sessions in the same write here too). Passwords
//! come from an interactive prompt (asked twice, not echoed) or from stdin with
//! `--password-stdin`; never from arguments.

use std::io::{IsTerminal, Read};
use std::process::ExitCode;

use clap::Subcommand;
use tokenlife::http::Function;
use tokenlife::passwords::MAX_PASSWORD_BYTES;
use tokenlife::service::{MIN_PASSWORD_CHARS, TokenService, UserChange, UserView};
use tokenlife::{Config, Error};

#[derive(Subcommand)]
pub enum UsersCommand {
    /// Create a user (scopes: `user` unless --scope names others; --admin adds `admin`).
    Add {
        name: String,
        /// Also grant the admin scope (the admin routes).
        #[arg(long)]
        admin: bool,
        /// A scope to grant (repeatable); default `user`.
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        #[command(flatten)]
        password: PasswordSource,
        /// Print the new user as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a new password; ends all of the user's sessions.
    Passwd {
        name: String,
        #[command(flatten)]
        password: PasswordSource,
    },
    /// Disable the user: logins refused, all sessions ended.
    Disable { name: String },
    /// Enable a disabled user (their old sessions stay ended).
    Enable { name: String },
    /// Replace the user's scopes; if one is taken away, all sessions end.
    Scopes {
        name: String,
        /// The complete new set of scopes.
        #[arg(long, num_args = 1.., required = true, value_name = "SCOPE")]
        set: Vec<String>,
    },
    /// Show one user.
    Show {
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// List every user.
    List {
        /// A JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Remove the user and end all of their sessions.
    Remove { name: String },
}

#[derive(clap::Args)]
pub struct PasswordSource {
    /// Read the password from stdin (one line; for scripts) instead of prompting.
    #[arg(long)]
    password_stdin: bool,
}

pub fn run(command: UsersCommand, config: Config, runtime: tokio::runtime::Runtime) -> ExitCode {
    // Read a password before any AWS call, so that a usage problem costs nothing.
    let password = match &command {
        UsersCommand::Add { password, .. } | UsersCommand::Passwd { password, .. } => {
            match read_password(password.password_stdin) {
                Ok(password) => Some(password),
                Err((code, problem)) => {
                    eprintln!("tokenlife users: {problem}");
                    return code;
                }
            }
        }
        _ => None,
    };
    runtime.block_on(async {
        let app = match crate::deployment("users", config, Function::Users).await {
            Ok(app) => app,
            Err(code) => return code,
        };
        let result = execute(&app.service, command, password.unwrap_or_default()).await;
        crate::finish("users", result)
    })
}

async fn execute(
    service: &TokenService,
    command: UsersCommand,
    password: String,
) -> Result<(), Error> {
    let change = |change: UserChange, name: String| async move {
        let changed = service.change_user(&name, change).await?;
        let ended = if changed.sessions_ended {
            "; all of its sessions ended"
        } else {
            ""
        };
        println!("user {name:?} changed{ended}");
        Ok(())
    };
    match command {
        UsersCommand::Add {
            name,
            admin,
            scopes,
            json,
            ..
        } => {
            let scopes = (!scopes.is_empty()).then_some(scopes);
            let scopes = tokenlife::http::handlers::new_user_scopes(scopes, admin);
            let user = service.create_user(&name, &password, scopes).await?;
            if json {
                println!("{}", to_json(&user));
            } else {
                println!("user {name:?} created (sub {})", user.sub);
            }
            Ok(())
        }
        UsersCommand::Passwd { name, .. } => {
            let new = UserChange {
                password: Some(password),
                ..UserChange::default()
            };
            change(new, name).await
        }
        UsersCommand::Disable { name } => {
            let disable = UserChange {
                disabled: Some(true),
                ..UserChange::default()
            };
            change(disable, name).await
        }
        UsersCommand::Enable { name } => {
            let enable = UserChange {
                disabled: Some(false),
                ..UserChange::default()
            };
            change(enable, name).await
        }
        UsersCommand::Scopes { name, set } => {
            let scopes = UserChange {
                scopes: Some(set),
                ..UserChange::default()
            };
            change(scopes, name).await
        }
        UsersCommand::Show { name, json } => {
            let user = service.user(&name).await?;
            if json {
                println!("{}", to_json(&user));
            } else {
                print_table(std::slice::from_ref(&user), true);
            }
            Ok(())
        }
        UsersCommand::List { json } => {
            let mut all = Vec::new();
            let mut cursor: Option<String> = None;
            let mut header = true;
            loop {
                let page = service.list_users(cursor.as_deref(), None).await?;
                if !json {
                    print_table(&page.users, header);
                    header = false;
                }
                all.extend(page.users);
                cursor = page.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
            if json {
                println!("{}", to_json(&all));
            } else if header {
                print_table(&[], true);
            }
            Ok(())
        }
        UsersCommand::Remove { name } => {
            service.remove_user(&name).await?;
            println!("user {name:?} removed; all of its sessions ended");
            Ok(())
        }
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}

fn print_table(users: &[UserView], header: bool) {
    if header {
        println!(
            "{:<24}  {:<22}  {:<8}  {:<20}  SCOPES",
            "USERNAME", "SUB", "STATE", "CREATED"
        );
    }
    for user in users {
        println!(
            "{:<24}  {:<22}  {:<8}  {:<20}  {}",
            user.username,
            user.sub,
            if user.disabled { "disabled" } else { "enabled" },
            crate::keys::utc(user.created_at),
            user.scopes.join(" "),
        );
    }
}

/// The password: one line from stdin (`--password-stdin`), or asked twice at the terminal
/// without echo. No terminal and no flag is a usage error (exit 2).
fn read_password(from_stdin: bool) -> Result<String, (ExitCode, String)> {
    let runtime_error = |problem: String| (ExitCode::FAILURE, problem);
    if from_stdin {
        let mut bytes = Vec::new();
        // A little more than the longest password, so that too long is told apart.
        std::io::stdin()
            .take(MAX_PASSWORD_BYTES as u64 + 3)
            .read_to_end(&mut bytes)
            .map_err(|e| runtime_error(format!("cannot read the password from stdin: {e}")))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| runtime_error("the password on stdin is not UTF-8".into()))?;
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains('\n') {
            return Err(runtime_error(
                "--password-stdin reads one line; stdin has several".into(),
            ));
        }
        return Ok(line.to_owned());
    }
    if !std::io::stdin().is_terminal() {
        return Err((
            ExitCode::from(2),
            "no terminal to ask for the password: pipe it in with --password-stdin".into(),
        ));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map_err(|e| runtime_error(format!("cannot read the password: {e}")))
    };
    let first = ask(&format!(
        "Password (at least {MIN_PASSWORD_CHARS} characters): "
    ))?;
    let second = ask("Password again: ")?;
    if first != second {
        return Err(runtime_error("the two passwords differ".into()));
    }
    Ok(first)
}
