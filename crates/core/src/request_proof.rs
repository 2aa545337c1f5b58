//! Proof of possession for one HTTP request, shared by the SDK's layer and
//! the authority's own API: a token with `cnf` must come with an RFC 9421
//! signature by that key (scheme `Bearer`) or an RFC 9449 DPoP proof (scheme
//! `DPoP`); and the nonce cache that refuses a proof seen before.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use http::HeaderMap;
use http::request::Parts;

use crate::{
    Cnf, DEFAULT_DPOP_MAX_AGE_SECS, DpopError, DpopExpectations, HttpSigError, PublicJwk,
    ReceivedSignature, SignedComponents, content_digest, verify_dpop_proof,
};

/// Clock skew tolerated on signature and proof times.
pub const PROOF_SKEW_SECS: i64 = 30;
/// Most nonces remembered at once; beyond that, requests are refused (fail closed).
const MAX_NONCES: usize = 1_000_000;

/// Why a request's proof of possession failed; each variant names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The RFC 9421 signature is missing, malformed or does not verify.
    #[error(transparent)]
    Signature(#[from] HttpSigError),
    /// A signed request carries no `Content-Digest`.
    #[error("the signed request has no Content-Digest")]
    MissingContentDigest,
    /// The body is not the one the `Content-Digest` names.
    #[error("the body does not match its Content-Digest")]
    ContentDigestMismatch,
    /// The token's `cnf.jwk` is not a usable key or not the one `cnf.jkt` names.
    #[error("the token's cnf key is unusable")]
    UnusableCnfKey,
    /// Without a configured origin, the signed URI is rebuilt from `Host`.
    #[error("the request has no Host header to rebuild its signed URI")]
    MissingHost,
    /// A token without `cnf` was sent with the `DPoP` scheme.
    #[error("the token is not DPoP-bound; send it as Bearer")]
    NotDpopBound,
    /// A DPoP-bound token came without a `DPoP` header.
    #[error("a DPoP-bound token needs a DPoP proof header")]
    MissingDpopProof,
    /// More than one `DPoP` header.
    #[error("exactly one DPoP header is allowed")]
    SeveralDpopProofs,
    /// The `DPoP` header is not visible ASCII.
    #[error("the DPoP header is not text")]
    DpopNotText,
    /// The DPoP proof failed one of the RFC 9449 checks.
    #[error(transparent)]
    Dpop(#[from] DpopError),
    /// The DPoP proof is signed by another key than the token's.
    #[error("the DPoP proof is not made with the key bound to the token")]
    DpopKeyMismatch,
    /// The signature's nonce or the proof's `jti` was seen before.
    #[error("the request's proof was already used (replay)")]
    Replayed,
    /// The signer has too many proofs in flight to check them for replay.
    #[error("this key has too many requests in flight to check for replay")]
    TooManyForKey,
    /// The replay cache is full (fail closed).
    #[error("too many requests in flight to check for replay")]
    ReplayCacheFull,
}

impl ProofError {
    /// Whether the proof itself was good but could not be used again (or
    /// checked for reuse): the replay check, not the possession check, failed.
    pub fn is_replay(&self) -> bool {
        matches!(
            self,
            Self::Replayed | Self::TooManyForKey | Self::ReplayCacheFull
        )
    }
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
            let host = header(&parts.headers, "host").ok_or(ProofError::MissingHost)?;
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
        (None, true) => return Err(ProofError::NotDpopBound),
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
        return Err(HttpSigError::Missing.into());
    };
    let received = ReceivedSignature::parse(input, signature)?;
    let claimed_digest =
        header(&parts.headers, "content-digest").ok_or(ProofError::MissingContentDigest)?;
    let digest = content_digest(body);
    if claimed_digest.trim() != digest {
        return Err(ProofError::ContentDigestMismatch);
    }
    let key = PublicJwk::from_json(&cnf.jwk)
        .ok()
        .filter(|k| k.thumbprint() == cnf.jkt)
        .ok_or(ProofError::UnusableCnfKey)?;
    let uri = target_uri(parts, origin)?;
    let components = SignedComponents {
        method: parts.method.as_str(),
        target_uri: &uri,
        authorization: header(&parts.headers, "authorization").unwrap_or(""),
        content_digest: &digest,
    };
    received.verify(&components, &key, &cnf.jkt.0, now, PROOF_SKEW_SECS)?;
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
        (Some(p), None) => p.to_str().map_err(|_| ProofError::DpopNotText)?,
        (None, _) => return Err(ProofError::MissingDpopProof),
        (Some(_), Some(_)) => return Err(ProofError::SeveralDpopProofs),
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
    let verified = verify_dpop_proof(value, &expect)?;
    if verified.jkt != cnf.jkt {
        return Err(ProofError::DpopKeyMismatch);
    }
    Ok((
        format!("dpop:{}:{}", verified.jkt, verified.jti),
        verified.iat + DEFAULT_DPOP_MAX_AGE_SECS + PROOF_SKEW_SECS,
    ))
}

/// Nonces seen within their proof's lifetime, bounded in count and time.
///
/// Entries expire in roughly the order they arrive, so expired ones are
/// dropped from the front of a queue on every insert (no full scans). Each
/// key (the part of the nonce before its last `:`, the signer's thumbprint)
/// may hold at most [`MAX_NONCES_PER_KEY`] entries, so one agent flooding a
/// verifier locks out only itself; beyond the global bound every request is
/// refused (fail closed).
#[derive(Debug, Default)]
pub struct NonceCache {
    inner: Mutex<Nonces>,
}

#[derive(Debug, Default)]
struct Nonces {
    seen: HashMap<String, i64>,
    order: VecDeque<(i64, String)>,
    per_key: HashMap<String, usize>,
}

/// Most nonces one key may have in flight.
pub const MAX_NONCES_PER_KEY: usize = 250_000;

fn key_of(nonce: &str) -> &str {
    nonce.rsplit_once(':').map_or(nonce, |(key, _)| key)
}

impl Nonces {
    fn forget_expired(&mut self, now: i64) {
        while let Some((until, _)) = self.order.front() {
            if *until >= now {
                break;
            }
            let Some((until, nonce)) = self.order.pop_front() else {
                break;
            };
            if self.seen.get(&nonce) == Some(&until) {
                self.seen.remove(&nonce);
                let key = key_of(&nonce).to_owned();
                if let Some(count) = self.per_key.get_mut(&key) {
                    *count -= 1;
                    if *count == 0 {
                        self.per_key.remove(&key);
                    }
                }
            }
        }
    }
}

impl NonceCache {
    /// Records `nonce` until `until`; refuses it if it was seen before.
    pub fn check_and_remember(
        &self,
        nonce: String,
        until: i64,
        now: i64,
    ) -> Result<(), ProofError> {
        let mut n = self
            .inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        n.forget_expired(now);
        if n.seen.get(&nonce).is_some_and(|exp| *exp >= now) {
            return Err(ProofError::Replayed);
        }
        let key = key_of(&nonce).to_owned();
        if n.per_key.get(&key).copied().unwrap_or(0) >= MAX_NONCES_PER_KEY {
            return Err(ProofError::TooManyForKey);
        }
        if n.seen.len() >= MAX_NONCES {
            return Err(ProofError::ReplayCacheFull);
        }
        *n.per_key.entry(key).or_insert(0) += 1;
        n.order.push_back((until, nonce.clone()));
        n.seen.insert(nonce, until);
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
            Err(ProofError::Replayed)
        ));
        assert!(cache.check_and_remember("k:other".into(), 100, 60).is_ok());
        assert!(
            cache.check_and_remember("k:n".into(), 200, 101).is_ok(),
            "after expiry the entry is gone"
        );
    }

    #[test]
    fn one_flooding_key_locks_out_only_itself() {
        let cache = NonceCache::default();
        for i in 0..MAX_NONCES_PER_KEY {
            cache
                .check_and_remember(format!("flood:{i}"), 1_000, 1)
                .unwrap();
        }
        assert!(matches!(
            cache.check_and_remember("flood:x".into(), 1_000, 1),
            Err(ProofError::TooManyForKey)
        ));
        assert!(
            cache.check_and_remember("other:1".into(), 1_000, 1).is_ok(),
            "other keys still pass"
        );
        // Once the flood's entries expire, the key is admitted again without a full scan.
        assert!(
            cache
                .check_and_remember("flood:y".into(), 2_000, 1_001)
                .is_ok()
        );
    }
}
