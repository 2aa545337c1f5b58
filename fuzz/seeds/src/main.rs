//! Writes the seed corpora under `fuzz/corpus/<target>/`: tokens, proofs,
//! keys and signatures made by agentauth-core itself, and hand-written forms,
//! identities and policy contexts. Run from `fuzz/`: `cargo run --manifest-path seeds/Cargo.toml`.

use std::fs;
use std::path::Path;

use agentauth_core::{
    AccessClaims, Actor, Cnf, Header, Scope, SignatureParams, SignedComponents, SigningKey,
    SpiffeId, TaskId, create_dpop_proof, sign_compact, sign_request,
};
use serde_json::json;

/// The time the DPoP seeds are made at; the `dpop` target verifies at it.
const NOW: i64 = 1_700_000_000;
const HTU: &str = "https://as.example/token";

fn write(target: &str, name: &str, content: impl AsRef<[u8]>) {
    let dir = Path::new("corpus").join(target);
    fs::create_dir_all(&dir).expect("corpus directory");
    fs::write(dir.join(format!("seed-{name}")), content).expect("seed written");
}

fn id(text: &str) -> SpiffeId {
    SpiffeId::parse(text).expect("seed SPIFFE ID")
}

fn access_claims(presenter: &SigningKey) -> AccessClaims {
    AccessClaims {
        iss: "https://authority.example".into(),
        sub: id("spiffe://agentauth.local/agent/planner"),
        aud: id("spiffe://agentauth.local/agent/billing"),
        client_id: id("spiffe://agentauth.local/agent/worker"),
        scope: Scope::parse("read:customer write:orders").expect("seed scope"),
        exp: NOW + 300,
        iat: NOW,
        nbf: NOW,
        jti: "jti-1".into(),
        cnf: Some(Cnf::for_key(&presenter.public_jwk())),
        act: Some(Actor {
            sub: id("spiffe://agentauth.local/agent/worker"),
            act: Some(Box::new(Actor {
                sub: id("spiffe://agentauth.local/agent/planner"),
                act: None,
            })),
        }),
        txn: Some(TaskId::new("task-1").expect("seed task")),
        purpose: Some("reconcile invoices".into()),
        rctx: None,
    }
}

fn jws(keys: &[SigningKey]) {
    for (i, key) in keys.iter().enumerate() {
        let header = |typ: &str| Header {
            alg: key.alg(),
            typ: Some(typ.into()),
            kid: Some(format!("key-{i}")),
            jwk: None,
        };
        let claims = access_claims(&keys[1 - i]);
        write(
            "jws",
            &format!("access-{i}"),
            sign_compact(&header("at+jwt"), &claims, key),
        );
        write(
            "jws",
            &format!("access-application-{i}"),
            sign_compact(&header("application/AT+JWT"), &claims, key),
        );
        let assertion =
            json!({"iss": "spiffe://agentauth.local/agent/worker", "aud": "x", "exp": NOW});
        write(
            "jws",
            &format!("assertion-{i}"),
            sign_compact(&header("JWT"), &assertion, key),
        );
        write(
            "jws",
            &format!("dpop-{i}"),
            create_dpop_proof(key, "POST", HTU, None, NOW),
        );
    }
}

fn jwk(keys: &[SigningKey]) {
    for (i, key) in keys.iter().enumerate() {
        let public = key.public_jwk().to_json();
        write("jwk", &format!("public-{i}"), public.to_string());
        let mut with_alg = public.clone();
        with_alg["alg"] = key.alg().as_str().into();
        with_alg["kid"] = "k".into();
        write("jwk", &format!("public-alg-{i}"), with_alg.to_string());
        write(
            "jwk",
            &format!("private-{i}"),
            key.to_private_jwk().to_string(),
        );
    }
    write("jwk", "rsa", r#"{"kty":"RSA","n":"AQAB","e":"AQAB"}"#);
}

fn spiffe_id() {
    let ids = [
        "spiffe://agentauth.local/agent/billing",
        "spiffe://agentauth.local/authority",
        "spiffe://agentauth.local",
        "spiffe://example.org/ns/prod/sa/a_b.c-D",
        "spiffe://agentauth.local/agent/",
        "spiffe://agentauth.local/./x",
        "billing",
        "agentauth.local",
    ];
    for (i, text) in ids.iter().enumerate() {
        write("spiffe_id", &i.to_string(), text);
    }
}

fn httpsig(keys: &[SigningKey]) {
    let parts = SignedComponents {
        method: "POST",
        target_uri: "https://api.example/orders/42",
        authorization: "Bearer abc.def.ghi",
        content_digest: "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:",
    };
    for (i, key) in keys.iter().enumerate() {
        let params = SignatureParams {
            created: NOW,
            expires: NOW + 60,
            nonce: "n-1".into(),
            keyid: key.public_jwk().thumbprint().0,
            alg: key.alg(),
        };
        let h = sign_request(&parts, &params, key).expect("seed signature");
        write(
            "httpsig",
            &format!("signed-{i}"),
            format!("{}\n{}", h.signature_input, h.signature),
        );
        // Another label, reordered parameters and a second, untagged signature.
        let input = h
            .signature_input
            .replacen("agentauth=", "sig1=", 1)
            .replace(";tag=\"agentauth\"", "")
            .replacen(";created", ";tag=\"agentauth\";created", 1);
        let signature = h.signature.replacen("agentauth=", "sig1=", 1);
        write(
            "httpsig",
            &format!("relabelled-{i}"),
            format!("other=(\"@method\");created=1;tag=\"x\", {input}\n{signature}, other=:AAAA:"),
        );
    }
}

fn dpop(keys: &[SigningKey]) {
    for (i, key) in keys.iter().enumerate() {
        let proof = create_dpop_proof(key, "POST", HTU, None, NOW);
        write("dpop", &format!("proof-{i}"), format!("{HTU}\n{proof}"));
        write(
            "dpop",
            &format!("proof-unnormalized-{i}"),
            format!("HTTPS://AS.example:443/a/../%74oken?x=1#f\n{proof}"),
        );
        let with_ath = create_dpop_proof(key, "POST", HTU, Some("access-token"), NOW - 30);
        write(
            "dpop",
            &format!("proof-ath-{i}"),
            format!("{HTU}\n{with_ath}"),
        );
    }
    write("dpop", "ipv6", "http://[::1]:8080/a/./b/../c\n");
}

fn form() {
    let forms = [
        "grant_type=client_credentials&scope=read%3Acustomer+write%3Aorders&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion=a.b.c",
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=x&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token&resource=spiffe%3A%2F%2Fa%2Fagent%2Fb",
        "scope=a&grant_type=x&scope=b",
        "scope=a&%73cope=b",
        "a&&b=&=c&%zz=%4",
    ];
    for (i, text) in forms.iter().enumerate() {
        write("form", &i.to_string(), text);
    }
}

fn policy_context() {
    let context = |environment: &str, ip: &str| {
        json!({
            "purpose": "pay", "sensitivity": "secret", "delegation_depth": 1,
            "chain": ["planner", "rogue"], "txn": "", "environment": environment,
            "time": {"hour": 9, "weekday": 2}, "client_ip": ip,
        })
    };
    let inputs = [
        json!({"principal": "planner", "target": "billing", "action": "payments:create",
               "context": context("prod", "192.0.2.1")}),
        json!({"principal": "vault", "target": "open", "action": "read",
               "context": context("dev", "::ffff:10.1.2.3")}),
        json!({"principal": "mallory", "target": "billing", "action": "write:orders",
               "context": {"time": {"hour": 23, "weekday": 7}, "environment": "prod"}}),
        json!({"principal": "a", "target": "b", "action": "c:d",
               "context": {"time": {"hour": 0, "weekday": 1}, "client_ip": "2001:db8::1"}}),
    ];
    for (i, input) in inputs.iter().enumerate() {
        write("policy_context", &i.to_string(), input.to_string());
    }
}

fn main() {
    let keys = [SigningKey::generate_ed25519(), SigningKey::generate_p256()];
    jws(&keys);
    jwk(&keys);
    spiffe_id();
    httpsig(&keys);
    dpop(&keys);
    form();
    policy_context();
}
