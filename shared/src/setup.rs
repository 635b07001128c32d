//! `tokenlife setup`: creates what the `aws` backend needs, idempotently — the four
//! DynamoDB tables (on-demand, TTL on `expires_at` for sessions and revocations, the
//! sessions table's `by-user` index, the keys table) and, when the key registry has no
//! active key, a KMS signing key (ECC_NIST_P256 for ES256, RSA_2048 for RS256) made active
//! at once — with `TOKENLIFE_SIGNING=data-key`, a data key pair wrapped under the wrapping
//! key, which setup creates first if the default alias names none. A second run changes
//! nothing and says so.
//!
//! `tokenlife check` ([`check`]) reads the same things without changing any: whether the
//! configuration names a usable deployment.

use std::sync::Arc;
use std::time::Duration;

use crate::app::{App, AwsClients};
use crate::clock::SystemClock;
use crate::config::{Config, Signing};
use crate::keys::KeyState;
use crate::store::TableNames;
use crate::store::dynamodb::SESSIONS_BY_USER_INDEX;
use crate::store::dynamodb::items::SESSION_SUMMARY_ATTRIBUTES;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
};

#[derive(Debug, thiserror::Error)]
#[error("setup: {0}")]
pub struct SetupError(String);

fn fail(what: &str, error: impl std::fmt::Display) -> SetupError {
    SetupError(format!("{what}: {error}"))
}

/// Creates the tables that are missing and turns TTL on where it is off; one line per
/// table saying what was done.
pub async fn ensure_tables(
    client: &aws_sdk_dynamodb::Client,
    tables: &TableNames,
) -> Result<Vec<String>, SetupError> {
    let mut report = Vec::new();
    let specs: [(&str, &str, bool, bool); 5] = [
        (&tables.users, "username", false, false),
        (&tables.sessions, "id", true, true),
        (&tables.revocations, "key", true, false),
        (&tables.keys, "id", false, false),
        (&tables.clients, "client_id", false, false),
    ];
    for (table, key, ttl, by_user_index) in specs {
        let exists = match client.describe_table().table_name(table).send().await {
            Ok(_) => true,
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                false
            }
            Err(e) => {
                return Err(fail(
                    &format!("DescribeTable {table}"),
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                ));
            }
        };
        if exists {
            report.push(format!("table {table}: exists"));
        } else {
            create_table(client, table, key, by_user_index).await?;
            report.push(format!("table {table}: created"));
        }
        wait_until_active(client, table).await?;
        if ttl {
            report.push(ensure_ttl(client, table).await?);
        }
    }
    Ok(report)
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
    by_user_index: bool,
) -> Result<(), SetupError> {
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .map_err(|e| fail("table definition", e))
    };
    let hash_key = |name: &str| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(KeyType::Hash)
            .build()
            .map_err(|e| fail("table definition", e))
    };
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(key)?)
        .key_schema(hash_key(key)?);
    if by_user_index {
        // A user's sessions newest first, with what a listing shows ("your devices").
        let created = KeySchemaElement::builder()
            .attribute_name("created_ms")
            .key_type(KeyType::Range)
            .build()
            .map_err(|e| fail("index definition", e))?;
        let mut projection = Projection::builder().projection_type(ProjectionType::Include);
        for attribute in SESSION_SUMMARY_ATTRIBUTES {
            projection = projection.non_key_attributes(attribute);
        }
        let index = GlobalSecondaryIndex::builder()
            .index_name(SESSIONS_BY_USER_INDEX)
            .key_schema(hash_key("user_id")?)
            .key_schema(created)
            .projection(projection.build())
            .build()
            .map_err(|e| fail("index definition", e))?;
        let created_ms = AttributeDefinition::builder()
            .attribute_name("created_ms")
            .attribute_type(ScalarAttributeType::N)
            .build()
            .map_err(|e| fail("table definition", e))?;
        request = request
            .attribute_definitions(attribute("user_id")?)
            .attribute_definitions(created_ms)
            .global_secondary_indexes(index);
    }
    match request.send().await {
        Ok(_) => Ok(()),
        // Created meanwhile by a concurrent setup: fine.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            Ok(())
        }
        Err(e) => Err(fail(
            &format!("CreateTable {table}"),
            aws_sdk_dynamodb::error::DisplayErrorContext(e),
        )),
    }
}

async fn wait_until_active(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SetupError> {
    for _ in 0..120 {
        let output = client
            .describe_table()
            .table_name(table)
            .send()
            .await
            .map_err(|e| {
                fail(
                    &format!("DescribeTable {table}"),
                    aws_sdk_dynamodb::error::DisplayErrorContext(e),
                )
            })?;
        if output.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(SetupError(format!(
        "table {table} did not become ACTIVE within a minute"
    )))
}

async fn ensure_ttl(client: &aws_sdk_dynamodb::Client, table: &str) -> Result<String, SetupError> {
    let output = client
        .describe_time_to_live()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            fail(
                &format!("DescribeTimeToLive {table}"),
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            )
        })?;
    let status = output
        .time_to_live_description()
        .and_then(|d| d.time_to_live_status());
    if matches!(
        status,
        Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
    ) {
        return Ok(format!("table {table}: TTL on expires_at already on"));
    }
    let spec = TimeToLiveSpecification::builder()
        .attribute_name("expires_at")
        .enabled(true)
        .build()
        .map_err(|e| fail("TTL specification", e))?;
    client
        .update_time_to_live()
        .table_name(table)
        .time_to_live_specification(spec)
        .send()
        .await
        .map_err(|e| {
            fail(
                &format!("UpdateTimeToLive {table}"),
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            )
        })?;
    Ok(format!("table {table}: TTL on expires_at turned on"))
}

/// Everything `tokenlife setup` does: the tables, then an active signing key (a new KMS
/// key, when the registry has none). One line per thing checked or done.
pub async fn ensure_tables_and_signing_key(
    config: &Config,
    clients: &AwsClients,
) -> Result<Vec<String>, SetupError> {
    let mut report = ensure_tables(&clients.dynamodb, &config.tables).await?;
    if config.signing == Signing::DataKey {
        report.push(ensure_wrapping_key(config, &clients.kms).await?);
    }
    let app = App::aws(
        config.clone(),
        "https://setup.invalid",
        clients.clone(),
        Arc::new(SystemClock),
    )
    .await
    .map_err(|e| fail("start", e))?;
    let keys = app
        .service
        .ensure_active_key()
        .await
        .map_err(|e| fail("signing key", e.for_operator()))?;
    if keys.changed {
        report.extend(keys.actions.iter().map(|a| format!("signing keys: {a}")));
    } else {
        for key in keys.keys.iter().filter(|k| k.state == KeyState::Active) {
            report.push(format!(
                "signing keys: active key {} exists ({})",
                key.kid, key.key_ref
            ));
        }
    }
    Ok(report)
}

/// Data-key signing's wrapping key: found (and fit to wrap), or — when the setting is
/// unset and its default alias names nothing — created (symmetric, yearly rotation of its
/// material by KMS, tagged for the registry) under that alias.
async fn ensure_wrapping_key(
    config: &Config,
    kms: &aws_sdk_kms::Client,
) -> Result<String, SetupError> {
    let key = config.wrapping_key();
    match describe_wrapping_key(kms, &key).await {
        Ok(arn) => return Ok(format!("wrapping key {key}: exists ({arn})")),
        Err(WrappingKeyProblem::Missing) if config.wrapping_key.is_none() => {}
        Err(problem) => return Err(fail(&format!("wrapping key {key}"), problem)),
    }
    let tag = aws_sdk_kms::types::Tag::builder()
        .tag_key(crate::keys::kms::REGISTRY_TAG)
        .tag_value(&config.tables.keys)
        .build()
        .map_err(|e| fail("wrapping key tag", e))?;
    let created = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::SymmetricDefault)
        .key_usage(aws_sdk_kms::types::KeyUsageType::EncryptDecrypt)
        .description(format!(
            "tokenlife data-key wrapping key ({})",
            config.tables.keys
        ))
        .tags(tag)
        .send()
        .await
        .map_err(|e| {
            fail(
                "CreateKey (wrapping key)",
                aws_sdk_kms::error::DisplayErrorContext(e),
            )
        })?;
    let arn = created
        .key_metadata()
        .map(|m| m.arn().unwrap_or(m.key_id()).to_owned())
        .ok_or_else(|| fail("CreateKey (wrapping key)", "no key id in the answer"))?;
    // Best effort: yearly rotation of the wrapping key's material (old wraps still open).
    let _ = kms.enable_key_rotation().key_id(&arn).send().await;
    kms.create_alias()
        .alias_name(&key)
        .target_key_id(&arn)
        .send()
        .await
        .map_err(|e| {
            fail(
                "CreateAlias (wrapping key)",
                aws_sdk_kms::error::DisplayErrorContext(e),
            )
        })?;
    Ok(format!("wrapping key {key}: created ({arn})"))
}

#[derive(Debug, thiserror::Error)]
enum WrappingKeyProblem {
    #[error("no such KMS key")]
    Missing,
    #[error("{0}")]
    Unfit(String),
}

/// The wrapping key's ARN if KMS has it enabled and able to wrap data keys.
async fn describe_wrapping_key(
    kms: &aws_sdk_kms::Client,
    key: &str,
) -> Result<String, WrappingKeyProblem> {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let output = match kms.describe_key().key_id(key).send().await {
        Ok(output) => output,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_not_found_exception()) =>
        {
            return Err(WrappingKeyProblem::Missing);
        }
        Err(e) => {
            return Err(WrappingKeyProblem::Unfit(format!(
                "KMS does not answer for it: {}",
                aws_sdk_kms::error::DisplayErrorContext(e)
            )));
        }
    };
    let Some(metadata) = output.key_metadata() else {
        return Err(WrappingKeyProblem::Unfit("KMS described no key".into()));
    };
    if metadata.key_spec() != Some(&KeySpec::SymmetricDefault)
        || metadata.key_usage() != Some(&KeyUsageType::EncryptDecrypt)
    {
        return Err(WrappingKeyProblem::Unfit(
            "not a symmetric encryption key (SYMMETRIC_DEFAULT, ENCRYPT_DECRYPT)".into(),
        ));
    }
    if metadata.key_state() != Some(&aws_sdk_kms::types::KeyState::Enabled) {
        return Err(WrappingKeyProblem::Unfit(format!(
            "it is {:?}, not Enabled",
            metadata.key_state()
        )));
    }
    Ok(metadata.arn().unwrap_or(metadata.key_id()).to_owned())
}

/// One finding of [`check`]: what was looked at, and the problem, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub problem: Option<String>,
}

impl Finding {
    fn ok(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            problem: None,
        }
    }

    fn problem(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            problem: Some(problem.into()),
        }
    }
}

/// Whether the configuration names a usable deployment, changing nothing: each table
/// exists and is ACTIVE, with TTL on `expires_at` where tokenlife relies on it and the
/// sessions table's `by-user` index; the key registry has an active key; KMS answers for it
/// and has it enabled. One finding per thing looked at.
pub async fn check(config: &Config, clients: &AwsClients) -> Vec<Finding> {
    let mut findings = Vec::new();
    let tables = &config.tables;
    let specs = [
        (&tables.users, false, false),
        (&tables.sessions, true, true),
        (&tables.revocations, true, false),
        (&tables.keys, false, false),
        (&tables.clients, false, false),
    ];
    let mut tables_ok = true;
    for (table, ttl, by_user_index) in specs {
        let finding = check_table(&clients.dynamodb, table, ttl, by_user_index).await;
        tables_ok &= finding.problem.is_none();
        findings.push(finding);
    }
    if !tables_ok {
        findings.push(Finding::problem(
            "signing keys",
            "not checked: the tables are not usable (`tokenlife setup`, or deploy the stack)",
        ));
        return findings;
    }
    let app = match App::aws(
        config.clone(),
        "https://check.invalid",
        clients.clone(),
        Arc::new(SystemClock),
    )
    .await
    {
        Ok(app) => app,
        Err(error) => {
            findings.push(Finding::problem("signing keys", error.to_string()));
            return findings;
        }
    };
    let keys = match app.service.list_keys().await {
        Ok(keys) => keys,
        Err(error) => {
            findings.push(Finding::problem(
                format!("key registry in {}", tables.keys),
                error.for_operator(),
            ));
            return findings;
        }
    };
    let Some(active) = keys.iter().find(|k| k.state == KeyState::Active) else {
        findings.push(Finding::problem(
            format!("key registry in {}", tables.keys),
            "no active signing key: logins and refreshes answer 503 (run `tokenlife setup` or `tokenlife keys rotate`)",
        ));
        return findings;
    };
    findings.push(Finding::ok(format!(
        "key registry in {}: active key {} ({} keys in all)",
        tables.keys,
        active.kid,
        keys.len()
    )));
    if let Some(wrapped) = &active.wrapped {
        let what = format!(
            "wrapping key {} of the active data key",
            wrapped.wrapping_key
        );
        findings.push(
            match describe_wrapping_key(&clients.kms, &wrapped.wrapping_key).await {
                Ok(_) => Finding::ok(format!("{what}: enabled")),
                Err(problem) => Finding::problem(what, format!("{problem}: signing fails")),
            },
        );
        return findings;
    }
    let what = format!("KMS key {}", active.key_ref);
    findings.push(
        match clients
            .kms
            .describe_key()
            .key_id(&active.key_ref)
            .send()
            .await
        {
            Ok(output) => {
                let state = output.key_metadata().and_then(|m| m.key_state());
                if state == Some(&aws_sdk_kms::types::KeyState::Enabled) {
                    Finding::ok(format!("{what}: enabled"))
                } else {
                    Finding::problem(
                        what,
                        format!("the active key is {state:?}, not Enabled: signing fails"),
                    )
                }
            }
            Err(error) => Finding::problem(
                what,
                format!(
                    "KMS does not answer for it: {}",
                    aws_sdk_kms::error::DisplayErrorContext(error)
                ),
            ),
        },
    );
    findings
}

async fn check_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    ttl: bool,
    by_user_index: bool,
) -> Finding {
    let what = format!("table {table}");
    let described = match client.describe_table().table_name(table).send().await {
        Ok(output) => output,
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_not_found_exception()) =>
        {
            return Finding::problem(what, "does not exist");
        }
        Err(e) => {
            return Finding::problem(
                what,
                format!(
                    "DynamoDB does not answer: {}",
                    aws_sdk_dynamodb::error::DisplayErrorContext(e)
                ),
            );
        }
    };
    let Some(description) = described.table() else {
        return Finding::problem(what, "DescribeTable returned no description");
    };
    if description.table_status() != Some(&TableStatus::Active) {
        return Finding::problem(
            what,
            format!("is {:?}, not ACTIVE", description.table_status()),
        );
    }
    if by_user_index {
        let index = description
            .global_secondary_indexes()
            .iter()
            .find(|index| index.index_name() == Some(SESSIONS_BY_USER_INDEX));
        let Some(index) = index else {
            return Finding::problem(what, format!("lacks the {SESSIONS_BY_USER_INDEX} index"));
        };
        let sorted_by_creation = index
            .key_schema()
            .iter()
            .any(|k| k.attribute_name() == "created_ms" && k.key_type() == &KeyType::Range);
        let projected = index.projection().is_some_and(|p| {
            p.projection_type() == Some(&ProjectionType::All)
                || SESSION_SUMMARY_ATTRIBUTES
                    .iter()
                    .all(|a| p.non_key_attributes().iter().any(|n| n == a))
        });
        if !sorted_by_creation || !projected {
            return Finding::problem(
                what,
                format!(
                    "its {SESSIONS_BY_USER_INDEX} index is of an older layout (sort key created_ms, projecting {}): recreate the index",
                    SESSION_SUMMARY_ATTRIBUTES.join(", ")
                ),
            );
        }
    }
    if ttl {
        let described = match client
            .describe_time_to_live()
            .table_name(table)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) => {
                return Finding::problem(
                    what,
                    format!(
                        "cannot read its TTL setting: {}",
                        aws_sdk_dynamodb::error::DisplayErrorContext(e)
                    ),
                );
            }
        };
        let description = described.time_to_live_description();
        let on_expires_at = description.and_then(|d| d.attribute_name()) == Some("expires_at");
        return match description.and_then(|d| d.time_to_live_status()) {
            Some(TimeToLiveStatus::Enabled) if on_expires_at => {
                Finding::ok(format!("{what}: active, TTL on expires_at"))
            }
            Some(TimeToLiveStatus::Enabling) if on_expires_at => {
                Finding::ok(format!("{what}: active, TTL on expires_at being enabled"))
            }
            _ => Finding::problem(
                what,
                "TTL on expires_at is off: expired sessions and entries are never deleted (turn it on: `tokenlife setup`, or the stack's TimeToLiveSpecification)",
            ),
        };
    }
    Finding::ok(format!("{what}: active"))
}
