//! `tokenlife setup`: creates the DynamoDB tables and the KMS signing key the `aws` backend
//! needs (idempotent), using the same configuration as `serve` and the Lambdas.

use std::process::ExitCode;

use tokenlife::Config;
use tokenlife::app::AwsClients;
use tokenlife::setup::{ensure_signing_key, ensure_tables};

pub fn run(config: Config, runtime: tokio::runtime::Runtime) -> ExitCode {
    runtime.block_on(async {
        let clients = AwsClients::from_env().await;
        let tables = match ensure_tables(&clients.dynamodb, &config.tables).await {
            Ok(lines) => lines,
            Err(error) => {
                eprintln!("tokenlife {error}");
                return ExitCode::FAILURE;
            }
        };
        for line in tables {
            println!("{line}");
        }
        match ensure_signing_key(&clients.kms, &config.kms_key, config.algorithm).await {
            Ok(line) => {
                println!("{line}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("tokenlife {error}");
                ExitCode::FAILURE
            }
        }
    })
}
