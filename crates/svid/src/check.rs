//! What a verifier checks of a presented X.509-SVID: RFC 5280 path
//! validation against the trust bundle of the SVID's trust domain (by
//! `rustls-webpki`), then the X509-SVID rules on the leaf.

use agentauth_core::SpiffeId;
use pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::{GeneralName, ParsedExtension};

use crate::SvidError;

/// A chain that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SvidCheck {
    /// The SPIFFE ID of its leaf.
    pub id: SpiffeId,
    /// The leaf's `notAfter`, seconds since the epoch.
    pub expires_at: i64,
}

/// Checks `chain` (leaf first, then intermediates, DER) against the CA
/// certificates of `bundle` (DER) at `now`: the path validates for both
/// client and server use, and the leaf has exactly one URI SAN that is a
/// SPIFFE ID in the bundle's trust domain `trust_domain`, `cA=false`, and
/// a critical keyUsage with `digitalSignature` and neither `keyCertSign`
/// nor `cRLSign`.
pub fn check_svid(
    chain: &[&[u8]],
    bundle: &[&[u8]],
    trust_domain: &str,
    now: i64,
) -> Result<SvidCheck, SvidError> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| SvidError::Chain("the chain is empty".into()))?;
    let roots: Vec<CertificateDer<'_>> = bundle.iter().map(|c| CertificateDer::from(*c)).collect();
    let anchors = roots
        .iter()
        .map(|c| webpki::anchor_from_trusted_cert(c).map_err(|e| SvidError::Chain(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let intermediates: Vec<CertificateDer<'_>> = intermediates
        .iter()
        .map(|c| CertificateDer::from(*c))
        .collect();
    let leaf_der = CertificateDer::from(*leaf);
    let end_entity =
        webpki::EndEntityCert::try_from(&leaf_der).map_err(|e| SvidError::Chain(e.to_string()))?;
    let time = UnixTime::since_unix_epoch(std::time::Duration::from_secs(
        u64::try_from(now).unwrap_or(0),
    ));
    end_entity
        .verify_for_usage(
            &[
                webpki::aws_lc_rs::ECDSA_P256_SHA256,
                webpki::aws_lc_rs::ED25519,
            ],
            &anchors,
            &intermediates,
            time,
            BothTlsUsages,
            None,
            None,
        )
        .map_err(|e| SvidError::Chain(e.to_string()))?;
    leaf_rules(leaf, trust_domain)
}

/// id-kp-serverAuth (1.3.6.1.5.5.7.3.1), DER contents.
const SERVER_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x01];
/// id-kp-clientAuth (1.3.6.1.5.5.7.3.2), DER contents.
const CLIENT_AUTH: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x03, 0x02];

/// An SVID serves as client and as server, so a certificate that names
/// extended key usages at all must name both (the X509-SVID rule); checked
/// in the one path validation.
struct BothTlsUsages;

impl webpki::ExtendedKeyUsageValidator for BothTlsUsages {
    fn validate(&self, iter: webpki::KeyPurposeIdIter<'_, '_>) -> Result<(), webpki::Error> {
        let (mut any, mut server, mut client) = (false, false, false);
        for id in iter {
            let id = id?;
            any = true;
            server |= id == webpki::KeyPurposeId::new(SERVER_AUTH);
            client |= id == webpki::KeyPurposeId::new(CLIENT_AUTH);
        }
        if !any || (server && client) {
            Ok(())
        } else {
            #[allow(deprecated)]
            Err(webpki::Error::RequiredEkuNotFound)
        }
    }
}

/// The SPIFFE ID of a leaf whose chain was already validated (in a TLS
/// handshake by a verifier over [`check_svid`]): the leaf rules alone, no
/// second path validation.
pub fn svid_id(leaf_der: &[u8], trust_domain: &str) -> Result<SpiffeId, SvidError> {
    leaf_rules(leaf_der, trust_domain).map(|c| c.id)
}

/// The trust domain a leaf's one URI SAN names, read before any check: it
/// picks the bundle the chain is then validated against (a federated
/// domain's, or the own one's), and is trusted for nothing else.
pub fn leaf_trust_domain(leaf_der: &[u8]) -> Result<String, SvidError> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf_der)
        .map_err(|e| SvidError::NotSvid(e.to_string()))?;
    let mut uris = Vec::new();
    for ext in cert.extensions() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() {
            for name in &san.general_names {
                if let GeneralName::URI(uri) = name {
                    uris.push(*uri);
                }
            }
        }
    }
    let [uri] = uris.as_slice() else {
        return Err(SvidError::NotSvid(
            "a leaf carries exactly one URI SAN".into(),
        ));
    };
    SpiffeId::parse(uri)
        .map(|id| id.trust_domain().to_owned())
        .map_err(|e| SvidError::NotSvid(e.to_string()))
}

/// The X509-SVID rules on a leaf, after its path validated.
fn leaf_rules(der: &[u8], trust_domain: &str) -> Result<SvidCheck, SvidError> {
    let not = |why: &str| SvidError::NotSvid(why.to_owned());
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|e| SvidError::NotSvid(e.to_string()))?;
    let mut uris = Vec::new();
    let mut key_usage = None;
    let mut is_ca = false;
    for ext in cert.extensions() {
        match ext.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    if let GeneralName::URI(uri) = name {
                        uris.push((*uri).to_owned());
                    }
                }
            }
            ParsedExtension::KeyUsage(ku) => key_usage = Some((ext.critical, *ku)),
            ParsedExtension::BasicConstraints(bc) => is_ca = bc.ca,
            _ => {}
        }
    }
    let [uri] = uris.as_slice() else {
        return Err(not("a leaf carries exactly one URI SAN"));
    };
    let id = SpiffeId::parse(uri).map_err(|e| SvidError::NotSvid(e.to_string()))?;
    if id.path().is_empty() || id.path() == "/" {
        return Err(not("a leaf's SPIFFE ID has a path"));
    }
    if id.trust_domain() != trust_domain {
        return Err(not("the leaf's trust domain is not the bundle's"));
    }
    if is_ca {
        return Err(not("a leaf has cA=false"));
    }
    match key_usage {
        None => return Err(not("a leaf carries keyUsage")),
        Some((false, _)) => return Err(not("keyUsage is critical")),
        Some((true, ku)) => {
            if !ku.digital_signature() || ku.key_cert_sign() || ku.crl_sign() {
                return Err(not(
                    "keyUsage has digitalSignature and neither keyCertSign nor cRLSign",
                ));
            }
        }
    }
    Ok(SvidCheck {
        id,
        expires_at: cert.validity().not_after.timestamp(),
    })
}

#[cfg(test)]
mod tests {
    use rcgen::{
        CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, PublicKeyData as _,
    };

    use super::*;
    use crate::CertificateAuthority;

    const NOW: i64 = 1_800_000_000;

    fn td() -> agentauth_core::TrustDomain {
        agentauth_core::TrustDomain::new("agentauth.local").unwrap()
    }

    fn agent(name: &str) -> SpiffeId {
        SpiffeId::parse(&format!("spiffe://agentauth.local/agent/{name}")).unwrap()
    }

    /// A CSR from a fresh key of `alg`, asking for things it will not get.
    fn csr(alg: &'static rcgen::SignatureAlgorithm) -> (KeyPair, Vec<u8>) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut asked = CertificateParams::new(vec!["evil.example".to_owned()]).unwrap();
        asked.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let request = asked.serialize_request(&key).unwrap();
        (key, request.der().as_ref().to_vec())
    }

    #[test]
    fn a_leaf_from_a_csr_has_every_x509_svid_property_and_validates() {
        let ca = CertificateAuthority::generate(&td(), NOW, 86_400).unwrap();
        for alg in [&PKCS_ECDSA_P256_SHA256, &PKCS_ED25519] {
            let (key, request) = csr(alg);
            let issued = ca.issue(&request, &agent("reader"), NOW, 3600).unwrap();
            assert_eq!(issued.expires_at, NOW + 3600);
            let checked =
                check_svid(&[&issued.der], &[ca.cert_der()], "agentauth.local", NOW).unwrap();
            assert_eq!(checked.id, agent("reader"));

            let (_, cert) = x509_parser::parse_x509_certificate(&issued.der).unwrap();
            // The CSR's key, not the CA's, and nothing it asked for.
            assert_eq!(
                cert.public_key().raw,
                key.subject_public_key_info().as_slice()
            );
            let bc = cert.basic_constraints().unwrap().unwrap();
            assert!(!bc.value.ca, "cA=false, whatever the CSR asked");
            let ku = cert.key_usage().unwrap().unwrap();
            assert!(ku.critical);
            assert!(ku.value.digital_signature());
            assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
            let eku = cert.extended_key_usage().unwrap().unwrap().value;
            assert!(eku.server_auth && eku.client_auth);
            let san = cert.subject_alternative_name().unwrap().unwrap().value;
            assert_eq!(san.general_names.len(), 1, "no DNS name from the CSR");
            assert_eq!(
                san.general_names[0],
                GeneralName::URI("spiffe://agentauth.local/agent/reader")
            );
            assert_eq!(cert.validity().not_before.timestamp(), NOW - 60);
        }
    }

    #[test]
    fn the_ca_is_a_p256_root_that_signs_leaves_only() {
        let ca = CertificateAuthority::generate(&td(), NOW, 86_400).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap().value;
        assert!(bc.ca);
        assert_eq!(bc.path_len_constraint, Some(0));
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical && ku.value.key_cert_sign() && ku.value.crl_sign());
        assert_eq!(ca.not_after(), NOW + 86_400);
        // Stored and loaded again, it issues leaves that validate.
        let again = CertificateAuthority::from_der(ca.cert_der(), ca.key_pkcs8_der()).unwrap();
        let (_, request) = csr(&PKCS_ECDSA_P256_SHA256);
        let issued = again.issue(&request, &agent("a"), NOW, 3600).unwrap();
        check_svid(&[&issued.der], &[ca.cert_der()], "agentauth.local", NOW).unwrap();
        // Its certificate with another CA's key is refused.
        let other = CertificateAuthority::generate(&td(), NOW, 86_400).unwrap();
        assert!(CertificateAuthority::from_der(ca.cert_der(), other.key_pkcs8_der()).is_err());
    }

    #[test]
    fn a_leaf_that_names_only_one_tls_usage_is_refused() {
        let ca = CertificateAuthority::generate(&td(), NOW, 86_400).unwrap();
        let ca_key = KeyPair::from_pkcs8_der_and_sign_algo(
            &pki_types::PrivatePkcs8KeyDer::from(ca.key_pkcs8_der().to_vec()),
            &PKCS_ECDSA_P256_SHA256,
        )
        .unwrap();
        let issuer =
            rcgen::Issuer::from_ca_cert_der(&CertificateDer::from(ca.cert_der()), ca_key).unwrap();
        let leaf_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
        for ekus in [
            vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
            vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth],
            vec![
                rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                rcgen::ExtendedKeyUsagePurpose::ClientAuth,
            ],
        ] {
            let both = ekus.len() == 2;
            let mut params = CertificateParams::default();
            params.subject_alt_names = vec![rcgen::SanType::URI(
                "spiffe://agentauth.local/agent/a".try_into().unwrap(),
            )];
            params.is_ca = rcgen::IsCa::ExplicitNoCa;
            params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
            params.extended_key_usages = ekus;
            params.not_before = crate::at(NOW - 60).unwrap();
            params.not_after = crate::at(NOW + 600).unwrap();
            let leaf = params.signed_by(&leaf_key, &issuer).unwrap();
            let checked = check_svid(&[leaf.der()], &[ca.cert_der()], "agentauth.local", NOW);
            assert_eq!(checked.is_ok(), both, "{checked:?}");
        }
    }

    #[test]
    fn a_leaf_never_outlives_its_ca() {
        let ca = CertificateAuthority::generate(&td(), NOW, 600).unwrap();
        let (_, request) = csr(&PKCS_ECDSA_P256_SHA256);
        let issued = ca.issue(&request, &agent("a"), NOW, 3600).unwrap();
        assert_eq!(issued.expires_at, NOW + 600);
    }

    #[test]
    fn a_tampered_csr_or_a_foreign_key_type_is_refused() {
        let ca = CertificateAuthority::generate(&td(), NOW, 86_400).unwrap();
        let (_, mut request) = csr(&PKCS_ECDSA_P256_SHA256);
        let last = request.len() - 5;
        request[last] ^= 0x01;
        assert!(matches!(
            ca.issue(&request, &agent("a"), NOW, 3600),
            Err(SvidError::Csr(_))
        ));
        let (_, p384) = csr(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert!(matches!(
            ca.issue(&p384, &agent("a"), NOW, 3600),
            Err(SvidError::KeyAlgorithm)
        ));
        assert!(ca.issue(b"not a csr", &agent("a"), NOW, 3600).is_err());
    }

    #[test]
    fn a_chain_is_refused_by_another_bundle_after_expiry_or_in_another_trust_domain() {
        let ca = CertificateAuthority::generate(&td(), NOW, 86_400).unwrap();
        let other = CertificateAuthority::generate(&td(), NOW, 86_400).unwrap();
        let (_, request) = csr(&PKCS_ECDSA_P256_SHA256);
        let issued = ca.issue(&request, &agent("a"), NOW, 3600).unwrap();
        let leaf: &[u8] = &issued.der;
        assert!(matches!(
            check_svid(&[leaf], &[other.cert_der()], "agentauth.local", NOW),
            Err(SvidError::Chain(_))
        ));
        assert!(matches!(
            check_svid(&[leaf], &[ca.cert_der()], "agentauth.local", NOW + 3601),
            Err(SvidError::Chain(_))
        ));
        assert!(matches!(
            check_svid(&[leaf], &[ca.cert_der()], "other.example", NOW),
            Err(SvidError::NotSvid(_))
        ));
        // The CA certificate itself is no SVID.
        assert!(check_svid(&[ca.cert_der()], &[ca.cert_der()], "agentauth.local", NOW).is_err());
    }

    #[test]
    fn pem_round_trips_and_the_bundle_point_is_the_ca_key() {
        let ca = CertificateAuthority::generate(&td(), NOW, 86_400).unwrap();
        let text = crate::certificates_pem([ca.cert_der()]);
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(
            crate::certificates_from_pem(&text).unwrap(),
            [ca.cert_der().to_vec()]
        );
        let (_, request) = csr(&PKCS_ECDSA_P256_SHA256);
        let csr_pem = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", request.clone()));
        assert_eq!(crate::csr_from_pem(&csr_pem).unwrap(), request);
        assert!(
            crate::csr_from_pem(&text).is_err(),
            "a certificate is no CSR"
        );
        let (x, y) = ca.public_xy();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        let point = cert.public_key().subject_public_key.data.to_vec();
        assert_eq!(point, [&[4u8][..], &x, &y].concat());
    }

    #[test]
    fn the_public_jwk_of_a_leaf_is_the_csr_key() {
        let now = 1_800_000_000;
        let td = agentauth_core::TrustDomain::new("agentauth.local").unwrap();
        let ca = crate::CertificateAuthority::generate(&td, now, 86_400).unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let csr = rcgen::CertificateParams::default()
            .serialize_request(&key)
            .unwrap();
        let id = agentauth_core::SpiffeId::parse("spiffe://agentauth.local/agent/a").unwrap();
        let leaf = ca.issue(csr.der(), &id, now, 600).unwrap();
        let jwk = crate::public_jwk(&leaf.der).unwrap().to_json();
        let point = key.public_key_raw();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["x"], agentauth_core::b64url_encode(&point[1..33]));
        assert_eq!(jwk["y"], agentauth_core::b64url_encode(&point[33..]));
        assert!(
            crate::public_jwk(ca.cert_der()).is_ok(),
            "the CA's own P-256 key"
        );
        assert!(crate::public_jwk(b"not a certificate").is_err());
    }

    /// An upstream root CA as an operator would hold it: certificate and
    /// key as PEM.
    fn upstream_root(alg: &'static rcgen::SignatureAlgorithm, ca: bool) -> (String, String) {
        let key = KeyPair::generate_for(alg).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = if ca {
            rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained)
        } else {
            rcgen::IsCa::ExplicitNoCa
        };
        params.not_before = crate::at(NOW - 86_400).unwrap();
        params.not_after = crate::at(NOW + 10 * 86_400).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn an_intermediate_under_an_upstream_root_issues_svids_that_validate_against_the_root() {
        let (cert, key) = upstream_root(&PKCS_ECDSA_P256_SHA256, true);
        let upstream = crate::UpstreamCa::from_pem(&cert, &key).unwrap();
        let ca = CertificateAuthority::generate_intermediate(&td(), &upstream, NOW, 100 * 86_400)
            .unwrap();
        assert_eq!(
            ca.not_after(),
            upstream.not_after(),
            "never outlives the upstream"
        );
        assert_eq!(ca.anchor_der(), upstream.root_der());
        assert_eq!(ca.intermediates(), vec![ca.cert_der()]);
        let (_, request) = csr(&PKCS_ECDSA_P256_SHA256);
        let issued = ca.issue(&request, &agent("reader"), NOW, 3600).unwrap();
        let mut chain = vec![issued.der.as_slice()];
        chain.extend(ca.intermediates());
        let checked = check_svid(&chain, &[ca.anchor_der()], "agentauth.local", NOW).unwrap();
        assert_eq!(checked.id, agent("reader"));
        assert!(
            check_svid(&[&issued.der], &[ca.anchor_der()], "agentauth.local", NOW).is_err(),
            "without its intermediate the leaf does not reach the root"
        );
        // Stored and opened again, it is the same intermediate.
        let again = CertificateAuthority::from_der_with_upstream(
            ca.cert_der(),
            ca.key_pkcs8_der(),
            ca.upstream_chain().to_vec(),
        )
        .unwrap();
        assert_eq!(again.anchor_der(), upstream.root_der());
    }

    #[test]
    fn an_upstream_ca_that_is_not_a_p256_signing_ca_with_its_own_key_is_refused() {
        let (cert, _) = upstream_root(&PKCS_ECDSA_P256_SHA256, true);
        let (_, other_key) = upstream_root(&PKCS_ECDSA_P256_SHA256, true);
        assert!(crate::UpstreamCa::from_pem(&cert, &other_key).is_err());
        let (cert, key) = upstream_root(&rcgen::PKCS_ECDSA_P384_SHA384, true);
        assert!(crate::UpstreamCa::from_pem(&cert, &key).is_err());
        let (cert, key) = upstream_root(&PKCS_ECDSA_P256_SHA256, false);
        assert!(crate::UpstreamCa::from_pem(&cert, &key).is_err());
        assert!(crate::UpstreamCa::from_pem("not pem", "not pem").is_err());
    }
}
