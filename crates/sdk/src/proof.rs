//! Proof of possession for one request: the RFC 9421 signature by the key in
//! the token's `cnf`, over method, target URI, Authorization and the body's
//! RFC 9530 Content-Digest; and the nonce cache that refuses replays.

use std::collections::HashMap;
use std::sync::Mutex;

use agentauth_core::{
    Cnf, DEFAULT_DPOP_MAX_AGE_SECS, DpopExpectations, HttpSigError, PublicJwk, ReceivedSignature,
    SignedComponents, content_digest, verify_dpop_proof,
};
use http::HeaderMap;
use http::request::Parts;

use crate::{Check, Denial};

/// Clock skew tolerated on `created` and `expires`.
pub(crate) const SIGNATURE_SKEW_SECS: i64 = 30;
/// Most nonces remembered at once; beyond that, requests are refused (fail closed).
const MAX_NONCES: usize = 200_000;

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn proof_denial(e: &HttpSigError) -> Denial {
    Denial::new(Check::Proof, e.to_string())
}

/// The target URI the client signed: `origin` (or `http://<Host>`) plus path and query.
pub(crate) fn target_uri(parts: &Parts, origin: Option<&str>) -> Result<String, Denial> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    match origin {
        Some(origin) => Ok(format!("{}{path}", origin.trim_end_matches('/'))),
        None => {
            let host = header(&parts.headers, "host").ok_or_else(|| {
                Denial::new(
                    Check::Proof,
                    "the request has no Host header to rebuild its signed URI",
                )
            })?;
            Ok(format!("http://{host}{path}"))
        }
    }
}

/// Verifies the request signature against the token's `cnf` key; returns the
/// signature's nonce and expiry for the replay check.
pub(crate) fn check_signature(
    parts: &Parts,
    body: &[u8],
    cnf: &Cnf,
    origin: Option<&str>,
    now: i64,
) -> Result<(String, i64), Denial> {
    let (Some(input), Some(signature)) = (
        header(&parts.headers, "signature-input"),
        header(&parts.headers, "signature"),
    ) else {
        return Err(proof_denial(&HttpSigError::Missing));
    };
    let received = ReceivedSignature::parse(input, signature).map_err(|e| proof_denial(&e))?;
    let claimed_digest = header(&parts.headers, "content-digest")
        .ok_or_else(|| Denial::new(Check::Proof, "the signed request has no Content-Digest"))?;
    let digest = content_digest(body);
    if claimed_digest.trim() != digest {
        return Err(Denial::new(
            Check::Proof,
            "the body does not match its Content-Digest",
        ));
    }
    let key = PublicJwk::from_json(&cnf.jwk)
        .ok()
        .filter(|k| k.thumbprint() == cnf.jkt)
        .ok_or_else(|| Denial::new(Check::Proof, "the token's cnf key is unusable"))?;
    let uri = target_uri(parts, origin)?;
    let components = SignedComponents {
        method: parts.method.as_str(),
        target_uri: &uri,
        authorization: header(&parts.headers, "authorization").unwrap_or(""),
        content_digest: &digest,
    };
    received
        .verify(&components, &key, &cnf.jkt.0, now, SIGNATURE_SKEW_SECS)
        .map_err(|e| proof_denial(&e))?;
    Ok((
        format!("{}:{}", cnf.jkt, received.params.nonce),
        received.params.expires + SIGNATURE_SKEW_SECS,
    ))
}

/// Verifies a DPoP proof (RFC 9449 §4.3) for a DPoP-bound token; returns the
/// replay key (`jti` per key) and how long to remember it.
pub(crate) fn check_dpop(
    parts: &Parts,
    token: &str,
    cnf: &Cnf,
    origin: Option<&str>,
    now: i64,
) -> Result<(String, i64), Denial> {
    let mut proofs = parts.headers.get_all("dpop").iter();
    let proof = match (proofs.next(), proofs.next()) {
        (Some(p), None) => p
            .to_str()
            .map_err(|_| Denial::new(Check::Proof, "the DPoP header is not text"))?,
        (None, _) => {
            return Err(Denial::new(
                Check::Proof,
                "a DPoP-bound token needs a DPoP proof header",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(Denial::new(
                Check::Proof,
                "exactly one DPoP header is allowed",
            ));
        }
    };
    let uri = target_uri(parts, origin)?;
    let expect = DpopExpectations {
        htm: parts.method.as_str(),
        htu: &uri,
        access_token: Some(token),
        now,
        max_age_secs: DEFAULT_DPOP_MAX_AGE_SECS,
        leeway_secs: SIGNATURE_SKEW_SECS,
    };
    let verified =
        verify_dpop_proof(proof, &expect).map_err(|e| Denial::new(Check::Proof, e.to_string()))?;
    if verified.jkt != cnf.jkt {
        return Err(Denial::new(
            Check::Proof,
            "the DPoP proof is not made with the key bound to the token",
        ));
    }
    Ok((
        format!("dpop:{}:{}", verified.jkt, verified.jti),
        verified.iat + DEFAULT_DPOP_MAX_AGE_SECS + SIGNATURE_SKEW_SECS,
    ))
}

/// Nonces seen within their signature's lifetime, bounded in count and time.
#[derive(Debug, Default)]
pub(crate) struct NonceCache {
    seen: Mutex<HashMap<String, i64>>,
}

impl NonceCache {
    /// Records `nonce` until `until`; refuses it if it was seen before.
    pub(crate) fn check_and_remember(
        &self,
        nonce: String,
        until: i64,
        now: i64,
    ) -> Result<(), Denial> {
        let mut seen = self.seen.lock().expect("lock");
        if seen.get(&nonce).is_some_and(|exp| *exp >= now) {
            return Err(Denial::new(
                Check::Replay,
                "the request signature's nonce was already used",
            ));
        }
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, exp| *exp >= now);
            if seen.len() >= MAX_NONCES {
                return Err(Denial::new(
                    Check::Replay,
                    "too many requests in flight to check for replay",
                ));
            }
        }
        seen.insert(nonce, until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_until_it_expires() {
        let cache = NonceCache::default();
        assert!(cache.check_and_remember("k:n".into(), 100, 50).is_ok());
        assert_eq!(
            cache
                .check_and_remember("k:n".into(), 100, 60)
                .unwrap_err()
                .check,
            Check::Replay
        );
        assert!(cache.check_and_remember("k:other".into(), 100, 60).is_ok());
        assert!(
            cache.check_and_remember("k:n".into(), 200, 101).is_ok(),
            "after expiry the entry is gone"
        );
    }
}
