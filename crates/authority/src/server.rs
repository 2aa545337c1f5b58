//! Start-up: data dir, store, keys, admin credential, router and the listener.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use agentauth_core::{SpiffeId, TrustDomain, random_b64, unix_now};
use agentauth_store::Store;
use axum::Router;
use axum::routing::{delete, get, post};
use http::{HeaderValue, Request, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

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
    pub(crate) keys: KeyRing,
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
}

pub(crate) type AppState = Arc<State>;

impl State {
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

/// A running authority.
pub struct Running {
    /// The bound address.
    pub addr: SocketAddr,
    /// The issuer URL tokens carry.
    pub issuer: String,
    /// The admin credential, only on the very first start.
    pub admin_token: Option<String>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<std::io::Result<()>>,
    purger: JoinHandle<()>,
    refresher: JoinHandle<()>,
}

impl Running {
    /// Stops accepting, finishes in-flight requests and returns.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
        self.purger.abort();
        self.refresher.abort();
    }
}

/// Prepares the data dir, store, keys and admin credential, binds the listener
/// and starts serving in the background.
pub async fn start(config: Config, master_key: Option<String>) -> Result<Running, AuthorityError> {
    let trust_domain = TrustDomain::new(&config.trust_domain)
        .map_err(|e| AuthorityError::InvalidRequest(format!("configuration: {e}")))?;
    if config.approval_ttl_secs < 1 || config.approval_interval_secs < 1 {
        return Err(AuthorityError::InvalidRequest(
            "configuration: approval_ttl_secs and approval_interval_secs must be at least 1".into(),
        ));
    }
    if config.token_lifetime_secs < 1 || config.max_token_lifetime_secs < config.token_lifetime_secs
    {
        return Err(AuthorityError::InvalidRequest(
            "configuration: token lifetimes must satisfy 1 <= token_lifetime_secs <= max_token_lifetime_secs".into(),
        ));
    }
    files::ensure_private_dir(&config.data_dir)?;
    let store = agentauth_store::open(&config.database_url()).await?;
    let master = MasterKey::load_or_create(&config.data_dir, master_key.as_deref())?;
    let keys = KeyRing::load_or_create(&*store, &master).await?;
    let (admin, admin_token) = AdminCredential::load_or_create(&*store, &config.data_dir).await?;

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| {
            AuthorityError::Internal(format!("cannot listen on {}: {e}", config.listen))
        })?;
    let addr = listener
        .local_addr()
        .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    let issuer = config
        .issuer
        .clone()
        .unwrap_or_else(|| format!("http://{addr}"));
    let issuer = issuer.trim_end_matches('/').to_owned();
    let authority_id = SpiffeId::authority(&trust_domain);
    let state = Arc::new(State {
        store,
        keys,
        admin,
        config,
        issuer: issuer.clone(),
        trust_domain,
        authority_id,
        feed: revocation::Notifier::new(),
        nonces: agentauth_core::NonceCache::default(),
        policy: policy::PolicyState::new(),
    });
    policy::refresh(&state).await?;
    revocation::spawn_watcher(Arc::downgrade(&state));
    let refresher = policy::spawn_refresher(Arc::downgrade(&state));
    let closer = state.clone();

    let purger = spawn_purger(state.store.clone());
    let app = router(state);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
            // Open revocation streams would keep the graceful shutdown waiting.
            closer.feed.close();
        })
        .await
    });
    tracing::info!(%addr, %issuer, "agentauth authority listening");
    Ok(Running {
        addr,
        issuer,
        admin_token,
        stop,
        task,
        purger,
        refresher,
    })
}

fn router(state: AppState) -> Router {
    Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::metadata),
        )
        .route("/.well-known/jwks.json", get(oauth::jwks))
        .route("/oauth/token", post(oauth::token))
        .route("/oauth/introspect", post(oauth::introspect))
        .route("/oauth/revoke", post(oauth::revoke))
        .route("/v1/agents", post(registry::create).get(registry::list))
        .route(
            "/v1/agents/{name}",
            get(registry::show)
                .patch(registry::update)
                .delete(registry::delete),
        )
        .route("/v1/revocations", get(revocation::since).post(task::revoke))
        .route(
            "/v1/agents/{name}/delegations",
            post(delegation::grant).get(delegation::list),
        )
        .route(
            "/v1/agents/{name}/delegations/{to}",
            delete(delegation::revoke),
        )
        .route("/v1/tasks/{txn}", get(task::show))
        .route("/v1/tasks/{txn}/complete", post(task::complete))
        .route("/v1/revocations/stream", get(revocation::stream))
        .route("/v1/audit", get(audit::list))
        .route("/v1/audit/events", post(audit::ingest))
        .route("/v1/policies", post(policy::load).get(policy::list))
        .route("/v1/policies/test", post(policy::dry_run))
        .route("/v1/policies/{version}", get(policy::show))
        .route("/v1/policies/{version}/activate", post(policy::activate))
        .route("/v1/policy", get(policy::distribution))
        .route("/v1/policy/agents/{name}", get(policy::agent_facts))
        .route("/v1/approvals", get(approval::list))
        .route("/v1/approvals/{id}", get(approval::show))
        .route("/v1/approvals/{id}/approve", post(approval::approve))
        .route("/v1/approvals/{id}/deny", post(approval::deny))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(TraceLayer::new_for_http())
        .layer(SetRequestIdLayer::x_request_id(RandomRequestId))
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
fn spawn_purger(store: Arc<dyn Store>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            if let Err(e) = store.purge_expired(unix_now() - 60).await {
                tracing::warn!(error = %e, "purging used client assertions failed");
            }
        }
    })
}
