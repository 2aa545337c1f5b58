//! The `SpiffeWorkloadAPI` service over an [`Identities`] source: every call
//! needs the `workload.spiffe.io: true` header, the caller is attested from
//! its socket credentials, and each stream sends the complete state at once
//! and again whenever it changes (an SVID renewed at half-life, a bundle
//! added or removed, an entry granted or withdrawn).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use agentauth_core::{PublicJwk, unix_now, validate_jwt_svid};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status};

use crate::proto::spiffe_workload_api_server::SpiffeWorkloadApi;
use crate::proto::{
    JwtBundlesRequest, JwtBundlesResponse, Jwtsvid, JwtsvidRequest, JwtsvidResponse,
    ValidateJwtsvidRequest, ValidateJwtsvidResponse, X509BundlesRequest, X509BundlesResponse,
    X509svid, X509svidRequest, X509svidResponse,
};
use crate::{PeerCred, Selectors, WorkloadError};

/// The metadata every request must carry, and its value.
pub const SECURITY_HEADER: &str = "workload.spiffe.io";

/// Most audiences a JWT-SVID request may name, and longest of each.
const MAX_AUDIENCES: usize = 8;
const MAX_AUDIENCE_LEN: usize = 512;
/// Longest JWT-SVID accepted for validation.
const MAX_TOKEN_LEN: usize = 8 * 1024;

/// An X.509-SVID handed to a workload, with its key.
#[derive(Clone, PartialEq, Eq)]
pub struct X509Identity {
    /// The SPIFFE ID it carries.
    pub spiffe_id: String,
    /// The chain, DER certificates concatenated, leaf first.
    pub chain_der: Vec<u8>,
    /// The private key, PKCS#8 DER.
    pub key_pkcs8_der: Vec<u8>,
    /// When it is due for renewal (half its life), seconds since the epoch.
    pub renew_at: i64,
    /// Tells several identities of one workload apart (the agent's name).
    pub hint: String,
}

impl std::fmt::Debug for X509Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X509Identity")
            .field("spiffe_id", &self.spiffe_id)
            .field("renew_at", &self.renew_at)
            .finish_non_exhaustive()
    }
}

/// A JWT-SVID handed to a workload.
#[derive(Clone)]
pub struct JwtIdentity {
    /// The SPIFFE ID it carries.
    pub spiffe_id: String,
    /// The compact JWT.
    pub token: String,
    /// The agent's name.
    pub hint: String,
}

/// Trust bundles by trust domain (`spiffe://example.org`), the own one and
/// federated ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bundles {
    /// The own trust domain's ID, `spiffe://<td>`.
    pub trust_domain: String,
    /// CA certificates (DER, concatenated) by trust domain.
    pub x509: BTreeMap<String, Vec<u8>>,
    /// JWT-SVID keys (a JWK set, JSON, every key with a `kid`) by trust domain.
    pub jwt: BTreeMap<String, Vec<u8>>,
}

/// Where the service gets identities: the authority itself, or a node that
/// asks the authority for them.
#[async_trait::async_trait]
pub trait Identities: Send + Sync + 'static {
    /// The X.509-SVIDs of every active agent whose entry the caller
    /// satisfies, the default first; none if it satisfies no entry.
    async fn x509_svids(&self, caller: &Selectors) -> Result<Vec<X509Identity>, WorkloadError>;

    /// Whether the caller satisfies any entry: what the bundle and
    /// validation calls ask, without issuing anything.
    async fn has_identity(&self, caller: &Selectors) -> Result<bool, WorkloadError>;

    /// JWT-SVIDs for `audience`, one per agent whose entry the caller
    /// satisfies (only `spiffe_id`'s when it is given).
    async fn jwt_svids(
        &self,
        caller: &Selectors,
        audience: &[String],
        spiffe_id: Option<&str>,
    ) -> Result<Vec<JwtIdentity>, WorkloadError>;

    /// The bundles as they are now.
    fn bundles(&self) -> Arc<Bundles>;

    /// Changes whenever the bundles (or the entries) may have changed.
    fn changes(&self) -> watch::Receiver<u64>;
}

/// The Workload API service over `I`.
pub struct WorkloadApi<I> {
    identities: Arc<I>,
    /// How often streams look again without a change signal (entries
    /// edited in the registry).
    recheck: Duration,
}

impl<I: Identities> WorkloadApi<I> {
    /// The service over `identities`, re-checking each stream's state at
    /// least every `recheck`.
    pub fn new(identities: Arc<I>, recheck: Duration) -> Self {
        Self {
            identities,
            recheck: recheck.max(Duration::from_millis(100)),
        }
    }
}

/// Refuses a request without `workload.spiffe.io: true`.
fn security_header<T>(request: &Request<T>) -> Result<(), Status> {
    match request.metadata().get(SECURITY_HEADER) {
        Some(value) if value.as_bytes() == b"true" => Ok(()),
        _ => Err(Status::invalid_argument(
            "security header missing from request",
        )),
    }
}

/// The caller's selectors, from the socket's peer credentials.
async fn attest<T>(request: &Request<T>) -> Result<Selectors, Status> {
    let cred = request
        .extensions()
        .get::<PeerCred>()
        .and_then(|peer| peer.0)
        .ok_or_else(|| Status::permission_denied("the caller's credentials are unknown"))?;
    Ok(Selectors::of_peer(cred.uid(), cred.gid(), cred.pid()).await)
}

impl From<WorkloadError> for Status {
    fn from(e: WorkloadError) -> Self {
        match e {
            WorkloadError::NoIdentity => Status::permission_denied("no identity issued"),
            WorkloadError::InvalidArgument(why) => Status::invalid_argument(why),
            other => Status::unavailable(other.to_string()),
        }
    }
}

/// The caller of `request`, once its header is checked and it is attested
/// and found to have an identity (bundles and validation go to workloads
/// with an identity only, as in SPIRE).
async fn admitted<I: Identities, T>(identities: &I, request: &Request<T>) -> Result<(), Status> {
    security_header(request)?;
    let caller = attest(request).await?;
    if identities.has_identity(&caller).await? {
        Ok(())
    } else {
        Err(WorkloadError::NoIdentity.into())
    }
}

/// A stream of `make(bundles)`, sent now and again whenever it changes.
fn bundle_stream<I: Identities, T>(
    identities: &Arc<I>,
    recheck: Duration,
    make: fn(&Bundles) -> T,
) -> Stream<T>
where
    T: PartialEq + Clone + Send + 'static,
{
    let first = (make(&identities.bundles()), i64::MAX);
    let (tx, rx) = mpsc::channel(2);
    follow(
        identities.clone(),
        recheck,
        first,
        tx,
        move |i: Arc<I>| async move { Ok((make(&i.bundles()), i64::MAX)) },
    );
    Box::pin(ReceiverStream::new(rx))
}

/// The complete X.509 state for a caller, and when it is next due.
async fn x509_state<I: Identities>(
    identities: &I,
    caller: &Selectors,
) -> Result<(X509svidResponse, i64), Status> {
    let svids = identities.x509_svids(caller).await?;
    if svids.is_empty() {
        return Err(WorkloadError::NoIdentity.into());
    }
    let bundles = identities.bundles();
    let own = bundles
        .x509
        .get(&bundles.trust_domain)
        .cloned()
        .unwrap_or_default();
    let due = svids.iter().map(|s| s.renew_at).min().unwrap_or(i64::MAX);
    let response = X509svidResponse {
        svids: svids
            .into_iter()
            .map(|s| X509svid {
                spiffe_id: s.spiffe_id,
                x509_svid: s.chain_der,
                x509_svid_key: s.key_pkcs8_der,
                bundle: own.clone(),
                hint: s.hint,
            })
            .collect(),
        crl: Vec::new(),
        federated_bundles: bundles
            .x509
            .iter()
            .filter(|(td, _)| **td != bundles.trust_domain)
            .map(|(td, certs)| (td.clone(), certs.clone()))
            .collect(),
    };
    Ok((response, due))
}

/// A stream's channel: small, since every message is the whole state.
type Outbox<T> = mpsc::Sender<Result<T, Status>>;

/// Sends `state()` now and again whenever it changes: on a change signal,
/// at the time the last state said it is due, or every `recheck`. Ends when
/// the caller goes, or with the error a state ends in.
fn follow<T, I, F, Fut>(
    identities: Arc<I>,
    recheck: Duration,
    first: (T, i64),
    tx: Outbox<T>,
    state: F,
) where
    T: PartialEq + Clone + Send + 'static,
    I: Identities,
    F: Fn(Arc<I>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<(T, i64), Status>> + Send,
{
    tokio::spawn(async move {
        let mut changes = identities.changes();
        changes.mark_unchanged();
        let (mut sent, mut due) = first;
        if tx.send(Ok(sent.clone())).await.is_err() {
            return;
        }
        loop {
            let until_due = u64::try_from(due.saturating_sub(unix_now())).unwrap_or(0);
            let wait = recheck.min(Duration::from_secs(until_due.max(1)));
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                changed = changes.changed() => {
                    if changed.is_err() {
                        // The source is gone: the caller reconnects.
                        let _ = tx.send(Err(Status::unavailable("the identity source stopped"))).await;
                        return;
                    }
                }
                () = tx.closed() => return,
            }
            match state(identities.clone()).await {
                Ok((next, next_due)) => {
                    due = next_due;
                    if next != sent {
                        if tx.send(Ok(next.clone())).await.is_err() {
                            return;
                        }
                        sent = next;
                    }
                }
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    return;
                }
            }
        }
    });
}

/// A server-streaming answer.
type Stream<T> = Pin<Box<ReceiverStream<Result<T, Status>>>>;

#[tonic::async_trait]
impl<I: Identities> SpiffeWorkloadApi for WorkloadApi<I> {
    type FetchX509SVIDStream = Stream<X509svidResponse>;
    type FetchX509BundlesStream = Stream<X509BundlesResponse>;
    type FetchJWTBundlesStream = Stream<JwtBundlesResponse>;

    async fn fetch_x509svid(
        &self,
        request: Request<X509svidRequest>,
    ) -> Result<Response<Self::FetchX509SVIDStream>, Status> {
        security_header(&request)?;
        let caller = attest(&request).await?;
        let first = x509_state(&*self.identities, &caller).await?;
        let (tx, rx) = mpsc::channel(2);
        follow(self.identities.clone(), self.recheck, first, tx, move |i| {
            let caller = caller.clone();
            async move { x509_state(&*i, &caller).await }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn fetch_x509_bundles(
        &self,
        request: Request<X509BundlesRequest>,
    ) -> Result<Response<Self::FetchX509BundlesStream>, Status> {
        admitted(&*self.identities, &request).await?;
        Ok(Response::new(bundle_stream(
            &self.identities,
            self.recheck,
            |bundles| X509BundlesResponse {
                crl: Vec::new(),
                bundles: bundles.x509.clone().into_iter().collect(),
            },
        )))
    }

    async fn fetch_jwtsvid(
        &self,
        request: Request<JwtsvidRequest>,
    ) -> Result<Response<JwtsvidResponse>, Status> {
        security_header(&request)?;
        let caller = attest(&request).await?;
        let asked = request.into_inner();
        if asked.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if asked.audience.len() > MAX_AUDIENCES
            || asked
                .audience
                .iter()
                .any(|a| a.is_empty() || a.len() > MAX_AUDIENCE_LEN)
        {
            return Err(Status::invalid_argument(
                "a JWT-SVID names 1 to 8 audiences of 1 to 512 characters",
            ));
        }
        let only = (!asked.spiffe_id.is_empty()).then_some(asked.spiffe_id.as_str());
        let svids = self
            .identities
            .jwt_svids(&caller, &asked.audience, only)
            .await?;
        if svids.is_empty() {
            return Err(WorkloadError::NoIdentity.into());
        }
        Ok(Response::new(JwtsvidResponse {
            svids: svids
                .into_iter()
                .map(|s| Jwtsvid {
                    spiffe_id: s.spiffe_id,
                    svid: s.token,
                    hint: s.hint,
                })
                .collect(),
        }))
    }

    async fn fetch_jwt_bundles(
        &self,
        request: Request<JwtBundlesRequest>,
    ) -> Result<Response<Self::FetchJWTBundlesStream>, Status> {
        admitted(&*self.identities, &request).await?;
        Ok(Response::new(bundle_stream(
            &self.identities,
            self.recheck,
            |bundles| JwtBundlesResponse {
                bundles: bundles.jwt.clone().into_iter().collect(),
            },
        )))
    }

    async fn validate_jwtsvid(
        &self,
        request: Request<ValidateJwtsvidRequest>,
    ) -> Result<Response<ValidateJwtsvidResponse>, Status> {
        admitted(&*self.identities, &request).await?;
        let asked = request.into_inner();
        if asked.audience.is_empty() {
            return Err(Status::invalid_argument("audience must be specified"));
        }
        if asked.svid.is_empty() {
            return Err(Status::invalid_argument("svid must be specified"));
        }
        if asked.svid.len() > MAX_TOKEN_LEN || asked.audience.len() > MAX_AUDIENCE_LEN {
            return Err(Status::invalid_argument("the svid or audience is too long"));
        }
        let bundles = self.identities.bundles();
        let (spiffe_id, claims) = validate(&bundles, &asked.svid, &asked.audience)?;
        Ok(Response::new(ValidateJwtsvidResponse {
            spiffe_id,
            claims: Some(claims),
        }))
    }
}

/// Validates a JWT-SVID against the JWT bundle of the trust domain its
/// `sub` names (the key that verifies it must be that domain's).
fn validate(
    bundles: &Bundles,
    token: &str,
    audience: &str,
) -> Result<(String, prost_types::Struct), Status> {
    let now = unix_now();
    let mut last = String::from("no JWT bundle holds the key that signed it");
    for (trust_domain, jwks) in &bundles.jwt {
        let keys = jwks_keys(jwks);
        if keys.is_empty() {
            continue;
        }
        match validate_jwt_svid(token, &keys, audience, now) {
            Ok(claims) => {
                let td = format!("spiffe://{}", claims.sub.trust_domain());
                if &td != trust_domain {
                    return Err(Status::invalid_argument(
                        "the JWT-SVID is signed by another trust domain than its subject's",
                    ));
                }
                let payload = payload_json(token).ok_or_else(|| {
                    Status::invalid_argument("the JWT-SVID's claims are unreadable")
                })?;
                return Ok((claims.sub.to_string(), to_struct(payload)));
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(Status::invalid_argument(last))
}

/// The (`kid`, key) pairs of a JWK set; keys without a `kid` are skipped.
fn jwks_keys(jwks: &[u8]) -> Vec<(String, PublicJwk)> {
    let Ok(set) = serde_json::from_slice::<serde_json::Value>(jwks) else {
        return Vec::new();
    };
    set["keys"]
        .as_array()
        .map(|keys| {
            keys.iter()
                .filter_map(|k| {
                    let kid = k["kid"].as_str()?.to_owned();
                    Some((kid, PublicJwk::from_json(k).ok()?))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The claims of a token already verified.
fn payload_json(token: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let payload = token.split('.').nth(1)?;
    let bytes = agentauth_core::b64url_decode(payload)?;
    serde_json::from_slice(&bytes).ok()
}

/// JSON claims as a protobuf `Struct`.
fn to_struct(map: serde_json::Map<String, serde_json::Value>) -> prost_types::Struct {
    prost_types::Struct {
        fields: map.into_iter().map(|(k, v)| (k, to_value(v))).collect(),
    }
}

fn to_value(value: serde_json::Value) -> prost_types::Value {
    use prost_types::value::Kind;
    let kind = match value {
        serde_json::Value::Null => Kind::NullValue(0),
        serde_json::Value::Bool(b) => Kind::BoolValue(b),
        serde_json::Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        serde_json::Value::String(s) => Kind::StringValue(s),
        serde_json::Value::Array(list) => Kind::ListValue(prost_types::ListValue {
            values: list.into_iter().map(to_value).collect(),
        }),
        serde_json::Value::Object(map) => Kind::StructValue(to_struct(map)),
    };
    prost_types::Value { kind: Some(kind) }
}
