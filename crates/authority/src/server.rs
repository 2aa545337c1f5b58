//! Start-up: data dir, store, keys, admin credential, router and the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentauth_core::{SpiffeId, TrustDomain, random_b64, unix_now};
use agentauth_store::Store;
use axum::Router;
use axum::handler::Handler;
use axum::middleware;
use axum::routing::{MethodFilter, MethodRouter, on};
use http::{HeaderValue, Method, Request, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::ConfigError;
use crate::keys::{KeyRing, MasterKey};
use crate::{
    AdminCredential, AuthorityError, Config, approval, audit, delegation, files, oauth, policy,
    registry, revocation, task,
};

/// Longest any request may take, so slow clients cannot hold handlers forever.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Shared state of every handler.
pub(crate) struct State {
    pub(crate) store: Arc<dyn Store>,
    /// The signing keys; replaced whole when a key is added here or seen
    /// added by another replica.
    pub(crate) keys: std::sync::RwLock<Arc<KeyRing>>,
    pub(crate) master: MasterKey,
    /// The certificate authorities of X.509-SVIDs; replaced whole when one
    /// is added here or seen added by another replica.
    pub(crate) ca: std::sync::RwLock<Arc<crate::svid::CaRing>>,
    /// Bumped whenever the CAs change, so Workload API streams push at once.
    pub(crate) ca_changes: tokio::sync::watch::Sender<u64>,
    /// The upstream CA that signs the X.509 CAs, when one is configured.
    pub(crate) upstream: Option<Arc<agentauth_svid::UpstreamCa>>,
    /// Foreign trust domains' bundles (SPIFFE federation).
    pub(crate) federation: crate::federation::Federation,
    /// The key JWT-SVIDs are signed with.
    pub(crate) jwt_svid_key: crate::svid::JwtSvidKey,
    pub(crate) admin: AdminCredential,
    pub(crate) config: Config,
    pub(crate) issuer: String,
    pub(crate) trust_domain: TrustDomain,
    pub(crate) authority_id: SpiffeId,
    /// Wakes revocation streams; see [`State::revocations_changed`].
    pub(crate) feed: revocation::Notifier,
    /// Request-signature nonces and DPoP `jti`s seen by this replica's API.
    pub(crate) nonces: agentauth_core::NonceCache,
    /// The policy set this replica decides with.
    pub(crate) policy: policy::PolicyState,
    /// The token endpoint's rate limits.
    pub(crate) throttle: crate::throttle::Throttle,
    /// Token requests refused before authentication, counted per window.
    pub(crate) refusals: crate::refusals::RefusalTally,
    /// Access tokens whose signature verified at one of the authority's
    /// doors (its API, exchange, introspection): one presented again skips
    /// only its signature check; time, key, proof and revocation still run.
    pub(crate) verified_tokens: agentauth_core::VerifiedTokens,
    /// What `GET /metrics` serves.
    pub(crate) metrics: crate::metrics::Metrics,
    /// Set when shutdown begins: `/readyz` answers 503 from then on.
    pub(crate) shutting_down: std::sync::atomic::AtomicBool,
}

pub(crate) type AppState = Arc<State>;

impl State {
    /// The signing keys as they are now.
    pub(crate) fn keys(&self) -> Arc<KeyRing> {
        self.keys.read().expect("key ring lock").clone()
    }

    /// The X.509 CAs as they are now.
    pub(crate) fn cas(&self) -> Arc<crate::svid::CaRing> {
        self.ca.read().expect("CA ring lock").clone()
    }

    /// Puts new CAs in place and tells the Workload API's streams.
    pub(crate) fn set_cas(&self, ring: crate::svid::CaRing) {
        *self.ca.write().expect("CA ring lock") = Arc::new(ring);
        self.ca_changes.send_modify(|n| *n += 1);
    }

    /// Seconds a retired signing key stays published: every token it signed
    /// has expired by then, with the verifiers' clock leeway.
    pub(crate) fn key_retired_for(&self) -> i64 {
        self.config.max_token_lifetime_secs + agentauth_core::DEFAULT_LEEWAY_SECS
    }

    /// The token endpoint URL.
    pub(crate) fn endpoint(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Tells the revocation streams that new entries were committed. Every
    /// handler that publishes revocations calls it after its store call.
    pub(crate) fn revocations_changed(&self) {
        self.feed.changed();
    }
}

/// The upstream CA of the configuration, read from its files.
fn upstream_ca(config: &Config) -> Result<Option<Arc<agentauth_svid::UpstreamCa>>, AuthorityError> {
    let (Some(cert), Some(key)) = (&config.upstream_ca_cert, &config.upstream_ca_key) else {
        return Ok(None);
    };
    let read = |path: &std::path::PathBuf| {
        std::fs::read_to_string(path)
            .map_err(|e| crate::config::ConfigError::UpstreamCa(format!("{}: {e}", path.display())))
    };
    let upstream = agentauth_svid::UpstreamCa::from_pem(&read(cert)?, &read(key)?)
        .map_err(|e| crate::config::ConfigError::UpstreamCa(e.to_string()))?;
    if upstream.not_after() <= agentauth_core::unix_now() {
        return Err(
            crate::config::ConfigError::UpstreamCa("the certificate has expired".into()).into(),
        );
    }
    Ok(Some(Arc::new(upstream)))
}

/// Prepares the data dir, store, keys and admin credential and the state
/// every handler shares; the admin credential is returned on first start.
async fn open_state(
    config: Config,
    trust_domain: TrustDomain,
    master_key: Option<String>,
    issuer: &str,
) -> Result<(AppState, Option<String>), AuthorityError> {
    files::ensure_private_dir(&config.data_dir)?;
    for path in config.secret_files() {
        files::check_private(&path)?;
    }
    if let Some(db) = config.sqlite_path() {
        files::create_private_if_absent(&db)?;
    }
    let store = agentauth_store::open(&config.database_url()).await?;
    let master = MasterKey::load_or_create(&config.data_dir, master_key.as_deref())?;
    store.set_audit_key(master.audit_key(&*store).await?);
    let seal = crate::audit::event(
        agentauth_core::AuditKind::AuditSealed,
        "authority",
        "audit log",
        agentauth_core::Decision::Allow,
    );
    let sealed = store.seal_unkeyed_audit(&seal).await?;
    if sealed > 0 {
        tracing::info!(
            records = sealed,
            "authenticated audit records written before audit records were keyed"
        );
    }
    let retired_for = config.max_token_lifetime_secs + agentauth_core::DEFAULT_LEEWAY_SECS;
    let keys = KeyRing::load_or_create(&*store, &master, retired_for).await?;
    let upstream = upstream_ca(&config)?;
    let ca = crate::svid::load_or_create(
        &*store,
        &master,
        &trust_domain,
        upstream.as_deref(),
        config.ca_lifetime_days,
    )
    .await?;
    let jwt_svid_key = crate::svid::jwt_key_load_or_create(&*store, &master).await?;
    let (admin, admin_token) = AdminCredential::load_or_create(&*store, &config.data_dir).await?;
    let issuer = issuer.trim_end_matches('/').to_owned();
    let authority_id = SpiffeId::authority(&trust_domain);
    let throttle = crate::throttle::Throttle::new(
        config.token_requests_per_address,
        config.token_requests_per_client,
        config.audit_events_per_agent,
    );
    let state = Arc::new(State {
        store,
        keys: std::sync::RwLock::new(Arc::new(keys)),
        master,
        ca: std::sync::RwLock::new(Arc::new(ca)),
        ca_changes: tokio::sync::watch::Sender::new(0),
        upstream,
        federation: crate::federation::Federation::default(),
        jwt_svid_key,
        admin,
        config,
        issuer,
        trust_domain,
        authority_id,
        feed: revocation::Notifier::new(),
        nonces: agentauth_core::NonceCache::default(),
        policy: policy::PolicyState::new(),
        throttle,
        refusals: crate::refusals::RefusalTally::default(),
        verified_tokens: agentauth_core::VerifiedTokens::new(
            agentauth_core::DEFAULT_VERIFIED_TOKENS,
        ),
        metrics: crate::metrics::Metrics::new(),
        shutting_down: std::sync::atomic::AtomicBool::new(false),
    });
    Ok((state, admin_token))
}

/// A running authority.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The issuer URL tokens carry.
    pub issuer: String,
    /// The admin credential, only on the very first start.
    pub admin_token: Option<String>,
    /// Whether it serves HTTPS (`serve --tls`).
    pub tls: bool,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    purger: JoinHandle<()>,
    refresher: JoinHandle<()>,
    flusher: JoinHandle<()>,
    /// The Workload API on its socket, when configured.
    workload: Option<(oneshot::Sender<()>, JoinHandle<()>)>,
    state: AppState,
}

impl Running {
    /// The trust domain's CA certificates, PEM: what a client embedding the
    /// authority trusts it with when it serves TLS.
    pub fn trust_bundle_pem(&self) -> String {
        let ring = self.state.cas();
        agentauth_svid::certificates_pem(ring.anchors(agentauth_core::unix_now()))
    }

    /// Stops accepting, finishes in-flight requests, writes the refusals
    /// counted so far and returns.
    pub async fn shutdown(self) {
        self.state
            .shutting_down
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = self.stop.send(());
        let _ = self.task.await;
        if let Some((stop, task)) = self.workload {
            let _ = stop.send(());
            let _ = task.await;
        }
        self.purger.abort();
        self.refresher.abort();
        self.flusher.abort();
        crate::refusals::flush(&self.state).await;
    }
}

/// Prepares the data dir, store, keys and admin credential, binds the listener
/// and starts serving in the background.
pub async fn start(config: Config, master_key: Option<String>) -> Result<Running, AuthorityError> {
    let trust_domain = TrustDomain::new(&config.trust_domain).map_err(ConfigError::TrustDomain)?;
    config.check()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| ConfigError::Listen {
            addr: config.listen,
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    let scheme = if config.tls { "https" } else { "http" };
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    // Bound before anything else starts, so a bad path fails the start.
    let workload_endpoint = match &config.workload_socket {
        Some(path) => Some(
            agentauth_workload::Endpoint::bind(path)
                .map_err(|e| ConfigError::WorkloadSocket(e.to_string()))?,
        ),
        None => None,
    };
    let (state, admin_token) = open_state(config, trust_domain, master_key, &issuer).await?;
    let issuer = state.issuer.clone();
    policy::refresh(&state).await?;
    crate::federation::reload(&state).await?;
    let signals = match state.store.change_signals().await {
        Ok(signals) => signals,
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for other replicas' changes; re-reading on timers alone");
            agentauth_store::ChangeSignals::default()
        }
    };
    let reread = Duration::from_secs(state.config.replica_reread_secs);
    revocation::spawn_watcher(Arc::downgrade(&state), signals.clone());
    let refresher = policy::spawn_refresher(Arc::downgrade(&state), signals.clone(), reread);
    crate::admin::spawn_refresher(Arc::downgrade(&state), signals, reread);
    crate::keys::spawn_rotator(Arc::downgrade(&state));
    crate::svid::spawn_ca_rotator(Arc::downgrade(&state));
    crate::federation::spawn_refresher(Arc::downgrade(&state));
    let closer = state.clone();
    let workload = workload_endpoint.map(|endpoint| {
        let (stop, stopped) = oneshot::channel();
        tracing::info!(socket = %endpoint.path().display(), "SPIFFE Workload API listening");
        (
            stop,
            crate::workload::spawn(endpoint, state.clone(), stopped),
        )
    });

    let purger = spawn_purger(Arc::downgrade(&state));
    let flusher = crate::refusals::spawn_flusher(
        Arc::downgrade(&state),
        Duration::from_secs(state.config.refusal_audit_window_secs),
    );
    let kept = state.clone();
    let limits = crate::connections::Limits {
        max_connections: state.config.max_connections,
        header_read_timeout: Duration::from_secs(state.config.header_read_timeout_secs),
    };
    let tls = if state.config.tls {
        let (config, own) = crate::tls::server_config(&state)?;
        crate::tls::spawn_renewer(Arc::downgrade(&state), own);
        // The handshake validated the chain; naming it reads the leaf only.
        let trust_domain = state.trust_domain.as_str().to_owned();
        Some(crate::connections::Tls {
            config,
            identify: Arc::new(move |chain| {
                agentauth_svid::svid_id(chain.first()?, &trust_domain).ok()
            }),
        })
    } else {
        None
    };
    let app = router(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(crate::connections::serve(
        listener,
        app,
        limits,
        tls,
        stopped,
        // Open revocation streams would keep the graceful shutdown waiting.
        move || closer.feed.close(),
    ));
    tracing::info!(%addr, %issuer, "agentauth authority listening");
    Ok(Running {
        addr,
        issuer,
        admin_token,
        tls: kept.config.tls,
        stop,
        task,
        purger,
        refresher,
        flusher,
        workload,
        state: kept,
    })
}

/// Who may call a route; the router is built from this, so a route's access
/// is stated once, next to its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Access {
    /// Anyone: discovery, keys, the revocation feed, the policy for verifiers.
    Public,
    /// Callers that authenticate in the handler: an agent (client assertion
    /// or access token for the authority), and for some routes the admin.
    Caller,
    /// The admin's rights (the admin credential, or an operator in the
    /// `admin` group); checked by a layer on the admin sub-router.
    Admin,
    /// The admin or any operator (approvals); the handler decides what the
    /// operator may do.
    Operator,
}

/// One route: method, path, who may call it, and its handler.
pub(crate) struct Route {
    pub(crate) access: Access,
    pub(crate) method: Method,
    pub(crate) path: &'static str,
    endpoint: MethodRouter<AppState>,
}

fn route<H, T>(access: Access, method: Method, path: &'static str, handler: H) -> Route
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("routes use standard methods");
    Route {
        access,
        method,
        path,
        endpoint: on(filter, handler),
    }
}

/// Every route of the authority.
pub(crate) fn routes() -> Vec<Route> {
    use Access::{Admin, Caller, Operator, Public};
    let (get, post, patch, delete) = (Method::GET, Method::POST, Method::PATCH, Method::DELETE);
    vec![
        route(
            Public,
            get.clone(),
            "/.well-known/oauth-authorization-server",
            oauth::metadata,
        ),
        route(Public, get.clone(), "/.well-known/jwks.json", oauth::jwks),
        route(Public, get.clone(), "/v1/revocations", revocation::since),
        route(
            Public,
            get.clone(),
            "/v1/revocations/stream",
            revocation::stream,
        ),
        route(Public, get.clone(), "/v1/policy", policy::distribution),
        // The admin credential, or an agent's token with `policy:read`.
        route(
            Caller,
            get.clone(),
            "/v1/policy/agents/{name}",
            policy::agent_facts,
        ),
        route(Public, get.clone(), "/v1/bundle", crate::svid::bundle),
        route(
            Public,
            get.clone(),
            "/v1/bundles",
            crate::federation::bundle_map,
        ),
        route(Public, get.clone(), "/healthz", || async { "ok" }),
        route(Public, get.clone(), "/readyz", ready),
        route(Public, get.clone(), "/metrics", crate::metrics::scrape),
        // The client authenticates with private_key_jwt (or, for
        // introspection and revocation, the admin credential).
        route(Caller, post.clone(), "/oauth/token", oauth::token),
        route(Caller, post.clone(), "/oauth/introspect", oauth::introspect),
        route(Caller, post.clone(), "/oauth/revoke", oauth::revoke),
        // The admin, or an agent with a token for the authority.
        route(Caller, post.clone(), "/v1/agents", registry::create),
        route(
            Caller,
            post.clone(),
            "/v1/tasks/{txn}/complete",
            task::complete,
        ),
        route(Caller, post.clone(), "/v1/audit/events", audit::ingest),
        route(Caller, post.clone(), "/v1/svids/x509", crate::svid::issue),
        // A node: its join token once, then its SVID over mutual TLS.
        route(
            Caller,
            post.clone(),
            "/v1/nodes/attest",
            crate::node::attest,
        ),
        route(Caller, post.clone(), "/v1/nodes/svid", crate::node::renew),
        route(
            Caller,
            get.clone(),
            "/v1/nodes/entries",
            crate::node::entries,
        ),
        route(Caller, post.clone(), "/v1/nodes/x509", crate::node::x509),
        route(Caller, post.clone(), "/v1/nodes/jwt", crate::node::jwt),
        route(
            Caller,
            post.clone(),
            "/v1/svids/jwt",
            crate::svid::issue_jwt,
        ),
        route(Admin, get.clone(), "/v1/agents", registry::list),
        route(Admin, get.clone(), "/v1/agents/{name}", registry::show),
        route(Admin, patch, "/v1/agents/{name}", registry::update),
        route(
            Admin,
            post.clone(),
            "/v1/agents/{name}/key",
            registry::rotate_key,
        ),
        route(Admin, delete.clone(), "/v1/agents/{name}", registry::delete),
        route(
            Admin,
            post.clone(),
            "/v1/agents/{name}/delegations",
            delegation::grant,
        ),
        route(
            Admin,
            get.clone(),
            "/v1/agents/{name}/delegations",
            delegation::list,
        ),
        route(
            Admin,
            delete.clone(),
            "/v1/agents/{name}/delegations/{to}",
            delegation::revoke,
        ),
        route(Admin, post.clone(), "/v1/revocations", task::revoke),
        route(
            Admin,
            post.clone(),
            "/v1/admin/credential",
            crate::admin::rotate,
        ),
        route(Admin, get.clone(), "/v1/keys", crate::keys::list),
        route(Admin, post.clone(), "/v1/keys/rotate", crate::keys::rotate),
        route(Admin, get.clone(), "/v1/ca", crate::svid::list),
        route(Admin, get.clone(), "/v1/nodes", crate::node::list),
        route(
            Admin,
            post.clone(),
            "/v1/nodes/tokens",
            crate::node::create_token,
        ),
        route(
            Admin,
            delete.clone(),
            "/v1/nodes/{name}",
            crate::node::evict,
        ),
        route(Admin, post.clone(), "/v1/ca/rotate", crate::svid::rotate),
        route(
            Admin,
            delete.clone(),
            "/v1/ca/{serial}",
            crate::svid::remove,
        ),
        route(
            Admin,
            get.clone(),
            "/v1/federation",
            crate::federation::list,
        ),
        route(
            Admin,
            post.clone(),
            "/v1/federation",
            crate::federation::add,
        ),
        route(
            Admin,
            post.clone(),
            "/v1/federation/{trust_domain}/refresh",
            crate::federation::refresh,
        ),
        route(
            Admin,
            delete.clone(),
            "/v1/federation/{trust_domain}",
            crate::federation::remove,
        ),
        route(Admin, get.clone(), "/v1/tasks/{txn}", task::show),
        route(Admin, get.clone(), "/v1/audit", audit::list),
        route(Admin, post.clone(), "/v1/policies", policy::load),
        route(Admin, get.clone(), "/v1/policies", policy::list),
        route(Admin, post.clone(), "/v1/policies/test", policy::dry_run),
        route(Admin, get.clone(), "/v1/policies/{version}", policy::show),
        route(
            Admin,
            post.clone(),
            "/v1/policies/{version}/activate",
            policy::activate,
        ),
        route(
            Admin,
            post.clone(),
            "/v1/audit/checkpoint",
            audit::checkpoint,
        ),
        route(Admin, post.clone(), "/v1/operators", crate::operator::add),
        route(Admin, get.clone(), "/v1/operators", crate::operator::list),
        route(
            Admin,
            delete,
            "/v1/operators/{name}",
            crate::operator::remove,
        ),
        route(Operator, get.clone(), "/v1/approvals", approval::list),
        route(Operator, get, "/v1/approvals/{id}", approval::show),
        route(
            Operator,
            post.clone(),
            "/v1/approvals/{id}/approve",
            approval::approve,
        ),
        route(Operator, post, "/v1/approvals/{id}/deny", approval::deny),
    ]
}

/// The open routes, and the admin routes behind the admin-credential layer.
fn router(state: AppState) -> Router {
    let mut open = Router::new();
    let mut admin = Router::new();
    let mut operators = Router::new();
    for r in routes() {
        tracing::debug!(method = %r.method, path = r.path, access = ?r.access, "route");
        match r.access {
            Access::Public | Access::Caller => open = open.route(r.path, r.endpoint),
            Access::Admin => admin = admin.route(r.path, r.endpoint),
            Access::Operator => operators = operators.route(r.path, r.endpoint),
        }
    }
    let admin = admin.route_layer(middleware::from_fn_with_state(
        state.clone(),
        crate::admin::admin_only,
    ));
    let operators = operators.route_layer(middleware::from_fn_with_state(
        state.clone(),
        crate::admin::operator_only,
    ));
    open.merge(admin)
        .merge(operators)
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::observe,
        ))
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
}

/// How long `/readyz` waits for the store to answer.
const READY_STORE_TIMEOUT: Duration = Duration::from_secs(2);

/// `GET /readyz`: 200 when the store answers within 2 s, the signing keys
/// are loaded and the authority is not shutting down; otherwise 503 with
/// `not_ready` and which check failed. `/healthz` says only that the
/// process answers.
async fn ready(
    axum::extract::State(s): axum::extract::State<AppState>,
) -> axum::response::Response {
    let store = match tokio::time::timeout(READY_STORE_TIMEOUT, s.store.ping()).await {
        Ok(Ok(())) => "ok",
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness: the store does not answer");
            "unreachable"
        }
        Err(_) => "timeout",
    };
    let keys = if s.keys().jwks(agentauth_core::unix_now()).keys.is_empty() {
        "missing"
    } else {
        "ok"
    };
    let stopping = s.shutting_down.load(std::sync::atomic::Ordering::SeqCst);
    let ready = store == "ok" && keys == "ok" && !stopping;
    let mut body = serde_json::json!({
        "ready": ready,
        "checks": {"store": store, "keys": keys, "shutting_down": stopping},
    });
    let status = if ready {
        StatusCode::OK
    } else {
        let why = if stopping {
            "the authority is shutting down"
        } else if store != "ok" {
            "the store does not answer"
        } else {
            "no signing key is published"
        };
        body["error"] = "not_ready".into();
        body["error_description"] = why.into();
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut response = axum::response::IntoResponse::into_response((status, axum::Json(body)));
    response.headers_mut().insert(
        http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    response
}

/// Request IDs for correlation between logs and audit records.
#[derive(Clone, Copy)]
struct RandomRequestId;

impl MakeRequestId for RandomRequestId {
    fn make_request_id<B>(&mut self, _: &Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&random_b64(12))
            .ok()
            .map(RequestId::new)
    }
}

/// Forgets spent client assertions once they could no longer be replayed.
/// Once a minute: forgets used client assertions past their expiry and
/// rate-limit keys back at a full budget. Stops with the state.
fn spawn_purger(state: std::sync::Weak<State>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let Some(state) = state.upgrade() else {
                return;
            };
            state.throttle.forget_idle();
            if let Err(e) = state.store.purge_expired(unix_now() - 60).await {
                tracing::warn!(error = %e, "purging used client assertions failed");
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use agentauth_api::{NewAgent, TokenResponse};
    use agentauth_core::{ClientAssertionClaims, SigningKey, random_b64, unix_now};
    use axum::body::{Body, to_bytes};
    use http::header::{AUTHORIZATION, CONTENT_TYPE};
    use serde_json::Value;
    use tower::ServiceExt as _;

    use super::*;

    const ISSUER: &str = "http://authority.test";

    /// A path of the route with every parameter filled in.
    fn concrete(path: &str) -> String {
        path.split('/')
            .map(|part| if part.starts_with('{') { "x" } else { part })
            .collect::<Vec<_>>()
            .join("/")
    }

    async fn call(app: &Router, method: Method, path: &str, auth: Option<&str>) -> StatusCode {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(auth) = auth {
            request = request.header(AUTHORIZATION, auth);
        }
        let request = request.body(Body::empty()).unwrap();
        app.clone().oneshot(request).await.unwrap().status()
    }

    async fn send_json(app: &Router, request: Request<Body>) -> (StatusCode, Value) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let body = to_bytes(response.into_body(), 1 << 20).await.unwrap();
        (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
    }

    /// A real access token for the authority, issued to a registered agent.
    async fn agent_token(app: &Router, admin: &str) -> String {
        let key = SigningKey::generate_ed25519();
        let walker = NewAgent {
            name: "walker".into(),
            description: String::new(),
            owner: String::new(),
            permissions: vec![],
            public_jwk: key.public_jwk().to_json(),
            bearer_allowed: false,
            expires_in: None,
            tags: vec![],
            selectors: vec![],
        };
        let register = Request::post("/v1/agents")
            .header(AUTHORIZATION, format!("Bearer {admin}"))
            .header(CONTENT_TYPE, "application/json")
            .body(Body::from(serde_json::to_vec(&walker).unwrap()))
            .unwrap();
        let (status, body) = send_json(app, register).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let client_id = "spiffe://agentauth.local/agent/walker";
        let assertion =
            ClientAssertionClaims::sign(&key, client_id, ISSUER, random_b64(16), unix_now());
        let form = serde_urlencoded::to_string([
            ("grant_type", "client_credentials"),
            ("resource", "spiffe://agentauth.local/authority"),
            ("scope", "audit:write"),
            ("client_id", client_id),
            (
                "client_assertion_type",
                agentauth_core::CLIENT_ASSERTION_TYPE,
            ),
            ("client_assertion", &assertion),
        ])
        .unwrap();
        let request = Request::post("/oauth/token")
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(Body::from(form))
            .unwrap();
        let (status, body) = send_json(app, request).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let issued: TokenResponse = serde_json::from_value(body).unwrap();
        issued.access_token
    }

    #[tokio::test]
    async fn every_admin_route_refuses_anyone_without_the_admin_credential() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let trust_domain = TrustDomain::new("agentauth.local").unwrap();
        let (state, admin) = open_state(config, trust_domain, None, ISSUER)
            .await
            .unwrap();
        policy::refresh(&state).await.unwrap();
        let admin = admin.expect("a first start creates the admin credential");
        let app = router(state);
        let token = agent_token(&app, &admin).await;

        let routes = routes();
        let admin_routes: Vec<&Route> = routes
            .iter()
            .filter(|r| matches!(r.access, Access::Admin | Access::Operator))
            .collect();
        for (method, path) in [
            (Method::GET, "/v1/agents"),
            (Method::POST, "/v1/revocations"),
            (Method::GET, "/v1/audit"),
            (Method::POST, "/v1/audit/checkpoint"),
            (Method::POST, "/v1/operators"),
            (Method::POST, "/v1/approvals/{id}/approve"),
        ] {
            assert!(
                admin_routes
                    .iter()
                    .any(|r| r.method == method && r.path == path),
                "{method} {path} is an admin route"
            );
        }
        // Rotating the credential ends the admin's access with the old one:
        // that route goes last.
        let mut admin_routes = admin_routes;
        admin_routes.sort_by_key(|r| r.path == "/v1/admin/credential");
        for r in admin_routes {
            let path = concrete(r.path);
            let m = &r.method;
            for auth in [
                None,
                Some(format!("Bearer {token}")),
                Some(format!("DPoP {token}")),
            ] {
                let status = call(&app, m.clone(), &path, auth.as_deref()).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{m} {path} with {auth:?}");
            }
            let status = call(&app, m.clone(), &path, Some(&format!("Bearer {admin}"))).await;
            assert_ne!(status, StatusCode::UNAUTHORIZED, "{m} {path} as admin");
            assert_ne!(
                status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path} is routed"
            );
        }
        // Routes whose handlers authenticate the caller refuse an anonymous one too.
        for r in routes.iter().filter(|r| r.access == Access::Caller) {
            let status = call(&app, r.method.clone(), &concrete(r.path), None).await;
            assert!(
                status.is_client_error(),
                "{} {}: {status}",
                r.method,
                r.path
            );
        }
    }

    #[test]
    fn each_method_and_path_is_routed_once() {
        let routes = routes();
        let unique: HashSet<(String, &str)> = routes
            .iter()
            .map(|r| (r.method.to_string(), r.path))
            .collect();
        assert_eq!(unique.len(), routes.len());
    }
}
