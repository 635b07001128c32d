"""A third-party OAuth 2.0 client against `tokenlife serve`: authlib's (PyPI) requests
client performs the client credentials grant (RFC 6749 4.4) with each client
authentication method, introspects the token (RFC 7662) and revokes it (RFC 7009), as a
service would. Prints one JSON object of what it saw; any protocol error fails the run.

usage: authlib_client.py BASE_URL CLIENT_ID CLIENT_SECRET
"""

import json
import os
import sys

import requests

# The server under test is on loopback, over plain http: allow it (authlib insists on
# https otherwise, rightly).
os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
from authlib.integrations.requests_client import OAuth2Session  # noqa: E402

base, client_id, client_secret = sys.argv[1:4]
assert base.startswith("http://127.0.0.1:"), base
metadata = requests.get(f"{base}/.well-known/oauth-authorization-server", timeout=10).json()
seen = {"grants": {}}

for method in ("client_secret_basic", "client_secret_post"):
    session = OAuth2Session(
        client_id,
        client_secret,
        token_endpoint_auth_method=method,
        scope="reports:read",
    )
    token = session.fetch_token(
        metadata["token_endpoint"], grant_type="client_credentials"
    )
    introspected = session.introspect_token(
        metadata["introspection_endpoint"], token=token["access_token"]
    )
    introspected.raise_for_status()
    answer = introspected.json()
    revoked = session.revoke_token(
        metadata["revocation_endpoint"],
        token=token["access_token"],
        token_type_hint="access_token",
    )
    revoked.raise_for_status()
    after = session.introspect_token(
        metadata["introspection_endpoint"], token=token["access_token"]
    ).json()
    seen["grants"][method] = {
        "token_type": token["token_type"],
        "scope": token.get("scope"),
        "has_refresh_token": "refresh_token" in token,
        "introspected": {k: answer.get(k) for k in ("active", "sub", "client_id", "scope", "token_use")},
        "active_after_revocation": after["active"],
    }

# A wrong secret: authlib sees the server's invalid_client.
wrong = OAuth2Session(client_id, "not-the-secret", token_endpoint_auth_method="client_secret_basic")
try:
    wrong.fetch_token(metadata["token_endpoint"], grant_type="client_credentials")
    seen["wrong_secret"] = "accepted"
except Exception as error:  # authlib raises OAuthError with the server's error code
    seen["wrong_secret"] = getattr(error, "error", type(error).__name__)

json.dump(seen, sys.stdout)
