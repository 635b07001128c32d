//! Lambda function `rotate-keys`: one signing-key rotation step per EventBridge schedule
//! event, and the admin key routes from API Gateway (see `tokenlife::rotate_keys`). Builds
//! its state once at init.

#[tokio::main]
async fn main() -> Result<(), lambda_http::lambda_runtime::Error> {
    tokenlife::lambda::run_events(tokenlife::lambda::Function::RotateKeys.name(), |service, event| async move {
        tokenlife::rotate_keys::handle_event(&service, &event).await
    })
    .await
}
