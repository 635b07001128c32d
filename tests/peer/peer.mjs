// node-oidc-provider (npm `oidc-provider`) as a peer for scripts/compare-peer: its
// in-memory adapter, one confidential client, the client credentials grant issuing ES256
// JWT access tokens (a resource indicator's token format). Prints
// "peer listening on <base URL>" once it accepts connections.
//
// usage: node peer.mjs CLIENT_ID CLIENT_SECRET   (installed by scripts/compare-peer)
import { generateKeyPairSync } from 'node:crypto';
import Provider from 'oidc-provider';

const [clientId, clientSecret] = process.argv.slice(2);
const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = { ...privateKey.export({ format: 'jwk' }), alg: 'ES256', use: 'sig', kid: 'peer-es256' };
const resource = 'urn:tokenlife:api';

const server = (await import('node:http')).createServer();
server.listen(0, '127.0.0.1', () => {
  const base = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(base, {
    clients: [{
      client_id: clientId,
      client_secret: clientSecret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'ES256',
    }],
    jwks: { keys: [jwk] },
    features: {
      clientCredentials: { enabled: true },
      devInteractions: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => resource,
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'api',
          audience: resource,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });
  server.on('request', provider.callback());
  console.log(`peer listening on ${base}`);
});
