//! An agent's X.509-SVID from the authority: the key pair is made here and
//! never leaves the process; the authority signs a CSR for it.

use agentauth_api::{JwtSvidIssued, JwtSvidRequest, OAuthError, X509SvidIssued, X509SvidRequest};
use agentauth_core::{Scope, SpiffeId};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};

use crate::{Client, Endpoint, SdkError};

/// The scope a token for the authority needs to get an X.509-SVID.
static SVID_X509: std::sync::LazyLock<Scope> =
    std::sync::LazyLock::new(|| Scope::parse("svid:x509").expect("a valid permission"));

/// The scope a token for the authority needs to get a JWT-SVID.
static SVID_JWT: std::sync::LazyLock<Scope> =
    std::sync::LazyLock::new(|| Scope::parse("svid:jwt").expect("a valid permission"));

/// A JWT-SVID: a short-lived bearer credential naming this agent to one
/// audience; its `Debug` output never shows the token.
#[derive(Clone)]
pub struct JwtSvid {
    /// The compact JWT.
    pub token: String,
    /// Its `exp`, seconds since the epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for JwtSvid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSvid")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// An X.509-SVID and its private key.
#[derive(Clone)]
pub struct X509Svid {
    /// The SPIFFE ID it carries (this agent's).
    pub spiffe_id: SpiffeId,
    /// The certificate chain, PEM, leaf first.
    pub cert_chain_pem: String,
    /// The private key, PKCS#8 PEM; made here, never sent anywhere.
    pub private_key_pem: String,
    /// The trust domain's CA certificates, PEM.
    pub bundle_pem: String,
    /// The leaf's `notAfter`, seconds since the epoch.
    pub expires_at: i64,
}

impl std::fmt::Debug for X509Svid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Svid")
            .field("spiffe_id", &self.spiffe_id)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

impl X509Svid {
    /// When to fetch the next one: half-way through its life from `issued_at`.
    pub fn renew_at(&self, issued_at: i64) -> i64 {
        issued_at + (self.expires_at - issued_at) / 2
    }
}

impl Client {
    /// Gets an X.509-SVID for this agent: makes a P-256 key pair, sends a CSR
    /// signed with it to the authority with a token carrying `svid:x509`,
    /// and returns the certificate with the key.
    pub async fn x509_svid(&self) -> Result<X509Svid, SdkError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
            .map_err(|e| SdkError::KeyGeneration(e.to_string()))?;
        let csr = CertificateParams::default()
            .serialize_request(&key)
            .and_then(|r| r.pem())
            .map_err(|e| SdkError::KeyGeneration(e.to_string()))?;
        let metadata = self.metadata().await?.clone();
        let token = self.token(&metadata.authority_id, &SVID_X509).await?;
        let request = self
            .http()
            .post(&metadata.x509_svid_endpoint)
            .json(&X509SvidRequest { csr });
        let response =
            refused_unless_ok(self.send(request, &token).await?, Endpoint::X509Svid).await?;
        let issued: X509SvidIssued = response
            .json()
            .await
            .map_err(SdkError::unreadable(Endpoint::X509Svid))?;
        Ok(X509Svid {
            spiffe_id: SpiffeId::parse(&issued.spiffe_id)
                .map_err(SdkError::unreadable(Endpoint::X509Svid))?,
            cert_chain_pem: issued.x509_svid,
            private_key_pem: key.serialize_pem(),
            bundle_pem: issued.bundle,
            expires_at: issued.expires_at,
        })
    }
}

impl Client {
    /// Gets a JWT-SVID for this agent addressed to `audience` (valid five
    /// minutes), with a token for the authority carrying `svid:jwt`.
    pub async fn jwt_svid(&self, audience: &str) -> Result<JwtSvid, SdkError> {
        self.request_jwt_svid(JwtSvidRequest {
            audience: audience.to_owned(),
            delegated_token: None,
        })
        .await
    }

    /// Gets a JWT-SVID that speaks for a delegation this agent holds:
    /// `delegated_token` is a token exchanged for this agent (it acts, on
    /// behalf of the token's `sub`), and the JWT-SVID carries that `sub`,
    /// the `act` chain and the task, for the token's audience, expiring no
    /// later than the token.
    pub async fn delegated_jwt_svid(&self, delegated_token: &str) -> Result<JwtSvid, SdkError> {
        self.request_jwt_svid(JwtSvidRequest {
            audience: String::new(),
            delegated_token: Some(delegated_token.to_owned()),
        })
        .await
    }

    async fn request_jwt_svid(&self, body: JwtSvidRequest) -> Result<JwtSvid, SdkError> {
        let metadata = self.metadata().await?.clone();
        let token = self.token(&metadata.authority_id, &SVID_JWT).await?;
        let request = self.http().post(&metadata.jwt_svid_endpoint).json(&body);
        let response =
            refused_unless_ok(self.send(request, &token).await?, Endpoint::JwtSvid).await?;
        let issued: JwtSvidIssued = response
            .json()
            .await
            .map_err(SdkError::unreadable(Endpoint::JwtSvid))?;
        Ok(JwtSvid {
            token: issued.token,
            expires_at: issued.expires_at,
        })
    }
}

impl Client {
    /// The SPIFFE bundle map the authority publishes: its own trust
    /// domain's bundle and every federated one, by trust domain name (each
    /// read by the SPIFFE bundle format's rules; one unreadable is left
    /// out). Hand the others' CA certificates to
    /// [`crate::SvidSource::set_federated_bundles`] to accept their peers.
    pub async fn bundle_map(
        &self,
    ) -> Result<std::collections::BTreeMap<String, agentauth_svid::SpiffeBundle>, SdkError> {
        let metadata = self.metadata().await?.clone();
        let response = self
            .http()
            .get(&metadata.spiffe_bundle_map_endpoint)
            .send()
            .await
            .map_err(SdkError::unreachable(Endpoint::BundleMap))?;
        let response = refused_unless_ok(response, Endpoint::BundleMap).await?;
        let map: serde_json::Value = response
            .json()
            .await
            .map_err(SdkError::unreadable(Endpoint::BundleMap))?;
        let domains = map
            .get("trust_domains")
            .and_then(|d| d.as_object())
            .ok_or_else(|| SdkError::AuthorityStatus {
                endpoint: Endpoint::BundleMap,
                status: 200,
            })?;
        Ok(domains
            .iter()
            .filter_map(|(name, bundle)| {
                let read = agentauth_svid::SpiffeBundle::from_value(bundle).ok()?;
                Some((name.clone(), read))
            })
            .collect())
    }
}

/// The response if it succeeded, else the authority's refusal as an error.
async fn refused_unless_ok(
    response: reqwest::Response,
    endpoint: Endpoint,
) -> Result<reqwest::Response, SdkError> {
    let status = response.status();
    if status.is_success() {
        return Ok(response);
    }
    let refusal: Option<OAuthError> = response.json().await.ok();
    Err(match refusal {
        Some(e) => SdkError::Refused {
            endpoint,
            status: status.as_u16(),
            error: e.error,
            description: e.error_description,
        },
        None => SdkError::AuthorityStatus {
            endpoint,
            status: status.as_u16(),
        },
    })
}
