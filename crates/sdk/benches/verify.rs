//! What the verifying layer costs per request, next to the Ed25519 signature
//! check it cannot avoid.
//!
//! One run measures, on a real access token issued by an in-process authority
//! (SQLite in a temporary directory) and real requests signed by the SDK
//! client (RFC 9421, a fresh nonce each):
//!
//! - `verify/ed25519_signature`: `PublicJwk::verify` of the token's signature
//!   over its signing input — the reference every other figure is divided by;
//! - `verify/core_parse_and_verify`: `parse_access_token` + `verify_access_token`;
//! - `verify/core_request_signature`: `ReceivedSignature::parse`, the body's
//!   `content_digest` and `ReceivedSignature::verify` (the second Ed25519
//!   check every request now carries);
//! - `verify/cnf_key_from_json`: `PublicJwk::from_json` of the token's
//!   `cnf.jwk` plus its `thumbprint`, which the layer redoes on every request;
//! - `verify/router_without_layer`: the same axum router and handler without
//!   the layer, to show what axum itself costs;
//! - `verify/layer_bearer_check`: a plain Bearer `GET` with a token without
//!   `cnf` (an agent with the registry's bearer opt-out) through the layer:
//!   every check but proof of possession, one Ed25519 verification;
//! - `verify/layer_full_check`: a signed `GET` with `Authorization: Bearer …`
//!   through `Router` + `Verifier::require("read:customer")` + a trivial
//!   handler, via `tower::ServiceExt::oneshot`, audit shipping off; the token
//!   is the same on every request, as an agent's is, so after the first its
//!   signature check is skipped (`VerifierConfig::verified_tokens`);
//! - `verify/layer_full_check_uncached`: the same with `verified_tokens: 0`,
//!   the token's signature checked on every request;
//! - `verify/layer_full_check_with_audit`: the same with `Verifier::with_audit`.
//!
//! The authority and the verifiers' background tasks (revocation polling,
//! audit shipping) run on a separate one-worker runtime; the measured futures
//! run on a current-thread runtime through criterion's `to_async`, which
//! enters the runtime once per batch of iterations, so the figures are the
//! check itself rather than `block_on` overhead. Requests are built and signed
//! outside the timed region (`iter_batched`); every timed request must answer
//! 200, so a refusal (say, by the nonce cache) fails the run instead of
//! timing the error path. Each layered benchmark gets verifiers of its own
//! and moves to a fresh one every 90,000 requests, below the nonce cache's
//! per-key cap (see `REQUESTS_PER_VERIFIER`).
//!
//! Run: `cargo bench -p agentauth-sdk --bench verify`
//! (`bench/verify.sh` runs it and prints the ratios).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use agentauth_authority::{Config, Running};
use agentauth_core::{
    AccessClaims, AgentName, DEFAULT_LEEWAY_SECS, PublicJwk, ReceivedSignature, Scope,
    SignedComponents, SigningKey, SpiffeId, TokenExpectations, TrustDomain, b64url_decode,
    content_digest, parse_access_token, unix_now, verify_access_token,
};
use agentauth_sdk::{Client, Verifier, VerifierConfig};
use axum::Router;
use axum::body::Body;
use axum::routing::get;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use http::{Request, StatusCode};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tower::ServiceExt as _;

const PERMISSION: &str = "read:customer";
const HOST: &str = "customer.local";
const PATH: &str = "/api/customer";

/// Everything the benchmarks share, alive until the end of the run.
struct Fixture {
    /// Runs the authority and the verifiers' background tasks.
    background: Runtime,
    running: Option<Running>,
    _data_dir: tempfile::TempDir,
    url: String,
    issuer: String,
    customer_key: SigningKey,
    reader: Client,
    token: String,
    bearer_token: String,
    authority_key: PublicJwk,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            self.background.block_on(running.shutdown());
        }
    }
}

fn agent_id(name: &str) -> SpiffeId {
    let domain = TrustDomain::new("agentauth.local").expect("trust domain");
    SpiffeId::agent(&domain, &AgentName::new(name).expect("agent name"))
}

/// Registers `name` through the admin API with a fresh key.
async fn register(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    name: &str,
    permissions: &[&str],
) -> SigningKey {
    register_with(http, url, admin, name, permissions, false).await
}

/// Registers `name`, optionally with the registry's bearer opt-out.
async fn register_with(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    name: &str,
    permissions: &[&str],
    bearer_allowed: bool,
) -> SigningKey {
    let key = SigningKey::generate_ed25519();
    let response = http
        .post(format!("{url}/v1/agents"))
        .bearer_auth(admin)
        .json(&json!({
            "name": name,
            "permissions": permissions,
            "public_jwk": key.public_jwk().to_json(),
            "bearer_allowed": bearer_allowed,
        }))
        .send()
        .await
        .expect("the admin API answers");
    assert_eq!(response.status(), StatusCode::CREATED, "registering {name}");
    key
}

/// The authority's public key that signed `token`, from its JWKS.
async fn signing_key(http: &reqwest::Client, url: &str, token: &str) -> PublicJwk {
    let jwks: Value = http
        .get(format!("{url}/.well-known/jwks.json"))
        .send()
        .await
        .expect("JWKS")
        .json()
        .await
        .expect("JWKS is JSON");
    let kid = parse_access_token(token)
        .expect("the token parses")
        .header
        .kid
        .expect("the token has a kid");
    jwks["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|k| k["kid"] == kid.as_str())
        .map(|k| PublicJwk::from_json(k).expect("a usable authority key"))
        .expect("the token's key is in the JWKS")
}

fn fixture() -> Fixture {
    let background = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("background runtime");
    let data_dir = tempfile::tempdir().expect("temp dir");
    let config = Config {
        listen: ([127, 0, 0, 1], 0).into(),
        data_dir: data_dir.path().to_owned(),
        ..Default::default()
    };
    let (running, url, customer_key, reader, token, bearer_token, authority_key) = background
        .block_on(async {
            let running = agentauth_authority::start(config, None)
                .await
                .expect("the authority starts");
            let url = format!("http://{}", running.addr);
            let admin = running.admin_token.clone().expect("a first start");
            let http = reqwest::Client::new();
            let reader_key = register(&http, &url, &admin, "reader", &[PERMISSION]).await;
            let customer_key = register(&http, &url, &admin, "customer", &[]).await;
            // The longest lifetime the authority grants, so the token outlives the run.
            let reader = Client::new(&url, agent_id("reader"), reader_key);
            let token = reader
                .fetch_token(
                    &agent_id("customer"),
                    &Scope::parse(PERMISSION).unwrap(),
                    Some(3600),
                )
                .await
                .expect("a token for the reader")
                .token;
            let authority_key = signing_key(&http, &url, &token).await;
            // A token without cnf (registry opt-out): the check without proof of possession.
            let bearer_key =
                register_with(&http, &url, &admin, "bearer-reader", &[PERMISSION], true).await;
            let bearer_token = Client::new(&url, agent_id("bearer-reader"), bearer_key)
                .fetch_token(
                    &agent_id("customer"),
                    &Scope::parse(PERMISSION).unwrap(),
                    Some(3600),
                )
                .await
                .expect("a bearer token")
                .token;
            (
                running,
                url,
                customer_key,
                reader,
                token,
                bearer_token,
                authority_key,
            )
        });
    Fixture {
        issuer: running.issuer.clone(),
        running: Some(running),
        background,
        _data_dir: data_dir,
        url,
        customer_key,
        reader,
        token,
        bearer_token,
        authority_key,
    }
}

impl Fixture {
    /// A verifier for the customer agent of its own, optionally shipping audit records.
    /// A verifier for the customer; `remember` keeps verified tokens.
    fn verifier(&self, audit: bool, remember: bool) -> Verifier {
        self.background.block_on(async {
            let mut config = VerifierConfig::new(&self.url, agent_id("customer"));
            if !remember {
                config.verified_tokens = 0;
            }
            let verifier = Verifier::connect(config).await.expect("verifier");
            if audit {
                let me = Client::new(&self.url, agent_id("customer"), self.customer_key.clone());
                verifier.with_audit(me)
            } else {
                verifier
            }
        })
    }

    /// A plain Bearer request with a token that has no `cnf`.
    fn bearer_request(&self) -> Request<Body> {
        Request::builder()
            .uri(PATH)
            .header(http::header::HOST, HOST)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.bearer_token),
            )
            .body(Body::empty())
            .expect("a valid request")
    }

    /// A request as the reader's SDK client sends it: Bearer token, Content-Digest
    /// and an RFC 9421 signature with a fresh nonce.
    fn signed_request(&self) -> Request<Body> {
        let mut signed = self
            .reader
            .http()
            .get(format!("http://{HOST}{PATH}"))
            .bearer_auth(&self.token)
            .build()
            .expect("a valid request");
        self.reader.sign(&mut signed).expect("the request signs");
        let mut request = Request::builder()
            .method(signed.method().clone())
            .uri(PATH)
            .header(http::header::HOST, HOST);
        for (name, value) in signed.headers() {
            request = request.header(name, value);
        }
        request.body(Body::empty()).expect("a valid request")
    }
}

fn router(verifier: Option<&Verifier>) -> Router {
    let route = get(|| async { "ok" });
    let route = match verifier {
        Some(v) => route.layer(v.require(PERMISSION)),
        None => route,
    };
    Router::new().route(PATH, route)
}

fn header<'a>(request: &'a Request<Body>, name: &str) -> &'a str {
    request.headers()[name].to_str().expect("ASCII header")
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("bench runtime");

    let (signing_input, signature_b64) = f.token.rsplit_once('.').expect("a compact JWS");
    let signature = b64url_decode(signature_b64).expect("base64url signature");
    assert!(f.authority_key.verify(signing_input.as_bytes(), &signature));
    let audience = agent_id("customer");
    let claims: AccessClaims = verify_access_token(
        &parse_access_token(&f.token).expect("parses"),
        &f.authority_key,
        &TokenExpectations {
            issuer: &f.issuer,
            audience: Some(audience.as_str()),
            now: unix_now(),
            leeway: DEFAULT_LEEWAY_SECS,
        },
    )
    .expect("the token verifies");
    let cnf = claims.cnf.expect("tokens are bound to the client's key");

    let mut group = c.benchmark_group("verify");
    // Longer than the default 5 s: the figures are read as ratios on a noisy machine.
    group.measurement_time(Duration::from_secs(8));

    group.bench_function("ed25519_signature", |b| {
        b.iter(|| {
            black_box(
                f.authority_key
                    .verify(black_box(signing_input.as_bytes()), black_box(&signature)),
            )
        });
    });

    group.bench_function("core_parse_and_verify", |b| {
        b.iter(|| {
            let compact = parse_access_token(black_box(&f.token)).expect("parses");
            let expect = TokenExpectations {
                issuer: &f.issuer,
                audience: Some(audience.as_str()),
                now: unix_now(),
                leeway: DEFAULT_LEEWAY_SECS,
            };
            verify_access_token(&compact, &f.authority_key, &expect).expect("verifies")
        });
    });

    let sample = f.signed_request();
    let target_uri = format!("http://{HOST}{PATH}");
    let cnf_key = PublicJwk::from_json(&cnf.jwk).expect("the cnf key parses");
    group.bench_function("core_request_signature", |b| {
        b.iter(|| {
            let received = ReceivedSignature::parse(
                header(&sample, "signature-input"),
                header(&sample, "signature"),
            )
            .expect("parses");
            let digest = content_digest(black_box(b""));
            assert_eq!(digest, header(&sample, "content-digest"));
            let components = SignedComponents {
                method: "GET",
                target_uri: &target_uri,
                authorization: header(&sample, "authorization"),
                content_digest: &digest,
            };
            received
                .verify(&components, &cnf_key, &cnf.jkt.0, unix_now(), 30, 60)
                .expect("verifies");
        });
    });

    group.bench_function("cnf_key_from_json", |b| {
        b.iter(|| {
            let key = PublicJwk::from_json(black_box(&cnf.jwk)).expect("parses");
            key.thumbprint() == cnf.jkt
        });
    });

    // A mutual-TLS 1.3 handshake between two agents' SVIDs, in memory: both
    // chains checked against the bundle, both SPIFFE IDs against the allowed
    // peers; what a connection costs on top of its requests' layer checks.
    let (server_tls, client_tls) = mtls_configs();
    group.bench_function("mtls_handshake", |b| {
        b.iter(|| handshake(&server_tls, &client_tls));
    });

    // The layer remembers every nonce for the signature's window plus skew
    // (90 s) and refuses a key's requests once it holds 100,000 of that key's
    // (request_proof.rs, MAX_NONCES_PER_KEY); a benchmark sends more than that
    // within 90 s, so it moves to a fresh verifier (prepared beforehand,
    // untimed) every 90,000 requests.
    const REQUESTS_PER_VERIFIER: usize = 90_000;
    const VERIFIERS: usize = 16;
    let layered = [
        ("router_without_layer", None, true),
        ("layer_bearer_check", Some((false, true)), false),
        ("layer_full_check", Some((false, true)), true),
        ("layer_full_check_uncached", Some((false, false)), true),
        ("layer_full_check_with_audit", Some((true, true)), true),
    ];
    for (name, audit, signed) in layered {
        let make = |f: &Fixture| {
            if signed {
                f.signed_request()
            } else {
                f.bearer_request()
            }
        };
        let apps: Vec<Router> = match audit {
            None => vec![router(None)],
            // Unsigned requests carry no nonce: one verifier serves them all.
            Some((audit, remember)) => (0..if signed { VERIFIERS } else { 1 })
                .map(|_| router(Some(&f.verifier(audit, remember))))
                .collect(),
        };
        let status = rt
            .block_on(apps[0].clone().oneshot(make(&f)))
            .expect("infallible")
            .status();
        assert_eq!(status, StatusCode::OK, "{name}");
        let mut sent = 1usize;
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_batched(
                || {
                    let app = if apps.len() == 1 {
                        &apps[0]
                    } else {
                        apps.get(sent / REQUESTS_PER_VERIFIER)
                            .expect("enough verifiers for this run")
                    };
                    sent += 1;
                    (app.clone(), make(&f))
                },
                |(app, request)| async move {
                    let status = app.oneshot(request).await.expect("infallible").status();
                    assert_eq!(status, StatusCode::OK, "a timed request was refused");
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
}

/// Server and client configurations of two agents with SVIDs from one CA.
fn mtls_configs() -> (Arc<rustls::ServerConfig>, Arc<rustls::ClientConfig>) {
    use agentauth_sdk::mtls::{AllowedPeers, SvidSource, client_config, server_config};
    let now = agentauth_core::unix_now();
    let domain = agentauth_core::TrustDomain::new("agentauth.local").expect("a trust domain");
    let ca = agentauth_svid::CertificateAuthority::generate(&domain, now, 86_400).expect("a CA");
    let svid = |name: &str| {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).expect("a key");
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .expect("a CSR");
        let id = agent_id(name);
        let leaf = ca.issue(csr.der(), &id, now, 3600).expect("an SVID");
        SvidSource::new(&agentauth_sdk::X509Svid {
            spiffe_id: id,
            cert_chain_pem: agentauth_svid::certificates_pem([leaf.der.as_slice()]),
            private_key_pem: key.serialize_pem(),
            bundle_pem: agentauth_svid::certificates_pem([ca.cert_der()]),
            expires_at: leaf.expires_at,
        })
        .expect("a source")
    };
    let (server, client) = (svid("customer"), svid("reader"));
    let server_config = server_config(&server, AllowedPeers::Only(vec![agent_id("reader")]))
        .expect("a server configuration");
    let mut client_config = client_config(&client, AllowedPeers::Only(vec![agent_id("customer")]))
        .expect("a client configuration");
    client_config.resumption = rustls::client::Resumption::disabled();
    (Arc::new(server_config), Arc::new(client_config))
}

/// One full handshake, the records passed in memory.
fn handshake(server: &Arc<rustls::ServerConfig>, client: &Arc<rustls::ClientConfig>) {
    let name = rustls::pki_types::ServerName::try_from("customer.invalid").expect("a name");
    let mut client = rustls::ClientConnection::new(client.clone(), name).expect("a client");
    let mut server = rustls::ServerConnection::new(server.clone()).expect("a server");
    let mut records = Vec::new();
    while client.is_handshaking() || server.is_handshaking() {
        records.clear();
        while client.wants_write() {
            client.write_tls(&mut records).expect("client records");
        }
        let mut from_client = records.as_slice();
        while !from_client.is_empty() {
            server
                .read_tls(&mut from_client)
                .expect("read by the server");
            server
                .process_new_packets()
                .expect("the server accepts the client");
        }
        records.clear();
        while server.wants_write() {
            server.write_tls(&mut records).expect("server records");
        }
        let mut from_server = records.as_slice();
        while !from_server.is_empty() {
            client
                .read_tls(&mut from_server)
                .expect("read by the client");
            client
                .process_new_packets()
                .expect("the client accepts the server");
        }
    }
}

criterion_group!(verify, benches);
criterion_main!(verify);
