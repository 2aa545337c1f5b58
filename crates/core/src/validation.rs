//! The one answer to "is this presented access token still good?", shared by
//! every front door: the SDK's verifying layer, token exchange, introspection
//! and the authority's own API.
//!
//! The checks run in DESIGN.md order: structure with the `typ`/`alg`
//! allow-list, signature, issuer, audience, time, proof of possession and
//! replay (where the caller needs them), then revocation of the token, of the
//! key it is bound to, of its task and of every agent it names. What differs
//! between callers is only where the facts come from: the SDK answers from its
//! copy of the revocation feed, the authority from its store. Both implement
//! [`AuthorityView`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use aws_lc_rs::digest;
use http::request::Parts;
use thiserror::Error as ThisError;

use crate::{
    AccessClaims, Jkt, NonceCache, ProofError, PublicJwk, SpiffeId, TaskId, TokenError,
    TokenExpectations, parse_access_token, verify_access_token, verify_request_proof,
};

/// What a verifier knows of the authority: its signing keys and what has been
/// revoked. The SDK fills it from the JWKS and the revocation feed, the
/// authority from its key ring and store.
pub trait AuthorityView: Sync {
    /// Why the view could not answer (a store or network failure). A check
    /// that cannot ask fails closed with [`Rejection::View`].
    type Error: Send;

    /// The authority's public key with this `kid`, or `None` if it has none.
    fn signing_key(
        &self,
        kid: &str,
    ) -> impl Future<Output = Result<Option<PublicJwk>, Self::Error>> + Send;

    /// The first revoked thing among `subjects`, checked in the order
    /// token, key, task, agents; `None` if nothing is revoked. An agent counts
    /// as revoked when it is disabled, deleted or (if ephemeral) expired.
    fn revoked(
        &self,
        subjects: &RevocationSubjects<'_>,
    ) -> impl Future<Output = Result<Option<Revoked>, Self::Error>> + Send;
}

/// Everything whose revocation takes a token down with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevocationSubjects<'a> {
    /// The token itself. Revoking a token also revokes, at the authority,
    /// every token exchanged from it, so a descendant is found by its own ID.
    pub jti: &'a str,
    /// The thumbprint of the key the token is bound to (`cnf.jkt`).
    pub jkt: Option<&'a Jkt>,
    /// The task the token belongs to (`txn`).
    pub txn: Option<&'a TaskId>,
    /// Every agent the token names, each once: the subject, the presenter and
    /// every actor of the delegation chain.
    pub agents: Vec<&'a SpiffeId>,
}

impl<'a> RevocationSubjects<'a> {
    /// The subjects of `claims`.
    pub fn of(claims: &'a AccessClaims) -> Self {
        let mut agents: Vec<&SpiffeId> = vec![&claims.sub, &claims.client_id];
        for actor in claims.actors() {
            if !agents.contains(&actor) {
                agents.push(actor);
            }
        }
        if agents[0] == agents[1] {
            agents.remove(1);
        }
        Self {
            jti: &claims.jti,
            jkt: claims.cnf.as_ref().map(|c| &c.jkt),
            txn: claims.txn.as_ref(),
            agents,
        }
    }
}

/// What was found revoked.
#[derive(Debug, Clone, PartialEq, Eq, ThisError)]
pub enum Revoked {
    /// The token, or one it was exchanged from.
    #[error("the token has been revoked")]
    Token,
    /// The key the token is bound to.
    #[error("the key the token is bound to has been revoked")]
    Key,
    /// The token's task (completed or revoked).
    #[error("the task {0} has been revoked")]
    Task(TaskId),
    /// An agent the token names: subject, presenter or an actor.
    #[error("the agent {0} is disabled, expired or deleted")]
    Agent(SpiffeId),
}

/// Proof of possession for a token presented on an HTTP request: an RFC 9421
/// signature or a DPoP proof by the `cnf` key, with its nonce or `jti` used once.
#[derive(Clone, Copy)]
pub struct RequestProof<'a> {
    /// The request's method, URI and headers.
    pub parts: &'a Parts,
    /// The request body, for `Content-Digest`.
    pub body: &'a [u8],
    /// The scheme and authority clients use to reach the receiver, if not
    /// `http://` plus the Host header.
    pub origin: Option<&'a str>,
    /// Where nonces and DPoP `jti`s are remembered.
    pub nonces: &'a NonceCache,
    /// The client certificate (leaf, DER) of the TLS connection the request
    /// came over, if any: the proof for a certificate-bound token.
    pub tls_certificate: Option<&'a [u8]>,
}

/// What one front door demands of a presented token.
#[derive(Clone, Copy)]
pub struct TokenRules<'a> {
    /// The exact issuer URL.
    pub issuer: &'a str,
    /// The only audience accepted; `None` accepts any (the admin's introspection).
    pub audience: Option<&'a str>,
    /// Current time, seconds since the epoch.
    pub now: i64,
    /// Tolerated clock skew on `exp`, `nbf` and `iat`.
    pub leeway: i64,
    /// The request the token came on, when the caller must prove possession
    /// of its key; `None` where the token is an argument (exchange, introspection).
    pub proof: Option<RequestProof<'a>>,
    /// Tokens that verified before, so that a token presented again skips
    /// its signature check; `None` verifies every time.
    pub verified: Option<&'a VerifiedTokens>,
}

/// Most tokens a [`VerifiedTokens`] keeps unless told otherwise.
pub const DEFAULT_VERIFIED_TOKENS: usize = 4096;

/// Access tokens whose signature, issuer and audience verified, keyed by the
/// SHA-256 of the token together with the issuer and audience it verified
/// for. An agent presents one token on many requests; with this only the
/// first costs a signature check. Time, the signing key still being
/// published, proof of possession and revocation are checked on every use.
/// Bounded: when full, expired entries go first, then arbitrary ones.
pub struct VerifiedTokens {
    entries: Mutex<HashMap<[u8; 32], Verified>>,
    capacity: usize,
}

#[derive(Clone)]
struct Verified {
    kid: String,
    key: PublicJwk,
    claims: AccessClaims,
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self::new(DEFAULT_VERIFIED_TOKENS)
    }
}

impl VerifiedTokens {
    /// A cache of at most `capacity` tokens (0 keeps none).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::default(),
            capacity,
        }
    }

    /// How many tokens it holds.
    pub fn len(&self) -> usize {
        self.entries.lock().expect("lock").len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(token: &str, rules: &TokenRules<'_>) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(rules.issuer.as_bytes());
        ctx.update(&[0]);
        ctx.update(rules.audience.unwrap_or("*").as_bytes());
        ctx.update(&[0]);
        ctx.update(token.as_bytes());
        ctx.finish()
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes")
    }

    fn get(&self, slot: &[u8; 32]) -> Option<Verified> {
        self.entries.lock().expect("lock").get(slot).cloned()
    }

    fn forget(&self, slot: &[u8; 32]) {
        self.entries.lock().expect("lock").remove(slot);
    }

    fn put(&self, slot: [u8; 32], verified: Verified, now: i64, leeway: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().expect("lock");
        if entries.len() >= self.capacity {
            entries.retain(|_, v| v.claims.exp + leeway > now);
        }
        if entries.len() >= self.capacity
            && let Some(any) = entries.keys().next().copied()
        {
            entries.remove(&any);
        }
        entries.insert(slot, verified);
    }
}

/// Why a presented token was refused; each variant names the failed rule.
#[derive(Debug, ThisError)]
pub enum Rejection<E> {
    /// Structure, `typ`/`alg`, key, signature, issuer, audience or time.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The request is not signed by the token's key, or was replayed.
    #[error(transparent)]
    Proof(ProofError),
    /// The token, its key, its task or an agent it names is revoked.
    #[error(transparent)]
    Revoked(Revoked),
    /// The view could not answer; the token is refused (fail closed).
    #[error("the revocation state could not be read")]
    View(E),
}

/// Runs every check on `token` in order and returns its claims if it stands.
pub async fn check_presented_token<V: AuthorityView>(
    token: &str,
    rules: &TokenRules<'_>,
    view: &V,
) -> Result<AccessClaims, Rejection<V::Error>> {
    let expect = TokenExpectations {
        issuer: rules.issuer,
        audience: rules.audience,
        now: rules.now,
        leeway: rules.leeway,
    };
    let claims = match rules.verified {
        Some(cache) => {
            let slot = VerifiedTokens::slot(token, rules);
            match cache.get(&slot) {
                // Verified before for this issuer and audience, under a key
                // the authority still publishes: only time is checked again.
                Some(hit) if still_published(view, &hit).await? => {
                    crate::token::check_time(&hit.claims, &expect)?;
                    hit.claims
                }
                stale => {
                    if stale.is_some() {
                        cache.forget(&slot);
                    }
                    let (kid, key, claims) = verify_signed(token, &expect, view).await?;
                    let verified = Verified {
                        kid,
                        key,
                        claims: claims.clone(),
                    };
                    cache.put(slot, verified, rules.now, rules.leeway);
                    claims
                }
            }
        }
        None => verify_signed(token, &expect, view).await?.2,
    };
    if let Some(proof) = &rules.proof {
        verify_request_proof(
            proof.parts,
            proof.body,
            token,
            claims.cnf.as_ref(),
            proof.tls_certificate,
            claims.exp.saturating_add(rules.leeway),
            proof.origin,
            proof.nonces,
            rules.now,
        )
        .map_err(Rejection::Proof)?;
    }
    let subjects = RevocationSubjects::of(&claims);
    if let Some(revoked) = view.revoked(&subjects).await.map_err(Rejection::View)? {
        return Err(Rejection::Revoked(revoked));
    }
    Ok(claims)
}

/// Parses `token`, finds its signing key and verifies signature, issuer,
/// audience and time; returns the key's ID, the key and the claims.
async fn verify_signed<V: AuthorityView>(
    token: &str,
    expect: &TokenExpectations<'_>,
    view: &V,
) -> Result<(String, PublicJwk, AccessClaims), Rejection<V::Error>> {
    let compact = parse_access_token(token)?;
    let kid = compact.header.kid.as_deref().unwrap_or("");
    let key = view
        .signing_key(kid)
        .await
        .map_err(Rejection::View)?
        .ok_or_else(|| TokenError::Jws(crate::JwsError::UnknownKey(bounded(kid))))?;
    let claims = verify_access_token(&compact, &key, expect)?;
    Ok((kid.to_owned(), key, claims))
}

/// Whether the key a cached token verified under is still the one the
/// authority publishes under its `kid`.
async fn still_published<V: AuthorityView>(
    view: &V,
    hit: &Verified,
) -> Result<bool, Rejection<V::Error>> {
    let current = view.signing_key(&hit.kid).await.map_err(Rejection::View)?;
    Ok(current.as_ref() == Some(&hit.key))
}

fn bounded(text: &str) -> String {
    text.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use futures::executor::block_on;
    use serde_json::json;

    use super::*;
    use crate::{ACCESS_TOKEN_TYP, Cnf, Header, JwsError, Scope, SigningKey, sign_compact};

    const ISS: &str = "http://authority";
    const AUD: &str = "spiffe://td/agent/db";

    fn id(uri: &str) -> SpiffeId {
        SpiffeId::parse(uri).unwrap()
    }

    /// An in-memory view: one signing key and sets of revoked things.
    struct Facts {
        key: PublicJwk,
        revoked: HashSet<String>,
        fail: bool,
    }

    impl AuthorityView for Facts {
        type Error = &'static str;

        async fn signing_key(&self, kid: &str) -> Result<Option<PublicJwk>, &'static str> {
            Ok((kid == "k").then(|| self.key.clone()))
        }

        async fn revoked(
            &self,
            s: &RevocationSubjects<'_>,
        ) -> Result<Option<Revoked>, &'static str> {
            if self.fail {
                return Err("store down");
            }
            let has = |kind: &str, v: &str| self.revoked.contains(&format!("{kind}:{v}"));
            if has("token", s.jti) {
                return Ok(Some(Revoked::Token));
            }
            if s.jkt.is_some_and(|k| has("key", &k.0)) {
                return Ok(Some(Revoked::Key));
            }
            if let Some(txn) = s.txn.filter(|t| has("task", t.as_str())) {
                return Ok(Some(Revoked::Task(txn.clone())));
            }
            Ok(s.agents
                .iter()
                .find(|a| has("agent", a.as_str()))
                .map(|a| Revoked::Agent((*a).clone())))
        }
    }

    fn chained_claims(presenter: &SigningKey) -> AccessClaims {
        AccessClaims {
            iss: ISS.into(),
            sub: id("spiffe://td/agent/planner"),
            aud: id(AUD),
            client_id: id("spiffe://td/agent/executor"),
            scope: Scope::parse("read:db").unwrap(),
            exp: 1_300,
            iat: 1_000,
            nbf: 1_000,
            jti: "j1".into(),
            cnf: Some(Cnf::for_key(&presenter.public_jwk())),
            act: Some(
                serde_json::from_value(json!({
                    "sub": "spiffe://td/agent/executor",
                    "act": {"sub": "spiffe://td/agent/router", "act": {"sub": "spiffe://td/agent/planner"}}
                }))
                .unwrap(),
            ),
            txn: Some(TaskId::new("t1").unwrap()),
            purpose: None,
            rctx: None,
        }
    }

    fn sign(key: &SigningKey, claims: &AccessClaims) -> String {
        let header = Header {
            alg: key.alg(),
            typ: Some(ACCESS_TOKEN_TYP.into()),
            kid: Some("k".into()),
            jwk: None,
        };
        sign_compact(&header, claims, key)
    }

    fn rules() -> TokenRules<'static> {
        TokenRules {
            issuer: ISS,
            audience: Some(AUD),
            now: 1_000,
            leeway: 0,
            proof: None,
            verified: None,
        }
    }

    #[test]
    fn subjects_name_every_agent_once_and_the_key_and_task() {
        let presenter = SigningKey::generate_ed25519();
        let claims = chained_claims(&presenter);
        let s = RevocationSubjects::of(&claims);
        let agents: Vec<&str> = s.agents.iter().map(|a| a.as_str()).collect();
        assert_eq!(
            agents,
            [
                "spiffe://td/agent/planner",
                "spiffe://td/agent/executor",
                "spiffe://td/agent/router"
            ]
        );
        assert_eq!(s.txn.map(TaskId::as_str), Some("t1"));
        assert_eq!(s.jkt, Some(&presenter.public_jwk().thumbprint()));
    }

    #[test]
    fn each_revoked_subject_refuses_the_token_and_names_itself() {
        let authority = SigningKey::generate_ed25519();
        let presenter = SigningKey::generate_ed25519();
        let claims = chained_claims(&presenter);
        let token = sign(&authority, &claims);
        let jkt = presenter.public_jwk().thumbprint().0;
        let cases = [
            (None, Ok(())),
            (Some("token:j1".to_owned()), Err(Revoked::Token)),
            (Some(format!("key:{jkt}")), Err(Revoked::Key)),
            (
                Some("task:t1".into()),
                Err(Revoked::Task(TaskId::new("t1").unwrap())),
            ),
            (
                Some("agent:spiffe://td/agent/router".into()),
                Err(Revoked::Agent(id("spiffe://td/agent/router"))),
            ),
            (
                Some("agent:spiffe://td/agent/planner".into()),
                Err(Revoked::Agent(id("spiffe://td/agent/planner"))),
            ),
        ];
        for (revoked, want) in cases {
            let view = Facts {
                key: authority.public_jwk(),
                revoked: revoked.iter().cloned().collect(),
                fail: false,
            };
            let got = block_on(check_presented_token(&token, &rules(), &view));
            match (got, want) {
                (Ok(c), Ok(())) => assert_eq!(c, claims),
                (Err(Rejection::Revoked(r)), Err(w)) => assert_eq!(r, w, "{revoked:?}"),
                (got, want) => panic!("{revoked:?}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn a_remembered_token_still_meets_time_key_and_revocation_checks() {
        let authority = SigningKey::generate_ed25519();
        let claims = chained_claims(&SigningKey::generate_ed25519());
        let token = sign(&authority, &claims);
        let cache = VerifiedTokens::new(16);
        let cached = |now: i64| TokenRules {
            now,
            verified: Some(&cache),
            ..rules()
        };
        let view = |key: &SigningKey, revoked: &[&str]| Facts {
            key: key.public_jwk(),
            revoked: revoked.iter().map(|r| (*r).to_owned()).collect(),
            fail: false,
        };
        let fresh = view(&authority, &[]);
        assert_eq!(
            block_on(check_presented_token(&token, &cached(1_000), &fresh)).unwrap(),
            claims
        );
        assert_eq!(cache.len(), 1);
        assert_eq!(
            block_on(check_presented_token(&token, &cached(1_001), &fresh)).unwrap(),
            claims,
            "a hit gives the same claims"
        );
        // Revocation and time are checked on every use.
        assert!(matches!(
            block_on(check_presented_token(
                &token,
                &cached(1_002),
                &view(&authority, &["token:j1"])
            )),
            Err(Rejection::Revoked(Revoked::Token))
        ));
        assert!(matches!(
            block_on(check_presented_token(
                &token,
                &cached(claims.exp + 1),
                &fresh
            )),
            Err(Rejection::Token(TokenError::Expired))
        ));
        // A key the authority no longer publishes under that kid ends the entry.
        let rotated = view(&SigningKey::generate_ed25519(), &[]);
        assert!(matches!(
            block_on(check_presented_token(&token, &cached(1_003), &rotated)),
            Err(Rejection::Token(TokenError::Jws(JwsError::BadSignature)))
        ));
        assert!(cache.is_empty());
        // Another audience is another entry, verified in full.
        block_on(check_presented_token(&token, &cached(1_004), &fresh)).unwrap();
        let elsewhere = TokenRules {
            audience: Some("spiffe://td/agent/other"),
            ..cached(1_004)
        };
        assert!(matches!(
            block_on(check_presented_token(&token, &elsewhere, &fresh)),
            Err(Rejection::Token(TokenError::AudienceMismatch(_)))
        ));
        // A token altered by one byte is not the remembered one.
        let mut forged = token.into_bytes();
        let last = forged.len() - 2;
        forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
        let forged = String::from_utf8(forged).unwrap();
        assert!(matches!(
            block_on(check_presented_token(&forged, &cached(1_005), &fresh)),
            Err(Rejection::Token(_))
        ));
    }

    #[test]
    fn the_verified_tokens_stay_bounded() {
        let authority = SigningKey::generate_ed25519();
        let cache = VerifiedTokens::new(3);
        let view = Facts {
            key: authority.public_jwk(),
            revoked: HashSet::new(),
            fail: false,
        };
        for n in 0..10 {
            let mut claims = chained_claims(&SigningKey::generate_ed25519());
            claims.jti = format!("j{n}");
            let token = sign(&authority, &claims);
            let rules = TokenRules {
                verified: Some(&cache),
                ..rules()
            };
            block_on(check_presented_token(&token, &rules, &view)).unwrap();
            assert!(cache.len() <= 3);
        }
        let none = VerifiedTokens::new(0);
        let token = sign(&authority, &chained_claims(&SigningKey::generate_ed25519()));
        let rules = TokenRules {
            verified: Some(&none),
            ..rules()
        };
        block_on(check_presented_token(&token, &rules, &view)).unwrap();
        assert!(none.is_empty(), "capacity 0 keeps nothing");
    }

    #[test]
    fn a_view_that_cannot_answer_refuses_the_token() {
        let authority = SigningKey::generate_ed25519();
        let token = sign(&authority, &chained_claims(&SigningKey::generate_ed25519()));
        let view = Facts {
            key: authority.public_jwk(),
            revoked: HashSet::new(),
            fail: true,
        };
        assert!(matches!(
            block_on(check_presented_token(&token, &rules(), &view)),
            Err(Rejection::View("store down"))
        ));
    }

    #[test]
    fn unknown_keys_and_foreign_signatures_fail_before_revocation_is_asked() {
        let authority = SigningKey::generate_ed25519();
        let claims = chained_claims(&SigningKey::generate_ed25519());
        // `fail` would turn any revocation lookup into a View error.
        let view = Facts {
            key: authority.public_jwk(),
            revoked: HashSet::new(),
            fail: true,
        };
        let forged = sign(&SigningKey::generate_ed25519(), &claims);
        assert!(matches!(
            block_on(check_presented_token(&forged, &rules(), &view)),
            Err(Rejection::Token(TokenError::Jws(JwsError::BadSignature)))
        ));
        let mut header = Header {
            alg: authority.alg(),
            typ: Some(ACCESS_TOKEN_TYP.into()),
            kid: Some("other".into()),
            jwk: None,
        };
        let unknown = sign_compact(&header, &claims, &authority);
        assert!(matches!(
            block_on(check_presented_token(&unknown, &rules(), &view)),
            Err(Rejection::Token(TokenError::Jws(JwsError::UnknownKey(k)))) if k == "other"
        ));
        header.kid = Some("k".into());
        let mut wrong_aud = rules();
        wrong_aud.audience = Some("spiffe://td/agent/else");
        assert!(matches!(
            block_on(check_presented_token(
                &sign(&authority, &claims),
                &wrong_aud,
                &view
            )),
            Err(Rejection::Token(TokenError::AudienceMismatch(_)))
        ));
        let mut late = rules();
        late.now = 1_300;
        assert!(matches!(
            block_on(check_presented_token(
                &sign(&authority, &claims),
                &late,
                &view
            )),
            Err(Rejection::Token(TokenError::Expired))
        ));
    }

    #[test]
    fn a_key_bound_token_without_its_proof_is_refused_where_proof_is_needed() {
        let authority = SigningKey::generate_ed25519();
        let token = sign(&authority, &chained_claims(&SigningKey::generate_ed25519()));
        let view = Facts {
            key: authority.public_jwk(),
            revoked: HashSet::new(),
            fail: false,
        };
        let (parts, ()) = http::Request::post("http://db/x")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts();
        let nonces = NonceCache::default();
        let mut with_proof = rules();
        with_proof.proof = Some(RequestProof {
            parts: &parts,
            body: b"",
            origin: None,
            nonces: &nonces,
            tls_certificate: None,
        });
        assert!(matches!(
            block_on(check_presented_token(&token, &with_proof, &view)),
            Err(Rejection::Proof(ProofError::Signature(
                crate::HttpSigError::Missing
            )))
        ));
        assert!(block_on(check_presented_token(&token, &rules(), &view)).is_ok());
    }

    #[test]
    fn a_certificate_bound_token_passes_only_over_its_certificate() {
        let authority = SigningKey::generate_ed25519();
        let holder = SigningKey::generate_p256();
        let mut claims = chained_claims(&holder);
        let certificate = b"the client's certificate, DER".to_vec();
        claims.cnf = Some(Cnf::for_certificate(&holder.public_jwk(), &certificate));
        let token = sign(&authority, &claims);
        let view = Facts {
            key: authority.public_jwk(),
            revoked: HashSet::new(),
            fail: false,
        };
        let (parts, ()) = http::Request::post("http://db/x")
            .header("authorization", format!("Bearer {token}"))
            .body(())
            .unwrap()
            .into_parts();
        let nonces = NonceCache::default();
        let over = |tls_certificate: Option<&[u8]>| {
            let mut with_proof = rules();
            with_proof.proof = Some(RequestProof {
                parts: &parts,
                body: b"",
                origin: None,
                nonces: &nonces,
                tls_certificate,
            });
            block_on(check_presented_token(&token, &with_proof, &view))
        };
        assert!(over(Some(&certificate)).is_ok());
        assert!(
            over(Some(&certificate)).is_ok(),
            "no nonce: the handshake is the proof"
        );
        assert!(matches!(
            over(Some(b"another certificate")),
            Err(Rejection::Proof(ProofError::CertificateMismatch))
        ));
        assert!(matches!(
            over(None),
            Err(Rejection::Proof(ProofError::CertificateRequired))
        ));
    }
}
