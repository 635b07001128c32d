// Verifies tokens with jose (an independent JOSE implementation) against a JWKS URL.
// Usage: node verify.mjs <jwks-url> <issuer> <audience> <token>...
// Prints one JSON line per token: {"ok":true,"sub":...,"alg":...,"kid":...} or {"ok":false,"code":...}.
import { createRemoteJWKSet, jwtVerify } from 'jose';

const [jwksUrl, issuer, audience, ...tokens] = process.argv.slice(2);
const jwks = createRemoteJWKSet(new URL(jwksUrl));
for (const token of tokens) {
  try {
    const { payload, protectedHeader } = await jwtVerify(token, jwks, {
      issuer,
      audience,
      typ: 'at+jwt',
      algorithms: ['ES256', 'RS256'],
    });
    console.log(JSON.stringify({ ok: true, sub: payload.sub, alg: protectedHeader.alg, kid: protectedHeader.kid }));
  } catch (error) {
    console.log(JSON.stringify({ ok: false, code: error.code ?? String(error) }));
  }
}
