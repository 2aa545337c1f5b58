// Third-party JavaScript libraries against a running agentauth, each used the
// way its own documentation shows. `node checks.mjs <check>` reads its inputs
// as a JSON object from the INTEROP_INPUT environment variable and prints one
// JSON line: {"ok": true, ...} or {"ok": false, "error": "..."}.

import * as client from 'openid-client'
import * as jose from 'jose'
import * as dpop from 'dpop'

const input = JSON.parse(process.env.INTEROP_INPUT ?? '{}')

/** The private JWK the test registered, as a CryptoKey for signing. */
async function privateKey(jwk) {
  const alg = jwk.kty === 'OKP' ? 'Ed25519' : 'ES256'
  return jose.importJWK(jwk, alg)
}

/** The `alg` of each client assertion and DPoP proof openid-client sent. */
const sent = { assertion_algs: [], dpop_algs: [] }

/** Passes requests through, noting what they were signed with. */
function recordingFetch(url, options) {
  const form = new URLSearchParams(options?.body ?? '')
  const assertion = form.get('client_assertion')
  if (assertion) sent.assertion_algs.push(header(assertion, 0).alg)
  const proof = new Headers(options?.headers).get('dpop')
  if (proof) sent.dpop_algs.push(header(proof, 0).alg)
  return fetch(url, options)
}

/** openid-client's RFC 8414 discovery with private_key_jwt for the given key. */
async function configure(i) {
  return client.discovery(
    new URL(i.issuer),
    i.client_id,
    undefined,
    client.PrivateKeyJwt(await privateKey(i.private_jwk)),
    {
      algorithm: 'oauth2',
      execute: [client.allowInsecureRequests],
      [client.customFetch]: recordingFetch,
    },
  )
}

/** An extractable DPoP key pair from the test's private JWK (so `dpop` can reuse it). */
async function dpopKeyPair(jwk) {
  const alg = jwk.kty === 'OKP' ? 'Ed25519' : 'ES256'
  const { d, ...pub } = jwk
  return {
    privateKey: await jose.importJWK(jwk, alg),
    publicKey: await jose.importJWK(pub, alg),
  }
}

function header(token, part) {
  return JSON.parse(Buffer.from(token.split('.')[part], 'base64url'))
}

const checks = {
  async openid_client_discovers_the_metadata(i) {
    const config = await configure(i)
    const m = config.serverMetadata()
    return { issuer: m.issuer, token_endpoint: m.token_endpoint }
  },

  async openid_client_private_key_jwt_gets_a_token(i) {
    const config = await configure(i)
    const token = await client.clientCredentialsGrant(config, {
      scope: i.scope,
      resource: i.resource,
    })
    return { token_type: token.token_type, access_token: token.access_token }
  },

  async openid_client_dpop_token_calls_the_layer(i) {
    const config = await configure(i)
    const keyPair = await dpopKeyPair(i.dpop_jwk)
    const DPoP = client.getDPoPHandle(config, keyPair)
    const token = await client.clientCredentialsGrant(
      config,
      { scope: i.scope, resource: i.resource },
      { DPoP },
    )
    const response = await client.fetchProtectedResource(
      config,
      token.access_token,
      new URL(i.url),
      'GET',
      null,
      undefined,
      { DPoP },
    )
    return {
      token_type: token.token_type,
      status: response.status,
      body: await response.json(),
      token_cnf: header(token.access_token, 1).cnf,
    }
  },

  async dpop_library_proof_calls_the_layer(i) {
    // The token comes from openid-client bound to the key; the call's proof
    // is made by the `dpop` package with the same key.
    const config = await configure(i)
    const keyPair = await dpopKeyPair(i.dpop_jwk)
    const token = await client.clientCredentialsGrant(
      config,
      { scope: i.scope, resource: i.resource },
      { DPoP: client.getDPoPHandle(config, keyPair) },
    )
    const proof = await dpop.generateProof(keyPair, i.url, 'GET', undefined, token.access_token)
    const response = await fetch(i.url, {
      headers: { authorization: `DPoP ${token.access_token}`, dpop: proof },
    })
    return {
      proof_alg: header(proof, 0).alg,
      status: response.status,
      body: await response.json(),
    }
  },

  async openid_client_exchanges_a_token(i) {
    const config = await configure(i)
    const exchanged = await client.genericGrantRequest(
      config,
      'urn:ietf:params:oauth:grant-type:token-exchange',
      {
        subject_token: i.subject_token,
        subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
        resource: i.resource,
        scope: i.scope,
      },
    )
    return {
      issued_token_type: exchanged.issued_token_type,
      claims: header(exchanged.access_token, 1),
    }
  },

  async openid_client_introspects_a_token(i) {
    const config = await configure(i)
    const answer = await client.tokenIntrospection(config, i.token)
    return { active: answer.active, sub: answer.sub, aud: answer.aud }
  },

  async openid_client_revokes_a_token(i) {
    const config = await configure(i)
    await client.tokenRevocation(config, i.token)
    return {}
  },

  async openid_client_reads_a_refusal(i) {
    // A key the authority does not know: the refusal must surface as the
    // OAuth error with its description, not as an opaque challenge.
    const config = await configure(i)
    try {
      await client.clientCredentialsGrant(config, { scope: i.scope, resource: i.resource })
      return { refused: false }
    } catch (e) {
      return {
        refused: true,
        kind: e.constructor.name,
        error: e.error,
        error_description: e.error_description,
        status: e.status,
      }
    }
  },

  async jose_verifies_a_token_on_the_jwks(i) {
    const m = await (await fetch(`${i.issuer}/.well-known/oauth-authorization-server`)).json()
    const keys = jose.createRemoteJWKSet(new URL(m.jwks_uri))
    const { payload, protectedHeader } = await jose.jwtVerify(i.token, keys, {
      issuer: m.issuer,
      audience: i.audience,
      typ: 'at+jwt',
    })
    return { sub: payload.sub, alg: protectedHeader.alg }
  },
}

try {
  const result = await checks[process.argv[2]](input)
  console.log(JSON.stringify({ ok: true, sent, ...result }))
} catch (e) {
  console.log(
    JSON.stringify({
      ok: false,
      error: `${e?.constructor?.name}: ${e?.message}`,
      code: e?.code,
      cause: e?.cause === undefined ? undefined : String(JSON.stringify(e.cause) ?? e.cause),
    }),
  )
}
