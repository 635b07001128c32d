//! Operational metrics: what tokenlife counts and times, and the two ways the figures leave
//! the process. This module owns the metric names, their outcomes, units and help texts
//! (the README's table is rendered from [`Metric::ALL`]); the code where something happens
//! calls [`count`], [`signing_key_age`] or (the SDK clients' [`AwsCallTimer`]) a latency.
//!
//! - **Lambda**: CloudWatch's Embedded Metric Format (EMF) — after each invocation, one JSON
//!   line on stdout per outcome the invocation recorded (usually one), which CloudWatch
//!   Logs turns into metrics: no API call, no added latency, no extra permission. See
//!   [`Invocation::emf_lines`] and [`in_invocation`]; `crate::lambda` prints them.
//! - **`tokenlife serve`**: the process's totals in the Prometheus text format
//!   ([`prometheus_text`]), on a listener of its own (`--metrics-addr`), never the API's.
//!
//! Bounded by construction: a metric's dimensions are the function and the outcome (a
//! fixed list per metric), and for latencies the AWS operation (the few the code calls) —
//! never a user, token, client or address. Counting is a relaxed atomic add and, inside a
//! Lambda invocation, an add to the task's tally: no allocation, no lock, no I/O. A
//! latency takes a process-wide lock and a few small allocations — per AWS call, a network
//! round trip, so nothing that shows. An invocation keeps at most 100 latencies per
//! operation (EMF's limit per metric and document; only "sign out everywhere else" makes
//! more, and the rest are dropped), and an invocation that panics prints none.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// What a metric's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
    Milliseconds,
}

impl Unit {
    /// The unit's name in EMF (CloudWatch's `StandardUnit`).
    pub fn name(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
            Unit::Milliseconds => "Milliseconds",
        }
    }
}

/// Every metric. CloudWatch names are [`Metric::name`]; Prometheus names
/// [`Metric::prometheus_name`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    Logins,
    Refreshes,
    Revocations,
    Verifications,
    SigningKeyChanges,
    SigningKeyAge,
    AwsCallLatency,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Logins,
        Metric::Refreshes,
        Metric::Revocations,
        Metric::Verifications,
        Metric::SigningKeyChanges,
        Metric::SigningKeyAge,
        Metric::AwsCallLatency,
    ];

    /// The CloudWatch metric name (for [`Metric::AwsCallLatency`], the prefix of one name
    /// per operation: `Latency.DynamoDB.BatchGetItem`).
    pub fn name(self) -> &'static str {
        match self {
            Metric::Logins => "Logins",
            Metric::Refreshes => "Refreshes",
            Metric::Revocations => "Revocations",
            Metric::Verifications => "Verifications",
            Metric::SigningKeyChanges => "SigningKeyChanges",
            Metric::SigningKeyAge => "SigningKeyAge",
            Metric::AwsCallLatency => "Latency",
        }
    }

    pub fn prometheus_name(self) -> &'static str {
        match self {
            Metric::Logins => "tokenlife_logins_total",
            Metric::Refreshes => "tokenlife_refreshes_total",
            Metric::Revocations => "tokenlife_revocations_total",
            Metric::Verifications => "tokenlife_verifications_total",
            Metric::SigningKeyChanges => "tokenlife_signing_key_changes_total",
            Metric::SigningKeyAge => "tokenlife_signing_key_age_seconds",
            Metric::AwsCallLatency => "tokenlife_aws_call_duration_seconds",
        }
    }

    pub fn unit(self) -> Unit {
        match self {
            Metric::SigningKeyAge => Unit::Seconds,
            Metric::AwsCallLatency => Unit::Milliseconds,
            _ => Unit::Count,
        }
    }

    /// What it measures (Prometheus `HELP`, the README).
    pub fn help(self) -> &'static str {
        match self {
            Metric::Logins => {
                "Password logins, by outcome (throttled: refused by a login limit before any password work)."
            }
            Metric::Refreshes => {
                "Refresh-token redemptions, by outcome (grace_replay: a retry within the grace window got the same successor; reuse_detected: a spent token ended its session; refused: invalid, expired, ended or another client's)."
            }
            Metric::Revocations => {
                "What was revoked: one access token, one session (revocation, logout, by its user or an admin, including each of 'other sessions'), or all of a user's sessions."
            }
            Metric::Verifications => {
                "Access-token verifications, by outcome, one per check: the authorizer's and every bearer route's (/userinfo — behind the authorizer in the template, so checked twice —, /sessions, the admin routes; a request without a bearer token is none); unavailable: the check could not finish (the revocation store or the key registry did not answer, or an internal error) and failed closed."
            }
            Metric::SigningKeyChanges => {
                "Signing-key registry changes, by outcome: a key created, promoted to active or retired; failed: a rotation step that failed."
            }
            Metric::SigningKeyAge => {
                "Seconds since the signing key in use became active, as of the last token signed or scheduled rotation run (in serve: of the scrape)."
            }
            Metric::AwsCallLatency => {
                "Duration of each DynamoDB and KMS call, the SDK's retries included."
            }
        }
    }

    /// The dimension sets of its CloudWatch metrics.
    pub fn dimensions(self) -> &'static str {
        match self {
            Metric::SigningKeyAge => "`function`; none",
            Metric::AwsCallLatency => "`function`",
            _ => "`function`, `outcome`; `outcome`",
        }
    }

    /// Its outcomes, in order.
    pub fn outcomes(self) -> impl Iterator<Item = &'static str> {
        Count::ALL
            .iter()
            .filter(move |count| count.metric() == self)
            .map(|count| count.outcome())
    }
}

/// Something counted: a metric and one of its outcomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Count {
    LoginSucceeded,
    LoginFailed,
    LoginThrottled,
    RefreshRotated,
    RefreshGraceReplay,
    RefreshReuseDetected,
    RefreshRefused,
    RevokedAccessToken,
    RevokedSession,
    RevokedUser,
    VerificationAllowed,
    VerificationExpired,
    VerificationRevoked,
    VerificationBadSignature,
    VerificationUnknownKid,
    VerificationInvalid,
    VerificationUnavailable,
    KeyCreated,
    KeyPromoted,
    KeyRetired,
    RotationFailed,
}

const COUNTS: usize = 21;

impl Count {
    /// In the order of their discriminants (`Count as usize` indexes the tallies).
    pub const ALL: [Count; COUNTS] = [
        Count::LoginSucceeded,
        Count::LoginFailed,
        Count::LoginThrottled,
        Count::RefreshRotated,
        Count::RefreshGraceReplay,
        Count::RefreshReuseDetected,
        Count::RefreshRefused,
        Count::RevokedAccessToken,
        Count::RevokedSession,
        Count::RevokedUser,
        Count::VerificationAllowed,
        Count::VerificationExpired,
        Count::VerificationRevoked,
        Count::VerificationBadSignature,
        Count::VerificationUnknownKid,
        Count::VerificationInvalid,
        Count::VerificationUnavailable,
        Count::KeyCreated,
        Count::KeyPromoted,
        Count::KeyRetired,
        Count::RotationFailed,
    ];

    pub fn metric(self) -> Metric {
        use Count::*;
        match self {
            LoginSucceeded | LoginFailed | LoginThrottled => Metric::Logins,
            RefreshRotated | RefreshGraceReplay | RefreshReuseDetected | RefreshRefused => {
                Metric::Refreshes
            }
            RevokedAccessToken | RevokedSession | RevokedUser => Metric::Revocations,
            VerificationAllowed
            | VerificationExpired
            | VerificationRevoked
            | VerificationBadSignature
            | VerificationUnknownKid
            | VerificationInvalid
            | VerificationUnavailable => Metric::Verifications,
            KeyCreated | KeyPromoted | KeyRetired | RotationFailed => Metric::SigningKeyChanges,
        }
    }

    pub fn outcome(self) -> &'static str {
        use Count::*;
        match self {
            LoginSucceeded => "succeeded",
            LoginFailed => "failed",
            LoginThrottled => "throttled",
            RefreshRotated => "rotated",
            RefreshGraceReplay => "grace_replay",
            RefreshReuseDetected => "reuse_detected",
            RefreshRefused => "refused",
            RevokedAccessToken => "access_token",
            RevokedSession => "session",
            RevokedUser => "user",
            VerificationAllowed => "allowed",
            VerificationExpired => "expired",
            VerificationRevoked => "revoked",
            VerificationBadSignature => "bad_signature",
            VerificationUnknownKid => "unknown_kid",
            VerificationInvalid => "invalid",
            VerificationUnavailable => "unavailable",
            KeyCreated => "created",
            KeyPromoted => "promoted",
            KeyRetired => "retired",
            RotationFailed => "failed",
        }
    }
}

/// The AWS services whose calls are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AwsService {
    DynamoDb,
    Kms,
}

impl AwsService {
    pub fn name(self) -> &'static str {
        match self {
            AwsService::DynamoDb => "DynamoDB",
            AwsService::Kms => "KMS",
        }
    }
}

// ---- recording ----

/// The process's totals (what `/metrics` shows).
static TOTALS: [AtomicU64; COUNTS] = [const { AtomicU64::new(0) }; COUNTS];
/// The last signing-key age recorded, plus one (0: none yet).
static KEY_AGE: AtomicU64 = AtomicU64::new(0);
/// Latency histograms by (service, operation): a few operations, each call a
/// millisecond-scale network round trip, so one lock per call costs nothing that shows.
static LATENCIES: Mutex<BTreeMap<(AwsService, String), Histogram>> = Mutex::new(BTreeMap::new());

/// Bucket bounds of the latency histograms, in seconds.
const BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Latencies kept per operation within one invocation (EMF takes at most 100 values per
/// metric in one document).
const MAX_VALUES: usize = 100;

#[derive(Debug, Clone, Default)]
struct Histogram {
    /// Cumulative-ready: `buckets[i]` counts values `<= BUCKETS[i]` but above the bound before.
    buckets: [u64; BUCKETS.len()],
    count: u64,
    sum_secs: f64,
}

/// What one Lambda invocation recorded (see [`in_invocation`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Invocation {
    counts: [u64; COUNTS],
    key_age_secs: Option<u64>,
    /// Milliseconds per `Latency.<service>.<operation>` name.
    latencies: BTreeMap<String, Vec<f64>>,
}

tokio::task_local! {
    static INVOCATION: RefCell<Invocation>;
}

/// Counts one `what`.
pub fn count(what: Count) {
    count_n(what, 1);
}

/// Counts `n` of `what` (0 counts nothing).
pub fn count_n(what: Count, n: u64) {
    if n == 0 {
        return;
    }
    TOTALS[what as usize].fetch_add(n, Relaxed);
    let _ = INVOCATION.try_with(|tally| tally.borrow_mut().counts[what as usize] += n);
}

/// Records the age of the signing key in use.
pub fn signing_key_age(age_secs: u64) {
    KEY_AGE.store(age_secs.saturating_add(1), Relaxed);
    let _ = INVOCATION.try_with(|tally| tally.borrow_mut().key_age_secs = Some(age_secs));
}

/// Records one AWS call's duration.
pub fn aws_call(service: AwsService, operation: &str, took: Duration) {
    let secs = took.as_secs_f64();
    {
        let mut latencies = LATENCIES.lock().unwrap_or_else(|e| e.into_inner());
        let histogram = latencies
            .entry((service, operation.to_owned()))
            .or_default();
        let bucket = BUCKETS.iter().position(|&bound| secs <= bound);
        if let Some(bucket) = bucket {
            histogram.buckets[bucket] += 1;
        }
        histogram.count += 1;
        histogram.sum_secs += secs;
    }
    let _ = INVOCATION.try_with(|tally| {
        let mut tally = tally.borrow_mut();
        let name = latency_name(service, operation);
        let values = tally.latencies.entry(name).or_default();
        if values.len() < MAX_VALUES {
            values.push((secs * 1000.0 * 1000.0).round() / 1000.0);
        }
    });
}

fn latency_name(service: AwsService, operation: &str) -> String {
    format!(
        "{}.{}.{operation}",
        Metric::AwsCallLatency.name(),
        service.name()
    )
}

/// The process's total of `what` so far.
pub fn total(what: Count) -> u64 {
    TOTALS[what as usize].load(Relaxed)
}

/// Runs `work` as one invocation, handing back what it recorded with its output.
pub async fn in_invocation<F: Future>(work: F) -> (F::Output, Invocation) {
    INVOCATION
        .scope(RefCell::new(Invocation::default()), async {
            let output = work.await;
            (output, INVOCATION.with(|tally| tally.take()))
        })
        .await
}

// ---- EMF (Lambda) ----

/// Where a Lambda function's EMF documents go: its namespace (one per deployment) and its
/// name, the `function` dimension.
#[derive(Debug, Clone)]
pub struct Emf {
    pub namespace: String,
    pub function: &'static str,
}

impl Invocation {
    /// How many of `what` it counted.
    pub fn count_of(&self, what: Count) -> u64 {
        self.counts[what as usize]
    }

    pub fn is_empty(&self) -> bool {
        self == &Invocation::default()
    }

    /// Its EMF documents, one JSON object per line: one per outcome it counted (the
    /// counts under dimension sets `[function, outcome]` and `[outcome]`), the key age
    /// (`[function]` and none) and the latencies (`[function]`) in the first. None when it
    /// recorded nothing.
    pub fn emf_lines(&self, emf: &Emf, timestamp_ms: u64) -> Vec<String> {
        let mut by_outcome: BTreeMap<&str, Vec<Count>> = BTreeMap::new();
        for what in Count::ALL {
            if self.count_of(what) > 0 {
                by_outcome.entry(what.outcome()).or_default().push(what);
            }
        }
        let mut documents: Vec<serde_json::Map<String, serde_json::Value>> = Vec::new();
        let directive = |dimensions: serde_json::Value, metrics: Vec<serde_json::Value>| {
            serde_json::json!({
                "Namespace": emf.namespace,
                "Dimensions": dimensions,
                "Metrics": metrics,
            })
        };
        let metric =
            |name: &str, unit: Unit| serde_json::json!({"Name": name, "Unit": unit.name()});
        for (outcome, counted) in &by_outcome {
            let mut document = serde_json::Map::new();
            document.insert("function".into(), emf.function.into());
            document.insert("outcome".into(), (*outcome).into());
            let mut metrics = Vec::new();
            for what in counted {
                let name = what.metric().name();
                metrics.push(metric(name, Unit::Count));
                document.insert(name.into(), self.count_of(*what).into());
            }
            document.insert(
                "_aws".into(),
                serde_json::json!({
                    "Timestamp": timestamp_ms,
                    "CloudWatchMetrics": [directive(serde_json::json!([["function", "outcome"], ["outcome"]]), metrics)],
                }),
            );
            documents.push(document);
        }
        // The key age also without dimensions (one figure per deployment, for an alarm);
        // latencies per function only.
        let mut extra = Vec::new();
        let mut values = serde_json::Map::new();
        if let Some(age) = self.key_age_secs {
            let name = Metric::SigningKeyAge.name();
            extra.push(directive(
                serde_json::json!([["function"], []]),
                vec![metric(name, Unit::Seconds)],
            ));
            values.insert(name.into(), age.into());
        }
        if !self.latencies.is_empty() {
            let mut metrics = Vec::new();
            for (name, latencies) in &self.latencies {
                metrics.push(metric(name, Unit::Milliseconds));
                values.insert(name.clone(), latencies.clone().into());
            }
            extra.push(directive(serde_json::json!([["function"]]), metrics));
        }
        if !extra.is_empty() {
            if documents.is_empty() {
                let mut document = serde_json::Map::new();
                document.insert("function".into(), emf.function.into());
                document.insert(
                    "_aws".into(),
                    serde_json::json!({"Timestamp": timestamp_ms, "CloudWatchMetrics": []}),
                );
                documents.push(document);
            }
            let first = &mut documents[0];
            first.extend(values);
            if let Some(list) = first
                .get_mut("_aws")
                .and_then(|aws| aws.get_mut("CloudWatchMetrics"))
                .and_then(serde_json::Value::as_array_mut)
            {
                list.extend(extra);
            }
        }
        documents
            .into_iter()
            .map(|document| serde_json::Value::Object(document).to_string())
            .collect()
    }
}

// ---- Prometheus (serve) ----

/// The process's totals in the Prometheus text exposition format (version 0.0.4).
pub fn prometheus_text() -> String {
    let mut text = String::new();
    for metric in Metric::ALL {
        let name = metric.prometheus_name();
        let kind = match metric {
            Metric::SigningKeyAge => "gauge",
            Metric::AwsCallLatency => "histogram",
            _ => "counter",
        };
        let _ = writeln!(text, "# HELP {name} {}", metric.help());
        let _ = writeln!(text, "# TYPE {name} {kind}");
        match metric {
            Metric::SigningKeyAge => {
                if let Some(age) = KEY_AGE.load(Relaxed).checked_sub(1) {
                    let _ = writeln!(text, "{name} {age}");
                }
            }
            Metric::AwsCallLatency => {
                let latencies = LATENCIES.lock().unwrap_or_else(|e| e.into_inner());
                for ((service, operation), histogram) in latencies.iter() {
                    let labels = format!(
                        "service=\"{}\",operation=\"{}\"",
                        service.name(),
                        label_value(operation)
                    );
                    let mut cumulative = 0;
                    for (bound, in_bucket) in BUCKETS.iter().zip(histogram.buckets) {
                        cumulative += in_bucket;
                        let _ = writeln!(
                            text,
                            "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
                        );
                    }
                    let _ = writeln!(
                        text,
                        "{name}_bucket{{{labels},le=\"+Inf\"}} {}",
                        histogram.count
                    );
                    let _ = writeln!(text, "{name}_sum{{{labels}}} {}", histogram.sum_secs);
                    let _ = writeln!(text, "{name}_count{{{labels}}} {}", histogram.count);
                }
            }
            _ => {
                for what in Count::ALL.iter().filter(|c| c.metric() == metric) {
                    let _ = writeln!(
                        text,
                        "{name}{{outcome=\"{}\"}} {}",
                        what.outcome(),
                        total(*what)
                    );
                }
            }
        }
    }
    text
}

/// A label value as the text format wants it (operation names are plain words; this is
/// for safety only).
fn label_value(value: &str) -> String {
    value
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect()
}

// ---- the AWS SDK's clients ----

/// An SDK interceptor timing every operation from its start to its end, retries
/// included, named by the operation's metadata (`GetItem`, `Sign`).
#[derive(Debug, Clone, Copy)]
pub struct AwsCallTimer(pub AwsService);

#[derive(Debug, Clone, Copy)]
struct Started(Instant);

impl aws_smithy_types::config_bag::Storable for Started {
    type Storer = aws_smithy_types::config_bag::StoreReplace<Self>;
}

impl aws_smithy_runtime_api::client::interceptors::Intercept for AwsCallTimer {
    fn name(&self) -> &'static str {
        "AwsCallTimer"
    }

    fn read_before_execution(
        &self,
        _: &aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef<'_>,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        cfg.interceptor_state().store_put(Started(Instant::now()));
        Ok(())
    }

    fn read_after_execution(
        &self,
        _: &aws_smithy_runtime_api::client::interceptors::context::FinalizerInterceptorContextRef<
            '_,
        >,
        _: &aws_smithy_runtime_api::client::runtime_components::RuntimeComponents,
        cfg: &mut aws_smithy_types::config_bag::ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        let started = cfg.load::<Started>().map(|started| started.0);
        let operation = cfg
            .load::<aws_smithy_runtime_api::client::orchestrator::Metadata>()
            .map(|metadata| metadata.name().to_owned());
        if let (Some(started), Some(operation)) = (started, operation) {
            aws_call(self.0, &operation, started.elapsed());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_count_is_listed_in_order_and_named_once_per_metric() {
        for (i, what) in Count::ALL.iter().enumerate() {
            assert_eq!(*what as usize, i, "{what:?} out of order");
        }
        for metric in Metric::ALL {
            let outcomes: Vec<_> = metric.outcomes().collect();
            let mut unique = outcomes.clone();
            unique.sort();
            unique.dedup();
            assert_eq!(
                unique.len(),
                outcomes.len(),
                "{metric:?} repeats an outcome"
            );
            let counted = !outcomes.is_empty();
            assert_eq!(counted, metric.unit() == Unit::Count, "{metric:?}");
            assert!(metric.prometheus_name().starts_with("tokenlife_"));
        }
    }

    fn parsed(lines: &[String]) -> Vec<serde_json::Value> {
        lines
            .iter()
            .map(|line| {
                assert!(!line.contains('\n'));
                serde_json::from_str(line).unwrap()
            })
            .collect()
    }

    const EMF: fn() -> Emf = || Emf {
        namespace: "tokenlife/test".into(),
        function: "login",
    };

    #[tokio::test]
    async fn an_invocation_is_one_document_per_outcome_with_latencies_in_the_first() {
        let ((), tally) = in_invocation(async {
            count(Count::LoginSucceeded);
            count(Count::RevokedSession);
            count_n(Count::RevokedAccessToken, 2);
            count_n(Count::RevokedUser, 0);
            signing_key_age(3600);
            aws_call(
                AwsService::DynamoDb,
                "BatchGetItem",
                Duration::from_micros(2500),
            );
            aws_call(
                AwsService::DynamoDb,
                "BatchGetItem",
                Duration::from_micros(1250),
            );
            aws_call(AwsService::Kms, "Sign", Duration::from_millis(15));
        })
        .await;
        let documents = parsed(&tally.emf_lines(&EMF(), 1_700_000_000_123));
        assert_eq!(documents.len(), 3, "{documents:#?}");
        // BTreeMap order of outcomes: access_token, session, succeeded.
        let first = &documents[0];
        assert_eq!(first["outcome"], "access_token");
        assert_eq!(first["Revocations"], 2);
        assert_eq!(first["function"], "login");
        assert_eq!(first["_aws"]["Timestamp"], 1_700_000_000_123u64);
        let directives = first["_aws"]["CloudWatchMetrics"].as_array().unwrap();
        assert_eq!(directives.len(), 3);
        assert_eq!(directives[0]["Namespace"], "tokenlife/test");
        assert_eq!(
            directives[0]["Dimensions"],
            serde_json::json!([["function", "outcome"], ["outcome"]])
        );
        assert_eq!(
            directives[0]["Metrics"],
            serde_json::json!([{"Name": "Revocations", "Unit": "Count"}])
        );
        assert_eq!(
            directives[1]["Dimensions"],
            serde_json::json!([["function"], []])
        );
        assert_eq!(
            directives[1]["Metrics"],
            serde_json::json!([{"Name": "SigningKeyAge", "Unit": "Seconds"}])
        );
        assert_eq!(
            directives[2]["Dimensions"],
            serde_json::json!([["function"]])
        );
        assert_eq!(
            directives[2]["Metrics"],
            serde_json::json!([
                {"Name": "Latency.DynamoDB.BatchGetItem", "Unit": "Milliseconds"},
                {"Name": "Latency.KMS.Sign", "Unit": "Milliseconds"},
            ])
        );
        assert_eq!(first["SigningKeyAge"], 3600);
        assert_eq!(
            first["Latency.DynamoDB.BatchGetItem"],
            serde_json::json!([2.5, 1.25])
        );
        assert_eq!(first["Latency.KMS.Sign"], serde_json::json!([15.0]));
        assert_eq!(documents[1]["outcome"], "session");
        assert_eq!(documents[1]["Revocations"], 1);
        assert_eq!(documents[2]["outcome"], "succeeded");
        assert_eq!(documents[2]["Logins"], 1);
        for document in &documents[1..] {
            assert_eq!(
                document["_aws"]["CloudWatchMetrics"]
                    .as_array()
                    .unwrap()
                    .len(),
                1
            );
            assert!(document.get("SigningKeyAge").is_none());
        }
        // Every metric a directive names is a member of its document (EMF's rule).
        for document in &documents {
            for directive in document["_aws"]["CloudWatchMetrics"].as_array().unwrap() {
                for metric in directive["Metrics"].as_array().unwrap() {
                    let name = metric["Name"].as_str().unwrap();
                    assert!(document.get(name).is_some(), "{name} missing");
                }
                for set in directive["Dimensions"].as_array().unwrap() {
                    for dimension in set.as_array().unwrap() {
                        let key = dimension.as_str().unwrap();
                        assert!(document[key].is_string(), "dimension {key} not a string");
                    }
                }
            }
        }
    }

    #[tokio::test]
    async fn latencies_alone_make_one_document_and_nothing_makes_none() {
        let ((), tally) = in_invocation(async {
            aws_call(AwsService::DynamoDb, "GetItem", Duration::from_millis(3));
        })
        .await;
        let documents = parsed(&tally.emf_lines(&EMF(), 1));
        assert_eq!(documents.len(), 1);
        assert!(documents[0].get("outcome").is_none());
        assert_eq!(
            documents[0]["Latency.DynamoDB.GetItem"],
            serde_json::json!([3.0])
        );
        let ((), nothing) = in_invocation(async {}).await;
        assert!(nothing.is_empty());
        assert!(nothing.emf_lines(&EMF(), 1).is_empty());
    }

    #[tokio::test]
    async fn an_invocation_keeps_at_most_a_hundred_latencies_per_operation() {
        let ((), tally) = in_invocation(async {
            for _ in 0..150 {
                aws_call(AwsService::DynamoDb, "Query", Duration::from_millis(1));
            }
        })
        .await;
        let documents = parsed(&tally.emf_lines(&EMF(), 1));
        assert_eq!(
            documents[0]["Latency.DynamoDB.Query"]
                .as_array()
                .unwrap()
                .len(),
            MAX_VALUES
        );
    }

    #[tokio::test]
    async fn counts_outside_an_invocation_reach_the_totals_only() {
        let before = total(Count::KeyPromoted);
        count(Count::KeyPromoted);
        assert!(total(Count::KeyPromoted) > before);
        let ((), tally) = in_invocation(async {}).await;
        assert_eq!(tally.count_of(Count::KeyPromoted), 0);
    }

    /// README's table of metrics, as rendered from [`Metric::ALL`].
    fn readme_table() -> String {
        let mut table = String::from(
            "| CloudWatch | Prometheus | CloudWatch unit | CloudWatch dimensions | Outcomes | What |\n|---|---|---|---|---|---|\n",
        );
        for metric in Metric::ALL {
            let name = match metric {
                Metric::AwsCallLatency => "`Latency.<service>.<operation>`".to_owned(),
                other => format!("`{}`", other.name()),
            };
            let outcomes: Vec<String> = metric.outcomes().map(|o| format!("`{o}`")).collect();
            let outcomes = if outcomes.is_empty() {
                "—".to_owned()
            } else {
                outcomes.join(", ")
            };
            let _ = writeln!(
                table,
                "| {name} | `{}` | {} | {} | {outcomes} | {} |",
                metric.prometheus_name(),
                metric.unit().name(),
                metric.dimensions(),
                metric.help()
            );
        }
        table
    }

    #[test]
    fn readme_lists_every_metric() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let table = readme_table();
        assert!(
            readme.contains(&table),
            "README.md's table of metrics differs from metrics::Metric; it should read:\n\n{table}"
        );
    }

    #[test]
    fn the_prometheus_text_has_every_family_once() {
        count(Count::VerificationAllowed);
        aws_call(AwsService::Kms, "Sign", Duration::from_millis(7));
        let text = prometheus_text();
        for metric in Metric::ALL {
            let name = metric.prometheus_name();
            assert_eq!(
                text.matches(&format!("# TYPE {name} ")).count(),
                1,
                "{name}"
            );
        }
        assert!(text.contains("tokenlife_verifications_total{outcome=\"allowed\"} "));
        assert!(text.contains(
            "tokenlife_aws_call_duration_seconds_bucket{service=\"KMS\",operation=\"Sign\",le=\"0.01\"} "
        ));
        assert!(text.ends_with('\n'));
    }
}
