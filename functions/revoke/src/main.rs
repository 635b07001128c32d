//! Lambda function `revoke`: the routes the route table (`tokenlife::http::routes`) gives
//! `Function::Revoke`, through the shared HTTP layer. State is built once at init.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tokenlife::lambda::run_http(tokenlife::lambda::Function::Revoke).await
}
