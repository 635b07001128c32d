//! Registered clients (RFC 6749 section 2): registration, secrets and their rotation,
//! client authentication (section 2.3.1), what a client may ask for, and the client
//! credentials grant (section 4.4). For trusted callers, except [`TokenService::authenticate_client`]
//! and the grant, which the HTTP layer calls for every client-authenticated route.
//!
//! **Secrets.** A confidential client's secret is 32 random bytes (256 bits, base64url),
//! shown once, at registration or rotation; only its SHA-256 is stored. A fast hash is right
//! here, unlike for passwords: argon2 exists to slow down guessing of *low-entropy* secrets,
//! and nothing guesses 2^256 — a stolen hash cannot be turned back into the secret, with or
//! without a slow hash, so a slow one would only cost every token request ~50 ms of CPU.
//! Secrets given by hand (`serve --client ID:SECRET`, development only) are hashed alike.
//! Comparison is constant-time, over the hashes. A rotation keeps the previous secret
//! working for an overlap (a day by default) so that the client's deployments can move.
//!
//! **Ids.** Generated ids are `c_` and 16 random base64url characters; an id chosen by hand
//! is 1 to 128 of `A-Z a-z 0-9 . _ ~ -` but never the shape of a user id (22 base64url
//! characters): a client-credentials token's `sub` is its client id (RFC 9068 section 2.2),
//! which must never name a user.

use serde::Serialize;

use super::ADMIN_SCOPE;
use super::TokenService;
use super::users::{DEFAULT_PAGE, MAX_PAGE, check_scopes};
use crate::audit::{Event, Record};
use crate::config::{ACCESS_TTL_MAX_SECS, BLOCKLIST_MARGIN_SECS};
use crate::error::Error;
use crate::secrets::{b64url, constant_time_eq, random_bytes, sha256};
use crate::store::{Client, Revocation, RevocationKey, SaveOutcome};

/// The grants a client may be allowed.
pub const GRANT_PASSWORD: &str = "password";
pub const GRANT_REFRESH_TOKEN: &str = "refresh_token";
pub const GRANT_CLIENT_CREDENTIALS: &str = "client_credentials";
pub const GRANTS: [&str; 3] = [
    GRANT_PASSWORD,
    GRANT_REFRESH_TOKEN,
    GRANT_CLIENT_CREDENTIALS,
];
/// A client allowed this scope may ask for any.
pub const ANY_SCOPE: &str = "*";
/// How long a rotated-out secret keeps working, unless the rotation says otherwise.
pub const DEFAULT_SECRET_OVERLAP_SECS: u64 = 86_400;
/// The longest overlap a rotation may ask for.
pub const MAX_SECRET_OVERLAP_SECS: u64 = 30 * 86_400;
const MAX_CLIENT_ID_CHARS: usize = 128;
const MAX_NAME_CHARS: usize = 128;
const MAX_SECRET_BYTES: usize = 512;

/// What to register. Holds a secret (development only): no Debug.
#[derive(Clone, Default)]
pub struct NewClient {
    /// `None`: generated.
    pub id: Option<String>,
    pub name: String,
    pub confidential: bool,
    /// Empty: `password` and `refresh_token` for a public client, `client_credentials` for
    /// a confidential one.
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub may_introspect: bool,
    /// Development only (`serve --client ID:SECRET`): this secret rather than a random one.
    pub secret: Option<String>,
}

/// A client as the admin routes and the CLI show it: never a secret or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientView {
    pub client_id: String,
    pub name: String,
    /// `confidential` or `public`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub grant_types: Vec<String>,
    pub scopes: Vec<String>,
    pub may_introspect: bool,
    /// Epoch seconds.
    pub created_at: u64,
    /// Until when the secret before the last rotation still works (epoch seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_until: Option<u64>,
}

impl From<&Client> for ClientView {
    fn from(client: &Client) -> Self {
        Self {
            client_id: client.id.clone(),
            name: client.name.clone(),
            kind: if client.is_confidential() {
                "confidential"
            } else {
                "public"
            },
            grant_types: client.grant_types.clone(),
            scopes: client.scopes.clone(),
            may_introspect: client.may_introspect,
            created_at: client.created_ms / 1000,
            previous_secret_until: client.previous_secret.as_ref().map(|(_, until)| *until),
        }
    }
}

/// A client and, for a confidential one just registered or rotated, its secret — the only
/// time it is shown. Holds a secret: no Debug.
#[derive(Serialize)]
pub struct ClientWithSecret {
    #[serde(flatten)]
    pub client: ClientView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
}

/// One page of the client list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientList {
    pub clients: Vec<ClientView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// A client-credentials grant (no refresh token). Holds a token: no Debug.
#[derive(Serialize)]
pub struct ClientGrant {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
}

impl TokenService {
    /// Registers a client; `Conflict` if its id is taken.
    pub async fn register_client(&self, new: NewClient) -> Result<ClientWithSecret, Error> {
        let id = match new.id {
            Some(id) => check_client_id(&id)?,
            None => format!("c_{}", b64url(&random_bytes::<12>())),
        };
        let name = new.name.trim();
        if name.is_empty()
            || name.chars().count() > MAX_NAME_CHARS
            || name.chars().any(char::is_control)
        {
            return Err(Error::invalid_request(format!(
                "a client name is 1 to {MAX_NAME_CHARS} characters, no control characters"
            )));
        }
        let grant_types = check_grants(new.grant_types, new.confidential)?;
        let scopes = check_scopes(new.scopes)?;
        if new.may_introspect && !new.confidential {
            return Err(Error::invalid_request(
                "only a confidential client may introspect others' tokens",
            ));
        }
        let secret = match (new.confidential, new.secret) {
            (false, Some(_)) => {
                return Err(Error::invalid_request("a public client has no secret"));
            }
            (false, None) => None,
            (true, Some(given)) => Some(check_secret(given)?),
            (true, None) => Some(b64url(&random_bytes::<32>())),
        };
        let client = Client {
            id,
            name: name.to_owned(),
            secret_hash: secret.as_deref().map(|s| secret_hash(s.as_bytes())),
            previous_secret: None,
            grant_types,
            scopes,
            may_introspect: new.may_introspect,
            created_ms: self.deps.clock.now_ms(),
            version: 1,
        };
        match self.deps.clients.create_client(&client).await? {
            SaveOutcome::Saved => {
                let view = ClientView::from(&client);
                Record::new(Event::ClientRegistered, "succeeded")
                    .client_id(client.id.as_str())
                    .reason(view.kind)
                    .emit();
                Ok(ClientWithSecret {
                    client: view,
                    client_secret: secret,
                })
            }
            SaveOutcome::Conflict => Err(Error::Conflict(format!(
                "a client with id {:?} exists already",
                client.id
            ))),
        }
    }

    pub async fn client(&self, id: &str) -> Result<ClientView, Error> {
        Ok(ClientView::from(&self.existing_client(id).await?))
    }

    pub async fn list_clients(
        &self,
        after: Option<&str>,
        limit: Option<usize>,
    ) -> Result<ClientList, Error> {
        let limit = limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
        let page = self.deps.clients.list_clients(after, limit).await?;
        Ok(ClientList {
            clients: page.clients.iter().map(ClientView::from).collect(),
            next_cursor: page.next,
        })
    }

    /// Removes a client and revokes its client-credentials tokens in the same write (the
    /// sessions its users made through it can no longer be refreshed: it no longer
    /// authenticates). Removing a client that is not there is `NotFound`.
    pub async fn remove_client(&self, id: &str) -> Result<(), Error> {
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let client = self.existing_client(id).await?;
            let ending = Revocation {
                key: RevocationKey::User(client.id.clone()),
                expires_at: self.deps.clock.now_secs()
                    + ACCESS_TTL_MAX_SECS
                    + BLOCKLIST_MARGIN_SECS,
                below_version: client.created_ms + 1,
            };
            match self.deps.clients.delete_client(&client, &ending).await? {
                SaveOutcome::Saved => {
                    Record::new(Event::ClientRemoved, "succeeded")
                        .client_id(client.id.as_str())
                        .emit();
                    return Ok(());
                }
                SaveOutcome::Conflict => continue,
            }
        }
        Err(changing_under_us())
    }

    /// A new secret for a confidential client, shown once; the current one keeps working
    /// for `overlap_secs` (0: stops at once), any older one stops.
    pub async fn rotate_client_secret(
        &self,
        id: &str,
        overlap_secs: u64,
    ) -> Result<ClientWithSecret, Error> {
        if overlap_secs > MAX_SECRET_OVERLAP_SECS {
            return Err(Error::invalid_request(format!(
                "the overlap is at most {MAX_SECRET_OVERLAP_SECS} seconds"
            )));
        }
        let secret = b64url(&random_bytes::<32>());
        for _ in 0..MAX_CHANGE_ATTEMPTS {
            let client = self.existing_client(id).await?;
            let Some(current) = client.secret_hash.clone() else {
                return Err(Error::invalid_request(
                    "a public client has no secret to rotate",
                ));
            };
            let now = self.deps.clock.now_secs();
            let updated = Client {
                secret_hash: Some(secret_hash(secret.as_bytes())),
                previous_secret: (overlap_secs > 0).then(|| (current, now + overlap_secs)),
                version: client.version + 1,
                ..client
            };
            match self.deps.clients.update_client(&updated).await? {
                SaveOutcome::Saved => {
                    let overlap = format!("overlap {overlap_secs}");
                    Record::new(Event::ClientSecretRotated, "succeeded")
                        .client_id(updated.id.as_str())
                        .reason(overlap.as_str())
                        .emit();
                    return Ok(ClientWithSecret {
                        client: ClientView::from(&updated),
                        client_secret: Some(secret),
                    });
                }
                SaveOutcome::Conflict => continue,
            }
        }
        Err(changing_under_us())
    }

    /// Client authentication (RFC 6749 section 2.3): the registered client `id`, if
    /// `secret` is its secret (confidential) or absent (public); otherwise `invalid_client`
    /// — the same answer for an unknown id and a wrong secret.
    pub async fn authenticate_client(
        &self,
        id: &str,
        secret: Option<&str>,
    ) -> Result<Client, Error> {
        let refused = |client: Option<&Client>, reason: &str| {
            Record::new(Event::ClientAuthenticationFailed, "refused")
                .client_id(client.map(|c| c.id.as_str()))
                .reason(reason)
                .emit();
            Error::InvalidClient("client authentication failed".into())
        };
        if id.is_empty() || id.len() > MAX_CLIENT_ID_CHARS {
            return Err(refused(None, "unknown_client"));
        }
        let Some(client) = self.deps.clients.find_client(id).await? else {
            return Err(refused(None, "unknown_client"));
        };
        match (&client.secret_hash, secret) {
            (None, None) => Ok(client),
            (Some(current), Some(secret)) => {
                // A secret longer than any we accept is hashed cut short: still wrong.
                let bytes = secret.as_bytes();
                let presented = secret_hash(&bytes[..bytes.len().min(MAX_SECRET_BYTES + 1)]);
                let now = self.deps.clock.now_secs();
                let previous_ok = client
                    .previous_secret
                    .as_ref()
                    .is_some_and(|(hash, until)| {
                        *until > now && constant_time_eq(hash.as_bytes(), presented.as_bytes())
                    });
                if constant_time_eq(current.as_bytes(), presented.as_bytes()) || previous_ok {
                    Ok(client)
                } else {
                    Err(refused(Some(&client), "wrong_secret"))
                }
            }
            (Some(_), None) => Err(refused(Some(&client), "secret_missing")),
            (None, Some(_)) => Err(refused(Some(&client), "public_with_secret")),
        }
    }

    /// The client credentials grant (RFC 6749 section 4.4) for an authenticated client:
    /// an access token whose `sub` is the client (RFC 9068 section 2.2), with the scopes
    /// asked for (all of its scopes when none), no refresh token.
    pub async fn client_credentials(
        &self,
        client: &Client,
        scope: Option<&str>,
    ) -> Result<ClientGrant, Error> {
        check_grant(client, GRANT_CLIENT_CREDENTIALS)?;
        if !client.is_confidential() {
            return Err(Error::UnauthorizedClient(
                "the client credentials grant is for confidential clients".into(),
            ));
        }
        let granted = if client.scopes.iter().any(|s| s == ANY_SCOPE) {
            any_scope_request(client, scope)?
        } else {
            client.scopes.join(" ")
        };
        let scope = super::narrow_scope(&granted, scope)?;
        let access_token = self
            .issue_client_token(&client.id, client.created_ms, &scope)
            .await?;
        Ok(ClientGrant {
            access_token,
            token_type: "Bearer",
            expires_in: self.config.access_ttl_secs,
            scope,
        })
    }

    async fn existing_client(&self, id: &str) -> Result<Client, Error> {
        self.deps
            .clients
            .find_client(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no client with id {id:?}")))
    }
}

/// How often a change is re-applied when another change of the same client won the race.
const MAX_CHANGE_ATTEMPTS: usize = 4;

fn changing_under_us() -> Error {
    Error::unavailable(
        "the client kept changing under this request; retry",
        "client change lost the race repeatedly",
    )
}

/// Whether `client` may use `grant`: `unauthorized_client` otherwise (RFC 6749 5.2).
pub fn check_grant(client: &Client, grant: &str) -> Result<(), Error> {
    if client.grant_types.iter().any(|g| g == grant) {
        Ok(())
    } else {
        Err(Error::UnauthorizedClient(format!(
            "this client may not use the {grant} grant"
        )))
    }
}

/// What a client allowed `*` gets when it asks for `requested`: each a valid scope name
/// (as a user's: printable, bounded, at most 32 of them), but never `*` itself nor
/// `admin` unless the client lists `admin` explicitly — `*` is for a client's own API
/// scopes, not the keys to this service.
fn any_scope_request(client: &Client, requested: Option<&str>) -> Result<String, Error> {
    let wanted: Vec<String> = requested
        .unwrap_or("")
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    let wanted = check_scopes(wanted).map_err(|e| Error::InvalidScope(e.to_string()))?;
    for scope in &wanted {
        let admin_unlisted =
            scope == ADMIN_SCOPE && !client.scopes.iter().any(|s| s == ADMIN_SCOPE);
        if scope == ANY_SCOPE || admin_unlisted {
            return Err(Error::InvalidScope(format!(
                "scope {scope:?} is not allowed to this client"
            )));
        }
    }
    Ok(wanted.join(" "))
}

/// `scopes` (space-separated) narrowed to what `client` may carry: the requested ones must
/// all be allowed; with none requested, the allowed part of `scopes`.
pub fn client_scope(
    client: &Client,
    granted: &str,
    requested: Option<&str>,
) -> Result<String, Error> {
    if client.scopes.iter().any(|s| s == ANY_SCOPE) {
        return super::narrow_scope(granted, requested);
    }
    let allowed: Vec<&str> = granted
        .split(' ')
        .filter(|s| client.scopes.iter().any(|c| c == s))
        .collect();
    if let Some(requested) = requested {
        for wanted in requested.split(' ').filter(|s| !s.is_empty()) {
            if granted.split(' ').any(|g| g == wanted) && !allowed.contains(&wanted) {
                return Err(Error::InvalidScope(format!(
                    "scope {wanted:?} is not allowed to this client"
                )));
            }
        }
    }
    super::narrow_scope(&allowed.join(" "), requested)
}

fn secret_hash(secret: &[u8]) -> String {
    b64url(&sha256(secret))
}

fn check_secret(secret: String) -> Result<String, Error> {
    if secret.is_empty() || secret.len() > MAX_SECRET_BYTES || secret.chars().any(char::is_control)
    {
        return Err(Error::invalid_request(format!(
            "a client secret is 1 to {MAX_SECRET_BYTES} bytes, no control characters"
        )));
    }
    Ok(secret)
}

/// A client id chosen by hand: letters, digits and `. _ ~ -` (unreserved in URLs and
/// in Basic credentials, so no client has to encode it), and never the shape of a user id.
pub fn check_client_id(id: &str) -> Result<String, Error> {
    let unreserved = !id.is_empty()
        && id.len() <= MAX_CLIENT_ID_CHARS
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-'));
    if !unreserved {
        return Err(Error::invalid_request(format!(
            "a client id is 1 to {MAX_CLIENT_ID_CHARS} of A-Z a-z 0-9 . _ ~ -"
        )));
    }
    let user_id_shaped = id.len() == 22
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if user_id_shaped {
        return Err(Error::invalid_request(
            "a client id may not have the shape of a user id (22 base64url characters)",
        ));
    }
    Ok(id.to_owned())
}

fn check_grants(grants: Vec<String>, confidential: bool) -> Result<Vec<String>, Error> {
    let grants = if grants.is_empty() {
        if confidential {
            vec![GRANT_CLIENT_CREDENTIALS.to_owned()]
        } else {
            vec![GRANT_PASSWORD.to_owned(), GRANT_REFRESH_TOKEN.to_owned()]
        }
    } else {
        grants
    };
    let mut kept: Vec<String> = Vec::new();
    for grant in grants {
        if !GRANTS.contains(&grant.as_str()) {
            return Err(Error::invalid_request(format!(
                "unknown grant {grant:?} (one of {})",
                GRANTS.join(", ")
            )));
        }
        if grant == GRANT_CLIENT_CREDENTIALS && !confidential {
            return Err(Error::invalid_request(
                "the client_credentials grant is for confidential clients",
            ));
        }
        if !kept.contains(&grant) {
            kept.push(grant);
        }
    }
    Ok(kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chosen_ids_are_unreserved_characters_and_never_user_shaped() {
        for good in [
            "cli",
            "web-app",
            "billing.v2",
            "a_b~c",
            "c_0123456789abcdef",
        ] {
            assert_eq!(check_client_id(good).unwrap(), good);
        }
        let too_long = "x".repeat(129);
        for bad in [
            "",
            "a:b",
            "a/b",
            "a b",
            "a%20",
            "é",
            "abcdefghijklmnopqrstuv", // 22 base64url characters: a user id's shape
            too_long.as_str(),
        ] {
            assert!(check_client_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn any_scope_never_covers_admin_or_itself() {
        let mut client = crate::testkit::public_client("svc");
        client.scopes = vec![ANY_SCOPE.into()];
        assert_eq!(
            any_scope_request(&client, Some("reports:read billing")).unwrap(),
            "reports:read billing"
        );
        assert_eq!(any_scope_request(&client, None).unwrap(), "");
        for refused in ["admin", "*", "reports admin", "a\"b"] {
            assert!(
                matches!(
                    any_scope_request(&client, Some(refused)),
                    Err(Error::InvalidScope(_))
                ),
                "{refused}"
            );
        }
        client.scopes.push(ADMIN_SCOPE.into());
        assert_eq!(any_scope_request(&client, Some("admin")).unwrap(), "admin");
    }
}
