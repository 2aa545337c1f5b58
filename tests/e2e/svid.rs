//! X.509-SVIDs from the authority: an agent's SDK client makes a key pair
//! and a CSR, the authority signs it for the agent's SPIFFE ID, and the
//! certificate and the trust bundle (`GET /v1/bundle`) are checked by our
//! checker and by the openssl command line. The private key never leaves
//! the agent; nothing a CSR asks for reaches the certificate.

use std::path::Path;
use std::process::Command;

use base64::Engine as _;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{AUTHORITY, Server, id, send_with_token};

/// `openssl ARGS`: its output, asserting it succeeded.
fn openssl(args: &[&str], dir: &Path) -> String {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the openssl command line (.ci/run installs it)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "openssl {args:?}: {text}");
    text
}

#[tokio::test]
async fn an_agent_gets_an_x509_svid_that_validates_against_the_bundle() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    let client = s.client("reader", &key);
    let svid = client.x509_svid().await.unwrap();
    assert_eq!(svid.spiffe_id.as_str(), id("reader"));
    let now = agentauth_core::unix_now();
    assert!(
        (svid.expires_at - now - 3600).abs() <= 5,
        "an hour by default"
    );

    // The bundle in the SPIFFE format, the same CA as the answer's PEM.
    let bundle: Value = s
        .http
        .get(format!("{}/v1/bundle", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let keys: Vec<&Value> = bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["use"] == "x509-svid")
        .collect();
    assert_eq!(keys.len(), 1, "{bundle}");
    assert_eq!(keys[0]["use"], "x509-svid");
    assert_eq!(keys[0]["kty"], "EC");
    assert_eq!(keys[0]["crv"], "P-256");
    assert!(keys[0].get("kid").is_none(), "x509-svid keys carry no kid");
    assert_eq!(keys[0]["x5c"].as_array().unwrap().len(), 1);
    assert!(bundle["spiffe_sequence"].as_u64().unwrap() > 0);
    assert_eq!(bundle["spiffe_refresh_hint"], 300);
    let ca = base64::engine::general_purpose::STANDARD
        .decode(keys[0]["x5c"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(
        agentauth_svid::certificates_from_pem(&svid.bundle_pem).unwrap(),
        std::slice::from_ref(&ca)
    );
    let chain = agentauth_svid::certificates_from_pem(&svid.cert_chain_pem).unwrap();
    let checked = agentauth_svid::check_svid(&[&chain[0]], &[&ca], "agentauth.local", now).unwrap();
    assert_eq!(checked.id.as_str(), id("reader"));

    // openssl agrees: the chain verifies for client and server use, and
    // the leaf says what an X509-SVID must.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("leaf.pem"), &svid.cert_chain_pem).unwrap();
    std::fs::write(dir.path().join("ca.pem"), &svid.bundle_pem).unwrap();
    std::fs::write(dir.path().join("key.pem"), &svid.private_key_pem).unwrap();
    for purpose in ["sslclient", "sslserver"] {
        let out = openssl(
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                purpose,
                "-CAfile",
                "ca.pem",
                "leaf.pem",
            ],
            dir.path(),
        );
        assert!(out.contains("leaf.pem: OK"), "{out}");
    }
    let text = openssl(&["x509", "-in", "leaf.pem", "-noout", "-text"], dir.path());
    assert!(text.contains(&format!("URI:{}", id("reader"))), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(!text.contains("Certificate Sign"), "{text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    // The key the agent holds is the certificate's.
    let from_cert = openssl(
        &["x509", "-in", "leaf.pem", "-noout", "-pubkey"],
        dir.path(),
    );
    let from_key = openssl(&["pkey", "-in", "key.pem", "-pubout"], dir.path());
    assert_eq!(from_cert, from_key);

    let issued = s.audit_records("?kind=svid.issued").await;
    assert_eq!(issued.len(), 1, "{issued:?}");
    assert_eq!(issued[0]["actor"], id("reader"));
    s.stop().await;
}

#[tokio::test]
async fn a_csr_from_openssl_gets_the_callers_identity_whatever_it_asks_for() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    let dir = tempfile::tempdir().unwrap();
    openssl(
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "key.pem",
            "-out",
            "csr.pem",
            "-subj",
            "/CN=admin",
            "-addext",
            "subjectAltName=URI:spiffe://agentauth.local/agent/admin",
        ],
        dir.path(),
    );
    let csr = std::fs::read_to_string(dir.path().join("csr.pem")).unwrap();
    let (status, body) = s.token("reader", &key, AUTHORITY, "svid:x509").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let post = |body: Value| {
        let request = s.http.post(format!("{}/v1/svids/x509", s.url)).json(&body);
        let token = token.clone();
        async move {
            let response = send_with_token(request, &token).await;
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, issued) = post(json!({"csr": csr})).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["spiffe_id"], id("reader"));
    std::fs::write(
        dir.path().join("leaf.pem"),
        issued["x509_svid"].as_str().unwrap(),
    )
    .unwrap();
    let text = openssl(&["x509", "-in", "leaf.pem", "-noout", "-text"], dir.path());
    assert!(text.contains(&format!("URI:{}", id("reader"))), "{text}");
    assert!(
        !text.contains("agent/admin"),
        "nothing of the CSR's names: {text}"
    );
    assert!(!text.contains("CN = admin"), "{text}");

    // A CSR that is not one, or whose signature fails: a clear 400.
    let (status, refused) = post(json!({"csr": "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert_eq!(refused["error"], "invalid_request");
    assert!(
        refused["error_description"]
            .as_str()
            .unwrap()
            .contains("certificate signing request"),
        "{refused}"
    );
    let mut der = agentauth_svid::csr_from_pem(&csr).unwrap();
    let last = der.len() - 3;
    der[last] ^= 1;
    let tampered = pem_csr(&der);
    let (status, refused) = post(json!({"csr": tampered})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    // Without a token, or with one lacking svid:x509: refused, nothing issued.
    let bare = s
        .http
        .post(format!("{}/v1/svids/x509", s.url))
        .json(&json!({"csr": csr}))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), StatusCode::UNAUTHORIZED);
    let (_, other) = s.token("reader", &key, AUTHORITY, "audit:write").await;
    let request = s
        .http
        .post(format!("{}/v1/svids/x509", s.url))
        .json(&json!({"csr": csr}));
    let response = send_with_token(request, other["access_token"].as_str().unwrap()).await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert_eq!(s.audit_records("?kind=svid.issued").await.len(), 1);
    s.stop().await;
}

/// DER as a PEM CSR.
fn pem_csr(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
        lines.join("\n")
    )
}

/// The CA certificates of `GET /v1/bundle` (DER) and its sequence.
async fn bundle(s: &Server) -> (Vec<Vec<u8>>, u64) {
    let bundle: Value = s
        .http
        .get(format!("{}/v1/bundle", s.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let cas = bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["use"] == "x509-svid")
        .map(|k| {
            base64::engine::general_purpose::STANDARD
                .decode(k["x5c"][0].as_str().unwrap())
                .unwrap()
        })
        .collect();
    (cas, bundle["spiffe_sequence"].as_u64().unwrap())
}

/// Which of `cas` signed `svid` (its index), checked by path validation.
fn signed_by(svid: &agentauth_sdk::X509Svid, cas: &[Vec<u8>]) -> Vec<usize> {
    let leaf = agentauth_svid::certificates_from_pem(&svid.cert_chain_pem).unwrap();
    let now = agentauth_core::unix_now();
    (0..cas.len())
        .filter(|&i| {
            agentauth_svid::check_svid(&[&leaf[0]], &[&cas[i]], "agentauth.local", now).is_ok()
        })
        .collect()
}

#[tokio::test]
async fn a_ca_rotation_publishes_the_next_ca_before_it_signs_and_old_svids_keep_validating() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    let client = s.client("reader", &key);
    let first = client.x509_svid().await.unwrap();
    let (cas, sequence) = bundle(&s).await;
    assert_eq!(cas.len(), 1);
    assert_eq!(signed_by(&first, &cas), [0]);

    // Rotated: the next CA is in the bundle at once, but signs only after
    // the publish lead (600 s): SVIDs still come from the first.
    let (status, added) = s
        .admin_json(reqwest::Method::POST, "/v1/ca/rotate", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{added}");
    assert_eq!(added["phase"], "published");
    let now = agentauth_core::unix_now();
    assert!(
        (added["signs_from"].as_i64().unwrap() - now - 600).abs() <= 5,
        "{added}"
    );
    let (cas, next) = bundle(&s).await;
    assert_eq!((cas.len(), next), (2, sequence + 1));
    let second = client.x509_svid().await.unwrap();
    assert_eq!(signed_by(&second, &cas), [0]);
    let (_, listed) = s.admin_json(reqwest::Method::GET, "/v1/ca", None).await;
    let phases: Vec<&str> = listed["cas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["signing", "published"]);
    assert_eq!(listed["cas"][1]["serial"], added["serial"]);

    // At once (a CA key believed compromised): the newest signs now; every
    // SVID issued before still validates against the bundle. (Signing
    // begins a second after the current CA's start at the earliest, and the
    // first was made this very second.)
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, urgent) = s
        .admin_json(
            reqwest::Method::POST,
            "/v1/ca/rotate",
            Some(json!({"now": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{urgent}");
    assert_eq!(urgent["phase"], "signing");
    let before = cas;
    let (cas, last) = bundle(&s).await;
    assert_eq!((cas.len(), last), (3, sequence + 2));
    let newest: Vec<usize> = (0..3).filter(|&i| !before.contains(&cas[i])).collect();
    let third = client.x509_svid().await.unwrap();
    assert_eq!(
        signed_by(&third, &cas),
        newest,
        "the urgent CA signs at once"
    );
    let mut in_bundle = agentauth_svid::certificates_from_pem(&third.bundle_pem).unwrap();
    let mut expected = cas.clone();
    in_bundle.sort();
    expected.sort();
    assert_eq!(in_bundle, expected, "an SVID comes with the whole bundle");
    let first_ca = cas.iter().position(|c| *c == before[0]).unwrap();
    for old in [&first, &second] {
        assert_eq!(signed_by(old, &cas), [first_ca], "still valid");
    }
    let (_, listed) = s.admin_json(reqwest::Method::GET, "/v1/ca", None).await;
    let phases: Vec<&str> = listed["cas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["phase"].as_str().unwrap())
        .collect();
    // By signing time: the first, the urgent one signing now, and the one
    // published ahead, which takes over when its time comes.
    assert_eq!(phases, ["retired", "signing", "published"]);
    assert_eq!(s.audit_records("?kind=x509_ca.added").await.len(), 2);
    // The same through the command line.
    let cli = |args: &'static [&'static str]| {
        let mut cmd = crate::support::command();
        cmd.env("AGENTAUTH_URL", &s.url)
            .env("AGENTAUTH_ADMIN_TOKEN", &s.admin)
            .args(args);
        async move {
            let out = tokio::task::spawn_blocking(move || {
                crate::support::output_within(&mut cmd, std::time::Duration::from_secs(30))
            })
            .await
            .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            String::from_utf8(out.stdout).unwrap()
        }
    };
    let listed = cli(&["ca", "list"]).await;
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert_eq!(
        listed.lines().filter(|l| l.contains("signing ")).count(),
        1,
        "{listed}"
    );
    let added = cli(&["ca", "rotate"]).await;
    assert!(
        added.starts_with("added CA ") && added.contains("in the bundle now"),
        "{added}"
    );
    assert_eq!(cli(&["ca", "list"]).await.lines().count(), 4);
    // Only the admin rotates.
    let response = s
        .http
        .post(format!("{}/v1/ca/rotate", s.url))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn an_agent_gets_a_jwt_svid_that_validates_against_the_bundles_jwt_key() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    let client = s.client("reader", &key);
    let audience = id("database");
    let svid = client.jwt_svid(&audience).await.unwrap();
    let now = agentauth_core::unix_now();
    assert!((svid.expires_at - now - 300).abs() <= 5, "five minutes");
    assert!(!format!("{svid:?}").contains(&svid.token));

    let jwt_keys = s.jwt_svid_keys().await;
    assert_eq!(jwt_keys.len(), 1);
    let claims = agentauth_core::validate_jwt_svid(&svid.token, &jwt_keys, &audience, now).unwrap();
    assert_eq!(claims.sub.as_str(), id("reader"));
    assert!(matches!(
        agentauth_core::validate_jwt_svid(&svid.token, &jwt_keys, &id("other"), now),
        Err(agentauth_core::JwtSvidError::Audience(_))
    ));
    // The header is alg, kid and typ, and nothing else.
    let header: Value = serde_json::from_slice(
        &agentauth_core::b64url_decode(svid.token.split('.').next().unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        header,
        json!({"alg": "ES256", "kid": jwt_keys[0].0, "typ": "JWT"})
    );

    // One audience, bounded; audited.
    let (_, body) = s.token("reader", &key, AUTHORITY, "svid:jwt").await;
    let token = body["access_token"].as_str().unwrap();
    let request = s
        .http
        .post(format!("{}/v1/svids/jwt", s.url))
        .json(&json!({"audience": ""}));
    let response = send_with_token(request, token).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let refused: Value = response.json().await.unwrap();
    assert_eq!(refused["error"], "invalid_request", "{refused}");
    let issued = s.audit_records("?kind=svid.issued").await;
    assert_eq!(issued.len(), 1);
    assert_eq!(issued[0]["audience"], audience);
    s.stop().await;
}

/// A token request for reader → customer authenticated by `assertion` as a
/// JWT-SVID, with `client_id` if given.
async fn token_by_jwt_svid(
    s: &Server,
    assertion: &str,
    client_id: Option<&str>,
) -> (StatusCode, Value) {
    let customer = id("customer");
    let mut form = vec![
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            agentauth_authority::JWT_SPIFFE_ASSERTION_TYPE,
        ),
        ("client_assertion", assertion),
        ("resource", customer.as_str()),
        ("scope", "read:customer"),
    ];
    if let Some(c) = client_id {
        form.push(("client_id", c));
    }
    s.form("/oauth/token", &form).await
}

#[tokio::test]
async fn a_jwt_svid_for_the_authority_authenticates_its_agent_once_at_the_token_endpoint() {
    let s = Server::start().await;
    let key = s.register("reader", &["read:customer"]).await;
    s.register("customer", &[]).await;
    let writer_key = s.register("writer", &["read:customer"]).await;
    let client = s.client("reader", &key);

    let svid = client.jwt_svid(&s.url).await.unwrap();
    let (status, body) = token_by_jwt_svid(&s, &svid.token, Some(&id("reader"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let claims = crate::support::claims(body["access_token"].as_str().unwrap());
    assert_eq!(claims.client_id.as_str(), id("reader"));
    assert_eq!(
        claims.cnf.unwrap().jkt,
        key.public_jwk().thumbprint(),
        "bound to the agent's registered key, as with private_key_jwt"
    );

    // Once only.
    let (status, body) = token_by_jwt_svid(&s, &svid.token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{body}"
    );

    // Addressed to someone else, claimed by another client, or tampered: refused.
    let elsewhere = client.jwt_svid(&id("customer")).await.unwrap();
    let (status, body) = token_by_jwt_svid(&s, &elsewhere.token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("JWT-SVID"),
        "{body}"
    );
    let fresh = client.jwt_svid(&s.url).await.unwrap();
    let (status, body) = token_by_jwt_svid(&s, &fresh.token, Some(&id("writer"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let mut parts: Vec<String> = fresh.token.split('.').map(str::to_owned).collect();
    let writer = s
        .client("writer", &writer_key)
        .jwt_svid(&s.url)
        .await
        .unwrap();
    parts[1] = writer.token.split('.').nth(1).unwrap().to_owned();
    let (status, body) = token_by_jwt_svid(&s, &parts.join("."), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("signature"),
        "{body}"
    );

    // A disabled agent's JWT-SVID no longer authenticates it.
    let (status, _) = s
        .admin_json(
            reqwest::Method::PATCH,
            "/v1/agents/reader",
            Some(json!({"status": "disabled"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = token_by_jwt_svid(&s, &fresh.token, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    s.stop().await;
}

#[tokio::test]
async fn two_agents_call_each_other_over_mutual_tls_with_their_svids_and_rotate_without_restart() {
    use agentauth_sdk::mtls::{AllowedPeers, SvidSource, client_config};
    let s = Server::start().await;
    let server_key = s.register("customer", &[]).await;
    let client_key = s.register("reader", &["read:customer"]).await;
    let outsider_key = s.register("outsider", &[]).await;
    let server_client = s.client("customer", &server_key);
    let server_source = SvidSource::new(&server_client.x509_svid().await.unwrap()).unwrap();
    let reader =
        SvidSource::new(&s.client("reader", &client_key).x509_svid().await.unwrap()).unwrap();
    let outsider = SvidSource::new(
        &s.client("outsider", &outsider_key)
            .x509_svid()
            .await
            .unwrap(),
    )
    .unwrap();
    let (addr, mut peers) = crate::support::mtls_server(
        &server_source,
        AllowedPeers::Only(vec![crate::support::spiffe("reader")]),
    )
    .await;

    let to_customer = AllowedPeers::Only(vec![crate::support::spiffe("customer")]);
    let first =
        crate::support::mtls_call(addr, client_config(&reader, to_customer.clone()).unwrap())
            .await
            .unwrap();
    assert_eq!(
        peers.recv().await.unwrap(),
        id("reader"),
        "the server knows its caller"
    );

    // The server's SPIFFE ID is checked, not the host name dialled.
    let to_other = AllowedPeers::Only(vec![crate::support::spiffe("database")]);
    assert!(
        crate::support::mtls_call(addr, client_config(&reader, to_other).unwrap())
            .await
            .is_err()
    );
    // A valid SVID the server does not allow, and no certificate at all: refused.
    assert!(
        crate::support::mtls_call(addr, client_config(&outsider, to_customer.clone()).unwrap())
            .await
            .is_err()
    );
    let anonymous = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(std::sync::Arc::new(AcceptAnything))
    .with_no_client_auth();
    assert!(crate::support::mtls_call(addr, anonymous).await.is_err());

    // A new SVID for the server: the next handshake presents it.
    server_source
        .update(&server_client.x509_svid().await.unwrap())
        .unwrap();
    let second = crate::support::mtls_call(addr, client_config(&reader, to_customer).unwrap())
        .await
        .unwrap();
    assert_ne!(first, second, "rotated without a restart");
    s.stop().await;
}

/// A client verifier that accepts any server, to show the server refuses a
/// client without a certificate.
#[derive(Debug)]
struct AcceptAnything;

impl rustls::client::danger::ServerCertVerifier for AcceptAnything {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[tokio::test]
async fn an_https_agent_over_mutual_tls_knows_its_caller_by_spiffe_id() {
    use agentauth_sdk::mtls::{
        AllowedPeers, PeerId, SvidSource, client_config, serve, server_config,
    };
    let s = Server::start().await;
    let server_key = s.register("customer", &[]).await;
    let client_key = s.register("reader", &["read:customer"]).await;
    let server_source =
        SvidSource::new(&s.client("customer", &server_key).x509_svid().await.unwrap()).unwrap();
    let reader =
        SvidSource::new(&s.client("reader", &client_key).x509_svid().await.unwrap()).unwrap();
    async fn whoami(axum::Extension(PeerId(peer)): axum::Extension<PeerId>) -> String {
        peer.to_string()
    }
    let router = axum::Router::new().route("/whoami", axum::routing::get(whoami));
    let config = server_config(&server_source, AllowedPeers::TrustDomain).unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(serve(
        listener,
        std::sync::Arc::new(config),
        server_source.clone(),
        router,
    ));
    let tls = client_config(
        &reader,
        AllowedPeers::Only(vec![crate::support::spiffe("customer")]),
    )
    .unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let answer = http
        .get(format!("https://localhost:{port}/whoami"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), id("reader"));
    // Plain HTTP gets nowhere.
    assert!(
        reqwest::get(format!("http://localhost:{port}/whoami"))
            .await
            .is_err()
    );
    s.stop().await;
}

#[tokio::test]
async fn behind_mutual_tls_the_layer_refuses_a_token_of_another_agent_than_the_peer() {
    use agentauth_sdk::mtls::{AllowedPeers, SvidSource, client_config, serve, server_config};
    use agentauth_sdk::{VerifiedAgent, Verifier, VerifierConfig};
    let s = Server::start().await;
    let server_key = s.register("customer", &[]).await;
    let reader_key = s.register("reader", &["read:customer"]).await;
    let writer_key = s.register("writer", &["read:customer"]).await;
    let server_source =
        SvidSource::new(&s.client("customer", &server_key).x509_svid().await.unwrap()).unwrap();
    let reader_source =
        SvidSource::new(&s.client("reader", &reader_key).x509_svid().await.unwrap()).unwrap();
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let origin = format!(
        "https://localhost:{}",
        listener.local_addr().unwrap().port()
    );
    let mut verifier_config = VerifierConfig::new(&s.url, crate::support::spiffe("customer"));
    // Signatures cover the URL the caller used: https here.
    verifier_config.public_origin = Some(origin.clone());
    let verifier = Verifier::connect(verifier_config).await.unwrap();
    async fn read(caller: VerifiedAgent) -> String {
        caller.agent.to_string()
    }
    let router = axum::Router::new().route(
        "/data",
        axum::routing::get(read).layer(verifier.require("read:customer")),
    );
    let config = server_config(&server_source, AllowedPeers::TrustDomain).unwrap();
    tokio::spawn(serve(
        listener,
        std::sync::Arc::new(config),
        server_source.clone(),
        router,
    ));
    // The reader's TLS connection.
    let tls = client_config(
        &reader_source,
        AllowedPeers::Only(vec![crate::support::spiffe("customer")]),
    )
    .unwrap();
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    // A request with `name`'s token, signed with `key`, sent over the
    // reader's TLS connection.
    let call = |name: &'static str, key: agentauth_core::SigningKey| {
        let (http, url) = (http.clone(), format!("{origin}/data"));
        let s = &s;
        async move {
            let client = s.client(name, &key);
            let token = client
                .fetch_token(
                    &crate::support::spiffe("customer"),
                    &crate::support::scope("read:customer"),
                    None,
                )
                .await
                .unwrap();
            let mut request = http.get(url).bearer_auth(&token.token).build().unwrap();
            client.sign(&mut request).unwrap();
            let response = http.execute(request).await.unwrap();
            let status = response.status();
            (status, response.text().await.unwrap())
        }
    };
    // Its own token, signed with its own key: served, and the handler sees it.
    let (status, body) = call("reader", reader_key.clone()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, id("reader"));
    // The writer's token, properly signed by the writer's key, but sent over
    // the reader's certificate: refused.
    let (status, body) = call("writer", writer_key.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let refusal: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(refusal["check"], "proof", "{refusal}");
    assert!(
        refusal["error_description"]
            .as_str()
            .unwrap()
            .contains("not the TLS peer"),
        "{refusal}"
    );
    s.stop().await;
}

/// An upstream root CA as an operator holds it, written to `dir`:
/// (certificate file, key file 0600, certificate DER).
fn upstream_root(dir: &Path) -> (String, String, Vec<u8>) {
    use std::os::unix::fs::PermissionsExt as _;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "corporate root");
    let cert = params.self_signed(&key).unwrap();
    let cert_file = dir.join("upstream.pem");
    let key_file = dir.join("upstream.key");
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    (
        cert_file.to_str().unwrap().to_owned(),
        key_file.to_str().unwrap().to_owned(),
        cert.der().to_vec(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_an_upstream_ca_the_authority_signs_through_an_intermediate_and_publishes_the_root() {
    use agentauth_sdk::mtls::{AllowedPeers, SvidSource, client_config};
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, root) = upstream_root(dir.path());

    // A key file others may read, or half the pair, and it does not start.
    std::fs::set_permissions(
        &key,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o644),
    )
    .unwrap();
    let data = dir.path().join("refused");
    let loose = crate::support::output_within(
        crate::support::command().args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            data.to_str().unwrap(),
            "--upstream-ca-cert",
            &cert,
            "--upstream-ca-key",
            &key,
        ]),
        std::time::Duration::from_secs(30),
    );
    assert!(!loose.status.success());
    assert!(
        String::from_utf8_lossy(&loose.stderr).contains("upstream.key"),
        "{}",
        String::from_utf8_lossy(&loose.stderr)
    );
    std::fs::set_permissions(
        &key,
        <std::fs::Permissions as std::os::unix::fs::PermissionsExt>::from_mode(0o600),
    )
    .unwrap();
    let half = crate::support::output_within(
        crate::support::command().args([
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--upstream-ca-cert",
            &cert,
        ]),
        std::time::Duration::from_secs(30),
    );
    assert!(!half.status.success());
    assert!(String::from_utf8_lossy(&half.stderr).contains("--upstream-ca-key"));

    let s = Server::start_with(
        &["--upstream-ca-cert", &cert, "--upstream-ca-key", &key],
        &[],
    )
    .await;
    // The bundle publishes the upstream root alone.
    let (anchors, _) = bundle(&s).await;
    assert_eq!(anchors, vec![root.clone()]);

    // An SVID carries the intermediate and validates against the root.
    let reader_key = s.register("reader", &[]).await;
    let customer_key = s.register("customer", &[]).await;
    let svid = s.client("reader", &reader_key).x509_svid().await.unwrap();
    let chain = agentauth_svid::certificates_from_pem(&svid.cert_chain_pem).unwrap();
    assert_eq!(chain.len(), 2, "leaf and intermediate");
    assert_eq!(
        agentauth_svid::certificates_from_pem(&svid.bundle_pem).unwrap(),
        vec![root.clone()]
    );
    let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let now = agentauth_core::unix_now();
    let checked = agentauth_svid::check_svid(&refs, &[&root], "agentauth.local", now).unwrap();
    assert_eq!(checked.id.as_str(), id("reader"));
    assert_ne!(chain[1], root, "the intermediate, not the root");
    assert!(
        agentauth_svid::check_svid(&refs[..1], &[&root], "agentauth.local", now).is_err(),
        "the leaf reaches the root only through the intermediate"
    );

    // A rotation adds an intermediate under the same root: one anchor still.
    let (status, _) = s
        .admin_json(
            reqwest::Method::POST,
            "/v1/ca/rotate",
            Some(json!({"now": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (_, cas) = s.admin_json(reqwest::Method::GET, "/v1/ca", None).await;
    assert_eq!(cas["cas"].as_array().unwrap().len(), 2);
    let (anchors, _) = bundle(&s).await;
    assert_eq!(anchors, vec![root.clone()]);

    // Two agents with SVIDs from different intermediates of that root
    // complete mutual TLS, each presenting its chain.
    let customer = SvidSource::new(
        &s.client("customer", &customer_key)
            .x509_svid()
            .await
            .unwrap(),
    )
    .unwrap();
    let reader = SvidSource::new(&svid).unwrap();
    let (addr, mut peers) = crate::support::mtls_server(
        &customer,
        AllowedPeers::Only(vec![crate::support::spiffe("reader")]),
    )
    .await;
    crate::support::mtls_call(
        addr,
        client_config(
            &reader,
            AllowedPeers::Only(vec![crate::support::spiffe("customer")]),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(peers.recv().await.unwrap(), id("reader"));
    s.stop().await;
}

#[tokio::test]
async fn a_compromised_ca_is_replaced_at_once_and_taken_out_of_the_bundle() {
    let s = Server::start().await;
    let key = s.register("reader", &[]).await;
    let client = s.client("reader", &key);
    let before = client.x509_svid().await.unwrap();
    let (_, listed) = s.admin_json(reqwest::Method::GET, "/v1/ca", None).await;
    let old = listed["cas"][0]["serial"].as_str().unwrap().to_owned();

    // The CA signing now cannot go; an unknown serial is not found.
    let (status, body) = s
        .admin_json(reqwest::Method::DELETE, &format!("/v1/ca/{old}"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("--now")
    );
    let (status, _) = s
        .admin_json(reqwest::Method::DELETE, "/v1/ca/00ff", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Replaced at once, then removed: the bundle holds only the new CA, so
    // what the old one signed no longer validates.
    let (status, _) = s
        .admin_json(
            reqwest::Method::POST,
            "/v1/ca/rotate",
            Some(json!({"now": true})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // `--now` signs from the second after the old CA began, at the earliest.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let (status, body) = s
        .admin_json(reqwest::Method::DELETE, &format!("/v1/ca/{old}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    let (cas, _) = bundle(&s).await;
    assert_eq!(cas.len(), 1);
    let chain = agentauth_svid::certificates_from_pem(&before.cert_chain_pem).unwrap();
    let now = agentauth_core::unix_now();
    assert!(agentauth_svid::check_svid(&[&chain[0]], &[&cas[0]], "agentauth.local", now).is_err());
    let after = client.x509_svid().await.unwrap();
    let chain = agentauth_svid::certificates_from_pem(&after.cert_chain_pem).unwrap();
    assert!(agentauth_svid::check_svid(&[&chain[0]], &[&cas[0]], "agentauth.local", now).is_ok());
    assert_eq!(s.audit_records("?kind=x509_ca.removed").await.len(), 1);
    s.stop().await;
}
