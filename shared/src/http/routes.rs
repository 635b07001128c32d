//! The route table: the one place that says, for every endpoint, its method, path pattern,
//! the Lambda function that serves it, who may call it, and its handler. Matching, the
//! `Allow` header, the function map, the RFC 8414 metadata URLs, `serve`'s banner and the
//! template check in `tests/events.rs` all read it.

use std::future::Future;
use std::pin::Pin;

use http::Method;
use lambda_http::{Body, Request, Response};

use super::handlers;
use crate::error::Error;
use crate::service::TokenService;
use crate::store::Client;
use crate::token::AccessClaims;

/// What a handler gets: the service, the request, and what routing found out.
pub struct Call<'a> {
    pub service: &'a TokenService,
    pub request: &'a Request,
    /// The API Gateway stage prefix (`/prod`), or empty.
    pub base_path: &'a str,
    /// The route's `{…}` path segments, percent-decoded, in order.
    pub params: Vec<String>,
}

impl Call<'_> {
    /// The `i`-th `{…}` segment of the path (empty if the pattern has none there).
    pub fn param(&self, i: usize) -> String {
        self.params.get(i).cloned().unwrap_or_default()
    }
}

pub type Reply<'a> = Pin<Box<dyn Future<Output = Result<Response<Body>, Error>> + Send + 'a>>;

/// A route's handler, by who may call it. [`crate::http::handle`] checks the caller before
/// the handler runs, for every route alike.
#[derive(Clone, Copy)]
pub enum Handler {
    /// Anyone.
    Public(for<'a> fn(Call<'a>) -> Reply<'a>),
    /// OAuth client authentication (RFC 6749 section 2.3) of whatever client the request
    /// names — by `Authorization: Basic`, `client_id` + `client_secret` in the body, or a
    /// public client's `client_id` alone; the handler gets the client, or `None` for a
    /// request naming none (refused unless `TOKENLIFE_ANONYMOUS_CLIENT`).
    Client(for<'a> fn(Call<'a>, Option<Client>) -> Reply<'a>),
    /// A valid, unrevoked access token (`Authorization: Bearer`); the handler gets its claims.
    Bearer(for<'a> fn(Call<'a>, AccessClaims) -> Reply<'a>),
    /// A valid access token with the admin scope ([`crate::service::ADMIN_SCOPE`]).
    Admin(for<'a> fn(Call<'a>, AccessClaims) -> Reply<'a>),
}

/// The Lambda functions that serve HTTP routes (`functions/<name>`); `authorizer` answers
/// API Gateway authorizer events instead, and `rotate-keys` also takes its schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Function {
    Login,
    Refresh,
    Revoke,
    Jwks,
    RotateKeys,
    Users,
}

impl Function {
    pub const ALL: &'static [Function] = &[
        Function::Login,
        Function::Refresh,
        Function::Revoke,
        Function::Jwks,
        Function::RotateKeys,
        Function::Users,
    ];

    /// The function's name: its folder in `functions/` and `events/`, its `CodeUri` in
    /// template.yaml.
    pub fn name(self) -> &'static str {
        match self {
            Function::Login => "login",
            Function::Refresh => "refresh",
            Function::Revoke => "revoke",
            Function::Jwks => "jwks",
            Function::RotateKeys => "rotate-keys",
            Function::Users => "users",
        }
    }

    pub fn from_name(name: &str) -> Option<Function> {
        Function::ALL.iter().copied().find(|f| f.name() == name)
    }

    /// The routes this function serves.
    pub fn routes(self) -> impl Iterator<Item = &'static Route> {
        ROUTES.iter().filter(move |route| route.function == self)
    }
}

/// One endpoint.
pub struct Route {
    pub method: Method,
    /// The path pattern as API Gateway and the README write it; segments may be
    /// parameters in braces (`/admin/keys/{kid}/retire`).
    pub path: &'static str,
    pub function: Function,
    pub handler: Handler,
}

pub const LOGIN: Route = Route {
    method: Method::POST,
    path: "/login",
    function: Function::Login,
    handler: Handler::Client(|call, client| Box::pin(handlers::login(call, client))),
};
pub const TOKEN: Route = Route {
    method: Method::POST,
    path: "/token",
    function: Function::Login,
    handler: Handler::Client(|call, client| Box::pin(handlers::token(call, client))),
};
pub const REFRESH: Route = Route {
    method: Method::POST,
    path: "/refresh",
    function: Function::Refresh,
    handler: Handler::Client(|call, client| Box::pin(handlers::refresh(call, client))),
};
pub const REVOKE: Route = Route {
    method: Method::POST,
    path: "/revoke",
    function: Function::Revoke,
    handler: Handler::Client(|call, client| Box::pin(handlers::revoke(call, client))),
};
pub const LOGOUT: Route = Route {
    method: Method::POST,
    path: "/logout",
    function: Function::Revoke,
    handler: Handler::Public(|call| Box::pin(handlers::logout(call))),
};
pub const LIST_SESSIONS: Route = Route {
    method: Method::GET,
    path: "/sessions",
    function: Function::Revoke,
    handler: Handler::Bearer(|call, caller| Box::pin(handlers::list_sessions(call, caller))),
};
pub const END_SESSION: Route = Route {
    method: Method::DELETE,
    path: "/sessions/{sid}",
    function: Function::Revoke,
    handler: Handler::Bearer(|call, caller| Box::pin(handlers::end_session(call, caller))),
};
pub const END_OTHER_SESSIONS: Route = Route {
    method: Method::POST,
    path: "/sessions/revoke-others",
    function: Function::Revoke,
    handler: Handler::Bearer(|call, caller| Box::pin(handlers::end_other_sessions(call, caller))),
};
pub const ADMIN_LIST_USER_SESSIONS: Route = Route {
    method: Method::GET,
    path: "/admin/users/{username}/sessions",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| {
        Box::pin(handlers::admin_list_user_sessions(call, caller))
    }),
};
pub const ADMIN_END_USER_SESSION: Route = Route {
    method: Method::DELETE,
    path: "/admin/users/{username}/sessions/{sid}",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| {
        Box::pin(handlers::admin_end_user_session(call, caller))
    }),
};
/// The routes the refresh cookie is sent to (its `Path`s): no other route ever sees it.
pub const COOKIE_ROUTES: [&Route; 2] = [&REFRESH, &LOGOUT];
pub const ADMIN_REVOKE_USER: Route = Route {
    method: Method::POST,
    path: "/admin/users/{username}/revoke",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_revoke_user(call, caller))),
};
pub const ADMIN_LIST_USERS: Route = Route {
    method: Method::GET,
    path: "/admin/users",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_list_users(call, caller))),
};
pub const ADMIN_CREATE_USER: Route = Route {
    method: Method::POST,
    path: "/admin/users",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_create_user(call, caller))),
};
pub const ADMIN_SHOW_USER: Route = Route {
    method: Method::GET,
    path: "/admin/users/{username}",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_show_user(call, caller))),
};
pub const ADMIN_CHANGE_USER: Route = Route {
    method: Method::PATCH,
    path: "/admin/users/{username}",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_change_user(call, caller))),
};
pub const ADMIN_REMOVE_USER: Route = Route {
    method: Method::DELETE,
    path: "/admin/users/{username}",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_remove_user(call, caller))),
};
pub const ADMIN_SET_PASSWORD: Route = Route {
    method: Method::POST,
    path: "/admin/users/{username}/password",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_set_password(call, caller))),
};
pub const ADMIN_LIST_CLIENTS: Route = Route {
    method: Method::GET,
    path: "/admin/clients",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_list_clients(call, caller))),
};
pub const ADMIN_REGISTER_CLIENT: Route = Route {
    method: Method::POST,
    path: "/admin/clients",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_register_client(call, caller))),
};
pub const ADMIN_SHOW_CLIENT: Route = Route {
    method: Method::GET,
    path: "/admin/clients/{client_id}",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_show_client(call, caller))),
};
pub const ADMIN_REMOVE_CLIENT: Route = Route {
    method: Method::DELETE,
    path: "/admin/clients/{client_id}",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_remove_client(call, caller))),
};
pub const ADMIN_ROTATE_CLIENT_SECRET: Route = Route {
    method: Method::POST,
    path: "/admin/clients/{client_id}/rotate-secret",
    function: Function::Users,
    handler: Handler::Admin(|call, caller| {
        Box::pin(handlers::admin_rotate_client_secret(call, caller))
    }),
};
pub const ADMIN_LIST_KEYS: Route = Route {
    method: Method::GET,
    path: "/admin/keys",
    function: Function::RotateKeys,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_list_keys(call, caller))),
};
pub const ADMIN_ROTATE_KEYS: Route = Route {
    method: Method::POST,
    path: "/admin/keys/rotate",
    function: Function::RotateKeys,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_rotate_keys(call, caller))),
};
pub const ADMIN_RETIRE_KEY: Route = Route {
    method: Method::POST,
    path: "/admin/keys/{kid}/retire",
    function: Function::RotateKeys,
    handler: Handler::Admin(|call, caller| Box::pin(handlers::admin_retire_key(call, caller))),
};
pub const JWKS: Route = Route {
    method: Method::GET,
    path: "/.well-known/jwks.json",
    function: Function::Jwks,
    handler: Handler::Public(|call| Box::pin(handlers::jwks(call))),
};
pub const METADATA: Route = Route {
    method: Method::GET,
    path: "/.well-known/oauth-authorization-server",
    function: Function::Jwks,
    handler: Handler::Public(|call| Box::pin(handlers::metadata(call))),
};
pub const INTROSPECT: Route = Route {
    method: Method::POST,
    path: "/introspect",
    function: Function::Jwks,
    handler: Handler::Client(|call, client| Box::pin(handlers::introspect(call, client))),
};
pub const OPENAPI: Route = Route {
    method: Method::GET,
    path: "/openapi.json",
    function: Function::Jwks,
    handler: Handler::Public(|call| Box::pin(handlers::openapi(call))),
};
pub const USERINFO: Route = Route {
    method: Method::GET,
    path: "/userinfo",
    function: Function::Jwks,
    handler: Handler::Bearer(|call, caller| Box::pin(handlers::userinfo(call, caller))),
};

/// Every route tokenlife serves, in the order the banner and the README list them.
pub const ROUTES: &[Route] = &[
    LOGIN,
    TOKEN,
    REFRESH,
    REVOKE,
    LOGOUT,
    LIST_SESSIONS,
    END_SESSION,
    END_OTHER_SESSIONS,
    ADMIN_REVOKE_USER,
    ADMIN_LIST_USERS,
    ADMIN_CREATE_USER,
    ADMIN_SHOW_USER,
    ADMIN_CHANGE_USER,
    ADMIN_REMOVE_USER,
    ADMIN_SET_PASSWORD,
    ADMIN_LIST_USER_SESSIONS,
    ADMIN_END_USER_SESSION,
    ADMIN_LIST_CLIENTS,
    ADMIN_REGISTER_CLIENT,
    ADMIN_SHOW_CLIENT,
    ADMIN_REMOVE_CLIENT,
    ADMIN_ROTATE_CLIENT_SECRET,
    ADMIN_LIST_KEYS,
    ADMIN_ROTATE_KEYS,
    ADMIN_RETIRE_KEY,
    JWKS,
    METADATA,
    USERINFO,
    INTROSPECT,
    OPENAPI,
];

impl Route {
    /// `Some(params)` when `path` fits this route's pattern (the decoded `{…}` segments, in
    /// order); `None` otherwise. A parameter segment must be non-empty and strictly
    /// percent-encoded.
    pub fn matches(&self, path: &str) -> Option<Vec<String>> {
        let mut params = Vec::new();
        let mut pattern = self.path.split('/');
        let mut actual = path.split('/');
        loop {
            match (pattern.next(), actual.next()) {
                (None, None) => return Some(params),
                (Some(p), Some(a)) if p.starts_with('{') => {
                    if a.is_empty() {
                        return None;
                    }
                    params.push(percent_decode(a)?);
                }
                (Some(p), Some(a)) if p == a => {}
                _ => return None,
            }
        }
    }

    /// The same route behind a given base URL (`issuer` + path), for links such as the
    /// RFC 8414 metadata.
    pub fn url(&self, base: &str) -> String {
        format!("{base}{}", self.path)
    }
}

/// The routes whose pattern fits `path` (any method), each with its decoded parameters;
/// routes with fewer parameters first, so a literal path wins over a pattern.
pub fn matching(path: &str) -> Vec<(&'static Route, Vec<String>)> {
    let mut found: Vec<_> = ROUTES
        .iter()
        .filter_map(|route| route.matches(path).map(|params| (route, params)))
        .collect();
    found.sort_by_key(|(route, _)| route.path.matches('{').count());
    found
}

/// Strict percent-decoding of a path segment: a `%` not followed by two hex digits, or a
/// result that is not UTF-8, is refused rather than passed through.
fn percent_decode(text: &str) -> Option<String> {
    let input = text.as_bytes();
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'%' {
            let hex = input.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_of(path: &str) -> Option<(&'static str, Option<String>)> {
        matching(path)
            .into_iter()
            .next()
            .map(|(route, params)| (route.path, params.into_iter().next()))
    }

    #[test]
    fn paths_route_to_endpoints() {
        for route in ROUTES {
            let path = route
                .path
                .replace("{username}", "alice")
                .replace("{kid}", "k1")
                .replace("{sid}", "s1");
            let found: Vec<_> = matching(&path)
                .into_iter()
                .filter(|(r, _)| r.method == route.method)
                .collect();
            assert_eq!(found.len(), 1, "{} {path} fits one pattern", route.method);
            assert_eq!(found[0].0.path, route.path, "{path}");
            let same = |r: &Route| r.method == route.method && r.path == route.path;
            assert_eq!(
                ROUTES.iter().filter(|r| same(r)).count(),
                1,
                "{path} listed once"
            );
            let served_by = Function::ALL
                .iter()
                .filter(|f| f.routes().any(same))
                .count();
            assert_eq!(
                served_by, 1,
                "{} is served by exactly one function",
                route.path
            );
        }
        assert_eq!(
            route_of("/admin/users/a%20b/revoke"),
            Some((ADMIN_REVOKE_USER.path, Some("a b".into())))
        );
        assert_eq!(
            route_of("/admin/keys/rotate"),
            Some((ADMIN_ROTATE_KEYS.path, None))
        );
        assert_eq!(
            route_of("/admin/keys/rotate/retire"),
            Some((ADMIN_RETIRE_KEY.path, Some("rotate".into())))
        );
        for path in [
            "/",
            "/login/",
            "/admin/users//revoke",
            "/admin/users/a/b/revoke",
            "/admin/users/%zz/revoke",
            "/admin/users/%ff/revoke",
            "/admin/users/%+f/revoke",
            "/admin/keys/",
            "/admin/keys//retire",
            "/admin/keys/a/b/retire",
        ] {
            assert_eq!(route_of(path), None, "{path}");
        }
    }

    /// openapi.yaml describes exactly the routes of the table: no route it lacks, no
    /// operation the table lacks.
    #[test]
    fn the_openapi_document_describes_exactly_the_routes() {
        let document: serde_json::Value =
            serde_json::from_str(handlers::OPENAPI_JSON).expect("openapi.json is JSON");
        assert!(
            document["openapi"]
                .as_str()
                .is_some_and(|v| v.starts_with("3.1"))
        );
        let mut documented: Vec<(String, String)> = Vec::new();
        for (path, item) in document["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    documented.push((method.to_uppercase(), path.clone()));
                }
            }
        }
        let mut routes: Vec<(String, String)> = ROUTES
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_owned()))
            .collect();
        documented.sort();
        routes.sort();
        assert_eq!(
            documented, routes,
            "openapi.yaml and the route table differ"
        );
        // Every operation's responses are JSON or none, and every $ref resolves.
        let text = handlers::OPENAPI_JSON;
        for reference in text.split("\"$ref\":\"").skip(1) {
            let target = reference.split('"').next().unwrap();
            let pointer = target.trim_start_matches('#');
            assert!(
                document.pointer(pointer).is_some(),
                "dangling $ref {target}"
            );
        }
    }

    /// The README's API table has one row per route, naming its method, path and function.
    #[test]
    fn readme_lists_every_route() {
        let readme =
            std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
        let rows = readme
            .lines()
            .filter(|l| {
                ["GET", "POST", "PATCH", "DELETE"]
                    .iter()
                    .any(|m| l.starts_with(&format!("| `{m} /")))
            })
            .count();
        assert_eq!(
            rows,
            ROUTES.len(),
            "README.md's API table has a row per route"
        );
        for route in ROUTES {
            let row = format!(
                "| `{} {}` | `{}` |",
                route.method,
                route.path,
                route.function.name()
            );
            assert!(readme.contains(&row), "README.md's API table lacks {row}");
        }
    }

    /// Every route under `/admin` needs the admin scope (checked in one place, before its
    /// handler runs), and every admin route is under `/admin`.
    #[test]
    fn admin_paths_are_admin_routes() {
        for route in ROUTES {
            assert_eq!(
                route.path.starts_with("/admin/"),
                matches!(route.handler, Handler::Admin(_)),
                "{} {}",
                route.method,
                route.path
            );
        }
    }

    #[test]
    fn function_names_round_trip() {
        for function in Function::ALL {
            assert_eq!(Function::from_name(function.name()), Some(*function));
            assert!(
                function.routes().next().is_some(),
                "{function:?} serves a route"
            );
        }
        assert_eq!(Function::from_name("logn"), None);
    }
}
