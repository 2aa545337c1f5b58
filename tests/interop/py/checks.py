"""Third-party Python libraries against a running agentauth, each used the way
its own documentation shows. `python checks.py <check>` reads its inputs as a
JSON object from the INTEROP_INPUT environment variable and prints one JSON
line: {"ok": true, ...} or {"ok": false, "error": "..."}.
"""

import base64
import datetime
import hashlib
import json
import os
import sys
import traceback

import requests


def b64url_json(segment):
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def metadata(issuer):
    response = requests.get(f"{issuer}/.well-known/oauth-authorization-server", timeout=10)
    response.raise_for_status()
    return response.json()


def authlib_validates_metadata(i):
    """authlib's RFC 8414 validator, every member it knows."""
    # The test authority listens on plain-HTTP loopback; only the https rule is relaxed.
    os.environ["AUTHLIB_INSECURE_TRANSPORT"] = "1"
    from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

    AuthorizationServerMetadata(metadata(i["issuer"])).validate()
    return {}


def authlib_private_key_jwt_gets_a_token(i):
    """authlib's PrivateKeyJWT with its defaults (aud = token endpoint, 3600 s)."""
    from authlib.integrations.requests_client import OAuth2Session
    from authlib.oauth2.rfc7523 import PrivateKeyJWT
    from joserfc.jwk import ECKey

    token_endpoint = metadata(i["issuer"])["token_endpoint"]
    signed = []

    class Recording(PrivateKeyJWT):
        def sign(self, auth, endpoint):
            assertion = super().sign(auth, endpoint)
            signed.append(assertion)
            return assertion

    session = OAuth2Session(
        i["client_id"],
        ECKey.import_key(i["private_jwk"]),
        token_endpoint_auth_method="private_key_jwt",
        scope=i["scope"],
    )
    session.register_client_auth_method(Recording(token_endpoint, alg="ES256"))
    token = session.fetch_token(
        token_endpoint, grant_type="client_credentials", resource=i["resource"]
    )
    assertion = signed[0].decode() if isinstance(signed[0], bytes) else signed[0]
    claims = b64url_json(assertion.split(".")[1])
    return {
        "token_type": token["token_type"],
        "has_access_token": bool(token.get("access_token")),
        "assertion_lifetime": claims["exp"] - claims["iat"],
        "assertion_aud": claims["aud"],
    }


def pyjwt_verifies_a_token_on_the_jwks(i):
    import jwt

    meta = metadata(i["issuer"])
    key = jwt.PyJWKClient(meta["jwks_uri"]).get_signing_key_from_jwt(i["token"])
    claims = jwt.decode(
        i["token"],
        key,
        algorithms=["EdDSA"],
        audience=i["audience"],
        issuer=meta["issuer"],
    )
    return {"sub": claims["sub"], "alg": jwt.get_unverified_header(i["token"])["alg"]}


def joserfc_verifies_a_token_on_the_jwks(i):
    from joserfc import jwt
    from joserfc.jwk import KeySet

    meta = metadata(i["issuer"])
    keys = KeySet.import_key_set(requests.get(meta["jwks_uri"], timeout=10).json())
    token = jwt.decode(i["token"], keys, algorithms=["EdDSA", "Ed25519"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": meta["issuer"]},
        aud={"essential": True, "value": i["audience"]},
    ).validate(token.claims)
    return {"sub": token.claims["sub"], "typ": token.header["typ"]}


class _Keys:
    """An HTTPSignatureKeyResolver over one Ed25519 JWK."""

    def __init__(self, jwk):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
            Ed25519PublicKey,
        )

        raw = lambda m: base64.urlsafe_b64decode(jwk[m] + "=" * (-len(jwk[m]) % 4))
        self.public = Ed25519PublicKey.from_public_bytes(raw("x"))
        self.private = Ed25519PrivateKey.from_private_bytes(raw("d")) if "d" in jwk else None

    def resolve_public_key(self, key_id):
        return self.public

    def resolve_private_key(self, key_id):
        return self.private


def http_message_signatures_request_passes_the_layer(i):
    """A request signed by http-message-signatures, with its own label and
    parameter order, sent to the customer agent behind the agentauth layer."""
    from http_message_signatures import HTTPMessageSigner, algorithms

    request = requests.Request(
        "GET", i["url"], headers={"Authorization": f"Bearer {i['token']}"}
    ).prepare()
    now = datetime.datetime.now()
    HTTPMessageSigner(signature_algorithm=algorithms.ED25519, key_resolver=_Keys(i["private_jwk"])).sign(
        request,
        key_id=i["keyid"],
        created=now,
        expires=now + datetime.timedelta(seconds=60),
        nonce=base64.urlsafe_b64encode(os.urandom(16)).decode().rstrip("="),
        label="pyhms",
        tag="agentauth",
        covered_component_ids=("@method", "@target-uri", "authorization", "content-digest"),
        body=b"",  # the library computes Content-Digest itself
    )
    response = requests.Session().send(request, timeout=10)
    return {
        "status": response.status_code,
        "signature_input": request.headers["Signature-Input"],
        "body": response.json(),
    }


def sdk_signature_verifies_in_http_message_signatures(i):
    """A request the agentauth SDK signed, checked by http-message-signatures
    (selected by tag, as RFC 9421 §7.2.5 recommends) and its Content-Digest."""
    from http_message_signatures import HTTPMessageVerifier, algorithms

    request = requests.Request(i["method"], i["url"], headers=i["headers"], data=i["body"].encode()).prepare()
    results = HTTPMessageVerifier(
        signature_algorithm=algorithms.ED25519, key_resolver=_Keys(i["public_jwk"])
    ).verify(request, expect_tag="agentauth")
    digest = base64.b64encode(hashlib.sha256(i["body"].encode()).digest()).decode()
    return {
        "labels": [r.label for r in results],
        "covered": list(results[0].covered_components.keys()),
        "digest_matches": request.headers["Content-Digest"] == f"sha-256=:{digest}:",
    }


def python_executable(i):
    # What the Workload API sees of this process: the executable behind it.
    return {"path": os.path.realpath(sys.executable), "uid": os.getuid()}


def _uri_san(cert):
    """The URI SAN of a pyOpenSSL or cryptography certificate."""
    from cryptography import x509
    if hasattr(cert, "to_cryptography"):
        cert = cert.to_cryptography()
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return names.get_values_for_type(x509.UniformResourceIdentifier)


def py_spiffe_fetches_svids_and_bundles(i):
    from cryptography.hazmat.primitives.serialization import Encoding
    from spiffe import JwtSvid, WorkloadApiClient

    audience = i["audience"]
    with WorkloadApiClient(socket_path=i["socket"]) as client:
        svid = client.fetch_x509_svid()
        trust_domain = svid.spiffe_id.trust_domain
        x509_bundle = client.fetch_x509_bundles().get_bundle_for_trust_domain(trust_domain)
        context = client.fetch_x509_context()
        jwt = client.fetch_jwt_svid(audience={audience})
        jwt_bundle = client.fetch_jwt_bundles().get_bundle_for_trust_domain(trust_domain)
        offline = JwtSvid.parse_and_validate(jwt.token, jwt_bundle, {audience})
        online = client.validate_jwt_svid(jwt.token, audience)
    return {
        "x509_spiffe_id": str(svid.spiffe_id),
        "leaf_uri_sans": _uri_san(svid.leaf),
        "chain_pem": [c.public_bytes(Encoding.PEM).decode() for c in svid.cert_chain],
        "bundle_pem": [c.public_bytes(Encoding.PEM).decode() for c in x509_bundle.x509_authorities],
        "context_svids": len(context.x509_svids),
        "trust_domain": str(trust_domain),
        "jwt_spiffe_id": str(jwt.spiffe_id),
        "jwt_audience": sorted(jwt.audience),
        "jwt_token": jwt.token,
        "offline_validated": str(offline.spiffe_id),
        "online_validated": str(online.spiffe_id),
    }


def py_spiffe_is_refused_without_an_entry_or_the_header(i):
    import grpc
    from spiffe import WorkloadApiClient
    from spiffe._proto import workload_pb2, workload_pb2_grpc

    try:
        with WorkloadApiClient(socket_path=i["socket"]) as client:
            client.fetch_x509_svid()
        denied = "no error"
    except Exception as e:
        denied = f"{type(e).__name__}: {e}"
    # The generated stub straight, without the security header.
    with grpc.insecure_channel(i["socket"]) as channel:
        stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
        try:
            next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), timeout=10))
            code, details = "OK", ""
        except grpc.RpcError as e:
            code, details = e.code().name, e.details()
        try:
            stub.FetchJWTSVID(
                workload_pb2.JWTSVIDRequest(audience=["x"]),
                metadata=[("workload.spiffe.io", "true")],
                timeout=10,
            )
            entry_code = "OK"
        except grpc.RpcError as e:
            entry_code = e.code().name
    return {"denied": denied, "no_header_code": code, "no_header_details": details,
            "with_header_code": entry_code}


def spiffe_tls_dials_a_rust_agent(i):
    from spiffe import SpiffeId, X509Source
    from spiffetls import dial
    from spiffetls.mode import ClientTlsMode
    from spiffetls.tlsconfig.authorize import authorize_id

    source = X509Source(socket_path=i["socket"], timeout_in_seconds=10)
    try:
        conn = dial(i["address"], source, ClientTlsMode.TLS, authorize_id(SpiffeId(i["server_id"])))
        conn.sendall(b"hello")
        echo = b""
        while len(echo) < 5:
            chunk = conn.recv(5 - len(echo))
            if not chunk:
                break
            echo += chunk
        server_sans = _uri_san(conn.get_peer_certificate())
        conn.close()
        try:
            other = dial(i["address"], source, ClientTlsMode.TLS,
                         authorize_id(SpiffeId(i["server_id"] + "-other")))
            other.close()
            wrong_id_refused = False
        except Exception:
            wrong_id_refused = True
    finally:
        source.close()
    return {"echo": echo.decode(), "server_sans": server_sans, "wrong_id_refused": wrong_id_refused}


def spiffe_tls_serves_a_rust_agent(i):
    import select
    from spiffe import SpiffeId, X509Source
    from spiffetls import ListenOptions, listen
    from spiffetls.mode import ServerTlsMode
    from spiffetls.tlsconfig.authorize import authorize_id

    source = X509Source(socket_path=i["socket"], timeout_in_seconds=10)
    try:
        options = ListenOptions(tls_mode=ServerTlsMode.MTLS,
                                authorize_fn=authorize_id(SpiffeId(i["client_id"])))
        server = listen(f"127.0.0.1:{i['port']}", source, options)
        ready, _, _ = select.select([server.fileno()], [], [], 30)
        if not ready:
            raise TimeoutError("no client within 30 s")
        conn, _ = server.accept()
        conn.do_handshake()
        data = b""
        while len(data) < 5:
            chunk = conn.recv(5 - len(data))
            if not chunk:
                break
            data += chunk
        conn.sendall(data)
        client_sans = _uri_san(conn.get_peer_certificate())
        conn.shutdown()
        conn.close()
        server.close()
    finally:
        source.close()
    return {"received": data.decode(), "client_sans": client_sans}


CHECKS = {f.__name__: f for f in [
    python_executable,
    py_spiffe_fetches_svids_and_bundles,
    py_spiffe_is_refused_without_an_entry_or_the_header,
    spiffe_tls_dials_a_rust_agent,
    spiffe_tls_serves_a_rust_agent,
    authlib_validates_metadata,
    authlib_private_key_jwt_gets_a_token,
    pyjwt_verifies_a_token_on_the_jwks,
    joserfc_verifies_a_token_on_the_jwks,
    http_message_signatures_request_passes_the_layer,
    sdk_signature_verifies_in_http_message_signatures,
]}


def main():
    check = CHECKS[sys.argv[1]]
    try:
        result = {"ok": True, **check(json.loads(os.environ.get("INTEROP_INPUT", "{}")))}
    except Exception as e:  # the Rust side asserts on the message
        result = {"ok": False, "error": f"{type(e).__name__}: {e}", "trace": traceback.format_exc()}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
