//! `serve --tls`: the authority serves HTTPS with its own X.509-SVID
//! (`spiffe://<td>/authority`, plus the issuer's host as an IP or DNS SAN so
//! clients that check host names accept it), signed by its CA and renewed
//! at half-life or when another CA takes over, without a restart. Clients
//! may present an X.509-SVID of the trust domain; one that does is known by
//! it on every request ([`ClientCertificate`]).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use agentauth_core::{SpiffeId, unix_now};
use agentauth_svid::PeerVerifier;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::sign::CertifiedKey;

use crate::AuthorityError;
use crate::server::State;

/// The client certificate of a TLS connection, checked as an X.509-SVID of
/// this trust domain: on every request that came over it.
#[derive(Debug, Clone)]
pub(crate) struct ClientCertificate {
    /// The SPIFFE ID it carries.
    pub(crate) id: SpiffeId,
    /// Its leaf certificate, DER.
    pub(crate) leaf: Arc<Vec<u8>>,
}

/// The authority's own certificate as it is now.
struct Current {
    certified: Arc<CertifiedKey>,
    renew_at: i64,
    signer: String,
}

/// Hands out the current server certificate on every handshake.
pub(crate) struct OwnCertificate {
    current: RwLock<Current>,
    hosts: Vec<String>,
}

impl std::fmt::Debug for OwnCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OwnCertificate(..)")
    }
}

impl rustls::server::ResolvesServerCert for OwnCertificate {
    fn resolve(&self, _hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .expect("certificate lock")
                .certified
                .clone(),
        )
    }
}

/// A new server SVID for the authority from the CA signing now.
fn issue(state: &State, hosts: &[String]) -> Result<Current, AuthorityError> {
    let internal =
        |e: String| AuthorityError::Internal(format!("the authority's certificate: {e}"));
    let key = agentauth_svid::NewKey::generate().map_err(|e| internal(e.to_string()))?;
    let now = unix_now();
    let ring = state.cas();
    let signer = ring.signer(now);
    let issued = signer
        .issue_for_hosts(
            &key.csr_der,
            &state.authority_id,
            hosts,
            now,
            state.config.svid_lifetime_secs,
        )
        .map_err(|e| internal(e.to_string()))?;
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    let signing_key = provider
        .key_provider
        .load_private_key(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            key.key_pkcs8_der,
        )))
        .map_err(|e| internal(e.to_string()))?;
    let chain = std::iter::once(issued.der)
        .chain(signer.intermediates().into_iter().map(<[u8]>::to_vec))
        .map(CertificateDer::from)
        .collect();
    Ok(Current {
        certified: Arc::new(CertifiedKey::new(chain, signing_key)),
        renew_at: now + (issued.expires_at - now) / 2,
        signer: signer.serial(),
    })
}

/// The host of `issuer` (an https URL): the name clients dial, without
/// the brackets of an IPv6 literal.
fn issuer_host(issuer: &str) -> Vec<String> {
    let Ok(uri) = issuer.parse::<http::Uri>() else {
        return Vec::new();
    };
    uri.host()
        .map(|h| h.trim_start_matches('[').trim_end_matches(']').to_owned())
        .into_iter()
        .collect()
}

/// The server configuration: TLS 1.3, the authority's SVID, and a client
/// certificate asked for but not required, checked against the bundle.
pub(crate) fn server_config(
    state: &Arc<State>,
) -> Result<(Arc<rustls::ServerConfig>, Arc<OwnCertificate>), AuthorityError> {
    let hosts = issuer_host(&state.issuer);
    let own = Arc::new(OwnCertificate {
        current: RwLock::new(issue(state, &hosts)?),
        hosts,
    });
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let weak = Arc::downgrade(state);
    let check = move |chain: &[CertificateDer<'_>]| -> Result<SpiffeId, String> {
        let state = weak.upgrade().ok_or("the authority is stopping")?;
        client_id(&state, chain)
    };
    let verifier = PeerVerifier::new(
        Arc::new(check),
        provider.signature_verification_algorithms,
        false,
    );
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| AuthorityError::Internal(e.to_string()))?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(own.clone());
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((Arc::new(config), own))
}

/// The SPIFFE ID a client chain proves against the CAs of the bundle now.
fn client_id(state: &State, chain: &[CertificateDer<'_>]) -> Result<SpiffeId, String> {
    let now = unix_now();
    let ring = state.cas();
    let bundle = ring.anchors(now);
    let chain: Vec<&[u8]> = chain.iter().map(|c| c.as_ref()).collect();
    agentauth_svid::check_svid(&chain, &bundle, state.trust_domain.as_str(), now)
        .map(|c| c.id)
        .map_err(|e| e.to_string())
}

/// Renews the authority's certificate at half-life, or as soon as another
/// CA signs; checked every 30 s until the state goes.
pub(crate) fn spawn_renewer(
    state: std::sync::Weak<State>,
    own: Arc<OwnCertificate>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(30)).await;
            let Some(state) = state.upgrade() else { return };
            let now = unix_now();
            let due = {
                let current = own.current.read().expect("certificate lock");
                current.renew_at <= now || current.signer != state.cas().signer(now).serial()
            };
            if due {
                match issue(&state, &own.hosts) {
                    Ok(next) => *own.current.write().expect("certificate lock") = next,
                    Err(e) => {
                        tracing::warn!(error = %e.detail(), "renewing the authority's certificate failed")
                    }
                }
            }
        }
    })
}
