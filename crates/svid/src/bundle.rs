//! SPIFFE trust bundles as documents (the SPIFFE bundle format: a JWK set
//! with `spiffe_sequence` and `spiffe_refresh_hint`), read the way every
//! consumer must: `keys` is required, a key with an unknown `use` is
//! ignored, an `x509-svid` key holds exactly one CA certificate, a
//! `jwt-svid` key has a `kid`.

use agentauth_core::PublicJwk;
use base64::Engine as _;

use crate::SvidError;

/// Largest bundle document read.
pub const MAX_BUNDLE_BYTES: usize = 256 * 1024;
/// Most keys a bundle may hold.
const MAX_KEYS: usize = 256;

/// One trust domain's bundle, read.
#[derive(Debug, Clone, PartialEq)]
pub struct SpiffeBundle {
    /// CA certificates (DER) of its X.509-SVIDs.
    pub x509_authorities: Vec<Vec<u8>>,
    /// Its JWT-SVID keys as (`kid`, key).
    pub jwt_authorities: Vec<(String, PublicJwk)>,
    /// The same JWT-SVID keys as the JWK objects given (with `kid` and
    /// `use`), to hand on unchanged.
    pub jwt_jwks: Vec<serde_json::Value>,
    /// `spiffe_sequence` (0 when absent).
    pub sequence: u64,
    /// `spiffe_refresh_hint` in seconds, when given.
    pub refresh_hint: Option<u64>,
}

impl SpiffeBundle {
    /// Reads a bundle document of at most 256 KiB and 256 keys. Keys this
    /// reader cannot use (another `use`, an `x509-svid` key without exactly
    /// one certificate, a `jwt-svid` key without `kid` or of a key type no
    /// JWT-SVID is verified with) are left out; a certificate that does not
    /// parse refuses the whole bundle.
    pub fn parse(text: &[u8]) -> Result<Self, SvidError> {
        let bad = |why: &str| SvidError::Bundle(why.to_owned());
        if text.len() > MAX_BUNDLE_BYTES {
            return Err(bad("the bundle is larger than 256 KiB"));
        }
        let document: serde_json::Value =
            serde_json::from_slice(text).map_err(|_| bad("the bundle is not JSON"))?;
        Self::from_value(&document)
    }

    /// Reads a bundle already parsed as JSON, by the rules of [`Self::parse`].
    pub fn from_value(document: &serde_json::Value) -> Result<Self, SvidError> {
        let bad = |why: &str| SvidError::Bundle(why.to_owned());
        let keys = document
            .get("keys")
            .and_then(|k| k.as_array())
            .ok_or_else(|| bad("the bundle has no keys array"))?;
        if keys.len() > MAX_KEYS {
            return Err(bad("the bundle holds more than 256 keys"));
        }
        let mut bundle = Self {
            x509_authorities: Vec::new(),
            jwt_authorities: Vec::new(),
            jwt_jwks: Vec::new(),
            sequence: document
                .get("spiffe_sequence")
                .and_then(|s| s.as_u64())
                .unwrap_or(0),
            refresh_hint: document.get("spiffe_refresh_hint").and_then(|h| h.as_u64()),
        };
        for key in keys {
            match key.get("use").and_then(|u| u.as_str()) {
                Some("x509-svid") => {
                    let Some([cert]) = key.get("x5c").and_then(|c| c.as_array()).map(Vec::as_slice)
                    else {
                        continue;
                    };
                    let der = cert
                        .as_str()
                        .and_then(|c| base64::engine::general_purpose::STANDARD.decode(c).ok())
                        .ok_or_else(|| bad("an x509-svid key's certificate is not base64"))?;
                    crate::not_after(&der)
                        .map_err(|_| bad("an x509-svid key's certificate is unreadable"))?;
                    bundle.x509_authorities.push(der);
                }
                Some("jwt-svid") => {
                    let Some(kid) = key.get("kid").and_then(|k| k.as_str()) else {
                        continue;
                    };
                    let mut bare = key.clone();
                    if let Some(members) = bare.as_object_mut() {
                        members.remove("use");
                        members.remove("kid");
                    }
                    if let Ok(public) = PublicJwk::from_json(&bare)
                        && !kid.is_empty()
                    {
                        bundle.jwt_authorities.push((kid.to_owned(), public));
                        bundle.jwt_jwks.push(key.clone());
                    }
                }
                _ => {}
            }
        }
        Ok(bundle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_keeps_the_keys_it_can_use_and_ignores_the_rest() {
        let key = agentauth_core::SigningKey::generate_p256();
        let mut jwk = key.public_jwk().to_json();
        jwk["use"] = "jwt-svid".into();
        jwk["kid"] = "k1".into();
        let mut no_kid = key.public_jwk().to_json();
        no_kid["use"] = "jwt-svid".into();
        let document = serde_json::json!({
            "keys": [
                jwk,
                no_kid,
                {"kty": "EC", "use": "x509-svid", "x5c": []},
                {"kty": "EC", "use": "something-else"},
            ],
            "spiffe_sequence": 7,
            "spiffe_refresh_hint": 1,
        });
        let bundle = SpiffeBundle::parse(document.to_string().as_bytes()).unwrap();
        assert_eq!(bundle.jwt_authorities.len(), 1);
        assert_eq!(bundle.jwt_authorities[0].0, "k1");
        assert_eq!(bundle.jwt_jwks[0]["kid"], "k1");
        assert!(bundle.x509_authorities.is_empty());
        assert_eq!(bundle.sequence, 7);
        assert_eq!(bundle.refresh_hint, Some(1));
    }

    #[test]
    fn a_bundle_without_keys_with_a_broken_certificate_or_too_large_is_refused() {
        assert!(SpiffeBundle::parse(b"{}").is_err());
        assert!(SpiffeBundle::parse(b"not json").is_err());
        let bad = serde_json::json!({"keys": [{"use": "x509-svid", "x5c": ["AAAA"]}]});
        assert!(SpiffeBundle::parse(bad.to_string().as_bytes()).is_err());
        assert!(SpiffeBundle::parse(&vec![b' '; MAX_BUNDLE_BYTES + 1]).is_err());
    }
}
