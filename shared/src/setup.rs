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
use crate::config::{Config, RevocationCheck, Signing};
use crate::keys::KeyState;
use crate::store::dynamodb::items::SESSION_SUMMARY_ATTRIBUTES;
use crate::store::dynamodb::{REVOCATIONS_BY_CHANGE_INDEX, SESSIONS_BY_USER_INDEX};
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
    config: &Config,
) -> Result<Vec<String>, SetupError> {
    let mut report = Vec::new();
    for TableSpec {
        table,
        key,
        ttl,
        index,
    } in table_specs(config)
    {
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
            create_table(client, table, key, index).await?;
            report.push(format!("table {table}: created"));
        }
        wait_until_active(client, table).await?;
        if exists
            && let Some(index) = index
            && let Some(added) = ensure_index(client, table, index).await?
        {
            report.push(added);
        }
        if ttl {
            report.push(ensure_ttl(client, table).await?);
        }
    }
    Ok(report)
}

/// One table tokenlife needs: its key attribute, whether TTL on `expires_at` matters,
/// and its index.
struct TableSpec<'a> {
    table: &'a str,
    key: &'static str,
    ttl: bool,
    index: Option<&'static IndexSpec>,
}

/// A global secondary index: partition (S), sort (N), projected attributes.
struct IndexSpec {
    name: &'static str,
    partition: &'static str,
    sort: &'static str,
    projected: &'static [&'static str],
}

/// A user's sessions newest first, with what a listing shows ("your devices").
const SESSIONS_BY_USER: IndexSpec = IndexSpec {
    name: SESSIONS_BY_USER_INDEX,
    partition: "user_id",
    sort: "created_ms",
    projected: &SESSION_SUMMARY_ATTRIBUTES,
};

/// Revocation entries by the day and time of their last write: the mirror's feed.
const REVOCATIONS_BY_CHANGE: IndexSpec = IndexSpec {
    name: REVOCATIONS_BY_CHANGE_INDEX,
    partition: "change_day",
    sort: "changed_ms",
    projected: &["expires_at", "below_version"],
};

/// The tables of `config`'s deployment; the revocations table's `by-change` index only in
/// mirror mode (as template.yaml has it).
fn table_specs(config: &Config) -> [TableSpec<'_>; 5] {
    let tables = &config.tables;
    let mirror = config.revocation_check == RevocationCheck::Mirror;
    let spec = |table, key, ttl, index| TableSpec {
        table,
        key,
        ttl,
        index,
    };
    [
        spec(&tables.users, "username", false, None),
        spec(&tables.sessions, "id", true, Some(&SESSIONS_BY_USER)),
        spec(
            &tables.revocations,
            "key",
            true,
            mirror.then_some(&REVOCATIONS_BY_CHANGE),
        ),
        spec(&tables.keys, "id", false, None),
        spec(&tables.clients, "client_id", false, None),
    ]
}

fn attribute(name: &str, kind: ScalarAttributeType) -> Result<AttributeDefinition, SetupError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(kind)
        .build()
        .map_err(|e| fail("table definition", e))
}

fn key_element(name: &str, kind: KeyType) -> Result<KeySchemaElement, SetupError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(kind)
        .build()
        .map_err(|e| fail("table definition", e))
}

impl IndexSpec {
    fn attributes(&self) -> Result<[AttributeDefinition; 2], SetupError> {
        Ok([
            attribute(self.partition, ScalarAttributeType::S)?,
            attribute(self.sort, ScalarAttributeType::N)?,
        ])
    }

    fn key_schema(&self) -> Result<[KeySchemaElement; 2], SetupError> {
        Ok([
            key_element(self.partition, KeyType::Hash)?,
            key_element(self.sort, KeyType::Range)?,
        ])
    }

    fn projection(&self) -> Projection {
        let mut projection = Projection::builder().projection_type(ProjectionType::Include);
        for attribute in self.projected {
            projection = projection.non_key_attributes(*attribute);
        }
        projection.build()
    }

    fn definition(&self) -> Result<GlobalSecondaryIndex, SetupError> {
        GlobalSecondaryIndex::builder()
            .index_name(self.name)
            .set_key_schema(Some(self.key_schema()?.to_vec()))
            .projection(self.projection())
            .build()
            .map_err(|e| fail("index definition", e))
    }

    /// Whether `index` (as described) is this one: same keys, projecting at least these.
    fn matches(&self, index: &aws_sdk_dynamodb::types::GlobalSecondaryIndexDescription) -> bool {
        let keyed = |name: &str, kind: KeyType| {
            index
                .key_schema()
                .iter()
                .any(|k| k.attribute_name() == name && k.key_type() == &kind)
        };
        let projected = index.projection().is_some_and(|p| {
            p.projection_type() == Some(&ProjectionType::All)
                || self
                    .projected
                    .iter()
                    .all(|a| p.non_key_attributes().iter().any(|n| n == a))
        });
        keyed(self.partition, KeyType::Hash) && keyed(self.sort, KeyType::Range) && projected
    }
}

/// Adds `index` to an existing `table` that lacks it (a table made before the index, or
/// in another mode); `None` when it is there. DynamoDB then builds it from the table's
/// items, which takes minutes on a big table: it does not wait (`check` tells when it is
/// ACTIVE; until then mirror-mode verifications fail closed).
async fn ensure_index(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    index: &IndexSpec,
) -> Result<Option<String>, SetupError> {
    use aws_sdk_dynamodb::types::{CreateGlobalSecondaryIndexAction, GlobalSecondaryIndexUpdate};
    let present = describe_table(client, table)
        .await?
        .table()
        .map(|t| t.global_secondary_indexes())
        .unwrap_or_default()
        .iter()
        .any(|i| i.index_name() == Some(index.name));
    if present {
        return Ok(None);
    }
    let create = CreateGlobalSecondaryIndexAction::builder()
        .index_name(index.name)
        .set_key_schema(Some(index.key_schema()?.to_vec()))
        .projection(index.projection())
        .build()
        .map_err(|e| fail("index definition", e))?;
    client
        .update_table()
        .table_name(table)
        .set_attribute_definitions(Some(index.attributes()?.to_vec()))
        .global_secondary_index_updates(
            GlobalSecondaryIndexUpdate::builder().create(create).build(),
        )
        .send()
        .await
        .map_err(|e| {
            fail(
                &format!("UpdateTable {table} (add index {})", index.name),
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            )
        })?;
    Ok(Some(format!(
        "table {table}: index {} created (DynamoDB builds it now; `tokenlife check` says when it is ACTIVE)",
        index.name
    )))
}

async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    key: &str,
    index: Option<&IndexSpec>,
) -> Result<(), SetupError> {
    let mut request = client
        .create_table()
        .table_name(table)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute(key, ScalarAttributeType::S)?)
        .key_schema(key_element(key, KeyType::Hash)?);
    if let Some(index) = index {
        request = request
            .set_attribute_definitions(Some(
                [
                    vec![attribute(key, ScalarAttributeType::S)?],
                    index.attributes()?.to_vec(),
                ]
                .concat(),
            ))
            .global_secondary_indexes(index.definition()?);
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

/// `DescribeTable`, its failure in setup's words.
async fn describe_table(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<aws_sdk_dynamodb::operation::describe_table::DescribeTableOutput, SetupError> {
    client
        .describe_table()
        .table_name(table)
        .send()
        .await
        .map_err(|e| {
            fail(
                &format!("DescribeTable {table}"),
                aws_sdk_dynamodb::error::DisplayErrorContext(e),
            )
        })
}

async fn wait_until_active(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
) -> Result<(), SetupError> {
    for _ in 0..120 {
        let output = describe_table(client, table).await?;
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
    let mut report = ensure_tables(&clients.dynamodb, config).await?;
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
    // Not the registry's tag: that one lets rotation retire keys (see template.yaml).
    let tag = aws_sdk_kms::types::Tag::builder()
        .tag_key(crate::keys::data_key::WRAPPING_TAG)
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
    let aliased = kms
        .create_alias()
        .alias_name(&key)
        .target_key_id(&arn)
        .send()
        .await;
    if let Err(error) = aliased {
        // Unreachable without its alias: do not leave it behind (the next run makes another).
        let _ = kms
            .schedule_key_deletion()
            .key_id(&arn)
            .pending_window_in_days(7)
            .send()
            .await;
        return Err(fail(
            "CreateAlias (wrapping key)",
            aws_sdk_kms::error::DisplayErrorContext(error),
        ));
    }
    // Yearly rotation of the key material by KMS (older wraps still open).
    let rotation = match kms.enable_key_rotation().key_id(&arn).send().await {
        Ok(_) => "yearly material rotation on".to_owned(),
        Err(e) => format!(
            "material rotation NOT enabled: {}",
            aws_sdk_kms::error::DisplayErrorContext(e)
        ),
    };
    Ok(format!("wrapping key {key}: created ({arn}; {rotation})"))
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
    let mut tables_ok = true;
    for spec in table_specs(config) {
        let finding = check_table(&clients.dynamodb, spec.table, spec.ttl, spec.index).await;
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
    wanted_index: Option<&IndexSpec>,
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
    if let Some(wanted) = wanted_index {
        let index = description
            .global_secondary_indexes()
            .iter()
            .find(|index| index.index_name() == Some(wanted.name));
        let Some(index) = index else {
            return Finding::problem(
                what,
                format!(
                    "lacks the {} index (`tokenlife setup` adds it)",
                    wanted.name
                ),
            );
        };
        if index.index_status() != Some(&aws_sdk_dynamodb::types::IndexStatus::Active) {
            return Finding::problem(
                what,
                format!(
                    "its {} index is {:?}, not ACTIVE yet: mirror-mode verifications fail until it is",
                    wanted.name,
                    index.index_status()
                ),
            );
        }
        if !wanted.matches(index) {
            return Finding::problem(
                what,
                format!(
                    "its {} index is of another layout (partition {}, sort {}, projecting {}): recreate the index",
                    wanted.name,
                    wanted.partition,
                    wanted.sort,
                    wanted.projected.join(", ")
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
