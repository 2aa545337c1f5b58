//! Offline verification of incoming access tokens: the checks of DESIGN.md in
//! order, against a cached JWKS and a revocation list that follows the
//! authority's revocation stream, with polling as the fallback.

use std::collections::HashMap;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use std::convert::Infallible;

use agentauth_api::{Jwks, RevocationEntry, RevocationKind, RevocationPage};
use agentauth_core::{
    AccessClaims, AuthorityView, DEFAULT_LEEWAY_SECS, JwsAlg, NonceCache, ProofWindow, PublicJwk,
    RequestProof, RevocationSubjects, Revoked, Scope, SpiffeId, TaskId, TokenRules, VerifiedTokens,
    check_presented_token, unix_now,
};
use http::request::Parts;
use serde_json::Value;
use tokio::sync::watch;

use crate::audit::{AuditSink, AuditStats};
use crate::feed::{self, Health};
use crate::metrics::LayerCounters;
use crate::policy::{FactsSource, PolicyView, RouteContext};
use crate::revocation::RevocationList;
use crate::{AuthLayer, Check, Client, Denial, Endpoint, Metadata, SdkError};

/// Least time between two JWKS fetches triggered by unknown key IDs.
const JWKS_REFETCH_INTERVAL: Duration = Duration::from_secs(5);
/// While the revocation stream is open, the list is polled at most this often.
const POLL_WHILE_STREAMING: Duration = Duration::from_secs(30);

/// How a verifier is set up.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// Base URL of the authority.
    pub authority_url: String,
    /// This agent's SPIFFE ID: the only audience it accepts.
    pub audience: SpiffeId,
    /// Clock skew tolerated on `exp`/`nbf`, at most 30 s.
    pub leeway_secs: i64,
    /// How often the revocation list is polled while the revocation stream
    /// is down (≤ 5 s keeps revocation prompt then); while it is up, polling
    /// slows to every 30 s or this, whichever is longer.
    pub revocation_poll: Duration,
    /// How long the revocation feed may be unreachable (no stream open, no
    /// successful poll) before routes that fail closed
    /// ([`Verifier::require_fresh`]) refuse requests; routes that fail open
    /// keep verifying against the last known list. An open stream counts as
    /// contact; one that stays silent for 15 s (three missed keep-alives)
    /// is dropped and counts from its last byte.
    pub feed_grace: Duration,
    /// The scheme and authority clients use to reach this agent (for example
    /// `https://customer.example`), which request signatures cover; unset means
    /// `http://` plus the request's Host header.
    pub public_origin: Option<String>,
    /// The deployment environment policies see as `context.environment`.
    pub environment: String,
    /// How long one request signature or DPoP proof may be used: the longest
    /// accepted `expires − created` and the oldest `created` or `iat` (beyond
    /// a 30 s skew). Default 60 s; clamped to 1 ..= 300 s.
    pub proof_window_secs: i64,
    /// How many verified tokens to remember, so a token presented again
    /// skips its signature check (its time, key, proof and revocation are
    /// still checked on every request). Default 4096; 0 verifies every time.
    pub verified_tokens: usize,
    /// How often the authority's JWKS is fetched again, so a new signing
    /// key is known before the authority signs with it (it publishes keys
    /// ahead by `signing_key_publish_lead_secs`, 600 s by default: keep
    /// this below that). An unknown `kid` also triggers a fetch, at most
    /// one per 5 s. Looked at on every revocation poll tick, so it is at
    /// least `revocation_poll`. Default 300 s.
    pub jwks_refresh: Duration,
    /// How many audit events [`Verifier::with_audit`] holds while they wait
    /// to be delivered, including while the authority is unreachable; beyond
    /// that, new events are dropped and the count is reported to the
    /// authority with the next batch. Default 4096.
    pub audit_buffer: usize,
    /// The HTTP client for the authority: one that trusts its CA when it
    /// serves TLS (`serve --tls`). Default: a plain client.
    pub http: Option<reqwest::Client>,
}

impl VerifierConfig {
    /// Defaults: 30 s leeway, revocation polled every 2 s (while the stream
    /// is down), a 10 s grace for the revocation feed, a 60 s proof window,
    /// the JWKS fetched every 300 s.
    pub fn new(authority_url: &str, audience: SpiffeId) -> Self {
        Self {
            authority_url: authority_url.trim_end_matches('/').to_owned(),
            audience,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            revocation_poll: Duration::from_secs(2),
            feed_grace: Duration::from_secs(10),
            public_origin: None,
            environment: "development".into(),
            proof_window_secs: agentauth_core::DEFAULT_PROOF_WINDOW_SECS,
            verified_tokens: agentauth_core::DEFAULT_VERIFIED_TOKENS,
            jwks_refresh: Duration::from_secs(300),
            audit_buffer: crate::audit::DEFAULT_BUFFER,
            http: None,
        }
    }
}

/// The identity of a verified caller, available to handlers as an extractor.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedAgent {
    /// The presenter (`client_id`).
    pub agent: SpiffeId,
    /// On whose behalf (`sub`).
    pub subject: SpiffeId,
    /// Granted permissions.
    pub scope: Scope,
    /// Token ID.
    pub jti: String,
    /// Task, if any.
    pub txn: Option<TaskId>,
    /// All claims.
    pub claims: AccessClaims,
    /// The token as presented, kept only to exchange it for the next hop.
    pub(crate) token: RawToken,
}

/// A presented token; its `Debug` output never shows it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RawToken(pub(crate) String);

impl std::fmt::Debug for RawToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawToken(..)")
    }
}

/// Verifies tokens for one agent. Cheap to clone; background tasks stop when
/// the last clone is dropped.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    config: VerifierConfig,
    pub(crate) http: reqwest::Client,
    pub(crate) metadata: Metadata,
    keys: RwLock<Keys>,
    pub(crate) revocations: RwLock<RevocationList>,
    /// How current `revocations` is.
    pub(crate) health: Health,
    /// The last applied feed sequence number, for whoever waits on it.
    applied: watch::Sender<i64>,
    /// Dropped with the last clone: background tasks holding a receiver stop.
    _alive: watch::Sender<()>,
    audit: RwLock<Option<AuditSink>>,
    /// This agent's own client, for the authority's authenticated reads
    /// (what policy needs to know of a caller).
    client: RwLock<Option<Client>>,
    nonces: NonceCache,
    /// Tokens whose signature verified, so a repeat skips that check.
    verified: VerifiedTokens,
    /// The authority's active policy set and the agent facts it needs.
    pub(crate) policy: Arc<PolicyView>,
    /// Decisions by check, for [`Verifier::metrics`].
    counters: LayerCounters,
}

struct Keys {
    by_kid: HashMap<String, PublicJwk>,
    fetched_at: Instant,
}

impl Verifier {
    /// Fetches metadata, keys and the revocation list, then keeps the list
    /// current in the background. Fails if the authority is unreachable.
    pub async fn connect(config: VerifierConfig) -> Result<Self, SdkError> {
        let http = config.http.clone().unwrap_or_default();
        let metadata = Metadata::fetch(&http, &config.authority_url).await?;
        let by_kid = fetch_jwks(&http, &metadata.jwks_uri).await?;
        let (alive, alive_rx) = watch::channel(());
        let nonces = NonceCache::new(ProofWindow::new(config.proof_window_secs));
        let verified = VerifiedTokens::new(config.verified_tokens);
        let inner = Arc::new(Inner {
            config,
            http,
            metadata,
            keys: RwLock::new(Keys {
                by_kid,
                fetched_at: Instant::now(),
            }),
            revocations: RwLock::new(RevocationList::default()),
            health: Health::new(),
            applied: watch::Sender::new(0),
            _alive: alive,
            audit: RwLock::new(None),
            client: RwLock::new(None),
            nonces,
            verified,
            policy: Arc::new(PolicyView::new()),
            counters: LayerCounters::default(),
        });
        poll_revocations(&inner).await?;
        inner
            .policy
            .refresh(&inner.http, &inner.config.authority_url)
            .await?;
        spawn_poller(Arc::downgrade(&inner));
        feed::spawn(Arc::downgrade(&inner), alive_rx);
        Ok(Self { inner })
    }

    /// The verifier behind a weak reference that is still alive.
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    /// A reference that does not keep the verifier's tasks running.
    pub(crate) fn downgrade(&self) -> Weak<Inner> {
        Arc::downgrade(&self.inner)
    }

    /// The layer's decision counters.
    pub(crate) fn counters(&self) -> &LayerCounters {
        &self.inner.counters
    }

    /// Ships every allow/deny decision to the authority's audit log, using
    /// `client` (this agent's own client) to authenticate. Events wait in a
    /// buffer of [`VerifierConfig::audit_buffer`] while the authority cannot
    /// be reached and are delivered once it can.
    pub fn with_audit(self, client: Client) -> Self {
        let sink = AuditSink::spawn(
            client.clone(),
            self.inner.metadata.clone(),
            self.inner.config.audit_buffer,
        );
        *self.inner.audit.write().expect("lock") = Some(sink);
        self.with_client(client)
    }

    /// Gives the verifier this agent's own client, with which it asks the
    /// authority what policies need to know of each caller (owner, tags,
    /// parent). That read needs an agent's token, so while a policy set is
    /// active a verifier without a client refuses every request (fail
    /// closed). [`Verifier::with_audit`] sets it too.
    pub fn with_client(self, client: Client) -> Self {
        *self.inner.client.write().expect("lock") = Some(client);
        self
    }

    /// A layer that verifies the token and demands `permission`.
    pub fn require(&self, permission: &str) -> AuthLayer {
        AuthLayer::new(self.clone(), Some(permission.to_owned()))
    }

    /// Like [`Verifier::require`], but failing closed: while the revocation
    /// feed has been unreachable for longer than
    /// [`VerifierConfig::feed_grace`], the route answers 503
    /// `temporarily_unavailable` ([`Check::RevocationFeed`]) instead of
    /// trusting a revocation list that may be stale. For sensitive routes.
    pub fn require_fresh(&self, permission: &str) -> AuthLayer {
        self.require(permission).fail_closed()
    }

    /// The version of the authority's policy set this verifier decides with;
    /// `None` while no set is active.
    pub fn policy_version(&self) -> Option<i64> {
        self.inner.policy.version()
    }

    /// The local policy decision for `permission` with the request's context
    /// (the last check of the layer).
    pub(crate) async fn check_policy(
        &self,
        agent: &VerifiedAgent,
        permission: &str,
        route: &RouteContext,
        parts: &Parts,
    ) -> Result<(), Denial> {
        let inner = &self.inner;
        let client = inner.client.read().expect("lock").clone();
        let source = FactsSource {
            client: client.as_ref(),
            authority_url: &inner.config.authority_url,
            authority_id: &inner.metadata.authority_id,
        };
        inner
            .policy
            .check(
                &source,
                &inner.config.audience,
                &inner.config.environment,
                &agent.claims,
                permission,
                route,
                parts,
            )
            .await
    }

    /// Whether the revocation list is known to be current: the revocation
    /// stream is open, or the authority answered within the feed's grace.
    pub fn revocation_feed_fresh(&self) -> bool {
        self.inner.health.fresh(self.inner.config.feed_grace)
    }

    /// The sequence number of the last revocation feed entry applied.
    #[doc(hidden)]
    pub fn last_applied_seq(&self) -> i64 {
        *self.inner.applied.borrow()
    }

    /// Waits until the feed entry `seq` (or a later one) has been applied.
    #[doc(hidden)]
    pub async fn wait_applied(&self, seq: i64) {
        let mut applied = self.inner.applied.subscribe();
        let _ = applied.wait_for(|last| *last >= seq).await;
    }

    /// How many token revocations the verifier holds.
    #[doc(hidden)]
    pub fn revoked_token_count(&self) -> usize {
        self.inner
            .revocations
            .read()
            .expect("lock")
            .revoked_tokens()
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
    /// order, through the one token check of core: token (signature, issuer,
    /// audience, time), proof of possession and message integrity, replay,
    /// revocation (and, if `fail_closed`, the freshness of the revocation list).
    pub(crate) async fn verify_request(
        &self,
        parts: &Parts,
        body: &[u8],
        token: &str,
        fail_closed: bool,
    ) -> Result<VerifiedAgent, Denial> {
        let inner = &*self.inner;
        let rules = TokenRules {
            issuer: &inner.metadata.issuer,
            audience: Some(inner.config.audience.as_str()),
            now: unix_now(),
            leeway: inner.config.leeway_secs.clamp(0, DEFAULT_LEEWAY_SECS),
            // Key-bound tokens need an HTTP message signature (Bearer) or a
            // DPoP proof (DPoP) by that key; tokens without cnf exist only for
            // agents the registry lets use bearer tokens.
            proof: Some(RequestProof {
                parts,
                body,
                origin: inner.config.public_origin.as_deref(),
                nonces: &inner.nonces,
                tls_certificate: parts
                    .extensions
                    .get::<crate::mtls::PeerCertificate>()
                    .map(|c| c.0.as_slice()),
            }),
            verified: Some(&inner.verified),
        };
        let claims = check_presented_token(token, &rules, inner)
            .await
            .map_err(Denial::from)?;
        if fail_closed && !self.revocation_feed_fresh() {
            return Err(Denial::new(
                Check::RevocationFeed,
                format!(
                    "the revocation feed has been unreachable for more than {} s; this route does not serve on a list that may be stale",
                    inner.config.feed_grace.as_secs_f32()
                ),
            ));
        }
        Ok(VerifiedAgent {
            agent: claims.client_id.clone(),
            subject: claims.sub.clone(),
            scope: claims.scope.clone(),
            jti: claims.jti.clone(),
            txn: claims.txn.clone(),
            claims,
            token: RawToken(token.to_owned()),
        })
    }

    /// Records a decision for the audit log without blocking; `event` builds
    /// the record only when audit shipping is on.
    pub(crate) fn audit_with(&self, event: impl FnOnce() -> agentauth_api::ReportedEvent) {
        if let Some(sink) = self.inner.audit.read().expect("lock").as_ref() {
            sink.offer(event());
        }
    }

    /// What audit shipping has done so far (all zero without
    /// [`Verifier::with_audit`]).
    pub fn audit_stats(&self) -> AuditStats {
        self.inner
            .audit
            .read()
            .expect("lock")
            .as_ref()
            .map(AuditSink::stats)
            .unwrap_or_default()
    }

    /// Tries to deliver buffered audit records now and waits for the
    /// attempt; records the authority did not take stay buffered.
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

async fn fetch_jwks(
    http: &reqwest::Client,
    uri: &str,
) -> Result<HashMap<String, PublicJwk>, SdkError> {
    let response = http
        .get(uri)
        .send()
        .await
        .map_err(SdkError::unreachable(Endpoint::Jwks))?;
    let jwks: Jwks = response
        .json()
        .await
        .map_err(SdkError::unreadable(Endpoint::Jwks))?;
    let mut keys = HashMap::new();
    for key in jwks.keys {
        let usable = key.key_use.as_deref().is_none_or(|u| u == "sig");
        // One key, one algorithm family: a stated `alg` must fit the key
        // (`EdDSA` or RFC 9864's `Ed25519` for an Ed25519 key).
        let own_alg = |jwk: &PublicJwk| {
            key.alg
                .as_deref()
                .is_none_or(|a| JwsAlg::from_name(a).is_some_and(|a| jwk.accepts(a)))
        };
        match (key.kid, PublicJwk::from_json(&Value::Object(key.params))) {
            (Some(kid), Ok(jwk)) if usable && own_alg(&jwk) => {
                keys.insert(kid, jwk);
            }
            _ => tracing::warn!("ignoring an unusable key in the authority's JWKS"),
        }
    }
    Ok(keys)
}

/// The verifier answers the core token check from its JWKS cache and its
/// copy of the revocation feed; it never fails, it answers from what it has.
impl AuthorityView for Inner {
    type Error = Infallible;

    async fn signing_key(&self, kid: &str) -> Result<Option<PublicJwk>, Infallible> {
        match self.key(kid) {
            Some(key) => Ok(Some(key)),
            None => Ok(self.refetch_key(kid).await),
        }
    }

    async fn revoked(&self, s: &RevocationSubjects<'_>) -> Result<Option<Revoked>, Infallible> {
        Ok(self.revocations.read().expect("lock").revoked(s))
    }
}

impl Inner {
    fn key(&self, kid: &str) -> Option<PublicJwk> {
        self.keys.read().expect("lock").by_kid.get(kid).cloned()
    }

    /// On an unknown `kid`, refetches the JWKS at most once per 5 s.
    async fn refetch_key(&self, kid: &str) -> Option<PublicJwk> {
        if self.keys.read().expect("lock").fetched_at.elapsed() < JWKS_REFETCH_INTERVAL {
            return None;
        }
        self.refetch_keys().await;
        self.key(kid)
    }

    /// Fetches the JWKS again and replaces the keys with it; on failure
    /// keeps the keys it has (and waits as long before the next try).
    async fn refetch_keys(&self) {
        self.keys.write().expect("lock").fetched_at = Instant::now();
        match fetch_jwks(&self.http, &self.metadata.jwks_uri).await {
            Ok(by_kid) => self.keys.write().expect("lock").by_kid = by_kid,
            Err(e) => tracing::warn!(error = %e, "refetching the JWKS failed"),
        }
    }

    /// Applies feed entries (from the stream or a poll) and tells waiters.
    pub(crate) fn apply_revocations(&self, entries: &[RevocationEntry]) {
        let (last, announced) = {
            let mut list = self.revocations.write().expect("lock");
            let before = list.last_seq;
            list.apply(entries);
            let announced = entries
                .iter()
                .any(|e| e.kind == RevocationKind::Policy && e.seq > before);
            (list.last_seq, announced)
        };
        if announced {
            self.policy
                .refresh_soon(self.http.clone(), self.config.authority_url.clone());
        }
        self.applied.send_if_modified(|seen| {
            let newer = last > *seen;
            *seen = (*seen).max(last);
            newer
        });
    }
}

async fn poll_revocations(inner: &Inner) -> Result<(), SdkError> {
    loop {
        let since = inner.revocations.read().expect("lock").last_seq;
        let page: RevocationPage = inner
            .http
            .get(&inner.metadata.revocation_list_endpoint)
            .query(&[("since", since)])
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(SdkError::unreachable(Endpoint::RevocationList))?
            .json()
            .await
            .map_err(SdkError::unreadable(Endpoint::RevocationList))?;
        inner.health.touch();
        inner.apply_revocations(&page.revocations);
        let mut list = inner.revocations.write().expect("lock");
        list.last_seq = list.last_seq.max(page.last_seq);
        list.prune(unix_now() - DEFAULT_LEEWAY_SECS);
        if !page.more {
            return Ok(());
        }
    }
}

/// Polls every `revocation_poll`, or at most every 30 s while the
/// revocation stream is open (it delivers entries as they are committed).
fn spawn_poller(inner: Weak<Inner>) {
    tokio::spawn(async move {
        let mut polled = Instant::now();
        loop {
            let Some(interval) = inner.upgrade().map(|i| i.config.revocation_poll) else {
                return;
            };
            tokio::time::sleep(interval).await;
            let Some(strong) = inner.upgrade() else {
                return;
            };
            let keys_age = strong.keys.read().expect("lock").fetched_at.elapsed();
            if keys_age >= strong.config.jwks_refresh {
                strong.refetch_keys().await;
            }
            if strong.health.stream_up() && polled.elapsed() < POLL_WHILE_STREAMING {
                continue;
            }
            polled = Instant::now();
            if let Err(e) = poll_revocations(&strong).await {
                tracing::warn!(error = %e, "polling the revocation list failed; keeping the last copy");
            }
            // A missed feed announcement (or a failed fetch after one) is
            // caught here; the ETag makes an unchanged set one 304.
            if let Err(e) = strong
                .policy
                .refresh(&strong.http, &strong.config.authority_url)
                .await
            {
                tracing::warn!(error = %e, "checking the policy set failed; keeping the last copy");
            }
        }
    });
}
