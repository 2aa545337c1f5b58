//! SPIFFE X.509-SVIDs from the authority: its certificate authority (made on
//! first start, its key sealed under the master key like the signing keys),
//! `POST /v1/svids/x509` that signs an agent's CSR, and `GET /v1/bundle`,
//! the trust bundle in the SPIFFE bundle format.

use agentauth_api::{BundleKey, TrustBundle, X509SvidIssued, X509SvidRequest};
use agentauth_core::{AuditKind, Decision, TrustDomain, b64url_decode, b64url_encode, unix_now};
use agentauth_store::Store;
use agentauth_svid::{CertificateAuthority, SvidError, certificates_pem, csr_from_pem};
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
/// Setting that holds the CA: its certificate and its sealed key.
pub(crate) const CA_SETTING: &str = "x509_ca";
/// What the CA's sealed key is bound to.
pub(crate) const CA_KEY_CONTEXT: &str = "x509-ca-key";
/// Seconds a consumer of the bundle waits before fetching it again.
const REFRESH_HINT_SECS: u64 = 300;

/// The CA as the store keeps it.
#[derive(Serialize, Deserialize)]
pub(crate) struct StoredCa {
    /// The certificate, DER, base64url.
    pub(crate) cert: String,
    /// The PKCS#8 key, sealed under the master key.
    pub(crate) key_sealed: String,
}

/// A CSR refused: the request is the caller's to fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SvidRefusal {
    /// The CSR is unreadable, not signed by its key, or of a key type no
    /// SVID is issued for.
    #[error("{0}")]
    Csr(SvidError),
}

/// The authority's CA, from the store, or a new one stored on first start
/// (every replica that starts at once ends up with the one stored first).
pub(crate) async fn load_or_create(
    store: &dyn Store,
    master: &MasterKey,
    trust_domain: &TrustDomain,
    lifetime_days: u32,
) -> Result<CertificateAuthority, AuthorityError> {
    let stored = match store.setting(CA_SETTING).await? {
        Some(text) => text,
        None => {
            let ca = CertificateAuthority::generate(
                trust_domain,
                unix_now(),
                i64::from(lifetime_days) * 86_400,
            )
            .map_err(|e| AuthorityError::Internal(e.to_string()))?;
            let fresh = StoredCa {
                cert: b64url_encode(ca.cert_der()),
                key_sealed: master.seal(CA_KEY_CONTEXT, ca.key_pkcs8_der()),
            };
            let text = serde_json::to_string(&fresh)
                .map_err(|e| AuthorityError::Internal(e.to_string()))?;
            store.init_setting(CA_SETTING, &text).await?
        }
    };
    open(&stored, master)
}

/// The CA from its stored form.
pub(crate) fn open(
    stored: &str,
    master: &MasterKey,
) -> Result<CertificateAuthority, AuthorityError> {
    let corrupt = |why: &str| AuthorityError::Internal(format!("the stored CA is unusable: {why}"));
    let stored: StoredCa = serde_json::from_str(stored).map_err(|_| corrupt("not JSON"))?;
    let cert = b64url_decode(&stored.cert).ok_or_else(|| corrupt("certificate encoding"))?;
    let key = master.open(CA_KEY_CONTEXT, &stored.key_sealed)?;
    CertificateAuthority::from_der(&cert, &key).map_err(|e| corrupt(&e.to_string()))
}

/// `POST /v1/svids/x509`: an agent with a token for the authority carrying
/// `svid:x509` sends a CSR and gets an X.509-SVID for its own SPIFFE ID.
pub(crate) async fn issue(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Json<X509SvidIssued>, AuthorityError> {
    let (claims, agent) = authenticated_agent(&s, &req, SVID_X509).await?;
    let asked: X509SvidRequest = req.json()?;
    let csr = csr_from_pem(&asked.csr).map_err(SvidRefusal::Csr)?;
    let now = unix_now();
    let issued =
        s.ca.issue(&csr, &agent.id, now, s.config.svid_lifetime_secs)
            .map_err(|e| match e {
                SvidError::Csr(_) | SvidError::KeyAlgorithm => SvidRefusal::Csr(e).into(),
                other => AuthorityError::Internal(other.to_string()),
            })?;
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
    Ok(Json(X509SvidIssued {
        spiffe_id: agent.id.to_string(),
        x509_svid: certificates_pem([issued.der.as_slice()]),
        bundle: certificates_pem([s.ca.cert_der()]),
        serial: issued.serial,
        expires_at: issued.expires_at,
    }))
}

/// `GET /v1/bundle`: the trust domain's bundle, public like the JWKS.
pub(crate) async fn bundle(State(s): State<AppState>) -> Json<TrustBundle> {
    let (x, y) = s.ca.public_xy();
    Json(TrustBundle {
        keys: vec![BundleKey {
            kty: "EC".into(),
            crv: "P-256".into(),
            x: b64url_encode(x),
            y: b64url_encode(y),
            key_use: "x509-svid".into(),
            x5c: vec![base64::engine::general_purpose::STANDARD.encode(s.ca.cert_der())],
            kid: None,
        }],
        // One CA that never changes while this authority runs: the
        // sequence is its notAfter, which a new CA will move forward.
        spiffe_sequence: u64::try_from(s.ca.not_after()).unwrap_or(1),
        spiffe_refresh_hint: REFRESH_HINT_SECS,
    })
}
