//! Lambda function `users`: the admin user routes the route table (`tokenlife::http::routes`)
//! gives `Function::Users` (list, create, show, change, remove, set a password), through the
//! shared HTTP layer. The only function that writes the users table. State is built once
//! at init.

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    tokenlife::lambda::run_http(tokenlife::lambda::Function::Users).await
}
