//! `tokenlife clients add|list|show|remove|rotate-secret`: the registered clients of the
//! `aws` backend, through the same service code as the admin client routes. A secret is
//! printed once (at `add` of a confidential client and at `rotate-secret`), never taken from
//! arguments, never logged.

use std::process::ExitCode;

use clap::Subcommand;
use tokenlife::http::Function;
use tokenlife::service::TokenService;
use tokenlife::service::clients::{
    ClientView, ClientWithSecret, DEFAULT_SECRET_OVERLAP_SECS, NewClient,
};
use tokenlife::{Config, Error};

#[derive(Subcommand)]
pub enum ClientsCommand {
    /// Register a client. Public (the default: browser and mobile apps) may use the
    /// password and refresh grants; --confidential (servers) gets a secret, printed once,
    /// and the client_credentials grant unless --grant says otherwise.
    Add {
        /// A name for people.
        name: String,
        /// A confidential client (it holds a secret).
        #[arg(long)]
        confidential: bool,
        /// A scope its tokens may carry (repeatable; `*` for any).
        #[arg(long = "scope", value_name = "SCOPE")]
        scopes: Vec<String>,
        /// A grant it may use (repeatable): password, refresh_token, client_credentials.
        #[arg(long = "grant", value_name = "GRANT")]
        grants: Vec<String>,
        /// It may introspect tokens issued to other clients (confidential only).
        #[arg(long)]
        introspect: bool,
        /// Its client_id, chosen (e.g. the one existing sessions were made under);
        /// generated when absent.
        #[arg(long, value_name = "ID", allow_hyphen_values = true)]
        id: Option<String>,
        /// Print `{"client_id", "client_secret", …}` as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List every client.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one client.
    Show {
        #[arg(allow_hyphen_values = true)]
        id: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a client; its client-credentials tokens are revoked at once, its users'
    /// sessions can no longer be refreshed.
    Remove {
        #[arg(allow_hyphen_values = true)]
        id: String,
    },
    /// A new secret for a confidential client, printed once; the current one keeps working
    /// for --overlap seconds (default a day), so its deployments can move.
    RotateSecret {
        #[arg(allow_hyphen_values = true)]
        id: String,
        #[arg(long, value_name = "SECONDS", default_value_t = DEFAULT_SECRET_OVERLAP_SECS)]
        overlap: u64,
        #[arg(long)]
        json: bool,
    },
}

pub fn run(command: ClientsCommand, config: Config, runtime: tokio::runtime::Runtime) -> ExitCode {
    runtime.block_on(async {
        let app = match crate::deployment("clients", config, Function::Users).await {
            Ok(app) => app,
            Err(code) => return code,
        };
        crate::finish("clients", execute(&app.service, command).await)
    })
}

async fn execute(service: &TokenService, command: ClientsCommand) -> Result<(), Error> {
    match command {
        ClientsCommand::Add {
            name,
            confidential,
            scopes,
            grants,
            introspect,
            id,
            json,
        } => {
            let registered = service
                .register_client(NewClient {
                    id,
                    name,
                    confidential,
                    grant_types: grants,
                    scopes,
                    may_introspect: introspect,
                    secret: None,
                })
                .await?;
            print_with_secret(&registered, json, "registered");
        }
        ClientsCommand::List { json } => {
            let mut all = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let page = service.list_clients(cursor.as_deref(), None).await?;
                all.extend(page.clients);
                cursor = page.next_cursor;
                if cursor.is_none() {
                    break;
                }
            }
            if json {
                println!("{}", to_json(&all));
            } else {
                print_table(&all);
            }
        }
        ClientsCommand::Show { id, json } => {
            let client = service.client(&id).await?;
            if json {
                println!("{}", to_json(&client));
            } else {
                print_table(std::slice::from_ref(&client));
            }
        }
        ClientsCommand::Remove { id } => {
            service.remove_client(&id).await?;
            println!("client {id:?} removed; its client-credentials tokens are revoked");
        }
        ClientsCommand::RotateSecret { id, overlap, json } => {
            let rotated = service.rotate_client_secret(&id, overlap).await?;
            print_with_secret(&rotated, json, "has a new secret");
        }
    }
    Ok(())
}

/// The client, and its secret once: JSON, or a line each (the secret last, alone).
fn print_with_secret(client: &ClientWithSecret, json: bool, what: &str) {
    if json {
        println!("{}", to_json(client));
        return;
    }
    println!(
        "client {:?} {what}: client_id {}",
        client.client.name, client.client.client_id
    );
    if let Some(secret) = &client.client_secret {
        println!("client_secret (shown once, keep it in a secret store):\n{secret}");
    }
}

fn print_table(clients: &[ClientView]) {
    println!(
        "{:<24}  {:<24}  {:<12}  {:<36}  SCOPES",
        "CLIENT_ID", "NAME", "TYPE", "GRANTS"
    );
    for client in clients {
        println!(
            "{:<24}  {:<24}  {:<12}  {:<36}  {}",
            client.client_id,
            client.name,
            client.kind,
            client.grant_types.join(" "),
            client.scopes.join(" "),
        );
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_else(|_| "null".into())
}
