//! Where logs go and in what shape, for the Lambda functions and the CLI alike: text, or
//! one JSON object per line under `AWS_LAMBDA_LOG_FORMAT=JSON` (fields at the top level;
//! see [`crate::audit`] for the audit records). The level is `AWS_LAMBDA_LOG_LEVEL`
//! (Lambda's logging controls; `FATAL` counts as ERROR) or else `RUST_LOG` when it is a
//! plain level, INFO by default. It applies to tokenlife's own code only: every other crate
//! is capped at INFO whatever the settings say — at DEBUG and TRACE the Lambda runtime logs
//! whole events (passwords, refresh tokens, Authorization headers) and the AWS SDK logs
//! request and response bodies (DynamoDB items: password hashes, sessions' reuse keys) —
//! and the audit target is always kept at INFO or lower.

use lambda_http::tracing::subscriber::filter::{EnvFilter, LevelFilter};
use lambda_http::tracing::subscriber::fmt::MakeWriter;

/// The filter for `level`: tokenlife's code at `level`, every other crate at most INFO,
/// the audit target at least INFO.
pub fn filter(level: LevelFilter) -> EnvFilter {
    let others = level.min(LevelFilter::INFO);
    let audit = level.max(LevelFilter::INFO);
    // Every level as a directive of its own: a builder's "default directive" applies only
    // when the string has none.
    let directives = format!(
        "{others},tokenlife={level},{}={audit}",
        crate::audit::TARGET
    );
    EnvFilter::builder().parse_lossy(directives)
}

/// Whether the logs are JSON: `AWS_LAMBDA_LOG_FORMAT=JSON` (else text).
pub fn json_from_env() -> bool {
    std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"))
}

/// The level from `AWS_LAMBDA_LOG_LEVEL`, else `RUST_LOG` when it is a plain level, else
/// INFO. (`RUST_LOG` directives per crate are not read: the caps above must hold.)
pub fn level_from_env() -> LevelFilter {
    ["AWS_LAMBDA_LOG_LEVEL", "RUST_LOG"]
        .iter()
        .find_map(|name| parse_level(&std::env::var(name).ok()?))
        .unwrap_or(LevelFilter::INFO)
}

/// A level by name, Lambda's `FATAL` (which tracing lacks) as ERROR.
fn parse_level(text: &str) -> Option<LevelFilter> {
    if text.eq_ignore_ascii_case("fatal") {
        return Some(LevelFilter::ERROR);
    }
    text.parse().ok()
}

/// A subscriber writing to `writer`, JSON (with a timestamp) or text (tests capture what
/// production writes with it). No timestamps on text lines: CloudWatch (and any log
/// collector) stamps them, and `serve`'s lines had none before either.
pub fn subscriber<W>(
    json: bool,
    level: LevelFilter,
    writer: W,
) -> Box<dyn tracing::Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = lambda_http::tracing::subscriber::fmt()
        .with_env_filter(filter(level))
        .with_writer(writer);
    if json {
        Box::new(
            builder
                .json()
                .flatten_event(true)
                .with_span_list(false)
                .finish(),
        )
    } else {
        Box::new(builder.without_time().finish())
    }
}

/// Logging of a Lambda function: to stdout (CloudWatch).
pub fn init_for_lambda() {
    install(subscriber(
        json_from_env(),
        level_from_env(),
        std::io::stdout,
    ));
}

/// Logging of a CLI command: to stderr (stdout is the command's output).
pub fn init_for_cli() {
    install(subscriber(
        json_from_env(),
        level_from_env(),
        std::io::stderr,
    ));
}

fn install(subscriber: Box<dyn tracing::Subscriber + Send + Sync>) {
    // A second call (tests) keeps the first subscriber.
    let _ = tracing::subscriber::set_global_default(subscriber);
}
