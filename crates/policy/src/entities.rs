//! The Cedar form of a query: the entities (principal, target, action and
//! their parents) and the request with its `context` record.
//!
//! Entities depend only on the principal, the target and the action, so a
//! policy set keeps them per query shape (see `scope`). The context holds
//! the task, the chain, the route and the time: every request a token makes
//! to one route within the hour has the same one, so each thread keeps the
//! contexts it built last, keyed by the whole record.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::str::FromStr;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
};

use crate::decision::{AgentFacts, Query, RequestContext, Target};
use crate::error::{PolicyError, RequestError, refused};
use crate::schema::action_group;

/// Most client addresses one thread keeps as Cedar `ip` values; the cache
/// is emptied when full.
const MAX_CACHED_IPS: usize = 1_024;
/// Most contexts one thread keeps; the cache is emptied when full.
const MAX_CACHED_CONTEXTS: usize = 1_024;

thread_local! {
    static IPS: RefCell<HashMap<IpAddr, RestrictedExpression>> = RefCell::new(HashMap::new());
    static CONTEXTS: RefCell<HashMap<RequestContext, Context>> = RefCell::new(HashMap::new());
}

/// The Cedar request of one query, with its context.
pub(crate) fn request(q: &Query<'_>) -> Result<Request, PolicyError> {
    let resource = match q.target {
        Target::Agent(agent) => agent_uid(&agent.name)?,
        Target::Resource { id, .. } => uid("Resource", id)?,
    };
    Request::new(
        agent_uid(&q.principal.name)?,
        action_uid(q.action)?,
        resource,
        context(q.context)?,
        None,
    )
    .map_err(refused(RequestError::Request))
}

/// The entities of one query: principal, target (and the agent serving a
/// typed resource), the action and its group.
pub(crate) fn entities(q: &Query<'_>) -> Result<Entities, PolicyError> {
    let mut entities: HashMap<EntityUid, Entity> = HashMap::new();
    let p = agent_entity(q.principal)?;
    entities.insert(p.uid(), p);
    match q.target {
        Target::Agent(agent) => {
            let e = agent_entity(agent)?;
            entities.entry(e.uid()).or_insert(e);
        }
        Target::Resource {
            id,
            kind,
            served_by,
        } => {
            let server = agent_entity(served_by)?;
            let uid = uid("Resource", id)?;
            let attrs = HashMap::from([(
                "kind".to_owned(),
                RestrictedExpression::new_string(kind.to_owned()),
            )]);
            let e = Entity::new(uid.clone(), attrs, HashSet::from([server.uid()]))
                .map_err(refused(RequestError::Entity))?;
            entities.entry(server.uid()).or_insert(server);
            entities.insert(uid, e);
        }
    }
    let action = action_uid(q.action)?;
    let mut action_parents = HashSet::new();
    if let Some(group) = action_group(q.action) {
        let g = action_uid(group)?;
        entities.insert(g.clone(), Entity::with_uid(g.clone()));
        action_parents.insert(g);
    }
    entities.insert(action.clone(), Entity::new_no_attrs(action, action_parents));
    Entities::from_entities(entities.into_values(), None).map_err(refused(RequestError::Entity))
}

/// The entity type names, parsed once.
fn type_name(kind: &str) -> Result<EntityTypeName, PolicyError> {
    static NAMES: std::sync::LazyLock<[(&str, Option<EntityTypeName>); 3]> =
        std::sync::LazyLock::new(|| {
            ["Agent", "Action", "Resource"].map(|n| (n, EntityTypeName::from_str(n).ok()))
        });
    match NAMES.iter().find(|(n, _)| *n == kind) {
        Some((_, Some(name))) => Ok(name.clone()),
        _ => EntityTypeName::from_str(kind).map_err(refused(RequestError::Name)),
    }
}

fn uid(kind: &str, id: &str) -> Result<EntityUid, PolicyError> {
    Ok(EntityUid::from_type_name_and_id(
        type_name(kind)?,
        EntityId::new(id),
    ))
}

fn agent_uid(name: &str) -> Result<EntityUid, PolicyError> {
    uid("Agent", name)
}

fn action_uid(permission: &str) -> Result<EntityUid, PolicyError> {
    uid("Action", permission)
}

fn agent_entity(a: &AgentFacts) -> Result<Entity, PolicyError> {
    let mut attrs = HashMap::from([
        (
            "name".to_owned(),
            RestrictedExpression::new_string(a.name.clone()),
        ),
        (
            "trust_domain".to_owned(),
            RestrictedExpression::new_string(a.trust_domain.clone()),
        ),
        (
            "owner".to_owned(),
            RestrictedExpression::new_string(a.owner.clone()),
        ),
        (
            "tags".to_owned(),
            RestrictedExpression::new_set(
                a.tags
                    .iter()
                    .map(|t| RestrictedExpression::new_string(t.clone())),
            ),
        ),
        (
            "ephemeral".to_owned(),
            RestrictedExpression::new_bool(a.ephemeral),
        ),
    ]);
    let mut parents = HashSet::new();
    for ancestor in &a.ancestors {
        parents.insert(agent_uid(ancestor)?);
    }
    if let Some(parent) = &a.parent {
        let p = agent_uid(parent)?;
        attrs.insert(
            "parent".to_owned(),
            RestrictedExpression::new_entity_uid(p.clone()),
        );
        parents.insert(p);
    }
    Entity::new(agent_uid(&a.name)?, attrs, parents).map_err(refused(RequestError::Entity))
}

/// The Cedar `ip` value of a client address. Cedar re-parses the extension
/// function's name each time one is made, so each thread keeps those it made.
fn client_ip(ip: IpAddr) -> RestrictedExpression {
    // An IPv4 peer on a dual-stack listener shows as ::ffff:a.b.c.d, which
    // Cedar refuses: decide with the IPv4 address.
    let ip = ip.to_canonical();
    IPS.with_borrow_mut(|cache| {
        if let Some(e) = cache.get(&ip) {
            return e.clone();
        }
        if cache.len() >= MAX_CACHED_IPS {
            cache.clear();
        }
        let e = RestrictedExpression::new_ip(ip.to_string());
        cache.insert(ip, e.clone());
        e
    })
}

/// The Cedar context of `c`, from this thread's cache if it built it before.
fn context(c: &RequestContext) -> Result<Context, PolicyError> {
    if let Some(hit) = CONTEXTS.with_borrow(|cache| cache.get(c).cloned()) {
        return Ok(hit);
    }
    let built = build_context(c)?;
    CONTEXTS.with_borrow_mut(|cache| {
        if cache.len() >= MAX_CACHED_CONTEXTS {
            cache.clear();
        }
        cache.insert(c.clone(), built.clone());
    });
    Ok(built)
}

fn build_context(c: &RequestContext) -> Result<Context, PolicyError> {
    let chain = c
        .chain
        .iter()
        .map(|name| agent_uid(name).map(RestrictedExpression::new_entity_uid))
        .collect::<Result<Vec<_>, _>>()?;
    let time = RestrictedExpression::new_record([
        (
            "hour".to_owned(),
            RestrictedExpression::new_long(c.time.hour),
        ),
        (
            "weekday".to_owned(),
            RestrictedExpression::new_long(c.time.weekday),
        ),
    ])
    .map_err(refused(RequestError::Context))?;
    Context::from_pairs([
        (
            "purpose".to_owned(),
            RestrictedExpression::new_string(c.purpose.clone()),
        ),
        (
            "sensitivity".to_owned(),
            RestrictedExpression::new_string(c.sensitivity.clone()),
        ),
        (
            "delegation_depth".to_owned(),
            RestrictedExpression::new_long(c.delegation_depth),
        ),
        ("chain".to_owned(), RestrictedExpression::new_set(chain)),
        (
            "txn".to_owned(),
            RestrictedExpression::new_string(c.txn.clone()),
        ),
        (
            "environment".to_owned(),
            RestrictedExpression::new_string(c.environment.clone()),
        ),
        ("time".to_owned(), time),
        ("client_ip".to_owned(), client_ip(c.client_ip)),
        (
            "tls_peer".to_owned(),
            RestrictedExpression::new_string(c.tls_peer.clone()),
        ),
    ])
    .map_err(refused(RequestError::Context))
}
