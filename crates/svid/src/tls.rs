//! The rustls side of X.509-SVIDs: one verifier for both ends of a TLS 1.3
//! connection that checks the peer's chain as an SVID (through a function
//! the owner supplies, so the bundle and the peers allowed can change
//! between handshakes) and never looks at host names.

use std::sync::Arc;

use agentauth_core::SpiffeId;
use pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Checks a peer's chain (leaf first) and names the SPIFFE ID it proves, or
/// says why it is refused.
pub type ChainCheck = dyn Fn(&[CertificateDer<'_>]) -> Result<SpiffeId, String> + Send + Sync;

/// A TLS 1.3 peer verifier over a [`ChainCheck`].
pub struct PeerVerifier {
    check: Arc<ChainCheck>,
    algorithms: WebPkiSupportedAlgorithms,
    /// As a server: refuse a client without a certificate.
    mandatory: bool,
}

impl std::fmt::Debug for PeerVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerVerifier")
            .field("mandatory", &self.mandatory)
            .finish_non_exhaustive()
    }
}

impl PeerVerifier {
    /// A verifier that accepts a peer when `check` does, verifying handshake
    /// signatures with `algorithms`; as a server it asks every client for a
    /// certificate and, when `mandatory`, refuses one without.
    pub fn new(
        check: Arc<ChainCheck>,
        algorithms: WebPkiSupportedAlgorithms,
        mandatory: bool,
    ) -> Self {
        Self {
            check,
            algorithms,
            mandatory,
        }
    }

    fn peer(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
    ) -> Result<(), rustls::Error> {
        let mut chain = vec![end_entity.clone()];
        chain.extend(intermediates.iter().cloned());
        (self.check)(&chain)
            .map(|_| ())
            .map_err(rustls::Error::General)
    }

    fn signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

/// Configurations built on this verifier allow TLS 1.3 only, so a TLS 1.2
/// signature never comes; refused if it did.
fn tls13_only() -> Result<HandshakeSignatureValid, rustls::Error> {
    Err(rustls::Error::General("TLS 1.3 only".into()))
}

impl ClientCertVerifier for PeerVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.peer(end_entity, intermediates)
            .map(|()| ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_only()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ServerCertVerifier for PeerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // The name that counts is the SPIFFE ID, not the host's.
        self.peer(end_entity, intermediates)
            .map(|()| ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        tls13_only()
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
