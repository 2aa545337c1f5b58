//! Policy as code at the authority: versioned Cedar policy sets (`/v1/policies`,
//! admin), the active set for verifiers (`GET /v1/policy`, public like the
//! JWKS, with an ETag), dry runs, and the decision every token issue and
//! exchange goes through.
//!
//! No active set means registry permissions alone decide (policy is off).
//! Once a set is active, each requested permission must be permitted for the
//! context of the request: the scope is narrowed to what is permitted, and a
//! permit marked `@approval("required")` sends the request to a person.

use agentauth_core::AuditKind;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use agentauth_api::{
    DecisionClock, DecisionContext, DryRunAnswer, DryRunRequest, NewPolicySet, PolicyDecision,
    PolicyDistribution, PolicyOutcome, PolicySetLoaded, PolicySummary, PolicyVersion,
    PolicyVersionDetail, PolicyVersionList,
};
use agentauth_core::{Decision as AuditDecision, Scope, SpiffeId, unix_now};
use agentauth_policy::{
    AgentFacts, Clock, Decision, Outcome, PolicyFile, PolicySet, Query, RequestContext, Target,
};
use agentauth_store::{AgentRow, Change, ChangeSignals, PolicySetRow};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::Value;

use crate::audit::{event, request_id};
use crate::body::JsonBody;
use crate::error::Missing;
use crate::oauth::AUTHORITY_IMPLICIT_SCOPES;
use crate::operator::Principal;
use crate::server::{AppState, State as AuthorityState};
use crate::{AuthorityError, registry};

/// Why a policy request was refused, or policy cannot decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyRefusal {
    /// A path names no policy set version (a positive number).
    #[error("\"{0}\" is not a policy set version (a positive number)")]
    Version(String),
    /// A stored version that no longer compiles cannot be activated.
    #[error("policy set version {version} no longer loads: {why}")]
    NoLongerLoads {
        /// The version asked for.
        version: i64,
        /// What the compiler said.
        why: String,
    },
    /// The active version does not load, so nothing is issued (fail closed).
    #[error(
        "policy set version {version} does not load; no token can be issued until a valid version is activated"
    )]
    Unavailable {
        /// The active version.
        version: i64,
    },
    /// Policy denies every permission of a token request.
    #[error(
        "policy (version {version}) permits none of the requested permissions: {}",
        .denied.join("; ")
    )]
    PermitsNone {
        /// The deciding version.
        version: i64,
        /// Each permission with the reason it was denied.
        denied: Vec<String>,
    },
    /// An agent's ancestry is longer than any spawn depth allows (old data,
    /// or a loop of parent links): policy cannot see all of it, so it does
    /// not decide.
    #[error(
        "the ancestry of \"{agent}\" is longer than {limit} generations; policy cannot decide on a truncated ancestry"
    )]
    AncestryTooLong {
        /// The agent.
        agent: String,
        /// [`crate::SPAWN_DEPTH_CEILING`].
        limit: usize,
    },
    /// A dry run's context names a field decisions do not have.
    #[error("\"{0}\" is not a context field")]
    ContextField(String),
    /// A dry run's context is not a JSON object.
    #[error("context must be a JSON object")]
    ContextNotObject,
    /// A dry run's context field has the wrong type.
    #[error("context: {0}")]
    Context(#[source] serde_json::Error),
    /// The decision could not be asked: a name in it is not a Cedar value.
    #[error(transparent)]
    Query(agentauth_policy::PolicyError),
}

/// Largest body of a policy load or dry run.
pub(crate) const MAX_POLICY_BODY: usize = 2 * 1024 * 1024;

/// The policy set this replica decides with.
#[derive(Debug)]
pub(crate) enum Active {
    /// No set was ever activated: registry permissions alone decide.
    Off,
    /// This version decides.
    On(Arc<Loaded>),
    /// The stored active version does not load: every decision fails closed.
    Broken {
        /// The version that failed.
        version: i64,
        /// Why.
        why: String,
    },
}

/// A compiled, active version.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub(crate) version: i64,
    pub(crate) set: PolicySet,
}

/// This replica's view of the active policy set.
#[derive(Debug)]
pub(crate) struct PolicyState {
    active: RwLock<Arc<Active>>,
}

impl PolicyState {
    pub(crate) fn new() -> Self {
        Self {
            active: RwLock::new(Arc::new(Active::Off)),
        }
    }

    /// The set decisions use now.
    pub(crate) fn current(&self) -> Arc<Active> {
        self.active
            .read()
            .map_or_else(|p| p.into_inner().clone(), |a| a.clone())
    }

    fn set(&self, active: Active) {
        let mut guard = self.active.write().unwrap_or_else(|p| p.into_inner());
        *guard = Arc::new(active);
    }

    /// Sets `active` unless something replaced `seen` meanwhile.
    fn replace_if(&self, seen: &Arc<Active>, active: Active) {
        let mut guard = self.active.write().unwrap_or_else(|p| p.into_inner());
        if Arc::ptr_eq(&guard, seen) {
            *guard = Arc::new(active);
        }
    }
}

/// Compiles a stored version on a blocking thread: strict validation of a
/// large set takes long enough to stall the async workers.
async fn compile_blocking(row: PolicySetRow) -> Active {
    let version = row.version;
    tokio::task::spawn_blocking(move || compile(&row))
        .await
        .unwrap_or_else(|e| Active::Broken {
            version,
            why: format!("compiling failed: {e}"),
        })
}

/// Compiles a stored version.
fn compile(row: &PolicySetRow) -> Active {
    let files: Vec<PolicyFile> = match serde_json::from_str(&row.files) {
        Ok(files) => files,
        Err(e) => {
            return Active::Broken {
                version: row.version,
                why: format!("stored files are unreadable: {e}"),
            };
        }
    };
    match PolicySet::load(&files) {
        Ok(set) => Active::On(Arc::new(Loaded {
            version: row.version,
            set,
        })),
        Err(e) => Active::Broken {
            version: row.version,
            why: e.to_string(),
        },
    }
}

fn active_version(active: &Active) -> Option<i64> {
    match active {
        Active::Off => None,
        Active::On(l) => Some(l.version),
        Active::Broken { version, .. } => Some(*version),
    }
}

/// Loads the active version from the store into `s.policy`, unless it is
/// the one already loaded.
pub(crate) async fn refresh(s: &AuthorityState) -> Result<(), AuthorityError> {
    // Read what is loaded before the store: an activation on this replica in
    // between replaces it, and then what was read here is older and dropped.
    let current = s.policy.current();
    let row = s.store.active_policy_set().await?;
    let loaded_version = active_version(&current);
    match row {
        None if loaded_version.is_some() => s.policy.replace_if(&current, Active::Off),
        Some(row) if Some(row.version) != loaded_version => {
            let active = compile_blocking(row).await;
            if let Active::Broken { version, why } = &active {
                tracing::error!(version, %why, "the active policy set does not load: refusing tokens");
            } else {
                tracing::info!(version = ?active_version(&active), "policy set loaded");
            }
            s.policy.replace_if(&current, active);
        }
        _ => {}
    }
    Ok(())
}

/// Keeps `refresh`ing, so a version activated on another replica takes
/// effect here: at once when its `NOTIFY` arrives, and every `every` in any
/// case.
pub(crate) fn spawn_refresher(
    state: Weak<AuthorityState>,
    mut signals: ChangeSignals,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            signals.wait(Change::Policy, every).await;
            let Some(s) = state.upgrade() else { return };
            if let Err(e) = refresh(&s).await {
                tracing::warn!(error = %e.detail(), "checking the active policy set failed");
            }
        }
    })
}

/// The peer address of a request (`0.0.0.0` when the server was not started
/// with connection info, as in-process tests).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PeerIp(pub(crate) IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for PeerIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip()),
        ))
    }
}

/// What the registry says about an agent, as the policy sees it, with its
/// whole ancestry ([`registry::ancestry`]).
pub(crate) async fn facts(
    s: &AuthorityState,
    agent: &AgentRow,
) -> Result<AgentFacts, AuthorityError> {
    let ancestors = registry::ancestry(s, agent)
        .await?
        .iter()
        .map(|id| entity_name(s, id))
        .collect();
    Ok(AgentFacts {
        name: agent.name.to_string(),
        trust_domain: s.trust_domain.to_string(),
        owner: agent.owner.clone(),
        tags: agent.tags.clone(),
        ephemeral: agent.expires_at.is_some() && agent.parent.is_some(),
        parent: agent.parent.as_ref().map(|p| entity_name(s, p)),
        ancestors,
    })
}

/// The authority itself as a target: its whole SPIFFE ID, which no agent
/// name can equal.
fn authority_facts(s: &AuthorityState) -> AgentFacts {
    AgentFacts {
        name: s.authority_id.to_string(),
        trust_domain: s.trust_domain.to_string(),
        owner: String::new(),
        tags: vec![],
        ephemeral: false,
        parent: None,
        ancestors: vec![],
    }
}

/// The entity name of a SPIFFE ID within this authority's trust domain.
pub(crate) fn entity_name(s: &AuthorityState, id: &SpiffeId) -> String {
    agentauth_policy::entity_name(id.as_str(), s.trust_domain.as_str())
}

/// One token request as the policy sees it.
pub(crate) struct Ask<'a> {
    /// The agent that will present the token (for an exchange, the actor).
    pub(crate) principal: &'a AgentRow,
    /// The target agent; `None` for the authority itself.
    pub(crate) target: Option<&'a AgentRow>,
    /// The scope the registry and delegation rules allow.
    pub(crate) scope: &'a Scope,
    pub(crate) purpose: &'a str,
    pub(crate) txn: &'a str,
    /// SPIFFE IDs of the subject and every actor.
    pub(crate) chain: &'a [SpiffeId],
    pub(crate) delegation_depth: i64,
    pub(crate) client_ip: IpAddr,
    /// The SPIFFE ID of the TLS client certificate the request came with
    /// (`serve --tls`), empty without one.
    pub(crate) tls_peer: String,
}

/// What policy decided for a token request.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Policy is off: the scope stands as asked.
    Off,
    /// Issue with this (possibly narrowed) scope; `approval` lists the
    /// policies that require a person's approval first, if any.
    Issue {
        scope: Scope,
        version: i64,
        /// What was dropped and why, for the audit.
        dropped: Vec<String>,
        approval: Option<NeedsApproval>,
    },
}

/// Why a request waits for a person.
#[derive(Debug, Clone)]
pub(crate) struct NeedsApproval {
    pub(crate) policies: Vec<String>,
    pub(crate) approvers: Option<String>,
}

/// Decides every permission of `ask.scope`; refuses the request with
/// `invalid_scope` naming the policies when none is permitted.
pub(crate) async fn judge(s: &AuthorityState, ask: &Ask<'_>) -> Result<Verdict, AuthorityError> {
    let current = s.policy.current();
    let loaded = match &*current {
        Active::Off => return Ok(Verdict::Off),
        Active::Broken { version, .. } => {
            return Err(PolicyRefusal::Unavailable { version: *version }.into());
        }
        Active::On(loaded) => loaded.clone(),
    };
    let principal = facts(s, ask.principal).await?;
    let target = match ask.target {
        Some(t) => facts(s, t).await?,
        None => authority_facts(s),
    };
    let context = RequestContext {
        purpose: ask.purpose.to_owned(),
        sensitivity: "unspecified".into(),
        delegation_depth: ask.delegation_depth,
        chain: ask.chain.iter().map(|id| entity_name(s, id)).collect(),
        txn: ask.txn.to_owned(),
        environment: s.config.environment.clone(),
        time: Clock::at_unix(unix_now()),
        client_ip: ask.client_ip,
        tls_peer: ask.tls_peer.clone(),
    };
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut approval: Option<NeedsApproval> = None;
    for permission in ask.scope.iter() {
        let p = permission.as_str();
        // Housekeeping every agent needs (shipping audit, completing tasks)
        // is not subject to policy: refusing it would only hide what happened.
        if ask.target.is_none() && AUTHORITY_IMPLICIT_SCOPES.contains(&p) {
            kept.push(p);
            continue;
        }
        let decision = loaded
            .set
            .decide(&Query {
                principal: &principal,
                action: p,
                target: Target::Agent(&target),
                context: &context,
            })
            .map_err(|e| AuthorityError::Internal(e.to_string()))?;
        match decision.outcome {
            Outcome::Permit => kept.push(p),
            Outcome::NeedsApproval { approvers } => {
                kept.push(p);
                let entry = approval.get_or_insert_with(|| NeedsApproval {
                    policies: vec![],
                    approvers: None,
                });
                // Only the policies that ask for approval, not every permit.
                entry.policies.extend(
                    decision
                        .policies
                        .into_iter()
                        .filter(|id| loaded.set.summary(id).is_some_and(|p| p.approval)),
                );
                if entry.approvers.is_none() {
                    entry.approvers = approvers;
                }
            }
            Outcome::Deny => dropped.push(format!("\"{p}\": {}", decision.denial_reason())),
        }
    }
    if kept.is_empty() {
        return Err(PolicyRefusal::PermitsNone {
            version: loaded.version,
            denied: dropped,
        }
        .into());
    }
    if let Some(a) = &mut approval {
        a.policies.sort();
        a.policies.dedup();
    }
    let scope = Scope::from_strs(kept).map_err(|e| AuthorityError::Internal(e.to_string()))?;
    Ok(Verdict::Issue {
        scope,
        version: loaded.version,
        dropped,
        approval,
    })
}

// ---- The admin API ----

fn listing(row: &PolicySetRow) -> PolicyVersion {
    PolicyVersion {
        version: row.version,
        digest: row.digest.clone(),
        policy_count: row.policy_count,
        created_at: row.created_at,
        active: row.active,
    }
}

fn digest(files: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, files.as_bytes()).as_ref())
}

/// `POST /v1/policies`.
pub(crate) async fn load(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    JsonBody(new): JsonBody<NewPolicySet, MAX_POLICY_BODY>,
) -> Result<Response, AuthorityError> {
    let loaded = load_set(&s, new, &by, &request_id(&headers)).await?;
    Ok((StatusCode::CREATED, Json(loaded)).into_response())
}

/// Validates a set against the schema and stores it as a new version (and
/// activates it if asked); an invalid set is refused with every problem's
/// file, line and column, and nothing is stored.
pub(crate) async fn load_set(
    s: &AuthorityState,
    new: NewPolicySet,
    by: &Principal,
    request_id: &str,
) -> Result<PolicySetLoaded, AuthorityError> {
    let files = policy_files(new.files);
    let (files, set) = tokio::task::spawn_blocking(move || {
        let set = PolicySet::load(&files);
        (files, set)
    })
    .await
    .map_err(|e| AuthorityError::Internal(e.to_string()))?;
    let set = set?;
    let file_count = files.len();
    let files =
        serde_json::to_string(&files).map_err(|e| AuthorityError::Internal(e.to_string()))?;
    let digest = digest(&files);
    let count = set.summaries().len() as i64;
    let mut audit = event(
        AuditKind::PolicyLoaded,
        &by.actor(),
        "",
        AuditDecision::Allow,
    );
    audit.reason = format!("{count} policies in {file_count} files, sha256 {digest}");
    audit.request_id = request_id.to_owned();
    let version = s
        .store
        .add_policy_set(&files, &digest, count, unix_now(), &audit)
        .await?;
    if new.activate {
        activate_version(s, version, by, request_id).await?;
    }
    Ok(PolicySetLoaded {
        version,
        digest,
        policy_count: count,
        active: new.activate,
        policies: set.summaries().iter().map(summary).collect(),
    })
}

/// `GET /v1/policies`.
pub(crate) async fn list(
    State(s): State<AppState>,
) -> Result<Json<PolicyVersionList>, AuthorityError> {
    Ok(Json(versions(&s).await?))
}

/// Every stored version, newest first.
pub(crate) async fn versions(s: &AuthorityState) -> Result<PolicyVersionList, AuthorityError> {
    let rows = s.store.policy_sets().await?;
    Ok(PolicyVersionList {
        versions: rows.iter().map(listing).collect(),
    })
}

/// A version as a path names it: a positive number.
fn parse_version(raw: &str) -> Result<i64, PolicyRefusal> {
    raw.parse::<i64>()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| PolicyRefusal::Version(raw.chars().take(20).collect()))
}

async fn version_row(s: &AuthorityState, version: i64) -> Result<PolicySetRow, AuthorityError> {
    Ok(s.store
        .policy_set(version)
        .await?
        .ok_or(Missing::PolicyVersion(version))?)
}

/// `GET /v1/policies/{version}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(version): Path<String>,
) -> Result<Json<PolicyVersionDetail>, AuthorityError> {
    Ok(Json(version_detail(&s, parse_version(&version)?).await?))
}

/// The full view of a version: files and the policies they hold.
pub(crate) async fn version_detail(
    s: &AuthorityState,
    version: i64,
) -> Result<PolicyVersionDetail, AuthorityError> {
    let row = version_row(s, version).await?;
    let files: Vec<PolicyFile> = serde_json::from_str(&row.files)
        .map_err(|e| AuthorityError::Internal(format!("stored policy files: {e}")))?;
    let policies = PolicySet::load(&files)
        .map(|set| set.summaries().iter().map(summary).collect())
        .unwrap_or_default();
    Ok(PolicyVersionDetail {
        version: row.version,
        digest: row.digest.clone(),
        policy_count: row.policy_count,
        created_at: row.created_at,
        active: row.active,
        files: files.into_iter().map(file_view).collect(),
        policies,
    })
}

/// `POST /v1/policies/{version}/activate`.
pub(crate) async fn activate(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    Path(version): Path<String>,
) -> Result<Json<PolicyVersion>, AuthorityError> {
    let version = parse_version(&version)?;
    activate_version(&s, version, &by, &request_id(&headers)).await?;
    Ok(Json(listing(&version_row(&s, version).await?)))
}

/// Makes a stored version the one that decides (also to roll back), and
/// announces it on the feed.
pub(crate) async fn activate_version(
    s: &AuthorityState,
    version: i64,
    by: &Principal,
    request_id: &str,
) -> Result<(), AuthorityError> {
    let row = version_row(s, version).await?;
    let digest = row.digest.clone();
    // A stored version always validated once; refuse one that no longer loads
    // rather than switch every decision to fail closed.
    let active = compile_blocking(row).await;
    if let Active::Broken { why, .. } = &active {
        return Err(PolicyRefusal::NoLongerLoads {
            version,
            why: why.clone(),
        }
        .into());
    }
    let mut audit = event(
        AuditKind::PolicyActivated,
        &by.actor(),
        &version.to_string(),
        AuditDecision::Allow,
    );
    audit.reason = format!("sha256 {digest}");
    audit.request_id = request_id.to_owned();
    s.store
        .activate_policy_set(version, unix_now(), &audit)
        .await?;
    // The set just compiled decides from now on; the refresher finds the
    // same version in the store and leaves it.
    s.policy.set(active);
    s.revocations_changed();
    Ok(())
}

/// What a verifier gets for the active policy set.
#[derive(Debug)]
pub(crate) enum Distribution {
    /// Policy is off: an explicit answer, so a verifier never takes a stray
    /// 404 for "off".
    Off(PolicyDistribution),
    /// The verifier already holds the version tagged `etag`.
    Unchanged {
        /// The active version's tag.
        etag: String,
    },
    /// The active version, with its tag.
    Current {
        /// The active version's tag.
        etag: String,
        /// The version and its files.
        body: PolicyDistribution,
    },
}

/// `GET /v1/policy`: the active set for verifiers, with an ETag;
/// `{"version": null, "active": false}` when policy is off.
pub(crate) async fn distribution(
    State(s): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, AuthorityError> {
    let held: Vec<&str> = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let (mut response, etag) = match active_distribution(&s, &held).await? {
        Distribution::Off(off) => (Json(off).into_response(), None),
        Distribution::Unchanged { etag } => (StatusCode::NOT_MODIFIED.into_response(), Some(etag)),
        Distribution::Current { etag, body } => (Json(body).into_response(), Some(etag)),
    };
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(&e).ok()) {
        response.headers_mut().insert(header::ETAG, v);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The active set for a verifier that already holds the versions tagged
/// `held`: unchanged if one of them is the active one.
pub(crate) async fn active_distribution(
    s: &AuthorityState,
    held: &[&str],
) -> Result<Distribution, AuthorityError> {
    let Some(row) = s.store.active_policy_set().await? else {
        return Ok(Distribution::Off(PolicyDistribution {
            version: None,
            active: false,
            digest: None,
            files: None,
        }));
    };
    let etag = format!(
        "\"v{}-{}\"",
        row.version,
        &row.digest[..row.digest.len().min(16)]
    );
    if held.contains(&etag.as_str()) {
        return Ok(Distribution::Unchanged { etag });
    }
    let files = serde_json::from_str(&row.files)
        .map_err(|e| AuthorityError::Internal(format!("stored policy files: {e}")))?;
    Ok(Distribution::Current {
        etag,
        body: PolicyDistribution {
            version: Some(row.version),
            active: true,
            digest: Some(row.digest),
            files: Some(files),
        },
    })
}

/// The scope an agent's token for the authority needs to read what policies
/// know of another agent (verifiers ask it of their callers).
pub(crate) const POLICY_READ: &str = "policy:read";

/// `GET /v1/policy/agents/{name}`: for the admin credential, or an agent's
/// token for the authority carrying `policy:read` (as a verifier uses);
/// nobody anonymous learns whether an agent exists, its owner or its tags.
/// Cached privately for a minute by verifiers.
pub(crate) async fn agent_facts(
    State(s): State<AppState>,
    Path(name): Path<String>,
    req: crate::body::RawRequest,
) -> Result<Response, AuthorityError> {
    if s.admin.admits(&req.parts.headers).is_none() {
        crate::audit::authenticate_agent(&s, &req, POLICY_READ).await?;
    }
    let mut response = Json(facts_of(&s, &name).await?).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=60"),
    );
    Ok(response)
}

/// What policies see of one agent (name, trust domain, owner, tags,
/// ephemeral, parent), for verifiers that decide per request; nothing else
/// of the registry entry is shown.
pub(crate) async fn facts_of(
    s: &AuthorityState,
    name: &str,
) -> Result<agentauth_api::AgentFacts, AuthorityError> {
    let agent = registry::named(s, name).await?;
    Ok(facts_view(facts(s, &agent).await?))
}

/// `POST /v1/policies/test`.
pub(crate) async fn dry_run(
    State(s): State<AppState>,
    JsonBody(run): JsonBody<DryRunRequest, MAX_POLICY_BODY>,
) -> Result<Json<DryRunAnswer>, AuthorityError> {
    Ok(Json(try_decision(&s, run).await?))
}

/// A dry run of one decision, with the policies that determined it and any
/// evaluation errors; nothing is stored.
pub(crate) async fn try_decision(
    s: &AuthorityState,
    run: DryRunRequest,
) -> Result<DryRunAnswer, AuthorityError> {
    let (set, version) = match (run.files, run.version) {
        (Some(files), _) => (PolicySet::load(&policy_files(files))?, None),
        (None, version) => {
            let row = match version {
                Some(v) => version_row(s, v).await?,
                None => s
                    .store
                    .active_policy_set()
                    .await?
                    .ok_or(Missing::NoActivePolicy)?,
            };
            let files: Vec<PolicyFile> = serde_json::from_str(&row.files)
                .map_err(|e| AuthorityError::Internal(e.to_string()))?;
            (PolicySet::load(&files)?, Some(row.version))
        }
    };
    let principal = registry::named(s, &run.principal).await?;
    let resource = registry::named(s, &run.resource).await?;
    let context = dry_run_context(s, &principal, run.context)?;
    let decision: Decision = set.decide(&Query {
        principal: &facts(s, &principal).await?,
        action: &run.action,
        target: Target::Agent(&facts(s, &resource).await?),
        context: &context,
    })?;
    Ok(DryRunAnswer {
        version,
        decision: decision_view(decision),
        context: context_view(context),
    })
}

/// The dry run's context: given fields over defaults for this authority now.
fn dry_run_context(
    s: &AuthorityState,
    principal: &AgentRow,
    given: Value,
) -> Result<RequestContext, AuthorityError> {
    let defaults = RequestContext {
        purpose: String::new(),
        sensitivity: "unspecified".into(),
        delegation_depth: 0,
        chain: vec![principal.name.to_string()],
        txn: String::new(),
        environment: s.config.environment.clone(),
        time: Clock::at_unix(unix_now()),
        client_ip: IpAddr::from([127, 0, 0, 1]),
        tls_peer: String::new(),
    };
    let context = serde_json::to_value(defaults)
        .map_err(|e| AuthorityError::Internal(format!("context: {e}")))?;
    Ok(overlay_context(context, given)?)
}

/// `given`'s fields over the `defaults` context; only known fields may be set.
fn overlay_context(mut context: Value, given: Value) -> Result<RequestContext, PolicyRefusal> {
    match given {
        Value::Null => {}
        Value::Object(fields) => {
            for (k, v) in fields {
                if context.get(&k).is_none() {
                    return Err(PolicyRefusal::ContextField(k.chars().take(64).collect()));
                }
                context[k] = v;
            }
        }
        _ => return Err(PolicyRefusal::ContextNotObject),
    }
    serde_json::from_value(context).map_err(PolicyRefusal::Context)
}

// ---- What the API shows of the policy crate's types ----

fn policy_files(files: Vec<agentauth_api::PolicyFile>) -> Vec<PolicyFile> {
    files
        .into_iter()
        .map(|f| PolicyFile {
            name: f.name,
            text: f.text,
        })
        .collect()
}

fn file_view(file: PolicyFile) -> agentauth_api::PolicyFile {
    agentauth_api::PolicyFile {
        name: file.name,
        text: file.text,
    }
}

fn summary(p: &agentauth_policy::PolicySummary) -> PolicySummary {
    PolicySummary {
        id: p.id.clone(),
        file: p.file.clone(),
        line: p.line,
        effect: p.effect.clone(),
        approval: p.approval,
        approvers: p.approvers.clone(),
    }
}

fn decision_view(decision: Decision) -> PolicyDecision {
    PolicyDecision {
        outcome: match decision.outcome {
            Outcome::Permit => PolicyOutcome::Permit,
            Outcome::NeedsApproval { approvers } => PolicyOutcome::NeedsApproval { approvers },
            Outcome::Deny => PolicyOutcome::Deny,
        },
        policies: decision.policies,
        errors: decision.errors,
    }
}

fn context_view(context: RequestContext) -> DecisionContext {
    DecisionContext {
        purpose: context.purpose,
        sensitivity: context.sensitivity,
        delegation_depth: context.delegation_depth,
        chain: context.chain,
        txn: context.txn,
        environment: context.environment,
        time: DecisionClock {
            hour: context.time.hour,
            weekday: context.time.weekday,
        },
        client_ip: context.client_ip,
    }
}

fn facts_view(facts: AgentFacts) -> agentauth_api::AgentFacts {
    agentauth_api::AgentFacts {
        name: facts.name,
        trust_domain: facts.trust_domain,
        owner: facts.owner,
        tags: facts.tags,
        ephemeral: facts.ephemeral,
        parent: facts.parent,
        ancestors: facts.ancestors,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_a_positive_number() {
        assert_eq!(parse_version("3").unwrap(), 3);
        for bad in ["0", "-2", "three", ""] {
            assert!(
                matches!(parse_version(bad), Err(PolicyRefusal::Version(v)) if v == bad),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_dry_run_context_sets_only_known_fields_with_their_types() {
        let defaults = serde_json::to_value(RequestContext {
            purpose: String::new(),
            sensitivity: "unspecified".into(),
            delegation_depth: 0,
            chain: vec!["reader".into()],
            txn: String::new(),
            environment: "test".into(),
            time: Clock::at_unix(0),
            client_ip: IpAddr::from([127, 0, 0, 1]),
            tls_peer: String::new(),
        })
        .unwrap();
        let set = overlay_context(defaults.clone(), serde_json::json!({"purpose": "audit"}));
        assert_eq!(set.unwrap().purpose, "audit");
        let unknown = overlay_context(defaults.clone(), serde_json::json!({"colour": "red"}));
        assert!(matches!(unknown, Err(PolicyRefusal::ContextField(f)) if f == "colour"));
        let list = overlay_context(defaults.clone(), serde_json::json!(["purpose"]));
        assert!(matches!(list, Err(PolicyRefusal::ContextNotObject)));
        let typed = overlay_context(defaults, serde_json::json!({"delegation_depth": "deep"}));
        assert!(matches!(typed, Err(PolicyRefusal::Context(_))));
    }
}
