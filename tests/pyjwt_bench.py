"""Verification throughput of PyJWT on one tokenlife access token, for BENCHMARKS.md.

Usage: python pyjwt_bench.py <jwks-json-file> <token> <issuer> <audience> [seconds, default 3]
Needs `pip install pyjwt cryptography`. The key is loaded once; single thread.
"""
import json
import sys
import time

import jwt

jwks_file, token, issuer, audience = sys.argv[1:5]
seconds = float(sys.argv[5]) if len(sys.argv) > 5 else 3.0
jwk = json.load(open(jwks_file))["keys"][0]
key = jwt.PyJWK(jwk).key
alg = jwk["alg"]
assert jwt.get_unverified_header(token)["typ"] == "at+jwt"
jwt.decode(token, key, algorithms=[alg], issuer=issuer, audience=audience)
count, start = 0, time.perf_counter()
while time.perf_counter() - start < seconds:
    for _ in range(256):
        jwt.decode(token, key, algorithms=[alg], issuer=issuer, audience=audience)
    count += 256
elapsed = time.perf_counter() - start
print(json.dumps({"library": f"PyJWT {jwt.__version__}", "alg": alg, "ops_per_sec": round(count / elapsed)}))
