//! Measures how fast the Workload API pushes a CA rotation: this process
//! registers itself as an agent with an entry for its own executable and
//! uid, opens `FetchX509SVID`, then `ROUNDS` times asks the authority for a
//! new CA (`POST /v1/ca/rotate {"now": true}`) and times the next stream
//! message. The reference, from the same rounds, is the rotate call's own
//! HTTP round trip. Prints one JSON line; used by `bench/workload.sh`.
//!
//! Environment: `AGENTAUTH_URL`, `AGENTAUTH_ADMIN_TOKEN`, `SPIFFE_ENDPOINT_SOCKET`,
//! `ROUNDS` (default 30).

use std::os::unix::fs::MetadataExt as _;
use std::time::{Duration, Instant};

use agentauth_workload::proto::X509svidRequest;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("AGENTAUTH_URL")?;
    let admin = std::env::var("AGENTAUTH_ADMIN_TOKEN")?;
    let socket = std::env::var("SPIFFE_ENDPOINT_SOCKET")?;
    let rounds: usize = std::env::var("ROUNDS").map_or(Ok(30), |r| r.parse())?;
    let http = reqwest::Client::new();

    let exe = std::env::current_exe()?.canonicalize()?;
    let uid = std::fs::metadata("/proc/self")?.uid();
    let key = agentauth_core::SigningKey::generate_ed25519();
    let registered = http
        .post(format!("{url}/v1/agents"))
        .bearer_auth(&admin)
        .json(&serde_json::json!({
            "name": "push-probe", "permissions": [],
            "public_jwk": key.public_jwk().to_json(),
            "selectors": [format!("unix:path:{}", exe.display()), format!("unix:uid:{uid}")],
        }))
        .send()
        .await?;
    anyhow::ensure!(
        registered.status().is_success(),
        "registering: {}",
        registered.text().await?
    );

    let mut client = agentauth_workload::connect(&socket).await?;
    let mut stream = client
        .fetch_x509svid(X509svidRequest {})
        .await?
        .into_inner();
    stream
        .message()
        .await?
        .ok_or_else(|| anyhow::anyhow!("no first SVID"))?;

    let (mut pushes, mut round_trips) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let asked = Instant::now();
        let rotate = http
            .post(format!("{url}/v1/ca/rotate"))
            .bearer_auth(&admin)
            .json(&serde_json::json!({"now": true}))
            .send();
        let message = async {
            let pushed = stream.message().await;
            (pushed, asked.elapsed())
        };
        let (answer, (pushed, push)) = tokio::join!(
            async {
                let answer = rotate.await;
                (answer, asked.elapsed())
            },
            message
        );
        let (answer, round_trip) = answer;
        anyhow::ensure!(answer?.status().is_success(), "the rotation was refused");
        pushed?.ok_or_else(|| anyhow::anyhow!("the stream ended"))?;
        pushes.push(push);
        round_trips.push(round_trip);
        // A new CA signs a second after the one before: drain the SVID it
        // brings, so the next round times a bundle change again.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        while let Ok(Ok(Some(_))) =
            tokio::time::timeout(Duration::from_millis(1500), stream.message()).await
        {}
    }
    let median = |v: &mut Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let (push, trip) = (median(&mut pushes), median(&mut round_trips));
    println!(
        "{}",
        serde_json::json!({
            "rounds": rounds,
            "push_median_ms": push.as_secs_f64() * 1e3,
            "push_max_ms": pushes.last().unwrap().as_secs_f64() * 1e3,
            "rotate_round_trip_median_ms": trip.as_secs_f64() * 1e3,
            "ratio": push.as_secs_f64() / trip.as_secs_f64(),
        })
    );
    Ok(())
}
