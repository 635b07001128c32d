//! End to end: the real `tokenlife serve` binary on a free port (the harness is
//! `tokenlife::testkit::serve`), driven over HTTP on both backends through the whole
//! lifecycle, concurrent refreshes, bad input, key rotation, and third-party verifiers
//! (Node `jose`) checking our tokens against our JWKS. The server's own output is checked
//! for leaked secrets.

mod clients;
mod lifecycle;
mod metrics;
mod rotation;
mod users;
mod verifiers;

use tokenlife::config::Backend;
use tokenlife::testkit::serve::Server;

/// The binary under test.
const BIN: &str = env!("CARGO_BIN_EXE_tokenlife");

/// `tokenlife serve` on `backend` with the settings `env`.
fn serve(backend: Backend, env: &[(&str, &str)]) -> Server {
    Server::start(BIN, backend, env)
}
