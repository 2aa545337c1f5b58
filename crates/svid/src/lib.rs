//! X.509-SVIDs as the SPIFFE X509-SVID specification defines them: the
//! authority's certificate authority, leaf certificates issued from a
//! workload's certificate signing request (the authority never sees the
//! workload's private key), and the checks a verifier applies to a chain it
//! is shown.
//!
//! A leaf carries exactly one URI SAN (its SPIFFE ID), `cA=false`, a critical
//! keyUsage of `digitalSignature` only, and extendedKeyUsage `serverAuth` and
//! `clientAuth`. The CA is a P-256 ECDSA root with `pathLen 0`, so it signs
//! leaves and nothing else. All DER is written by `rcgen` and read by
//! `x509-parser` and `rustls-webpki`.

mod authority;
mod bundle;
mod check;
mod tls;

pub use authority::{CertificateAuthority, IssuedSvid, UpstreamCa};
pub use bundle::{MAX_BUNDLE_BYTES, SpiffeBundle};
pub use check::{SvidCheck, check_svid, leaf_trust_domain, svid_id};
pub use tls::{ChainCheck, PeerVerifier};

/// Why a CA could not be made or loaded, a CSR was refused, or a chain is
/// not a valid X.509-SVID.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SvidError {
    /// The CSR does not parse or its signature does not verify (it does not
    /// prove possession of its key).
    #[error("the certificate signing request is unreadable or not signed by its key: {0}")]
    Csr(String),
    /// The CSR's key is of a kind SVIDs are not issued for.
    #[error("the CSR's key must be ECDSA P-256 or Ed25519")]
    KeyAlgorithm,
    /// A certificate could not be built or a stored one read back.
    #[error("certificate: {0}")]
    Certificate(String),
    /// Path validation against the trust bundle failed.
    #[error("the chain does not validate against the bundle: {0}")]
    Chain(String),
    /// The chain validates but its leaf breaks an X509-SVID rule.
    #[error("not an X509-SVID: {0}")]
    NotSvid(String),
    /// A trust bundle document breaks the SPIFFE bundle format.
    #[error("not a SPIFFE bundle: {0}")]
    Bundle(String),
}

impl From<rcgen::Error> for SvidError {
    fn from(e: rcgen::Error) -> Self {
        Self::Certificate(e.to_string())
    }
}

/// A key pair made where the SVID will be used, and a CSR signed with it.
pub struct NewKey {
    /// The private key, PKCS#8 DER.
    pub key_pkcs8_der: Vec<u8>,
    /// The certificate signing request, DER.
    pub csr_der: Vec<u8>,
}

impl std::fmt::Debug for NewKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewKey(..)")
    }
}

impl NewKey {
    /// A fresh P-256 key pair and its CSR (no names: the CA sets them).
    pub fn generate() -> Result<Self, SvidError> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let csr = rcgen::CertificateParams::default().serialize_request(&key)?;
        Ok(Self {
            key_pkcs8_der: key.serialize_der(),
            csr_der: csr.der().to_vec(),
        })
    }
}

/// Certificates (DER) as concatenated PEM blocks, leaf first.
pub fn certificates_pem<'a>(ders: impl IntoIterator<Item = &'a [u8]>) -> String {
    let blocks: Vec<pem::Pem> = ders
        .into_iter()
        .map(|der| pem::Pem::new("CERTIFICATE", der))
        .collect();
    pem::encode_many(&blocks)
}

/// The DER of every `CERTIFICATE` block in `text`, in order; anything else
/// in it is an error.
pub fn certificates_from_pem(text: &str) -> Result<Vec<Vec<u8>>, SvidError> {
    let blocks = pem::parse_many(text).map_err(|e| SvidError::Certificate(e.to_string()))?;
    if blocks.is_empty() {
        return Err(SvidError::Certificate("no PEM certificate".into()));
    }
    blocks
        .into_iter()
        .map(|b| match b.tag() {
            "CERTIFICATE" => Ok(b.into_contents()),
            other => Err(SvidError::Certificate(format!(
                "a PEM block is {other}, not CERTIFICATE"
            ))),
        })
        .collect()
}

/// Certificates concatenated as DER (how the Workload API sends a chain or
/// a bundle) one by one, in order.
pub fn split_certificates(mut der: &[u8]) -> Result<Vec<Vec<u8>>, SvidError> {
    let mut out = Vec::new();
    while !der.is_empty() {
        let (rest, _) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| SvidError::Certificate(format!("concatenated DER: {e}")))?;
        out.push(der[..der.len() - rest.len()].to_vec());
        der = rest;
    }
    if out.is_empty() {
        return Err(SvidError::Certificate("no certificate".into()));
    }
    Ok(out)
}

/// A certificate's public key as a JWK (P-256 or Ed25519, the keys SVIDs
/// are issued for): what a certificate-bound token's `cnf` names.
pub fn public_jwk(der: &[u8]) -> Result<agentauth_core::PublicJwk, SvidError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| SvidError::Certificate(e.to_string()))?;
    let spki = cert.public_key();
    let raw = spki.subject_public_key.data.as_ref();
    let b64 = agentauth_core::b64url_encode;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    let jwk = match spki.algorithm.algorithm.to_id_string().as_str() {
        // id-ecPublicKey on prime256v1, as an uncompressed point.
        "1.2.840.10045.2.1"
            if curve.as_deref() == Some("1.2.840.10045.3.1.7")
                && raw.len() == 65
                && raw[0] == 4 =>
        {
            serde_json::json!({
                "kty": "EC", "crv": "P-256", "x": b64(&raw[1..33]), "y": b64(&raw[33..]),
            })
        }
        "1.3.101.112" if raw.len() == 32 => {
            serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)})
        }
        _ => return Err(SvidError::KeyAlgorithm),
    };
    agentauth_core::PublicJwk::from_json(&jwk).map_err(|e| SvidError::Certificate(e.to_string()))
}

/// A certificate's `notAfter`, seconds since the epoch.
pub fn not_after(der: &[u8]) -> Result<i64, SvidError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| SvidError::Certificate(e.to_string()))?;
    Ok(cert.validity().not_after.timestamp())
}

/// The DER of the one `CERTIFICATE REQUEST` block of `text` (a CSR as
/// `openssl req` writes it).
pub fn csr_from_pem(text: &str) -> Result<Vec<u8>, SvidError> {
    let block = pem::parse(text).map_err(|e| SvidError::Csr(e.to_string()))?;
    if block.tag() != "CERTIFICATE REQUEST" {
        return Err(SvidError::Csr(format!(
            "the PEM block is {}, not CERTIFICATE REQUEST",
            block.tag()
        )));
    }
    Ok(block.into_contents())
}

/// Seconds since the epoch as the certificate time type.
fn at(unix: i64) -> Result<time::OffsetDateTime, SvidError> {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .map_err(|e| SvidError::Certificate(format!("time {unix}: {e}")))
}
