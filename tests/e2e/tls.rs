//! `serve --tls`: the authority serves HTTPS with its own X.509-SVID, and
//! knows a client by the X.509-SVID it presents.

use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::{Server, id};

/// The bundle's CA certificates as PEM, fetched without checking the
/// server (the bootstrap; everything after is checked against them).
pub(crate) async fn bundle_pem(url: &str) -> String {
    let bootstrap = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let bundle: Value = bootstrap
        .get(format!("{url}/v1/bundle"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ders: Vec<Vec<u8>> = bundle["keys"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| k["use"] == "x509-svid")
        .map(|k| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD
                .decode(k["x5c"][0].as_str().unwrap())
                .unwrap()
        })
        .collect();
    agentauth_svid::certificates_pem(ders.iter().map(Vec::as_slice))
}

/// A client that trusts only `bundle` and presents `identity` if given.
pub(crate) fn https_client(bundle: &str, identity: Option<reqwest::Identity>) -> reqwest::Client {
    let roots = reqwest::Certificate::from_pem_bundle(bundle.as_bytes()).unwrap();
    let mut builder = reqwest::Client::builder().tls_certs_only(roots);
    if let Some(identity) = identity {
        builder = builder.identity(identity);
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authority_serves_https_with_its_own_svid_and_checks_client_certificates() {
    let mut s = Server::start_with(&["--tls"], &[]).await;
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let bundle = bundle_pem(&s.url).await;
    s.http = https_client(&bundle, None);

    // Host name checks pass (the issuer's IP is a SAN) against the bundle alone.
    let (status, metadata) = s
        .json_as(
            "",
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(metadata["issuer"], s.url);
    assert!(
        metadata["token_endpoint"]
            .as_str()
            .unwrap()
            .starts_with("https://")
    );

    // The served certificate is the authority's X.509-SVID.
    let roots: Vec<Vec<u8>> = agentauth_svid::certificates_from_pem(&bundle).unwrap();
    let mut store = rustls::RootCertStore::empty();
    for root in &roots {
        store.add(root.clone().into()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    let addr = s.url.trim_start_matches("https://").to_owned();
    let tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .unwrap();
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let seen = agentauth_svid::check_svid(
        &[leaf.as_slice()],
        &roots.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        "agentauth.local",
        agentauth_core::unix_now(),
    )
    .unwrap();
    assert_eq!(seen.id.to_string(), "spiffe://agentauth.local/authority");

    // A client with an SVID of this trust domain is served; one whose
    // certificate another CA signed is refused in the handshake.
    let key = s.register("reader", &["svid:x509"]).await;
    let svid = s
        .client_with_http("reader", &key, s.http.clone())
        .x509_svid()
        .await
        .unwrap();
    let identity = reqwest::Identity::from_pem(
        format!("{}{}", svid.cert_chain_pem, svid.private_key_pem).as_bytes(),
    )
    .unwrap();
    let with_svid = https_client(&bundle, Some(identity));
    let answer = with_svid
        .get(format!("{}/.well-known/jwks.json", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);

    let foreign_ca = agentauth_svid::CertificateAuthority::generate(
        &agentauth_core::TrustDomain::new("elsewhere.test").unwrap(),
        agentauth_core::unix_now(),
        3600,
    )
    .unwrap();
    let foreign_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = rcgen::CertificateParams::default()
        .serialize_request(&foreign_key)
        .unwrap();
    let foreign = foreign_ca
        .issue(
            csr.der(),
            &agentauth_core::SpiffeId::parse(&id("reader")).unwrap(),
            agentauth_core::unix_now(),
            600,
        )
        .unwrap();
    let identity = reqwest::Identity::from_pem(
        format!(
            "{}{}",
            agentauth_svid::certificates_pem([foreign.der.as_slice()]),
            foreign_key.serialize_pem()
        )
        .as_bytes(),
    )
    .unwrap();
    let refused = https_client(&bundle, Some(identity))
        .get(format!("{}/.well-known/jwks.json", s.url))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a certificate from another CA was accepted"
    );
    s.stop().await;
}

/// A reqwest identity from an SDK SVID (chain and key).
fn identity(svid: &agentauth_sdk::X509Svid) -> reqwest::Identity {
    reqwest::Identity::from_pem(
        format!("{}{}", svid.cert_chain_pem, svid.private_key_pem).as_bytes(),
    )
    .unwrap()
}

/// The leaf of an SDK SVID, DER.
fn leaf(svid: &agentauth_sdk::X509Svid) -> Vec<u8> {
    agentauth_svid::certificates_from_pem(&svid.cert_chain_pem).unwrap()[0].clone()
}

/// A token request over `http` with no assertion: tls_client_auth.
async fn token_by_certificate(
    http: &reqwest::Client,
    url: &str,
    client_id: Option<&str>,
) -> (StatusCode, Value) {
    let customer = id("customer");
    let mut form = vec![
        ("grant_type", "client_credentials"),
        ("resource", customer.as_str()),
        ("scope", "read:customer"),
    ];
    if let Some(c) = client_id {
        form.push(("client_id", c));
    }
    let answer = http
        .post(format!("{url}/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    (answer.status(), answer.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_client_auth_binds_the_token_to_the_certificate_and_the_layer_demands_that_certificate()
{
    use agentauth_sdk::mtls::{AllowedPeers, SvidSource, client_config, serve, server_config};
    use agentauth_sdk::{VerifiedAgent, Verifier, VerifierConfig};

    let mut s = Server::start_with(&["--tls"], &[]).await;
    let bundle = bundle_pem(&s.url).await;
    s.http = https_client(&bundle, None);
    let (_, metadata) = s
        .json_as(
            "",
            Method::GET,
            "/.well-known/oauth-authorization-server",
            None,
        )
        .await;
    assert_eq!(metadata["tls_client_certificate_bound_access_tokens"], true);
    assert!(
        metadata["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&"tls_client_auth".into())
    );
    let reader_key = s.register("reader", &["svid:x509", "read:customer"]).await;
    let customer_key = s.register("customer", &["svid:x509"]).await;
    let reader = s.client_with_http("reader", &reader_key, s.http.clone());
    let first = reader.x509_svid().await.unwrap();
    let second = reader.x509_svid().await.unwrap();

    // The certificate authenticates the reader; the token names it in cnf.
    let over_first = https_client(&bundle, Some(identity(&first)));
    let (status, body) = token_by_certificate(&over_first, &s.url, Some(&id("reader"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let claims = crate::support::claims(&token);
    assert_eq!(claims.client_id.as_str(), id("reader"));
    let cnf = claims.cnf.unwrap();
    assert_eq!(
        cnf.x5t_s256.as_deref(),
        Some(agentauth_core::certificate_thumbprint(&leaf(&first)).as_str())
    );
    assert_eq!(
        cnf.jkt,
        agentauth_svid::public_jwk(&leaf(&first))
            .unwrap()
            .thumbprint(),
        "the certificate's key, not the registered one"
    );

    // client_id is required and must be the certificate's; no certificate,
    // no assertion: no client.
    let (status, body) = token_by_certificate(&over_first, &s.url, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    let (status, body) = token_by_certificate(&over_first, &s.url, Some(&id("customer"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    let (status, body) = token_by_certificate(&s.http, &s.url, Some(&id("reader"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");

    // A token exchange by the reader over its certificate: the new token is
    // bound to the actor's certificate too.
    let writer_key = s.register("writer", &["read:customer"]).await;
    let (status, body) = s
        .admin_json(
            Method::POST,
            "/v1/agents/reader/delegations",
            Some(serde_json::json!({"to": "customer", "permissions": ["read:customer"]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, body) = s
        .token("writer", &writer_key, &id("reader"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let subject = body["access_token"].as_str().unwrap().to_owned();
    let customer = id("customer");
    let answer = over_first
        .post(format!("{}/oauth/token", s.url))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("subject_token", subject.as_str()),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
            ("resource", customer.as_str()),
            ("scope", "read:customer"),
            ("client_id", id("reader").as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let exchanged: Value = answer.json().await.unwrap();
    let claims = crate::support::claims(exchanged["access_token"].as_str().unwrap());
    assert_eq!(claims.sub.as_str(), id("writer"));
    assert_eq!(
        claims.cnf.unwrap().x5t_s256.as_deref(),
        Some(agentauth_core::certificate_thumbprint(&leaf(&first)).as_str()),
        "bound to the actor's certificate"
    );

    // The customer behind mutual TLS, its layer fed by the TLS authority.
    let customer_svid = s
        .client_with_http("customer", &customer_key, s.http.clone())
        .x509_svid()
        .await
        .unwrap();
    let customer_source = SvidSource::new(&customer_svid).unwrap();
    // Policy sees the mutual-TLS peer: reads only from the reader's certificate.
    s.load_policies(
        &[(
            "peer.cedar",
            "@id(\"reads-over-mtls\") permit (principal, action in Action::\"read\", resource)\n\
             when { context.tls_peer == \"spiffe://agentauth.local/agent/reader\" };\n",
        )],
        true,
    )
    .await;
    let mut config = VerifierConfig::new(&s.url, crate::support::spiffe("customer"));
    config.http = Some(s.http.clone());
    let verifier = Verifier::connect(config)
        .await
        .unwrap()
        .with_audit(s.client_with_http("customer", &customer_key, s.http.clone()));
    assert!(
        verifier.policy_version().is_some(),
        "the policy set is in force"
    );
    async fn read(caller: VerifiedAgent) -> String {
        caller.agent.to_string()
    }
    let router = axum::Router::new().route(
        "/data",
        axum::routing::get(read).layer(verifier.require("read:customer")),
    );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let url = format!(
        "https://localhost:{}/data",
        listener.local_addr().unwrap().port()
    );
    tokio::spawn(serve(
        listener,
        Arc::new(server_config(&customer_source, AllowedPeers::TrustDomain).unwrap()),
        customer_source.clone(),
        router,
    ));
    let over = |svid: &agentauth_sdk::X509Svid| {
        let source = SvidSource::new(svid).unwrap();
        let tls = client_config(
            &source,
            AllowedPeers::Only(vec![crate::support::spiffe("customer")]),
        )
        .unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .build()
            .unwrap()
    };
    // Over its own certificate, the bound token needs nothing else: served.
    let answer = over(&first)
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert_eq!(answer.text().await.unwrap(), id("reader"));
    // Over another certificate, even the same agent's: refused.
    let answer = over(&second)
        .get(&url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
    let refusal: Value = answer.json().await.unwrap();
    assert_eq!(refusal["check"], "proof", "{refusal}");
    assert!(
        refusal["error_description"]
            .as_str()
            .unwrap()
            .contains("another client certificate"),
        "{refusal}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_at_the_token_endpoint_sees_the_tls_client_certificate() {
    let mut s = Server::start_with(&["--tls"], &[]).await;
    let bundle = bundle_pem(&s.url).await;
    s.http = https_client(&bundle, None);
    let reader_key = s.register("reader", &["svid:x509", "read:customer"]).await;
    s.register("customer", &[]).await;
    let svid = s
        .client_with_http("reader", &reader_key, s.http.clone())
        .x509_svid()
        .await
        .unwrap();
    let policy = format!(
        "@id(\"over-mtls\")\npermit (principal, action, resource)\nwhen {{ context.tls_peer == \"{}\" }};\n",
        id("reader")
    );
    let (status, body) = s.load_policies(&[("mtls.cedar", &policy)], true).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Over the reader's certificate the policy permits; the same agent by
    // private_key_jwt without a certificate is refused.
    let over_cert = https_client(&bundle, Some(identity(&svid)));
    let (status, body) = token_by_certificate(&over_cert, &s.url, Some(&id("reader"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = s
        .token("reader", &reader_key, &id("customer"), "read:customer")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid_scope", "{body}");
    s.stop().await;
}
