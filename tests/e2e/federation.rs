//! SPIFFE federation between two real authorities: `home` (agentauth.local,
//! Workload API on a socket) follows the bundle endpoint of `partner`
//! (partner.test, serving HTTPS with its own SVID), hands the partner's
//! bundle to workloads, validates the partner's JWT-SVIDs, lets an agent
//! accept a partner agent over mutual TLS only when it names it, follows a
//! partner CA rotation, and forgets the partner on removal.

use std::collections::BTreeMap;

use agentauth_core::SpiffeId;
use agentauth_sdk::mtls::{AllowedPeers, SvidSource, client_config};
use agentauth_workload::proto::{
    JwtBundlesRequest, ValidateJwtsvidRequest, X509BundlesRequest, X509svidRequest,
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{Server, authority_with_socket, mtls_call, mtls_server, own_selectors};
use crate::tls::{bundle_pem, https_client};

const PARTNER: &str = "partner.test";

fn partner_id(name: &str) -> SpiffeId {
    SpiffeId::parse(&format!("spiffe://{PARTNER}/agent/{name}")).unwrap()
}

/// The partner authority over HTTPS, with its CA certificates as PEM.
async fn partner() -> (Server, String) {
    let mut s = Server::start_with(&["--tls", "--trust-domain", PARTNER], &[]).await;
    let bundle = bundle_pem(&s.url).await;
    s.http = https_client(&bundle, None);
    (s, bundle)
}

/// The partner's agent `name`, with an SDK client over HTTPS.
async fn partner_agent(partner: &Server, bundle: &str, name: &str) -> agentauth_sdk::Client {
    let key = partner.register(name, &[]).await;
    agentauth_sdk::Client::with_http(
        &partner.url,
        partner_id(name),
        key,
        https_client(bundle, None),
    )
}

async fn federate(home: &Server, body: Value) -> (StatusCode, Value) {
    home.admin_json(Method::POST, "/v1/federation", Some(body))
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authority_follows_a_foreign_bundle_and_its_agents_accept_named_foreign_peers() {
    let (partner, partner_pem) = partner().await;
    let (home, _dir, endpoint) = authority_with_socket().await;
    home.register_entry("worker", &[], &own_selectors()).await;
    let url = format!("{}/v1/bundle", partner.url);

    // Refusals store nothing: a bad name, the own domain, plain http, and an
    // endpoint whose certificate chains to no root given.
    for (body, status, code) in [
        (
            json!({"trust_domain": "Not A Domain!", "bundle_endpoint_url": url}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"trust_domain": "agentauth.local", "bundle_endpoint_url": url}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"trust_domain": PARTNER, "bundle_endpoint_url": url.replace("https:", "http:")}),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({"trust_domain": PARTNER, "bundle_endpoint_url": url}),
            StatusCode::BAD_GATEWAY,
            "bundle_unavailable",
        ),
    ] {
        let (got, answer) = federate(&home, body.clone()).await;
        assert_eq!(got, status, "{body} → {answer}");
        assert_eq!(answer["error"], code, "{answer}");
        assert!(answer["error_description"].as_str().unwrap().len() > 10);
    }
    let (_, list) = home.admin_json(Method::GET, "/v1/federation", None).await;
    assert_eq!(list["trust_domains"], json!([]), "nothing stored");

    // Federated, with the endpoint's private root.
    let body =
        json!({"trust_domain": PARTNER, "bundle_endpoint_url": url, "endpoint_ca": partner_pem});
    let (status, view) = federate(&home, body.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    assert_eq!(view["trust_domain"], PARTNER);
    assert_eq!(view["profile"], "https_web");
    assert_eq!(view["x509_authorities"], 1);
    assert_eq!(view["jwt_authorities"], 1);
    assert!(view["refresh_at"].as_i64().unwrap() > agentauth_core::unix_now() + 200);
    let (status, again) = federate(&home, body).await;
    assert_eq!(status, StatusCode::CONFLICT, "{again}");

    // The bundle map holds both domains, never merged.
    let (_, map) = home.json_as("", Method::GET, "/v1/bundles", None).await;
    let domains = map["trust_domains"].as_object().unwrap();
    assert_eq!(domains.len(), 2, "{map}");
    let (_, partner_bundle) = partner.json_as("", Method::GET, "/v1/bundle", None).await;
    assert_eq!(domains[PARTNER], partner_bundle);

    // The Workload API hands the partner's bundles out.
    let mut api = agentauth_workload::connect(&endpoint).await.unwrap();
    let x509 = api
        .fetch_x509_bundles(X509BundlesRequest {})
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let partner_cas =
        agentauth_svid::split_certificates(&x509.bundles[&format!("spiffe://{PARTNER}")]).unwrap();
    assert_eq!(
        partner_cas,
        agentauth_svid::certificates_from_pem(&partner_pem).unwrap()
    );
    let svid = api
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert!(
        svid.federated_bundles
            .contains_key(&format!("spiffe://{PARTNER}"))
    );
    let jwt = api
        .fetch_jwt_bundles(JwtBundlesRequest {})
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    assert!(jwt.bundles.contains_key(&format!("spiffe://{PARTNER}")));

    // A partner agent's JWT-SVID validates at home, as the partner's ID.
    let remote = partner_agent(&partner, &partner_pem, "courier").await;
    let token = remote
        .jwt_svid("spiffe://agentauth.local/agent/worker")
        .await
        .unwrap();
    let valid = api
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: "spiffe://agentauth.local/agent/worker".into(),
            svid: token.token,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(valid.spiffe_id, partner_id("courier").to_string());

    // Mutual TLS across the domains: the home agent takes its SVID (and the
    // partner's bundle) from the Workload API; the partner agent its SVID
    // from its authority, and the home bundle from home's bundle map.
    let local = SvidSource::from_workload_api(&endpoint).await.unwrap();
    assert_eq!(local.federated_trust_domains(), vec![PARTNER.to_owned()]);
    let foreign = SvidSource::new(&remote.x509_svid().await.unwrap()).unwrap();
    let home_client = home.client("worker", &agentauth_core::SigningKey::generate_ed25519());
    let home_bundles: BTreeMap<String, Vec<Vec<u8>>> = home_client
        .bundle_map()
        .await
        .unwrap()
        .into_iter()
        .map(|(name, b)| (name, b.x509_authorities))
        .collect();
    assert_eq!(home_bundles.len(), 2);
    foreign.set_federated_bundles(home_bundles);
    let to_home = |allowed| client_config(&foreign, allowed).unwrap();
    let worker = SpiffeId::parse("spiffe://agentauth.local/agent/worker").unwrap();

    let (named, mut seen) =
        mtls_server(&local, AllowedPeers::Only(vec![partner_id("courier")])).await;
    mtls_call(named, to_home(AllowedPeers::Only(vec![worker.clone()])))
        .await
        .expect("a named foreign peer is accepted");
    assert_eq!(
        seen.recv().await.unwrap(),
        partner_id("courier").to_string()
    );
    let (own_only, _) = mtls_server(&local, AllowedPeers::TrustDomain).await;
    assert!(
        mtls_call(own_only, to_home(AllowedPeers::Only(vec![worker.clone()])))
            .await
            .is_err(),
        "the own trust domain alone does not take a foreign peer"
    );
    let (by_domain, _) =
        mtls_server(&local, AllowedPeers::TrustDomains(vec![PARTNER.into()])).await;
    mtls_call(by_domain, to_home(AllowedPeers::Only(vec![worker.clone()])))
        .await
        .expect("a federated trust domain named whole");

    // A partner CA rotation reaches home at the next fetch.
    let (status, _) = partner
        .admin_json(Method::POST, "/v1/ca/rotate", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, view) = home
        .admin_json(
            Method::POST,
            &format!("/v1/federation/{PARTNER}/refresh"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{view}");
    assert_eq!(view["x509_authorities"], 2);
    let changes = home.audit_records("?kind=federation.changed").await;
    assert_eq!(
        changes.len(),
        2,
        "added, then the bundle changed: {changes:?}"
    );

    // Removed: gone from the bundle map and the Workload API at once, so the
    // home agent no longer accepts the partner's agents.
    let (status, _) = home
        .admin_json(Method::DELETE, &format!("/v1/federation/{PARTNER}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (_, map) = home.json_as("", Method::GET, "/v1/bundles", None).await;
    assert_eq!(map["trust_domains"].as_object().unwrap().len(), 1);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !local.federated_trust_domains().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the stream pushed no change"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        mtls_call(named, to_home(AllowedPeers::Only(vec![worker])))
            .await
            .is_err(),
        "a removed trust domain's peers are refused"
    );
    let (status, missing) = home
        .admin_json(Method::DELETE, &format!("/v1/federation/{PARTNER}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");
    home.stop().await;
    partner.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_bundle_is_fetched_again_at_its_refresh_hint() {
    let mut partner = Server::start_with(
        &[
            "--tls",
            "--trust-domain",
            PARTNER,
            "--bundle-refresh-hint-secs",
            "5",
        ],
        &[],
    )
    .await;
    let partner_pem = bundle_pem(&partner.url).await;
    partner.http = https_client(&partner_pem, None);
    let (_, own) = partner.json_as("", Method::GET, "/v1/bundle", None).await;
    assert_eq!(own["spiffe_refresh_hint"], 5);
    let home = Server::start().await;
    let url = format!("{}/v1/bundle", partner.url);
    let (status, view) = federate(
        &home,
        json!({"trust_domain": PARTNER, "bundle_endpoint_url": url, "endpoint_ca": partner_pem}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{view}");
    let fetched_at = view["refresh_at"].as_i64().unwrap();
    assert!(
        fetched_at <= agentauth_core::unix_now() + 5,
        "at the hint: {view}"
    );

    // The partner publishes a new CA; home picks it up by itself.
    let (status, _) = partner
        .admin_json(Method::POST, "/v1/ca/rotate", Some(json!({})))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, list) = home.admin_json(Method::GET, "/v1/federation", None).await;
        if list["trust_domains"][0]["x509_authorities"] == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not fetched again within 20 s: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    let changes = home.audit_records("?kind=federation.changed").await;
    assert!(
        changes.iter().any(|c| c["actor"] == "authority"),
        "the scheduled fetch is audited: {changes:?}"
    );

    // An endpoint gone keeps the bundle held and shows the error.
    partner.stop().await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, list) = home.admin_json(Method::GET, "/v1/federation", None).await;
        let domain = &list["trust_domains"][0];
        if domain["last_error"].is_string() {
            assert_eq!(domain["x509_authorities"], 2, "the last good bundle stays");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no error shown: {list}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    home.stop().await;
}
