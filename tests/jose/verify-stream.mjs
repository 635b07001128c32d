// A long-running third-party JWKS client: jose's createRemoteJWKSet, which keeps its own copy
// of the key set (refetched after cache-max-age ms, or on an unknown kid at most once per
// cooldown ms). Verifies each token read from stdin (one per line) and answers one JSON line:
// {"ok":true,"kid":...} or {"ok":false,"code":...}.
// Usage: node verify-stream.mjs <jwks-url> <issuer> <audience> <cache-max-age-ms> <cooldown-ms>
import { createInterface } from 'node:readline';
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, issuer, audience, cacheMaxAge, cooldownDuration] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUrl), {
  cacheMaxAge: Number(cacheMaxAge),
  cooldownDuration: Number(cooldownDuration),
});
for await (const token of createInterface({ input: process.stdin })) {
  try {
    const { protectedHeader } = await jwtVerify(token, jwks, {
      issuer,
      audience,
      typ: 'at+jwt',
      algorithms: ['ES256', 'RS256'],
    });
    console.log(JSON.stringify({ ok: true, kid: protectedHeader.kid }));
  } catch (error) {
    console.log(JSON.stringify({ ok: false, code: error.code ?? String(error) }));
  }
}
