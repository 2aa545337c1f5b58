// Prints N ready-to-send `POST /oauth/token` form bodies for the peer of
// bench/compare.sh, one per line, each with its own freshly signed ES256
// client assertion (RFC 7523 private_key_jwt: iss = sub = CLIENT_ID,
// aud = ISSUER, a distinct random jti, iat now, exp 60 s from now), in the
// format bench/issuance.lua sends. The same fields in the same order as
// agentauth's mint_assertions example, so the bodies differ in the signature
// algorithm alone.
//
//   node mint.mjs ISSUER CLIENT_ID KEY_FILE N [RESOURCE] [SCOPE] > bodies.txt
//
// KEY_FILE is the private JWK that server.mjs wrote. RESOURCE defaults to
// spiffe://agentauth.local/agent/customer, SCOPE to read:customer. Only
// node's built-in crypto is used.

import { createPrivateKey, randomBytes, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';

const USAGE = 'usage: node mint.mjs ISSUER CLIENT_ID KEY_FILE N [RESOURCE] [SCOPE]';
const [issuer, clientId, keyFile, count, resource = 'spiffe://agentauth.local/agent/customer',
  scope = 'read:customer'] = process.argv.slice(2);
const n = Number(count);
if (!issuer || !clientId || !keyFile || !Number.isSafeInteger(n) || n < 0) {
  console.error(USAGE);
  process.exit(2);
}

const jwk = JSON.parse(readFileSync(keyFile, 'utf8'));
if (jwk.kty !== 'EC' || jwk.crv !== 'P-256' || !jwk.d) {
  console.error(`${keyFile}: not a private P-256 JWK`);
  process.exit(1);
}
const key = createPrivateKey({ key: jwk, format: 'jwk' });

const b64 = (value) => Buffer.from(value).toString('base64url');
// Form encoding of everything but RFC 3986 unreserved characters.
const form = (value) => encodeURIComponent(value).replace(/[!'()*]/g,
  (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);

const header = b64(JSON.stringify({ alg: 'ES256', kid: jwk.kid }));
const fixed = `grant_type=client_credentials`
  + `&client_assertion_type=${form('urn:ietf:params:oauth:client-assertion-type:jwt-bearer')}`
  + `&resource=${form(resource)}&scope=${form(scope)}`;
const aud = issuer.replace(/\/+$/, '');
const now = Math.floor(Date.now() / 1000);

const lines = [];
const flush = () => {
  // Synchronous on Linux for files and pipes alike.
  if (lines.length) process.stdout.write(lines.join(''));
  lines.length = 0;
};
for (let i = 0; i < n; i += 1) {
  const payload = b64(JSON.stringify({
    iss: clientId, sub: clientId, aud, jti: randomBytes(16).toString('base64url'), iat: now, exp: now + 60,
  }));
  const input = `${header}.${payload}`;
  const signature = sign('sha256', Buffer.from(input), { key, dsaEncoding: 'ieee-p1363' });
  lines.push(`${fixed}&client_assertion=${form(`${input}.${signature.toString('base64url')}`)}\n`);
  if (lines.length === 1000) flush();
}
flush();
