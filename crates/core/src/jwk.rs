//! Public keys as JWKs (Ed25519 and P-256) and their RFC 7638 thumbprints
//! (`jkt`), which bind a token to its presenter's key.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::digest;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED, ED25519, ParsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::jws::{JwsAlg, KeyFamily};
use crate::{JwkError, b64url_decode, b64url_encode};

/// JWK members that carry private or symmetric key material (RFC 7518 §6).
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// An RFC 7638 JWK SHA-256 thumbprint, base64url: the `jkt` that binds a token to a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Jkt(pub String);

impl fmt::Display for Jkt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A public key we accept from agents and publish for the authority:
/// Ed25519 (`kty: OKP`) or P-256 (`kty: EC`), parsed once and kept ready to verify.
#[derive(Clone)]
pub struct PublicJwk {
    curve: Curve,
    x: Vec<u8>,
    y: Vec<u8>,
    key: Arc<ParsedPublicKey>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Curve {
    Ed25519,
    P256,
}

impl PublicJwk {
    /// Parses a JWK object, refusing private parts, other key types and invalid points.
    pub fn from_json(value: &Value) -> Result<Self, JwkError> {
        let obj = value.as_object().ok_or(JwkError::NotAnObject)?;
        if let Some(private) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(JwkError::PrivatePart((*private).to_owned()));
        }
        let member = |name: &'static str| obj.get(name).and_then(Value::as_str);
        let jwk = match (member("kty"), member("crv")) {
            (Some("OKP"), Some("Ed25519")) => {
                Self::ed25519(&coordinate(obj, "x", 32)?).map_err(|_| JwkError::InvalidKey)?
            }
            (Some("EC"), Some("P-256")) => {
                Self::p256(&coordinate(obj, "x", 32)?, &coordinate(obj, "y", 32)?)?
            }
            _ => return Err(JwkError::UnsupportedKeyType),
        };
        match member("alg") {
            None => Ok(jwk),
            Some(alg) if JwsAlg::from_name(alg).is_some_and(|a| jwk.accepts(a)) => Ok(jwk),
            Some(_) => Err(JwkError::BadMember("alg")),
        }
    }

    /// An Ed25519 public key from its 32 raw bytes.
    pub fn ed25519(x: &[u8]) -> Result<Self, JwkError> {
        if x.len() != 32 {
            return Err(JwkError::BadMember("x"));
        }
        let key = ParsedPublicKey::new(&ED25519, x).map_err(|_| JwkError::InvalidKey)?;
        Ok(Self {
            curve: Curve::Ed25519,
            x: x.to_vec(),
            y: Vec::new(),
            key: Arc::new(key),
        })
    }

    /// A P-256 public key from its affine coordinates; the point is validated.
    pub fn p256(x: &[u8], y: &[u8]) -> Result<Self, JwkError> {
        let mut point = Vec::with_capacity(65);
        point.push(0x04);
        point.extend_from_slice(x);
        point.extend_from_slice(y);
        let key = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
            .map_err(|_| JwkError::InvalidKey)?;
        Ok(Self {
            curve: Curve::P256,
            x: x.to_vec(),
            y: y.to_vec(),
            key: Arc::new(key),
        })
    }

    /// The JWS algorithm agentauth signs with this key: `EdDSA` for Ed25519
    /// (the name every deployed verifier knows), `ES256` for P-256.
    pub fn alg(&self) -> JwsAlg {
        match self.curve {
            Curve::Ed25519 => JwsAlg::EdDSA,
            Curve::P256 => JwsAlg::ES256,
        }
    }

    /// The key's algorithm family: one key, one family (RFC 8725 §3.1).
    pub fn family(&self) -> KeyFamily {
        match self.curve {
            Curve::Ed25519 => KeyFamily::Ed25519,
            Curve::P256 => KeyFamily::P256,
        }
    }

    /// Whether a signature claiming `alg` may be checked with this key:
    /// `EdDSA` or `Ed25519` (RFC 9864) for Ed25519, `ES256` for P-256.
    pub fn accepts(&self, alg: JwsAlg) -> bool {
        alg.family() == self.family()
    }

    /// The public JWK members only (`kty`, `crv`, `x`, `y`), in RFC 7638 order.
    pub fn to_json(&self) -> Value {
        match self.curve {
            Curve::Ed25519 => json!({"crv": "Ed25519", "kty": "OKP", "x": b64url_encode(&self.x)}),
            Curve::P256 => json!({
                "crv": "P-256", "kty": "EC",
                "x": b64url_encode(&self.x), "y": b64url_encode(&self.y),
            }),
        }
    }

    /// The RFC 7638 SHA-256 thumbprint.
    pub fn thumbprint(&self) -> Jkt {
        // serde_json keeps the lexicographic member order written in `to_json`
        // because its map is a BTreeMap without the preserve_order feature.
        let canonical = serde_json::to_vec(&self.to_json()).unwrap_or_default();
        Jkt(b64url_encode(digest::digest(&digest::SHA256, &canonical)))
    }

    /// Verifies `signature` over `message` (raw r||s for ES256).
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.key.verify_sig(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicJwk({:?}, {})", self.curve, self.thumbprint())
    }
}

impl PartialEq for PublicJwk {
    fn eq(&self, other: &Self) -> bool {
        self.curve == other.curve && self.x == other.x && self.y == other.y
    }
}

impl Eq for PublicJwk {}

fn coordinate(
    obj: &Map<String, Value>,
    name: &'static str,
    len: usize,
) -> Result<Vec<u8>, JwkError> {
    obj.get(name)
        .and_then(Value::as_str)
        .and_then(b64url_decode)
        .filter(|bytes| bytes.len() == len)
        .ok_or(JwkError::BadMember(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ed25519_thumbprint_matches_rfc8037_appendix_a3() {
        // RFC 8037 A.3 gives this key's RFC 7638 thumbprint.
        let jwk =
            json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        let key = PublicJwk::from_json(&jwk).unwrap();
        assert_eq!(
            key.thumbprint().0,
            "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
        );
        assert_eq!(key.alg(), JwsAlg::EdDSA);
    }

    #[test]
    fn private_parts_are_refused() {
        let jwk = json!({"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo",
                         "d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"});
        assert_eq!(
            PublicJwk::from_json(&jwk).unwrap_err(),
            JwkError::PrivatePart("d".into())
        );
        let oct = json!({"kty":"oct","k":"c2VjcmV0"});
        assert!(matches!(
            PublicJwk::from_json(&oct),
            Err(JwkError::PrivatePart(_))
        ));
    }

    #[test]
    fn other_key_types_and_bad_points_are_refused() {
        let rsa = json!({"kty":"RSA","n":"AQAB","e":"AQAB"});
        assert_eq!(
            PublicJwk::from_json(&rsa).unwrap_err(),
            JwkError::UnsupportedKeyType
        );
        let short = json!({"kty":"OKP","crv":"Ed25519","x":"AAAA"});
        assert_eq!(
            PublicJwk::from_json(&short).unwrap_err(),
            JwkError::BadMember("x")
        );
        let zero = b64url_encode([0u8; 32]);
        let off_curve = json!({"kty":"EC","crv":"P-256","x": zero, "y": zero});
        assert_eq!(
            PublicJwk::from_json(&off_curve).unwrap_err(),
            JwkError::InvalidKey
        );
        assert_eq!(
            PublicJwk::from_json(&json!("x")).unwrap_err(),
            JwkError::NotAnObject
        );
    }

    #[test]
    fn an_ed25519_key_accepts_both_names_of_its_algorithm_and_nothing_else() {
        for alg in ["EdDSA", "Ed25519"] {
            let jwk = json!({"kty":"OKP","crv":"Ed25519","alg": alg,
                             "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
            let key = PublicJwk::from_json(&jwk).unwrap();
            assert!(key.accepts(JwsAlg::EdDSA) && key.accepts(JwsAlg::Ed25519));
            assert!(!key.accepts(JwsAlg::ES256));
        }
        let p256 = crate::SigningKey::generate_p256().public_jwk();
        assert!(p256.accepts(JwsAlg::ES256));
        assert!(!p256.accepts(JwsAlg::Ed25519) && !p256.accepts(JwsAlg::EdDSA));
        let mut ec = p256.to_json();
        ec["alg"] = json!("Ed25519");
        assert_eq!(
            PublicJwk::from_json(&ec).unwrap_err(),
            JwkError::BadMember("alg")
        );
    }

    #[test]
    fn a_mismatched_alg_member_is_refused() {
        let jwk = json!({"kty":"OKP","crv":"Ed25519","alg":"ES256",
                         "x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"});
        assert_eq!(
            PublicJwk::from_json(&jwk).unwrap_err(),
            JwkError::BadMember("alg")
        );
    }
}
