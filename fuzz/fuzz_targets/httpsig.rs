//! The RFC 9421 header parser: `ReceivedSignature::parse` on an arbitrary
//! `Signature-Input` (the input up to its first newline) and `Signature`
//! (the rest).
//!
//! Asserts: a parsed signature never verifies under keys made in this
//! process; its nonce is 1 to 128 characters; and its parameters, signed
//! again by `sign_request`, parse back equal and verify.
#![no_main]

use std::sync::LazyLock;

use agentauth_core::{
    ReceivedSignature, SIGNATURE_LABEL, SignatureParams, SignedComponents, SigningKey, sign_request,
};
use libfuzzer_sys::fuzz_target;

/// One key of each family, fresh per process: no input can carry their signature.
static KEYS: LazyLock<[SigningKey; 2]> =
    LazyLock::new(|| [SigningKey::generate_ed25519(), SigningKey::generate_p256()]);

const PARTS: SignedComponents<'static> = SignedComponents {
    method: "POST",
    target_uri: "https://api.example/orders/42",
    authorization: "Bearer abc.def.ghi",
    content_digest: "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:",
};

/// Verifies at the signature's own creation time with an unbounded window,
/// so only the key, the key ID and the signature decide.
fn verify(sig: &ReceivedSignature, key: &SigningKey) -> bool {
    let p = &sig.params;
    sig.verify(&PARTS, &key.public_jwk(), &p.keyid, p.created, 0, i64::MAX)
        .is_ok()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (input, signature) = text.split_once('\n').unwrap_or((text, ""));
    let Ok(received) = ReceivedSignature::parse(input, signature) else {
        return;
    };
    assert!((1..=128).contains(&received.params.nonce.len()));
    assert!(input.contains(&received.label));
    for key in KEYS.iter() {
        assert!(!verify(&received, key));
    }
    for key in KEYS.iter() {
        let params = SignatureParams {
            alg: key.alg(),
            ..received.params.clone()
        };
        let headers = sign_request(&PARTS, &params, key).expect("parsed parameters sign");
        let again = ReceivedSignature::parse(&headers.signature_input, &headers.signature)
            .expect("own headers parse");
        assert_eq!(again.params, params);
        assert_eq!(again.label, SIGNATURE_LABEL);
        assert_eq!(verify(&again, key), params.expires >= params.created);
    }
});
