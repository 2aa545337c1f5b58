//! `agentauth node` as an operator runs it: the real binary, attested once
//! by a join token against an authority serving HTTPS, serves the Workload
//! API on its own socket for the agents assigned to it and no others,
//! starts again from the SVID it kept, and stops getting SVIDs once evicted.

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use agentauth_workload::proto::{JwtsvidRequest, ValidateJwtsvidRequest, X509svidRequest};
use agentauth_workload::tonic::Code;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::{Server, command, id, own_selectors};
use crate::tls::{bundle_pem, https_client};

/// A running `agentauth node`, killed when dropped.
struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `agentauth node` and waits for its socket.
fn start_node(url: &str, bundle: &Path, token: Option<&str>, dir: &Path, socket: &Path) -> Node {
    let _ = std::fs::remove_file(socket);
    let mut cmd = command();
    cmd.args([
        "node",
        "--authority",
        url,
        "--authority-bundle",
        bundle.to_str().unwrap(),
        "--workload-socket",
        socket.to_str().unwrap(),
        "--data-dir",
        dir.to_str().unwrap(),
        "--recheck-secs",
        "1",
    ]);
    if let Some(token) = token {
        cmd.args(["--join-token", token]);
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("agentauth node exited: {status}");
        }
        assert!(
            Instant::now() < deadline,
            "the node never opened its socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Node(child)
}

async fn join_token(s: &Server, name: &str) -> String {
    let (status, body) = s
        .admin_json(
            Method::POST,
            "/v1/nodes/tokens",
            Some(json!({"name": name})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(
        body["spiffe_id"],
        format!("spiffe://agentauth.local/agentauth/node/{name}")
    );
    body["token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_attests_once_serves_only_its_entries_restarts_from_its_svid_and_stops_when_evicted()
{
    let mut s = Server::start_with(&["--tls"], &[]).await;
    let bundle = bundle_pem(&s.url).await;
    s.http = https_client(&bundle, None);
    let dir = tempfile::tempdir().unwrap();
    let bundle_file = dir.path().join("bundle.pem");
    std::fs::write(&bundle_file, &bundle).unwrap();
    let mine = own_selectors();
    let with_node = |node: &str| {
        let mut all = mine.clone();
        all.push(format!("node:{node}"));
        all
    };
    s.register_entry("courier", &[], &with_node("edge-1")).await;
    s.register_entry("elsewhere", &[], &with_node("edge-2"))
        .await;
    s.register_entry("local-only", &[], &mine).await;

    let token = join_token(&s, "edge-1").await;
    let socket = dir.path().join("node.sock");
    let node_dir = dir.path().join("node");
    let node = start_node(&s.url, &bundle_file, Some(&token), &node_dir, &socket);
    let kept = node_dir.join("node-svid.json");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&kept).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the node's key is its own");
    }

    // Only the entry assigned to this node, its chain valid for the bundle.
    let endpoint = format!("unix://{}", socket.display());
    let mut api = agentauth_workload::connect(&endpoint).await.unwrap();
    let first = api
        .fetch_x509svid(X509svidRequest {})
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .unwrap();
    let ids: Vec<&str> = first.svids.iter().map(|s| s.spiffe_id.as_str()).collect();
    assert_eq!(ids, vec![id("courier")]);
    let chain = agentauth_svid::split_certificates(&first.svids[0].x509_svid).unwrap();
    let roots = agentauth_svid::certificates_from_pem(&bundle).unwrap();
    let refs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
    let root_refs: Vec<&[u8]> = roots.iter().map(Vec::as_slice).collect();
    let checked = agentauth_svid::check_svid(
        &refs,
        &root_refs,
        "agentauth.local",
        agentauth_core::unix_now(),
    )
    .unwrap();
    assert_eq!(checked.id.as_str(), id("courier"));

    // JWT-SVIDs come through the node too, and validate.
    let jwt = api
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![id("customer")],
            spiffe_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(jwt.svids.len(), 1);
    let valid = api
        .validate_jwtsvid(ValidateJwtsvidRequest {
            audience: id("customer"),
            svid: jwt.svids[0].svid.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(valid.spiffe_id, id("courier"));

    // The join token was spent; the node calls need the node's certificate.
    let csr = agentauth_svid::NewKey::generate().unwrap().csr_der;
    let csr = agentauth_svid::certificates_pem([csr.as_slice()])
        .replace("CERTIFICATE", "CERTIFICATE REQUEST");
    let (status, body) = s
        .json_as(
            "",
            Method::POST,
            "/v1/nodes/attest",
            Some(json!({"join_token": token, "csr": csr})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    let (status, body) = s.json_as("", Method::GET, "/v1/nodes/entries", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "invalid_client");
    let (_, nodes) = s.admin_json(Method::GET, "/v1/nodes", None).await;
    assert_eq!(nodes["nodes"][0]["name"], "edge-1", "{nodes}");
    assert_eq!(s.audit_records("?kind=node.attested").await.len(), 1);

    // Restarted without a token, it carries on with the SVID it kept.
    drop(api);
    drop(node);
    let node = start_node(&s.url, &bundle_file, None, &node_dir, &socket);
    let mut api = agentauth_workload::connect(&endpoint).await.unwrap();
    let again = api
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![id("customer")],
            spiffe_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(again.svids[0].spiffe_id, id("courier"));

    // Evicted: the authority refuses the node's SVID, so no new SVID comes.
    let (status, _) = s.admin_json(Method::DELETE, "/v1/nodes/edge-1", None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let refused = api
        .fetch_jwtsvid(JwtsvidRequest {
            audience: vec![id("customer")],
            spiffe_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable, "{refused:?}");
    drop(node);
    s.stop().await;
}

#[test]
fn a_node_without_a_kept_svid_or_a_join_token_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let bundle = dir.path().join("bundle.pem");
    std::fs::write(&bundle, "").unwrap();
    let out = crate::support::output_within(
        command().args([
            "node",
            "--authority",
            "https://127.0.0.1:1",
            "--authority-bundle",
            bundle.to_str().unwrap(),
            "--workload-socket",
            dir.path().join("s.sock").to_str().unwrap(),
            "--data-dir",
            dir.path().join("node").to_str().unwrap(),
        ]),
        Duration::from_secs(30),
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--join-token"), "{stderr}");
}
