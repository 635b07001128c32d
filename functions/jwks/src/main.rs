//! Lambda function `jwks`: the routes the route table (`tokenlife::http::routes`) gives
//! `Function::Jwks`, through the shared HTTP layer. State is built once at init.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tokenlife::lambda::run_http(tokenlife::lambda::Function::Jwks).await
}
