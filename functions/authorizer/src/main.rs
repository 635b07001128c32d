//! Lambda function `authorizer`: an API Gateway Lambda authorizer for the team's own APIs
//! (see `tokenlife::authorizer`). Builds its state once at init, then verifies each event.

use lambda_http::lambda_runtime::{self, LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_http::tracing::init_default_subscriber();
    let service = tokenlife::App::for_lambda().await?.service;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<serde_json::Value>| {
        let service = service.clone();
        async move {
            tokenlife::authorizer::authorize_event(&service, &event.payload)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
