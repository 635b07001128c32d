// Verification throughput of jose (Node) on one tokenlife access token, for BENCHMARKS.md.
// Usage: node bench.mjs <jwks-json-file> <token> <issuer> <audience> [seconds, default 3]
// Verifies with the key imported once (as a warm verifier would), single thread.
import { readFileSync } from 'node:fs';
import { importJWK, jwtVerify } from 'jose';

const [jwksFile, token, issuer, audience, seconds = '3'] = process.argv.slice(2);
const jwk = JSON.parse(readFileSync(jwksFile, 'utf8')).keys[0];
const key = await importJWK(jwk, jwk.alg);
const options = { issuer, audience, typ: 'at+jwt', algorithms: [jwk.alg] };
await jwtVerify(token, key, options); // must verify
let count = 0;
const start = process.hrtime.bigint();
let elapsed = 0;
while (elapsed < Number(seconds) * 1e9) {
  for (let i = 0; i < 256; i++) await jwtVerify(token, key, options);
  count += 256;
  elapsed = Number(process.hrtime.bigint() - start);
}
console.log(JSON.stringify({ library: 'jose (Node ' + process.version + ')', alg: jwk.alg, ops_per_sec: Math.round(count / (elapsed / 1e9)) }));
