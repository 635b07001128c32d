//! The DynamoDB backend: users, sessions, revocations and the signing-key registry in four
//! tables (names from config), on-demand, with `expires_at` (epoch seconds) as the TTL attribute of sessions
//! and revocations.
//!
//! | table | key | attributes |
//! |---|---|---|
//! | users | `username` S | `user_id` S, `password_hash` S (argon2id PHC), `scopes` S (space-separated), `disabled` BOOL |
//! | sessions | `id` S | `user_id` S (GSI `by-user`), `scope` S, `client_id` S?, `created_ms` N, `expires_at` N (TTL), `last_used_ms` N, `generation` N, `current_hash` B, `reuse_key` B, `rotated_at_ms` N?, `sealed_successor` B?, `ended` BOOL |
//! | revocations | `key` S (`jti#…`, `sid#…`, `sub#…`) | `expires_at` N (TTL), `until_ms` N (for `sub#`) |
//! | keys | `id` S (one item: `registry`) | `version` N, `keys` L of M {`kid` S, `key_ref` S, `alg` S, `public_key` B, `state` S, `published_at` N, `state_since` N} |
//!
//! Consistency: session reads are strongly consistent (rotation decides on them, and the
//! write that follows is conditional anyway). Revocation lookups on verify are one
//! eventually consistent BatchGetItem: a revocation is visible to every reader within about
//! a second in a region (DynamoDB's typical propagation), which is far below the access-token
//! lifetime it shortens and costs half the read capacity; the refresh rotation does not rely
//! on it — its transaction re-checks the user-wide entry with a ConditionCheck.
//!
//! Every read-modify-write is conditional: rotation is a TransactWriteItems of an update
//! conditioned on the generation plus a condition check on the user's `sub#` entry; ending a
//! session is a transaction of the `ended` flag and the `sid#` entry; the key registry is
//! one item replaced by a PutItem conditioned on its `version` (see [`crate::keys::registry`]).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, KeysAndAttributes, Put, ReturnValuesOnConditionCheckFailure,
    TransactWriteItem, Update,
};

use super::{
    KeyRecord, KeyRegistry, KeyRegistryDocument, ReplaceOutcome, Revocation, RevocationKey,
    Rotation, SaveOutcome, Session, SessionStore, StoreError, User, UserStore,
};
use crate::clock::Clock;
use crate::keys::{KeyState, SigningAlgorithm};

type Item = HashMap<String, AttributeValue>;

/// The table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub users: String,
    pub sessions: String,
    pub revocations: String,
    /// The signing-key registry (one item).
    pub keys: String,
}

/// Name of the sessions table's index by user.
pub const SESSIONS_BY_USER_INDEX: &str = "by-user";

pub struct DynamoStore {
    client: Client,
    tables: TableNames,
    clock: Arc<dyn Clock>,
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames, clock: Arc<dyn Clock>) -> Self {
        Self {
            client,
            tables,
            clock,
        }
    }
}

/// Any SDK failure other than the condition failures handled at the call site: transient
/// ones (dispatch, timeout, throttling, 5xx, after the SDK's retries) are Unavailable;
/// the rest (validation, missing table) are Broken.
fn sdk_error<E, R>(operation: &str, error: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + aws_sdk_dynamodb::error::ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    let transient = match &error {
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(service) => {
            let code = service.err().code().unwrap_or("");
            code.contains("Throttl")
                || code == "ProvisionedThroughputExceededException"
                || code == "RequestLimitExceeded"
                || code == "InternalServerError"
                || code == "ServiceUnavailable"
        }
        _ => false,
    };
    let message = format!("DynamoDB {operation}: {}", DisplayErrorContext(&error));
    if transient {
        StoreError::Unavailable(message)
    } else {
        StoreError::Broken(message)
    }
}

fn built<T>(result: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Broken(format!("building a DynamoDB request: {e}")))
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn b(value: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        _ => Err(StoreError::Broken(format!(
            "stored item lacks string {name:?}"
        ))),
    }
}

fn get_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map_err(|_| StoreError::Broken(format!("stored {name:?} is not a whole number"))),
        _ => Err(StoreError::Broken(format!(
            "stored item lacks number {name:?}"
        ))),
    }
}

fn get_b32(item: &Item, name: &str) -> Result<[u8; 32], StoreError> {
    match item.get(name) {
        Some(AttributeValue::B(value)) => value
            .as_ref()
            .try_into()
            .map_err(|_| StoreError::Broken(format!("stored {name:?} is not 32 bytes"))),
        _ => Err(StoreError::Broken(format!(
            "stored item lacks binary {name:?}"
        ))),
    }
}

fn get_bool(item: &Item, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

fn revocation_key_text(key: &RevocationKey) -> String {
    match key {
        RevocationKey::Token(jti) => format!("jti#{jti}"),
        RevocationKey::Session(sid) => format!("sid#{sid}"),
        RevocationKey::User(sub) => format!("sub#{sub}"),
    }
}

fn revocation_key_from_text(text: &str) -> Option<RevocationKey> {
    let (kind, id) = text.split_once('#')?;
    let id = id.to_owned();
    match kind {
        "jti" => Some(RevocationKey::Token(id)),
        "sid" => Some(RevocationKey::Session(id)),
        "sub" => Some(RevocationKey::User(id)),
        _ => None,
    }
}

fn user_to_item(user: &User) -> Item {
    HashMap::from([
        ("username".to_owned(), s(&user.username)),
        ("user_id".to_owned(), s(&user.id)),
        ("password_hash".to_owned(), s(&user.password_hash)),
        ("scopes".to_owned(), s(&user.scopes.join(" "))),
        ("disabled".to_owned(), AttributeValue::Bool(user.disabled)),
    ])
}

fn user_from_item(item: &Item) -> Result<User, StoreError> {
    Ok(User {
        id: get_s(item, "user_id")?,
        username: get_s(item, "username")?,
        password_hash: get_s(item, "password_hash")?,
        scopes: get_s(item, "scopes")?
            .split(' ')
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect(),
        disabled: get_bool(item, "disabled"),
    })
}

fn session_to_item(session: &Session) -> Item {
    let mut item = HashMap::from([
        ("id".to_owned(), s(&session.id)),
        ("user_id".to_owned(), s(&session.user_id)),
        ("scope".to_owned(), s(&session.scope)),
        ("created_ms".to_owned(), n(session.created_ms)),
        ("expires_at".to_owned(), n(session.expires_at)),
        ("last_used_ms".to_owned(), n(session.last_used_ms)),
        ("generation".to_owned(), n(session.generation)),
        ("current_hash".to_owned(), b(&session.current_hash)),
        ("reuse_key".to_owned(), b(&session.reuse_key)),
        ("ended".to_owned(), AttributeValue::Bool(session.ended)),
    ]);
    if let Some(client_id) = &session.client_id {
        item.insert("client_id".to_owned(), s(client_id));
    }
    if let Some(rotation) = &session.last_rotation {
        item.insert("rotated_at_ms".to_owned(), n(rotation.at_ms));
        item.insert("sealed_successor".to_owned(), b(&rotation.sealed_successor));
    }
    item
}

fn session_from_item(item: &Item) -> Result<Session, StoreError> {
    let last_rotation = match (item.get("rotated_at_ms"), item.get("sealed_successor")) {
        (Some(_), Some(AttributeValue::B(sealed))) => Some(Rotation {
            at_ms: get_n(item, "rotated_at_ms")?,
            sealed_successor: sealed.as_ref().to_vec(),
        }),
        _ => None,
    };
    Ok(Session {
        id: get_s(item, "id")?,
        user_id: get_s(item, "user_id")?,
        scope: get_s(item, "scope")?,
        client_id: get_s(item, "client_id").ok(),
        created_ms: get_n(item, "created_ms")?,
        expires_at: get_n(item, "expires_at")?,
        last_used_ms: get_n(item, "last_used_ms")?,
        generation: get_n(item, "generation")?,
        current_hash: get_b32(item, "current_hash")?,
        reuse_key: get_b32(item, "reuse_key")?,
        last_rotation,
        ended: get_bool(item, "ended"),
    })
}

/// The key of the keys table's one item.
const KEY_REGISTRY_ID: &str = "registry";

fn key_record_to_value(key: &KeyRecord) -> AttributeValue {
    AttributeValue::M(HashMap::from([
        ("kid".to_owned(), s(&key.kid)),
        ("key_ref".to_owned(), s(&key.key_ref)),
        ("alg".to_owned(), s(key.algorithm.name())),
        ("public_key".to_owned(), b(&key.public_key_der)),
        ("state".to_owned(), s(key.state.name())),
        ("published_at".to_owned(), n(key.published_at)),
        ("state_since".to_owned(), n(key.state_since)),
    ]))
}

fn key_record_from_value(value: &AttributeValue) -> Result<KeyRecord, StoreError> {
    let AttributeValue::M(item) = value else {
        return Err(StoreError::Broken("a stored key is not a map".into()));
    };
    let alg = get_s(item, "alg")?;
    let state = get_s(item, "state")?;
    Ok(KeyRecord {
        kid: get_s(item, "kid")?,
        key_ref: get_s(item, "key_ref")?,
        algorithm: SigningAlgorithm::from_name(&alg)
            .ok_or_else(|| StoreError::Broken(format!("stored key has unknown alg {alg:?}")))?,
        public_key_der: match item.get("public_key") {
            Some(AttributeValue::B(der)) => der.as_ref().to_vec(),
            _ => return Err(StoreError::Broken("stored key lacks its public key".into())),
        },
        state: KeyState::from_name(&state)
            .ok_or_else(|| StoreError::Broken(format!("stored key has unknown state {state:?}")))?,
        published_at: get_n(item, "published_at")?,
        state_since: get_n(item, "state_since")?,
    })
}

fn key_registry_from_item(item: &Item) -> Result<KeyRegistryDocument, StoreError> {
    let keys = match item.get("keys") {
        Some(AttributeValue::L(values)) => values
            .iter()
            .map(key_record_from_value)
            .collect::<Result<_, _>>()?,
        _ => {
            return Err(StoreError::Broken(
                "the key registry lacks its key list".into(),
            ));
        }
    };
    Ok(KeyRegistryDocument {
        version: get_n(item, "version")?,
        keys,
    })
}

fn revocation_to_item(revocation: &Revocation) -> Item {
    HashMap::from([
        ("key".to_owned(), s(&revocation_key_text(&revocation.key))),
        ("expires_at".to_owned(), n(revocation.expires_at)),
        (
            "until_ms".to_owned(),
            n(revocation.sessions_created_until_ms),
        ),
    ])
}

fn revocation_from_item(item: &Item) -> Result<Revocation, StoreError> {
    let text = get_s(item, "key")?;
    Ok(Revocation {
        key: revocation_key_from_text(&text).ok_or_else(|| {
            StoreError::Broken(format!("unknown revocation key kind in {text:?}"))
        })?,
        expires_at: get_n(item, "expires_at")?,
        sessions_created_until_ms: get_n(item, "until_ms").unwrap_or(0),
    })
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn find_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.users)
            .key("username", s(username))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem users", e))?;
        output.item.as_ref().map(user_from_item).transpose()
    }

    async fn put_user(&self, user: &User) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.users)
            .set_item(Some(user_to_item(user)))
            .send()
            .await
            .map_err(|e| sdk_error("PutItem users", e))?;
        Ok(())
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(&self, session: &Session) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.sessions)
            .set_item(Some(session_to_item(session)))
            .condition_expression("attribute_not_exists(id)")
            .send()
            .await
            .map_err(|e| sdk_error("PutItem sessions", e))?;
        Ok(())
    }

    async fn find_session(&self, id: &str) -> Result<Option<Session>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.sessions)
            .key("id", s(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem sessions", e))?;
        output.item.as_ref().map(session_from_item).transpose()
    }

    async fn replace_session(
        &self,
        updated: &Session,
        expected_generation: u64,
    ) -> Result<ReplaceOutcome, StoreError> {
        let now_secs = self.clock.now_secs();
        let mut item = session_to_item(updated);
        item.remove("id");
        // SET every attribute of the new state; the condition is on the old one.
        let mut names = HashMap::new();
        let mut values = HashMap::new();
        let mut sets = Vec::new();
        for (i, (name, value)) in item.into_iter().enumerate() {
            names.insert(format!("#a{i}"), name);
            values.insert(format!(":v{i}"), value);
            sets.push(format!("#a{i} = :v{i}"));
        }
        let mut remove = String::new();
        if updated.last_rotation.is_none() {
            names.insert("#rot".to_owned(), "rotated_at_ms".to_owned());
            names.insert("#sealed".to_owned(), "sealed_successor".to_owned());
            remove = " REMOVE #rot, #sealed".to_owned();
        }
        names.insert("#gen".to_owned(), "generation".to_owned());
        names.insert("#ended".to_owned(), "ended".to_owned());
        names.insert("#exp".to_owned(), "expires_at".to_owned());
        values.insert(":expected".to_owned(), n(expected_generation));
        values.insert(":false".to_owned(), AttributeValue::Bool(false));
        values.insert(":now".to_owned(), n(now_secs));
        let update = built(
            Update::builder()
                .table_name(&self.tables.sessions)
                .key("id", s(&updated.id))
                .update_expression(format!("SET {}{remove}", sets.join(", ")))
                .condition_expression(
                    "attribute_exists(id) AND #gen = :expected AND #ended = :false AND #exp > :now",
                )
                // On failure, hand back the stored item so we can tell "moved on" from "ended".
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                )
                .set_expression_attribute_names(Some(names))
                .set_expression_attribute_values(Some(values))
                .build(),
        )?;
        // The user's sessions must not have been revoked since this one was created.
        let user_check = built(
            ConditionCheck::builder()
                .table_name(&self.tables.revocations)
                .key(
                    "key",
                    s(&revocation_key_text(&RevocationKey::User(
                        updated.user_id.clone(),
                    ))),
                )
                .condition_expression(
                    "attribute_not_exists(#k) OR #exp <= :now OR #until < :created",
                )
                .expression_attribute_names("#k", "key")
                .expression_attribute_names("#exp", "expires_at")
                .expression_attribute_names("#until", "until_ms")
                .expression_attribute_values(":now", n(now_secs))
                .expression_attribute_values(":created", n(updated.created_ms))
                .build(),
        )?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().update(update).build())
            .transact_items(
                TransactWriteItem::builder()
                    .condition_check(user_check)
                    .build(),
            )
            .send()
            .await;
        match result {
            Ok(_) => Ok(ReplaceOutcome::Replaced),
            Err(error) => {
                use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
                let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) =
                    error.as_service_error()
                else {
                    return Err(sdk_error("TransactWriteItems rotate", error));
                };
                let reasons = cancel.cancellation_reasons();
                let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
                match (code(0), code(1)) {
                    // The user's sessions were revoked after this one was created.
                    (_, "ConditionalCheckFailed") => Ok(ReplaceOutcome::Ended),
                    ("ConditionalCheckFailed", _) => {
                        // The stored item comes back (ALL_OLD); should it ever be missing,
                        // say Conflict and let the caller's re-read tell.
                        let stored = reasons.first().and_then(|r| r.item());
                        let moved_on = stored.is_none_or(|item| {
                            !get_bool(item, "ended")
                                && get_n(item, "expires_at").is_ok_and(|e| e > now_secs)
                        });
                        Ok(if moved_on {
                            ReplaceOutcome::Conflict
                        } else {
                            ReplaceOutcome::Ended
                        })
                    }
                    // Another transaction on the same items at the same moment: the same
                    // race as a lost condition; the caller re-reads and decides.
                    ("TransactionConflict", _) | (_, "TransactionConflict") => {
                        Ok(ReplaceOutcome::Conflict)
                    }
                    _ => Err(sdk_error("TransactWriteItems rotate", error)),
                }
            }
        }
    }

    async fn end_session(&self, id: &str, revocation: &Revocation) -> Result<(), StoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.tables.revocations)
                .set_item(Some(revocation_to_item(revocation)))
                .build(),
        )?;
        let end = built(
            Update::builder()
                .table_name(&self.tables.sessions)
                .key("id", s(id))
                .update_expression("SET #ended = :true")
                .condition_expression("attribute_exists(id)")
                .expression_attribute_names("#ended", "ended")
                .expression_attribute_values(":true", AttributeValue::Bool(true))
                .build(),
        )?;
        // A concurrent rotation of the same session can make the transaction conflict: retry
        // then, since a session that must end must not stay usable.
        for attempt in 0..5u64 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().update(end.clone()).build())
                .transact_items(TransactWriteItem::builder().put(put.clone()).build())
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
            let Some(TransactWriteItemsError::TransactionCanceledException(cancel)) =
                error.as_service_error()
            else {
                return Err(sdk_error("TransactWriteItems end session", error));
            };
            let reasons = cancel.cancellation_reasons();
            let code = |i: usize| reasons.get(i).and_then(|r| r.code()).unwrap_or("None");
            match (code(0), code(1)) {
                // No such session (already swept by TTL): the entry alone still matters.
                ("ConditionalCheckFailed", _) => return self.put_revocation(revocation).await,
                ("TransactionConflict", _) | (_, "TransactionConflict") => continue,
                _ => return Err(sdk_error("TransactWriteItems end session", error)),
            }
        }
        Err(StoreError::Unavailable(
            "ending the session kept conflicting with concurrent writes".into(),
        ))
    }

    async fn put_revocation(&self, revocation: &Revocation) -> Result<(), StoreError> {
        let mut request = self
            .client
            .put_item()
            .table_name(&self.tables.revocations)
            .set_item(Some(revocation_to_item(revocation)));
        if matches!(revocation.key, RevocationKey::User(_)) {
            // Never move a user-wide revocation back in time.
            request = request
                .condition_expression("attribute_not_exists(#k) OR #until <= :until")
                .expression_attribute_names("#k", "key")
                .expression_attribute_names("#until", "until_ms")
                .expression_attribute_values(":until", n(revocation.sessions_created_until_ms));
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(()) // a later user-wide revocation is already there
            }
            Err(error) => Err(sdk_error("PutItem revocations", error)),
        }
    }

    async fn find_revocations(
        &self,
        keys: &[RevocationKey],
    ) -> Result<Vec<Revocation>, StoreError> {
        // BatchGetItem refuses duplicate keys.
        let mut texts: Vec<String> = keys.iter().map(revocation_key_text).collect();
        texts.sort();
        texts.dedup();
        let mut pending: Vec<Item> = texts
            .iter()
            .map(|text| HashMap::from([("key".to_owned(), s(text))]))
            .collect();
        let mut found = Vec::new();
        // One round trip; more only if DynamoDB hands back unprocessed keys (throttling).
        for attempt in 0..4u64 {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempt)).await;
            }
            let request = built(
                KeysAndAttributes::builder()
                    .set_keys(Some(std::mem::take(&mut pending)))
                    .consistent_read(false)
                    .build(),
            )?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.tables.revocations, request)
                .send()
                .await
                .map_err(|e| sdk_error("BatchGetItem revocations", e))?;
            if let Some(items) = output
                .responses
                .as_ref()
                .and_then(|r| r.get(&self.tables.revocations))
            {
                for item in items {
                    found.push(revocation_from_item(item)?);
                }
            }
            if let Some(unprocessed) = output
                .unprocessed_keys
                .and_then(|mut u| u.remove(&self.tables.revocations))
            {
                pending = unprocessed.keys;
            }
        }
        if !pending.is_empty() {
            return Err(StoreError::Unavailable(
                "BatchGetItem kept returning unprocessed keys".into(),
            ));
        }
        Ok(found)
    }
}

#[async_trait]
impl KeyRegistry for DynamoStore {
    async fn load_keys(&self) -> Result<KeyRegistryDocument, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.keys)
            .key("id", s(KEY_REGISTRY_ID))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error("GetItem keys", e))?;
        match output.item.as_ref() {
            Some(item) => key_registry_from_item(item),
            None => Ok(KeyRegistryDocument::default()),
        }
    }

    async fn save_keys(
        &self,
        keys: &[KeyRecord],
        expected_version: u64,
    ) -> Result<SaveOutcome, StoreError> {
        let item = HashMap::from([
            ("id".to_owned(), s(KEY_REGISTRY_ID)),
            ("version".to_owned(), n(expected_version + 1)),
            (
                "keys".to_owned(),
                AttributeValue::L(keys.iter().map(key_record_to_value).collect()),
            ),
        ]);
        let mut request = self
            .client
            .put_item()
            .table_name(&self.tables.keys)
            .set_item(Some(item));
        request = if expected_version == 0 {
            request.condition_expression("attribute_not_exists(id)")
        } else {
            request
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(expected_version))
        };
        match request.send().await {
            Ok(_) => Ok(SaveOutcome::Saved),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(SaveOutcome::Conflict)
            }
            Err(error) => Err(sdk_error("PutItem keys", error)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_registry_round_trips() {
        let registry = KeyRegistryDocument {
            version: 3,
            keys: vec![KeyRecord {
                kid: "k1".into(),
                key_ref: "arn:aws:kms:eu-west-1:000000000000:key/1".into(),
                algorithm: SigningAlgorithm::Rs256,
                public_key_der: vec![1, 2, 3],
                state: KeyState::Retiring,
                published_at: 10,
                state_since: 20,
            }],
        };
        let mut item = HashMap::from([
            ("version".to_owned(), n(3)),
            (
                "keys".to_owned(),
                AttributeValue::L(registry.keys.iter().map(key_record_to_value).collect()),
            ),
        ]);
        assert_eq!(key_registry_from_item(&item).unwrap(), registry);
        item.insert("keys".to_owned(), s("not a list"));
        assert!(key_registry_from_item(&item).is_err());
    }

    #[test]
    fn items_round_trip() {
        let session = Session {
            id: "sid".into(),
            user_id: "u1".into(),
            scope: "user admin".into(),
            client_id: Some("cli".into()),
            created_ms: 1,
            expires_at: 2,
            last_used_ms: 3,
            generation: 4,
            current_hash: [5; 32],
            reuse_key: [6; 32],
            last_rotation: Some(Rotation {
                at_ms: 7,
                sealed_successor: vec![8; 76],
            }),
            ended: true,
        };
        assert_eq!(
            session_from_item(&session_to_item(&session)).unwrap(),
            session
        );
        let fresh = Session {
            client_id: None,
            last_rotation: None,
            ended: false,
            ..session
        };
        assert_eq!(session_from_item(&session_to_item(&fresh)).unwrap(), fresh);
        let user = User {
            id: "u1".into(),
            username: "alice".into(),
            password_hash: "$argon2id$...".into(),
            scopes: vec!["user".into(), "admin".into()],
            disabled: false,
        };
        assert_eq!(user_from_item(&user_to_item(&user)).unwrap(), user);
        for key in [
            RevocationKey::Token("j".into()),
            RevocationKey::Session("s#x".into()),
            RevocationKey::User("u".into()),
        ] {
            let revocation = Revocation {
                key,
                expires_at: 9,
                sessions_created_until_ms: 10,
            };
            assert_eq!(
                revocation_from_item(&revocation_to_item(&revocation)).unwrap(),
                revocation
            );
        }
    }
}
