//! `tokenlife setup`: creates the DynamoDB tables and the first KMS signing key the `aws`
//! backend needs (idempotent), using the same configuration as `serve` and the Lambdas.

use std::process::ExitCode;

use tokenlife::Config;
use tokenlife::app::AwsClients;
use tokenlife::setup::ensure_tables_and_signing_key;

pub fn run(config: Config, runtime: tokio::runtime::Runtime) -> ExitCode {
    runtime.block_on(async {
        let clients = AwsClients::from_env().await;
        match ensure_tables_and_signing_key(&config, &clients).await {
            Ok(lines) => {
                for line in lines {
                    println!("{line}");
                }
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("tokenlife {error}");
                ExitCode::FAILURE
            }
        }
    })
}
