// The peer authority of bench/compare.sh: oidc-provider (the version pinned in
// package-lock.json) issuing JWT access tokens to one client by
// client_credentials with private_key_jwt, in one node process on 127.0.0.1.
//
//   node server.mjs CLIENT_ID CLIENT_KEY_OUT
//
// It listens on a port the kernel picks, generates its own ES256 signing key
// and an ES256 key for the client, writes the client's private JWK to
// CLIENT_KEY_OUT (0600; bench/peer/mint.mjs signs assertions with it) and then
// prints one line, "peer listening on http://127.0.0.1:PORT", whose URL is also
// the issuer (and so the audience the client assertions name).
//
// Everything agentauth's request carries is configured alike: the token
// endpoint is /oauth/token, the resource indicator names the target
// (features.resourceIndicators, one resource server whose scope is
// read:customer, JWT access tokens signed ES256, 300 s like agentauth's
// default lifetime), and GET /healthz answers 200 (bench/issuance.lua sends it
// once a wrk thread runs out of assertions). Storage is oidc-provider's own
// in-memory adapter (its default): the only thing a request stores is the
// assertion's jti for replay detection; JWT access tokens are not stored.

import { createServer } from 'node:http';
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const [clientId, keyOut] = process.argv.slice(2);
if (!clientId || !keyOut) {
  console.error('usage: node server.mjs CLIENT_ID CLIENT_KEY_OUT');
  process.exit(2);
}

const TARGET_SCOPE = 'read:customer';
const TOKEN_TTL = 300;

function es256Jwk() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'ES256', use: 'sig' };
}

const signingKey = es256Jwk();
const clientKey = es256Jwk();
const { d: _d, ...clientPublic } = clientKey;
writeFileSync(keyOut, `${JSON.stringify(clientKey)}\n`, { mode: 0o600 });

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: clientId,
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [clientPublic] },
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        scope: TARGET_SCOPE,
      },
    ],
    jwks: { keys: [signingKey] },
    clientDefaults: { id_token_signed_response_alg: 'ES256' },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    routes: { token: '/oauth/token' },
    scopes: [TARGET_SCOPE],
    ttl: { ClientCredentials: TOKEN_TTL },
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      resourceIndicators: {
        enabled: true,
        // Any absolute URI the client names is a resource server with the
        // target's scope; agentauth likewise takes the target from `resource`.
        defaultResource: async () => 'spiffe://agentauth.local/agent/customer',
        getResourceServerInfo: async (_ctx, resource) => ({
          scope: TARGET_SCOPE,
          audience: resource,
          accessTokenFormat: 'jwt',
          accessTokenTTL: TOKEN_TTL,
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  });

  const callback = provider.callback();
  server.on('request', (req, res) => {
    if (req.method === 'GET' && req.url === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('ok\n');
      return;
    }
    callback(req, res);
  });

  process.stdout.write(`peer listening on ${issuer}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => process.exit(0));
}
