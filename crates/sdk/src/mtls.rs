//! Mutual TLS between agents with X.509-SVIDs: rustls TLS 1.3 server and
//! client configurations in which each side presents its SVID and checks the
//! other's chain against the trust bundle ([`agentauth_svid::check_svid`]:
//! path validation, then the X509-SVID rules) and its SPIFFE ID against the
//! peers it allows. The SVID and bundle sit in an [`SvidSource`]; updating
//! it rotates the certificate for every later handshake, with no restart.
//! A peer of a federated trust domain is checked against that domain's
//! bundle, never the own one, and only when the allowed peers name it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use agentauth_core::SpiffeId;
use agentauth_svid::PeerVerifier;
use rustls::SignatureScheme;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;

use crate::{SdkError, X509Svid};

/// Which peers a side accepts, once their chain validated.
#[derive(Debug, Clone)]
pub enum AllowedPeers {
    /// Any SPIFFE ID of the own trust domain.
    TrustDomain,
    /// Any SPIFFE ID of these trust domains (names, `example.org`): the own
    /// one only if listed.
    TrustDomains(Vec<String>),
    /// Only these SPIFFE IDs, of the own trust domain or federated ones.
    Only(Vec<SpiffeId>),
}

impl AllowedPeers {
    fn allows(&self, id: &SpiffeId, own: &str) -> bool {
        match self {
            Self::TrustDomain => id.trust_domain() == own,
            Self::TrustDomains(names) => names.iter().any(|n| n == id.trust_domain()),
            Self::Only(ids) => ids.contains(id),
        }
    }
}

/// What a side presents and trusts now: its certificate and key, and the
/// bundle (CA certificates) of its trust domain.
struct Current {
    certified: Arc<CertifiedKey>,
    bundle: Vec<Vec<u8>>,
    trust_domain: String,
    /// Federated trust domains' CA certificates, by trust domain name.
    federated: Arc<BTreeMap<String, Vec<Vec<u8>>>>,
}

/// An agent's current X.509-SVID and trust bundle, shared by the TLS
/// configurations built from it; [`SvidSource::update`] swaps both in.
pub struct SvidSource {
    current: RwLock<Arc<Current>>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for SvidSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SvidSource(..)")
    }
}

impl SvidSource {
    /// A source holding `svid` (its chain, key and bundle).
    pub fn new(svid: &X509Svid) -> Result<Arc<Self>, SdkError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let current = load(svid, &provider)?;
        Ok(Arc::new(Self {
            current: RwLock::new(Arc::new(current)),
            provider,
        }))
    }

    /// Replaces the SVID and bundle: the next handshake on either side uses
    /// the new certificate and trusts the new bundle.
    pub fn update(&self, svid: &X509Svid) -> Result<(), SdkError> {
        let mut next = load(svid, &self.provider)?;
        let mut current = self.current.write().expect("lock");
        next.federated = current.federated.clone();
        *current = Arc::new(next);
        Ok(())
    }

    /// Replaces the federated trust domains' bundles (CA certificates, DER,
    /// by trust domain name, as the Workload API or
    /// [`crate::Client::bundle_map`] gives them); the own trust domain in
    /// the map is ignored. The next handshake trusts exactly these.
    pub fn set_federated_bundles(&self, bundles: BTreeMap<String, Vec<Vec<u8>>>) {
        let mut current = self.current.write().expect("lock");
        let mut next = Current {
            certified: current.certified.clone(),
            bundle: current.bundle.clone(),
            trust_domain: current.trust_domain.clone(),
            federated: Arc::new(bundles),
        };
        Arc::make_mut(&mut next.federated).remove(&next.trust_domain);
        *current = Arc::new(next);
    }

    /// The federated trust domains this source trusts now.
    pub fn federated_trust_domains(&self) -> Vec<String> {
        self.now().federated.keys().cloned().collect()
    }

    fn now(&self) -> Arc<Current> {
        self.current.read().expect("lock").clone()
    }

    /// The certificate presented now (leaf, DER): changes when the SVID
    /// rotates, so a client can tell that a token bound to the old one
    /// (`cnf.x5t#S256`) is due for renewal.
    pub fn leaf(&self) -> Vec<u8> {
        self.now().certified.cert[0].to_vec()
    }

    /// The SPIFFE ID of a peer whose chain `certs` (leaf first) validates
    /// against the current bundle, for a handler that reads the connection's
    /// peer certificates.
    pub fn peer_id(&self, certs: &[CertificateDer<'_>]) -> Option<SpiffeId> {
        let current = self.now();
        check(&current, certs).ok()
    }
}

fn load(svid: &X509Svid, provider: &CryptoProvider) -> Result<Current, SdkError> {
    let bad = |why: String| SdkError::KeyGeneration(format!("the SVID is unusable: {why}"));
    let chain = agentauth_svid::certificates_from_pem(&svid.cert_chain_pem)
        .map_err(|e| bad(e.to_string()))?;
    let bundle =
        agentauth_svid::certificates_from_pem(&svid.bundle_pem).map_err(|e| bad(e.to_string()))?;
    let key_der = pem_block(&svid.private_key_pem, "PRIVATE KEY")
        .ok_or_else(|| bad("the private key is not PKCS#8 PEM".into()))?;
    let key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(key_der.into()))
        .map_err(|e| bad(e.to_string()))?;
    let certified = CertifiedKey::new(chain.into_iter().map(CertificateDer::from).collect(), key);
    certified.keys_match().map_err(|e| bad(e.to_string()))?;
    Ok(Current {
        certified: Arc::new(certified),
        bundle,
        trust_domain: svid.spiffe_id.trust_domain().to_owned(),
        federated: Arc::default(),
    })
}

/// The DER of the one PEM block labelled `label` in `text`.
fn pem_block(text: &str, label: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)? + begin.len();
    let stop = text[start..].find(&end)? + start;
    let body: String = text[start..stop].split_whitespace().collect();
    base64::engine::general_purpose::STANDARD.decode(body).ok()
}

/// The peer's SPIFFE ID if its chain validates against the bundle of the
/// trust domain its leaf names: the own one or a federated one.
fn check(current: &Current, certs: &[CertificateDer<'_>]) -> Result<SpiffeId, rustls::Error> {
    let chain: Vec<&[u8]> = certs.iter().map(|c| c.as_ref()).collect();
    let leaf = chain
        .first()
        .ok_or_else(|| rustls::Error::General("the peer sent no certificate".into()))?;
    let trust_domain = agentauth_svid::leaf_trust_domain(leaf)
        .map_err(|e| rustls::Error::General(e.to_string()))?;
    let bundle = if trust_domain == current.trust_domain {
        &current.bundle
    } else {
        current.federated.get(&trust_domain).ok_or_else(|| {
            rustls::Error::General(format!(
                "no bundle for the peer's trust domain {trust_domain}"
            ))
        })?
    };
    let bundle: Vec<&[u8]> = bundle.iter().map(Vec::as_slice).collect();
    agentauth_svid::check_svid(&chain, &bundle, &trust_domain, agentauth_core::unix_now())
        .map(|c| c.id)
        .map_err(|e| rustls::Error::General(e.to_string()))
}

/// Both sides' checks: the chain against the source's bundle as it is at
/// the handshake, then the allowed peers.
fn peer_check(source: &Arc<SvidSource>, allowed: AllowedPeers) -> PeerVerifier {
    let algorithms = source.provider.signature_verification_algorithms;
    let source = source.clone();
    let check = move |chain: &[CertificateDer<'_>]| {
        let current = source.now();
        let id = check(&current, chain).map_err(|e| e.to_string())?;
        if allowed.allows(&id, &current.trust_domain) {
            Ok(id)
        } else {
            Err(format!("the peer {id} is not allowed"))
        }
    };
    PeerVerifier::new(Arc::new(check), algorithms, true)
}

/// Hands out the source's current certificate on every handshake.
#[derive(Debug)]
struct CurrentCert(Arc<SvidSource>);

impl rustls::server::ResolvesServerCert for CurrentCert {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.now().certified.clone())
    }
}

impl rustls::client::ResolvesClientCert for CurrentCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.0.now().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// A TLS 1.3 server configuration that presents `source`'s SVID and
/// requires a client SVID of an allowed peer.
pub fn server_config(
    source: &Arc<SvidSource>,
    allowed: AllowedPeers,
) -> Result<rustls::ServerConfig, SdkError> {
    let config = rustls::ServerConfig::builder_with_provider(source.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| SdkError::KeyGeneration(e.to_string()))?
        .with_client_cert_verifier(Arc::new(peer_check(source, allowed)))
        .with_cert_resolver(Arc::new(CurrentCert(source.clone())));
    Ok(config)
}

/// A TLS 1.3 client configuration that presents `source`'s SVID and accepts
/// only a server SVID of an allowed peer (whatever host name is dialled).
pub fn client_config(
    source: &Arc<SvidSource>,
    allowed: AllowedPeers,
) -> Result<rustls::ClientConfig, SdkError> {
    let config = rustls::ClientConfig::builder_with_provider(source.provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| SdkError::KeyGeneration(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(peer_check(source, allowed)))
        .with_client_cert_resolver(Arc::new(CurrentCert(source.clone())));
    Ok(config)
}

/// The SPIFFE ID of the peer of a mutual-TLS connection, put on every
/// request [`serve`] hands to the router: `Extension<PeerId>` in a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerId(pub SpiffeId);

/// The peer's certificate (leaf, DER) of a mutual-TLS connection, beside
/// [`PeerId`] on every request [`serve`] hands on: the proof the layer
/// demands for a certificate-bound token (RFC 8705 `cnf.x5t#S256`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate(pub Arc<Vec<u8>>);

/// Serves `router` over mutual TLS on `listener` until accepting fails:
/// each connection's handshake uses `config` (from [`server_config`], which
/// already refused peers it does not allow), and every request on it
/// carries the peer's SPIFFE ID as a [`PeerId`] extension, so handlers and
/// layers know who called without a header anyone could set.
#[cfg(feature = "verifier")]
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: Arc<rustls::ServerConfig>,
    source: Arc<SvidSource>,
    router: axum::Router,
) -> std::io::Result<()> {
    use hyper_util::rt::TokioIo;
    use hyper_util::service::TowerToHyperService;
    use tower::ServiceExt as _;

    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let (tcp, _) = listener.accept().await?;
        let (acceptor, router, source) = (acceptor.clone(), router.clone(), source.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let Some((peer, leaf)) = tls.get_ref().1.peer_certificates().and_then(|certs| {
                Some((source.peer_id(certs)?, Arc::new(certs.first()?.to_vec())))
            }) else {
                return;
            };
            let service =
                router.map_request(move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut request = request.map(axum::body::Body::new);
                    request.extensions_mut().insert(PeerId(peer.clone()));
                    request
                        .extensions_mut()
                        .insert(PeerCertificate(leaf.clone()));
                    request
                });
            let service = TowerToHyperService::new(service);
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}
