//! Reading requests: body size limit, form or JSON parameters (each a string, none twice, no
//! NUL), typed JSON bodies (admin routes), query parameters, cookies, the bearer token, the base path under which API Gateway deployed us, and
//! the caller's origin.

use std::collections::HashMap;

use lambda_http::{Body, Request, RequestExt, request::RequestContext};

use crate::error::Error;
use crate::store::Device;
use crate::token::{MAX_TOKEN_BYTES, TokenError};

/// The largest request body any route accepts (`serve` stops reading there too).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Request parameters from a form-encoded or JSON body.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, String>);

impl Params {
    pub fn optional(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    pub fn required(&self, name: &str) -> Result<String, Error> {
        self.optional(name)
            .ok_or_else(|| Error::invalid_request(format!("missing parameter {name:?}")))
    }
}

pub fn body_bytes(request: &Request) -> Result<&[u8], Error> {
    let bytes: &[u8] = match request.body() {
        Body::Empty => &[],
        Body::Text(text) => text.as_bytes(),
        Body::Binary(bytes) => bytes,
        _ => &[],
    };
    if bytes.len() > MAX_BODY_BYTES {
        return Err(Error::PayloadTooLarge);
    }
    Ok(bytes)
}

/// Parses the body as `application/x-www-form-urlencoded` or `application/json` (an object
/// whose members are strings; `null` counts as absent). An empty body is no parameters,
/// whatever its content type (browsers may send one with a cookie-only refresh).
pub fn params(request: &Request) -> Result<Params, Error> {
    let body = body_bytes(request)?;
    let mut params = HashMap::new();
    match media_type(request).as_deref() {
        _ if body.is_empty() => {}
        Some("application/x-www-form-urlencoded") => {
            let text = std::str::from_utf8(body)
                .map_err(|_| Error::invalid_request("the form body is not UTF-8"))?;
            for (name, value) in form_urlencoded::parse(text.as_bytes()) {
                insert_once(&mut params, name.into_owned(), value.into_owned())?;
            }
        }
        Some("application/json") => {
            let JsonMembers(members) = serde_json::from_slice(body)
                .map_err(|_| Error::invalid_request("the body is not a JSON object"))?;
            let mut seen = std::collections::HashSet::new();
            for (name, value) in members {
                // Refuse a repeat whatever its value, `null` included.
                if !seen.insert(name.clone()) {
                    return Err(Error::invalid_request(format!(
                        "parameter {name:?} appears twice"
                    )));
                }
                match value {
                    serde_json::Value::String(text) => insert_once(&mut params, name, text)?,
                    serde_json::Value::Null => {}
                    _ => {
                        return Err(Error::invalid_request(format!(
                            "parameter {name:?} must be a string"
                        )));
                    }
                }
            }
        }
        _ => {
            return Err(Error::UnsupportedMediaType(
                "send application/x-www-form-urlencoded or application/json".into(),
            ));
        }
    }
    Ok(Params(params))
}

/// The body as a typed JSON document (`application/json` only; the admin routes). Errors
/// name a member but never echo a value (a value could be a password).
pub fn json_body<T: serde::de::DeserializeOwned>(request: &Request) -> Result<T, Error> {
    let body = body_bytes(request)?;
    if media_type(request).as_deref() != Some("application/json") {
        return Err(Error::UnsupportedMediaType("send application/json".into()));
    }
    serde_json::from_slice(body).map_err(|error| {
        let text = error.to_string();
        let about_a_member = ["unknown field", "missing field", "duplicate field"]
            .iter()
            .any(|start| text.starts_with(start));
        match error.classify() {
            serde_json::error::Category::Data if about_a_member => {
                // "unknown field `x`, expected one of ..." -> "unknown field `x`"
                let member = text.split(',').next().unwrap_or(&text);
                let member = member.split(" at line").next().unwrap_or(member);
                Error::invalid_request(format!("the JSON body has a {member}"))
            }
            serde_json::error::Category::Data => {
                Error::invalid_request("a member of the JSON body has the wrong type or value")
            }
            _ => Error::invalid_request("the body is not a JSON object"),
        }
    })
}

/// The query's parameters (each name once).
pub fn query(request: &Request) -> Result<Params, Error> {
    let mut params = HashMap::new();
    for (name, value) in form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes()) {
        insert_once(&mut params, name.into_owned(), value.into_owned())?;
    }
    Ok(Params(params))
}

fn media_type(request: &Request) -> Option<String> {
    request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
}

/// A JSON object's members in order, duplicates kept (a `serde_json::Map` would keep only
/// the last), so that a name given twice is refused like a repeated form field.
struct JsonMembers(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for JsonMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Members;
        impl<'de> serde::de::Visitor<'de> for Members {
            type Value = JsonMembers;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<JsonMembers, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, serde_json::Value>()? {
                    members.push(member);
                }
                Ok(JsonMembers(members))
            }
        }
        deserializer.deserialize_map(Members)
    }
}

fn insert_once(
    params: &mut HashMap<String, String>,
    name: String,
    value: String,
) -> Result<(), Error> {
    if value.contains('\0') || name.contains('\0') {
        return Err(Error::invalid_request(
            "parameters must not contain NUL bytes",
        ));
    }
    if params.contains_key(&name) {
        return Err(Error::invalid_request(format!(
            "parameter {name:?} appears twice"
        )));
    }
    params.insert(name, value);
    Ok(())
}

/// The value of cookie `name`, if the request carries it.
pub fn cookie(request: &Request, name: &str) -> Option<String> {
    request
        .headers()
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
        .filter(|v| !v.is_empty())
}

/// The token of the request's `Authorization: Bearer <token>` header (RFC 6750 section 2.1).
pub fn bearer_token(request: &Request) -> Result<&str, Error> {
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .ok_or(TokenError::Missing)?;
    let value = value.to_str().map_err(|_| TokenError::Malformed)?;
    Ok(parse_bearer(value)?)
}

/// The token of an `Authorization` header value `Bearer <token>` (scheme in any case,
/// blanks around the token ignored): the one bearer parser, for routes and the authorizer.
pub fn parse_bearer(value: &str) -> Result<&str, TokenError> {
    let (scheme, token) = value.split_once(' ').ok_or(TokenError::Missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(TokenError::Missing);
    }
    let token = token.trim();
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge);
    }
    Ok(token)
}

/// The client credentials of an `Authorization: Basic` header (RFC 6749 section 2.3.1:
/// `client_id:client_secret`, each form-urlencoded, then base64): `None` without such a
/// header (a bearer token, say); `invalid_client` when it is one but unreadable.
pub fn basic_credentials(request: &Request) -> Result<Option<(String, String)>, Error> {
    let Some(value) = request.headers().get(http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let unreadable = || Error::InvalidClient("the Basic credentials are malformed".into());
    let value = value.to_str().map_err(|_| unreadable())?;
    let Some((scheme, encoded)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return Ok(None);
    }
    use base64::Engine;
    let encoded = encoded.trim();
    if encoded.len() > 2048 {
        return Err(unreadable());
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .map_err(|_| unreadable())?;
    let text = String::from_utf8(decoded).map_err(|_| unreadable())?;
    let (id, secret) = text.split_once(':').ok_or_else(unreadable)?;
    let decode = |part: &str| -> String {
        form_urlencoded::parse(format!("x={}", part.replace('&', "%26")).as_bytes())
            .next()
            .map(|(_, value)| value.into_owned())
            .unwrap_or_default()
    };
    Ok(Some((decode(id), decode(secret))))
}

/// The origin (`scheme://host[:port]`, lower-cased) of an http(s) URL, or `None`.
pub fn origin_of(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next()?;
    if authority.is_empty()
        || authority.contains('@')
        || !authority
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
    {
        return None;
    }
    Some(format!("{scheme}://{}", authority.to_ascii_lowercase()))
}

/// The client address of a request `tokenlife serve` received (a request extension: the
/// connection's peer, or what trusted proxies say, see [`client_address`]); API Gateway's
/// requests carry theirs in the request context instead.
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub std::net::IpAddr);

/// The client's address as `tokenlife serve` believes it: the connection's `peer`, or with
/// `hops` trusted reverse proxies in front (`TOKENLIFE_TRUSTED_PROXY_HOPS`), the entry of
/// `X-Forwarded-For` (all such headers, in order) that many places from the right — the one
/// the outermost trusted proxy wrote; anything left of it is the client's own claim. A
/// request with fewer entries, or an entry that is not an address, did not come through
/// the proxies as configured: its peer is used.
pub fn client_address(
    peer: std::net::IpAddr,
    headers: &http::HeaderMap,
    hops: u64,
) -> std::net::IpAddr {
    if hops == 0 {
        return peer;
    }
    // From the right, every entry counted, readable or not: junk a client put in the
    // header (non-UTF-8 bytes, say) must not make the trusted entries shift or vanish.
    let Some(entry) = headers
        .get_all("x-forwarded-for")
        .iter()
        .rev()
        .flat_map(|value| value.as_bytes().rsplit(|&b| b == b','))
        .nth((hops - 1) as usize)
    else {
        return peer;
    };
    let entry = std::str::from_utf8(entry).unwrap_or("").trim();
    entry
        .parse::<std::net::IpAddr>()
        .ok()
        .or_else(|| entry.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .unwrap_or(peer)
}

/// The device a request comes from, as recorded on sessions: its `User-Agent` and its
/// source address — API Gateway's (`requestContext.http.sourceIp` for HTTP APIs,
/// `identity.sourceIp` for REST), or in `serve` the connection's peer (forwarded headers
/// only as far as `TOKENLIFE_TRUSTED_PROXY_HOPS` says).
pub fn device(request: &Request) -> Device {
    let user_agent = request
        .headers()
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok());
    let source_ip = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.http.source_ip.clone(),
        Some(RequestContext::ApiGatewayV1(context)) => context.identity.source_ip.clone(),
        _ => request
            .extensions()
            .get::<PeerAddr>()
            .map(|peer| peer.0.to_string()),
    };
    Device::new(user_agent, source_ip)
}

/// The request's id: API Gateway's (`requestContext.requestId`, the id its access logs
/// carry), or else (`tokenlife serve`) this process's random prefix and a count — unique
/// without a random draw per request.
pub fn request_id(request: &Request) -> String {
    let given = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.request_id.clone(),
        Some(RequestContext::ApiGatewayV1(context)) => context.request_id.clone(),
        _ => None,
    };
    given
        .filter(|id| id.len() <= 128 && id.chars().all(|c| c.is_ascii_graphic()))
        .unwrap_or_else(|| {
            static PREFIX: std::sync::OnceLock<String> = std::sync::OnceLock::new();
            static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let prefix =
                PREFIX.get_or_init(|| crate::secrets::b64url(&crate::secrets::random_bytes::<6>()));
            let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{prefix}-{n}")
        })
}

/// The path prefix API Gateway put before our routes (its stage, when not `$default`), and
/// the route path after it.
pub fn split_base_path(request: &Request) -> (String, String) {
    let path = request.uri().path().to_owned();
    let stage = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(context)) => context.stage.clone(),
        Some(RequestContext::ApiGatewayV1(context)) => context.stage.clone(),
        _ => None,
    };
    if let Some(stage) = stage.filter(|s| !s.is_empty() && s != "$default") {
        let prefix = format!("/{stage}");
        if let Some(rest) = path.strip_prefix(&prefix)
            && rest.starts_with('/')
        {
            return (prefix, rest.to_owned());
        }
    }
    (String::new(), path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_of_normalises() {
        assert_eq!(
            origin_of("HTTPS://Auth.Example.com:8443/x?y").as_deref(),
            Some("https://auth.example.com:8443")
        );
        assert_eq!(origin_of("ftp://x"), None);
        assert_eq!(origin_of("https://user@host"), None);
        assert_eq!(origin_of("https://"), None);
    }

    fn json_request(body: &str) -> Request {
        http::Request::builder()
            .method("POST")
            .uri("/login")
            .header("content-type", "application/json")
            .body(Body::from(body))
            .unwrap()
    }

    #[test]
    fn a_json_member_given_twice_is_refused() {
        let error = params(&json_request(r#"{"username":"a","username":"b"}"#)).unwrap_err();
        assert_eq!(
            error,
            Error::invalid_request("parameter \"username\" appears twice")
        );
        assert!(params(&json_request(r#"{"username":"a","username":null}"#)).is_err());
        let fine = params(&json_request(r#"{"username":"a","password":"b"}"#)).unwrap();
        assert_eq!(fine.optional("username").as_deref(), Some("a"));
        for not_an_object in ["[1]", "\"x\"", "{\"a\":", "null"] {
            assert!(
                params(&json_request(not_an_object)).is_err(),
                "{not_an_object}"
            );
        }
    }

    #[test]
    fn forwarded_addresses_are_believed_only_as_far_as_the_trusted_proxies() {
        let peer: std::net::IpAddr = "10.0.0.2".parse().unwrap();
        let headers = |values: &[&str]| {
            let mut map = http::HeaderMap::new();
            for value in values {
                map.append("x-forwarded-for", value.parse().unwrap());
            }
            map
        };
        // A client's junk in the line a proxy appended to counts as an entry.
        let mut junk = http::HeaderMap::new();
        junk.append(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.9").unwrap(),
        );
        let forged = headers(&["6.6.6.6, 203.0.113.9", "10.0.0.1"]);
        let cases = [
            (0, &forged, "10.0.0.2"),
            // One proxy: what it saw (the rightmost entry).
            (1, &forged, "10.0.0.1"),
            // Two: the outer proxy's entry, not the client's forged one left of it.
            (2, &forged, "203.0.113.9"),
            (3, &forged, "6.6.6.6"),
            // Fewer entries than proxies: the request bypassed them.
            (4, &forged, "10.0.0.2"),
            (1, &headers(&[]), "10.0.0.2"),
            (1, &headers(&["not an address"]), "10.0.0.2"),
            (1, &headers(&["198.51.100.4:4711"]), "198.51.100.4"),
            (1, &headers(&["[2001:db8::1]:443"]), "2001:db8::1"),
            (1, &headers(&["2001:db8::7"]), "2001:db8::7"),
            (1, &junk, "203.0.113.9"),
            (2, &junk, "10.0.0.2"),
        ];
        for (hops, headers, expected) in cases {
            assert_eq!(
                client_address(peer, headers, hops).to_string(),
                expected,
                "{hops} hops, {headers:?}"
            );
        }
    }

    #[test]
    fn bearer_parsing() {
        assert_eq!(parse_bearer("Bearer abc"), Ok("abc"));
        assert_eq!(parse_bearer("bearer  abc "), Ok("abc"));
        assert_eq!(
            parse_bearer("Bearer "),
            Ok(""),
            "an empty token fails verification"
        );
        assert_eq!(parse_bearer("Basic abc"), Err(TokenError::Missing));
        assert_eq!(parse_bearer("abc"), Err(TokenError::Missing));
    }
}
