//! Prints N ready-to-send `POST /oauth/token` form bodies, one per line, each
//! with its own freshly signed client assertion (distinct `jti`), for load
//! tests of the token endpoint (`bench/issuance.sh`).
//!
//! ```sh
//! cargo run --release -p agentauth-sdk --example mint_assertions -- \
//!     http://127.0.0.1:8080 reader reader.key.json 10000 > bodies.txt
//! ```
//!
//! Arguments: the authority's issuer URL (the assertions' `aud`), the agent's
//! name, its private key file (as `agentauth agent register --key-out` writes
//! it), N, and optionally the target agent's name (default `customer`), the
//! scope (default `read:customer`) and the trust domain (default
//! `agentauth.local`). The assertions are valid for 60 s from now
//! (`ClientAssertionClaims::sign`), so use them right away.
//!
//! With `AGENT` given as `@FILE` and `KEY_FILE` as `-`, the assertions go
//! round-robin over the agents of FILE (`NAME<TAB>PRIVATE_JWK` lines, as the
//! `register_agents` example writes them), so the load comes from many
//! clients.

use std::io::{BufWriter, Write as _};
use std::process::ExitCode;

use agentauth_core::{
    AgentName, CLIENT_ASSERTION_TYPE, ClientAssertionClaims, SigningKey, SpiffeId, TrustDomain,
    random_b64, unix_now,
};

const USAGE: &str =
    "usage: mint_assertions ISSUER_URL AGENT KEY_FILE N [TARGET] [SCOPE] [TRUST_DOMAIN]";

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn run(args: &[String]) -> Result<(), String> {
    let [issuer, agent, key_file, n, rest @ ..] = args else {
        return Err(USAGE.into());
    };
    let n: usize = n
        .parse()
        .map_err(|_| format!("N must be a count\n{USAGE}"))?;
    let target = rest.first().map_or("customer", String::as_str);
    let scope = rest.get(1).map_or("read:customer", String::as_str);
    let domain = rest.get(2).map_or("agentauth.local", String::as_str);

    let domain = TrustDomain::new(domain).map_err(|e| e.to_string())?;
    let id = |name: &str| -> Result<SpiffeId, String> {
        Ok(SpiffeId::agent(
            &domain,
            &AgentName::new(name).map_err(|e| e.to_string())?,
        ))
    };
    let target = id(target)?;
    let key_of = |jwk: &str, whence: &str| -> Result<SigningKey, String> {
        let jwk = serde_json::from_str(jwk).map_err(|e| format!("{whence}: {e}"))?;
        SigningKey::from_private_jwk(&jwk).map_err(|e| format!("{whence}: {e}"))
    };
    let clients: Vec<(SpiffeId, SigningKey)> = match agent.strip_prefix('@') {
        Some(file) if key_file == "-" => {
            let text = std::fs::read_to_string(file).map_err(|e| format!("{file}: {e}"))?;
            text.lines()
                .filter(|l| !l.is_empty())
                .map(|line| {
                    let (name, jwk) = line
                        .split_once('\t')
                        .ok_or_else(|| format!("{file}: a line without NAME<TAB>JWK"))?;
                    Ok((id(name)?, key_of(jwk, file)?))
                })
                .collect::<Result<_, String>>()?
        }
        Some(_) => return Err(format!("with AGENT as @FILE, KEY_FILE must be -\n{USAGE}")),
        None => {
            let text = std::fs::read_to_string(key_file).map_err(|e| format!("{key_file}: {e}"))?;
            vec![(id(agent)?, key_of(&text, key_file)?)]
        }
    };
    if clients.is_empty() {
        return Err("no agents to mint for".into());
    }

    let issuer = issuer.trim_end_matches('/');
    let fixed = format!(
        "grant_type=client_credentials&client_assertion_type={}&resource={}&scope={}",
        form_encode(CLIENT_ASSERTION_TYPE),
        form_encode(target.as_str()),
        form_encode(scope),
    );
    let now = unix_now();
    let mut out = BufWriter::new(std::io::stdout().lock());
    for (client_id, key) in clients.iter().cycle().take(n) {
        let assertion =
            ClientAssertionClaims::sign(key, client_id.as_str(), issuer, random_b64(16), now);
        writeln!(out, "{fixed}&client_assertion={}", form_encode(&assertion))
            .map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
