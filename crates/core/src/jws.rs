//! Compact JWS: header and structure allow-lists checked before any signature
//! work, then verification; and signing.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::{JwsError, PublicJwk, SigningKey, b64url_decode, b64url_encode};

/// Longest compact JWS any agentauth verifier will look at.
pub const MAX_JWS_LEN: usize = 8 * 1024;
/// Longest decoded protected header.
const MAX_HEADER_LEN: usize = 1024;

/// The JWS algorithms agentauth allows. Everything else, `none` and HS*
/// included, is refused before any signature work.
///
/// `EdDSA` (RFC 8037) and `Ed25519` (RFC 9864, which deprecates the
/// polymorphic `EdDSA`) name the same signature with an Ed25519 key; both
/// are accepted wherever one is, and agentauth itself signs with `EdDSA`,
/// which every deployed verifier knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwsAlg {
    /// Ed25519 under its RFC 8037 name.
    EdDSA,
    /// Ed25519 under its fully specified RFC 9864 name.
    Ed25519,
    /// ECDSA P-256 with SHA-256, fixed-width r||s signatures.
    ES256,
}

/// The key type an algorithm signs with: one key, one family (RFC 8725 §3.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// Ed25519 (`kty: OKP`, `crv: Ed25519`): `EdDSA` or `Ed25519`.
    Ed25519,
    /// P-256 (`kty: EC`, `crv: P-256`): `ES256`.
    P256,
}

impl JwsAlg {
    /// Every allowed algorithm, as the metadata advertises them.
    pub const ALL: [Self; 3] = [Self::EdDSA, Self::Ed25519, Self::ES256];

    /// Exact, case-sensitive allow-list lookup (RFC 8725 §3.1).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "EdDSA" => Some(Self::EdDSA),
            "Ed25519" => Some(Self::Ed25519),
            "ES256" => Some(Self::ES256),
            _ => None,
        }
    }

    /// The JOSE name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EdDSA => "EdDSA",
            Self::Ed25519 => "Ed25519",
            Self::ES256 => "ES256",
        }
    }

    /// The only key type this algorithm may be verified with.
    pub fn family(self) -> KeyFamily {
        match self {
            Self::EdDSA | Self::Ed25519 => KeyFamily::Ed25519,
            Self::ES256 => KeyFamily::P256,
        }
    }
}

/// The protected header members agentauth reads and writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Header {
    /// Signature algorithm, from the allow-list.
    pub alg: JwsAlg,
    /// Explicit token type (`at+jwt`, `dpop+jwt`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    /// Key ID of the signing key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The signer's public key itself, as a DPoP proof (RFC 9449 §4.2) carries it.
    /// Never trusted as-is: parse it with [`PublicJwk::from_json`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jwk: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    jwk: Option<serde_json::Value>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

/// A compact JWS whose structure and header passed the allow-lists but whose
/// signature is not yet checked. Claims are only reachable through [`Compact::verify`].
#[derive(Debug)]
pub struct Compact<'a> {
    signing_input: &'a str,
    payload_b64: &'a str,
    signature: Vec<u8>,
    /// The checked protected header.
    pub header: Header,
}

impl<'a> Compact<'a> {
    /// Splits a token and checks length, alphabet, header shape, `alg` and `typ`.
    /// `typ_allowed` decides on the header's `typ` (absent is `None`).
    pub fn parse(
        token: &'a str,
        typ_allowed: impl Fn(Option<&str>) -> bool,
    ) -> Result<Self, JwsError> {
        if token.len() > MAX_JWS_LEN {
            return Err(JwsError::TooLong);
        }
        // Without short-circuiting, so the scan of the (bounded) token
        // vectorises; a byte-by-byte `all` cost ~10 instructions a byte.
        let alphabet_ok = token.bytes().fold(true, |ok, b| {
            ok & (b.is_ascii_alphanumeric() | (b == b'-') | (b == b'_') | (b == b'.'))
        });
        if !alphabet_ok {
            return Err(JwsError::Malformed);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwsError::Malformed);
        };
        let header = parse_header(h)?;
        if !typ_allowed(header.typ.as_deref()) {
            return Err(JwsError::TypeNotAllowed(
                header.typ.unwrap_or_default().chars().take(40).collect(),
            ));
        }
        let signature = b64url_decode(s)
            .filter(|sig| sig.len() == 64)
            .ok_or(JwsError::Malformed)?;
        Ok(Self {
            signing_input: &token[..h.len() + 1 + p.len()],
            payload_b64: p,
            signature,
            header,
        })
    }

    /// Reads the claims without verifying the signature. Only for picking the
    /// verification key (a client assertion's `iss`); never trust the result.
    pub fn peek_claims<T: DeserializeOwned>(&self) -> Result<T, JwsError> {
        decode_payload(self.payload_b64)
    }

    /// Checks the signature with `key` and returns the claims. The header's
    /// `alg` must belong to the key's family (no ES256 header on an Ed25519 key).
    pub fn verify<T: DeserializeOwned>(&self, key: &PublicJwk) -> Result<T, JwsError> {
        if !key.accepts(self.header.alg) {
            return Err(JwsError::AlgorithmKeyMismatch(self.header.alg.as_str()));
        }
        if !key.verify(self.signing_input.as_bytes(), &self.signature) {
            return Err(JwsError::BadSignature);
        }
        decode_payload(self.payload_b64)
    }
}

fn parse_header(b64: &str) -> Result<Header, JwsError> {
    let bytes = b64url_decode(b64)
        .filter(|b| b.len() <= MAX_HEADER_LEN)
        .ok_or(JwsError::BadHeader)?;
    let raw: RawHeader = serde_json::from_slice(&bytes).map_err(|_| JwsError::BadHeader)?;
    let alg = JwsAlg::from_name(&raw.alg)
        .ok_or_else(|| JwsError::AlgorithmNotAllowed(raw.alg.chars().take(20).collect()))?;
    if raw.crit.is_some() {
        // We understand no critical extensions, so RFC 7515 §4.1.11 says refuse.
        return Err(JwsError::BadHeader);
    }
    Ok(Header {
        alg,
        typ: raw.typ,
        kid: raw.kid,
        jwk: raw.jwk,
    })
}

fn decode_payload<T: DeserializeOwned>(b64: &str) -> Result<T, JwsError> {
    let bytes = b64url_decode(b64).ok_or_else(|| JwsError::BadClaims("not base64url".into()))?;
    serde_json::from_slice(&bytes).map_err(|e| JwsError::BadClaims(e.to_string()))
}

/// Signs `claims` as a compact JWS with `key`; `header.alg` must be the key's algorithm.
pub fn sign_compact(header: &Header, claims: &impl Serialize, key: &SigningKey) -> String {
    let header_json = serde_json::to_vec(header).unwrap_or_default();
    let claims_json = serde_json::to_vec(claims).unwrap_or_default();
    let mut out = b64url_encode(header_json);
    out.push('.');
    out.push_str(&b64url_encode(claims_json));
    let signature = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&b64url_encode(signature));
    out
}

/// Compares a `typ` value the way RFC 8725 §3.11 asks: case-insensitive, with
/// an optional `application/` prefix.
pub(crate) fn typ_is(typ: Option<&str>, expected: &str) -> bool {
    typ.is_some_and(|t| {
        let t = t
            .get(..12)
            .filter(|p| p.eq_ignore_ascii_case("application/"))
            .map_or(t, |_| &t[12..]);
        t.eq_ignore_ascii_case(expected)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn header(key: &SigningKey) -> Header {
        Header {
            alg: key.alg(),
            typ: Some("at+jwt".into()),
            kid: Some("k1".into()),
            jwk: None,
        }
    }

    fn forge(header: Value, claims: Value) -> String {
        format!(
            "{}.{}.{}",
            b64url_encode(header.to_string()),
            b64url_encode(claims.to_string()),
            b64url_encode([7u8; 64])
        )
    }

    #[test]
    fn signed_token_verifies_with_its_key_only() {
        let key = SigningKey::generate_ed25519();
        let other = SigningKey::generate_ed25519();
        let token = sign_compact(&header(&key), &json!({"a": 1}), &key);
        let compact = Compact::parse(&token, |t| typ_is(t, "at+jwt")).unwrap();
        let claims: Value = compact.verify(&key.public_jwk()).unwrap();
        assert_eq!(claims["a"], 1);
        assert_eq!(
            compact.verify::<Value>(&other.public_jwk()).unwrap_err(),
            JwsError::BadSignature
        );
    }

    #[test]
    fn es256_tokens_verify_and_cannot_pose_as_eddsa() {
        let key = SigningKey::generate_p256();
        let token = sign_compact(&header(&key), &json!({"a": 1}), &key);
        let compact = Compact::parse(&token, |_| true).unwrap();
        assert!(compact.verify::<Value>(&key.public_jwk()).is_ok());
        let ed = SigningKey::generate_ed25519();
        assert_eq!(
            compact.verify::<Value>(&ed.public_jwk()).unwrap_err(),
            JwsError::AlgorithmKeyMismatch("ES256")
        );
    }

    #[test]
    fn the_rfc9864_name_ed25519_verifies_like_eddsa_with_an_ed25519_key_only() {
        let key = SigningKey::generate_ed25519();
        let fully_specified = Header {
            alg: JwsAlg::Ed25519,
            ..header(&key)
        };
        let token = sign_compact(&fully_specified, &json!({"a": 1}), &key);
        let compact = Compact::parse(&token, |_| true).unwrap();
        assert_eq!(compact.header.alg, JwsAlg::Ed25519);
        assert!(compact.verify::<Value>(&key.public_jwk()).is_ok());

        // An ES256 header over an Ed25519 key's signature: the family rule refuses it.
        let es256_header = Header {
            alg: JwsAlg::ES256,
            ..header(&key)
        };
        let token = sign_compact(&es256_header, &json!({"a": 1}), &key);
        let compact = Compact::parse(&token, |_| true).unwrap();
        assert_eq!(
            compact.verify::<Value>(&key.public_jwk()).unwrap_err(),
            JwsError::AlgorithmKeyMismatch("ES256")
        );
        let p256 = SigningKey::generate_p256();
        let ed_header = Header {
            alg: JwsAlg::Ed25519,
            ..header(&p256)
        };
        let token = sign_compact(&ed_header, &json!({"a": 1}), &p256);
        let err = Compact::parse(&token, |_| true)
            .unwrap()
            .verify::<Value>(&p256.public_jwk())
            .unwrap_err();
        assert_eq!(err, JwsError::AlgorithmKeyMismatch("Ed25519"));
        assert!(
            err.to_string().contains("\"Ed25519\" does not fit the key"),
            "{err}"
        );
    }

    #[test]
    fn none_and_hmac_algorithms_are_refused_before_signature_work() {
        for alg in [
            "none", "HS256", "RS256", "eddsa", "ed25519", "Ed448", "NONE",
        ] {
            let token = forge(json!({"alg": alg, "typ": "at+jwt"}), json!({}));
            assert_eq!(
                Compact::parse(&token, |_| true).unwrap_err(),
                JwsError::AlgorithmNotAllowed(alg.into())
            );
        }
    }

    #[test]
    fn wrong_typ_crit_and_bad_shapes_are_refused() {
        let wrong_typ = forge(json!({"alg": "EdDSA", "typ": "JWT"}), json!({}));
        assert!(matches!(
            Compact::parse(&wrong_typ, |t| typ_is(t, "at+jwt")),
            Err(JwsError::TypeNotAllowed(_))
        ));
        let crit = forge(json!({"alg": "EdDSA", "crit": ["b64"]}), json!({}));
        assert_eq!(
            Compact::parse(&crit, |_| true).unwrap_err(),
            JwsError::BadHeader
        );
        assert_eq!(
            Compact::parse("a.b", |_| true).unwrap_err(),
            JwsError::Malformed
        );
        assert_eq!(
            Compact::parse("a.b.c.d", |_| true).unwrap_err(),
            JwsError::Malformed
        );
        assert_eq!(
            Compact::parse("{\"a\":1}..", |_| true).unwrap_err(),
            JwsError::Malformed
        );
        let long = "a".repeat(MAX_JWS_LEN + 1);
        assert_eq!(
            Compact::parse(&long, |_| true).unwrap_err(),
            JwsError::TooLong
        );
    }

    #[test]
    fn typ_comparison_accepts_the_media_type_form() {
        assert!(typ_is(Some("at+jwt"), "at+jwt"));
        assert!(typ_is(Some("application/AT+JWT"), "at+jwt"));
        assert!(!typ_is(Some("jwt"), "at+jwt"));
        assert!(!typ_is(None, "at+jwt"));
    }
}
