//! SPIFFE federation: the authority follows the bundle endpoints of foreign
//! trust domains (`https_web` profile), keeps each one's last good bundle
//! in the store, fetches it again at the bundle's own refresh hint, and
//! hands the bundles out: `GET /v1/bundles` (a SPIFFE bundle map) and the
//! Workload API. Bundles of different trust domains are never merged.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use agentauth_api::{FederationList, FederationView, NewFederation};
use agentauth_core::{AuditKind, Decision, TrustDomain, unix_now};
use agentauth_svid::{MAX_BUNDLE_BYTES, SpiffeBundle};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::audit::{event, request_id};
use crate::server::AppState;
use crate::{AuthorityError, Missing};

/// Setting that holds the federated trust domains and their bundles.
pub(crate) const FEDERATION_SETTING: &str = "federation";
/// Most trust domains followed.
const MAX_DOMAINS: usize = 64;
/// Longest bundle endpoint URL, and longest endpoint CA PEM.
const MAX_URL_LEN: usize = 2048;
const MAX_ENDPOINT_CA_LEN: usize = 64 * 1024;
/// How long one fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The refresh hint's bounds, and the default when a bundle gives none
/// (the SPIFFE bundle format's five minutes).
const MIN_REFRESH_SECS: u64 = 5;
const MAX_REFRESH_SECS: u64 = 86_400;
const DEFAULT_REFRESH_SECS: u64 = 300;

/// Why a federation request is refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FederationRefusal {
    /// The trust domain name is not one.
    #[error("{0:?} is not a trust domain name")]
    TrustDomain(String),
    /// The authority's own trust domain cannot be federated with.
    #[error("{0} is this authority's own trust domain")]
    OwnTrustDomain(String),
    /// The bundle endpoint URL is not an https URL within bounds.
    #[error("the bundle endpoint must be an https:// URL of at most 2048 characters")]
    Url,
    /// The endpoint CA is not PEM certificates within bounds.
    #[error("endpoint_ca must be PEM CA certificates, at most 64 KiB")]
    EndpointCa,
    /// The trust domain is followed already.
    #[error("{0} is federated already; remove it first")]
    Exists(String),
    /// Too many trust domains are followed.
    #[error("at most 64 trust domains are federated")]
    TooMany,
    /// The bundle could not be fetched or read: nothing was stored.
    #[error("the bundle of {domain} could not be fetched: {why}")]
    Fetch {
        /// The trust domain.
        domain: String,
        /// What failed.
        why: String,
    },
}

/// The federated trust domains as the store keeps them (one setting, so
/// replicas change them by compare-and-swap).
#[derive(Serialize, Deserialize, Default, Clone)]
struct StoredFederation {
    /// By trust domain name.
    domains: BTreeMap<String, StoredDomain>,
}

/// One federated trust domain as stored.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct StoredDomain {
    url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    endpoint_ca: Option<String>,
    /// The last good bundle document, as fetched.
    bundle: String,
    /// When it was fetched.
    refreshed_at: i64,
}

/// A foreign trust domain's bundle, read.
#[derive(Debug, Clone)]
pub(crate) struct ForeignBundle {
    /// Its keys.
    pub(crate) keys: SpiffeBundle,
    /// The document as fetched, for the bundle map.
    pub(crate) document: serde_json::Value,
    /// Seconds until the next fetch: the hint, within bounds.
    pub(crate) refresh_secs: u64,
}

/// Reads a fetched or stored bundle document.
fn read_bundle(text: &[u8]) -> Result<ForeignBundle, String> {
    if text.len() > MAX_BUNDLE_BYTES {
        return Err("the bundle is larger than 256 KiB".into());
    }
    let document: serde_json::Value =
        serde_json::from_slice(text).map_err(|_| "the bundle is not JSON".to_owned())?;
    let keys = SpiffeBundle::from_value(&document).map_err(|e| e.to_string())?;
    let refresh_secs = keys
        .refresh_hint
        .unwrap_or(DEFAULT_REFRESH_SECS)
        .clamp(MIN_REFRESH_SECS, MAX_REFRESH_SECS);
    Ok(ForeignBundle {
        keys,
        document,
        refresh_secs,
    })
}

/// When this replica last tried a domain, and how it went.
#[derive(Debug, Clone, Default)]
struct Attempt {
    refresh_at: i64,
    last_error: Option<String>,
}

/// The federated bundles this replica holds, and its fetch schedule.
#[derive(Default)]
pub(crate) struct Federation {
    /// The stored text last opened, and the bundles read from it.
    opened: RwLock<Arc<(String, BTreeMap<String, ForeignBundle>)>>,
    attempts: Mutex<BTreeMap<String, Attempt>>,
}

impl Federation {
    /// The foreign bundles by trust domain name.
    pub(crate) fn bundles(&self) -> BTreeMap<String, ForeignBundle> {
        self.opened.read().expect("federation lock").1.clone()
    }

    /// Puts the stored text in place; whether anything changed.
    fn open(&self, text: &str) -> Result<bool, AuthorityError> {
        if self.opened.read().expect("federation lock").0 == text {
            return Ok(false);
        }
        let stored: StoredFederation = serde_json::from_str(text)
            .map_err(|_| AuthorityError::Internal("the stored federation is not JSON".into()))?;
        let mut bundles = BTreeMap::new();
        for (name, domain) in &stored.domains {
            let bundle = read_bundle(domain.bundle.as_bytes()).map_err(|e| {
                AuthorityError::Internal(format!("the stored bundle of {name}: {e}"))
            })?;
            bundles.insert(name.clone(), bundle);
        }
        let now = unix_now();
        let mut attempts = self.attempts.lock().expect("federation lock");
        attempts.retain(|name, _| bundles.contains_key(name));
        for (name, bundle) in &bundles {
            attempts.entry(name.clone()).or_insert_with(|| Attempt {
                refresh_at: now + bundle.refresh_secs as i64,
                last_error: None,
            });
        }
        drop(attempts);
        *self.opened.write().expect("federation lock") = Arc::new((text.to_owned(), bundles));
        Ok(true)
    }

    fn view(&self, name: &str, stored: &StoredDomain) -> Option<FederationView> {
        let opened = self.opened.read().expect("federation lock").clone();
        let bundle = opened.1.get(name)?;
        let attempt = self
            .attempts
            .lock()
            .expect("federation lock")
            .get(name)
            .cloned()
            .unwrap_or_default();
        Some(FederationView {
            trust_domain: name.to_owned(),
            bundle_endpoint_url: stored.url.clone(),
            profile: "https_web".into(),
            sequence: bundle.keys.sequence,
            x509_authorities: bundle.keys.x509_authorities.len(),
            jwt_authorities: bundle.keys.jwt_authorities.len(),
            refreshed_at: stored.refreshed_at,
            refresh_at: attempt.refresh_at,
            last_error: attempt.last_error,
        })
    }

    fn record_attempt(&self, name: &str, refresh_secs: u64, error: Option<String>) {
        let mut attempts = self.attempts.lock().expect("federation lock");
        attempts.insert(
            name.to_owned(),
            Attempt {
                refresh_at: unix_now() + refresh_secs as i64,
                last_error: error,
            },
        );
    }

    /// Trust domains whose next fetch is due at `now`.
    fn due(&self, now: i64) -> Vec<String> {
        self.attempts
            .lock()
            .expect("federation lock")
            .iter()
            .filter(|(_, a)| a.refresh_at <= now)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// The stored federation text, stored empty first if there is none.
async fn stored_text(s: &crate::server::State) -> Result<String, AuthorityError> {
    let empty = serde_json::to_string(&StoredFederation::default())
        .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    Ok(s.store.init_setting(FEDERATION_SETTING, &empty).await?)
}

fn parse(text: &str) -> Result<StoredFederation, AuthorityError> {
    serde_json::from_str(text)
        .map_err(|_| AuthorityError::Internal("the stored federation is not JSON".into()))
}

/// Re-reads the stored federation and, if it changed, tells the Workload
/// API's streams.
pub(crate) async fn reload(s: &crate::server::State) -> Result<(), AuthorityError> {
    let text = stored_text(s).await?;
    if s.federation.open(&text)? {
        s.ca_changes.send_modify(|n| *n += 1);
    }
    Ok(())
}

/// GETs `url` over HTTPS (system Web PKI roots, plus `endpoint_ca`), with a
/// time and size limit, and reads the bundle.
async fn fetch(url: &str, endpoint_ca: Option<&str>) -> Result<(ForeignBundle, String), String> {
    let mut builder = reqwest::Client::builder()
        .https_only(true)
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .pool_max_idle_per_host(0);
    if let Some(pem) = endpoint_ca {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|_| "endpoint_ca is not PEM certificates".to_owned())?;
        builder = builder.tls_certs_merge(certs);
    }
    let client = builder.build().map_err(|e| e.to_string())?;
    let mut response = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| describe(&e))?;
    if !response.status().is_success() {
        return Err(format!("the endpoint answered {}", response.status()));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| describe(&e))? {
        if body.len() + chunk.len() > MAX_BUNDLE_BYTES {
            return Err("the bundle is larger than 256 KiB".into());
        }
        body.extend_from_slice(&chunk);
    }
    let bundle = read_bundle(&body)?;
    let text = String::from_utf8(body).map_err(|_| "the bundle is not UTF-8".to_owned())?;
    Ok((bundle, text))
}

/// A fetch error with its causes, for the operator.
fn describe(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out.chars().take(400).collect()
}

/// Fetches `name`'s bundle again and stores it if it changed; the error is
/// kept for the listing and the bundle held stays.
async fn refresh_one(
    s: &crate::server::State,
    name: &str,
    actor: &str,
    request: &str,
) -> Result<(), AuthorityError> {
    let before = stored_text(s).await?;
    let mut stored = parse(&before)?;
    let Some(domain) = stored.domains.get(name).cloned() else {
        return Err(AuthorityError::NotFound(Missing::FederatedDomain(
            name.chars().take(100).collect(),
        )));
    };
    let held = s.federation.bundles().get(name).map(|b| b.refresh_secs);
    match fetch(&domain.url, domain.endpoint_ca.as_deref()).await {
        Err(why) => {
            tracing::warn!(trust_domain = name, error = %why, "fetching a federated bundle failed");
            s.federation.record_attempt(
                name,
                held.unwrap_or(DEFAULT_REFRESH_SECS),
                Some(why.clone()),
            );
            Err(FederationRefusal::Fetch {
                domain: name.to_owned(),
                why,
            }
            .into())
        }
        Ok((bundle, text)) => {
            s.federation.record_attempt(name, bundle.refresh_secs, None);
            let unchanged = s
                .federation
                .bundles()
                .get(name)
                .is_some_and(|b| b.document == bundle.document);
            if unchanged {
                return Ok(());
            }
            let entry = stored.domains.get_mut(name).expect("looked up above");
            entry.bundle = text;
            entry.refreshed_at = unix_now();
            let mut audit = event(AuditKind::FederationChanged, actor, name, Decision::Allow);
            audit.reason = format!(
                "the bundle of {name} changed: sequence {}, {} CA certificates, {} JWT-SVID keys",
                bundle.keys.sequence,
                bundle.keys.x509_authorities.len(),
                bundle.keys.jwt_authorities.len()
            );
            audit.request_id = request.to_owned();
            store_and_open(s, &before, &stored, &audit).await
        }
    }
}

/// Replaces the stored federation (compare-and-swap) and opens the result.
async fn store_and_open(
    s: &crate::server::State,
    before: &str,
    after: &StoredFederation,
    audit: &agentauth_core::AuditEvent,
) -> Result<(), AuthorityError> {
    let text = serde_json::to_string(after).map_err(|e| AuthorityError::Internal(e.to_string()))?;
    if !s
        .store
        .replace_setting(FEDERATION_SETTING, before, &text, audit)
        .await?
    {
        return Err(AuthorityError::Stored(agentauth_store::StoreError::Stale(
            "the federated trust domains changed meanwhile (another replica); try again".into(),
        )));
    }
    if s.federation.open(&text)? {
        s.ca_changes.send_modify(|n| *n += 1);
    }
    Ok(())
}

/// Fetches every bundle whose time has come, and re-reads the stored ones
/// (another replica may have changed them); every second, until the state
/// goes.
pub(crate) fn spawn_refresher(
    state: std::sync::Weak<crate::server::State>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut last_read = 0;
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let Some(s) = state.upgrade() else { return };
            let now = unix_now();
            if now - last_read >= s.config.replica_reread_secs as i64 {
                last_read = now;
                if let Err(e) = reload(&s).await {
                    tracing::warn!(error = %e.detail(), "re-reading the federation failed");
                }
            }
            for name in s.federation.due(now) {
                // A failure is recorded for the listing and logged.
                let _ = refresh_one(&s, &name, "authority", "").await;
            }
        }
    })
}

/// `POST /v1/federation` (admin): follows a foreign trust domain. Its
/// bundle is fetched first; nothing is stored if that fails.
pub(crate) async fn add(
    State(s): State<AppState>,
    by: crate::Principal,
    headers: http::HeaderMap,
    crate::body::JsonBody(asked): crate::body::JsonBody<NewFederation>,
) -> Result<Response, AuthorityError> {
    let name = TrustDomain::new(asked.trust_domain.trim()).map_err(|_| {
        FederationRefusal::TrustDomain(asked.trust_domain.chars().take(100).collect())
    })?;
    if name == s.trust_domain {
        return Err(FederationRefusal::OwnTrustDomain(name.to_string()).into());
    }
    let url = asked.bundle_endpoint_url.trim();
    if url.len() > MAX_URL_LEN
        || !reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "https" && u.host().is_some())
    {
        return Err(FederationRefusal::Url.into());
    }
    if let Some(pem) = &asked.endpoint_ca
        && (pem.len() > MAX_ENDPOINT_CA_LEN
            || reqwest::Certificate::from_pem_bundle(pem.as_bytes()).is_err()
            || agentauth_svid::certificates_from_pem(pem).is_ok_and(|c| c.is_empty()))
    {
        return Err(FederationRefusal::EndpointCa.into());
    }
    let before = stored_text(&s).await?;
    let mut stored = parse(&before)?;
    let key = name.to_string();
    if stored.domains.contains_key(&key) {
        return Err(FederationRefusal::Exists(key).into());
    }
    if stored.domains.len() >= MAX_DOMAINS {
        return Err(FederationRefusal::TooMany.into());
    }
    let (bundle, text) = fetch(url, asked.endpoint_ca.as_deref())
        .await
        .map_err(|why| FederationRefusal::Fetch {
            domain: key.clone(),
            why,
        })?;
    let domain = StoredDomain {
        url: url.to_owned(),
        endpoint_ca: asked.endpoint_ca.clone(),
        bundle: text,
        refreshed_at: unix_now(),
    };
    stored.domains.insert(key.clone(), domain.clone());
    let mut audit = event(
        AuditKind::FederationChanged,
        &by.actor(),
        &key,
        Decision::Allow,
    );
    audit.reason = format!(
        "federated with {key} at {url}: sequence {}, {} CA certificates, {} JWT-SVID keys",
        bundle.keys.sequence,
        bundle.keys.x509_authorities.len(),
        bundle.keys.jwt_authorities.len()
    );
    audit.request_id = request_id(&headers);
    store_and_open(&s, &before, &stored, &audit).await?;
    s.federation.record_attempt(&key, bundle.refresh_secs, None);
    let view = s
        .federation
        .view(&key, &domain)
        .ok_or_else(|| AuthorityError::Internal("the federation just stored is gone".into()))?;
    Ok((http::StatusCode::CREATED, Json(view)).into_response())
}

/// `GET /v1/federation` (admin): every federated trust domain.
pub(crate) async fn list(
    State(s): State<AppState>,
) -> Result<Json<FederationList>, AuthorityError> {
    let text = stored_text(&s).await?;
    s.federation.open(&text)?;
    let stored = parse(&text)?;
    Ok(Json(FederationList {
        trust_domains: stored
            .domains
            .iter()
            .filter_map(|(name, d)| s.federation.view(name, d))
            .collect(),
    }))
}

/// `POST /v1/federation/{trust_domain}/refresh` (admin): fetches the bundle
/// now.
pub(crate) async fn refresh(
    State(s): State<AppState>,
    by: crate::Principal,
    headers: http::HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<FederationView>, AuthorityError> {
    refresh_one(&s, &name, &by.actor(), &request_id(&headers)).await?;
    let stored = parse(&stored_text(&s).await?)?;
    stored
        .domains
        .get(&name)
        .and_then(|d| s.federation.view(&name, d))
        .map(Json)
        .ok_or_else(|| {
            AuthorityError::NotFound(Missing::FederatedDomain(name.chars().take(100).collect()))
        })
}

/// `DELETE /v1/federation/{trust_domain}` (admin): stops trusting a foreign
/// trust domain at once.
pub(crate) async fn remove(
    State(s): State<AppState>,
    by: crate::Principal,
    headers: http::HeaderMap,
    Path(name): Path<String>,
) -> Result<Response, AuthorityError> {
    let before = stored_text(&s).await?;
    let mut stored = parse(&before)?;
    if stored.domains.remove(&name).is_none() {
        return Err(AuthorityError::NotFound(Missing::FederatedDomain(
            name.chars().take(100).collect(),
        )));
    }
    let mut audit = event(
        AuditKind::FederationChanged,
        &by.actor(),
        &name,
        Decision::Allow,
    );
    audit.reason = format!("federation with {name} removed");
    audit.request_id = request_id(&headers);
    store_and_open(&s, &before, &stored, &audit).await?;
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

/// `GET /v1/bundles`: the SPIFFE bundle map, this trust domain's bundle and
/// every federated one, by trust domain name.
pub(crate) async fn bundle_map(State(s): State<AppState>) -> Json<serde_json::Value> {
    let own = crate::svid::bundle(State(s.clone())).await.0;
    let mut map = serde_json::Map::new();
    map.insert(
        s.trust_domain.to_string(),
        serde_json::to_value(own).unwrap_or_default(),
    );
    for (name, bundle) in s.federation.bundles() {
        map.insert(name, bundle.document);
    }
    Json(serde_json::json!({ "trust_domains": map }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_hint_is_kept_within_bounds() {
        let hint = |h: u64| {
            let doc = serde_json::json!({"keys": [], "spiffe_refresh_hint": h});
            read_bundle(doc.to_string().as_bytes())
                .unwrap()
                .refresh_secs
        };
        assert_eq!(hint(0), MIN_REFRESH_SECS);
        assert_eq!(hint(60), 60);
        assert_eq!(hint(u64::MAX), MAX_REFRESH_SECS);
        let none = read_bundle(br#"{"keys": []}"#).unwrap();
        assert_eq!(none.refresh_secs, DEFAULT_REFRESH_SECS);
    }
}
