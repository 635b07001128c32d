//! Lambda function `refresh`: the routes listed for it in `tokenlife::http::LAMBDA_FUNCTIONS`.
//! Builds its state once at init, then hands every request to the shared HTTP layer.

use std::sync::Arc;

use tokenlife::http::{function_endpoints, run_lambda};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    lambda_http::tracing::init_default_subscriber();
    let app = tokenlife::App::for_lambda().await?;
    run_lambda(Arc::clone(&app.service), function_endpoints("refresh")).await
}
