//! Lambda function `authorizer`: an API Gateway Lambda authorizer for the team's own APIs
//! (see `tokenlife::authorizer`). Builds its state once at init, then verifies each event.

use lambda_http::lambda_runtime;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_http::tracing::init_default_subscriber();
    tokenlife::App::run_json_lambda(|service, event| async move {
        tokenlife::authorizer::authorize_event(&service, &event).await
    })
    .await
}
