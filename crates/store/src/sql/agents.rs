//! Agents: registration, changes and removal, and what a change of an agent
//! does to the agents it spawned (its descendants).

use agentauth_core::{AgentName, AuditEvent, AuditKind, Decision, Scope, SpiffeId};
use sqlx::{ColumnIndex, Executor, Row as _};

use super::backend::ForUpdate;
use super::tokens::Derived;
use super::{
    Backend, Column, Conn, Param, Row, Sql, Tx, json_list, json_scope, parsed, scope_from_json,
};
use crate::{
    AgentRow, AgentStatus, AgentUpdate, Result, RevocationAction, RevocationKind, StoreError,
};

/// An agent by SPIFFE ID, read to spawn a child of it.
static PARENT: ForUpdate = ForUpdate::new("SELECT * FROM agents WHERE spiffe_id = $1");

/// An agent by name, read to change it.
static BY_NAME: ForUpdate = ForUpdate::new("SELECT * FROM agents WHERE name = $1");

/// Every agent descended from `$1` through `agents.parent` (children, their
/// children, …). `UNION` ends the walk even if a name reused after a deletion
/// made the parent links loop.
static DESCENDANTS: ForUpdate = ForUpdate::new(
    "SELECT * FROM agents WHERE spiffe_id IN ( \
         WITH RECURSIVE descendant(id) AS ( \
             SELECT spiffe_id FROM agents WHERE parent = $1 \
             UNION SELECT a.spiffe_id FROM agents a JOIN descendant d ON a.parent = d.id) \
         SELECT id FROM descendant) \
     AND spiffe_id <> $1 ORDER BY spiffe_id",
);

impl<B> Sql<'_, B>
where
    B: Backend,
    for<'c> &'c mut Conn<B>: Executor<'c, Database = B::Db>,
    for<'q> &'q str: Param<'q, B::Db> + ColumnIndex<Row<B>>,
    for<'q> Option<&'q str>: Param<'q, B::Db>,
    String: Column<B::Db>,
    i64: Column<B::Db>,
    Option<i64>: Column<B::Db>,
{
    pub(super) async fn agent(&self, name: &AgentName) -> Result<Option<AgentRow>> {
        let row = sqlx::query("SELECT * FROM agents WHERE name = $1")
            .bind(name.as_str())
            .fetch_optional(self.0.pool())
            .await?;
        row.as_ref().map(Self::agent_from_row).transpose()
    }

    pub(super) async fn agents(&self) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query("SELECT * FROM agents ORDER BY name")
            .fetch_all(self.0.pool())
            .await?;
        rows.iter().map(Self::agent_from_row).collect()
    }

    pub(super) async fn agents_with_selectors(&self) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query("SELECT * FROM agents WHERE selectors <> '[]' ORDER BY name")
            .fetch_all(self.0.pool())
            .await?;
        rows.iter().map(Self::agent_from_row).collect()
    }

    pub(super) async fn create_agent(&self, agent: &AgentRow, audit: &AuditEvent) -> Result<()> {
        self.insert_agent(agent, None, audit).await
    }

    /// Registers `agent`; a spawned one needs a usable parent and, with
    /// `max_live_children`, a parent below that many live children.
    pub(super) async fn insert_agent(
        &self,
        agent: &AgentRow,
        max_live_children: Option<i64>,
        audit: &AuditEvent,
    ) -> Result<()> {
        let mut tx = self.0.begin().await?;
        // A parent disabled, deleted or expired while this agent was being
        // spawned must not leave a usable child behind: its row is locked
        // (PostgreSQL) or the write lock held (SQLite) until the commit.
        if let Some(parent) = &agent.parent {
            let row = sqlx::query(PARENT.sql::<B>())
                .bind(parent.as_str())
                .fetch_optional(&mut *tx)
                .await?;
            let usable = match row {
                Some(r) => {
                    let p = Self::agent_from_row(&r)?;
                    p.status == AgentStatus::Active
                        && p.expires_at.is_none_or(|e| agent.created_at < e)
                }
                None => false,
            };
            if !usable {
                return Err(StoreError::NotFound(format!(
                    "an active parent agent {parent}"
                )));
            }
            if let Some(max) = max_live_children {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM agents WHERE parent = $1 AND status = 'active' \
                     AND (expires_at IS NULL OR expires_at > $2)",
                )
                .bind(parent.as_str())
                .bind(agent.created_at)
                .fetch_one(&mut *tx)
                .await?;
                let live: i64 = row.try_get("n")?;
                if live >= max {
                    return Err(StoreError::TooManyChildren(max));
                }
            }
        }
        let result = sqlx::query(
            "INSERT INTO agents (name, spiffe_id, description, owner, permissions, public_jwk, status, \
             created_at, updated_at, bearer_allowed, expires_at, parent, tags, selectors) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(agent.name.as_str())
        .bind(agent.id.as_str())
        .bind(&agent.description)
        .bind(&agent.owner)
        .bind(json_scope(&agent.permissions))
        .bind(agent.public_jwk.to_string())
        .bind(agent.status.as_str())
        .bind(agent.created_at)
        .bind(agent.updated_at)
        .bind(i64::from(agent.bearer_allowed))
        .bind(agent.expires_at)
        .bind(agent.parent.as_ref().map(SpiffeId::as_str))
        .bind(json_list(&agent.tags))
        .bind(json_list(&agent.selectors))
        .execute(&mut *tx)
        .await;
        match result {
            Ok(_) => {}
            Err(e) if StoreError::is_unique_violation(&e) => {
                return Err(StoreError::Conflict(format!("agent \"{}\"", agent.name)));
            }
            Err(e) => return Err(e.into()),
        }
        // A name that was deleted before is revoked on the feed; lift that
        // for the new agent (its predecessor's tokens were revoked one by one).
        let last = sqlx::query(
            "SELECT action FROM revocations WHERE kind = 'agent' AND subject = $1 \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(agent.id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let revoked = match last {
            Some(row) => row.try_get::<String, _>("action")? == RevocationAction::Revoke.as_str(),
            None => false,
        };
        if revoked {
            let now = agent.created_at;
            Self::publish(
                &mut tx,
                RevocationKind::Agent,
                agent.id.as_str(),
                RevocationAction::Restore,
                now,
                None,
            )
            .await?;
        }
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await
    }

    pub(super) async fn update_agent(
        &self,
        name: &AgentName,
        update: &AgentUpdate,
        audit: &AuditEvent,
    ) -> Result<AgentRow> {
        let mut tx = self.0.begin().await?;
        let mut agent = Self::agent_in(&mut tx, name).await?;
        let old_status = agent.status;
        apply(&mut agent, update);
        if old_status == AgentStatus::Disabled && agent.status == AgentStatus::Active {
            Self::check_parent_for_enabling(&mut tx, &agent).await?;
        }
        sqlx::query(
            "UPDATE agents SET permissions = $1, description = $2, status = $3, updated_at = $4, \
             bearer_allowed = $5, tags = $6, selectors = $7 WHERE name = $8",
        )
        .bind(json_scope(&agent.permissions))
        .bind(&agent.description)
        .bind(agent.status.as_str())
        .bind(agent.updated_at)
        .bind(i64::from(agent.bearer_allowed))
        .bind(json_list(&agent.tags))
        .bind(json_list(&agent.selectors))
        .bind(name.as_str())
        .execute(&mut *tx)
        .await?;
        if agent.status != old_status {
            let action = match agent.status {
                AgentStatus::Disabled => RevocationAction::Revoke,
                AgentStatus::Active => RevocationAction::Restore,
            };
            Self::publish(
                &mut tx,
                RevocationKind::Agent,
                agent.id.as_str(),
                action,
                update.now,
                None,
            )
            .await?;
        }
        let mut events = vec![audit.clone()];
        if let Some(p) = &update.permissions {
            events
                .extend(Self::narrow_descendants(&mut tx, &agent.id, p, update.now, audit).await?);
        }
        // Re-enabling never re-enables descendants: they were disabled
        // with their ancestor and stay so until enabled one by one.
        if update.status == Some(AgentStatus::Disabled) {
            events.extend(
                Self::disable_descendants(&mut tx, &agent.id, update.now, audit, "disabled")
                    .await?,
            );
        }
        Self::append(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(agent)
    }

    /// The agent `name` read inside `tx` (locked where rows are), or
    /// [`StoreError::NotFound`].
    async fn agent_in(tx: &mut Tx<B>, name: &AgentName) -> Result<AgentRow> {
        let row = sqlx::query(BY_NAME.sql::<B>())
            .bind(name.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        match row {
            Some(r) => Self::agent_from_row(&r),
            None => Err(StoreError::NotFound(format!("agent \"{name}\""))),
        }
    }

    pub(super) async fn rotate_agent_key(
        &self,
        name: &AgentName,
        public_jwk: &serde_json::Value,
        previous_until: i64,
        audit: &AuditEvent,
    ) -> Result<AgentRow> {
        let mut tx = self.0.begin().await?;
        let mut agent = Self::agent_in(&mut tx, name).await?;
        if agent.public_jwk == *public_jwk {
            return Err(StoreError::Conflict(
                "the new key is the agent's current key".into(),
            ));
        }
        let now = audit.time_ms / 1000;
        sqlx::query("UPDATE agents SET public_jwk = $1, updated_at = $2 WHERE name = $3")
            .bind(public_jwk.to_string())
            .bind(now)
            .bind(name.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM agent_previous_keys WHERE agent = $1")
            .bind(agent.id.as_str())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO agent_previous_keys (agent, public_jwk, valid_until) VALUES ($1, $2, $3)",
        )
        .bind(agent.id.as_str())
        .bind(agent.public_jwk.to_string())
        .bind(previous_until)
        .execute(&mut *tx)
        .await?;
        Self::append(&mut tx, std::slice::from_ref(audit)).await?;
        tx.commit().await?;
        agent.public_jwk = public_jwk.clone();
        agent.updated_at = now;
        Ok(agent)
    }

    pub(super) async fn previous_agent_key(
        &self,
        id: &SpiffeId,
        now: i64,
    ) -> Result<Option<serde_json::Value>> {
        let row = sqlx::query(
            "SELECT public_jwk FROM agent_previous_keys WHERE agent = $1 AND valid_until > $2",
        )
        .bind(id.as_str())
        .bind(now)
        .fetch_optional(self.0.pool())
        .await?;
        match row {
            Some(r) => {
                let jwk: String = r.try_get("public_jwk")?;
                Ok(Some(serde_json::from_str(&jwk).map_err(|e| {
                    StoreError::Corrupt(format!("a previous agent key: {e}"))
                })?))
            }
            None => Ok(None),
        }
    }

    pub(super) async fn delete_agent(&self, name: &AgentName, audit: &AuditEvent) -> Result<()> {
        let mut tx = self.0.begin().await?;
        let row = sqlx::query("DELETE FROM agents WHERE name = $1 RETURNING spiffe_id")
            .bind(name.as_str())
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("agent \"{name}\"")));
        };
        let id: String = row.try_get("spiffe_id")?;
        let id = parsed("agent spiffe_id", &id, SpiffeId::parse)?;
        let now = audit.time_ms / 1000;
        // The name may be registered again later, with another key: the
        // old agent's outstanding tokens, and every token exchanged from
        // them (whose chains name it), must stay dead when it is.
        Self::revoke_derived(&mut tx, Derived::Agent, id.as_str(), now).await?;
        Self::forget_grants_and_approvals(&mut tx, id.as_str(), now).await?;
        Self::publish(
            &mut tx,
            RevocationKind::Agent,
            id.as_str(),
            RevocationAction::Revoke,
            now,
            None,
        )
        .await?;
        let mut events = vec![audit.clone()];
        events.extend(Self::disable_descendants(&mut tx, &id, now, audit, "deleted").await?);
        Self::append(&mut tx, &events).await?;
        tx.commit().await
    }

    /// Removes every grant from or to the agent `id` and expires every
    /// pending or approved approval naming it, inside `tx`: nothing granted
    /// or approved for it carries over to a new agent registered under the name.
    async fn forget_grants_and_approvals(tx: &mut Tx<B>, id: &str, now: i64) -> Result<()> {
        sqlx::query("DELETE FROM delegations WHERE from_agent = $1 OR to_agent = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query("DELETE FROM agent_previous_keys WHERE agent = $1")
            .bind(id)
            .execute(&mut **tx)
            .await?;
        sqlx::query(
            "UPDATE approvals SET expires_at = $2 \
             WHERE (agent = $1 OR subject = $1 OR audience = $1) \
             AND status IN ('pending', 'approved') AND expires_at > $2",
        )
        .bind(id)
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Removes the spawned agents that expired before `now`, with their
    /// grants and approvals and an `agent.deleted` record each. Their tokens
    /// expired with them, and their descendants expire no later, so a purge
    /// revokes nothing.
    pub(super) async fn purge_expired_agents(&self, now: i64) -> Result<u64> {
        let mut tx = self.0.begin().await?;
        let rows = sqlx::query(
            "DELETE FROM agents WHERE parent IS NOT NULL AND expires_at IS NOT NULL \
             AND expires_at < $1 RETURNING spiffe_id",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut events = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = row.try_get("spiffe_id")?;
            Self::forget_grants_and_approvals(&mut tx, &id, now).await?;
            events.push(AuditEvent {
                time_ms: now * 1000,
                kind: AuditKind::AgentDeleted,
                actor: "authority".into(),
                subject: id,
                audience: String::new(),
                scope: String::new(),
                decision: Decision::Allow,
                reason: "purged: the spawned agent expired".into(),
                request_id: String::new(),
                txn: String::new(),
                chain: String::new(),
                purpose: String::new(),
                reported: false,
            });
        }
        Self::append(&mut tx, &events).await?;
        tx.commit().await?;
        Ok(rows.len() as u64)
    }

    /// A spawned agent is enabled again only under the very agent that
    /// spawned it: its parent must exist, be active and be no newer than the
    /// child (a parent deleted and registered again is a new identity).
    async fn check_parent_for_enabling(tx: &mut Tx<B>, agent: &AgentRow) -> Result<()> {
        let Some(parent) = &agent.parent else {
            return Ok(());
        };
        let row = sqlx::query(PARENT.sql::<B>())
            .bind(parent.as_str())
            .fetch_optional(&mut **tx)
            .await?;
        let same = match row {
            Some(r) => {
                let p = Self::agent_from_row(&r)?;
                p.status == AgentStatus::Active && p.created_at <= agent.created_at
            }
            None => false,
        };
        if same {
            Ok(())
        } else {
            Err(StoreError::Stale(format!(
                "the parent {parent} that spawned \"{}\" is deleted, disabled or a new agent of that name: \
                 a spawned agent is enabled only under the agent that spawned it",
                agent.name
            )))
        }
    }

    /// Every agent descended from `ancestor`, rows locked on PostgreSQL.
    async fn descendants(tx: &mut Tx<B>, ancestor: &SpiffeId) -> Result<Vec<AgentRow>> {
        let rows = sqlx::query(DESCENDANTS.sql::<B>())
            .bind(ancestor.as_str())
            .fetch_all(&mut **tx)
            .await?;
        rows.iter().map(Self::agent_from_row).collect()
    }

    /// Disables every active descendant of `ancestor`, publishes an agent
    /// revocation for each and returns the audit events that report it,
    /// derived from `cause` (the ancestor's own change).
    async fn disable_descendants(
        tx: &mut Tx<B>,
        ancestor: &SpiffeId,
        now: i64,
        cause: &AuditEvent,
        what_happened: &str,
    ) -> Result<Vec<AuditEvent>> {
        let mut events = Vec::new();
        for child in Self::descendants(tx, ancestor).await? {
            if child.status != AgentStatus::Active {
                continue;
            }
            sqlx::query("UPDATE agents SET status = $1, updated_at = $2 WHERE spiffe_id = $3")
                .bind(AgentStatus::Disabled.as_str())
                .bind(now)
                .bind(child.id.as_str())
                .execute(&mut **tx)
                .await?;
            Self::publish(
                tx,
                RevocationKind::Agent,
                child.id.as_str(),
                RevocationAction::Revoke,
                now,
                None,
            )
            .await?;
            let mut event = cause.clone();
            event.kind = AuditKind::AgentRevoked;
            event.subject = child.id.to_string();
            event.scope = String::new();
            event.reason = format!("its ancestor {ancestor} was {what_happened}");
            events.push(event);
        }
        Ok(events)
    }

    /// Removes from every descendant of `ancestor` the permissions that
    /// `ancestor` no longer holds, so spawned agents stay within their
    /// parent's permissions; returns the audit events that report it.
    async fn narrow_descendants(
        tx: &mut Tx<B>,
        ancestor: &SpiffeId,
        permissions: &Scope,
        now: i64,
        cause: &AuditEvent,
    ) -> Result<Vec<AuditEvent>> {
        let mut events = Vec::new();
        for child in Self::descendants(tx, ancestor).await? {
            let kept = child.permissions.intersection(permissions);
            if kept.len() == child.permissions.len() {
                continue;
            }
            sqlx::query("UPDATE agents SET permissions = $1, updated_at = $2 WHERE spiffe_id = $3")
                .bind(json_scope(&kept))
                .bind(now)
                .bind(child.id.as_str())
                .execute(&mut **tx)
                .await?;
            let mut event = cause.clone();
            event.kind = AuditKind::AgentUpdated;
            event.subject = child.id.to_string();
            event.scope = kept.to_string();
            event.reason = format!("changed permissions: narrowed with its ancestor {ancestor}");
            events.push(event);
        }
        Ok(events)
    }

    fn agent_from_row(row: &Row<B>) -> Result<AgentRow> {
        let permissions: String = row.try_get("permissions")?;
        let jwk: String = row.try_get("public_jwk")?;
        let status: String = row.try_get("status")?;
        let tags: String = row.try_get("tags")?;
        let selectors: String = row.try_get("selectors")?;
        let name: String = row.try_get("name")?;
        let id: String = row.try_get("spiffe_id")?;
        let parent: Option<String> = row.try_get("parent")?;
        Ok(AgentRow {
            name: parsed("agent name", &name, AgentName::new)?,
            id: parsed("agent spiffe_id", &id, SpiffeId::parse)?,
            description: row.try_get("description")?,
            owner: row.try_get("owner")?,
            permissions: scope_from_json("agent permissions", &permissions)?,
            public_jwk: serde_json::from_str(&jwk)
                .map_err(|e| StoreError::Corrupt(format!("agent key: {e}")))?,
            status: AgentStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("agent status {status}")))?,
            bearer_allowed: row.try_get::<i64, _>("bearer_allowed")? != 0,
            expires_at: row.try_get("expires_at")?,
            parent: parent
                .map(|p| parsed("agent parent", &p, SpiffeId::parse))
                .transpose()?,
            tags: serde_json::from_str(&tags)
                .map_err(|e| StoreError::Corrupt(format!("agent tags: {e}")))?,
            selectors: serde_json::from_str(&selectors)
                .map_err(|e| StoreError::Corrupt(format!("agent selectors: {e}")))?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

/// Applies the fields an update sets, and its time.
fn apply(agent: &mut AgentRow, update: &AgentUpdate) {
    if let Some(p) = &update.permissions {
        agent.permissions.clone_from(p);
    }
    if let Some(d) = &update.description {
        agent.description.clone_from(d);
    }
    if let Some(s) = update.status {
        agent.status = s;
    }
    if let Some(b) = update.bearer_allowed {
        agent.bearer_allowed = b;
    }
    if let Some(t) = &update.tags {
        agent.tags.clone_from(t);
    }
    if let Some(s) = &update.selectors {
        agent.selectors.clone_from(s);
    }
    agent.updated_at = update.now;
}
