//! The core crate's errors: one enum for each thing that can be refused (JWK,
//! JWS, access token, client assertion, HTTP message signature).

use thiserror::Error as ThisError;

/// Every way core parsing or verification fails.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A trust domain, agent name or SPIFFE ID is malformed.
    #[error("invalid identity: {0}")]
    Identity(#[from] IdentityError),
    /// A permission or scope string is malformed.
    #[error("invalid scope: {0}")]
    Scope(#[from] ScopeError),
    /// A JWK is unacceptable.
    #[error(transparent)]
    Jwk(#[from] JwkError),
    /// A compact JWS is unacceptable.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// An access token failed one of the profile checks.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// A client assertion was refused.
    #[error(transparent)]
    Assertion(#[from] AssertionError),
    /// A private key could not be loaded.
    #[error("key error: {0}")]
    Key(#[from] KeyError),
}

/// Why a trust domain, agent name, SPIFFE ID or task ID was refused.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentityError {
    /// Not 1 to 255 characters of `[a-z0-9-._]`.
    #[error("\"{0}\" is not a valid trust domain")]
    TrustDomain(String),
    /// Not `[a-z0-9][a-z0-9-]{{0,62}}`.
    #[error("\"{0}\" is not a valid agent name (expected [a-z0-9][a-z0-9-]{{0,62}})")]
    AgentName(String),
    /// Not a SPIFFE ID per the SPIFFE-ID spec.
    #[error("\"{uri}\" is not a SPIFFE ID: {fault}")]
    SpiffeId {
        /// The refused text, truncated.
        uri: String,
        /// The rule it breaks.
        fault: SpiffeIdFault,
    },
    /// Not 1 to 128 characters of `[A-Za-z0-9-._:]`.
    #[error("\"{0}\" is not a valid task ID (expected 1 to 128 characters from [A-Za-z0-9-._:])")]
    TaskId(String),
}

/// The SPIFFE-ID rule a text breaks.
#[derive(Debug, ThisError, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SpiffeIdFault {
    /// Longer than 2048 bytes.
    #[error("too long")]
    TooLong,
    /// The scheme is not `spiffe://`.
    #[error("scheme must be spiffe")]
    Scheme,
    /// The trust domain is not valid.
    #[error("invalid trust domain")]
    TrustDomain,
    /// A path segment is empty, `.`, `..` or has other characters than `[A-Za-z0-9-._]`.
    #[error("invalid path segment")]
    PathSegment,
}

/// Why a permission or scope was refused.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ScopeError {
    /// A permission is empty, too long or has other characters than `[A-Za-z0-9:_.*/-]`.
    #[error("\"{0}\" is not a valid permission")]
    Permission(String),
    /// More permissions than one scope may hold.
    #[error("more than {0} permissions")]
    TooMany(usize),
}

/// Why a private JWK could not be loaded.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// A member is missing or not base64url.
    #[error("not a usable private key: {0}")]
    MissingMember(&'static str),
    /// The private part does not belong to the public part.
    #[error("not a usable private key: the private and public parts do not match")]
    Mismatch,
    /// Neither Ed25519 (OKP) nor P-256 (EC).
    #[error("not a usable private key: only Ed25519 and P-256 keys are supported")]
    UnsupportedType,
}

/// Why a JWK was refused.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwkError {
    /// The JWK is not a JSON object.
    #[error("the JWK is not a JSON object")]
    NotAnObject,
    /// The key type or curve is not Ed25519 (OKP) or P-256 (EC).
    #[error("only Ed25519 (kty OKP) and P-256 (kty EC) keys are accepted")]
    UnsupportedKeyType,
    /// A member such as `d` reveals private key material.
    #[error("the JWK carries private key material (\"{0}\"); send only the public key")]
    PrivatePart(String),
    /// A coordinate is missing, not base64url or of the wrong length.
    #[error("the JWK member \"{0}\" is missing or malformed")]
    BadMember(&'static str),
    /// The coordinates do not form a valid public key.
    #[error("the JWK is not a valid public key")]
    InvalidKey,
    /// The Ed25519 key is one of the eight points of small order (the
    /// identity among them), for which signatures can be forged without a
    /// private key.
    #[error(
        "the Ed25519 key is a small-order point (such as the identity); signatures by it can be forged"
    )]
    SmallOrderPoint,
    /// The Ed25519 key's y coordinate is not reduced modulo p (RFC 8032 §5.1.3):
    /// one key would have several encodings and thumbprints.
    #[error("the Ed25519 key is not canonically encoded (y is not below 2^255 - 19)")]
    NonCanonicalEncoding,
}

/// Why a compact JWS was refused, before or at signature verification.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwsError {
    /// Longer than the bound every verifier enforces.
    #[error("the token is too long")]
    TooLong,
    /// Not three base64url segments.
    #[error("the token is not a compact JWS")]
    Malformed,
    /// The protected header is not valid JSON with a string `alg`.
    #[error("the token header is malformed")]
    BadHeader,
    /// `alg` is not on the allow-list (EdDSA, Ed25519, ES256); `none` and HS* land here.
    #[error("algorithm \"{0}\" is not allowed")]
    AlgorithmNotAllowed(String),
    /// `typ` is not the type this token kind must carry.
    #[error("token type \"{0}\" is not allowed here")]
    TypeNotAllowed(String),
    /// The header names a key the verifier does not know.
    #[error("unknown signing key \"{0}\"")]
    UnknownKey(String),
    /// The header's `alg` (named) is not of the key's family: an Ed25519 key
    /// verifies only `EdDSA` or `Ed25519`, a P-256 key only `ES256`.
    #[error(
        "algorithm \"{0}\" does not fit the key (Ed25519 keys sign EdDSA or Ed25519, P-256 keys ES256)"
    )]
    AlgorithmKeyMismatch(&'static str),
    /// The signature does not verify.
    #[error("signature verification failed")]
    BadSignature,
    /// The payload is not the expected JSON claims set.
    #[error("the token claims are malformed: {0}")]
    BadClaims(String),
}

/// Why an access token that is a well-formed, correctly signed JWS was refused.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TokenError {
    /// Structure, header or signature failed.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// `iss` is not the authority this verifier trusts.
    #[error("issuer \"{0}\" is not trusted")]
    IssuerMismatch(String),
    /// `aud` is not this agent.
    #[error("the token is for \"{0}\", not for this agent")]
    AudienceMismatch(String),
    /// `exp` is in the past (beyond leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` or `iat` is in the future (beyond leeway).
    #[error("the token is not valid yet")]
    NotYetValid,
}

/// Why a private_key_jwt client assertion (RFC 7523) was refused.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AssertionError {
    /// Structure, header or signature failed.
    #[error(transparent)]
    Jws(#[from] JwsError),
    /// `iss` and `sub` are not both the client ID.
    #[error("the client assertion's iss and sub must both be the client_id")]
    SubjectMismatch,
    /// `aud` does not name this authority.
    #[error("the client assertion's aud does not name this authority")]
    AudienceNotAccepted,
    /// `exp` is missing or past.
    #[error("the client assertion has expired")]
    Expired,
    /// `exp` is further ahead than the allowed maximum (the authority's
    /// `max_client_assertion_lifetime_secs`).
    #[error(
        "the client assertion's exp is {ahead_secs} s ahead, more than the {max_secs} s allowed"
    )]
    LifetimeTooLong {
        /// How far ahead of now `exp` lies.
        ahead_secs: i64,
        /// The configured maximum.
        max_secs: i64,
    },
    /// `nbf` or `iat` is in the future.
    #[error("the client assertion is not valid yet")]
    NotYetValid,
    /// `jti` is missing, empty or too long.
    #[error("the client assertion needs a jti of 1 to 256 characters")]
    BadJti,
}

/// Why an HTTP message signature (RFC 9421) was refused.
#[derive(Debug, ThisError, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum HttpSigError {
    /// No signature in `Signature-Input`/`Signature` carries `tag="agentauth"`.
    #[error("the request carries no HTTP message signature tagged \"agentauth\"")]
    Missing,
    /// More than one signature carries `tag="agentauth"`; which one counts is ambiguous.
    #[error("more than one HTTP message signature is tagged \"agentauth\"")]
    SeveralTagged,
    /// A header is not the structured field it must be.
    #[error("the request signature is malformed: {0}")]
    Malformed(&'static str),
    /// The signature does not cover exactly @method, @target-uri, authorization and content-digest.
    #[error(
        "the signature must cover exactly @method, @target-uri, authorization and content-digest (in any order)"
    )]
    WrongComponents,
    /// The signature labelled `agentauth` does not carry `tag="agentauth"`.
    #[error("the signature's tag is not \"agentauth\"")]
    WrongTag,
    /// A required parameter is missing.
    #[error("the signature parameter \"{0}\" is missing")]
    MissingParameter(&'static str),
    /// `alg` is unknown or does not match the key.
    #[error("the signature algorithm does not match the token's key")]
    AlgorithmMismatch,
    /// `keyid` is not the token's `cnf.jkt`.
    #[error("the request is not signed by the key bound to the token")]
    KeyMismatch,
    /// `created` lies in the future beyond the allowed skew.
    #[error("the signature was created in the future")]
    FromTheFuture,
    /// `expires` has passed.
    #[error("the signature has expired")]
    Expired,
    /// `expires − created` is longer than the verifier's replay window: a
    /// long-lived signature would be replayable for its whole lifetime.
    #[error(
        "the signature's lifetime (expires - created) is {secs} s, longer than the replay window of {max} s"
    )]
    SignatureWindowTooLong {
        /// `expires − created` as received.
        secs: i64,
        /// The verifier's window.
        max: i64,
    },
    /// `created` lies further in the past than the replay window plus skew.
    #[error(
        "the signature was created {age} s ago, longer than the replay window allows ({max} s)"
    )]
    CreatedTooOld {
        /// Seconds since `created`.
        age: i64,
        /// The window plus the tolerated skew.
        max: i64,
    },
    /// The signature does not verify over the signature base rebuilt from this
    /// request and the parameters as received: a covered component or a
    /// parameter differs from what was signed, or another key made the bytes.
    #[error(
        "the signature does not verify over this request's signature base (@method, @target-uri, authorization, content-digest and the signature parameters, as received)"
    )]
    BadSignature,
}
