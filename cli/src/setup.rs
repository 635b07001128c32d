//! `tokenlife setup` creates the DynamoDB tables and the first KMS signing key the `aws`
//! backend needs (idempotent); `tokenlife check` tells whether the configuration names a
//! usable deployment, changing nothing. Both use the same configuration as `serve` and the
//! Lambdas.

use std::process::ExitCode;

use tokenlife::Config;
use tokenlife::app::AwsClients;
use tokenlife::config::Backend;
use tokenlife::setup::{check, ensure_tables_and_signing_key};

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

/// Prints one line per finding (`ok` or `FAIL`); exits 1 if any failed.
pub fn run_check(config: Config, runtime: tokio::runtime::Runtime) -> ExitCode {
    if config.backend != Backend::Aws {
        println!(
            "ok    configuration: the embedded default (TOKENLIFE_BACKEND=memory) keeps its \
             state inside `tokenlife serve`; nothing else to check"
        );
        return ExitCode::SUCCESS;
    }
    runtime.block_on(async {
        let clients = AwsClients::from_env().await;
        let findings = check(&config, &clients).await;
        let mut failed = 0;
        for finding in &findings {
            match &finding.problem {
                None => println!("ok    {}", finding.what),
                Some(problem) => {
                    failed += 1;
                    println!("FAIL  {}: {problem}", finding.what);
                }
            }
        }
        if failed > 0 {
            eprintln!("tokenlife check: {failed} problem(s) found");
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        }
    })
}
