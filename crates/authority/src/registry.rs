//! The agent registry API (`/v1/agents`), admin credential required, except
//! that an agent holding [`AGENTS_SPAWN`] may register ephemeral children.
//!
//! Ephemeral agents ("spawned"): an agent whose registry permissions include
//! `agents:spawn` calls `POST /v1/agents` with its own access token for the
//! authority (scope `agents:spawn`). The child gets only permissions the
//! parent holds, at most the parent's bearer opt-out, the parent's owner and
//! an expiry of at most [`MAX_SPAWN_SECS`], never after the parent's own.
//! Grandchildren are allowed: a child holding `agents:spawn` (only if its
//! parent does) spawns under the same rules, so every generation is a subset
//! of the one before and expires no later. A child is named in its parent's
//! namespace, `<parent>-<label>` (see `in_namespace`). Once expired an agent is unusable
//! everywhere (see [`is_usable`]) and its tokens expired with it; disabling or
//! deleting an agent disables and revokes all its descendants (the store does
//! that in the same transaction), and re-enabling it re-enables none of them.

use agentauth_api::{AgentList, AgentPatch, AgentView, NewAgent};
use agentauth_core::AuditKind;
use agentauth_core::{
    AccessClaims, AgentName, AuditEvent, Decision, PublicJwk, Scope, SpiffeId, parse_access_token,
    unix_now,
};
use agentauth_store::{AgentRow, AgentStatus, AgentUpdate};
use axum::Json;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode};

use crate::AuthorityError;
use crate::admin::presented_token;
use crate::audit::{authenticated_agent, event, request_id};
use crate::body::{JsonBody, RawRequest};
use crate::error::{Missing, Needed};
use crate::operator::Principal;
use crate::server::{AppState, State as AuthorityState};

/// Longest description or owner string.
const MAX_TEXT: usize = 1024;
/// The permission that lets an agent register ephemeral children.
pub(crate) const AGENTS_SPAWN: &str = "agents:spawn";
/// Longest lifetime of a spawned agent, in seconds.
pub(crate) const MAX_SPAWN_SECS: i64 = 3600;
/// Longest lifetime the admin may give an agent with `expires_in` (100 years).
const MAX_ADMIN_EXPIRES_IN: i64 = 100 * 366 * 24 * 3600;
/// Most Workload API selectors one agent's entry may have.
const MAX_SELECTORS: usize = 16;
/// Most tags one agent may have.
const MAX_TAGS: usize = 32;

/// Why a registration, spawn or registry change was refused: one variant
/// per registry rule.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryRefusal {
    /// The agent name is not a valid name.
    #[error(transparent)]
    Name(agentauth_core::Error),
    /// A text field is over [`MAX_TEXT`] bytes.
    #[error("\"{field}\" is longer than {MAX_TEXT} bytes")]
    TextTooLong {
        /// `description` or `owner`.
        field: &'static str,
    },
    /// The public key is not an acceptable JWK.
    #[error("public_jwk: {0}")]
    PublicJwk(#[source] agentauth_core::JwkError),
    /// A permission does not parse.
    #[error("permissions: {0}")]
    Permissions(#[source] agentauth_core::Error),
    /// More than [`MAX_TAGS`] tags.
    #[error("an agent may have at most {MAX_TAGS} tags")]
    TooManyTags,
    /// A tag is empty, too long or has a character outside its alphabet.
    #[error("tag \"{0}\" must be 1 to 64 characters from [A-Za-z0-9-_.:/]")]
    Tag(String),
    /// More than [`MAX_SELECTORS`] Workload API selectors.
    #[error("an agent's entry may have at most {MAX_SELECTORS} selectors")]
    TooManySelectors,
    /// A selector of a form the Workload API does not attest.
    #[error("selectors: {0}")]
    Selector(String),
    /// A spawning agent named selectors (only the admin grants local processes an identity).
    #[error("a spawned agent has no Workload API selectors: leave \"selectors\" out")]
    SelectorsBySpawn,
    /// A key rotation's grace period is out of range.
    #[error("\"grace_secs\" must be 0 to {MAX_KEY_GRACE_SECS} seconds")]
    KeyGrace,
    /// The new key was revoked (by thumbprint) before.
    #[error("public_jwk: this key has been revoked; generate a new one")]
    KeyRevoked,
    /// The admin's `expires_in` is not positive or more than 100 years.
    #[error("\"expires_in\" must be a positive number of seconds (at most 100 years)")]
    Lifetime,
    /// A patch that changes nothing.
    #[error(
        "nothing to change: give permissions, description, status, bearer_allowed, tags or selectors"
    )]
    NothingToChange,
    /// A spawned agent without `expires_in`.
    #[error("\"expires_in\" is required for a spawned agent: 1 to {MAX_SPAWN_SECS} seconds")]
    SpawnLifetimeMissing,
    /// A spawned agent's `expires_in` outside 1 to [`MAX_SPAWN_SECS`].
    #[error("\"expires_in\" of a spawned agent must be 1 to {MAX_SPAWN_SECS} seconds, not {0}")]
    SpawnLifetime(i64),
    /// A spawned agent asks for permissions its parent does not hold.
    #[error(
        "a spawned agent may only get permissions of its parent, which does not hold {}",
        quoted(.0)
    )]
    BeyondParent(Vec<String>),
    /// A spawned agent asks for bearer tokens its parent may not get.
    #[error("\"bearer_allowed\" is refused: the parent itself may not get bearer tokens")]
    BearerBeyondParent,
    /// A spawned agent names another owner than its parent's.
    #[error("a spawned agent belongs to its parent's owner \"{0}\"")]
    NotParentsOwner(String),
    /// A spawned agent names other tags than its parent's.
    #[error("a spawned agent has its parent's tags: leave \"tags\" out")]
    NotParentsTags,
    /// A token with an actor chain tried to spawn.
    #[error("a delegated token cannot spawn agents: use the agent's own token")]
    DelegatedSpawn,
    /// The parent's registry entry no longer grants `agents:spawn`.
    #[error("the agent no longer holds \"{AGENTS_SPAWN}\"")]
    SpawnWithdrawn,
    /// A spawned agent's name is not its parent's name, a hyphen and a label.
    #[error(
        "a spawned agent is named in its parent's namespace, \"{parent}-<label>\", not \"{name}\""
    )]
    OutsideNamespace {
        /// The parent's name.
        parent: String,
        /// The name asked for.
        name: String,
    },
    /// The child would lie deeper below a registered agent than `max_spawn_depth`.
    #[error(
        "the child would be generation {depth} below a registered agent; max_spawn_depth is {limit}"
    )]
    SpawnTooDeep {
        /// The child's generation (a registered agent's children are 1).
        depth: usize,
        /// `max_spawn_depth`.
        limit: usize,
    },
    /// The parent already has `max_live_children` live children.
    #[error(
        "the agent already has {limit} live (active, unexpired) children; max_live_children is {limit}"
    )]
    TooManyChildren {
        /// `max_live_children`.
        limit: usize,
    },
    /// The name lies in the namespace of a registered agent below the
    /// parent, which alone may spawn it.
    #[error("\"{name}\" lies in the namespace of \"{holder}\": only \"{holder}\" may spawn it")]
    NamespaceOfAnother {
        /// The name asked for.
        name: String,
        /// The registered agent whose namespace holds it.
        holder: String,
    },
}

/// `"a", "b"`: permissions as an error lists them.
fn quoted(list: &[String]) -> String {
    list.iter()
        .map(|p| format!("\"{p}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest grace an agent's replaced key may get (a day).
pub(crate) const MAX_KEY_GRACE_SECS: i64 = 86_400;
/// The grace an agent's replaced key gets unless the request says.
pub(crate) const DEFAULT_KEY_GRACE_SECS: i64 = 600;

/// `POST /v1/agents/{name}/key` (admin): replaces the agent's public key;
/// the old one still authenticates it for the grace period, and tokens
/// bound to the old key work until they expire unless it is revoked.
pub(crate) async fn rotate_key(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<JsonBody<agentauth_api::AgentKeyRotation>, AuthorityError>,
) -> Result<Json<AgentView>, AuthorityError> {
    let JsonBody(rotation) = body?;
    let name = agent_name(&name)?;
    let key = PublicJwk::from_json(&rotation.public_jwk).map_err(RegistryRefusal::PublicJwk)?;
    let grace = rotation.grace_secs.unwrap_or(DEFAULT_KEY_GRACE_SECS);
    if !(0..=MAX_KEY_GRACE_SECS).contains(&grace) {
        return Err(RegistryRefusal::KeyGrace.into());
    }
    if s.store.key_revoked(&key.thumbprint()).await? {
        return Err(RegistryRefusal::KeyRevoked.into());
    }
    let now = unix_now();
    let id = SpiffeId::agent(&s.trust_domain, &name);
    let mut audit = event(
        AuditKind::AgentKeyRotated,
        &by.actor(),
        &id,
        Decision::Allow,
    );
    audit.request_id = request_id(&headers);
    audit.reason = format!(
        "new key {}; the old one authenticates until {}",
        key.thumbprint().0,
        now + grace
    );
    let agent = s
        .store
        .rotate_agent_key(&name, &key.to_json(), now + grace, &audit)
        .await?;
    Ok(Json(view(&agent)))
}

/// The API's view of a registry entry.
pub(crate) fn view(agent: &AgentRow) -> AgentView {
    let jkt = PublicJwk::from_json(&agent.public_jwk)
        .map(|k| k.thumbprint().0)
        .unwrap_or_default();
    AgentView {
        name: agent.name.to_string(),
        id: agent.id.to_string(),
        client_id: agent.id.to_string(),
        description: agent.description.clone(),
        owner: agent.owner.clone(),
        permissions: agent.permissions.to_vec(),
        public_jwk: agent.public_jwk.clone(),
        jkt,
        status: status_view(agent.status),
        bearer_allowed: agent.bearer_allowed,
        expires_at: agent.expires_at,
        parent: agent.parent.as_ref().map(ToString::to_string),
        tags: agent.tags.clone(),
        selectors: agent.selectors.clone(),
        created_at: agent.created_at,
        updated_at: agent.updated_at,
    }
}

fn status_view(status: AgentStatus) -> agentauth_api::AgentStatus {
    match status {
        AgentStatus::Active => agentauth_api::AgentStatus::Active,
        AgentStatus::Disabled => agentauth_api::AgentStatus::Disabled,
    }
}

fn stored_status(status: agentauth_api::AgentStatus) -> AgentStatus {
    match status {
        agentauth_api::AgentStatus::Active => AgentStatus::Active,
        agentauth_api::AgentStatus::Disabled => AgentStatus::Disabled,
    }
}

fn bounded_text(field: &'static str, text: &str) -> Result<(), RegistryRefusal> {
    if text.len() > MAX_TEXT {
        return Err(RegistryRefusal::TextTooLong { field });
    }
    Ok(())
}

fn permissions(list: &[String]) -> Result<Scope, RegistryRefusal> {
    Scope::from_strs(list.iter().map(String::as_str)).map_err(RegistryRefusal::Permissions)
}

/// Workload API selectors: at most [`MAX_SELECTORS`], each of a form
/// [`agentauth_workload::Selector`] attests, sorted and without duplicates.
fn selectors(list: &[String]) -> Result<Vec<String>, RegistryRefusal> {
    if list.len() > MAX_SELECTORS {
        return Err(RegistryRefusal::TooManySelectors);
    }
    let mut out = list
        .iter()
        .map(|s| {
            agentauth_workload::Selector::parse(s)
                .map(|s| s.as_str().to_owned())
                .map_err(|e| RegistryRefusal::Selector(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Tags: at most [`MAX_TAGS`], each 1–64 characters from `[A-Za-z0-9-_.:/]`,
/// sorted and without duplicates.
fn tags(list: &[String]) -> Result<Vec<String>, RegistryRefusal> {
    if list.len() > MAX_TAGS {
        return Err(RegistryRefusal::TooManyTags);
    }
    let mut out = Vec::with_capacity(list.len());
    for tag in list {
        let ok = !tag.is_empty()
            && tag.len() <= 64
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/".contains(&b));
        if !ok {
            return Err(RegistryRefusal::Tag(tag.chars().take(40).collect()));
        }
        out.push(tag.clone());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

fn agent_name(name: &str) -> Result<AgentName, RegistryRefusal> {
    AgentName::new(name).map_err(RegistryRefusal::Name)
}

/// Whoever calls `POST /v1/agents`.
enum Registrar {
    /// The admin, or an operator with the admin's rights.
    Admin(Principal),
    /// An agent's token for the authority with `agents:spawn`: the parent.
    Parent(Box<AgentRow>),
}

/// The admin credential, or else an agent's access token for the authority
/// carrying `agents:spawn`. A bearer that is no JWT is taken for a wrong
/// admin credential.
async fn registrar(s: &AppState, req: &RawRequest) -> Result<Registrar, AuthorityError> {
    let headers = &req.parts.headers;
    let Some(token) = presented_token(headers) else {
        return Err(AuthorityError::MissingCredential(Needed::AdminOrSpawnToken));
    };
    if s.admin.identify(token).is_some() || parse_access_token(token).is_err() {
        return Ok(Registrar::Admin(s.admin.require(headers)?));
    }
    let (claims, agent): (AccessClaims, AgentRow) =
        authenticated_agent(s, req, AGENTS_SPAWN).await?;
    if claims.sub != claims.client_id || claims.act.is_some() {
        return Err(RegistryRefusal::DelegatedSpawn.into());
    }
    if !agent.permissions.contains(AGENTS_SPAWN) {
        return Err(RegistryRefusal::SpawnWithdrawn.into());
    }
    Ok(Registrar::Parent(Box::new(agent)))
}

/// Checks the spawn rules; returns the child's expiry.
fn spawn_rules(
    parent: &AgentRow,
    new: &NewAgent,
    permissions: &Scope,
    now: i64,
) -> Result<i64, RegistryRefusal> {
    let Some(secs) = new.expires_in else {
        return Err(RegistryRefusal::SpawnLifetimeMissing);
    };
    if !(1..=MAX_SPAWN_SECS).contains(&secs) {
        return Err(RegistryRefusal::SpawnLifetime(secs));
    }
    let missing: Vec<String> = permissions.missing_from(&parent.permissions);
    if !missing.is_empty() {
        return Err(RegistryRefusal::BeyondParent(missing));
    }
    if new.bearer_allowed && !parent.bearer_allowed {
        return Err(RegistryRefusal::BearerBeyondParent);
    }
    if !new.owner.is_empty() && new.owner != parent.owner {
        return Err(RegistryRefusal::NotParentsOwner(parent.owner.clone()));
    }
    // A child never outlives its parent.
    Ok((now + secs).min(parent.expires_at.unwrap_or(i64::MAX)))
}

/// `POST /v1/agents`: registers an agent with its public key (admin), or
/// spawns an ephemeral child of the calling agent (see the module docs).
pub(crate) async fn create(
    State(s): State<AppState>,
    req: RawRequest,
) -> Result<Response, AuthorityError> {
    let registrar = registrar(&s, &req).await?;
    let new: NewAgent = req.json()?;
    let request_id = request_id(&req.parts.headers);
    let agent = match &registrar {
        Registrar::Admin(by) => register(&s, new, by, &request_id).await?,
        Registrar::Parent(parent) => spawn(&s, parent, new, &request_id).await?,
    };
    Ok((StatusCode::CREATED, Json(view(&agent))).into_response())
}

/// A registration request with every field checked.
struct Checked {
    name: AgentName,
    id: SpiffeId,
    permissions: Scope,
    tags: Vec<String>,
    selectors: Vec<String>,
    key: PublicJwk,
}

fn check(s: &AuthorityState, new: &NewAgent) -> Result<Checked, RegistryRefusal> {
    let name = agent_name(&new.name)?;
    bounded_text("description", &new.description)?;
    bounded_text("owner", &new.owner)?;
    let key = PublicJwk::from_json(&new.public_jwk).map_err(RegistryRefusal::PublicJwk)?;
    Ok(Checked {
        id: SpiffeId::agent(&s.trust_domain, &name),
        name,
        permissions: permissions(&new.permissions)?,
        tags: tags(&new.tags)?,
        selectors: selectors(&new.selectors)?,
        key,
    })
}

/// Registers an agent on the admin's word, optionally with an expiry.
pub(crate) async fn register(
    s: &AuthorityState,
    new: NewAgent,
    by: &Principal,
    request_id: &str,
) -> Result<AgentRow, AuthorityError> {
    let checked = check(s, &new)?;
    let now = unix_now();
    let expires_at = match new.expires_in {
        Some(secs) if (1..=MAX_ADMIN_EXPIRES_IN).contains(&secs) => Some(now + secs),
        Some(_) => return Err(RegistryRefusal::Lifetime.into()),
        None => None,
    };
    let mut audit = event(
        AuditKind::AgentCreated,
        &by.actor(),
        &checked.id,
        Decision::Allow,
    );
    if let Some(at) = expires_at {
        audit.reason = format!("expires at {at}");
    }
    let owner = new.owner.clone();
    let agent = new_row(checked, new, owner, expires_at, None, now);
    store_new(s, agent, audit, request_id, None).await
}

/// Registers an ephemeral child of `parent` under the spawn rules: its
/// permissions, owner and tags are the parent's at most, and it dies with it.
pub(crate) async fn spawn(
    s: &AuthorityState,
    parent: &AgentRow,
    new: NewAgent,
    request_id: &str,
) -> Result<AgentRow, AuthorityError> {
    let mut checked = check(s, &new)?;
    let now = unix_now();
    let expires_at = spawn_rules(parent, &new, &checked.permissions, now)?;
    in_namespace(s, parent, &checked.name).await?;
    let depth = generation(s, parent).await? + 1;
    if depth > s.config.max_spawn_depth {
        return Err(RegistryRefusal::SpawnTooDeep {
            depth,
            limit: s.config.max_spawn_depth,
        }
        .into());
    }
    if !checked.selectors.is_empty() {
        return Err(RegistryRefusal::SelectorsBySpawn.into());
    }
    if !checked.tags.is_empty() && checked.tags != parent.tags {
        return Err(RegistryRefusal::NotParentsTags.into());
    }
    checked.tags.clone_from(&parent.tags);
    let mut audit = event(
        AuditKind::AgentSpawned,
        &parent.id,
        &checked.id,
        Decision::Allow,
    );
    audit.reason = format!(
        "ephemeral agent spawned by {}, expires at {expires_at} (in {} s)",
        parent.id,
        expires_at - now
    );
    let agent = new_row(
        checked,
        new,
        parent.owner.clone(),
        Some(expires_at),
        Some(parent.id.clone()),
        now,
    );
    store_new(
        s,
        agent,
        audit,
        request_id,
        Some(s.config.max_live_children),
    )
    .await
}

/// How many generations `agent` lies below a registered (not spawned)
/// agent; the walk stops one past the ceiling, which is deeper than any
/// configured limit.
async fn generation(s: &AuthorityState, agent: &AgentRow) -> Result<usize, AuthorityError> {
    let mut depth = 0;
    let mut next = agent.parent.clone();
    while let Some(id) = next.take() {
        depth += 1;
        if depth > crate::SPAWN_DEPTH_CEILING {
            break;
        }
        next = agent_by_id(s, &id).await?.and_then(|a| a.parent);
    }
    Ok(depth)
}

/// A spawned agent lives in its parent's namespace: its name is the
/// parent's, a hyphen and a label, and no registered agent's name lies
/// between (`planner-a-b` belongs to `planner-a` once that exists), so a
/// spawner never takes a name in another agent's namespace.
async fn in_namespace(
    s: &AuthorityState,
    parent: &AgentRow,
    name: &AgentName,
) -> Result<(), AuthorityError> {
    let (p, n) = (parent.name.as_str(), name.as_str());
    let outside = || RegistryRefusal::OutsideNamespace {
        parent: p.to_owned(),
        name: n.to_owned(),
    };
    let label = n
        .strip_prefix(p)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|label| !label.is_empty())
        .ok_or_else(outside)?;
    for (at, _) in label.match_indices('-') {
        let inner = &n[..p.len() + 1 + at];
        let Ok(inner_name) = AgentName::new(inner) else {
            continue;
        };
        if s.store.agent(&inner_name).await?.is_some() {
            return Err(RegistryRefusal::NamespaceOfAnother {
                name: n.to_owned(),
                holder: inner.to_owned(),
            }
            .into());
        }
    }
    Ok(())
}

fn new_row(
    checked: Checked,
    new: NewAgent,
    owner: String,
    expires_at: Option<i64>,
    parent: Option<SpiffeId>,
    now: i64,
) -> AgentRow {
    AgentRow {
        id: checked.id,
        name: checked.name,
        description: new.description,
        owner,
        permissions: checked.permissions,
        public_jwk: checked.key.to_json(),
        status: AgentStatus::Active,
        bearer_allowed: new.bearer_allowed,
        expires_at,
        parent,
        tags: checked.tags,
        selectors: checked.selectors,
        created_at: now,
        updated_at: now,
    }
}

/// Stores a new agent with its audit record; a spawned one under its
/// parent's limit of live children, if given.
async fn store_new(
    s: &AuthorityState,
    agent: AgentRow,
    mut audit: AuditEvent,
    request_id: &str,
    max_live_children: Option<usize>,
) -> Result<AgentRow, AuthorityError> {
    audit.scope = agent.permissions.to_string();
    audit.request_id = request_id.to_owned();
    match max_live_children {
        None => s.store.create_agent(&agent, &audit).await?,
        Some(limit) => {
            let max = i64::try_from(limit).unwrap_or(i64::MAX);
            s.store.spawn_agent(&agent, max, &audit).await?;
        }
    }
    s.revocations_changed(); // a name registered again lifts its old revocation
    Ok(agent)
}

/// `GET /v1/agents`.
pub(crate) async fn list(State(s): State<AppState>) -> Result<Json<AgentList>, AuthorityError> {
    Ok(Json(agents(&s).await?))
}

/// Every registered agent, by name.
pub(crate) async fn agents(s: &AuthorityState) -> Result<AgentList, AuthorityError> {
    let agents = s.store.agents().await?.iter().map(view).collect();
    Ok(AgentList { agents })
}

/// `GET /v1/agents/{name}`.
pub(crate) async fn show(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<AgentView>, AuthorityError> {
    Ok(Json(view(&named(&s, &name).await?)))
}

/// The registry entry named `name`; a malformed name is `invalid_request`,
/// an unknown one `not_found`.
pub(crate) async fn named(s: &AuthorityState, name: &str) -> Result<AgentRow, AuthorityError> {
    let name = agent_name(name)?;
    Ok(s.store
        .agent(&name)
        .await?
        .ok_or_else(|| Missing::Agent(name.to_string()))?)
}

/// `PATCH /v1/agents/{name}`: permissions, description, status.
pub(crate) async fn update(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
    body: Result<JsonBody<AgentPatch>, AuthorityError>,
) -> Result<Json<AgentView>, AuthorityError> {
    let JsonBody(patch) = body?;
    let agent = change(&s, &name, patch, &by, &request_id(&headers)).await?;
    Ok(Json(view(&agent)))
}

/// Changes the agent named `name` (permissions, description, status,
/// bearer opt-out, tags) and returns it as stored; a disable or a narrowing
/// reaches its descendants (see [`agentauth_store::Store::update_agent`]).
pub(crate) async fn change(
    s: &AuthorityState,
    name: &str,
    patch: AgentPatch,
    by: &Principal,
    request_id: &str,
) -> Result<AgentRow, AuthorityError> {
    if patch.permissions.is_none()
        && patch.description.is_none()
        && patch.status.is_none()
        && patch.bearer_allowed.is_none()
        && patch.tags.is_none()
        && patch.selectors.is_none()
    {
        return Err(RegistryRefusal::NothingToChange.into());
    }
    let name = agent_name(name)?;
    if let Some(d) = &patch.description {
        bounded_text("description", d)?;
    }
    let update = AgentUpdate {
        permissions: patch.permissions.as_deref().map(permissions).transpose()?,
        description: patch.description,
        status: patch.status.map(stored_status),
        bearer_allowed: patch.bearer_allowed,
        tags: patch.tags.as_deref().map(tags).transpose()?,
        selectors: patch.selectors.as_deref().map(selectors).transpose()?,
        now: unix_now(),
    };
    let id = SpiffeId::agent(&s.trust_domain, &name);
    let mut audit = event(AuditKind::AgentUpdated, &by.actor(), &id, Decision::Allow);
    audit.reason = describe(&update);
    audit.scope = update
        .permissions
        .as_ref()
        .map(ToString::to_string)
        .unwrap_or_default();
    audit.request_id = request_id.to_owned();
    let agent = s.store.update_agent(&name, &update, &audit).await?;
    s.revocations_changed();
    Ok(agent)
}

fn describe(update: &AgentUpdate) -> String {
    let mut changed = Vec::new();
    if update.permissions.is_some() {
        changed.push("permissions".to_owned());
    }
    if update.description.is_some() {
        changed.push("description".to_owned());
    }
    if let Some(status) = update.status {
        changed.push(format!("status={}", status.as_str()));
    }
    if let Some(bearer) = update.bearer_allowed {
        changed.push(format!("bearer_allowed={bearer}"));
    }
    if let Some(tags) = &update.tags {
        changed.push(format!("tags={}", tags.join(",")));
    }
    if let Some(selectors) = &update.selectors {
        changed.push(format!("selectors={}", selectors.join(",")));
    }
    format!("changed {}", changed.join(", "))
}

/// `DELETE /v1/agents/{name}`: removes the agent and revokes its tokens.
pub(crate) async fn delete(
    State(s): State<AppState>,
    by: Principal,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<StatusCode, AuthorityError> {
    remove(&s, &name, &by, &request_id(&headers)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Removes the agent named `name`: its tokens are revoked and its
/// descendants disabled, in one store transaction with the audit record.
pub(crate) async fn remove(
    s: &AuthorityState,
    name: &str,
    by: &Principal,
    request_id: &str,
) -> Result<(), AuthorityError> {
    let name = agent_name(name)?;
    let id = SpiffeId::agent(&s.trust_domain, &name);
    let mut audit = event(AuditKind::AgentDeleted, &by.actor(), &id, Decision::Allow);
    audit.request_id = request_id.to_owned();
    s.store.delete_agent(&name, &audit).await?;
    s.revocations_changed();
    Ok(())
}

/// Why `agent` may not act at `now` (authenticate, get or present tokens,
/// appear in a token's chain): "is disabled", or "has expired" for an
/// ephemeral agent at or past its `expires_at`; `None` if it may.
pub(crate) fn unusable(agent: &AgentRow, now: i64) -> Option<&'static str> {
    if agent.status != AgentStatus::Active {
        Some("is disabled")
    } else if agent.expires_at.is_some_and(|at| now >= at) {
        Some("has expired")
    } else {
        None
    }
}

/// Whether `agent` is active and, if ephemeral, not yet expired at `now`.
pub(crate) fn is_usable(agent: &AgentRow, now: i64) -> bool {
    unusable(agent, now).is_none()
}

/// The registry entry of the agent whose SPIFFE ID is `id`, if it is ours.
pub(crate) async fn agent_by_id(
    s: &AuthorityState,
    id: &SpiffeId,
) -> Result<Option<AgentRow>, AuthorityError> {
    match id.agent_name() {
        Some(name) if id.is_in(&s.trust_domain) => Ok(s.store.agent(&name).await?),
        _ => Ok(None),
    }
}

/// Every ancestor of `agent`, its parent first (spawned agents descend from
/// the agent that spawned them). The walk is never cut short: spawning is
/// limited to `max_spawn_depth` generations, and an ancestry longer than
/// [`crate::SPAWN_DEPTH_CEILING`] (or a loop left by old data) is refused
/// rather than truncated.
pub(crate) async fn ancestry(
    s: &AuthorityState,
    agent: &AgentRow,
) -> Result<Vec<SpiffeId>, AuthorityError> {
    let mut ancestors = Vec::new();
    let mut next = agent.parent.clone();
    while let Some(id) = next.take() {
        if ancestors.len() >= crate::SPAWN_DEPTH_CEILING {
            return Err(crate::PolicyRefusal::AncestryTooLong {
                agent: agent.name.to_string(),
                limit: crate::SPAWN_DEPTH_CEILING,
            }
            .into());
        }
        next = agent_by_id(s, &id).await?.and_then(|a| a.parent);
        ancestors.push(id);
    }
    Ok(ancestors)
}

/// The top-level ancestor of `agent` (itself unless spawned): limits that
/// must not multiply by spawning, such as pending approvals, count per
/// lineage.
pub(crate) async fn lineage(
    s: &AuthorityState,
    agent: &AgentRow,
) -> Result<SpiffeId, AuthorityError> {
    let ancestors = ancestry(s, agent).await?;
    Ok(ancestors.last().unwrap_or(&agent.id).clone())
}

/// The registered agent named (by name or SPIFFE ID) `given`.
pub(crate) async fn registered(
    s: &AuthorityState,
    given: &str,
) -> Result<AgentRow, AuthorityError> {
    let name = match SpiffeId::parse(given) {
        Ok(id) if id.is_in(&s.trust_domain) => id.agent_name(),
        Ok(_) => None,
        Err(_) => AgentName::new(given).ok(),
    };
    let not_found = || Missing::Agent(given.chars().take(80).collect());
    let name = name.ok_or_else(not_found)?;
    Ok(s.store.agent(&name).await?.ok_or_else(not_found)?)
}

/// An agent filter given as a name or SPIFFE ID, as the SPIFFE ID.
pub(crate) fn agent_id_or_raw(s: &AuthorityState, given: &str) -> String {
    match AgentName::new(given) {
        Ok(name) => SpiffeId::agent(&s.trust_domain, &name).to_string(),
        Err(_) => given.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parent(permissions: &[&str], expires_at: Option<i64>) -> AgentRow {
        AgentRow {
            name: AgentName::new("planner").unwrap(),
            id: SpiffeId::parse("spiffe://agentauth.local/agent/planner").unwrap(),
            description: String::new(),
            owner: "team-a".into(),
            permissions: Scope::from_strs(permissions.iter().copied()).unwrap(),
            public_jwk: serde_json::json!({}),
            status: AgentStatus::Active,
            bearer_allowed: false,
            expires_at,
            parent: None,
            tags: vec![],
            selectors: vec![],
            created_at: 0,
            updated_at: 0,
        }
    }

    fn new_agent(expires_in: Option<i64>) -> NewAgent {
        NewAgent {
            name: "worker".into(),
            description: String::new(),
            owner: String::new(),
            permissions: vec![],
            public_jwk: serde_json::json!({}),
            bearer_allowed: false,
            expires_in,
            tags: vec![],
            selectors: vec![],
        }
    }

    #[test]
    fn an_agent_is_unusable_when_disabled_or_at_its_expiry() {
        let mut agent = parent(&[], Some(100));
        assert_eq!(unusable(&agent, 99), None);
        assert_eq!(unusable(&agent, 100), Some("has expired"));
        agent.status = AgentStatus::Disabled;
        assert_eq!(unusable(&agent, 50), Some("is disabled"));
        assert!(is_usable(&parent(&[], None), i64::MAX));
    }

    #[test]
    fn a_child_expires_within_the_hour_and_never_after_its_parent() {
        let p = parent(&["read:db"], None);
        let perms = Scope::parse("read:db").unwrap();
        assert_eq!(
            spawn_rules(&p, &new_agent(Some(60)), &perms, 1000).unwrap(),
            1060
        );
        assert_eq!(
            spawn_rules(&p, &new_agent(Some(3600)), &perms, 0).unwrap(),
            3600
        );
        let ephemeral = parent(&["read:db"], Some(1030));
        assert_eq!(
            spawn_rules(&ephemeral, &new_agent(Some(60)), &perms, 1000).unwrap(),
            1030
        );
        assert!(matches!(
            spawn_rules(&p, &new_agent(None), &perms, 0),
            Err(RegistryRefusal::SpawnLifetimeMissing)
        ));
        for bad in [0, -1, 3601] {
            assert!(
                matches!(
                    spawn_rules(&p, &new_agent(Some(bad)), &perms, 0),
                    Err(RegistryRefusal::SpawnLifetime(secs)) if secs == bad
                ),
                "{bad}"
            );
        }
        let wider = Scope::parse("read:db agents:spawn").unwrap();
        let err = spawn_rules(&p, &new_agent(Some(60)), &wider, 0).unwrap_err();
        assert!(
            matches!(&err, RegistryRefusal::BeyondParent(missing) if missing == &["agents:spawn"]),
            "{err:?}"
        );
    }
}
