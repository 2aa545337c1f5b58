//! Private signing keys (Ed25519, P-256): generation, private JWK import and
//! export, signing.

use std::fmt;
use std::sync::Arc;

use aws_lc_rs::encoding::{AsBigEndian, Curve25519SeedBin, EcPrivateKeyBin};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair,
};
use serde_json::{Value, json};

use crate::{Error, JwsAlg, KeyError, PublicJwk, b64url_decode, b64url_encode};

/// A private signing key: an agent's own key or the authority's token key.
/// It never leaves the process except as an explicitly exported private JWK,
/// and its `Debug` output shows only the public thumbprint.
#[derive(Clone)]
pub struct SigningKey {
    pair: Arc<Pair>,
    public: PublicJwk,
}

enum Pair {
    Ed25519(Ed25519KeyPair),
    P256(EcdsaKeyPair),
}

impl SigningKey {
    /// A fresh Ed25519 key, the default for agents and for the authority.
    pub fn generate_ed25519() -> Self {
        let pair = Ed25519KeyPair::generate().expect("the system RNG is available");
        Self::from_ed25519(pair)
    }

    /// A fresh P-256 key.
    pub fn generate_p256() -> Self {
        let pair = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
            .expect("the system RNG is available");
        Self::from_p256(pair)
    }

    fn from_ed25519(pair: Ed25519KeyPair) -> Self {
        let public =
            PublicJwk::ed25519(pair.public_key().as_ref()).expect("a generated key is valid");
        Self {
            pair: Arc::new(Pair::Ed25519(pair)),
            public,
        }
    }

    fn from_p256(pair: EcdsaKeyPair) -> Self {
        let point = pair.public_key().as_ref();
        let public =
            PublicJwk::p256(&point[1..33], &point[33..65]).expect("a generated key is valid");
        Self {
            pair: Arc::new(Pair::P256(pair)),
            public,
        }
    }

    /// Loads a private JWK (`d` present) as written by [`SigningKey::to_private_jwk`].
    pub fn from_private_jwk(value: &Value) -> Result<Self, Error> {
        let member = |name: &'static str| {
            value
                .get(name)
                .and_then(Value::as_str)
                .and_then(b64url_decode)
                .ok_or(KeyError::MissingMember(name))
        };
        match (
            value.get("kty").and_then(Value::as_str),
            value.get("crv").and_then(Value::as_str),
        ) {
            (Some("OKP"), Some("Ed25519")) => {
                let pair = Ed25519KeyPair::from_seed_and_public_key(&member("d")?, &member("x")?)
                    .map_err(|_| KeyError::Mismatch)?;
                Ok(Self::from_ed25519(pair))
            }
            (Some("EC"), Some("P-256")) => {
                let mut point = vec![0x04];
                point.extend(member("x")?);
                point.extend(member("y")?);
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &member("d")?,
                    &point,
                )
                .map_err(|_| KeyError::Mismatch)?;
                Ok(Self::from_p256(pair))
            }
            _ => Err(KeyError::UnsupportedType.into()),
        }
    }

    /// Exports the key as a private JWK. Handle the result like the key itself.
    pub fn to_private_jwk(&self) -> Value {
        let mut jwk = self.public.to_json();
        let d = match &*self.pair {
            Pair::Ed25519(p) => {
                let seed: Curve25519SeedBin<'_> = p
                    .seed()
                    .and_then(|s| s.as_be_bytes())
                    .expect("an Ed25519 key has a seed");
                b64url_encode(seed.as_ref())
            }
            Pair::P256(p) => {
                let scalar: EcPrivateKeyBin<'_> = p
                    .private_key()
                    .as_be_bytes()
                    .expect("a P-256 key has a scalar");
                b64url_encode(scalar.as_ref())
            }
        };
        jwk["d"] = json!(d);
        jwk
    }

    /// The matching public key.
    pub fn public_jwk(&self) -> PublicJwk {
        self.public.clone()
    }

    /// The JWS algorithm of this key.
    pub fn alg(&self) -> JwsAlg {
        self.public.alg()
    }

    /// Signs `message`; ES256 signatures are fixed-width r||s as JWS wants.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match &*self.pair {
            Pair::Ed25519(p) => p.sign(message).as_ref().to_vec(),
            Pair::P256(p) => p
                .sign(&SystemRandom::new(), message)
                .expect("ECDSA signing with a valid key succeeds")
                .as_ref()
                .to_vec(),
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SigningKey({}, jkt={})",
            self.alg().as_str(),
            self.public.thumbprint()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_jwk_round_trips_for_both_curves() {
        for key in [SigningKey::generate_ed25519(), SigningKey::generate_p256()] {
            let exported = key.to_private_jwk();
            assert!(exported.get("d").is_some());
            let loaded = SigningKey::from_private_jwk(&exported).unwrap();
            assert_eq!(loaded.public_jwk(), key.public_jwk());
            let sig = loaded.sign(b"msg");
            assert!(key.public_jwk().verify(b"msg", &sig));
            assert!(!key.public_jwk().verify(b"other", &sig));
        }
    }

    #[test]
    fn public_jwk_of_a_signing_key_has_no_private_part() {
        let key = SigningKey::generate_ed25519();
        assert!(key.public_jwk().to_json().get("d").is_none());
        assert!(!format!("{key:?}").contains(key.to_private_jwk()["d"].as_str().unwrap()));
    }

    #[test]
    fn mismatched_private_jwk_is_refused() {
        let a = SigningKey::generate_ed25519().to_private_jwk();
        let mut b = SigningKey::generate_ed25519().to_private_jwk();
        b["x"] = a["x"].clone();
        assert!(SigningKey::from_private_jwk(&b).is_err());
    }
}
