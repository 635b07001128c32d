//! The DynamoDB backend: users, sessions, revocations and the signing-key registry in four
//! tables (names from config), on-demand, with `expires_at` (epoch seconds) as the TTL
//! attribute of sessions and revocations. This module holds the store operations; how each
//! record becomes an item (the tables' layout) is in [`items`].
//!
//! Consistency: every read is strongly consistent. Session reads, because rotation decides
//! on them (the write that follows is conditional anyway). Revocation lookups (verify, and
//! the grace path's user-wide check), because a revocation that answered 200 must bind the
//! very next verification in the region: an eventually consistent read could let a revoked
//! token through for about a second. The price is double the read units of that one
//! BatchGetItem (3 read request units for the `jti#`, `sid#` and `sub#` keys instead of
//! 1.5; see BENCHMARKS.md).
//!
//! Every read-modify-write is conditional: rotation is a TransactWriteItems of an update
//! conditioned on the generation plus a condition check on the user's `sub#` entry; ending a
//! session is a transaction of the `ended` flag and the `sid#` entry; the key registry is
//! one item replaced by a PutItem conditioned on its `version` (see [`crate::keys::registry`]).

pub mod items;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client as DynamoDb;
use aws_sdk_dynamodb::error::{DisplayErrorContext, SdkError};
use aws_sdk_dynamodb::operation::put_item::builders::PutItemFluentBuilder;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Delete, KeysAndAttributes, Put,
    ReturnValuesOnConditionCheckFailure, TransactWriteItem, Update,
};

use super::{
    Client, ClientPage, ClientStore, CreateOutcome, KeyRecord, KeyRegistry, KeyRegistryDocument,
    ReplaceOutcome, Revocation, RevocationChange, RevocationKey, SaveOutcome, Session,
    SessionCursor, SessionOwner, SessionPage, SessionStore, StoreError, User, UserPage, UserStore,
};
use crate::clock::Clock;
use items::{
    Item, KEY_REGISTRY_ID, change_day, change_day_text, client_from_item, client_to_item, get_bool,
    get_n, get_s, key_registry_from_item, key_registry_to_item, n, revocation_from_item,
    revocation_key_text, revocation_to_item, s, session_from_item, session_summary_from_item,
    session_to_item, user_from_item, user_to_item,
};

/// The table names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    pub users: String,
    pub sessions: String,
    pub revocations: String,
    /// The signing-key registry (one item).
    pub keys: String,
    /// Registered clients.
    pub clients: String,
}

impl TableNames {
    /// The tables of deployment (stack) `stack`: `<stack>-users`, `<stack>-sessions`,
    /// `<stack>-revocations`, `<stack>-keys`, `<stack>-clients` — the names template.yaml
    /// gives them.
    pub fn for_stack(stack: &str) -> Self {
        Self {
            users: format!("{stack}-users"),
            sessions: format!("{stack}-sessions"),
            revocations: format!("{stack}-revocations"),
            keys: format!("{stack}-keys"),
            clients: format!("{stack}-clients"),
        }
    }
}

/// The condition of every write of a user-wide (`sub#`) entry: it never moves back to a
/// lower `below_version` (`#bv`, `:bv`).
const USER_ENTRY_NEVER_BACK: &str = "attribute_not_exists(#bv) OR #bv <= :bv";

/// How many `Query` requests one page of sessions may take (see `list_sessions`).
const LIST_QUERIES_PER_PAGE: usize = 4;

/// Name of the sessions table's index by user.
pub const SESSIONS_BY_USER_INDEX: &str = "by-user";
/// Name of the revocations table's index of changes: partition `change_day` (the UTC day
/// of the write), sort `changed_ms`; only revocation entries carry them (not the
/// login-limiting counters), so the index holds nothing else.
pub const REVOCATIONS_BY_CHANGE_INDEX: &str = "by-change";

pub struct DynamoStore {
    client: DynamoDb,
    tables: TableNames,
    clock: Arc<dyn Clock>,
}

impl DynamoStore {
    pub fn new(client: DynamoDb, tables: TableNames, clock: Arc<dyn Clock>) -> Self {
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
                // An SDK retry of a transaction whose first attempt is still being applied.
                || code == "TransactionInProgressException"
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

/// Why DynamoDB cancelled a transaction: one reason code per item, in request order
/// (`ConditionalCheckFailed`, `TransactionConflict`, `None`, ...), with the stored item
/// where the request asked for it (ALL_OLD). `None` when the transaction failed otherwise.
struct Cancelled<'a>(&'a [aws_sdk_dynamodb::types::CancellationReason]);

impl<'a> Cancelled<'a> {
    fn of<R>(error: &'a SdkError<TransactWriteItemsError, R>) -> Option<Self> {
        match error.as_service_error() {
            Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                Some(Cancelled(cancel.cancellation_reasons()))
            }
            _ => None,
        }
    }

    /// Item `i`'s reason code (`None` when DynamoDB gave none).
    fn code(&self, i: usize) -> &'a str {
        self.0.get(i).and_then(|r| r.code()).unwrap_or("None")
    }

    /// Item `i` as stored, when the request asked for it.
    fn item(&self, i: usize) -> Option<&'a Item> {
        self.0.get(i).and_then(|r| r.item())
    }

    /// Another transaction touched the same items at the same moment.
    fn conflicted(&self) -> bool {
        (0..self.0.len()).any(|i| self.code(i) == "TransactionConflict")
    }
}

/// Tries of a transaction that keeps meeting concurrent ones on the same items (a user
/// change against a flood of that user's logins and refreshes, which check the same items).
const CONFLICT_ATTEMPTS: u32 = 8;

/// Waits before try `attempt` (1, 2, ...): exponential from 10 ms, capped at 640 ms, with
/// random jitter of up to the same again, so that racing writers spread out.
async fn backoff(attempt: u32) {
    let base = 10u64 << attempt.min(6);
    let jitter = u64::from(u16::from_le_bytes(crate::secrets::random_bytes::<2>())) % base;
    tokio::time::sleep(std::time::Duration::from_millis(base + jitter)).await;
}

fn built<T>(result: Result<T, aws_sdk_dynamodb::error::BuildError>) -> Result<T, StoreError> {
    result.map_err(|e| StoreError::Broken(format!("building a DynamoDB request: {e}")))
}

/// The condition that the stored user is exactly `version` of user `id` (`#uid`, `#v`,
/// `:uid`, `:v` in the expression; a version of 0 is an item written before versions).
fn user_is(id: &str, version: u64) -> (String, Item) {
    let mut values = HashMap::from([(":uid".to_owned(), s(id))]);
    let condition = if version == 0 {
        "#uid = :uid AND attribute_not_exists(#v)".to_owned()
    } else {
        values.insert(":v".to_owned(), n(version));
        "#uid = :uid AND #v = :v".to_owned()
    };
    (condition, values)
}

fn user_names() -> HashMap<String, String> {
    HashMap::from([
        ("#uid".to_owned(), "user_id".to_owned()),
        ("#v".to_owned(), "version".to_owned()),
    ])
}

impl DynamoStore {
    /// Strongly consistent reads of `keys` in each table, in one BatchGetItem — more only
    /// if DynamoDB hands back unprocessed keys (throttling), a few times at most. The
    /// items found, by table.
    async fn batch_get(
        &self,
        operation: &str,
        keys: Vec<(&str, Vec<Item>)>,
    ) -> Result<HashMap<String, Vec<Item>>, StoreError> {
        let mut pending: HashMap<String, Vec<Item>> = keys
            .into_iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(table, keys)| (table.to_owned(), keys))
            .collect();
        let mut found: HashMap<String, Vec<Item>> = HashMap::new();
        for attempt in 0..4u32 {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                backoff(attempt).await;
            }
            let mut request = self.client.batch_get_item();
            for (table, keys) in std::mem::take(&mut pending) {
                let reads = built(
                    KeysAndAttributes::builder()
                        .set_keys(Some(keys))
                        .consistent_read(true)
                        .build(),
                )?;
                request = request.request_items(table, reads);
            }
            let output = request.send().await.map_err(|e| sdk_error(operation, e))?;
            for (table, items) in output.responses.unwrap_or_default() {
                found.entry(table).or_default().extend(items);
            }
            for (table, left) in output.unprocessed_keys.unwrap_or_default() {
                if !left.keys.is_empty() {
                    pending.insert(table, left.keys);
                }
            }
        }
        if !pending.is_empty() {
            return Err(StoreError::Unavailable(format!(
                "{operation} kept returning unprocessed keys"
            )));
        }
        Ok(found)
    }

    /// The write of a user-wide revocation inside a transaction: never moves an existing
    /// one back (the condition fails then, and the caller drops the write: the entry there
    /// already covers every session this one would).
    fn user_revocation_put(
        &self,
        revocation: &Revocation,
    ) -> Result<TransactWriteItem, StoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.tables.revocations)
                .set_item(Some(revocation_to_item(revocation, self.clock.now_ms())))
                .condition_expression(USER_ENTRY_NEVER_BACK)
                .expression_attribute_names("#bv", "below_version")
                .expression_attribute_values(":bv", n(revocation.below_version))
                .build(),
        )?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Runs a user change (item 0) with an optional user-wide revocation (item 1) as one
    /// transaction. A cancelled change re-reads the user: if it is already as `landed`
    /// says, the transaction was ours (an answer lost, the SDK's retry refused) — the SDK
    /// also sends one idempotency token across its retries, which DynamoDB honours.
    async fn change_user(
        &self,
        username: &str,
        change: TransactWriteItem,
        ending_sessions: Option<&Revocation>,
        landed: impl Fn(Option<&User>) -> bool,
        operation: &str,
    ) -> Result<SaveOutcome, StoreError> {
        let mut revocation = match ending_sessions {
            Some(revocation) => Some(self.user_revocation_put(revocation)?),
            None => None,
        };
        for attempt in 0..CONFLICT_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let mut request = self
                .client
                .transact_write_items()
                .transact_items(change.clone());
            if let Some(revocation) = &revocation {
                request = request.transact_items(revocation.clone());
            }
            let error = match request.send().await {
                Ok(_) => return Ok(SaveOutcome::Saved),
                Err(error) => error,
            };
            let Some(cancelled) = Cancelled::of(&error) else {
                return Err(sdk_error(operation, error));
            };
            match (cancelled.code(0), cancelled.code(1)) {
                ("ConditionalCheckFailed", _) => {
                    return Ok(if landed(self.find_user(username).await?.as_ref()) {
                        SaveOutcome::Saved
                    } else {
                        SaveOutcome::Conflict
                    });
                }
                // A higher user-wide revocation is there: it covers ours.
                (_, "ConditionalCheckFailed") => revocation = None,
                // Logins and refreshes of this user check the same items: try again.
                _ if cancelled.conflicted() => {}
                _ => return Err(sdk_error(operation, error)),
            }
        }
        Err(StoreError::Unavailable(format!(
            "{operation} kept conflicting with concurrent writes"
        )))
    }
}

impl DynamoStore {
    /// The item of `table` whose string key `key_name` is `key`, read strongly consistent
    /// and converted by `convert`.
    async fn get_one<T>(
        &self,
        table: &str,
        key_name: &str,
        key: &str,
        operation: &str,
        convert: fn(&Item) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(table)
            .key(key_name, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(operation, e))?;
        output.item.as_ref().map(convert).transpose()
    }

    /// Puts `client` under the condition `conditioned` adds. A failed condition re-reads:
    /// our own write whose answer was lost (the SDK retried it) reads back as exactly what
    /// we wrote, and is `Saved`; anything else is `Conflict`.
    async fn put_client(
        &self,
        client: &Client,
        conditioned: impl FnOnce(PutItemFluentBuilder) -> PutItemFluentBuilder,
    ) -> Result<SaveOutcome, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.tables.clients)
            .set_item(Some(client_to_item(client)));
        match conditioned(put).send().await {
            Ok(_) => Ok(SaveOutcome::Saved),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let stored = self.find_client(&client.id).await?;
                Ok(if stored.as_ref() == Some(client) {
                    SaveOutcome::Saved
                } else {
                    SaveOutcome::Conflict
                })
            }
            Err(error) => Err(sdk_error("PutItem clients", error)),
        }
    }

    /// One bounded Scan page of `table` (whose string key is `key_name`): DynamoDB reads at
    /// most `limit` items (hash order) after the key `after`; the items converted, and the
    /// key to continue after.
    async fn scan_page<T>(
        &self,
        table: &str,
        key_name: &str,
        after: Option<&str>,
        limit: usize,
        convert: fn(&Item) -> Result<T, StoreError>,
    ) -> Result<(Vec<T>, Option<String>), StoreError> {
        let limit = i32::try_from(limit.clamp(1, 1000)).unwrap_or(1000);
        let mut request = self
            .client
            .scan()
            .table_name(table)
            .limit(limit)
            .consistent_read(true);
        if let Some(after) = after {
            request = request.exclusive_start_key(key_name, s(after));
        }
        let output = request
            .send()
            .await
            .map_err(|e| sdk_error(&format!("Scan {table}"), e))?;
        let items = output
            .items()
            .iter()
            .map(convert)
            .collect::<Result<Vec<_>, _>>()?;
        let next = match output.last_evaluated_key() {
            Some(key) => Some(get_s(key, key_name)?),
            None => None,
        };
        Ok((items, next))
    }

    /// Why a session's transaction was cancelled otherwise than by a conflict.
    async fn session_not_created<R: std::fmt::Debug>(
        &self,
        session: &Session,
        (session_code, owner_code): (String, String),
        error: SdkError<TransactWriteItemsError, R>,
    ) -> Result<CreateOutcome, StoreError> {
        match (session_code.as_str(), owner_code.as_str()) {
            (_, "ConditionalCheckFailed") => Ok(CreateOutcome::OwnerChanged),
            // The id exists. Session ids are random, so this is our own write whose answer
            // was lost and whose SDK retry then failed the condition: it landed if the
            // stored session is this one (same secret hash). Anything else is a collision.
            ("ConditionalCheckFailed", _) => match self.find_session(&session.id).await? {
                Some(stored) if stored.current_hash == session.current_hash => {
                    Ok(CreateOutcome::Created)
                }
                _ => Err(StoreError::Broken(
                    "a new session's id is already taken by another session".into(),
                )),
            },
            _ => Err(sdk_error("TransactWriteItems create session", error)),
        }
    }
}

#[async_trait]
impl UserStore for DynamoStore {
    async fn find_user(&self, username: &str) -> Result<Option<User>, StoreError> {
        self.get_one(
            &self.tables.users,
            "username",
            username,
            "GetItem users",
            user_from_item,
        )
        .await
    }

    async fn find_user_for_login(
        &self,
        username: &str,
        keys: &[String],
    ) -> Result<(Option<User>, Vec<u64>), StoreError> {
        let now = self.clock.now_secs();
        let user_key = HashMap::from([("username".to_owned(), s(username))]);
        let counter_keys = keys
            .iter()
            .map(|key| HashMap::from([("key".to_owned(), s(key))]))
            .collect();
        let mut found = self
            .batch_get(
                "BatchGetItem login",
                vec![
                    (&self.tables.users, vec![user_key]),
                    (&self.tables.revocations, counter_keys),
                ],
            )
            .await?;
        let user = match found
            .remove(&self.tables.users)
            .and_then(|items| items.into_iter().next())
        {
            Some(item) => Some(user_from_item(&item)?),
            None => None,
        };
        let mut counts: HashMap<String, u64> = HashMap::new();
        for item in found.remove(&self.tables.revocations).unwrap_or_default() {
            if get_n(&item, "expires_at").is_ok_and(|e| e > now) {
                counts.insert(get_s(&item, "key")?, get_n(&item, "count").unwrap_or(0));
            }
        }
        let counts = keys
            .iter()
            .map(|key| counts.get(key).copied().unwrap_or(0))
            .collect();
        Ok((user, counts))
    }

    async fn count_login_failure(
        &self,
        keys: &[String],
        expires_at: u64,
    ) -> Result<(), StoreError> {
        let mut updates = Vec::new();
        for key in keys {
            let update = built(
                Update::builder()
                    .table_name(&self.tables.revocations)
                    .key("key", s(key))
                    .update_expression("ADD #count :one SET #exp = :exp")
                    .expression_attribute_names("#count", "count")
                    .expression_attribute_names("#exp", "expires_at")
                    .expression_attribute_values(":one", n(1))
                    .expression_attribute_values(":exp", n(expires_at))
                    .build(),
            )?;
            updates.push(TransactWriteItem::builder().update(update).build());
        }
        // Concurrent failures of one counter make transactions conflict: try again.
        for attempt in 0..CONFLICT_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let result = self
                .client
                .transact_write_items()
                .set_transact_items(Some(updates.clone()))
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(()),
                Err(error) => error,
            };
            if !Cancelled::of(&error).is_some_and(|c| c.conflicted()) {
                return Err(sdk_error("TransactWriteItems login failure", error));
            }
        }
        Err(StoreError::Unavailable(
            "counting a failed login kept conflicting with concurrent ones".into(),
        ))
    }

    async fn create_user(&self, user: &User) -> Result<SaveOutcome, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.users)
            .set_item(Some(user_to_item(user)))
            .condition_expression("attribute_not_exists(username)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(SaveOutcome::Saved),
            // Taken — by this very write if its answer was lost (the id is random).
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                let stored = self.find_user(&user.username).await?;
                Ok(if stored.is_some_and(|s| s.id == user.id) {
                    SaveOutcome::Saved
                } else {
                    SaveOutcome::Conflict
                })
            }
            Err(error) => Err(sdk_error("PutItem users", error)),
        }
    }

    async fn update_user(
        &self,
        user: &User,
        ending_sessions: Option<&Revocation>,
    ) -> Result<SaveOutcome, StoreError> {
        let (condition, values) = user_is(&user.id, user.version.saturating_sub(1));
        let put = built(
            Put::builder()
                .table_name(&self.tables.users)
                .set_item(Some(user_to_item(user)))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(user_names()))
                .set_expression_attribute_values(Some(values))
                .build(),
        )?;
        let change = TransactWriteItem::builder().put(put).build();
        self.change_user(
            &user.username,
            change,
            ending_sessions,
            |stored| stored == Some(user),
            "TransactWriteItems update user",
        )
        .await
    }

    async fn delete_user(
        &self,
        user: &User,
        ending_sessions: &Revocation,
    ) -> Result<SaveOutcome, StoreError> {
        let (condition, values) = user_is(&user.id, user.version);
        let delete = built(
            Delete::builder()
                .table_name(&self.tables.users)
                .key("username", s(&user.username))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(user_names()))
                .set_expression_attribute_values(Some(values))
                .build(),
        )?;
        let change = TransactWriteItem::builder().delete(delete).build();
        // Gone, whoever removed it: every remover wrote its revocation with the removal.
        self.change_user(
            &user.username,
            change,
            Some(ending_sessions),
            |stored| stored.is_none_or(|s| s.id != user.id),
            "TransactWriteItems delete user",
        )
        .await
    }

    async fn list_users(&self, after: Option<&str>, limit: usize) -> Result<UserPage, StoreError> {
        let (users, next) = self
            .scan_page(&self.tables.users, "username", after, limit, user_from_item)
            .await?;
        Ok(UserPage { users, next })
    }
}

#[async_trait]
impl ClientStore for DynamoStore {
    async fn find_client(&self, id: &str) -> Result<Option<Client>, StoreError> {
        self.get_one(
            &self.tables.clients,
            "client_id",
            id,
            "GetItem clients",
            client_from_item,
        )
        .await
    }

    async fn create_client(&self, client: &Client) -> Result<SaveOutcome, StoreError> {
        self.put_client(client, |put| {
            put.condition_expression("attribute_not_exists(client_id)")
        })
        .await
    }

    async fn update_client(&self, client: &Client) -> Result<SaveOutcome, StoreError> {
        self.put_client(client, |put| {
            put.condition_expression("#v = :v AND #c = :c")
                .expression_attribute_names("#v", "version")
                .expression_attribute_names("#c", "created_ms")
                .expression_attribute_values(":v", n(client.version.saturating_sub(1)))
                .expression_attribute_values(":c", n(client.created_ms))
        })
        .await
    }

    async fn delete_client(
        &self,
        client: &Client,
        ending_tokens: &Revocation,
    ) -> Result<SaveOutcome, StoreError> {
        let delete = built(
            Delete::builder()
                .table_name(&self.tables.clients)
                .key("client_id", s(&client.id))
                .condition_expression("#v = :v AND #c = :c")
                .expression_attribute_names("#v", "version")
                .expression_attribute_names("#c", "created_ms")
                .expression_attribute_values(":v", n(client.version))
                .expression_attribute_values(":c", n(client.created_ms))
                .build(),
        )?;
        let mut revocation = Some(self.user_revocation_put(ending_tokens)?);
        for attempt in 0..CONFLICT_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let mut request = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().delete(delete.clone()).build());
            if let Some(revocation) = &revocation {
                request = request.transact_items(revocation.clone());
            }
            let error = match request.send().await {
                Ok(_) => return Ok(SaveOutcome::Saved),
                Err(error) => error,
            };
            let Some(cancelled) = Cancelled::of(&error) else {
                return Err(sdk_error("TransactWriteItems delete client", error));
            };
            match (cancelled.code(0), cancelled.code(1)) {
                ("ConditionalCheckFailed", _) => {
                    // Gone (whoever removed it wrote its revocation with it), or changed.
                    let stored = self.find_client(&client.id).await?;
                    return Ok(match stored {
                        Some(stored) if stored.created_ms == client.created_ms => {
                            SaveOutcome::Conflict
                        }
                        _ => SaveOutcome::Saved,
                    });
                }
                // A higher revocation of this id is there: it covers ours.
                (_, "ConditionalCheckFailed") => revocation = None,
                _ if cancelled.conflicted() => {}
                _ => return Err(sdk_error("TransactWriteItems delete client", error)),
            }
        }
        Err(StoreError::Unavailable(
            "removing the client kept conflicting with concurrent writes".into(),
        ))
    }

    async fn list_clients(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<ClientPage, StoreError> {
        let (clients, next) = self
            .scan_page(
                &self.tables.clients,
                "client_id",
                after,
                limit,
                client_from_item,
            )
            .await?;
        Ok(ClientPage { clients, next })
    }
}

#[async_trait]
impl SessionStore for DynamoStore {
    async fn create_session(
        &self,
        session: &Session,
        owner: &SessionOwner,
    ) -> Result<CreateOutcome, StoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.tables.sessions)
                .set_item(Some(session_to_item(session)))
                .condition_expression("attribute_not_exists(id)")
                .build(),
        )?;
        let (condition, values) = user_is(&owner.user_id, owner.version);
        let owner_check = built(
            ConditionCheck::builder()
                .table_name(&self.tables.users)
                .key("username", s(&owner.username))
                .condition_expression(condition)
                .set_expression_attribute_names(Some(user_names()))
                .set_expression_attribute_values(Some(values))
                .build(),
        )?;
        for attempt in 0..CONFLICT_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let result = self
                .client
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().put(put.clone()).build())
                .transact_items(
                    TransactWriteItem::builder()
                        .condition_check(owner_check.clone())
                        .build(),
                )
                .send()
                .await;
            let error = match result {
                Ok(_) => return Ok(CreateOutcome::Created),
                Err(error) => error,
            };
            let Some(cancelled) = Cancelled::of(&error) else {
                return Err(sdk_error("TransactWriteItems create session", error));
            };
            if !cancelled.conflicted() {
                let codes = (cancelled.code(0).to_owned(), cancelled.code(1).to_owned());
                return self.session_not_created(session, codes, error).await;
            }
            // Another login or a change of the same user at this moment: try again.
        }
        Err(StoreError::Unavailable(
            "creating the session kept conflicting with concurrent writes".into(),
        ))
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
                .condition_expression("attribute_not_exists(#bv) OR #exp <= :now OR #bv <= :uv")
                .expression_attribute_names("#exp", "expires_at")
                .expression_attribute_names("#bv", "below_version")
                .expression_attribute_values(":now", n(now_secs))
                .expression_attribute_values(":uv", n(updated.user_version))
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
                let Some(cancelled) = Cancelled::of(&error) else {
                    return Err(sdk_error("TransactWriteItems rotate", error));
                };
                match (cancelled.code(0), cancelled.code(1)) {
                    // The user's sessions were revoked after this one was created.
                    (_, "ConditionalCheckFailed") => Ok(ReplaceOutcome::Ended),
                    ("ConditionalCheckFailed", _) => {
                        // The stored item comes back (ALL_OLD); should it ever be missing,
                        // say Conflict and let the caller's re-read tell.
                        let stored = cancelled.item(0);
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
                    _ if cancelled.conflicted() => Ok(ReplaceOutcome::Conflict),
                    _ => Err(sdk_error("TransactWriteItems rotate", error)),
                }
            }
        }
    }

    async fn end_session(&self, id: &str, revocation: &Revocation) -> Result<(), StoreError> {
        let put = built(
            Put::builder()
                .table_name(&self.tables.revocations)
                .set_item(Some(revocation_to_item(revocation, self.clock.now_ms())))
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
            let Some(cancelled) = Cancelled::of(&error) else {
                return Err(sdk_error("TransactWriteItems end session", error));
            };
            match cancelled.code(0) {
                // No such session (already swept by TTL): the entry alone still matters.
                "ConditionalCheckFailed" => return self.put_revocation(revocation).await,
                _ if cancelled.conflicted() => continue,
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
            .set_item(Some(revocation_to_item(revocation, self.clock.now_ms())));
        if matches!(revocation.key, RevocationKey::User(_)) {
            request = request
                .condition_expression(USER_ENTRY_NEVER_BACK)
                .expression_attribute_names("#bv", "below_version")
                .expression_attribute_values(":bv", n(revocation.below_version));
        } else {
            // Revoking again what is revoked writes nothing: a flood of the same revocation
            // costs no write of the table or of its `by-change` index.
            request = request
                .condition_expression("attribute_not_exists(#exp) OR #exp < :exp")
                .expression_attribute_names("#exp", "expires_at")
                .expression_attribute_values(":exp", n(revocation.expires_at));
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_conditional_check_failed_exception()) =>
            {
                Ok(()) // an entry covering as much is already there
            }
            Err(error) => Err(sdk_error("PutItem revocations", error)),
        }
    }

    async fn list_sessions(
        &self,
        user_id: &str,
        after: Option<&SessionCursor>,
        limit: usize,
    ) -> Result<SessionPage, StoreError> {
        // DynamoDB counts `Limit` before the filter drops ended and expired sessions (they
        // stay in the index until TTL deletes them), so a query can come back short: query
        // on until the page is full or the index is done — a few times at most.
        let limit = limit.clamp(1, 1000);
        let mut sessions = Vec::new();
        let mut start = after.cloned();
        for _ in 0..LIST_QUERIES_PER_PAGE {
            let wanted = i32::try_from(limit - sessions.len()).unwrap_or(1000);
            let mut request = self
                .client
                .query()
                .table_name(&self.tables.sessions)
                .index_name(SESSIONS_BY_USER_INDEX)
                .key_condition_expression("user_id = :user")
                .filter_expression("#ended = :false AND #exp > :now")
                .expression_attribute_names("#ended", "ended")
                .expression_attribute_names("#exp", "expires_at")
                .expression_attribute_values(":user", s(user_id))
                .expression_attribute_values(":false", AttributeValue::Bool(false))
                .expression_attribute_values(":now", n(self.clock.now_secs()))
                .scan_index_forward(false)
                .limit(wanted);
            if let Some(start) = &start {
                request = request
                    .exclusive_start_key("user_id", s(user_id))
                    .exclusive_start_key("created_ms", n(start.created_ms))
                    .exclusive_start_key("id", s(&start.id));
            }
            let output = request
                .send()
                .await
                .map_err(|e| sdk_error("Query sessions by-user", e))?;
            for item in output.items() {
                sessions.push(session_summary_from_item(item)?);
            }
            start = match output.last_evaluated_key() {
                Some(key) => Some(SessionCursor {
                    created_ms: get_n(key, "created_ms")?,
                    id: get_s(key, "id")?,
                }),
                None => None,
            };
            if start.is_none() || sessions.len() >= limit {
                break;
            }
        }
        Ok(SessionPage {
            sessions,
            next: start,
        })
    }

    async fn find_revocations(
        &self,
        keys: &[RevocationKey],
    ) -> Result<Vec<Revocation>, StoreError> {
        // BatchGetItem refuses duplicate keys.
        let mut texts: Vec<String> = keys.iter().map(revocation_key_text).collect();
        texts.sort();
        texts.dedup();
        let keys = texts
            .iter()
            .map(|text| HashMap::from([("key".to_owned(), s(text))]))
            .collect();
        let mut found = self
            .batch_get(
                "BatchGetItem revocations",
                vec![(&self.tables.revocations, keys)],
            )
            .await?;
        found
            .remove(&self.tables.revocations)
            .unwrap_or_default()
            .iter()
            .map(revocation_from_item)
            .collect()
    }

    async fn revocations_changed_since(
        &self,
        since_ms: u64,
        live_after: u64,
        limit: usize,
    ) -> Result<Vec<RevocationChange>, StoreError> {
        // Every UTC day from the first asked for to today — plus the margin a writer whose
        // clock runs ahead might have written into.
        let last = change_day(self.clock.now_ms().saturating_add(CLOCK_AHEAD_MARGIN_MS));
        // The mirror asks for a day or two; never more than a month of queries.
        let first = change_day(since_ms).max(last.saturating_sub(FEED_MAX_DAYS));
        let mut changes = Vec::new();
        for day in first..=last {
            let mut start = None;
            loop {
                let page = self
                    .client
                    .query()
                    .table_name(&self.tables.revocations)
                    .index_name(REVOCATIONS_BY_CHANGE_INDEX)
                    .key_condition_expression("#day = :day AND #changed >= :since")
                    .filter_expression("#expires > :live")
                    .expression_attribute_names("#day", "change_day")
                    .expression_attribute_names("#changed", "changed_ms")
                    .expression_attribute_names("#expires", "expires_at")
                    .expression_attribute_values(":day", s(&change_day_text(day)))
                    .expression_attribute_values(":since", n(since_ms))
                    .expression_attribute_values(":live", n(live_after))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| sdk_error("Query revocations by-change", e))?;
                for item in page.items() {
                    changes.push(RevocationChange {
                        revocation: revocation_from_item(item)?,
                        changed_ms: get_n(item, "changed_ms")?,
                    });
                }
                if changes.len() > limit {
                    return Ok(changes);
                }
                start = page.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        Ok(changes)
    }
}

/// The most days one feed read goes back.
const FEED_MAX_DAYS: u64 = 31;
/// How far ahead of this process's clock another writer's may be, for the feed's days.
const CLOCK_AHEAD_MARGIN_MS: u64 = crate::config::CLOCK_SKEW_ALLOWANCE_SECS * 1000;

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
        let item = key_registry_to_item(keys, expected_version + 1);
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
