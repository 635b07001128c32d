//! Lambda function `authorizer`: an API Gateway Lambda authorizer for the team's own APIs
//! (see `tokenlife::authorizer`). Builds its state once at init, then verifies each event.

#[tokio::main]
async fn main() -> Result<(), lambda_http::lambda_runtime::Error> {
    tokenlife::lambda::run_events("authorizer", |service, event| async move {
        tokenlife::authorizer::authorize_event(&service, &event).await
    })
    .await
}
