//! SPIFFE identities from the authority: `POST /v1/svids/x509` signs a
//! workload's CSR into an X.509-SVID, `GET /v1/bundle` is the trust bundle
//! in the SPIFFE bundle format.

use serde::{Deserialize, Serialize};

/// Body of `POST /v1/svids/x509`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct X509SvidRequest {
    /// A PKCS#10 certificate signing request, PEM (`CERTIFICATE REQUEST`),
    /// signed by the workload's own ECDSA P-256 or Ed25519 key. Only its key
    /// is used; the SPIFFE ID comes from the caller's token.
    pub csr: String,
}

/// The answer of `POST /v1/svids/x509`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct X509SvidIssued {
    /// The SPIFFE ID the certificate carries.
    pub spiffe_id: String,
    /// The certificate chain, PEM, leaf first.
    pub x509_svid: String,
    /// The trust domain's CA certificates, PEM: what a peer validates with.
    pub bundle: String,
    /// The leaf's serial number, hex.
    pub serial: String,
    /// The leaf's `notAfter`, seconds since the epoch; renew at half-life.
    pub expires_at: i64,
}

/// One key of a SPIFFE trust bundle (a JWK with `use`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleKey {
    /// `EC`.
    pub kty: String,
    /// `P-256`.
    pub crv: String,
    /// The public point's x coordinate, base64url.
    pub x: String,
    /// The public point's y coordinate, base64url.
    pub y: String,
    /// `x509-svid` (a CA certificate) or `jwt-svid` (a JWT-SVID key).
    #[serde(rename = "use")]
    pub key_use: String,
    /// For `x509-svid`: exactly one CA certificate, standard base64 DER.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub x5c: Vec<String>,
    /// For `jwt-svid`: the key ID (`x509-svid` keys have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
}

/// The answer of `GET /v1/bundle`: a SPIFFE trust bundle (RFC 7517 JWK
/// set with the SPIFFE members).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustBundle {
    /// The keys.
    pub keys: Vec<BundleKey>,
    /// Changes whenever the content changes.
    pub spiffe_sequence: u64,
    /// Seconds after which a consumer should fetch the bundle again.
    pub spiffe_refresh_hint: u64,
}

/// Body of `POST /v1/ca/rotate`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaRotation {
    /// Sign with the new CA at once instead of after the publish lead (for
    /// a CA key believed compromised: peers meet an unknown CA until they
    /// fetch the bundle again).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub now: bool,
}

/// One certificate authority of X.509-SVIDs, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaView {
    /// The CA certificate's serial number, hex.
    pub serial: String,
    /// `published` (in the bundle, not signing yet), `signing`, or
    /// `retired` (in the bundle until it expires).
    pub phase: String,
    /// When it starts (or started) signing, seconds since the epoch.
    pub signs_from: i64,
    /// Its `notAfter`: it leaves the bundle then.
    pub not_after: i64,
}

/// The answer of `GET /v1/ca`: every CA in the bundle, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaList {
    /// The CAs.
    pub cas: Vec<CaView>,
}

/// Body of `POST /v1/svids/jwt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtSvidRequest {
    /// The one audience the JWT-SVID is for (at most 512 characters). With
    /// `delegated_token` it may be left empty, and otherwise must be that
    /// token's audience.
    #[serde(default)]
    pub audience: String,
    /// A delegated token the caller holds (its `client_id` is the caller and
    /// it carries `act`): the JWT-SVID then speaks for that delegation, with
    /// the token's `sub`, `act` chain and `txn`, and expires no later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegated_token: Option<String>,
}

/// The answer of `POST /v1/svids/jwt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtSvidIssued {
    /// The SPIFFE ID it carries as `sub`.
    pub spiffe_id: String,
    /// The JWT-SVID, compact.
    pub token: String,
    /// Its `exp`, seconds since the epoch.
    pub expires_at: i64,
}

/// Body of `POST /v1/federation`: follow a foreign trust domain's bundle
/// endpoint (SPIFFE federation, `https_web` profile).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewFederation {
    /// The foreign trust domain's name (`example.org`), never inferred from
    /// the URL.
    pub trust_domain: String,
    /// Its bundle endpoint, an `https://` URL.
    pub bundle_endpoint_url: String,
    /// PEM CA certificates the endpoint's server certificate may also chain
    /// to, beside the system's Web PKI roots (for a private PKI).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint_ca: Option<String>,
}

/// A federated trust domain as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationView {
    /// The foreign trust domain's name.
    pub trust_domain: String,
    /// Its bundle endpoint.
    pub bundle_endpoint_url: String,
    /// The endpoint profile: `https_web`.
    pub profile: String,
    /// The `spiffe_sequence` of the bundle held.
    pub sequence: u64,
    /// CA certificates in the bundle held.
    pub x509_authorities: usize,
    /// JWT-SVID keys in the bundle held.
    pub jwt_authorities: usize,
    /// When the bundle held was fetched, seconds since the epoch.
    pub refreshed_at: i64,
    /// When this replica fetches it next (at the bundle's refresh hint).
    pub refresh_at: i64,
    /// Why this replica's last fetch failed, if it did (the bundle held is
    /// then kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The answer of `GET /v1/federation`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationList {
    /// Every federated trust domain, by name.
    pub trust_domains: Vec<FederationView>,
}
