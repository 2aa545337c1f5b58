//! Proof of possession for one HTTP request, shared by the SDK's layer and
//! the authority's own API: a token with `cnf` must come with an RFC 9421
//! signature by that key (scheme `Bearer`) or an RFC 9449 DPoP proof (scheme
//! `DPoP`); and the nonce cache that refuses a proof seen before.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use aws_lc_rs::digest;

use http::HeaderMap;
use http::request::Parts;

use crate::{
    Cnf, DpopError, DpopExpectations, HttpSigError, Jkt, PublicJwk, ReceivedSignature,
    SignedComponents, content_digest, verify_dpop_proof,
};

/// Clock skew tolerated on signature and proof times.
pub const PROOF_SKEW_SECS: i64 = 30;
/// Nonces remembered at once before each key is held to its fair share.
pub const MAX_NONCES: usize = 1_000_000;
/// Most nonces one key may have in flight.
pub const MAX_NONCES_PER_KEY: usize = 100_000;
/// The default replay window: how long a signature or DPoP proof may live.
pub const DEFAULT_PROOF_WINDOW_SECS: i64 = 60;
/// The longest replay window a verifier may configure.
pub const MAX_PROOF_WINDOW_SECS: i64 = 300;

/// How long one request proof may be used: the longest `expires − created`
/// of a signature, the oldest `created` and the oldest DPoP `iat` (each
/// beyond [`PROOF_SKEW_SECS`]). Between 1 s and [`MAX_PROOF_WINDOW_SECS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProofWindow(i64);

impl ProofWindow {
    /// A window of `secs` seconds, clamped to 1 ..= [`MAX_PROOF_WINDOW_SECS`].
    pub fn new(secs: i64) -> Self {
        Self(secs.clamp(1, MAX_PROOF_WINDOW_SECS))
    }

    /// The window in seconds.
    pub fn secs(self) -> i64 {
        self.0
    }
}

impl Default for ProofWindow {
    fn default() -> Self {
        Self(DEFAULT_PROOF_WINDOW_SECS)
    }
}

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
    /// A certificate-bound token (`cnf.x5t#S256`) came over a connection
    /// without a client certificate.
    #[error("the token is bound to a client certificate; present it over mutual TLS")]
    CertificateRequired,
    /// A certificate-bound token came over a connection with another certificate.
    #[error("the token is bound to another client certificate than this connection's")]
    CertificateMismatch,
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
    /// The signing key has `limit` proofs in flight, its share of the replay
    /// cache: it is refused until some expire, other keys are not.
    #[error(
        "this key has {limit} requests in flight, its share of the replay cache; retry when they expire"
    )]
    NonceCacheFullForKey {
        /// The share this key reached.
        limit: usize,
    },
    /// The replay cache is at its hard bound (fail closed); unreachable unless
    /// more keys than its size are active within one window.
    #[error("too many requests in flight to check for replay")]
    ReplayCacheFull,
}

impl ProofError {
    /// Whether the proof itself was good but could not be used again (or
    /// checked for reuse): the replay check, not the possession check, failed.
    pub fn is_replay(&self) -> bool {
        matches!(
            self,
            Self::Replayed | Self::NonceCacheFullForKey { .. } | Self::ReplayCacheFull
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
/// `cnf`, presented as `token` and good until `token_until` (its `exp` plus
/// leeway), and remembers its nonce in `nonces` for as long as the proof or
/// the token could still be accepted, whichever ends first. A proof may live
/// at most `nonces`' [`ProofWindow`]. A token without `cnf` needs no proof but
/// may not be sent as `DPoP`.
#[allow(clippy::too_many_arguments)]
pub fn verify_request_proof(
    parts: &Parts,
    body: &[u8],
    token: &str,
    cnf: Option<&Cnf>,
    tls_certificate: Option<&[u8]>,
    token_until: i64,
    origin: Option<&str>,
    nonces: &NonceCache,
    now: i64,
) -> Result<(), ProofError> {
    // RFC 8705: the TLS handshake proved the certificate's key; that proof
    // stands for the request, and nothing else does.
    if let Some(bound) = cnf.and_then(|c| c.x5t_s256.as_deref()) {
        let presented = tls_certificate.ok_or(ProofError::CertificateRequired)?;
        let thumbprint = crate::certificate_thumbprint(presented);
        return if aws_lc_rs::constant_time::verify_slices_are_equal(
            thumbprint.as_bytes(),
            bound.as_bytes(),
        )
        .is_ok()
        {
            Ok(())
        } else {
            Err(ProofError::CertificateMismatch)
        };
    }
    let dpop_scheme = header(&parts.headers, "authorization")
        .is_some_and(|v| v.len() > 5 && v[..5].eq_ignore_ascii_case("dpop "));
    let window = nonces.window();
    let (cnf, (seen, proof_until)) = match (cnf, dpop_scheme) {
        (Some(cnf), false) => (cnf, check_signature(parts, body, cnf, origin, window, now)?),
        (Some(cnf), true) => (cnf, check_dpop(parts, token, cnf, origin, window, now)?),
        (None, false) => return Ok(()),
        (None, true) => return Err(ProofError::NotDpopBound),
    };
    nonces.check_and_remember(&cnf.jkt, seen, proof_until.min(token_until), now)
}

/// The RFC 9421 signature by the token's `cnf` key, over method, target URI,
/// Authorization and the body's Content-Digest.
fn check_signature(
    parts: &Parts,
    body: &[u8],
    cnf: &Cnf,
    origin: Option<&str>,
    window: ProofWindow,
    now: i64,
) -> Result<(Seen, i64), ProofError> {
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
    received.verify(
        &components,
        &key,
        &cnf.jkt.0,
        now,
        PROOF_SKEW_SECS,
        window.secs(),
    )?;
    Ok((
        Seen::SignatureNonce(received.params.nonce),
        received.params.expires.saturating_add(PROOF_SKEW_SECS),
    ))
}

/// The RFC 9449 §4.3 checks of a DPoP proof for a DPoP-bound token.
fn check_dpop(
    parts: &Parts,
    token: &str,
    cnf: &Cnf,
    origin: Option<&str>,
    window: ProofWindow,
    now: i64,
) -> Result<(Seen, i64), ProofError> {
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
        max_age_secs: window.secs(),
        leeway_secs: PROOF_SKEW_SECS,
    };
    let verified = verify_dpop_proof(value, &expect)?;
    if verified.jkt != cnf.jkt {
        return Err(ProofError::DpopKeyMismatch);
    }
    Ok((
        Seen::DpopJti(verified.jti),
        verified
            .iat
            .saturating_add(window.secs())
            .saturating_add(PROOF_SKEW_SECS),
    ))
}

/// What one proof uses up: a signature's `nonce` or a DPoP proof's `jti`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// The `nonce` parameter of an RFC 9421 signature.
    SignatureNonce(String),
    /// The `jti` of an RFC 9449 DPoP proof.
    DpopJti(String),
}

/// A fixed-size name for one (key, proof) pair, so that memory per entry does
/// not depend on how long a client makes its nonces.
type Fingerprint = [u8; 32];

fn fingerprint(jkt: &Jkt, seen: &Seen) -> Fingerprint {
    let (kind, text) = match seen {
        Seen::SignatureNonce(n) => (b"sig\0", n),
        Seen::DpopJti(j) => (b"jti\0", j),
    };
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(kind);
    ctx.update(jkt.0.as_bytes());
    ctx.update(b"\0");
    ctx.update(text.as_bytes());
    let mut out = [0; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// Nonces and DPoP `jti`s seen within their proof's lifetime, bounded in
/// count and time.
///
/// Each entry is kept until the proof or its token would be refused anyway
/// (`min(expires, token exp)` plus skew) and entries leave in expiry order:
/// they sit in buckets by expiry second, so an entry with a late expiry never
/// holds back earlier ones. Counts are kept per verified key thumbprint
/// (`jkt`), never per client-chosen text: one key may hold at most
/// [`MAX_NONCES_PER_KEY`] entries and, once the cache holds [`MAX_NONCES`],
/// no more than an equal share of it. A flooding key is refused with
/// [`ProofError::NonceCacheFullForKey`] while others pass, and the cache
/// never holds more than twice [`MAX_NONCES`] entries.
#[derive(Debug, Default)]
pub struct NonceCache {
    window: ProofWindow,
    limits: Limits,
    inner: Mutex<Nonces>,
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    total: usize,
    per_key: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            total: MAX_NONCES,
            per_key: MAX_NONCES_PER_KEY,
        }
    }
}

#[derive(Debug, Default)]
struct Nonces {
    /// Fingerprint → (expiry, key); the key is shared with `per_key`.
    seen: HashMap<Fingerprint, (i64, Arc<str>)>,
    /// Expiry second → fingerprints expiring then.
    by_expiry: BTreeMap<i64, Vec<Fingerprint>>,
    per_key: HashMap<Arc<str>, usize>,
}

impl Nonces {
    /// Drops every entry whose expiry is before `now`, earliest first.
    fn forget_expired(&mut self, now: i64) {
        while let Some(entry) = self.by_expiry.first_entry() {
            if *entry.key() >= now {
                break;
            }
            for fp in entry.remove() {
                if let Some((_, key)) = self.seen.remove(&fp) {
                    self.release(&key);
                }
            }
        }
    }

    fn release(&mut self, key: &str) {
        if let Some(count) = self.per_key.get_mut(key) {
            *count -= 1;
            if *count == 0 {
                self.per_key.remove(key);
            }
        }
    }

    /// The most entries `jkt` may hold now: its own bound, and once the cache
    /// is full an equal share among the keys in it.
    fn share(&self, jkt: &str, limits: Limits) -> usize {
        if self.seen.len() < limits.total {
            return limits.per_key;
        }
        let keys = self.per_key.len() + usize::from(!self.per_key.contains_key(jkt));
        limits.per_key.min(limits.total / keys.max(1))
    }

    fn insert(&mut self, fp: Fingerprint, jkt: &Jkt, until: i64) {
        let key = match self.per_key.get_key_value(jkt.0.as_str()) {
            Some((key, _)) => key.clone(),
            None => Arc::from(jkt.0.as_str()),
        };
        *self.per_key.entry(key.clone()).or_insert(0) += 1;
        self.by_expiry.entry(until).or_default().push(fp);
        self.seen.insert(fp, (until, key));
    }
}

impl NonceCache {
    /// An empty cache whose proofs may live at most `window`.
    pub fn new(window: ProofWindow) -> Self {
        Self {
            window,
            ..Self::default()
        }
    }

    /// An empty cache with smaller bounds than [`MAX_NONCES`] and
    /// [`MAX_NONCES_PER_KEY`], for tests and small deployments.
    pub fn with_limits(window: ProofWindow, total: usize, per_key: usize) -> Self {
        Self {
            window,
            limits: Limits { total, per_key },
            inner: Mutex::default(),
        }
    }

    /// How long a proof checked against this cache may live.
    pub fn window(&self) -> ProofWindow {
        self.window
    }

    /// How many entries the cache holds now.
    pub fn len(&self) -> usize {
        self.lock().seen.len()
    }

    /// Whether the cache holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Nonces> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records that `jkt` used `seen`, until `until`; refuses it if it was
    /// seen before, or if `jkt` has used up its share of the cache.
    pub fn check_and_remember(
        &self,
        jkt: &Jkt,
        seen: Seen,
        until: i64,
        now: i64,
    ) -> Result<(), ProofError> {
        let fp = fingerprint(jkt, &seen);
        let mut n = self.lock();
        n.forget_expired(now);
        if n.seen.contains_key(&fp) {
            return Err(ProofError::Replayed);
        }
        let limit = n.share(&jkt.0, self.limits);
        if n.per_key.get(jkt.0.as_str()).copied().unwrap_or(0) >= limit {
            return Err(ProofError::NonceCacheFullForKey { limit });
        }
        if n.seen.len() >= self.limits.total.saturating_mul(2) {
            return Err(ProofError::ReplayCacheFull);
        }
        n.insert(fp, jkt, until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jkt(name: &str) -> Jkt {
        Jkt(name.into())
    }

    fn nonce(text: &str) -> Seen {
        Seen::SignatureNonce(text.into())
    }

    #[test]
    fn a_nonce_is_accepted_once_until_it_expires() {
        let cache = NonceCache::default();
        let k = jkt("k");
        assert!(cache.check_and_remember(&k, nonce("n"), 100, 50).is_ok());
        assert_eq!(
            cache.check_and_remember(&k, nonce("n"), 100, 60),
            Err(ProofError::Replayed)
        );
        assert!(
            cache
                .check_and_remember(&k, nonce("other"), 100, 60)
                .is_ok()
        );
        assert!(
            cache.check_and_remember(&k, nonce("n"), 200, 101).is_ok(),
            "after expiry the entry is gone"
        );
    }

    #[test]
    fn the_same_text_under_another_key_or_kind_is_another_proof() {
        let cache = NonceCache::default();
        assert!(
            cache
                .check_and_remember(&jkt("a"), nonce("n"), 100, 1)
                .is_ok()
        );
        assert!(
            cache
                .check_and_remember(&jkt("b"), nonce("n"), 100, 1)
                .is_ok()
        );
        assert!(
            cache
                .check_and_remember(&jkt("a"), Seen::DpopJti("n".into()), 100, 1)
                .is_ok()
        );
        // "a:x" + "y" and "a" + "x:y" do not collide.
        assert!(
            cache
                .check_and_remember(&jkt("a:x"), nonce("y"), 100, 1)
                .is_ok()
        );
        assert!(
            cache
                .check_and_remember(&jkt("a"), nonce("x:y"), 100, 1)
                .is_ok()
        );
    }

    #[test]
    fn a_far_future_entry_does_not_pin_the_entries_behind_it() {
        let cache = NonceCache::default();
        cache
            .check_and_remember(&jkt("early"), nonce("far"), i64::MAX, 1)
            .unwrap();
        for i in 0..1_000 {
            cache
                .check_and_remember(&jkt(&format!("k{i}")), nonce("n"), 100, 2)
                .unwrap();
        }
        assert_eq!(cache.len(), 1_001);
        cache
            .check_and_remember(&jkt("late"), nonce("n"), 300, 101)
            .unwrap();
        assert_eq!(
            cache.len(),
            2,
            "expired entries behind the far one are gone"
        );
        assert_eq!(
            cache.check_and_remember(&jkt("early"), nonce("far"), i64::MAX, 102),
            Err(ProofError::Replayed)
        );
    }

    #[test]
    fn one_key_flooding_under_many_nonce_prefixes_locks_out_only_itself() {
        let cache = NonceCache::with_limits(ProofWindow::default(), 1_000, 100);
        let flood = jkt("flood");
        for i in 0..100 {
            cache
                .check_and_remember(&flood, nonce(&format!("prefix{i}:n")), 1_000, 1)
                .unwrap();
        }
        assert_eq!(
            cache.check_and_remember(&flood, nonce("another:prefix:n"), 1_000, 1),
            Err(ProofError::NonceCacheFullForKey { limit: 100 })
        );
        assert!(
            cache
                .check_and_remember(&jkt("other"), nonce("1"), 1_000, 1)
                .is_ok(),
            "other keys still pass"
        );
        // Once the flood's entries expire, the key is admitted again.
        assert!(
            cache
                .check_and_remember(&flood, nonce("y"), 2_000, 1_001)
                .is_ok()
        );
    }

    #[test]
    fn a_full_cache_refuses_only_the_keys_above_their_share() {
        let cache = NonceCache::with_limits(ProofWindow::default(), 100, 100);
        for k in 0..4 {
            for i in 0..25 {
                cache
                    .check_and_remember(&jkt(&format!("big{k}")), nonce(&i.to_string()), 1_000, 1)
                    .unwrap();
            }
        }
        assert_eq!(cache.len(), 100);
        // Full: four keys hold their share of 25 each and may not grow...
        assert_eq!(
            cache.check_and_remember(&jkt("big0"), nonce("more"), 1_000, 1),
            Err(ProofError::NonceCacheFullForKey { limit: 25 })
        );
        // ...while a fifth key gets a share of 100 / 5 = 20.
        for i in 0..20 {
            cache
                .check_and_remember(&jkt("small"), nonce(&i.to_string()), 1_000, 1)
                .unwrap();
        }
        assert_eq!(
            cache.check_and_remember(&jkt("small"), nonce("21"), 1_000, 1),
            Err(ProofError::NonceCacheFullForKey { limit: 20 })
        );
        assert!(cache.len() <= 200, "never beyond twice the bound");
    }

    #[test]
    fn many_keys_never_grow_the_cache_beyond_twice_its_bound() {
        let cache = NonceCache::with_limits(ProofWindow::default(), 100, 10);
        for k in 0..1_000 {
            for i in 0..3 {
                let _ = cache.check_and_remember(
                    &jkt(&format!("k{k}")),
                    nonce(&i.to_string()),
                    1_000,
                    1,
                );
            }
        }
        assert!(cache.len() <= 200, "{}", cache.len());
    }

    #[test]
    fn the_window_is_clamped_to_at_most_five_minutes() {
        assert_eq!(ProofWindow::default().secs(), 60);
        assert_eq!(ProofWindow::new(10_000).secs(), MAX_PROOF_WINDOW_SECS);
        assert_eq!(ProofWindow::new(-5).secs(), 1);
        assert_eq!(ProofWindow::new(120).secs(), 120);
    }
}
