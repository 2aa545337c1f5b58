//! DPoP proofs: `normalize_htu` on the input's first line and
//! `verify_dpop_proof` on the rest, with that first line as the request URI.
//!
//! Asserts: normalization is idempotent and yields an `http(s)://` URI with
//! no query or fragment; a proof that verifies has a thumbprint matching its
//! key, a 1 to 256 character `jti` and an `iat` in the window, and the same
//! proof fails for another method, a URI that normalizes differently, a later
//! time and a presented access token it does not hash.
#![no_main]

use agentauth_core::{Compact, DpopError, DpopExpectations, normalize_htu, verify_dpop_proof};
use libfuzzer_sys::fuzz_target;

/// The time the seed proofs were made at (`fuzz/seeds`).
const NOW: i64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (htu, proof) = text.split_once('\n').unwrap_or((text, ""));
    if let Some(normal) = normalize_htu(htu) {
        assert_eq!(normalize_htu(&normal).as_deref(), Some(normal.as_str()));
        assert!(normal.starts_with("http://") || normal.starts_with("https://"));
        assert!(!normal.contains(['?', '#']));
    }

    let expect = DpopExpectations {
        htm: "POST",
        htu,
        access_token: None,
        now: NOW,
        max_age_secs: 60,
        leeway_secs: 30,
    };
    let Ok(verified) = verify_dpop_proof(proof, &expect) else {
        return;
    };
    assert_eq!(verified.jkt, verified.key.thumbprint());
    assert!((1..=256).contains(&verified.jti.len()));
    assert!((NOW - 60..=NOW + 30).contains(&verified.iat));
    let header = Compact::parse(proof, |_| true)
        .expect("a verified proof parses")
        .header;
    let typ = header
        .typ
        .expect("a verified proof has a typ")
        .to_ascii_lowercase();
    assert!(typ == "dpop+jwt" || typ == "application/dpop+jwt", "{typ}");

    let refused = |changed: DpopExpectations<'_>, why: DpopError| {
        assert_eq!(verify_dpop_proof(proof, &changed), Err(why));
    };
    refused(
        DpopExpectations {
            htm: "GET",
            ..expect.clone()
        },
        DpopError::MethodMismatch,
    );
    let other = "https://other.example/token";
    if normalize_htu(other) != normalize_htu(htu) {
        refused(
            DpopExpectations {
                htu: other,
                ..expect.clone()
            },
            DpopError::UriMismatch,
        );
    }
    refused(
        DpopExpectations {
            now: verified.iat + 61,
            ..expect.clone()
        },
        DpopError::Stale,
    );
    refused(
        DpopExpectations {
            now: verified.iat - 31,
            ..expect.clone()
        },
        DpopError::FromTheFuture,
    );
    let with_token = DpopExpectations {
        access_token: Some("not-the-token"),
        ..expect.clone()
    };
    assert!(matches!(
        verify_dpop_proof(proof, &with_token),
        Err(DpopError::MissingAth | DpopError::AccessTokenHashMismatch)
    ));
});
