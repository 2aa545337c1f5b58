//! The certificate authority: a self-signed P-256 root, or an intermediate
//! signed by an upstream CA the operator holds, that signs leaves from
//! CSRs, with every field of the leaf set here from the registry, never
//! copied from the request.

use agentauth_core::{SpiffeId, TrustDomain};
use pki_types::{CertificateDer, CertificateSigningRequestDer, PrivatePkcs8KeyDer};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PublicKeyData as _, SanType, SerialNumber,
};

use crate::{SvidError, at};

/// Seconds a certificate's `notBefore` lies in the past, for clock skew.
const BACKDATE_SECS: i64 = 60;

/// A CA that issues X.509-SVIDs for one trust domain.
pub struct CertificateAuthority {
    cert: CertificateDer<'static>,
    key_der: Vec<u8>,
    issuer: Issuer<'static, KeyPair>,
    not_after: i64,
    /// Serial number, lowercase hex, read once at load.
    serial: String,
    /// The public point's coordinates, read once at load.
    xy: ([u8; 32], [u8; 32]),
    /// For an intermediate: the upstream chain (DER) from the certificate
    /// that signed it up to the root; empty for a self-signed root.
    upstream: Vec<Vec<u8>>,
}

/// An upstream CA the operator gives as PEM (its certificate, then any
/// chain up to the root, and its P-256 key): it signs the authority's
/// intermediate CAs, and its root is what the trust bundle publishes.
pub struct UpstreamCa {
    chain: Vec<Vec<u8>>,
    issuer: Issuer<'static, KeyPair>,
    not_after: i64,
}

impl std::fmt::Debug for UpstreamCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamCa")
            .field("certificates", &self.chain.len())
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl UpstreamCa {
    /// Reads the upstream CA: `certs_pem` holds its certificate first, then
    /// its chain up to the root (if it is not the root itself); `key_pem`
    /// its ECDSA P-256 private key (PKCS#8 or SEC1 PEM), which must match
    /// the first certificate, a CA allowed to sign certificates.
    pub fn from_pem(certs_pem: &str, key_pem: &str) -> Result<Self, SvidError> {
        let bad = |why: &str| SvidError::Certificate(format!("the upstream CA: {why}"));
        let chain = crate::certificates_from_pem(certs_pem)?;
        let key =
            KeyPair::from_pem(key_pem).map_err(|_| bad("the key is not a PEM private key"))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(bad("the key must be ECDSA P-256"));
        }
        let (_, first) =
            x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| bad(&e.to_string()))?;
        if first.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(bad("the key does not match the first certificate"));
        }
        let is_ca = first
            .basic_constraints()
            .ok()
            .flatten()
            .is_some_and(|bc| bc.value.ca);
        let signs = first
            .key_usage()
            .ok()
            .flatten()
            .is_none_or(|ku| ku.value.key_cert_sign());
        if !is_ca || !signs {
            return Err(bad(
                "the first certificate is not a CA allowed to sign certificates",
            ));
        }
        let not_after = first.validity().not_after.timestamp();
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(chain[0].clone()), key)?;
        Ok(Self {
            chain,
            issuer,
            not_after,
        })
    }

    /// The root of the upstream chain (DER): the trust anchor peers need.
    pub fn root_der(&self) -> &[u8] {
        self.chain.last().expect("a chain is never empty")
    }

    /// The upstream certificate's `notAfter`, seconds since the epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A leaf issued from a CSR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedSvid {
    /// The certificate, DER.
    pub der: Vec<u8>,
    /// Its serial number, lowercase hex.
    pub serial: String,
    /// Its `notAfter`, seconds since the epoch.
    pub expires_at: i64,
}

impl CertificateAuthority {
    /// A new self-signed root for `trust_domain`, valid from a minute before
    /// `now` for `lifetime_secs`: a P-256 key, `cA=true` with `pathLen 0`,
    /// keyUsage `keyCertSign` and `cRLSign`, and the trust domain's SPIFFE
    /// ID (`spiffe://<td>`) as its URI SAN.
    pub fn generate(
        trust_domain: &TrustDomain,
        now: i64,
        lifetime_secs: i64,
    ) -> Result<Self, SvidError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let params = ca_params(trust_domain, "agentauth CA for", now, now + lifetime_secs)?;
        let cert = params.self_signed(&key)?;
        let key_der = key.serialize_der();
        Self::from_der(cert.der().as_ref(), &key_der)
    }

    /// A new intermediate for `trust_domain` signed by `upstream`: as
    /// [`CertificateAuthority::generate`], but issued by the upstream CA
    /// and never outliving it. Its SVIDs carry it as their intermediate;
    /// peers trust the upstream root.
    pub fn generate_intermediate(
        trust_domain: &TrustDomain,
        upstream: &UpstreamCa,
        now: i64,
        lifetime_secs: i64,
    ) -> Result<Self, SvidError> {
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let mut params = ca_params(
            trust_domain,
            "agentauth intermediate CA for",
            now,
            (now + lifetime_secs).min(upstream.not_after),
        )?;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &upstream.issuer)?;
        let key_der = key.serialize_der();
        Self::from_der_with_upstream(cert.der().as_ref(), &key_der, upstream.chain.clone())
    }

    /// An intermediate CA from its certificate and key (as
    /// [`CertificateAuthority::from_der`]) and the upstream chain above it
    /// (DER, from its issuer up to the root).
    pub fn from_der_with_upstream(
        cert_der: &[u8],
        key_pkcs8_der: &[u8],
        upstream: Vec<Vec<u8>>,
    ) -> Result<Self, SvidError> {
        let mut ca = Self::from_der(cert_der, key_pkcs8_der)?;
        ca.upstream = upstream;
        Ok(ca)
    }

    /// The trust anchor for what this CA signs (DER): the upstream root for
    /// an intermediate, else this CA itself.
    pub fn anchor_der(&self) -> &[u8] {
        self.upstream
            .last()
            .map_or(self.cert.as_ref(), Vec::as_slice)
    }

    /// The certificates an SVID it signs carries after the leaf (DER): this
    /// intermediate and the upstream chain below the root; none for a root.
    pub fn intermediates(&self) -> Vec<&[u8]> {
        match self.upstream.split_last() {
            None => Vec::new(),
            Some((_, below_root)) => std::iter::once(self.cert.as_ref())
                .chain(below_root.iter().map(Vec::as_slice))
                .collect(),
        }
    }

    /// The upstream chain above this CA (DER), for storing; empty for a root.
    pub fn upstream_chain(&self) -> &[Vec<u8>] {
        &self.upstream
    }

    /// The CA from its certificate and its private key (PKCS#8), both DER,
    /// as [`CertificateAuthority::cert_der`] and
    /// [`CertificateAuthority::key_pkcs8_der`] gave them.
    pub fn from_der(cert_der: &[u8], key_pkcs8_der: &[u8]) -> Result<Self, SvidError> {
        let key = KeyPair::from_pkcs8_der_and_sign_algo(
            &PrivatePkcs8KeyDer::from(key_pkcs8_der.to_vec()),
            &PKCS_ECDSA_P256_SHA256,
        )?;
        let cert = CertificateDer::from(cert_der.to_vec());
        let (_, parsed) = x509_parser::parse_x509_certificate(cert_der)
            .map_err(|e| SvidError::Certificate(e.to_string()))?;
        if parsed.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err(SvidError::Certificate(
                "the CA key does not match the CA certificate".into(),
            ));
        }
        let not_after = parsed.validity().not_after.timestamp();
        let serial = hex(parsed.raw_serial());
        // An uncompressed P-256 point: 0x04, then x, then y.
        let point = parsed.public_key().subject_public_key.data.as_ref();
        let mut xy = ([0; 32], [0; 32]);
        if point.len() == 65 {
            xy.0.copy_from_slice(&point[1..33]);
            xy.1.copy_from_slice(&point[33..]);
        }
        let issuer = Issuer::from_ca_cert_der(&cert, key)?;
        Ok(Self {
            cert,
            key_der: key_pkcs8_der.to_vec(),
            issuer,
            not_after,
            serial,
            xy,
            upstream: Vec::new(),
        })
    }

    /// The CA certificate, DER: what the trust bundle publishes.
    pub fn cert_der(&self) -> &[u8] {
        self.cert.as_ref()
    }

    /// The CA's private key, PKCS#8 DER, for sealing at rest.
    pub fn key_pkcs8_der(&self) -> &[u8] {
        &self.key_der
    }

    /// The CA's public key as the P-256 point's `x` and `y` coordinates, for
    /// the JWK of the trust bundle.
    pub fn public_xy(&self) -> ([u8; 32], [u8; 32]) {
        self.xy
    }

    /// The CA certificate's serial number, lowercase hex.
    pub fn serial(&self) -> String {
        self.serial.clone()
    }

    /// The CA certificate's `notAfter`, seconds since the epoch.
    pub fn not_after(&self) -> i64 {
        self.not_after
    }

    /// Issues an X.509-SVID for `id` from a CSR (DER), whose signature must
    /// verify (proof that the requester holds the key) and whose key must be
    /// ECDSA P-256 or Ed25519. Nothing else of the request is used: the
    /// SPIFFE ID, extensions and lifetime are set here. The leaf lives
    /// `lifetime_secs` from a minute before `now`, and never past the CA.
    pub fn issue(
        &self,
        csr_der: &[u8],
        id: &SpiffeId,
        now: i64,
        lifetime_secs: i64,
    ) -> Result<IssuedSvid, SvidError> {
        self.issue_for_hosts(csr_der, id, &[], now, lifetime_secs)
    }

    /// As [`CertificateAuthority::issue`], with `hosts` (IP addresses or DNS
    /// names) as further SANs besides the one URI SAN, which the SPIFFE spec
    /// allows: a server SVID that clients checking host names accept too.
    pub fn issue_for_hosts(
        &self,
        csr_der: &[u8],
        id: &SpiffeId,
        hosts: &[String],
        now: i64,
        lifetime_secs: i64,
    ) -> Result<IssuedSvid, SvidError> {
        let csr =
            CertificateSigningRequestParams::from_der(&CertificateSigningRequestDer::from(csr_der))
                .map_err(|e| SvidError::Csr(e.to_string()))?;
        let algorithm = csr.public_key.algorithm();
        if algorithm != &PKCS_ECDSA_P256_SHA256 && algorithm != &PKCS_ED25519 {
            return Err(SvidError::KeyAlgorithm);
        }
        let expires_at = (now + lifetime_secs).min(self.not_after);
        let serial = serial();
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "agentauth");
        params.distinguished_name = name;
        params.subject_alt_names =
            vec![SanType::URI(id.as_str().try_into().map_err(
                |e: rcgen::Error| SvidError::Certificate(e.to_string()),
            )?)];
        for host in hosts {
            params.subject_alt_names.push(match host.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(
                    host.as_str()
                        .try_into()
                        .map_err(|e: rcgen::Error| SvidError::Certificate(e.to_string()))?,
                ),
            });
        }
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        params.serial_number = Some(serial.clone());
        params.not_before = at(now - BACKDATE_SECS)?;
        params.not_after = at(expires_at)?;
        let cert = params.signed_by(&csr.public_key, &self.issuer)?;
        Ok(IssuedSvid {
            der: cert.der().as_ref().to_vec(),
            serial: hex(&serial.to_bytes()),
            expires_at,
        })
    }
}

/// The parameters every CA made here shares: a name `<title> <td>`, the
/// trust domain's SPIFFE ID as its URI SAN, `cA=true` with `pathLen 0`,
/// keyUsage `keyCertSign` and `cRLSign`, a random serial, valid from a
/// minute before `now` until `not_after`.
fn ca_params(
    trust_domain: &TrustDomain,
    title: &str,
    now: i64,
    not_after: i64,
) -> Result<CertificateParams, SvidError> {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "agentauth");
    name.push(
        DnType::CommonName,
        format!("{title} {}", trust_domain.as_str()),
    );
    params.distinguished_name = name;
    params.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{}", trust_domain.as_str())
            .try_into()
            .map_err(|e: rcgen::Error| SvidError::Certificate(e.to_string()))?,
    )];
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.serial_number = Some(serial());
    params.not_before = at(now - BACKDATE_SECS)?;
    params.not_after = at(not_after)?;
    Ok(params)
}

/// Bytes as lowercase hex.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// 16 random bytes, the top bit cleared so the number is positive.
fn serial() -> SerialNumber {
    let mut bytes = agentauth_core::random_bytes(16);
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}
