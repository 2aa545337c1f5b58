//! The access token profile (RFC 9068): claims, the `cnf` key binding, the
//! `act` delegation chain, and the verification steps in DESIGN.md order.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jws::typ_is;
use crate::{Compact, Jkt, PublicJwk, Scope, TokenError};

/// The `typ` header of every agentauth access token (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The clock skew verifiers tolerate on `exp`, `nbf` and `iat`.
pub const DEFAULT_LEEWAY_SECS: i64 = 30;

/// The claims of an agentauth access token, per the DESIGN.md token table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// The authority's issuer URL.
    pub iss: String,
    /// On whose behalf: the initiating agent.
    pub sub: String,
    /// The one recipient agent's SPIFFE ID.
    pub aud: String,
    /// The presenter, the agent that sends the request.
    pub client_id: String,
    /// The granted permissions.
    pub scope: Scope,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// Not valid before.
    pub nbf: i64,
    /// Unique token ID, the handle for revocation.
    pub jti: String,
    /// The presenter's key (RFC 7800 `jwk` and RFC 9449 `jkt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnf: Option<Cnf>,
    /// The delegation chain (RFC 8693 §4.1), current actor outermost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Value>,
    /// The task this token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<String>,
    /// The stated intent of the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The original request that started the task, or its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rctx: Option<String>,
}

/// The confirmation claim binding a token to the presenter's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cnf {
    /// The public key itself, for HTTP message signatures.
    pub jwk: Value,
    /// Its RFC 7638 thumbprint, for DPoP.
    pub jkt: Jkt,
}

impl Cnf {
    /// The confirmation for `key`.
    pub fn for_key(key: &PublicJwk) -> Self {
        Self {
            jwk: key.to_json(),
            jkt: key.thumbprint(),
        }
    }
}

/// What a verifier demands of a token beyond a good signature.
#[derive(Debug, Clone)]
pub struct TokenExpectations<'a> {
    /// The exact issuer URL.
    pub issuer: &'a str,
    /// The verifier's own SPIFFE ID; `None` only at the authority's introspection,
    /// which checks audience against the caller separately.
    pub audience: Option<&'a str>,
    /// Current time, seconds since the epoch.
    pub now: i64,
    /// Tolerated clock skew in seconds.
    pub leeway: i64,
}

impl AccessClaims {
    /// The token lifetime in seconds.
    pub fn lifetime(&self) -> i64 {
        self.exp - self.iat
    }

    /// The actors of the delegation chain, current first: the `sub` of each
    /// nested `act`. Empty for a token that was never exchanged.
    pub fn actor_chain(&self) -> Vec<String> {
        actor_chain_of(self.act.as_ref())
    }

    /// The same actors without copying, current first, at most 32.
    pub fn actors(&self) -> impl Iterator<Item = &str> {
        let mut act = self.act.as_ref();
        std::iter::from_fn(move || {
            let sub = act?.get("sub")?.as_str()?;
            act = act?.get("act");
            Some(sub)
        })
        .take(MAX_CHAIN_WALK)
    }

    /// The `act` claim of a token exchanged from this one by `actor`
    /// (RFC 8693 §4.1): the new actor outermost, this token's chain — or, for a
    /// first hop, its presenter — nested inside.
    pub fn delegated_act(&self, actor: &str) -> Value {
        let previous = self
            .act
            .clone()
            .unwrap_or_else(|| serde_json::json!({ "sub": self.client_id }));
        serde_json::json!({ "sub": actor, "act": previous })
    }
}

/// Deepest `act` nesting any code walks, whatever a token claims.
const MAX_CHAIN_WALK: usize = 32;

/// The actors an RFC 8693 `act` claim names, current actor first.
pub fn actor_chain_of(act: Option<&Value>) -> Vec<String> {
    let mut chain = Vec::new();
    let mut act = act;
    while let Some(a) = act {
        match a.get("sub").and_then(Value::as_str) {
            Some(sub) if chain.len() < MAX_CHAIN_WALK => chain.push(sub.to_owned()),
            _ => break,
        }
        act = a.get("act");
    }
    chain
}

/// First step of verification: structure, `typ: at+jwt` and the `alg` allow-list,
/// all before any signature work. The caller then finds the key by `kid`.
pub fn parse_access_token(token: &str) -> Result<Compact<'_>, TokenError> {
    Ok(Compact::parse(token, |typ| typ_is(typ, ACCESS_TOKEN_TYP))?)
}

/// Remaining steps in DESIGN.md order: signature, issuer, audience, time.
pub fn verify_access_token(
    compact: &Compact<'_>,
    key: &PublicJwk,
    expect: &TokenExpectations<'_>,
) -> Result<AccessClaims, TokenError> {
    let claims: AccessClaims = compact.verify(key)?;
    check_issuer(&claims, expect)?;
    check_audience(&claims, expect)?;
    check_time(&claims, expect)?;
    Ok(claims)
}

fn check_issuer(claims: &AccessClaims, expect: &TokenExpectations<'_>) -> Result<(), TokenError> {
    if claims.iss == expect.issuer {
        Ok(())
    } else {
        Err(TokenError::IssuerMismatch(
            claims.iss.chars().take(100).collect(),
        ))
    }
}

fn check_audience(claims: &AccessClaims, expect: &TokenExpectations<'_>) -> Result<(), TokenError> {
    match expect.audience {
        Some(me) if claims.aud != me => Err(TokenError::AudienceMismatch(
            claims.aud.chars().take(100).collect(),
        )),
        _ => Ok(()),
    }
}

fn check_time(claims: &AccessClaims, expect: &TokenExpectations<'_>) -> Result<(), TokenError> {
    if claims.exp + expect.leeway <= expect.now {
        return Err(TokenError::Expired);
    }
    if claims.nbf - expect.leeway > expect.now || claims.iat - expect.leeway > expect.now {
        return Err(TokenError::NotYetValid);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Header, JwsError, SigningKey, sign_compact};

    const ISS: &str = "http://127.0.0.1:8080";
    const AUD: &str = "spiffe://agentauth.local/agent/customer";

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: ISS.into(),
            sub: "spiffe://agentauth.local/agent/reader".into(),
            aud: AUD.into(),
            client_id: "spiffe://agentauth.local/agent/reader".into(),
            scope: Scope::parse("read:customer").unwrap(),
            exp: now + 300,
            iat: now,
            nbf: now,
            jti: "j1".into(),
            cnf: None,
            act: None,
            txn: None,
            purpose: None,
            rctx: None,
        }
    }

    fn sign(key: &SigningKey, c: &AccessClaims) -> String {
        let header = Header {
            alg: key.alg(),
            typ: Some(ACCESS_TOKEN_TYP.into()),
            kid: Some("k".into()),
            jwk: None,
        };
        sign_compact(&header, c, key)
    }

    fn check(token: &str, key: &SigningKey, now: i64) -> Result<AccessClaims, TokenError> {
        let expect = TokenExpectations {
            issuer: ISS,
            audience: Some(AUD),
            now,
            leeway: DEFAULT_LEEWAY_SECS,
        };
        verify_access_token(&parse_access_token(token)?, &key.public_jwk(), &expect)
    }

    #[test]
    fn a_good_token_verifies_and_round_trips_its_claims() {
        let key = SigningKey::generate_ed25519();
        let c = claims(1_000);
        assert_eq!(check(&sign(&key, &c), &key, 1_000).unwrap(), c);
    }

    #[test]
    fn issuer_audience_and_time_are_each_enforced() {
        let key = SigningKey::generate_ed25519();
        let mut c = claims(1_000);
        c.iss = "http://evil".into();
        assert!(matches!(
            check(&sign(&key, &c), &key, 1_000),
            Err(TokenError::IssuerMismatch(_))
        ));
        let mut c = claims(1_000);
        c.aud = "spiffe://agentauth.local/agent/other".into();
        assert!(matches!(
            check(&sign(&key, &c), &key, 1_000),
            Err(TokenError::AudienceMismatch(_))
        ));
        let c = claims(1_000);
        assert_eq!(
            check(&sign(&key, &c), &key, 1_300 + DEFAULT_LEEWAY_SECS),
            Err(TokenError::Expired)
        );
        assert!(check(&sign(&key, &c), &key, 1_300 + DEFAULT_LEEWAY_SECS - 1).is_ok());
        assert_eq!(
            check(&sign(&key, &c), &key, 1_000 - DEFAULT_LEEWAY_SECS - 1),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn a_token_without_at_jwt_typ_is_refused() {
        let key = SigningKey::generate_ed25519();
        let header = Header {
            alg: key.alg(),
            typ: Some("JWT".into()),
            kid: Some("k".into()),
            jwk: None,
        };
        let token = sign_compact(&header, &claims(1_000), &key);
        assert!(matches!(
            check(&token, &key, 1_000),
            Err(TokenError::Jws(JwsError::TypeNotAllowed(_)))
        ));
    }

    #[test]
    fn a_token_with_an_array_audience_is_refused() {
        let key = SigningKey::generate_ed25519();
        let mut value = serde_json::to_value(claims(1_000)).unwrap();
        value["aud"] = serde_json::json!([AUD, "spiffe://agentauth.local/agent/x"]);
        let header = Header {
            alg: key.alg(),
            typ: Some(ACCESS_TOKEN_TYP.into()),
            kid: Some("k".into()),
            jwk: None,
        };
        let token = sign_compact(&header, &value, &key);
        assert!(matches!(
            check(&token, &key, 1_000),
            Err(TokenError::Jws(JwsError::BadClaims(_)))
        ));
    }
}

#[cfg(test)]
mod chain_tests {
    use super::*;
    use serde_json::json;

    fn token(client: &str, act: Option<Value>) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: "planner".into(),
            aud: "x".into(),
            client_id: client.into(),
            scope: Scope::default(),
            exp: 0,
            iat: 0,
            nbf: 0,
            jti: "j".into(),
            cnf: None,
            act,
            txn: None,
            purpose: None,
            rctx: None,
        }
    }

    #[test]
    fn a_first_exchange_nests_the_presenter_under_the_new_actor() {
        let first = token("planner", None);
        assert_eq!(first.actor_chain(), Vec::<String>::new());
        let act = first.delegated_act("executor");
        assert_eq!(act, json!({"sub": "executor", "act": {"sub": "planner"}}));
        let second = token("executor", Some(act));
        assert_eq!(second.actor_chain(), ["executor", "planner"]);
        assert!(second.actors().eq(["executor", "planner"]));
        let deeper = second.delegated_act("database");
        assert_eq!(
            token("database", Some(deeper)).actor_chain(),
            ["database", "executor", "planner"]
        );
    }
}
