//! SPIFFE X.509-SVIDs from the authority: its certificate authority (made on
//! first start, its key sealed under the master key like the signing keys),
//! `POST /v1/svids/x509` that signs an agent's CSR, and `GET /v1/bundle`,
//! the trust bundle in the SPIFFE bundle format.

use agentauth_api::{
    BundleKey, CaList, CaRotation, CaView, JwtSvidIssued, JwtSvidRequest, TrustBundle,
    X509SvidIssued, X509SvidRequest,
};
use agentauth_core::{
    Audience, AuditKind, Decision, JwtSvidClaims, TrustDomain, b64url_decode, b64url_encode,
    unix_now,
};
use agentauth_store::Store;
use agentauth_svid::{CertificateAuthority, SvidError, UpstreamCa, certificates_pem, csr_from_pem};
use axum::Json;
use axum::extract::State;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::AuthorityError;
use crate::audit::{authenticated_agent, event, request_id};
use crate::body::RawRequest;
use crate::keys::MasterKey;
use crate::server::AppState;

/// The scope an agent's token for the authority needs to get an X.509-SVID.
pub(crate) const SVID_X509: &str = "svid:x509";
/// The scope an agent's token for the authority needs to get a JWT-SVID.
pub(crate) const SVID_JWT: &str = "svid:jwt";
/// Setting that holds the key JWT-SVIDs are signed with, sealed.
pub(crate) const JWT_KEY_SETTING: &str = "jwt_svid_key";
/// What the sealed JWT-SVID key is bound to.
pub(crate) const JWT_KEY_CONTEXT: &str = "jwt-svid-key";
/// Seconds a JWT-SVID lives: short, since it is a bearer credential.
pub(crate) const JWT_SVID_LIFETIME_SECS: i64 = 300;
/// Longest audience a JWT-SVID may name.
const MAX_AUDIENCE_LEN: usize = 512;
/// Setting that holds the CA: its certificate and its sealed key.
pub(crate) const CA_SETTING: &str = "x509_ca";
/// What the CA's sealed key is bound to.
pub(crate) const CA_KEY_CONTEXT: &str = "x509-ca-key";

/// A CSR refused: the request is the caller's to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SvidRefusal {
    /// The CSR is unreadable, not signed by its key, or of a key type no
    /// SVID is issued for.
    #[error("{0}")]
    Csr(SvidError),
    /// A JWT-SVID request without an audience, or with one too long.
    #[error("a JWT-SVID names one audience of 1 to 512 characters")]
    Audience,
    /// The delegated token of a JWT-SVID request is not one the caller
    /// holds as the acting agent of a delegation.
    #[error("the delegated token {0}")]
    DelegatedToken(&'static str),
    /// The CA to remove is the one signing now.
    #[error("CA {0} signs SVIDs now: rotate with --now first, then remove it")]
    RemoveSigning(String),
}

/// Seconds a new CA is in the bundle before it signs: twice the bundle's
/// refresh hint, so every peer that follows the hint has it first.
pub(crate) fn ca_publish_lead_secs(config: &crate::Config) -> i64 {
    2 * config.bundle_refresh_hint_secs as i64
}

/// The CAs as the store keeps them, in one setting (so replicas change them
/// by compare-and-swap).
#[derive(Serialize, Deserialize, Default)]
pub(crate) struct StoredCas {
    /// Grows with every change: the bundle's `spiffe_sequence`.
    pub(crate) sequence: u64,
    /// Oldest first.
    pub(crate) cas: Vec<StoredCa>,
}

/// One CA as the store keeps it.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredCa {
    /// The certificate, DER, base64url.
    pub(crate) cert: String,
    /// The PKCS#8 key, sealed under the master key.
    pub(crate) key_sealed: String,
    /// When it starts signing, seconds since the epoch.
    pub(crate) signs_from: i64,
    /// For an intermediate: the upstream chain above it (DER, base64url),
    /// from its issuer up to the root.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) upstream: Vec<String>,
}

/// The CAs of the trust domain, opened: each is in the bundle from when it
/// is added until it expires, and signs from its `signs_from` until the
/// next one takes over.
pub(crate) struct CaRing {
    sequence: u64,
    /// By `signs_from`, oldest first; never empty.
    cas: Vec<(CertificateAuthority, i64)>,
}

/// Where a CA is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CaPhase {
    /// In the bundle, not signing yet.
    Published,
    /// The one that signs now.
    Signing,
    /// Replaced, in the bundle until it expires.
    Retired,
}

impl CaPhase {
    fn as_str(self) -> &'static str {
        match self {
            Self::Published => "published",
            Self::Signing => "signing",
            Self::Retired => "retired",
        }
    }
}

impl CaRing {
    /// The CA that signs at `now`: the newest whose time has come (the
    /// oldest if none has).
    pub(crate) fn signer(&self, now: i64) -> &CertificateAuthority {
        let i = self.signing_index(now);
        &self.cas[i].0
    }

    fn signing_index(&self, now: i64) -> usize {
        self.cas
            .iter()
            .rposition(|(_, from)| *from <= now)
            .unwrap_or(0)
    }

    /// The CAs a peer must trust at `now` (every one not expired), with
    /// their phase.
    pub(crate) fn published(&self, now: i64) -> Vec<(&CertificateAuthority, CaPhase, i64)> {
        let signing = self.signing_index(now);
        self.cas
            .iter()
            .enumerate()
            .filter(|(_, (ca, _))| ca.not_after() > now)
            .map(|(i, (ca, from))| {
                let phase = match i.cmp(&signing) {
                    std::cmp::Ordering::Less => CaPhase::Retired,
                    std::cmp::Ordering::Equal => CaPhase::Signing,
                    std::cmp::Ordering::Greater => CaPhase::Published,
                };
                (ca, phase, *from)
            })
            .collect()
    }

    /// The trust anchors a peer needs at `now` (DER), each once: every CA
    /// not expired that is a root, and the upstream root of every one that
    /// is an intermediate.
    pub(crate) fn anchors(&self, now: i64) -> Vec<&[u8]> {
        let mut out: Vec<&[u8]> = Vec::new();
        for (ca, _, _) in self.published(now) {
            let anchor = ca.anchor_der();
            if !out.contains(&anchor) {
                out.push(anchor);
            }
        }
        out
    }

    /// Whether the newest CA is past half its life at `now`: time for the
    /// next, so it is published well before the signing one expires.
    fn due(&self, now: i64) -> bool {
        let (ca, from) = self.cas.last().expect("a ring is never empty");
        now - from >= (ca.not_after() - from) / 2
    }
}

/// Opens every stored CA with `master`.
pub(crate) fn open(stored: &str, master: &MasterKey) -> Result<CaRing, AuthorityError> {
    let corrupt = |why: &str| AuthorityError::Internal(format!("the stored CA is unusable: {why}"));
    let stored: StoredCas = serde_json::from_str(stored).map_err(|_| corrupt("not JSON"))?;
    let mut cas = Vec::with_capacity(stored.cas.len());
    for ca in &stored.cas {
        cas.push((open_one(ca, master)?, ca.signs_from));
    }
    if cas.is_empty() {
        return Err(corrupt("no CA"));
    }
    cas.sort_by_key(|(_, from)| *from);
    Ok(CaRing {
        sequence: stored.sequence,
        cas,
    })
}

/// The JWT-SVID signing key as the store keeps it.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredJwtKey {
    /// Key ID: the JWK thumbprint of its public key.
    pub(crate) kid: String,
    /// The private JWK, sealed under the master key.
    pub(crate) key_sealed: String,
}

/// The key JWT-SVIDs are signed with (ES256) and its `kid`.
pub(crate) struct JwtSvidKey {
    pub(crate) kid: String,
    pub(crate) key: agentauth_core::SigningKey,
}

/// Opens a stored JWT-SVID key with `master`.
pub(crate) fn open_jwt_key(stored: &str, master: &MasterKey) -> Result<JwtSvidKey, AuthorityError> {
    let corrupt =
        |why: &str| AuthorityError::Internal(format!("the stored JWT-SVID key is unusable: {why}"));
    let stored: StoredJwtKey = serde_json::from_str(stored).map_err(|_| corrupt("not JSON"))?;
    let private = master.open(JWT_KEY_CONTEXT, &stored.key_sealed)?;
    let jwk: serde_json::Value =
        serde_json::from_slice(&private).map_err(|_| corrupt("not a JWK"))?;
    let key =
        agentauth_core::SigningKey::from_private_jwk(&jwk).map_err(|e| corrupt(&e.to_string()))?;
    if key.alg() != agentauth_core::JwsAlg::ES256 || key.public_jwk().thumbprint().0 != stored.kid {
        return Err(corrupt("not the P-256 key its kid names"));
    }
    Ok(JwtSvidKey {
        kid: stored.kid,
        key,
    })
}

/// The JWT-SVID key from the store, or a new one stored on first start.
pub(crate) async fn jwt_key_load_or_create(
    store: &dyn Store,
    master: &MasterKey,
) -> Result<JwtSvidKey, AuthorityError> {
    let stored = match store.setting(JWT_KEY_SETTING).await? {
        Some(text) => text,
        None => {
            let key = agentauth_core::SigningKey::generate_p256();
            let private = serde_json::to_vec(&key.to_private_jwk())
                .map_err(|e| AuthorityError::Internal(e.to_string()))?;
            let fresh = StoredJwtKey {
                kid: key.public_jwk().thumbprint().0,
                key_sealed: master.seal(JWT_KEY_CONTEXT, &private),
            };
            let text = serde_json::to_string(&fresh)
                .map_err(|e| AuthorityError::Internal(e.to_string()))?;
            store.init_setting(JWT_KEY_SETTING, &text).await?
        }
    };
    open_jwt_key(&stored, master)
}

/// `POST /v1/svids/jwt`: an agent with a token for the authority carrying
/// `svid:jwt` gets a JWT-SVID for its own SPIFFE ID, addressed to one
/// audience, valid five minutes.
pub(crate) async fn issue_jwt(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Json<JwtSvidIssued>, AuthorityError> {
    let (claims, agent) = authenticated_agent(&s, &req, SVID_JWT).await?;
    let asked: JwtSvidRequest = req.json()?;
    let now = unix_now();
    let mut audience = asked.audience.trim().to_owned();
    let mut minted = JwtSvidClaims {
        sub: agent.id.clone(),
        aud: Audience::Many(Vec::new()),
        exp: now + JWT_SVID_LIFETIME_SECS,
        iat: now,
        act: None,
        txn: None,
    };
    if let Some(token) = asked.delegated_token.as_deref() {
        let delegated = delegation_held(&s, token, &agent.id).await?;
        if !audience.is_empty() && audience != delegated.aud.as_str() {
            return Err(SvidRefusal::DelegatedToken("is for another audience").into());
        }
        audience = delegated.aud.to_string();
        minted.sub = delegated.sub;
        minted.exp = minted.exp.min(delegated.exp);
        minted.act = delegated.act;
        minted.txn = delegated.txn;
    }
    if audience.is_empty() || audience.len() > MAX_AUDIENCE_LEN {
        return Err(SvidRefusal::Audience.into());
    }
    minted.aud = Audience::One(audience.clone());
    let audience = audience.as_str();
    let token = agentauth_core::sign_jwt_svid(&s.jwt_svid_key.key, &s.jwt_svid_key.kid, &minted);
    let mut audit = event(
        AuditKind::SvidIssued,
        &claims.client_id,
        audience,
        Decision::Allow,
    );
    audit.audience = audience.to_owned();
    audit.reason = match &minted.act {
        None => format!(
            "JWT-SVID for {} to {audience} until {}",
            agent.id, minted.exp
        ),
        Some(act) => format!(
            "JWT-SVID for {} acting for {} to {audience} until {}",
            act.sub, minted.sub, minted.exp
        ),
    };
    audit.txn = minted
        .txn
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    audit.request_id = request_id(&req.parts.headers);
    s.store.append_audit(&[audit]).await?;
    Ok(Json(JwtSvidIssued {
        spiffe_id: minted.sub.to_string(),
        token,
        expires_at: minted.exp,
    }))
}

/// The claims of `token` if it is a live delegated token (signed here, not
/// expired, not revoked, carrying `act`) whose presenter is `caller`: the
/// caller proved its key for its own token on this request, and the
/// delegated token names the caller as the agent acting.
async fn delegation_held(
    s: &crate::server::State,
    token: &str,
    caller: &agentauth_core::SpiffeId,
) -> Result<agentauth_core::AccessClaims, AuthorityError> {
    let claims = crate::standing::check(
        s,
        token,
        crate::standing::Door::Introspection { audience: None },
    )
    .await
    .map_err(|_| SvidRefusal::DelegatedToken("is not a live token of this authority"))?;
    if claims.client_id != *caller {
        return Err(SvidRefusal::DelegatedToken("was issued to another agent").into());
    }
    match &claims.act {
        Some(act) if act.sub == *caller => Ok(claims),
        _ => Err(SvidRefusal::DelegatedToken("carries no delegation by the caller").into()),
    }
}

/// One stored CA, opened with `master`.
fn open_one(ca: &StoredCa, master: &MasterKey) -> Result<CertificateAuthority, AuthorityError> {
    let corrupt = |why: &str| AuthorityError::Internal(format!("the stored CA is unusable: {why}"));
    let cert = b64url_decode(&ca.cert).ok_or_else(|| corrupt("certificate encoding"))?;
    let key = master.open(CA_KEY_CONTEXT, &ca.key_sealed)?;
    let upstream = ca
        .upstream
        .iter()
        .map(|c| b64url_decode(c).ok_or_else(|| corrupt("upstream certificate encoding")))
        .collect::<Result<Vec<_>, _>>()?;
    CertificateAuthority::from_der_with_upstream(&cert, &key, upstream)
        .map_err(|e| corrupt(&e.to_string()))
}

/// A new CA, sealed, signing from `signs_from`: a self-signed root, or an
/// intermediate signed by `upstream` when one is configured.
fn new_ca(
    master: &MasterKey,
    trust_domain: &TrustDomain,
    upstream: Option<&UpstreamCa>,
    now: i64,
    signs_from: i64,
    lifetime_days: u32,
) -> Result<StoredCa, AuthorityError> {
    let lifetime = i64::from(lifetime_days) * 86_400;
    let ca = match upstream {
        None => CertificateAuthority::generate(trust_domain, now, lifetime),
        Some(upstream) => {
            CertificateAuthority::generate_intermediate(trust_domain, upstream, now, lifetime)
        }
    }
    .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    Ok(StoredCa {
        cert: b64url_encode(ca.cert_der()),
        key_sealed: master.seal(CA_KEY_CONTEXT, ca.key_pkcs8_der()),
        signs_from,
        upstream: ca.upstream_chain().iter().map(b64url_encode).collect(),
    })
}

/// The CAs from the store, or a first one stored on first start (every
/// replica that starts at once ends up with the one stored first).
pub(crate) async fn load_or_create(
    store: &dyn Store,
    master: &MasterKey,
    trust_domain: &TrustDomain,
    upstream: Option<&UpstreamCa>,
    lifetime_days: u32,
) -> Result<CaRing, AuthorityError> {
    let stored = match store.setting(CA_SETTING).await? {
        Some(text) => text,
        None => {
            let now = unix_now();
            let first = StoredCas {
                sequence: 1,
                cas: vec![new_ca(
                    master,
                    trust_domain,
                    upstream,
                    now,
                    now,
                    lifetime_days,
                )?],
            };
            let text = serde_json::to_string(&first)
                .map_err(|e| AuthorityError::Internal(e.to_string()))?;
            store.init_setting(CA_SETTING, &text).await?
        }
    };
    open(&stored, master)
}

/// Adds a CA: in the bundle at once, signing after [`ca_publish_lead_secs`]
/// (or at once with `now`); expired CAs leave the store. A change by
/// another replica meanwhile wins, and this one reports the conflict.
pub(crate) async fn rotate_ca(
    s: &crate::server::State,
    at_once: bool,
    actor: &str,
    request_id: &str,
) -> Result<CaView, AuthorityError> {
    let (before, mut stored) = stored_cas(s).await?;
    let now = unix_now();
    let signs_from = if at_once {
        // A second after the CA signing now started, at least: the newest
        // whose time has come signs. One published ahead still takes over
        // when its own time comes.
        stored
            .cas
            .iter()
            .filter(|c| c.signs_from <= now)
            .map(|c| c.signs_from + 1)
            .max()
            .unwrap_or(now)
            .max(now)
    } else {
        now + ca_publish_lead_secs(&s.config)
    };
    let added = new_ca(
        &s.master,
        &s.trust_domain,
        s.upstream.as_deref(),
        now,
        signs_from,
        s.config.ca_lifetime_days,
    )?;
    let opened = open_one(&added, &s.master)?;
    let view = CaView {
        serial: opened.serial(),
        phase: if signs_from <= now {
            "signing"
        } else {
            "published"
        }
        .into(),
        signs_from,
        not_after: opened.not_after(),
    };
    let ring = open(&before, &s.master)?;
    let live: Vec<bool> = ring
        .cas
        .iter()
        .map(|(ca, _)| ca.not_after() > now)
        .collect();
    let mut kept = Vec::new();
    let mut sorted = std::mem::take(&mut stored.cas);
    sorted.sort_by_key(|c| c.signs_from);
    for (ca, alive) in sorted.into_iter().zip(live) {
        if alive {
            kept.push(ca);
        }
    }
    kept.push(added);
    stored.cas = kept;
    let mut audit = event(AuditKind::X509CaAdded, actor, &view.serial, Decision::Allow);
    audit.reason = format!(
        "X.509 CA added: in the bundle now, signing from {}, until {}",
        view.signs_from, view.not_after
    );
    audit.request_id = request_id.to_owned();
    save_cas(s, &before, stored, &audit).await?;
    Ok(view)
}

/// The CAs as stored, with the text they were read from (for the
/// compare-and-swap that changes them).
async fn stored_cas(s: &crate::server::State) -> Result<(String, StoredCas), AuthorityError> {
    let before = s
        .store
        .setting(CA_SETTING)
        .await?
        .ok_or_else(|| AuthorityError::Internal("no CA stored".into()))?;
    let stored = serde_json::from_str(&before)
        .map_err(|_| AuthorityError::Internal("the stored CA is not JSON".into()))?;
    Ok((before, stored))
}

/// Stores `stored` (its sequence bumped) in place of `before` with `audit`,
/// and puts the CAs in use; a change by another replica meanwhile wins.
async fn save_cas(
    s: &crate::server::State,
    before: &str,
    mut stored: StoredCas,
    audit: &agentauth_core::AuditEvent,
) -> Result<(), AuthorityError> {
    stored.sequence += 1;
    let after =
        serde_json::to_string(&stored).map_err(|e| AuthorityError::Internal(e.to_string()))?;
    let ring = open(&after, &s.master)?;
    if !s
        .store
        .replace_setting(CA_SETTING, before, &after, audit)
        .await?
    {
        return Err(AuthorityError::Stored(agentauth_store::StoreError::Stale(
            "the CAs changed meanwhile (another replica rotated); list them and try again".into(),
        )));
    }
    s.set_cas(ring);
    Ok(())
}

/// Takes the CA with `serial` out of the bundle at once, so what it signed
/// stops validating wherever the bundle is fetched again: for a CA key
/// believed compromised, after `rotate --now` put another in its place. The
/// CA signing now cannot be removed.
pub(crate) async fn remove_ca(
    s: &crate::server::State,
    serial: &str,
    actor: &str,
    request_id: &str,
) -> Result<(), AuthorityError> {
    let (before, mut stored) = stored_cas(s).await?;
    let ring = open(&before, &s.master)?;
    let signing = ring.signer(unix_now()).serial();
    if serial == signing {
        return Err(SvidRefusal::RemoveSigning(signing).into());
    }
    // The ring holds the stored CAs opened, in signing order.
    stored.cas.sort_by_key(|c| c.signs_from);
    let Some(index) = ring.cas.iter().position(|(ca, _)| ca.serial() == serial) else {
        return Err(AuthorityError::NotFound(crate::Missing::Ca(
            serial.chars().take(64).collect(),
        )));
    };
    stored.cas.remove(index);
    let mut audit = event(AuditKind::X509CaRemoved, actor, serial, Decision::Allow);
    audit.reason = format!("X.509 CA {serial} taken out of the trust bundle before its expiry");
    audit.request_id = request_id.to_owned();
    save_cas(s, &before, stored, &audit).await
}

/// `DELETE /v1/ca/{serial}` (admin): takes a CA out of the bundle.
pub(crate) async fn remove(
    State(s): State<AppState>,
    by: crate::Principal,
    headers: http::HeaderMap,
    axum::extract::Path(serial): axum::extract::Path<String>,
) -> Result<axum::response::Response, AuthorityError> {
    use axum::response::IntoResponse as _;
    remove_ca(&s, &serial, &by.actor(), &request_id(&headers)).await?;
    Ok(http::StatusCode::NO_CONTENT.into_response())
}

/// Re-reads the CAs (another replica may have added one) and adds the next
/// when the newest is past half its life; every minute, until the state goes.
pub(crate) fn spawn_ca_rotator(
    state: std::sync::Weak<crate::server::State>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // The stored text last opened: unchanged, nothing is decrypted again.
        let mut seen = String::new();
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            let Some(s) = state.upgrade() else { return };
            match s.store.setting(CA_SETTING).await {
                Ok(Some(text)) if text == seen => {}
                Ok(Some(text)) => match open(&text, &s.master) {
                    Ok(ring) => {
                        s.set_cas(ring);
                        seen = text;
                    }
                    Err(e) => tracing::warn!(error = %e.detail(), "re-reading the CAs failed"),
                },
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "re-reading the CAs failed"),
            }
            if s.cas().due(unix_now())
                && let Err(e) = rotate_ca(&s, false, "authority", "").await
            {
                tracing::warn!(error = %e.detail(), "the scheduled CA rotation failed");
            }
        }
    })
}

/// `GET /v1/ca` (admin): every CA in the bundle.
pub(crate) async fn list(State(s): State<AppState>) -> Json<CaList> {
    let now = unix_now();
    let ring = s.cas();
    Json(CaList {
        cas: ring
            .published(now)
            .into_iter()
            .map(|(ca, phase, from)| CaView {
                serial: ca.serial(),
                phase: phase.as_str().into(),
                signs_from: from,
                not_after: ca.not_after(),
            })
            .collect(),
    })
}

/// `POST /v1/ca/rotate` (admin): adds a CA.
pub(crate) async fn rotate(
    State(s): State<AppState>,
    by: crate::Principal,
    headers: http::HeaderMap,
    crate::body::JsonBody(body): crate::body::JsonBody<CaRotation>,
) -> Result<axum::response::Response, AuthorityError> {
    use axum::response::IntoResponse as _;
    let view = rotate_ca(&s, body.now, &by.actor(), &request_id(&headers)).await?;
    Ok((http::StatusCode::CREATED, Json(view)).into_response())
}

/// `POST /v1/svids/x509`: an agent with a token for the authority carrying
/// `svid:x509` sends a CSR and gets an X.509-SVID for its own SPIFFE ID.
pub(crate) async fn issue(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Json<X509SvidIssued>, AuthorityError> {
    let (claims, agent) = authenticated_agent(&s, &req, SVID_X509).await?;
    let asked: X509SvidRequest = req.json()?;
    let issued = sign_csr(&s, &asked.csr, &agent.id)?;
    let mut audit = event(
        AuditKind::SvidIssued,
        &claims.client_id,
        &issued.serial,
        Decision::Allow,
    );
    audit.reason = format!(
        "X.509-SVID for {} until {} (serial {})",
        agent.id, issued.expires_at, issued.serial
    );
    audit.request_id = request_id(&req.parts.headers);
    s.store.append_audit(&[audit]).await?;
    Ok(Json(issued))
}

/// An X.509-SVID for `id` from a CSR (PEM) by the CA signing now: the leaf
/// and any intermediate, and the trust anchors; the caller audits it.
pub(crate) fn sign_csr(
    s: &crate::server::State,
    csr_pem: &str,
    id: &agentauth_core::SpiffeId,
) -> Result<X509SvidIssued, AuthorityError> {
    let csr = csr_from_pem(csr_pem).map_err(SvidRefusal::Csr)?;
    let now = unix_now();
    let ring = s.cas();
    let signer = ring.signer(now);
    let issued = signer
        .issue(&csr, id, now, s.config.svid_lifetime_secs)
        .map_err(|e| match e {
            SvidError::Csr(_) | SvidError::KeyAlgorithm => SvidRefusal::Csr(e).into(),
            other => AuthorityError::Internal(other.to_string()),
        })?;
    Ok(X509SvidIssued {
        spiffe_id: id.to_string(),
        x509_svid: certificates_pem(
            std::iter::once(issued.der.as_slice()).chain(signer.intermediates()),
        ),
        bundle: certificates_pem(ring.anchors(now)),
        serial: issued.serial,
        expires_at: issued.expires_at,
    })
}

/// `GET /v1/bundle`: the trust domain's bundle, public like the JWKS: every
/// CA not expired, the next one included before it signs.
pub(crate) async fn bundle(State(s): State<AppState>) -> Json<TrustBundle> {
    let ring = s.cas();
    let keys = ring
        .anchors(unix_now())
        .into_iter()
        .filter_map(|anchor| {
            // Every anchor is P-256: a root made here, or an upstream root
            // whose key was checked when the upstream CA was read.
            let jwk = agentauth_svid::public_jwk(anchor).ok()?.to_json();
            Some(BundleKey {
                kty: "EC".into(),
                crv: "P-256".into(),
                x: jwk["x"].as_str()?.to_owned(),
                y: jwk["y"].as_str()?.to_owned(),
                key_use: "x509-svid".into(),
                x5c: vec![base64::engine::general_purpose::STANDARD.encode(anchor)],
                kid: None,
            })
        })
        .chain(std::iter::once({
            let jwk = s.jwt_svid_key.key.public_jwk().to_json();
            BundleKey {
                kty: "EC".into(),
                crv: "P-256".into(),
                x: jwk["x"].as_str().unwrap_or_default().to_owned(),
                y: jwk["y"].as_str().unwrap_or_default().to_owned(),
                key_use: "jwt-svid".into(),
                x5c: Vec::new(),
                kid: Some(s.jwt_svid_key.kid.clone()),
            }
        }))
        .collect();
    Json(TrustBundle {
        keys,
        spiffe_sequence: ring.sequence,
        spiffe_refresh_hint: s.config.bundle_refresh_hint_secs,
    })
}
