//! Offline verification of incoming access tokens: the checks of DESIGN.md in
//! order, against a cached JWKS and a polled revocation list.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use agentauth_core::{
    AccessClaims, DEFAULT_LEEWAY_SECS, JwsAlg, PublicJwk, Scope, SpiffeId, TokenError,
    TokenExpectations, parse_access_token, unix_now, verify_access_token,
};
use http::request::Parts;
use serde::Deserialize;
use serde_json::Value;

use crate::audit::AuditSink;
use crate::proof::{self, NonceCache};
use crate::revocation::{Page, RevocationList};
use crate::{AuthLayer, Check, Client, Denial, Metadata, SdkError};

/// Least time between two JWKS fetches triggered by unknown key IDs.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(5);

/// How a verifier is set up.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Base URL of the authority.
    pub authority_url: String,
    /// This agent's SPIFFE ID: the only audience it accepts.
    pub audience: SpiffeId,
    /// Clock skew tolerated on `exp`/`nbf`, at most 30 s.
    pub leeway_secs: i64,
    /// How often the revocation list is polled (≤ 5 s keeps revocation prompt).
    pub revocation_poll: Duration,
    /// The scheme and authority clients use to reach this agent (for example
    /// `https://customer.example`), which request signatures cover; unset means
    /// `http://` plus the request's Host header.
    pub public_origin: Option<String>,
}

impl VerifierConfig {
    /// Defaults: 30 s leeway, revocation polled every 2 s.
    pub fn new(authority_url: &str, audience: SpiffeId) -> Self {
        Self {
            authority_url: authority_url.trim_end_matches('/').to_owned(),
            audience,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            revocation_poll: Duration::from_secs(2),
            public_origin: None,
        }
    }
}

/// The identity of a verified caller, available to handlers as an extractor.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAgent {
    /// The presenter (`client_id`).
    pub agent: String,
    /// On whose behalf (`sub`).
    pub subject: String,
    /// Granted permissions.
    pub scope: Scope,
    /// Token ID.
    pub jti: String,
    /// Task, if any.
    pub txn: Option<String>,
    /// All claims.
    pub claims: AccessClaims,
}

/// Verifies tokens for one agent. Cheap to clone; background tasks stop when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: VerifierConfig,
    http: reqwest::Client,
    metadata: Metadata,
    keys: RwLock<Keys>,
    revocations: RwLock<RevocationList>,
    audit: RwLock<Option<AuditSink>>,
    nonces: NonceCache,
}

struct Keys {
    by_kid: HashMap<String, PublicJwk>,
    fetched_at: Instant,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Value>,
}

impl Verifier {
    /// Fetches metadata, keys and the revocation list, then keeps the list
    /// current in the background. Fails if the authority is unreachable.
    pub async fn connect(config: VerifierConfig) -> Result<Self, SdkError> {
        let http = reqwest::Client::new();
        let metadata = Metadata::fetch(&http, &config.authority_url).await?;
        let by_kid = fetch_jwks(&http, &metadata.jwks_uri).await?;
        let inner = Arc::new(Inner {
            config,
            http,
            metadata,
            keys: RwLock::new(Keys {
                by_kid,
                fetched_at: Instant::now(),
            }),
            revocations: RwLock::new(RevocationList::default()),
            audit: RwLock::new(None),
            nonces: NonceCache::default(),
        });
        poll_revocations(&inner).await?;
        spawn_poller(Arc::downgrade(&inner));
        Ok(Self { inner })
    }

    /// Ships every allow/deny decision to the authority's audit log, using
    /// `client` (this agent's own client) to authenticate.
    pub fn with_audit(self, client: Client) -> Self {
        let sink = AuditSink::spawn(client, self.inner.metadata.clone());
        *self.inner.audit.write().expect("lock") = Some(sink);
        self
    }

    /// A layer that verifies the token and demands `permission`.
    pub fn require(&self, permission: &str) -> AuthLayer {
        AuthLayer::new(self.clone(), Some(permission.to_owned()))
    }

    /// A layer that verifies the token without demanding a permission.
    pub fn layer(&self) -> AuthLayer {
        AuthLayer::new(self.clone(), None)
    }

    /// This verifier's audience.
    pub fn audience(&self) -> &SpiffeId {
        &self.inner.config.audience
    }

    /// Runs every check but the permission on one request, in DESIGN.md
    /// order: token (signature, issuer, audience, time), proof of possession
    /// and message integrity, replay, revocation.
    pub(crate) async fn verify_request(
        &self,
        parts: &Parts,
        body: &[u8],
        token: &str,
    ) -> Result<VerifiedAgent, Denial> {
        let claims = self.check_token(token).await?;
        let now = unix_now();
        // Tokens without cnf exist only for agents the registry lets use bearer tokens.
        if let Some(cnf) = &claims.cnf {
            let origin = self.inner.config.public_origin.as_deref();
            let (nonce, until) = proof::check_signature(parts, body, cnf, origin, now)?;
            self.inner.nonces.check_and_remember(nonce, until, now)?;
        }
        self.check_revocation(&claims)?;
        Ok(VerifiedAgent {
            agent: claims.client_id.clone(),
            subject: claims.sub.clone(),
            scope: claims.scope.clone(),
            jti: claims.jti.clone(),
            txn: claims.txn.clone(),
            claims,
        })
    }

    /// Signature with `typ`/`alg` allow-list, then issuer, audience, time.
    async fn check_token(&self, token: &str) -> Result<AccessClaims, Denial> {
        let compact = parse_access_token(token).map_err(denial_for)?;
        let kid = compact.header.kid.as_deref().unwrap_or("");
        let key = match self.key(kid) {
            Some(key) => key,
            None => self.refetch_key(kid).await?,
        };
        let expect = TokenExpectations {
            issuer: &self.inner.metadata.issuer,
            audience: Some(self.inner.config.audience.as_str()),
            now: unix_now(),
            leeway: self.inner.config.leeway_secs.clamp(0, DEFAULT_LEEWAY_SECS),
        };
        verify_access_token(&compact, &key, &expect).map_err(denial_for)
    }

    /// The token and both agents it names must not be revoked.
    fn check_revocation(&self, claims: &AccessClaims) -> Result<(), Denial> {
        let list = self.inner.revocations.read().expect("lock");
        if list.token_revoked(&claims.jti) {
            return Err(Denial::new(Check::Revocation, "the token has been revoked"));
        }
        for id in [&claims.client_id, &claims.sub] {
            if list.agent_revoked(id) {
                return Err(Denial::new(
                    Check::Revocation,
                    format!("the agent {id} is disabled or deleted"),
                ));
            }
        }
        Ok(())
    }

    fn key(&self, kid: &str) -> Option<PublicJwk> {
        self.inner
            .keys
            .read()
            .expect("lock")
            .by_kid
            .get(kid)
            .cloned()
    }

    /// On an unknown `kid`, refetches the JWKS at most once per 5 s.
    async fn refetch_key(&self, kid: &str) -> Result<PublicJwk, Denial> {
        let unknown = || Denial::new(Check::Signature, "the token is signed by an unknown key");
        if self.inner.keys.read().expect("lock").fetched_at.elapsed() < JWKS_REFETCH_INTERVAL {
            return Err(unknown());
        }
        self.inner.keys.write().expect("lock").fetched_at = Instant::now();
        match fetch_jwks(&self.inner.http, &self.inner.metadata.jwks_uri).await {
            Ok(by_kid) => self.inner.keys.write().expect("lock").by_kid = by_kid,
            Err(e) => tracing::warn!(error = %e, "refetching the JWKS failed"),
        }
        self.key(kid).ok_or_else(unknown)
    }

    /// Records a decision for the audit log without blocking.
    pub(crate) fn audit(&self, event: crate::audit::Event) {
        if let Some(sink) = self.inner.audit.read().expect("lock").as_ref() {
            sink.offer(event);
        }
    }

    /// Sends buffered audit records now and waits until the authority has them.
    pub async fn flush_audit(&self) {
        let sink = self.inner.audit.read().expect("lock").clone();
        if let Some(sink) = sink {
            sink.flush().await;
        }
    }

    /// Polls the revocation list once now, instead of waiting for the next tick.
    pub async fn refresh_revocations(&self) -> Result<(), SdkError> {
        poll_revocations(&self.inner).await
    }
}

fn denial_for(e: TokenError) -> Denial {
    let check = match &e {
        TokenError::IssuerMismatch(_) => Check::Issuer,
        TokenError::AudienceMismatch(_) => Check::Audience,
        TokenError::Expired | TokenError::NotYetValid => Check::Time,
        _ => Check::Signature,
    };
    Denial::new(check, e.to_string())
}

async fn fetch_jwks(
    http: &reqwest::Client,
    uri: &str,
) -> Result<HashMap<String, PublicJwk>, SdkError> {
    let response = http
        .get(uri)
        .send()
        .await
        .map_err(|e| SdkError::Authority(e.to_string()))?;
    let jwks: Jwks = response
        .json()
        .await
        .map_err(|e| SdkError::Authority(format!("JWKS: {e}")))?;
    let mut keys = HashMap::new();
    for value in jwks.keys {
        let kid = value.get("kid").and_then(Value::as_str).map(str::to_owned);
        let alg = value
            .get("alg")
            .and_then(Value::as_str)
            .and_then(JwsAlg::from_name);
        let usable = value
            .get("use")
            .and_then(Value::as_str)
            .is_none_or(|u| u == "sig");
        match (kid, PublicJwk::from_json(&value)) {
            (Some(kid), Ok(jwk)) if usable && alg.is_none_or(|a| a == jwk.alg()) => {
                keys.insert(kid, jwk);
            }
            _ => tracing::warn!("ignoring an unusable key in the authority's JWKS"),
        }
    }
    Ok(keys)
}

async fn poll_revocations(inner: &Inner) -> Result<(), SdkError> {
    loop {
        let since = inner.revocations.read().expect("lock").last_seq;
        let page: Page = inner
            .http
            .get(&inner.metadata.revocation_list_endpoint)
            .query(&[("since", since)])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|e| SdkError::Authority(e.to_string()))?
            .json()
            .await
            .map_err(|e| SdkError::Authority(format!("revocation list: {e}")))?;
        let mut list = inner.revocations.write().expect("lock");
        list.apply(&page.revocations);
        list.last_seq = list.last_seq.max(page.last_seq);
        list.prune(unix_now() - DEFAULT_LEEWAY_SECS);
        if !page.more {
            return Ok(());
        }
    }
}

fn spawn_poller(inner: Weak<Inner>) {
    tokio::spawn(async move {
        loop {
            let Some(interval) = inner.upgrade().map(|i| i.config.revocation_poll) else {
                return;
            };
            tokio::time::sleep(interval).await;
            let Some(strong) = inner.upgrade() else {
                return;
            };
            if let Err(e) = poll_revocations(&strong).await {
                tracing::warn!(error = %e, "polling the revocation list failed; keeping the last copy");
            }
        }
    });
}
