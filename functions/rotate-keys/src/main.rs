//! Lambda function `rotate-keys`: one signing-key rotation step per EventBridge schedule
//! event, and the admin key routes from API Gateway (see `tokenlife::rotate_keys`). Builds
//! its state once at init.

use lambda_http::lambda_runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_http::tracing::init_default_subscriber();
    tokenlife::App::run_json_lambda(|service, event| async move {
        tokenlife::rotate_keys::handle_event(&service, &event).await
    })
    .await
}
