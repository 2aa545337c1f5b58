//! The certificate authority: a self-signed P-256 root that signs leaves
//! from CSRs, with every field of the leaf set here from the registry, never
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
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::OrganizationName, "agentauth");
        name.push(
            DnType::CommonName,
            format!("agentauth CA for {}", trust_domain.as_str()),
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
        params.not_after = at(now + lifetime_secs)?;
        let cert = params.self_signed(&key)?;
        let key_der = key.serialize_der();
        Self::from_der(cert.der().as_ref(), &key_der)
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
