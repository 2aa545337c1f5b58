//! py-spiffe (`spiffe` on PyPI) and `spiffe-tls` against the Workload API
//! of `agentauth serve --workload-socket`, and mutual TLS between a Python
//! workload and a Rust agent whose SVIDs both come from that socket.

use std::sync::Arc;
use std::time::{Duration, Instant};

use agentauth_sdk::mtls::{AllowedPeers, SvidSource};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::ok;
use crate::support::{authority_with_socket, id, own_selectors};
use crate::toolchain::{Lang, run};

/// The selectors of the Python the checks run in, or `None` when skipped.
async fn python_selectors() -> Option<Vec<String>> {
    let me = ok(run(Lang::Python, "python_executable", json!({})).await?);
    Some(vec![
        format!("unix:path:{}", me["path"].as_str().unwrap()),
        format!("unix:uid:{}", me["uid"]),
    ])
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_spiffe_fetches_both_svids_and_bundles_and_validates_the_jwt_svid() {
    let (s, _dir, socket) = authority_with_socket().await;
    let Some(selectors) = python_selectors().await else {
        return;
    };
    s.register_entry("py-worker", &[], &selectors).await;
    let audience = id("db");
    let answer = ok(run(
        Lang::Python,
        "py_spiffe_fetches_svids_and_bundles",
        json!({"socket": socket, "audience": audience}),
    )
    .await
    .unwrap());
    assert_eq!(answer["x509_spiffe_id"], id("py-worker"));
    assert_eq!(strings(&answer["leaf_uri_sans"]), [id("py-worker")]);
    assert_eq!(answer["trust_domain"], "agentauth.local");
    assert_eq!(answer["context_svids"], 1);
    // What py-spiffe parsed, checked again here: the chain validates against the bundle.
    let chain: Vec<Vec<u8>> = strings(&answer["chain_pem"])
        .iter()
        .flat_map(|p| agentauth_svid::certificates_from_pem(p).unwrap())
        .collect();
    let bundle: Vec<Vec<u8>> = strings(&answer["bundle_pem"])
        .iter()
        .flat_map(|p| agentauth_svid::certificates_from_pem(p).unwrap())
        .collect();
    let seen = agentauth_svid::check_svid(
        &chain.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        &bundle.iter().map(Vec::as_slice).collect::<Vec<_>>(),
        "agentauth.local",
        agentauth_core::unix_now(),
    )
    .unwrap();
    assert_eq!(seen.id.to_string(), id("py-worker"));
    assert_eq!(answer["jwt_spiffe_id"], id("py-worker"));
    assert_eq!(
        strings(&answer["jwt_audience"]),
        std::slice::from_ref(&audience)
    );
    assert_eq!(answer["offline_validated"], id("py-worker"));
    assert_eq!(answer["online_validated"], id("py-worker"));
    // The JWT-SVID also validates against the authority's public bundle.
    let (_, published) = s.json_as("", Method::GET, "/v1/bundle", None).await;
    let jwt_key = published["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["use"] == "jwt-svid")
        .unwrap();
    let key = agentauth_core::PublicJwk::from_json(jwt_key).unwrap();
    let claims = agentauth_core::validate_jwt_svid(
        answer["jwt_token"].as_str().unwrap(),
        &[(jwt_key["kid"].as_str().unwrap().to_owned(), key)],
        &audience,
        agentauth_core::unix_now(),
    )
    .unwrap();
    assert_eq!(claims.sub.to_string(), id("py-worker"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn py_spiffe_without_an_entry_gets_permission_denied_and_without_the_header_invalid_argument()
{
    let (s, _dir, socket) = authority_with_socket().await;
    // An entry for another program only.
    s.register_entry("other", &[], &["unix:path:/usr/bin/true".to_owned()])
        .await;
    let Some(answer) = run(
        Lang::Python,
        "py_spiffe_is_refused_without_an_entry_or_the_header",
        json!({"socket": socket}),
    )
    .await
    else {
        return;
    };
    let answer = ok(answer);
    let denied = answer["denied"].as_str().unwrap();
    assert!(denied.contains("PERMISSION_DENIED"), "{denied}");
    assert_eq!(answer["no_header_code"], "INVALID_ARGUMENT", "{answer}");
    assert_eq!(
        answer["no_header_details"],
        "security header missing from request"
    );
    assert_eq!(answer["with_header_code"], "PERMISSION_DENIED", "{answer}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spiffe_tls_and_a_rust_agent_complete_mutual_tls_in_both_directions() {
    let (s, _dir, socket) = authority_with_socket().await;
    let Some(selectors) = python_selectors().await else {
        return;
    };
    s.register_entry("py-worker", &[], &selectors).await;
    s.register_entry("rust-agent", &[], &own_selectors()).await;
    let source = SvidSource::from_workload_api(&socket).await.unwrap();
    let python = agentauth_core::SpiffeId::parse(&id("py-worker")).unwrap();

    // Python dials the Rust agent.
    let (addr, mut peers) =
        crate::support::mtls_server(&source, AllowedPeers::Only(vec![python.clone()])).await;
    let answer = ok(run(
        Lang::Python,
        "spiffe_tls_dials_a_rust_agent",
        json!({"socket": socket, "address": addr.to_string(), "server_id": id("rust-agent")}),
    )
    .await
    .unwrap());
    assert_eq!(answer["echo"], "hello");
    assert_eq!(strings(&answer["server_sans"]), [id("rust-agent")]);
    assert_eq!(answer["wrong_id_refused"], true, "{answer}");
    assert_eq!(peers.recv().await.unwrap(), id("py-worker"));

    // The Rust agent dials Python.
    let port = {
        let probe = std::net::TcpListener::bind(("127.0.0.1", 0)).unwrap();
        probe.local_addr().unwrap().port()
    };
    let serving = tokio::spawn(run(
        Lang::Python,
        "spiffe_tls_serves_a_rust_agent",
        json!({"socket": socket, "port": port, "client_id": id("rust-agent")}),
    ));
    let config =
        agentauth_sdk::mtls::client_config(&source, AllowedPeers::Only(vec![python])).unwrap();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let deadline = Instant::now() + Duration::from_secs(30);
    let tcp = loop {
        match tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
            Ok(tcp) => break tcp,
            Err(e) => {
                assert!(
                    Instant::now() < deadline,
                    "the Python server never listened: {e}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let name = rustls::pki_types::ServerName::try_from("py-worker.invalid").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    tls.write_all(b"hello").await.unwrap();
    let mut back = [0u8; 5];
    tls.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"hello");
    let served = ok(serving.await.unwrap().unwrap());
    assert_eq!(served["received"], "hello");
    assert_eq!(strings(&served["client_sans"]), [id("rust-agent")]);
    s.stop().await;
}
