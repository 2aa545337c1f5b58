//! Compact JWS and access-token parsing: `Compact::parse`, `peek_claims` and
//! `parse_access_token` on arbitrary text.
//!
//! Asserts: a token that parses never verifies under keys made in this
//! process (whose private halves signed nothing the fuzzer saw); the access
//! token `typ` rule matches a plain reference; claims that decode survive a
//! serialize/deserialize round trip unchanged.
#![no_main]

use std::sync::LazyLock;

use agentauth_core::{AccessClaims, Compact, JwsAlg, MAX_JWS_LEN, SigningKey, parse_access_token};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// One key of each family, fresh per process: no input can carry their signature.
static UNSEEN_KEYS: LazyLock<[SigningKey; 2]> =
    LazyLock::new(|| [SigningKey::generate_ed25519(), SigningKey::generate_p256()]);

/// RFC 8725 §3.11 for `at+jwt`, written independently of the crate's `typ_is`.
fn is_access_token_typ(typ: Option<&str>) -> bool {
    typ.map(str::to_ascii_lowercase)
        .is_some_and(|t| t == "at+jwt" || t == "application/at+jwt")
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let any_typ = Compact::parse(text, |_| true);
    let access = parse_access_token(text);
    match &any_typ {
        Ok(compact) => {
            assert!(text.len() <= MAX_JWS_LEN);
            assert_eq!(text.split('.').count(), 3);
            assert!(JwsAlg::ALL.contains(&compact.header.alg));
            assert_eq!(
                access.is_ok(),
                is_access_token_typ(compact.header.typ.as_deref()),
                "typ {:?}",
                compact.header.typ
            );
            for key in UNSEEN_KEYS.iter() {
                assert!(compact.verify::<Value>(&key.public_jwk()).is_err());
            }
            claims_round_trip(compact);
        }
        // The access-token profile only narrows the generic parse.
        Err(_) => assert!(access.is_err()),
    }
});

/// Claims that decode as an access token encode and decode to the same value.
fn claims_round_trip(compact: &Compact<'_>) {
    let Ok(mut claims) = compact.peek_claims::<AccessClaims>() else {
        return;
    };
    // `cnf.jwk` is free JSON, whose floats serde_json does not promise to
    // round-trip bit for bit; everything typed must.
    if let Some(cnf) = claims.cnf.as_mut() {
        cnf.jwk = Value::Null;
    }
    let encoded = serde_json::to_string(&claims).expect("claims serialize");
    let decoded: AccessClaims = serde_json::from_str(&encoded).expect("own encoding decodes");
    assert_eq!(decoded, claims);
    assert_eq!(decoded.actors().count(), claims.actors().count());
    let _ = claims.actor_chain_text();
}
