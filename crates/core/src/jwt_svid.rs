//! JWT-SVIDs as the SPIFFE JWT-SVID specification defines them: a compact
//! JWS whose header holds only `alg` (ES256 here; the specification allows
//! no EdDSA), `kid` (always present, as every SPIFFE library needs) and
//! `typ` `JWT`, and whose claims are `sub` (the SPIFFE ID), one `aud`, `exp`
//! and `iat`. One minted for a delegated task also carries the RFC 8693
//! `act` chain and the task's `txn`: `sub` is then the agent on whose behalf
//! and `act.sub` the agent acting. Validation checks the header before
//! anything else.

use serde::{Deserialize, Serialize};

use crate::assertion::Audience;
use crate::{
    Actor, Compact, Header, JwsAlg, PublicJwk, SigningKey, SpiffeId, TaskId, b64url_decode,
    sign_compact,
};

/// Clock skew tolerated on `exp`.
const LEEWAY_SECS: i64 = 30;

/// The claims of a JWT-SVID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JwtSvidClaims {
    /// The SPIFFE ID it identifies.
    pub sub: SpiffeId,
    /// Who it is for: one audience when minted here.
    pub aud: Audience,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time.
    #[serde(default)]
    pub iat: i64,
    /// The delegation chain (RFC 8693 §4.1), the acting agent outermost:
    /// present only on a JWT-SVID minted for a delegated task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Actor>,
    /// The delegated task the JWT-SVID was minted for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<TaskId>,
}

/// Why a JWT-SVID is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtSvidError {
    /// Not a compact JWS within bounds, or a header with anything but
    /// `alg`, `kid` and `typ`.
    #[error("not a JWT-SVID: {0}")]
    Malformed(String),
    /// `alg` is not ES256 (JWT-SVIDs allow no EdDSA and no HMAC).
    #[error("a JWT-SVID is signed with ES256, not {0}")]
    Algorithm(String),
    /// No `kid`, or one the bundle does not hold.
    #[error("the JWT-SVID's kid names no key of the bundle")]
    UnknownKey,
    /// The signature does not verify.
    #[error("the JWT-SVID's signature does not verify")]
    Signature,
    /// `aud` is empty or does not name the expected audience.
    #[error("the JWT-SVID is not addressed to {0}")]
    Audience(String),
    /// `exp` has passed.
    #[error("the JWT-SVID has expired")]
    Expired,
}

/// Signs a JWT-SVID for `sub` addressed to `audience` (one value as a
/// string, several as an array), valid `lifetime_secs` from `now`, with the
/// P-256 `key` named `kid`.
pub fn mint_jwt_svid(
    key: &SigningKey,
    kid: &str,
    sub: &SpiffeId,
    audience: &[String],
    now: i64,
    lifetime_secs: i64,
) -> String {
    let claims = JwtSvidClaims {
        sub: sub.clone(),
        aud: match audience {
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        },
        exp: now + lifetime_secs,
        iat: now,
        act: None,
        txn: None,
    };
    sign_jwt_svid(key, kid, &claims)
}

/// Signs `claims` as a JWT-SVID with the P-256 `key` named `kid`: the
/// header holds `alg`, `kid` and `typ` and nothing else.
pub fn sign_jwt_svid(key: &SigningKey, kid: &str, claims: &JwtSvidClaims) -> String {
    let header = Header {
        alg: JwsAlg::ES256,
        typ: Some("JWT".into()),
        kid: Some(kid.to_owned()),
        jwk: None,
    };
    sign_compact(&header, claims, key)
}

/// Validates `token` as a JWT-SVID for `audience` at `now` against the
/// bundle `keys` (`kid`, key) of the trust domain it must come from; returns
/// its claims. The caller checks that `sub` is in that trust domain.
pub fn validate_jwt_svid(
    token: &str,
    keys: &[(String, PublicJwk)],
    audience: &str,
    now: i64,
) -> Result<JwtSvidClaims, JwtSvidError> {
    let compact = Compact::parse(token, |typ| matches!(typ, None | Some("JWT" | "JOSE")))
        .map_err(|e| JwtSvidError::Malformed(e.to_string()))?;
    if compact.header.alg != JwsAlg::ES256 {
        return Err(JwtSvidError::Algorithm(compact.header.alg.as_str().into()));
    }
    only_known_header_members(token)?;
    let kid = compact
        .header
        .kid
        .as_deref()
        .ok_or(JwtSvidError::UnknownKey)?;
    let key = keys
        .iter()
        .find(|(k, _)| k == kid)
        .map(|(_, key)| key)
        .ok_or(JwtSvidError::UnknownKey)?;
    let claims: JwtSvidClaims = compact.verify(key).map_err(|e| match e {
        crate::JwsError::BadSignature | crate::JwsError::AlgorithmKeyMismatch(_) => {
            JwtSvidError::Signature
        }
        other => JwtSvidError::Malformed(other.to_string()),
    })?;
    let addressed = match &claims.aud {
        Audience::One(a) => a == audience,
        Audience::Many(list) => !list.is_empty() && list.iter().any(|a| a == audience),
    };
    if !addressed {
        return Err(JwtSvidError::Audience(audience.chars().take(200).collect()));
    }
    if claims.exp + LEEWAY_SECS <= now {
        return Err(JwtSvidError::Expired);
    }
    Ok(claims)
}

/// The JWT-SVID header may hold `alg`, `kid` and `typ` and nothing else.
fn only_known_header_members(token: &str) -> Result<(), JwtSvidError> {
    let header = token.split('.').next().unwrap_or_default();
    let members: serde_json::Map<String, serde_json::Value> = b64url_decode(header)
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or_else(|| JwtSvidError::Malformed("unreadable header".into()))?;
    match members
        .keys()
        .find(|k| !matches!(k.as_str(), "alg" | "kid" | "typ"))
    {
        Some(other) => Err(JwtSvidError::Malformed(format!(
            "the header holds {}, beyond alg, kid and typ",
            other.chars().take(40).collect::<String>()
        ))),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::b64url_encode;

    const NOW: i64 = 1_800_000_000;

    fn id() -> SpiffeId {
        SpiffeId::parse("spiffe://agentauth.local/agent/reader").unwrap()
    }

    fn bundle(key: &SigningKey) -> Vec<(String, PublicJwk)> {
        vec![("k1".into(), key.public_jwk())]
    }

    #[test]
    fn a_minted_svid_has_only_alg_kid_typ_and_validates_for_its_audience() {
        let key = SigningKey::generate_p256();
        let token = mint_jwt_svid(
            &key,
            "k1",
            &id(),
            &["spiffe://agentauth.local/agent/db".to_owned()],
            NOW,
            300,
        );
        let header: serde_json::Value =
            serde_json::from_slice(&b64url_decode(token.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k1"})
        );
        let claims = validate_jwt_svid(
            &token,
            &bundle(&key),
            "spiffe://agentauth.local/agent/db",
            NOW,
        )
        .unwrap();
        assert_eq!(claims.sub, id());
        assert_eq!(claims.exp, NOW + 300);
        assert_eq!(
            validate_jwt_svid(
                &token,
                &bundle(&key),
                "spiffe://agentauth.local/agent/x",
                NOW
            ),
            Err(JwtSvidError::Audience(
                "spiffe://agentauth.local/agent/x".into()
            ))
        );
        assert_eq!(
            validate_jwt_svid(
                &token,
                &bundle(&key),
                "spiffe://agentauth.local/agent/db",
                NOW + 331
            ),
            Err(JwtSvidError::Expired)
        );
        let other = SigningKey::generate_p256();
        assert_eq!(
            validate_jwt_svid(
                &token,
                &bundle(&other),
                "spiffe://agentauth.local/agent/db",
                NOW
            ),
            Err(JwtSvidError::Signature)
        );
        assert_eq!(
            validate_jwt_svid(&token, &[], "spiffe://agentauth.local/agent/db", NOW),
            Err(JwtSvidError::UnknownKey)
        );
    }

    #[test]
    fn eddsa_an_extra_header_member_or_a_missing_kid_is_refused() {
        let aud = "spiffe://agentauth.local/agent/db";
        let ed = SigningKey::generate_ed25519();
        let eddsa = mint_with(
            &ed,
            serde_json::json!({"alg": "EdDSA", "kid": "k1", "typ": "JWT"}),
        );
        assert!(matches!(
            validate_jwt_svid(&eddsa, &bundle(&ed), aud, NOW),
            Err(JwtSvidError::Algorithm(_))
        ));
        let key = SigningKey::generate_p256();
        let extra = mint_with(
            &key,
            serde_json::json!({"alg": "ES256", "kid": "k1", "typ": "JWT", "x5u": "http://evil"}),
        );
        assert!(matches!(
            validate_jwt_svid(&extra, &bundle(&key), aud, NOW),
            Err(JwtSvidError::Malformed(_))
        ));
        let no_kid = mint_with(&key, serde_json::json!({"alg": "ES256", "typ": "JWT"}));
        assert_eq!(
            validate_jwt_svid(&no_kid, &bundle(&key), aud, NOW),
            Err(JwtSvidError::UnknownKey)
        );
        let wrong_typ = mint_with(
            &key,
            serde_json::json!({"alg": "ES256", "kid": "k1", "typ": "at+jwt"}),
        );
        assert!(matches!(
            validate_jwt_svid(&wrong_typ, &bundle(&key), aud, NOW),
            Err(JwtSvidError::Malformed(_))
        ));
    }

    /// A token with `header` as given, valid claims, signed by `key`.
    fn mint_with(key: &SigningKey, header: serde_json::Value) -> String {
        let claims = serde_json::json!({
            "sub": "spiffe://agentauth.local/agent/reader",
            "aud": "spiffe://agentauth.local/agent/db",
            "exp": NOW + 300,
        });
        let input = format!(
            "{}.{}",
            b64url_encode(serde_json::to_vec(&header).unwrap()),
            b64url_encode(serde_json::to_vec(&claims).unwrap())
        );
        let signature = key.sign(input.as_bytes());
        format!("{input}.{}", b64url_encode(signature))
    }

    #[test]
    fn a_delegated_svid_carries_act_and_txn_in_its_claims_not_its_header() {
        let key = SigningKey::generate_p256();
        let planner = SpiffeId::parse("spiffe://agentauth.local/agent/planner").unwrap();
        let claims = JwtSvidClaims {
            sub: id(),
            aud: Audience::One("spiffe://agentauth.local/agent/db".into()),
            exp: NOW + 60,
            iat: NOW,
            act: Some(Actor {
                sub: planner.clone(),
                act: None,
            }),
            txn: Some("t-1".parse().unwrap()),
        };
        let token = sign_jwt_svid(&key, "k1", &claims);
        let header: serde_json::Value =
            serde_json::from_slice(&b64url_decode(token.split('.').next().unwrap()).unwrap())
                .unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "ES256", "typ": "JWT", "kid": "k1"})
        );
        let back = validate_jwt_svid(
            &token,
            &bundle(&key),
            "spiffe://agentauth.local/agent/db",
            NOW,
        )
        .unwrap();
        assert_eq!(back, claims);
        assert_eq!(back.act.unwrap().sub, planner);
    }
}
