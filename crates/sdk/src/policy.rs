//! The verifier's copy of the authority's active policy set, and the last
//! check of the layer: the local policy decision with the request's context.
//!
//! The set is fetched from `GET /v1/policy` (with its ETag) at start and
//! again whenever the revocation feed announces a new version. Anything that
//! cannot be known (a set that does not load here, facts that cannot be
//! fetched) denies: the layer fails closed. Built without the `policy`
//! feature there is no Cedar engine here, so an active set is one that does
//! not load: every request that demands a permission is denied.

#[cfg(feature = "policy")]
mod decision;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use agentauth_api::PolicyDistribution;
use agentauth_core::{AccessClaims, SpiffeId};
use http::request::Parts;

use crate::{Check, Denial, Endpoint, SdkError};

#[cfg(feature = "policy")]
use decision::Decider;

/// Why an active set is refused by a build without the Cedar engine.
#[cfg(not(feature = "policy"))]
const NO_ENGINE: &str =
    "this verifier was built without the SDK's `policy` feature and cannot evaluate it";

/// Where a verifier asks what policy needs to know of an agent: the
/// authority's API, with a token of this agent's own client.
#[cfg_attr(not(feature = "policy"), allow(dead_code))]
pub(crate) struct FactsSource<'a> {
    /// This agent's client; without one, facts cannot be read (fail closed).
    pub(crate) client: Option<&'a crate::Client>,
    /// The authority's base URL.
    pub(crate) authority_url: &'a str,
    /// The authority's SPIFFE ID, the audience of the token.
    pub(crate) authority_id: &'a SpiffeId,
}

/// What a route tells the policy about itself.
#[derive(Debug, Clone, Default)]
pub(crate) struct RouteContext {
    /// `context.sensitivity`; `unspecified` if not said.
    pub(crate) sensitivity: Option<String>,
    /// The kind of the typed resource the route serves: the resource is then
    /// `Resource::"<decoded request path>"` (e.g. `"/invoices/42"`) of this
    /// kind, in this agent.
    pub(crate) resource_kind: Option<String>,
}

/// The policy set this verifier decides with.
#[derive(Debug)]
pub(crate) enum Active {
    /// The authority has no active set: nothing to decide.
    Off,
    /// This version decides.
    #[cfg(feature = "policy")]
    On {
        version: i64,
        etag: Option<String>,
        decider: Arc<Decider>,
    },
    /// The authority's active set does not load here: every request is denied.
    Broken { version: i64, why: String },
}

impl Active {
    /// A set that does not load here, logged once as it is installed.
    fn broken(version: i64, why: String) -> Self {
        tracing::error!(version, error = %why, "the authority's policy set does not load here: denying every request");
        Self::Broken { version, why }
    }
}

/// The policy state of one verifier.
#[derive(Debug)]
pub(crate) struct PolicyView {
    active: RwLock<Arc<Active>>,
    /// A refresh task is running.
    refreshing: AtomicBool,
    /// A new version was announced since the running refresh started.
    announced: AtomicBool,
}

impl PolicyView {
    pub(crate) fn new() -> Self {
        Self {
            active: RwLock::new(Arc::new(Active::Off)),
            refreshing: AtomicBool::new(false),
            announced: AtomicBool::new(false),
        }
    }

    /// The set in use now.
    pub(crate) fn current(&self) -> Arc<Active> {
        self.active.read().expect("lock").clone()
    }

    /// The version in use; `None` when policy is off.
    pub(crate) fn version(&self) -> Option<i64> {
        match &*self.current() {
            Active::Off => None,
            #[cfg(feature = "policy")]
            Active::On { version, .. } => Some(*version),
            Active::Broken { version, .. } => Some(*version),
        }
    }

    /// Fetches the active set unless the ETag says it is the one held.
    pub(crate) async fn refresh(
        &self,
        http: &reqwest::Client,
        authority_url: &str,
    ) -> Result<(), SdkError> {
        #[cfg_attr(not(feature = "policy"), allow(unused_mut))]
        let mut request = http.get(format!("{authority_url}/v1/policy"));
        #[cfg(feature = "policy")]
        if let Active::On {
            etag: Some(etag), ..
        } = &*self.current()
        {
            request = request.header(http::header::IF_NONE_MATCH, etag);
        }
        let response = request
            .send()
            .await
            .map_err(SdkError::unreachable(Endpoint::PolicySet))?;
        let status = response.status();
        if status == http::StatusCode::NOT_MODIFIED {
            return Ok(());
        }
        if !status.is_success() {
            return Err(SdkError::AuthorityStatus {
                endpoint: Endpoint::PolicySet,
                status: status.as_u16(),
            });
        }
        #[cfg(feature = "policy")]
        let etag = response
            .headers()
            .get(http::header::ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: PolicyDistribution = response
            .json()
            .await
            .map_err(SdkError::unreadable(Endpoint::PolicySet))?;
        let version = match (body.active, body.version) {
            (false, _) => {
                *self.active.write().expect("lock") = Arc::new(Active::Off);
                return Ok(());
            }
            (true, Some(v)) => v,
            (true, None) => {
                return Err(SdkError::AuthorityAnswer {
                    endpoint: Endpoint::PolicySet,
                    cause: "an active set without a version".into(),
                });
            }
        };
        // A new decider starts with no facts: they may have changed along
        // with the policies that read them.
        #[cfg(feature = "policy")]
        let files: Vec<agentauth_policy::PolicyFile> = body
            .files
            .unwrap_or_default()
            .into_iter()
            .map(|f| agentauth_policy::PolicyFile {
                name: f.name,
                text: f.text,
            })
            .collect();
        #[cfg(feature = "policy")]
        let active = match Decider::load(&files) {
            Ok(decider) => Active::On {
                version,
                etag,
                decider: Arc::new(decider),
            },
            Err(e) => Active::broken(version, e.to_string()),
        };
        #[cfg(not(feature = "policy"))]
        let active = Active::broken(version, NO_ENGINE.to_owned());
        *self.active.write().expect("lock") = Arc::new(active);
        Ok(())
    }

    /// Refreshes in the background after a feed announcement: one task at a
    /// time, which fetches again if another announcement came meanwhile.
    pub(crate) fn refresh_soon(self: &Arc<Self>, http: reqwest::Client, authority_url: String) {
        self.announced.store(true, Ordering::Release);
        if self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let view = self.clone();
        tokio::spawn(async move {
            loop {
                while view.announced.swap(false, Ordering::AcqRel) {
                    if let Err(e) = view.refresh(&http, &authority_url).await {
                        tracing::warn!(error = %e, "fetching the new policy set failed");
                    }
                }
                view.refreshing.store(false, Ordering::Release);
                // An announcement between the last check and the store above
                // found the task still running: take it on.
                if !view.announced.load(Ordering::Acquire)
                    || view.refreshing.swap(true, Ordering::AcqRel)
                {
                    return;
                }
            }
        });
    }

    /// The local policy decision for `permission` with the request's context.
    #[allow(clippy::too_many_arguments)]
    #[cfg_attr(not(feature = "policy"), allow(unused_variables))]
    pub(crate) async fn check(
        &self,
        source: &FactsSource<'_>,
        me: &SpiffeId,
        environment: &str,
        claims: &AccessClaims,
        permission: &str,
        route: &RouteContext,
        parts: &Parts,
    ) -> Result<(), Denial> {
        match &*self.current() {
            Active::Off => Ok(()),
            Active::Broken { version, why } => Err(Denial::new(
                Check::Policy,
                format!("policy set version {version} does not load here: {why}"),
            )),
            #[cfg(feature = "policy")]
            Active::On {
                version, decider, ..
            } => {
                decider
                    .decide(
                        *version,
                        source,
                        me,
                        environment,
                        claims,
                        permission,
                        route,
                        parts,
                    )
                    .await
            }
        }
    }
}

#[cfg(all(test, not(feature = "policy")))]
mod tests {
    use super::*;

    /// An authority whose `GET /v1/policy` answers `body`; returns its URL.
    async fn authority(body: &'static str) -> String {
        let app = axum::Router::new().route(
            "/v1/policy",
            axum::routing::get(move || async move { body }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test]
    async fn without_the_engine_an_active_set_is_one_that_does_not_load() {
        let url = authority(r#"{"active":true,"version":3,"files":[]}"#).await;
        let view = PolicyView::new();
        view.refresh(&reqwest::Client::new(), &url)
            .await
            .expect("refresh");
        assert_eq!(view.version(), Some(3));
        assert!(matches!(&*view.current(), Active::Broken { why, .. } if why == NO_ENGINE));
    }

    #[tokio::test]
    async fn without_the_engine_no_active_set_leaves_policy_off() {
        let url = authority(r#"{"active":false}"#).await;
        let view = PolicyView::new();
        view.refresh(&reqwest::Client::new(), &url)
            .await
            .expect("refresh");
        assert_eq!(view.version(), None);
    }
}
