//! Lambda function `rotate-keys`: one signing-key rotation step per EventBridge schedule
//! event, and the admin key routes from API Gateway (see `tokenlife::rotate_keys`). Builds
//! its state once at init.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_http::tracing::init_default_subscriber();
    let service = tokenlife::App::for_lambda().await?.service;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let service = service.clone();
        async move {
            tokenlife::rotate_keys::handle_event(&service, &event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
