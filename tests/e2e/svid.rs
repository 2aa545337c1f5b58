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
    let keys = bundle["keys"].as_array().unwrap();
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
