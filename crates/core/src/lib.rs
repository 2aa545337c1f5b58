//! agentauth's shared vocabulary: identities, scopes, keys, the JWS/JWT token
//! profile, client assertions and the audit hash chain.
//!
//! Everything here is pure computation (no I/O) so that the authority and the
//! SDK verify tokens with exactly the same code.

mod assertion;
mod audit;
mod b64;
mod dpop;
mod error;
mod httpsig;
mod identity;
mod jwk;
mod jws;
mod jwt_svid;
mod key;
mod random;
mod request_proof;
mod scope;
mod task;
mod time;
mod token;
mod validation;

// The public interface is:
pub use assertion::Audience;
pub use assertion::{
    CLIENT_ASSERTION_TYPE, ClientAssertion, ClientAssertionClaims, ClientAssertionRules,
    DEFAULT_MAX_ASSERTION_LIFETIME_SECS,
};
pub use audit::{
    AuditEvent, AuditKey, AuditKind, AuditRecord, ChainBreak, Decision, GENESIS_HASH, chain_hash,
    verify_chain,
};
pub use dpop::{
    DEFAULT_DPOP_MAX_AGE_SECS, DPOP_TYP, DpopError, DpopExpectations, VerifiedProof,
    access_token_hash, create_dpop_proof, normalize_htu, verify_dpop_proof,
};
pub use error::{
    AssertionError, Error, HttpSigError, IdentityError, JwkError, JwsError, KeyError, ScopeError,
    SpiffeIdFault, TokenError,
};
pub use httpsig::{
    COVERED_COMPONENTS, ReceivedSignature, SIGNATURE_LABEL, SIGNATURE_TAG, SignatureHeaders,
    SignatureParams, SignedComponents, content_digest, sign_request, signature_nonce,
};
pub use identity::{AgentName, SpiffeId, TrustDomain};
pub use jwk::{Jkt, PublicJwk};
pub use jws::{Compact, Header, JwsAlg, KeyFamily, MAX_JWS_LEN, sign_compact};
pub use jwt_svid::{JwtSvidClaims, JwtSvidError, mint_jwt_svid, sign_jwt_svid, validate_jwt_svid};
pub use key::SigningKey;
pub use random::{random_b64, random_bytes};
pub use request_proof::{
    DEFAULT_PROOF_WINDOW_SECS, MAX_NONCES, MAX_NONCES_PER_KEY, MAX_PROOF_WINDOW_SECS, NonceCache,
    PROOF_SKEW_SECS, ProofError, ProofWindow, Seen, target_uri, verify_request_proof,
};
pub use scope::{Permission, Scope};
pub use task::{MAX_TASK_ID_LEN, TaskId};
pub use time::unix_now;
pub use token::{
    ACCESS_TOKEN_TYP, AccessClaims, Actor, Cnf, DEFAULT_LEEWAY_SECS, TokenExpectations,
    certificate_thumbprint, parse_access_token, verify_access_token,
};

pub use validation::{
    AuthorityView, DEFAULT_VERIFIED_TOKENS, Rejection, RequestProof, RevocationSubjects, Revoked,
    TokenRules, VerifiedTokens, check_presented_token,
};

/// Base64url without padding, as JOSE uses everywhere.
pub use b64::{b64url_decode, b64url_encode};
