//! Proof of possession for one HTTP request, shared by the SDK's layer and
//! the authority's own API: a token with `cnf` must come with an RFC 9421
//! signature by that key (scheme `Bearer`) or an RFC 9449 DPoP proof (scheme
//! `DPoP`); and the nonce cache that refuses a proof seen before.

use std::collections::HashMap;
use std::sync::Mutex;

use http::HeaderMap;
use http::request::Parts;

use crate::{
    Cnf, DEFAULT_DPOP_MAX_AGE_SECS, DpopExpectations, PublicJwk, ReceivedSignature,
    SignedComponents, content_digest, verify_dpop_proof,
};

/// Clock skew tolerated on signature and proof times.
pub const PROOF_SKEW_SECS: i64 = 30;
/// Most nonces remembered at once; beyond that, requests are refused (fail closed).
const MAX_NONCES: usize = 200_000;

/// Why a request's proof of possession failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// Missing, malformed, wrong key, changed request, bad time.
    Proof(String),
    /// The signature's nonce or the proof's `jti` was seen before.
    Replay(String),
}

fn proof(msg: impl Into<String>) -> ProofError {
    ProofError::Proof(msg.into())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The URI the client addressed: `origin` (or `http://<Host>`) plus path and query.
pub fn target_uri(parts: &Parts, origin: Option<&str>) -> Result<String, ProofError> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    match origin {
        Some(origin) => Ok(format!("{}{path}", origin.trim_end_matches('/'))),
        None => {
            let host = header(&parts.headers, "host")
                .ok_or_else(|| proof("the request has no Host header to rebuild its signed URI"))?;
            Ok(format!("http://{host}{path}"))
        }
    }
}

/// Checks the request's proof of possession for a token whose claims carry
/// `cnf`, presented as `token`, and remembers its nonce in `nonces`.
/// A token without `cnf` needs no proof but may not be sent as `DPoP`.
pub fn verify_request_proof(
    parts: &Parts,
    body: &[u8],
    token: &str,
    cnf: Option<&Cnf>,
    origin: Option<&str>,
    nonces: &NonceCache,
    now: i64,
) -> Result<(), ProofError> {
    let dpop_scheme = header(&parts.headers, "authorization")
        .is_some_and(|v| v.len() > 5 && v[..5].eq_ignore_ascii_case("dpop "));
    let (nonce, until) = match (cnf, dpop_scheme) {
        (Some(cnf), false) => check_signature(parts, body, cnf, origin, now)?,
        (Some(cnf), true) => check_dpop(parts, token, cnf, origin, now)?,
        (None, false) => return Ok(()),
        (None, true) => return Err(proof("the token is not DPoP-bound; send it as Bearer")),
    };
    nonces.check_and_remember(nonce, until, now)
}

/// The RFC 9421 signature by the token's `cnf` key, over method, target URI,
/// Authorization and the body's Content-Digest.
fn check_signature(
    parts: &Parts,
    body: &[u8],
    cnf: &Cnf,
    origin: Option<&str>,
    now: i64,
) -> Result<(String, i64), ProofError> {
    let (Some(input), Some(signature)) = (
        header(&parts.headers, "signature-input"),
        header(&parts.headers, "signature"),
    ) else {
        return Err(proof(crate::HttpSigError::Missing.to_string()));
    };
    let received = ReceivedSignature::parse(input, signature).map_err(|e| proof(e.to_string()))?;
    let claimed_digest = header(&parts.headers, "content-digest")
        .ok_or_else(|| proof("the signed request has no Content-Digest"))?;
    let digest = content_digest(body);
    if claimed_digest.trim() != digest {
        return Err(proof("the body does not match its Content-Digest"));
    }
    let key = PublicJwk::from_json(&cnf.jwk)
        .ok()
        .filter(|k| k.thumbprint() == cnf.jkt)
        .ok_or_else(|| proof("the token's cnf key is unusable"))?;
    let uri = target_uri(parts, origin)?;
    let components = SignedComponents {
        method: parts.method.as_str(),
        target_uri: &uri,
        authorization: header(&parts.headers, "authorization").unwrap_or(""),
        content_digest: &digest,
    };
    received
        .verify(&components, &key, &cnf.jkt.0, now, PROOF_SKEW_SECS)
        .map_err(|e| proof(e.to_string()))?;
    Ok((
        format!("{}:{}", cnf.jkt, received.params.nonce),
        received.params.expires + PROOF_SKEW_SECS,
    ))
}

/// The RFC 9449 §4.3 checks of a DPoP proof for a DPoP-bound token.
fn check_dpop(
    parts: &Parts,
    token: &str,
    cnf: &Cnf,
    origin: Option<&str>,
    now: i64,
) -> Result<(String, i64), ProofError> {
    let mut proofs = parts.headers.get_all("dpop").iter();
    let value = match (proofs.next(), proofs.next()) {
        (Some(p), None) => p
            .to_str()
            .map_err(|_| proof("the DPoP header is not text"))?,
        (None, _) => return Err(proof("a DPoP-bound token needs a DPoP proof header")),
        (Some(_), Some(_)) => return Err(proof("exactly one DPoP header is allowed")),
    };
    let uri = target_uri(parts, origin)?;
    let expect = DpopExpectations {
        htm: parts.method.as_str(),
        htu: &uri,
        access_token: Some(token),
        now,
        max_age_secs: DEFAULT_DPOP_MAX_AGE_SECS,
        leeway_secs: PROOF_SKEW_SECS,
    };
    let verified = verify_dpop_proof(value, &expect).map_err(|e| proof(e.to_string()))?;
    if verified.jkt != cnf.jkt {
        return Err(proof(
            "the DPoP proof is not made with the key bound to the token",
        ));
    }
    Ok((
        format!("dpop:{}:{}", verified.jkt, verified.jti),
        verified.iat + DEFAULT_DPOP_MAX_AGE_SECS + PROOF_SKEW_SECS,
    ))
}

/// Nonces seen within their proof's lifetime, bounded in count and time.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<String, i64>>,
}

impl NonceCache {
    /// Records `nonce` until `until`; refuses it if it was seen before.
    pub fn check_and_remember(
        &self,
        nonce: String,
        until: i64,
        now: i64,
    ) -> Result<(), ProofError> {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if seen.get(&nonce).is_some_and(|exp| *exp >= now) {
            return Err(ProofError::Replay(
                "the request's proof was already used (replay)".into(),
            ));
        }
        if seen.len() >= MAX_NONCES {
            seen.retain(|_, exp| *exp >= now);
            if seen.len() >= MAX_NONCES {
                return Err(ProofError::Replay(
                    "too many requests in flight to check for replay".into(),
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
        assert!(matches!(
            cache.check_and_remember("k:n".into(), 100, 60),
            Err(ProofError::Replay(_))
        ));
        assert!(cache.check_and_remember("k:other".into(), 100, 60).is_ok());
        assert!(
            cache.check_and_remember("k:n".into(), 200, 101).is_ok(),
            "after expiry the entry is gone"
        );
    }
}
