//! The server's connection bounds, tried with raw sockets: a client that
//! never finishes its headers is disconnected, and connections beyond the
//! cap wait for a free slot instead of being served.

use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::Server;

/// The `host:port` the server listens on.
fn address(s: &Server) -> String {
    s.url.trim_start_matches("http://").to_owned()
}

#[tokio::test]
async fn a_client_that_never_finishes_its_headers_is_disconnected() {
    let s = Server::start_with(&["--header-read-timeout-secs", "1"], &[]).await;
    let mut slow = TcpStream::connect(address(&s)).await.unwrap();
    // Slowloris: a request line and one header, then nothing more.
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // The server ends the connection (possibly after a 408); a server
    // without the timeout leaves it open and the read below times out.
    let read = tokio::time::timeout(Duration::from_secs(20), slow.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the connection is still open after 20 s");
    let text = String::from_utf8_lossy(&answer);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
    // Complete requests are still served.
    let ok = s
        .http
        .get(format!("{}/healthz", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}

#[tokio::test]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let s = Server::start_with(
        &["--max-connections", "1", "--header-read-timeout-secs", "30"],
        &[],
    )
    .await;
    // The one slot is held by a client that has sent nothing yet.
    let holder = TcpStream::connect(address(&s)).await.unwrap();
    let fresh = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let url = format!("{}/healthz", s.url);
    let waiting = fresh.get(&url).send().await;
    assert!(
        waiting.as_ref().is_err_and(reqwest::Error::is_timeout),
        "served beyond the cap: {waiting:?}"
    );
    // Once the slot is free, the next connection is served.
    drop(holder);
    let mut served = None;
    for _ in 0..20 {
        if let Ok(r) = fresh.get(&url).send().await {
            served = Some(r.status());
            break;
        }
    }
    assert_eq!(served, Some(StatusCode::OK));
}
