//! RFC 7523 `private_key_jwt` client assertions: what an agent signs to
//! authenticate at the token endpoint, and the checks the authority runs on it.

use serde::{Deserialize, Serialize};

use crate::jws::typ_is;
use crate::{AssertionError, Compact, Header, JwsError, PublicJwk, SigningKey, sign_compact};

/// The `client_assertion_type` of RFC 7523 private_key_jwt.
pub const CLIENT_ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// How far ahead a client assertion's `exp` may lie unless configured
/// otherwise: one hour, what authlib's `PrivateKeyJWT` and Google-style
/// service-account libraries sign by default (openid-client signs 60 s).
/// Each `jti` is kept until its `exp`, so a long lifetime does not open replay.
pub const DEFAULT_MAX_ASSERTION_LIFETIME_SECS: i64 = 3600;
/// Tolerated skew on assertion times.
const ASSERTION_LEEWAY_SECS: i64 = 30;
/// Longest accepted `jti`.
const MAX_JTI_LEN: usize = 256;

/// The claims of a client assertion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientAssertionClaims {
    /// The client ID.
    pub iss: String,
    /// The client ID again.
    pub sub: String,
    /// The authority (issuer URL or endpoint URL); a string or an array.
    pub aud: Audience,
    /// Expiry.
    pub exp: i64,
    /// Issue time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Single-use ID.
    #[serde(default)]
    pub jti: String,
}

/// A JWT `aud`: one string or a list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Audience {
    /// One audience.
    One(String),
    /// Several audiences.
    Many(Vec<String>),
}

impl Audience {
    fn any(&self, accept: impl Fn(&str) -> bool) -> bool {
        match self {
            Self::One(a) => accept(a),
            Self::Many(list) => list.len() <= 8 && list.iter().any(|a| accept(a)),
        }
    }
}

/// What the authority accepts in a client assertion.
#[derive(Debug, Clone)]
pub struct ClientAssertionRules<'a> {
    /// Values `aud` may take: the issuer, plus endpoint URLs unless strict.
    pub audiences: &'a [String],
    /// Current time.
    pub now: i64,
    /// How far ahead of `now` `exp` may lie (plus a small skew).
    pub max_lifetime_secs: i64,
}

#[derive(Deserialize)]
struct Issuer {
    iss: String,
}

/// A client assertion whose header passed the allow-list and whose claimed
/// client is known, but whose signature is not yet checked.
#[derive(Debug)]
pub struct ClientAssertion<'a> {
    compact: Compact<'a>,
    /// The `iss` the assertion claims; only a lookup key until verified.
    pub claimed_client: String,
}

impl<'a> ClientAssertion<'a> {
    /// Parses the assertion: allowed `alg`, `typ` absent, `JWT` or
    /// `client-authentication+jwt`, and an `iss` to look the key up by.
    pub fn parse(token: &'a str) -> Result<Self, AssertionError> {
        let compact = Compact::parse(token, |typ| {
            typ.is_none() || typ_is(typ, "jwt") || typ_is(typ, "client-authentication+jwt")
        })?;
        let Issuer { iss } = compact.peek_claims()?;
        if iss.len() > 2048 {
            return Err(JwsError::BadClaims("iss is too long".into()).into());
        }
        Ok(Self {
            compact,
            claimed_client: iss,
        })
    }

    /// Verifies the signature with the client's registered key, then every claim rule.
    pub fn verify(
        &self,
        key: &PublicJwk,
        rules: &ClientAssertionRules<'_>,
    ) -> Result<ClientAssertionClaims, AssertionError> {
        let claims: ClientAssertionClaims = self.compact.verify(key)?;
        if claims.iss != claims.sub || claims.iss != self.claimed_client {
            return Err(AssertionError::SubjectMismatch);
        }
        if !claims.aud.any(|a| rules.audiences.iter().any(|ok| ok == a)) {
            return Err(AssertionError::AudienceNotAccepted);
        }
        if claims.exp + ASSERTION_LEEWAY_SECS <= rules.now {
            return Err(AssertionError::Expired);
        }
        if claims.exp > rules.now + rules.max_lifetime_secs + ASSERTION_LEEWAY_SECS {
            return Err(AssertionError::LifetimeTooLong {
                ahead_secs: claims.exp - rules.now,
                max_secs: rules.max_lifetime_secs,
            });
        }
        let future = |t: Option<i64>| t.is_some_and(|t| t - ASSERTION_LEEWAY_SECS > rules.now);
        if future(claims.nbf) || future(claims.iat) {
            return Err(AssertionError::NotYetValid);
        }
        if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
            return Err(AssertionError::BadJti);
        }
        Ok(claims)
    }
}

impl ClientAssertionClaims {
    /// Signs a fresh assertion for `client_id` addressed to `audience`, valid 60 s.
    pub fn sign(
        key: &SigningKey,
        client_id: &str,
        audience: &str,
        jti: String,
        now: i64,
    ) -> String {
        let claims = Self {
            iss: client_id.to_owned(),
            sub: client_id.to_owned(),
            aud: Audience::One(audience.to_owned()),
            exp: now + 60,
            iat: Some(now),
            nbf: None,
            jti,
        };
        let header = Header {
            alg: key.alg(),
            typ: None,
            kid: Some(key.public_jwk().thumbprint().0),
            jwk: None,
        };
        sign_compact(&header, &claims, key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLIENT: &str = "spiffe://agentauth.local/agent/reader";
    const ISSUER: &str = "http://127.0.0.1:8080";

    fn rules(now: i64) -> (Vec<String>, i64) {
        (
            vec![ISSUER.to_owned(), format!("{ISSUER}/oauth/token")],
            now,
        )
    }

    fn verify(
        token: &str,
        key: &SigningKey,
        now: i64,
    ) -> Result<ClientAssertionClaims, AssertionError> {
        let (audiences, now) = rules(now);
        ClientAssertion::parse(token)?.verify(
            &key.public_jwk(),
            &ClientAssertionRules {
                audiences: &audiences,
                now,
                max_lifetime_secs: 300,
            },
        )
    }

    fn custom(key: &SigningKey, edit: impl FnOnce(&mut serde_json::Value)) -> String {
        let mut claims = serde_json::json!({"iss": CLIENT, "sub": CLIENT, "aud": ISSUER, "exp": 1060, "iat": 1000, "jti": "a"});
        edit(&mut claims);
        sign_compact(
            &Header {
                alg: key.alg(),
                typ: None,
                kid: None,
                jwk: None,
            },
            &claims,
            key,
        )
    }

    #[test]
    fn a_fresh_assertion_verifies() {
        let key = SigningKey::generate_ed25519();
        let token = ClientAssertionClaims::sign(&key, CLIENT, ISSUER, "j".into(), 1_000);
        assert_eq!(
            ClientAssertion::parse(&token).unwrap().claimed_client,
            CLIENT
        );
        assert_eq!(verify(&token, &key, 1_000).unwrap().jti, "j");
    }

    #[test]
    fn each_claim_rule_is_enforced() {
        let key = SigningKey::generate_ed25519();
        type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
        let cases: Vec<(Edit, AssertionError)> = vec![
            (
                Box::new(|c| c["sub"] = "spiffe://agentauth.local/agent/x".into()),
                AssertionError::SubjectMismatch,
            ),
            (
                Box::new(|c| c["aud"] = "http://elsewhere".into()),
                AssertionError::AudienceNotAccepted,
            ),
            (Box::new(|c| c["exp"] = 900.into()), AssertionError::Expired),
            (
                Box::new(|c| c["exp"] = 1_400.into()),
                AssertionError::LifetimeTooLong {
                    ahead_secs: 400,
                    max_secs: 300,
                },
            ),
            (
                Box::new(|c| c["iat"] = 1_100.into()),
                AssertionError::NotYetValid,
            ),
            (Box::new(|c| c["jti"] = "".into()), AssertionError::BadJti),
        ];
        for (edit, expected) in cases {
            assert_eq!(
                verify(&custom(&key, edit), &key, 1_000).unwrap_err(),
                expected
            );
        }
        let array_aud = custom(&key, |c| {
            c["aud"] = serde_json::json!(["x", format!("{ISSUER}/oauth/token")])
        });
        assert!(verify(&array_aud, &key, 1_000).is_ok());
    }

    #[test]
    fn the_lifetime_bound_is_the_rules_own_with_a_small_skew() {
        let key = SigningKey::generate_ed25519();
        let (audiences, now) = rules(1_000);
        let hour = custom(&key, |c| c["exp"] = (1_000 + 3_600).into());
        let with_max = |max_lifetime_secs| {
            ClientAssertion::parse(&hour).unwrap().verify(
                &key.public_jwk(),
                &ClientAssertionRules {
                    audiences: &audiences,
                    now,
                    max_lifetime_secs,
                },
            )
        };
        assert!(with_max(DEFAULT_MAX_ASSERTION_LIFETIME_SECS).is_ok());
        assert!(with_max(3_600 - ASSERTION_LEEWAY_SECS).is_ok());
        let err = with_max(600).unwrap_err();
        assert_eq!(
            err,
            AssertionError::LifetimeTooLong {
                ahead_secs: 3_600,
                max_secs: 600
            }
        );
        assert!(err.to_string().contains("3600 s ahead"), "{err}");
    }

    #[test]
    fn an_ed25519_named_assertion_verifies_and_an_es256_header_on_an_ed25519_key_does_not() {
        let key = SigningKey::generate_ed25519();
        let claims = serde_json::json!({"iss": CLIENT, "sub": CLIENT, "aud": ISSUER, "exp": 1060, "iat": 1000, "jti": "a"});
        let sign = |alg| {
            let header = Header {
                alg,
                typ: None,
                kid: None,
                jwk: None,
            };
            sign_compact(&header, &claims, &key)
        };
        assert!(verify(&sign(crate::JwsAlg::Ed25519), &key, 1_000).is_ok());
        assert_eq!(
            verify(&sign(crate::JwsAlg::ES256), &key, 1_000).unwrap_err(),
            AssertionError::Jws(JwsError::AlgorithmKeyMismatch("ES256"))
        );
    }

    #[test]
    fn an_assertion_signed_by_another_key_is_refused() {
        let key = SigningKey::generate_ed25519();
        let thief = SigningKey::generate_ed25519();
        let token = ClientAssertionClaims::sign(&thief, CLIENT, ISSUER, "j".into(), 1_000);
        assert_eq!(
            verify(&token, &key, 1_000).unwrap_err(),
            AssertionError::Jws(JwsError::BadSignature)
        );
    }
}
