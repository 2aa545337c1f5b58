//! DPoP proofs (RFC 9449): creating them on the client and checking them at
//! the authority or a resource server (§4.3). Replay detection (remembering
//! `jti` values) is the caller's job; it gets `jti` and `iat` back for that.

use aws_lc_rs::digest;
use serde::{Deserialize, Serialize};
use thiserror::Error as ThisError;

use crate::jws::typ_is;
use crate::{
    Compact, Header, Jkt, JwkError, JwsError, PublicJwk, SigningKey, b64url_encode, random_b64,
    sign_compact,
};

/// The `typ` header of a DPoP proof JWT (RFC 9449 §4.2).
pub const DPOP_TYP: &str = "dpop+jwt";
/// How old (by `iat`) a proof may be by default before it counts as stale.
pub const DEFAULT_DPOP_MAX_AGE_SECS: i64 = 60;
/// Longest accepted `jti`.
const MAX_JTI_LEN: usize = 256;

/// Why a DPoP proof was refused; each variant names the failed check.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DpopError {
    /// Structure, `typ`, `alg`, length or signature failed.
    #[error("the DPoP proof is not an acceptable JWS: {0}")]
    Jws(#[from] JwsError),
    /// The protected header has no `jwk`.
    #[error("the DPoP proof's header carries no jwk")]
    MissingJwk,
    /// The header `jwk` is private, of an unsupported type or not a valid key.
    #[error("the DPoP proof's jwk is unacceptable: {0}")]
    BadJwk(JwkError),
    /// A required claim (`jti`, `htm`, `htu` or `iat`) is absent.
    #[error("the DPoP proof lacks the \"{0}\" claim")]
    MissingClaim(&'static str),
    /// `jti` is empty or longer than 256 characters.
    #[error("the DPoP proof needs a jti of 1 to 256 characters")]
    BadJti,
    /// `htm` is not the request's method.
    #[error("the DPoP proof's htm does not match the request method")]
    MethodMismatch,
    /// `htu` is not the request's URI (after normalization, ignoring query and fragment).
    #[error("the DPoP proof's htu does not match the request URI")]
    UriMismatch,
    /// `iat` is further in the past than the allowed age.
    #[error("the DPoP proof was issued too long ago")]
    Stale,
    /// `iat` is in the future beyond the leeway.
    #[error("the DPoP proof's iat is in the future")]
    FromTheFuture,
    /// An access token was presented but the proof has no `ath`.
    #[error("the DPoP proof has no ath claim although an access token was presented")]
    MissingAth,
    /// `ath` is not the hash of the presented access token.
    #[error("the DPoP proof's ath does not match the presented access token")]
    AccessTokenHashMismatch,
}

/// What the verifier knows about the request the proof came with.
#[derive(Debug, Clone)]
pub struct DpopExpectations<'a> {
    /// The request's HTTP method, compared case-sensitively (`GET`, `POST`, …).
    pub htm: &'a str,
    /// The request's absolute URI; query and fragment are ignored.
    pub htu: &'a str,
    /// The access token presented with the request (resource servers), if any.
    pub access_token: Option<&'a str>,
    /// Current time, seconds since the epoch.
    pub now: i64,
    /// How far `iat` may lie in the past ([`DEFAULT_DPOP_MAX_AGE_SECS`]).
    pub max_age_secs: i64,
    /// How far `iat` may lie in the future ([`crate::DEFAULT_LEEWAY_SECS`]).
    pub leeway_secs: i64,
}

/// A proof that passed every check. Compare `jkt` with the token's `cnf.jkt`
/// and remember `jti` (until `iat` + max age) to refuse replays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedProof {
    /// The RFC 7638 thumbprint of the proof key.
    pub jkt: Jkt,
    /// The proof's unique ID.
    pub jti: String,
    /// When the proof was made.
    pub iat: i64,
    /// The server-supplied nonce the proof echoes, if any (not checked here).
    pub nonce: Option<String>,
    /// The proof key.
    pub key: PublicJwk,
}

#[derive(Serialize)]
struct ProofClaims<'a> {
    jti: String,
    htm: &'a str,
    htu: &'a str,
    iat: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    ath: Option<String>,
}

#[derive(Deserialize)]
struct RawProofClaims {
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    htm: Option<String>,
    #[serde(default)]
    htu: Option<String>,
    #[serde(default)]
    iat: Option<i64>,
    #[serde(default)]
    ath: Option<String>,
    #[serde(default)]
    nonce: Option<String>,
}

/// The `ath` claim for `token`: base64url(SHA-256(ASCII token)).
pub fn access_token_hash(token: &str) -> String {
    b64url_encode(digest::digest(&digest::SHA256, token.as_bytes()))
}

/// Signs a fresh DPoP proof for a request with method `htm` to `htu`; pass the
/// access token when calling a resource server so the proof carries `ath`.
pub fn create_dpop_proof(
    key: &SigningKey,
    htm: &str,
    htu: &str,
    access_token: Option<&str>,
    now: i64,
) -> String {
    let header = Header {
        alg: key.alg(),
        typ: Some(DPOP_TYP.into()),
        kid: None,
        jwk: Some(key.public_jwk().to_json()),
    };
    let claims = ProofClaims {
        jti: random_b64(16),
        htm,
        htu: without_query_and_fragment(htu),
        iat: now,
        ath: access_token.map(access_token_hash),
    };
    sign_compact(&header, &claims, key)
}

/// Checks a DPoP proof against the request it came with (RFC 9449 §4.3),
/// except for replay and nonce, which need server state.
pub fn verify_dpop_proof(
    proof: &str,
    expect: &DpopExpectations<'_>,
) -> Result<VerifiedProof, DpopError> {
    let compact = Compact::parse(proof, |typ| typ_is(typ, DPOP_TYP))?;
    let jwk = compact.header.jwk.as_ref().ok_or(DpopError::MissingJwk)?;
    let key = PublicJwk::from_json(jwk).map_err(DpopError::BadJwk)?;
    let claims: RawProofClaims = compact.verify(&key)?;

    let jti = claims.jti.ok_or(DpopError::MissingClaim("jti"))?;
    let htm = claims.htm.ok_or(DpopError::MissingClaim("htm"))?;
    let htu = claims.htu.ok_or(DpopError::MissingClaim("htu"))?;
    let iat = claims.iat.ok_or(DpopError::MissingClaim("iat"))?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(DpopError::BadJti);
    }
    if htm != expect.htm {
        return Err(DpopError::MethodMismatch);
    }
    match (normalize_htu(&htu), normalize_htu(expect.htu)) {
        (Some(got), Some(want)) if got == want => {}
        _ => return Err(DpopError::UriMismatch),
    }
    if iat < expect.now.saturating_sub(expect.max_age_secs) {
        return Err(DpopError::Stale);
    }
    if iat > expect.now.saturating_add(expect.leeway_secs) {
        return Err(DpopError::FromTheFuture);
    }
    if let Some(token) = expect.access_token {
        let ath = claims.ath.ok_or(DpopError::MissingAth)?;
        if ath != access_token_hash(token) {
            return Err(DpopError::AccessTokenHashMismatch);
        }
    }
    Ok(VerifiedProof {
        jkt: key.thumbprint(),
        jti,
        iat,
        nonce: claims.nonce,
        key,
    })
}

/// Normalizes an `http`/`https` URI for `htu` comparison (RFC 3986 §6.2.2 and
/// §6.2.3): drops query and fragment, lowercases scheme and host, drops the
/// default port, uppercases percent-encodings and decodes unreserved ones,
/// removes dot segments and turns an empty path into `/`. `None` for other
/// schemes, relative references, userinfo and malformed URIs.
pub fn normalize_htu(uri: &str) -> Option<String> {
    let uri = without_query_and_fragment(uri);
    let (scheme, rest) = uri.split_once(':')?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let rest = rest.strip_prefix("//")?;
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let (host, port) = host_and_port(authority)?;
    let mut out = format!("{scheme}://{}", host.to_ascii_lowercase());
    if let Some(port) = port.filter(|p| *p != default_port) {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(&remove_dot_segments(&normalize_percent_encoding(path)?));
    Some(out)
}

fn without_query_and_fragment(uri: &str) -> &str {
    uri.find(['?', '#']).map_or(uri, |end| &uri[..end])
}

/// Splits `host[:port]`, validating the host; an empty port means the default.
/// Userinfo and percent-encoded hosts are refused.
fn host_and_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let literal = &authority[1..end];
        let ok = !literal.is_empty()
            && literal
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
        if !ok {
            return None;
        }
        (&authority[..=end], &authority[end + 1..])
    } else {
        let end = authority.find(':').unwrap_or(authority.len());
        let host = &authority[..end];
        let ok = !host.is_empty() && host.bytes().all(|b| is_unreserved(b) || is_sub_delim(b));
        if !ok {
            return None;
        }
        (host, &authority[end..])
    };
    let port = match port.strip_prefix(':') {
        None if port.is_empty() => None,
        None => return None,
        Some("") => None,
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => Some(digits.parse().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

/// Validates path characters, uppercases percent-encodings and decodes the
/// ones that stand for unreserved characters.
fn normalize_percent_encoding(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = path.get(i + 1..i + 3)?;
            let decoded = u8::from_str_radix(hex, 16)
                .ok()
                .filter(|_| hex.bytes().all(|h| h.is_ascii_hexdigit()))?;
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else {
                out.push_str(&format!("%{decoded:02X}"));
            }
            i += 3;
        } else if is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@' | b'/') {
            out.push(char::from(b));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4 for a path that is empty or starts with `/`; never empty.
fn remove_dot_segments(path: &str) -> String {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    for (i, segment) in segments.iter().enumerate() {
        let last = i + 1 == segments.len();
        match *segment {
            "." => {}
            ".." => {
                kept.pop();
            }
            other => {
                kept.push(other);
                continue;
            }
        }
        if last {
            // A trailing "." or ".." leaves the path ending in "/".
            kept.push("");
        }
    }
    if kept.is_empty() {
        return "/".into();
    }
    kept.iter().fold(String::new(), |mut out, segment| {
        out.push('/');
        out.push_str(segment);
        out
    })
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DEFAULT_LEEWAY_SECS, b64url_decode};
    use serde_json::{Value, json};

    const HTU: &str = "https://api.example.com/customers";
    const NOW: i64 = 1_000_000;

    fn expect(access_token: Option<&str>) -> DpopExpectations<'_> {
        DpopExpectations {
            htm: "GET",
            htu: HTU,
            access_token,
            now: NOW,
            max_age_secs: DEFAULT_DPOP_MAX_AGE_SECS,
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }

    fn good_claims() -> Value {
        json!({"jti": "abcdefghijklmnop", "htm": "GET", "htu": HTU, "iat": NOW})
    }

    /// A proof with hand-made header members and claims, signed by `signer`.
    fn custom(signer: &SigningKey, jwk: Value, typ: &str, claims: Value) -> String {
        let header = Header {
            alg: signer.alg(),
            typ: Some(typ.into()),
            kid: None,
            jwk: Some(jwk),
        };
        sign_compact(&header, &claims, signer)
    }

    fn with_claims(key: &SigningKey, edit: impl FnOnce(&mut Value)) -> String {
        let mut claims = good_claims();
        edit(&mut claims);
        custom(key, key.public_jwk().to_json(), DPOP_TYP, claims)
    }

    fn forge(header: Value) -> String {
        format!(
            "{}.{}.{}",
            b64url_encode(header.to_string()),
            b64url_encode(good_claims().to_string()),
            b64url_encode([7u8; 64])
        )
    }

    #[test]
    fn a_fresh_proof_verifies_and_returns_the_key_thumbprint() {
        let key = SigningKey::generate_ed25519();
        let proof = create_dpop_proof(&key, "GET", HTU, None, NOW);
        let verified = verify_dpop_proof(&proof, &expect(None)).unwrap();
        assert_eq!(verified.jkt, key.public_jwk().thumbprint());
        assert_eq!(verified.key, key.public_jwk());
        assert_eq!(verified.iat, NOW);
        assert_eq!(verified.nonce, None);
        // 16 random bytes: 128 bits, above RFC 9449's 96.
        assert_eq!(b64url_decode(&verified.jti).unwrap().len(), 16);
        let again = verify_dpop_proof(
            &create_dpop_proof(&key, "GET", HTU, None, NOW),
            &expect(None),
        );
        assert_ne!(again.unwrap().jti, verified.jti);
    }

    #[test]
    fn a_p256_proof_verifies_too() {
        let key = SigningKey::generate_p256();
        let proof = create_dpop_proof(&key, "GET", HTU, Some("tok"), NOW);
        let verified = verify_dpop_proof(&proof, &expect(Some("tok"))).unwrap();
        assert_eq!(verified.jkt, key.public_jwk().thumbprint());
    }

    #[test]
    fn a_proof_named_ed25519_verifies_and_an_es256_header_on_an_ed25519_jwk_does_not() {
        let key = SigningKey::generate_ed25519();
        let sign = |alg| {
            let header = Header {
                alg,
                typ: Some(DPOP_TYP.into()),
                kid: None,
                jwk: Some(key.public_jwk().to_json()),
            };
            sign_compact(&header, &good_claims(), &key)
        };
        let verified = verify_dpop_proof(&sign(crate::JwsAlg::Ed25519), &expect(None)).unwrap();
        assert_eq!(verified.jkt, key.public_jwk().thumbprint());
        assert_eq!(
            verify_dpop_proof(&sign(crate::JwsAlg::ES256), &expect(None)).unwrap_err(),
            DpopError::Jws(JwsError::AlgorithmKeyMismatch("ES256"))
        );
    }

    #[test]
    fn the_proof_header_carries_typ_and_the_public_jwk_only() {
        let key = SigningKey::generate_ed25519();
        let proof = create_dpop_proof(&key, "GET", HTU, None, NOW);
        let compact = Compact::parse(&proof, |t| t == Some(DPOP_TYP)).unwrap();
        assert_eq!(compact.header.jwk, Some(key.public_jwk().to_json()));
        assert_eq!(compact.header.kid, None);
    }

    #[test]
    fn a_proof_for_another_method_is_refused() {
        let key = SigningKey::generate_ed25519();
        let proof = create_dpop_proof(&key, "POST", HTU, None, NOW);
        assert_eq!(
            verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
            DpopError::MethodMismatch
        );
        let lower = create_dpop_proof(&key, "get", HTU, None, NOW);
        assert_eq!(
            verify_dpop_proof(&lower, &expect(None)).unwrap_err(),
            DpopError::MethodMismatch
        );
    }

    #[test]
    fn a_proof_for_another_uri_is_refused() {
        let key = SigningKey::generate_ed25519();
        for htu in [
            "https://api.example.com/orders",
            "http://api.example.com/customers",
            "https://evil.example.com/customers",
            "https://api.example.com:8443/customers",
            "https://api.example.com/customers/",
            "not a uri",
        ] {
            let proof = create_dpop_proof(&key, "GET", htu, None, NOW);
            assert_eq!(
                verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
                DpopError::UriMismatch,
                "{htu}"
            );
        }
    }

    #[test]
    fn query_fragment_default_port_and_case_do_not_matter() {
        let key = SigningKey::generate_ed25519();
        let proof = create_dpop_proof(
            &key,
            "GET",
            "HTTPS://API.Example.COM:443/customers?page=2#top",
            None,
            NOW,
        );
        assert!(verify_dpop_proof(&proof, &expect(None)).is_ok());
        // A claim that kept its query still matches, and so does a request URI with one.
        let with_query = with_claims(&key, |c| c["htu"] = format!("{HTU}?x=1").into());
        let mut e = expect(None);
        e.htu = "https://api.example.com/customers?y=2";
        assert!(verify_dpop_proof(&with_query, &e).is_ok());
    }

    #[test]
    fn created_proofs_strip_query_and_fragment_from_htu() {
        let key = SigningKey::generate_ed25519();
        let proof = create_dpop_proof(&key, "GET", "https://h/p?q=1#f", None, NOW);
        let claims: Value = Compact::parse(&proof, |_| true)
            .unwrap()
            .verify(&key.public_jwk())
            .unwrap();
        assert_eq!(claims["htu"], "https://h/p");
        assert!(claims.get("ath").is_none());
    }

    #[test]
    fn normalization_follows_rfc3986_syntax_and_scheme_rules() {
        let cases = [
            ("HTTPS://Example.COM", "https://example.com/"),
            ("http://example.com:80/a?x#y", "http://example.com/a"),
            ("http://example.com:/a", "http://example.com/a"),
            ("https://example.com:80/", "https://example.com:80/"),
            ("http://example.com:443/", "http://example.com:443/"),
            ("http://example.com:8080/A/B", "http://example.com:8080/A/B"),
            ("http://[::1]:443/", "http://[::1]:443/"),
            ("http://[FE80::1]", "http://[fe80::1]/"),
            ("http://h/%7euser/%2f%c3%a9", "http://h/~user/%2F%C3%A9"),
            ("http://h/a/./b/../c", "http://h/a/c"),
            ("http://h/a/b/..", "http://h/a/"),
            ("http://h/../../x", "http://h/x"),
            ("http://h/a//b", "http://h/a//b"),
            ("http://h/%2E%2E/x", "http://h/x"),
            ("http://h#frag/..", "http://h/"),
        ];
        for (input, normal) in cases {
            assert_eq!(normalize_htu(input).as_deref(), Some(normal), "{input}");
        }
        for bad in [
            "ftp://h/",
            "/relative",
            "http:h/",
            "http:///path",
            "http://user@h/",
            "http://h:port/",
            "http://h:99999/",
            "http://h:80:80/",
            "http://h/a b",
            "http://h/%zz",
            "http://h/%4",
            "http://h/é",
            "http://[]/",
            "http://[::1/",
            "http://[::1]x/",
            "http://h%41/",
        ] {
            assert_eq!(normalize_htu(bad), None, "{bad}");
        }
    }

    #[test]
    fn a_stale_proof_is_refused() {
        let key = SigningKey::generate_ed25519();
        let old = NOW - DEFAULT_DPOP_MAX_AGE_SECS;
        assert!(
            verify_dpop_proof(
                &create_dpop_proof(&key, "GET", HTU, None, old),
                &expect(None)
            )
            .is_ok()
        );
        let proof = create_dpop_proof(&key, "GET", HTU, None, old - 1);
        assert_eq!(
            verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
            DpopError::Stale
        );
    }

    #[test]
    fn a_proof_from_the_future_is_refused() {
        let key = SigningKey::generate_ed25519();
        let soon = NOW + DEFAULT_LEEWAY_SECS;
        assert!(
            verify_dpop_proof(
                &create_dpop_proof(&key, "GET", HTU, None, soon),
                &expect(None)
            )
            .is_ok()
        );
        let proof = create_dpop_proof(&key, "GET", HTU, None, soon + 1);
        assert_eq!(
            verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
            DpopError::FromTheFuture
        );
        let extreme = with_claims(&key, |c| c["iat"] = i64::MAX.into());
        assert_eq!(
            verify_dpop_proof(&extreme, &expect(None)).unwrap_err(),
            DpopError::FromTheFuture
        );
    }

    #[test]
    fn a_presented_token_needs_a_matching_ath() {
        let key = SigningKey::generate_ed25519();
        let without = create_dpop_proof(&key, "GET", HTU, None, NOW);
        assert_eq!(
            verify_dpop_proof(&without, &expect(Some("tok"))).unwrap_err(),
            DpopError::MissingAth
        );
        let other = create_dpop_proof(&key, "GET", HTU, Some("other"), NOW);
        assert_eq!(
            verify_dpop_proof(&other, &expect(Some("tok"))).unwrap_err(),
            DpopError::AccessTokenHashMismatch
        );
        let right = create_dpop_proof(&key, "GET", HTU, Some("tok"), NOW);
        assert!(verify_dpop_proof(&right, &expect(Some("tok"))).is_ok());
    }

    #[test]
    fn an_ath_is_ignored_when_no_token_is_presented() {
        let key = SigningKey::generate_ed25519();
        let proof = create_dpop_proof(&key, "GET", HTU, Some("tok"), NOW);
        assert!(verify_dpop_proof(&proof, &expect(None)).is_ok());
    }

    #[test]
    fn ath_is_the_rfc9449_hash_of_the_token() {
        // RFC 9449 §7.1 example: the token "Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"
        // has ath "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo".
        assert_eq!(
            access_token_hash("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn a_nonce_is_exposed_but_not_required() {
        let key = SigningKey::generate_ed25519();
        let proof = with_claims(&key, |c| c["nonce"] = "n-1".into());
        let verified = verify_dpop_proof(&proof, &expect(None)).unwrap();
        assert_eq!(verified.nonce.as_deref(), Some("n-1"));
    }

    #[test]
    fn a_private_key_in_the_header_jwk_is_refused() {
        let key = SigningKey::generate_ed25519();
        let proof = custom(&key, key.to_private_jwk(), DPOP_TYP, good_claims());
        assert_eq!(
            verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
            DpopError::BadJwk(JwkError::PrivatePart("d".into()))
        );
    }

    #[test]
    fn a_proof_without_a_header_jwk_is_refused() {
        let key = SigningKey::generate_ed25519();
        let header = Header {
            alg: key.alg(),
            typ: Some(DPOP_TYP.into()),
            kid: Some(key.public_jwk().thumbprint().0),
            jwk: None,
        };
        let proof = sign_compact(&header, &good_claims(), &key);
        assert_eq!(
            verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
            DpopError::MissingJwk
        );
    }

    #[test]
    fn a_typ_other_than_dpop_jwt_is_refused() {
        let key = SigningKey::generate_ed25519();
        for typ in ["JWT", "at+jwt", "dpop"] {
            let proof = custom(&key, key.public_jwk().to_json(), typ, good_claims());
            assert!(matches!(
                verify_dpop_proof(&proof, &expect(None)),
                Err(DpopError::Jws(JwsError::TypeNotAllowed(_)))
            ));
        }
        let jwk = key.public_jwk().to_json();
        let untyped = forge(json!({"alg": "EdDSA", "jwk": jwk}));
        assert!(matches!(
            verify_dpop_proof(&untyped, &expect(None)),
            Err(DpopError::Jws(JwsError::TypeNotAllowed(_)))
        ));
    }

    #[test]
    fn none_and_hmac_algorithms_are_refused() {
        let jwk = SigningKey::generate_ed25519().public_jwk().to_json();
        for alg in ["none", "HS256"] {
            let proof = forge(json!({"alg": alg, "typ": DPOP_TYP, "jwk": jwk}));
            assert_eq!(
                verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
                DpopError::Jws(JwsError::AlgorithmNotAllowed(alg.into()))
            );
        }
        let oct = json!({"kty": "oct", "k": "c2VjcmV0"});
        let proof = forge(json!({"alg": "EdDSA", "typ": DPOP_TYP, "jwk": oct}));
        assert!(matches!(
            verify_dpop_proof(&proof, &expect(None)),
            Err(DpopError::BadJwk(JwkError::PrivatePart(_)))
        ));
    }

    #[test]
    fn a_signature_by_another_key_than_the_header_jwk_is_refused() {
        let claimed = SigningKey::generate_ed25519();
        let signer = SigningKey::generate_ed25519();
        let proof = custom(
            &signer,
            claimed.public_jwk().to_json(),
            DPOP_TYP,
            good_claims(),
        );
        assert_eq!(
            verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
            DpopError::Jws(JwsError::BadSignature)
        );
        let p256 = SigningKey::generate_p256();
        let mixed = custom(
            &signer,
            p256.public_jwk().to_json(),
            DPOP_TYP,
            good_claims(),
        );
        assert_eq!(
            verify_dpop_proof(&mixed, &expect(None)).unwrap_err(),
            DpopError::Jws(JwsError::AlgorithmKeyMismatch("EdDSA"))
        );
    }

    #[test]
    fn missing_required_claims_are_refused() {
        let key = SigningKey::generate_ed25519();
        for claim in ["jti", "htm", "htu", "iat"] {
            let proof = with_claims(&key, |c| {
                c.as_object_mut().unwrap().remove(claim);
            });
            assert_eq!(
                verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
                DpopError::MissingClaim(claim)
            );
        }
    }

    #[test]
    fn an_empty_or_overlong_jti_is_refused() {
        let key = SigningKey::generate_ed25519();
        for jti in [String::new(), "j".repeat(MAX_JTI_LEN + 1)] {
            let proof = with_claims(&key, |c| c["jti"] = jti.into());
            assert_eq!(
                verify_dpop_proof(&proof, &expect(None)).unwrap_err(),
                DpopError::BadJti
            );
        }
        let longest = with_claims(&key, |c| c["jti"] = "j".repeat(MAX_JTI_LEN).into());
        assert!(verify_dpop_proof(&longest, &expect(None)).is_ok());
    }

    #[test]
    fn claims_of_the_wrong_type_are_refused() {
        let key = SigningKey::generate_ed25519();
        let proof = with_claims(&key, |c| c["iat"] = "1000000".into());
        assert!(matches!(
            verify_dpop_proof(&proof, &expect(None)),
            Err(DpopError::Jws(JwsError::BadClaims(_)))
        ));
    }
}
