//! Item conversion, apart from the store operations: how each record becomes a DynamoDB
//! item and back, per table. A stored item that does not read back is
//! [`StoreError::Broken`]. Binary attributes stay binary (`B`).
//!
//! | table | key | attributes |
//! |---|---|---|
//! | users | `username` S | `user_id` S, `password_hash` S (argon2id PHC), `scopes` S (space-separated), `disabled` BOOL, `created_ms` N, `version` N (both absent on items written before they existed: 0) |
//! | sessions | `id` S | `user_id` S (GSI `by-user`), `scope` S, `client_id` S?, `user_version` N, `created_ms` N, `expires_at` N (TTL), `last_used_ms` N, `user_agent` S?, `source_ip` S?, `generation` N, `current_hash` B, `reuse_key` B, `rotated_at_ms` N?, `sealed_successor` B?, `ended` BOOL |
//! | revocations | `key` S (`jti#…`, `sid#…`, `sub#…`; login-limiting counters `fail#<digest>#<window>`) | `expires_at` N (TTL), `below_version` N (for `sub#`), `count` N (for `fail#`); entries (not counters): `changed_ms` N and `change_day` S (`d<UTC day>`), the keys of the `by-change` index |
//! | clients | `client_id` S | `name` S, `secret_hash` S? (SHA-256, base64url), `previous_secret_hash` S?, `previous_secret_until` N?, `grant_types` S, `scopes` S (space-separated), `may_introspect` BOOL, `created_ms` N, `version` N |
//! | keys | `id` S (one item: `registry`) | `version` N, `keys` L of M {`kid` S, `key_ref` S, `alg` S, `public_key` B, `state` S, `published_at` N, `state_since` N; a data key while it may sign: `wrapping_key` S, `wrapped_private_key` B} |
//!

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::keys::data_key::WrappedKey;
use crate::keys::{KeyRecord, KeyRegistryDocument, KeyState, SigningAlgorithm};
use crate::store::{
    Client, Device, Revocation, RevocationKey, Rotation, Session, SessionSummary, StoreError, User,
};

pub type Item = HashMap<String, AttributeValue>;

pub fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_owned())
}

pub fn n(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub fn b(value: &[u8]) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

pub fn get_s(item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(value)) => Ok(value.clone()),
        _ => Err(StoreError::Broken(format!(
            "stored item lacks string {name:?}"
        ))),
    }
}

pub fn get_n(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(value)) => value
            .parse()
            .map_err(|_| StoreError::Broken(format!("stored {name:?} is not a whole number"))),
        _ => Err(StoreError::Broken(format!(
            "stored item lacks number {name:?}"
        ))),
    }
}

pub fn get_b32(item: &Item, name: &str) -> Result<[u8; 32], StoreError> {
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

pub fn get_bool(item: &Item, name: &str) -> bool {
    matches!(item.get(name), Some(AttributeValue::Bool(true)))
}

pub fn revocation_key_text(key: &RevocationKey) -> String {
    match key {
        RevocationKey::Token(jti) => format!("jti#{jti}"),
        RevocationKey::Session(sid) => format!("sid#{sid}"),
        RevocationKey::User(sub) => format!("sub#{sub}"),
    }
}

pub fn revocation_key_from_text(text: &str) -> Option<RevocationKey> {
    let (kind, id) = text.split_once('#')?;
    let id = id.to_owned();
    match kind {
        "jti" => Some(RevocationKey::Token(id)),
        "sid" => Some(RevocationKey::Session(id)),
        "sub" => Some(RevocationKey::User(id)),
        _ => None,
    }
}

pub fn user_to_item(user: &User) -> Item {
    HashMap::from([
        ("username".to_owned(), s(&user.username)),
        ("user_id".to_owned(), s(&user.id)),
        ("password_hash".to_owned(), s(&user.password_hash)),
        ("scopes".to_owned(), s(&user.scopes.join(" "))),
        ("disabled".to_owned(), AttributeValue::Bool(user.disabled)),
        ("created_ms".to_owned(), n(user.created_ms)),
        ("version".to_owned(), n(user.version)),
    ])
}

pub fn user_from_item(item: &Item) -> Result<User, StoreError> {
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
        created_ms: get_n_or_zero(item, "created_ms")?,
        version: get_n_or_zero(item, "version")?,
    })
}

pub fn client_to_item(client: &Client) -> Item {
    let mut item = HashMap::from([
        ("client_id".to_owned(), s(&client.id)),
        ("name".to_owned(), s(&client.name)),
        ("grant_types".to_owned(), s(&client.grant_types.join(" "))),
        ("scopes".to_owned(), s(&client.scopes.join(" "))),
        (
            "may_introspect".to_owned(),
            AttributeValue::Bool(client.may_introspect),
        ),
        ("created_ms".to_owned(), n(client.created_ms)),
        ("version".to_owned(), n(client.version)),
    ]);
    if let Some(hash) = &client.secret_hash {
        item.insert("secret_hash".to_owned(), s(hash));
    }
    if let Some((hash, until)) = &client.previous_secret {
        item.insert("previous_secret_hash".to_owned(), s(hash));
        item.insert("previous_secret_until".to_owned(), n(*until));
    }
    item
}

pub fn client_from_item(item: &Item) -> Result<Client, StoreError> {
    let words = |name: &str| -> Result<Vec<String>, StoreError> {
        Ok(get_s(item, name)?
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect())
    };
    let previous_secret = match item.get("previous_secret_hash") {
        Some(_) => Some((
            get_s(item, "previous_secret_hash")?,
            get_n(item, "previous_secret_until")?,
        )),
        None => None,
    };
    Ok(Client {
        id: get_s(item, "client_id")?,
        name: get_s(item, "name")?,
        secret_hash: match item.get("secret_hash") {
            Some(_) => Some(get_s(item, "secret_hash")?),
            None => None,
        },
        previous_secret,
        grant_types: words("grant_types")?,
        scopes: words("scopes")?,
        may_introspect: get_bool(item, "may_introspect"),
        created_ms: get_n(item, "created_ms")?,
        version: get_n(item, "version")?,
    })
}

/// A number attribute that items written by an older tokenlife lack (read as 0).
fn get_n_or_zero(item: &Item, name: &str) -> Result<u64, StoreError> {
    match item.get(name) {
        None => Ok(0),
        Some(_) => get_n(item, name),
    }
}

pub fn session_to_item(session: &Session) -> Item {
    let mut item = HashMap::from([
        ("id".to_owned(), s(&session.id)),
        ("user_id".to_owned(), s(&session.user_id)),
        ("scope".to_owned(), s(&session.scope)),
        ("user_version".to_owned(), n(session.user_version)),
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
    if let Some(user_agent) = &session.device.user_agent {
        item.insert("user_agent".to_owned(), s(user_agent));
    }
    if let Some(source_ip) = &session.device.source_ip {
        item.insert("source_ip".to_owned(), s(source_ip));
    }
    if let Some(rotation) = &session.last_rotation {
        item.insert("rotated_at_ms".to_owned(), n(rotation.at_ms));
        item.insert("sealed_successor".to_owned(), b(&rotation.sealed_successor));
    }
    item
}

pub fn session_from_item(item: &Item) -> Result<Session, StoreError> {
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
        user_version: get_n_or_zero(item, "user_version")?,
        client_id: get_s(item, "client_id").ok(),
        created_ms: get_n(item, "created_ms")?,
        expires_at: get_n(item, "expires_at")?,
        last_used_ms: get_n(item, "last_used_ms")?,
        device: device_from_item(item),
        generation: get_n(item, "generation")?,
        current_hash: get_b32(item, "current_hash")?,
        reuse_key: get_b32(item, "reuse_key")?,
        last_rotation,
        ended: get_bool(item, "ended"),
    })
}

/// The device a session (or its index entry) records.
fn device_from_item(item: &Item) -> Device {
    Device {
        user_agent: get_s(item, "user_agent").ok(),
        source_ip: get_s(item, "source_ip").ok(),
    }
}

/// The attributes the sessions table's `by-user` index projects besides its keys (`id`,
/// `user_id`, `created_ms`): what a listing shows. template.yaml and `tokenlife setup`
/// declare the same.
pub const SESSION_SUMMARY_ATTRIBUTES: [&str; 7] = [
    "client_id",
    "user_version",
    "last_used_ms",
    "expires_at",
    "ended",
    "user_agent",
    "source_ip",
];

pub fn session_summary_from_item(item: &Item) -> Result<SessionSummary, StoreError> {
    Ok(SessionSummary {
        id: get_s(item, "id")?,
        user_id: get_s(item, "user_id")?,
        client_id: get_s(item, "client_id").ok(),
        user_version: get_n_or_zero(item, "user_version")?,
        created_ms: get_n(item, "created_ms")?,
        last_used_ms: get_n(item, "last_used_ms")?,
        expires_at: get_n(item, "expires_at")?,
        device: device_from_item(item),
    })
}

/// The key of the keys table's one item.
pub const KEY_REGISTRY_ID: &str = "registry";

fn key_record_to_value(key: &KeyRecord) -> AttributeValue {
    let mut value = HashMap::from([
        ("kid".to_owned(), s(&key.kid)),
        ("key_ref".to_owned(), s(&key.key_ref)),
        ("alg".to_owned(), s(key.algorithm.name())),
        ("public_key".to_owned(), b(&key.public_key_der)),
        ("state".to_owned(), s(key.state.name())),
        ("published_at".to_owned(), n(key.published_at)),
        ("state_since".to_owned(), n(key.state_since)),
    ]);
    if let Some(wrapped) = &key.wrapped {
        value.insert("wrapping_key".to_owned(), s(&wrapped.wrapping_key));
        value.insert("wrapped_private_key".to_owned(), b(&wrapped.ciphertext));
    }
    AttributeValue::M(value)
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
        wrapped: match (item.get("wrapping_key"), item.get("wrapped_private_key")) {
            (Some(AttributeValue::S(wrapping_key)), Some(AttributeValue::B(ciphertext))) => {
                Some(WrappedKey {
                    wrapping_key: wrapping_key.clone(),
                    ciphertext: ciphertext.as_ref().to_vec(),
                })
            }
            (None, None) => None,
            _ => {
                return Err(StoreError::Broken(
                    "a stored key's wrapped private key is incomplete".into(),
                ));
            }
        },
    })
}

/// The keys table's one item: the registry at `version`.
pub fn key_registry_to_item(keys: &[KeyRecord], version: u64) -> Item {
    HashMap::from([
        ("id".to_owned(), s(KEY_REGISTRY_ID)),
        ("version".to_owned(), n(version)),
        (
            "keys".to_owned(),
            AttributeValue::L(keys.iter().map(key_record_to_value).collect()),
        ),
    ])
}

pub fn key_registry_from_item(item: &Item) -> Result<KeyRegistryDocument, StoreError> {
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

/// A revocation entry written at `changed_ms`: with the attributes of the `by-change`
/// index, which the revocation mirror reads.
pub fn revocation_to_item(revocation: &Revocation, changed_ms: u64) -> Item {
    HashMap::from([
        ("key".to_owned(), s(&revocation_key_text(&revocation.key))),
        ("expires_at".to_owned(), n(revocation.expires_at)),
        ("below_version".to_owned(), n(revocation.below_version)),
        ("changed_ms".to_owned(), n(changed_ms)),
        (
            "change_day".to_owned(),
            s(&change_day_text(change_day(changed_ms))),
        ),
    ])
}

/// The UTC day (since the epoch) of a time in milliseconds: the `by-change` partition.
pub fn change_day(ms: u64) -> u64 {
    ms / 86_400_000
}

/// The `change_day` attribute of day `day`.
pub fn change_day_text(day: u64) -> String {
    format!("d{day}")
}

pub fn revocation_from_item(item: &Item) -> Result<Revocation, StoreError> {
    let text = get_s(item, "key")?;
    Ok(Revocation {
        key: revocation_key_from_text(&text).ok_or_else(|| {
            StoreError::Broken(format!("unknown revocation key kind in {text:?}"))
        })?,
        expires_at: get_n(item, "expires_at")?,
        below_version: get_n_or_zero(item, "below_version")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_registry_round_trips() {
        let registry = KeyRegistryDocument {
            version: 3,
            keys: vec![
                KeyRecord {
                    kid: "k1".into(),
                    key_ref: "arn:aws:kms:eu-west-1:000000000000:key/1".into(),
                    algorithm: SigningAlgorithm::Rs256,
                    public_key_der: vec![1, 2, 3],
                    state: KeyState::Retiring,
                    published_at: 10,
                    state_since: 20,
                    wrapped: None,
                },
                KeyRecord {
                    kid: "k2".into(),
                    key_ref: "data-key/abc".into(),
                    algorithm: SigningAlgorithm::Es256,
                    public_key_der: vec![4, 5],
                    state: KeyState::Active,
                    published_at: 30,
                    state_since: 30,
                    wrapped: Some(WrappedKey {
                        wrapping_key: "arn:aws:kms:eu-west-1:000000000000:key/w".into(),
                        ciphertext: vec![6, 7, 8],
                    }),
                },
            ],
        };
        let mut item = key_registry_to_item(&registry.keys, 3);
        assert_eq!(key_registry_from_item(&item).unwrap(), registry);
        item.insert("keys".to_owned(), s("not a list"));
        assert!(key_registry_from_item(&item).is_err());
    }

    #[test]
    fn clients_round_trip() {
        let mut client = Client {
            id: "c1".into(),
            name: "billing".into(),
            secret_hash: Some("h1".into()),
            previous_secret: Some(("h0".into(), 99)),
            grant_types: vec!["client_credentials".into()],
            scopes: vec!["billing:read".into(), "billing:write".into()],
            may_introspect: true,
            created_ms: 5,
            version: 2,
        };
        assert_eq!(client_from_item(&client_to_item(&client)).unwrap(), client);
        client.secret_hash = None;
        client.previous_secret = None;
        client.scopes = Vec::new();
        assert_eq!(client_from_item(&client_to_item(&client)).unwrap(), client);
    }

    #[test]
    fn items_round_trip() {
        let session = Session {
            scope: "user admin".into(),
            client_id: Some("cli".into()),
            generation: 4,
            last_rotation: Some(Rotation {
                at_ms: 7,
                sealed_successor: vec![8; 76],
            }),
            ended: true,
            ..crate::testkit::sample_session(1)
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
        let user = crate::testkit::sample_user();
        assert_eq!(user_from_item(&user_to_item(&user)).unwrap(), user);
        for key in [
            RevocationKey::Token("j".into()),
            RevocationKey::Session("s#x".into()),
            RevocationKey::User("u".into()),
        ] {
            let revocation = Revocation {
                key,
                expires_at: 9,
                below_version: 10,
            };
            assert_eq!(
                revocation_from_item(&revocation_to_item(&revocation, 1_800_000_000_000)).unwrap(),
                revocation
            );
        }
    }
}
