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
            (Some("OKP"), Some("Ed25519")) => Self::ed25519(&coordinate(obj, "x", 32)?)?,
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

    /// An Ed25519 public key from its 32 raw bytes; non-canonical encodings
    /// and the eight small-order points are refused.
    pub fn ed25519(x: &[u8]) -> Result<Self, JwkError> {
        let Ok(encoded) = <&[u8; 32]>::try_from(x) else {
            return Err(JwkError::BadMember("x"));
        };
        check_ed25519_encoding(encoded)?;
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

/// The y coordinates (little-endian, sign bit clear) of the eight Ed25519
/// points of small order: the identity (y = 1, order 1), y = p − 1 (order 2),
/// y = 0 (two points of order 4) and two y values of the four points of
/// order 8. Any signature "verifies" under some of them (cofactored
/// verification) or can be produced without a private key; aws-lc accepts
/// them as keys, so they are refused here. Matching ignores the sign bit, so
/// the non-canonical "negative zero" forms of y = 1 and y = p − 1 are refused too.
const ED25519_SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [
        1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
        0, 0,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0x7f,
    ],
    [0; 32],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98,
        0xf0, 0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53,
        0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67,
        0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac,
        0x03, 0x7a,
    ],
];

/// Refuses an Ed25519 encoding whose y is not below p = 2^255 − 19, and the
/// small-order points of [`ED25519_SMALL_ORDER_Y`].
fn check_ed25519_encoding(encoded: &[u8; 32]) -> Result<(), JwkError> {
    let mut y = *encoded;
    y[31] &= 0x7f;
    // y >= p exactly when y is p .. 2^255 − 1: bytes 1..=30 all 0xff, the
    // top byte 0x7f and the low byte at least 0xed.
    if y[31] == 0x7f && y[1..31].iter().all(|b| *b == 0xff) && y[0] >= 0xed {
        return Err(JwkError::NonCanonicalEncoding);
    }
    if ED25519_SMALL_ORDER_Y.contains(&y) {
        return Err(JwkError::SmallOrderPoint);
    }
    Ok(())
}

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

    fn hex32(text: &str) -> [u8; 32] {
        hex::decode(text).unwrap().try_into().unwrap()
    }

    #[test]
    fn the_ed25519_identity_point_is_refused() {
        let mut identity = [0; 32];
        identity[0] = 1;
        assert_eq!(
            PublicJwk::ed25519(&identity).unwrap_err(),
            JwkError::SmallOrderPoint
        );
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(identity)});
        assert_eq!(
            PublicJwk::from_json(&jwk).unwrap_err(),
            JwkError::SmallOrderPoint
        );
    }

    #[test]
    fn every_small_order_ed25519_point_is_refused_with_either_sign() {
        for y in ED25519_SMALL_ORDER_Y {
            for sign in [0, 0x80] {
                let mut encoded = y;
                encoded[31] |= sign;
                assert_eq!(
                    PublicJwk::ed25519(&encoded).unwrap_err(),
                    JwkError::SmallOrderPoint,
                    "{}",
                    hex::encode(encoded)
                );
            }
        }
        // A point of order 8, written out as published.
        let order8 = hex32("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a");
        assert_eq!(
            PublicJwk::ed25519(&order8).unwrap_err(),
            JwkError::SmallOrderPoint
        );
    }

    #[test]
    fn non_canonical_ed25519_encodings_are_refused() {
        // p, p + 1 (the identity again) and 2^255 − 1, with either sign bit.
        for low in [0xed, 0xee, 0xff] {
            for sign in [0, 0x80] {
                let mut y = [0xff; 32];
                y[0] = low;
                y[31] = 0x7f | sign;
                assert_eq!(
                    PublicJwk::ed25519(&y).unwrap_err(),
                    JwkError::NonCanonicalEncoding
                );
            }
        }
    }

    #[test]
    fn an_ordinary_ed25519_key_still_parses() {
        let key = crate::SigningKey::generate_ed25519();
        assert!(PublicJwk::from_json(&key.public_jwk().to_json()).is_ok());
    }

    #[test]
    fn invalid_p256_points_are_refused() {
        let key = crate::SigningKey::generate_p256();
        let jwk = key.public_jwk().to_json();
        let x = b64url_decode(jwk["x"].as_str().unwrap()).unwrap();
        let mut y = b64url_decode(jwk["y"].as_str().unwrap()).unwrap();
        assert!(PublicJwk::p256(&x, &y).is_ok());
        y[31] ^= 1;
        assert_eq!(PublicJwk::p256(&x, &y).unwrap_err(), JwkError::InvalidKey);
        assert_eq!(
            PublicJwk::p256(&[0; 32], &[0; 32]).unwrap_err(),
            JwkError::InvalidKey,
            "the point at infinity has no affine coordinates"
        );
        let p = hex32("ffffffff00000001000000000000000000000000ffffffffffffffffffffffff");
        assert_eq!(
            PublicJwk::p256(&p, &y).unwrap_err(),
            JwkError::InvalidKey,
            "coordinates must be reduced modulo p"
        );
    }

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
