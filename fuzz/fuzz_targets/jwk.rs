//! JWK parsing and RFC 7638 thumbprints: `PublicJwk::from_json` on arbitrary JSON.
//!
//! Asserts: a JWK with a private or symmetric member is always refused; an
//! accepted key keeps its `kty`, `crv` and coordinates, re-parses from its
//! own `to_json` to an equal key, and its thumbprint is SHA-256 over the
//! RFC 7638 member string built here by hand.
#![no_main]

use agentauth_core::{PublicJwk, access_token_hash};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// RFC 7518 §6 members that carry private or symmetric key material.
const PRIVATE: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let Ok(key) = PublicJwk::from_json(&value) else {
        return;
    };
    let obj = value.as_object().expect("only objects are keys");
    assert!(PRIVATE.iter().all(|m| !obj.contains_key(*m)));

    let member = |name: &str| obj.get(name).and_then(Value::as_str).expect(name);
    let (kty, crv, x) = (member("kty"), member("crv"), member("x"));
    // RFC 7638 §3.2: the required members, lexicographic, no whitespace.
    let canonical = match (kty, crv) {
        ("OKP", "Ed25519") => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#),
        ("EC", "P-256") => {
            let y = member("y");
            format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#)
        }
        other => panic!("accepted an unsupported key type {other:?}"),
    };
    assert_eq!(key.thumbprint().0, access_token_hash(&canonical));

    let again = PublicJwk::from_json(&key.to_json()).expect("own JWK parses");
    assert_eq!(again, key);
    assert_eq!(again.thumbprint(), key.thumbprint());
    assert!(key.accepts(key.alg()));
});
