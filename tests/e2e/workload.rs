//! The SPIFFE Workload API served by `agentauth serve --workload-socket`,
//! with this test process as the workload: attested by its executable and
//! uid, it gets its agent's SVIDs over the socket; a CA rotation is pushed
//! down the open stream; a withdrawn entry ends it with PermissionDenied.

use std::time::{Duration, Instant};

use agentauth_workload::proto::{
    JwtsvidRequest, ValidateJwtsvidRequest, X509svidRequest, X509svidResponse,
};
use agentauth_workload::tonic::Code;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{authority_with_socket, id, own_selectors};

/// The default SVID of a message: its chain and bundle split, and the
/// SPIFFE ID the chain validates to against that bundle.
fn checked(message: &X509svidResponse) -> (Vec<Vec<u8>>, Vec<Vec<u8>>, String) {
    let svid = &message.svids[0];
    let chain = agentauth_svid::split_certificates(&svid.x509_svid).unwrap();
    let bundle = agentauth_svid::split_certificates(&svid.bundle).unwrap();
    let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let roots: Vec<&[u8]> = bundle.iter().map(Vec::as_slice).collect();
    let seen =
        agentauth_svid::check_svid(&refs, &roots, "agentauth.local", agentauth_core::unix_now())
            .unwrap();
    assert!(!svid.x509_svid_key.is_empty());
    (chain, bundle, seen.id.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workload_gets_its_svids_over_the_socket_sees_a_ca_rotation_pushed_and_loses_a_withdrawn_entry()
 {
    let (s, _dir, endpoint) = authority_with_socket().await;
    s.register_entry("worker", &["read:customer"], &own_selectors())
        .await;
    s.register_entry("elsewhere", &[], &["unix:path:/nonexistent/bin".to_owned()])
        .await;
    s.register("customer", &[]).await;

    let mut client = agentauth_workload::connect(&endpoint).await.unwrap();
    let mut stream = client
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner();
    let first = stream.message().await.unwrap().unwrap();
    assert_eq!(
        first.svids.len(),
        1,
        "only the entry this process satisfies"
    );
    assert_eq!(first.svids[0].spiffe_id, id("worker"));
    assert_eq!(first.svids[0].hint, "worker");
    let (chain, bundle, seen) = checked(&first);
    assert_eq!(seen, id("worker"));
    assert_eq!(bundle.len(), 1);
    let lifetime = agentauth_svid::not_after(&chain[0]).unwrap() - agentauth_core::unix_now();
    assert!(
        (3500..=3600).contains(&lifetime),
        "an hour by default: {lifetime}"
    );

    // A CA that signs at once: the stream brings a new SVID from it, with
    // both CAs in the bundle, without being asked.
    let asked = Instant::now();
    let (status, body) = s
        .admin_json(Method::POST, "/v1/ca/rotate", Some(json!({"now": true})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // First the bundle with both CAs, at once; then, once the new CA's
    // first second has come, an SVID it signed.
    let mut pushed = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("pushed within 10 s")
        .unwrap()
        .unwrap();
    eprintln!("rotation pushed after {:?}", asked.elapsed());
    assert_eq!(
        checked(&pushed).1.len(),
        2,
        "the new CA is in the bundle at once"
    );
    while checked(&pushed).0[0] == chain[0] {
        pushed = tokio::time::timeout(Duration::from_secs(10), stream.message())
            .await
            .expect("a new SVID within 10 s")
            .unwrap()
            .unwrap();
    }
    let (new_chain, new_bundle, seen) = checked(&pushed);
    assert_eq!(seen, id("worker"));
    assert_eq!(new_bundle.len(), 2, "the old CA stays in the bundle");
    let only_new: Vec<&[u8]> = vec![new_bundle[1].as_slice()];
    assert!(
        agentauth_svid::check_svid(
            &[new_chain[0].as_slice()],
            &only_new,
            "agentauth.local",
            agentauth_core::unix_now()
        )
        .is_ok(),
        "signed by the new CA"
    );

    // A JWT-SVID for the authority, validated by the API, then used as the
    // agent's client assertion at the token endpoint.
    let jwt = client
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![s.url.clone()],
            spiffe_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwt.svids.len(), 1);
    let token = jwt.svids[0].svid.clone();
    let valid = client
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: s.url.clone(),
            svid: token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(valid.spiffe_id, id("worker"));
    let claims = valid.claims.unwrap();
    assert!(claims.fields.contains_key("exp"));
    let wrong_audience = client
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: id("customer"),
            svid: token.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong_audience.code(), Code::InvalidArgument);
    let customer = id("customer");
    let (status, body) = s
        .form(
            "/oauth/token",
            &[
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    agentauth_authority::JWT_SPIFFE_ASSERTION_TYPE,
                ),
                ("client_assertion", &token),
                ("resource", &customer),
                ("scope", "read:customer"),
            ],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Asking for another agent's JWT-SVID, or with no audience, is refused.
    let other = client
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![s.url.clone()],
            spiffe_id: id("elsewhere"),
        })
        .await
        .unwrap_err();
    assert_eq!(other.code(), Code::PermissionDenied);
    let none = client
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![],
            spiffe_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(none.code(), Code::InvalidArgument);

    // The entry withdrawn: the open stream ends with PermissionDenied, and
    // so does a new call.
    let (status, body) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/worker",
            Some(json!({"selectors": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let ended = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("ended within 10 s")
        .unwrap_err();
    assert_eq!(ended.code(), Code::PermissionDenied, "{ended:?}");
    let again = client.fetch_x509svid(X509svidRequest {}).await.unwrap_err();
    assert_eq!(again.code(), Code::PermissionDenied);

    // Every SVID handed out is in the audit log.
    let (_, audit) = s
        .admin_json(Method::GET, "/v1/audit?kind=svid.issued", None)
        .await;
    let by_socket = audit["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["actor"] == "workload-api")
        .count();
    assert!(by_socket >= 3, "two X.509-SVIDs and a JWT-SVID: {audit}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_serves_mutual_tls_with_the_svid_from_the_socket_and_follows_its_rotation() {
    let (s, _dir, endpoint) = authority_with_socket().await;
    s.register_entry("worker", &[], &own_selectors()).await;
    let source = agentauth_sdk::mtls::SvidSource::from_workload_api(&endpoint)
        .await
        .unwrap();
    let (addr, mut peers) =
        crate::support::mtls_server(&source, agentauth_sdk::mtls::AllowedPeers::TrustDomain).await;
    let mut config = agentauth_sdk::mtls::client_config(
        &source,
        agentauth_sdk::mtls::AllowedPeers::Only(vec![
            agentauth_core::SpiffeId::parse(&id("worker")).unwrap(),
        ]),
    )
    .unwrap();
    // Full handshakes only: a resumed one shows the first certificate again.
    config.resumption = rustls::client::Resumption::disabled();
    let before = crate::support::mtls_call(addr, config.clone())
        .await
        .unwrap();
    assert_eq!(peers.recv().await.unwrap(), id("worker"));

    let (status, body) = s
        .admin_json(Method::POST, "/v1/ca/rotate", Some(json!({"now": true})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    // The source takes the pushed SVID; the next handshake presents it.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = crate::support::mtls_call(addr, config.clone())
            .await
            .unwrap();
        assert_eq!(peers.recv().await.unwrap(), id("worker"));
        if now != before {
            break;
        }
        assert!(Instant::now() < deadline, "the rotated SVID never arrived");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.stop().await;
}

#[tokio::test]
async fn selectors_are_checked_bounded_and_never_set_by_a_spawning_agent() {
    let s = crate::support::Server::start().await;
    let key = agentauth_core::SigningKey::generate_ed25519();
    let register = |name: &str, selectors: Vec<String>| {
        json!({"name": name, "permissions": [], "public_jwk": key.public_jwk().to_json(),
               "selectors": selectors})
    };
    // A form the socket does not attest, or too many: refused, nothing stored.
    for (name, selectors) in [
        ("bad-form", vec!["unix:user:root".to_owned()]),
        ("relative", vec!["unix:path:bin/x".to_owned()]),
        (
            "too-many",
            (0..17).map(|i| format!("unix:gid:{i}")).collect(),
        ),
    ] {
        let (status, body) = s
            .admin_json(Method::POST, "/v1/agents", Some(register(name, selectors)))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"], "invalid_request");
        let (status, _) = s
            .admin_json(Method::GET, &format!("/v1/agents/{name}"), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{name} was stored");
    }
    // Stored sorted, without duplicates and normalised; a bad patch changes nothing.
    let (status, body) = s
        .admin_json(
            Method::POST,
            "/v1/agents",
            Some(register(
                "worker",
                vec![
                    "unix:uid:0".into(),
                    "unix:gid:007".into(),
                    "unix:uid:0".into(),
                ],
            )),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["selectors"], json!(["unix:gid:7", "unix:uid:0"]));
    let (status, _) = s
        .admin_json(
            Method::PATCH,
            "/v1/agents/worker",
            Some(json!({"selectors": ["k8s:ns:default"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (_, body) = s.admin_json(Method::GET, "/v1/agents/worker", None).await;
    assert_eq!(body["selectors"], json!(["unix:gid:7", "unix:uid:0"]));

    // A spawning agent cannot give its child a Workload API entry.
    let parent = s.register("parent", &["agents:spawn"]).await;
    let (status, body) = s
        .token("parent", &parent, crate::support::AUTHORITY, "agents:spawn")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let token = body["access_token"].as_str().unwrap();
    let child = agentauth_core::SigningKey::generate_ed25519();
    let request = s.http.post(format!("{}/v1/agents", s.url)).json(&json!({
        "name": "parent-child", "permissions": ["agents:spawn"], "expires_in": 600,
        "public_jwk": child.public_jwk().to_json(), "selectors": ["unix:uid:0"],
    }));
    let response = crate::support::send_with_token(request, token).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("selectors"),
        "{body}"
    );
    s.stop().await;
}
