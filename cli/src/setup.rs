//! `tokenlife setup`: creates the DynamoDB tables and the KMS signing key the `aws` backend
//! needs (idempotent), using the same configuration as `serve` and the Lambdas.

use std::process::ExitCode;

use tokenlife::Config;
use tokenlife::app::AwsClients;
use tokenlife::setup::{ensure_signing_key, ensure_tables};

pub fn run() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("tokenlife setup: {error}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("tokenlife setup: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
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
