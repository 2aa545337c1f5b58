//! The access token profile (RFC 9068): claims, the `cnf` key binding, the
//! `act` delegation chain, and the verification steps in DESIGN.md order.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::jws::typ_is;
use crate::{Compact, Jkt, PublicJwk, Scope, SpiffeId, TaskId, TokenError};

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
    pub sub: SpiffeId,
    /// The one recipient agent's SPIFFE ID.
    pub aud: SpiffeId,
    /// The presenter, the agent that sends the request.
    pub client_id: SpiffeId,
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
    pub act: Option<Actor>,
    /// The task this token belongs to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<TaskId>,
    /// The stated intent of the task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// The original request that started the task, or its digest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rctx: Option<String>,
}

/// One link of the RFC 8693 §4.1 delegation chain: the agent acting now and,
/// nested, the one that acted before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The actor's SPIFFE ID.
    pub sub: SpiffeId,
    /// The previous actor, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub act: Option<Box<Actor>>,
}

impl Actor {
    /// The actors of the chain that starts here, current first, at most 32.
    pub fn chain(&self) -> impl Iterator<Item = &SpiffeId> {
        let mut next = Some(self);
        std::iter::from_fn(move || {
            let actor = next?;
            next = actor.act.as_deref();
            Some(&actor.sub)
        })
        .take(MAX_CHAIN_WALK)
    }
}

/// The confirmation claim binding a token to the presenter's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cnf {
    /// The public key itself, for HTTP message signatures.
    pub jwk: Value,
    /// Its RFC 7638 thumbprint, for DPoP.
    pub jkt: Jkt,
    /// RFC 8705: the SHA-256 thumbprint of the client certificate the token
    /// was issued to; such a token is accepted only over a TLS connection
    /// whose client presents that certificate.
    #[serde(rename = "x5t#S256", default, skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<String>,
}

impl Cnf {
    /// The confirmation for `key`.
    pub fn for_key(key: &PublicJwk) -> Self {
        Self {
            jwk: key.to_json(),
            jkt: key.thumbprint(),
            x5t_s256: None,
        }
    }

    /// The confirmation for a client certificate (DER) and its key.
    pub fn for_certificate(key: &PublicJwk, certificate_der: &[u8]) -> Self {
        Self {
            x5t_s256: Some(certificate_thumbprint(certificate_der)),
            ..Self::for_key(key)
        }
    }
}

/// A certificate's `x5t#S256`: the base64url SHA-256 of its DER.
pub fn certificate_thumbprint(certificate_der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, certificate_der);
    crate::b64url_encode(digest.as_ref())
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

    /// The actors of the delegation chain without copying, current first, at
    /// most 32: the `sub` of each nested `act`. Empty for a token that was
    /// never exchanged.
    pub fn actors(&self) -> impl Iterator<Item = &SpiffeId> {
        self.act.iter().flat_map(Actor::chain)
    }

    /// The actors as text, current first, separated by spaces (the audit
    /// record's `chain`).
    pub fn actor_chain_text(&self) -> String {
        let mut text = String::new();
        for (i, actor) in self.actors().enumerate() {
            if i > 0 {
                text.push(' ');
            }
            text.push_str(actor.as_str());
        }
        text
    }

    /// The `act` claim of a token exchanged from this one by `actor`
    /// (RFC 8693 §4.1): the new actor outermost, this token's chain — or, for a
    /// first hop, its presenter — nested inside.
    pub fn delegated_act(&self, actor: &SpiffeId) -> Actor {
        let previous = self.act.clone().unwrap_or_else(|| Actor {
            sub: self.client_id.clone(),
            act: None,
        });
        Actor {
            sub: actor.clone(),
            act: Some(Box::new(previous)),
        }
    }
}

/// Deepest `act` nesting any code walks, whatever a token claims.
const MAX_CHAIN_WALK: usize = 32;

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
        Some(me) if claims.aud.as_str() != me => Err(TokenError::AudienceMismatch(
            claims.aud.as_str().chars().take(100).collect(),
        )),
        _ => Ok(()),
    }
}

/// `exp`, `nbf` and `iat` against the expected time and leeway.
pub(crate) fn check_time(
    claims: &AccessClaims,
    expect: &TokenExpectations<'_>,
) -> Result<(), TokenError> {
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

    fn id(uri: &str) -> SpiffeId {
        SpiffeId::parse(uri).unwrap()
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: ISS.into(),
            sub: id("spiffe://agentauth.local/agent/reader"),
            aud: id(AUD),
            client_id: id("spiffe://agentauth.local/agent/reader"),
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
        c.aud = id("spiffe://agentauth.local/agent/other");
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

    fn id(name: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://td/agent/{name}")).unwrap()
    }

    fn token(client: &str, act: Option<Actor>) -> AccessClaims {
        AccessClaims {
            iss: "i".into(),
            sub: id("planner"),
            aud: id("x"),
            client_id: id(client),
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

    fn names(claims: &AccessClaims) -> Vec<String> {
        claims
            .actors()
            .map(|a| a.agent_name().unwrap().to_string())
            .collect()
    }

    #[test]
    fn a_first_exchange_nests_the_presenter_under_the_new_actor() {
        let first = token("planner", None);
        assert!(names(&first).is_empty());
        let act = first.delegated_act(&id("executor"));
        assert_eq!(
            serde_json::to_value(&act).unwrap(),
            json!({"sub": "spiffe://td/agent/executor", "act": {"sub": "spiffe://td/agent/planner"}})
        );
        let second = token("executor", Some(act));
        assert_eq!(names(&second), ["executor", "planner"]);
        assert_eq!(
            second.actor_chain_text(),
            "spiffe://td/agent/executor spiffe://td/agent/planner"
        );
        let deeper = second.delegated_act(&id("database"));
        assert_eq!(
            names(&token("database", Some(deeper))),
            ["database", "executor", "planner"]
        );
    }

    #[test]
    fn an_act_chain_with_a_malformed_actor_does_not_parse() {
        let mut value = serde_json::to_value(token("planner", None)).unwrap();
        value["act"] = json!({"sub": "spiffe://td/agent/a", "act": {"sub": "not a spiffe id"}});
        assert!(serde_json::from_value::<AccessClaims>(value.clone()).is_err());
        value["act"] = json!({"sub": "spiffe://td/agent/a", "act": {"sub": "spiffe://td/agent/b"}});
        let claims: AccessClaims = serde_json::from_value(value).unwrap();
        assert_eq!(names(&claims), ["a", "b"]);
    }

    #[test]
    fn walking_a_deep_chain_stops_at_32_actors() {
        let mut act = Actor {
            sub: id("a0"),
            act: None,
        };
        for i in 1..40 {
            act = Actor {
                sub: id(&format!("a{i}")),
                act: Some(Box::new(act)),
            };
        }
        assert_eq!(token("a39", Some(act)).actors().count(), 32);
    }
}
