//! The one SQL implementation of [`crate::Store`], expanded for each backend.
//!
//! SQLite and PostgreSQL both understand `$N` placeholders, `RETURNING` and
//! `ON CONFLICT`, so the statements are shared; the backends differ only in how
//! a write transaction starts (`BEGIN IMMEDIATE` on SQLite, so two writers
//! never deadlock upgrading a read lock) and in row locking (`FOR UPDATE` on
//! PostgreSQL, where replicas write concurrently).

macro_rules! sql_store {
    ($store:ident, $db:ty, $row:ty, for_update = $for_update:literal) => {
        use agentauth_core::{AuditEvent, AuditRecord, Decision, chain_hash};
        use sqlx::Row as _;

        use crate::{
            AgentRow, AgentStatus, AgentUpdate, ApprovalDecision, ApprovalRequest, ApprovalRow, ApprovalStatus, AuditFilter,
            DelegationRow, IssuedToken, PolicySetRow, Result, RevocationAction, RevocationKind, RevocationRow,
            SigningKeyRow, StoreError, UsedAssertion,
        };

        type Tx = sqlx::Transaction<'static, $db>;

        fn agent_from_row(row: &$row) -> Result<AgentRow> {
            let permissions: String = row.try_get("permissions")?;
            let jwk: String = row.try_get("public_jwk")?;
            let status: String = row.try_get("status")?;
            let tags: String = row.try_get("tags")?;
            Ok(AgentRow {
                name: row.try_get("name")?,
                id: row.try_get("spiffe_id")?,
                description: row.try_get("description")?,
                owner: row.try_get("owner")?,
                permissions: serde_json::from_str(&permissions)
                    .map_err(|e| StoreError::Corrupt(format!("agent permissions: {e}")))?,
                public_jwk: serde_json::from_str(&jwk)
                    .map_err(|e| StoreError::Corrupt(format!("agent key: {e}")))?,
                status: AgentStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("agent status {status}")))?,
                bearer_allowed: row.try_get::<i64, _>("bearer_allowed")? != 0,
                expires_at: row.try_get("expires_at")?,
                parent: row.try_get("parent")?,
                tags: serde_json::from_str(&tags).map_err(|e| StoreError::Corrupt(format!("agent tags: {e}")))?,
                created_at: row.try_get("created_at")?,
                updated_at: row.try_get("updated_at")?,
            })
        }

        fn audit_from_row(row: &$row) -> Result<AuditRecord> {
            let decision: String = row.try_get("decision")?;
            Ok(AuditRecord {
                seq: row.try_get("seq")?,
                event: AuditEvent {
                    time_ms: row.try_get("time_ms")?,
                    kind: row.try_get("kind")?,
                    actor: row.try_get("actor")?,
                    subject: row.try_get("subject")?,
                    audience: row.try_get("audience")?,
                    scope: row.try_get("scope")?,
                    decision: Decision::parse(&decision)
                        .ok_or_else(|| StoreError::Corrupt(format!("audit decision {decision}")))?,
                    reason: row.try_get("reason")?,
                    request_id: row.try_get("request_id")?,
                    txn: row.try_get("txn")?,
                    chain: row.try_get("chain")?,
                    purpose: row.try_get("purpose")?,
                },
                prev_hash: row.try_get("prev_hash")?,
                hash: row.try_get("hash")?,
            })
        }

        fn delegation_from_row(row: &$row) -> Result<DelegationRow> {
            let permissions: String = row.try_get("permissions")?;
            Ok(DelegationRow {
                from: row.try_get("from_agent")?,
                to: row.try_get("to_agent")?,
                permissions: serde_json::from_str(&permissions)
                    .map_err(|e| StoreError::Corrupt(format!("delegation permissions: {e}")))?,
                created_at: row.try_get("created_at")?,
            })
        }

        fn revocation_from_row(row: &$row) -> Result<RevocationRow> {
            let kind: String = row.try_get("kind")?;
            let action: String = row.try_get("action")?;
            Ok(RevocationRow {
                seq: row.try_get("seq")?,
                kind: match kind.as_str() {
                    "agent" => RevocationKind::Agent,
                    "token" => RevocationKind::Token,
                    "task" => RevocationKind::Task,
                    "key" => RevocationKind::Key,
                    "policy" => RevocationKind::Policy,
                    _ => return Err(StoreError::Corrupt(format!("revocation kind {kind}"))),
                },
                subject: row.try_get("subject")?,
                action: match action.as_str() {
                    "revoke" => RevocationAction::Revoke,
                    "restore" => RevocationAction::Restore,
                    _ => return Err(StoreError::Corrupt(format!("revocation action {action}"))),
                },
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
            })
        }

        /// Reads a policy set from a row that carries `active_version` (the
        /// active version when it is this one, else NULL).
        fn policy_set_from_row(row: &$row) -> Result<PolicySetRow> {
            let active: Option<i64> = row.try_get("active_version")?;
            Ok(PolicySetRow {
                version: row.try_get("version")?,
                files: row.try_get("files")?,
                digest: row.try_get("digest")?,
                policy_count: row.try_get("policy_count")?,
                created_at: row.try_get("created_at")?,
                active: active.is_some(),
            })
        }

        fn approval_from_row(row: &$row) -> Result<ApprovalRow> {
            let status: String = row.try_get("status")?;
            Ok(ApprovalRow {
                id: row.try_get("id")?,
                agent: row.try_get("agent")?,
                subject: row.try_get("subject")?,
                audience: row.try_get("audience")?,
                scope: row.try_get("scope")?,
                txn: row.try_get("txn")?,
                purpose: row.try_get("purpose")?,
                grant_type: row.try_get("grant_type")?,
                policies: row.try_get("policies")?,
                approvers: row.try_get("approvers")?,
                status: ApprovalStatus::parse(&status)
                    .ok_or_else(|| StoreError::Corrupt(format!("approval status {status}")))?,
                created_at: row.try_get("created_at")?,
                expires_at: row.try_get("expires_at")?,
                last_poll_at: row.try_get("last_poll_at")?,
                decided_by: row.try_get("decided_by")?,
                decided_at: row.try_get("decided_at")?,
                reason: row.try_get("reason")?,
            })
        }

        /// Appends `events` to the chain inside `tx`. The head row is read
        /// under the transaction's write lock, so concurrent appends serialise.
        async fn append_in(tx: &mut Tx, events: &[AuditEvent]) -> Result<()> {
            if events.is_empty() {
                return Ok(());
            }
            let head = sqlx::query(concat!("SELECT seq, hash FROM audit_head WHERE id = 1", $for_update))
                .fetch_one(&mut **tx)
                .await?;
            let mut seq: i64 = head.try_get("seq")?;
            let mut prev: String = head.try_get("hash")?;
            for event in events {
                seq += 1;
                let hash = chain_hash(&prev, seq, event);
                sqlx::query(
                    "INSERT INTO audit_log (seq, time_ms, kind, actor, subject, audience, scope, decision, \
                     reason, request_id, prev_hash, hash, txn, chain, purpose) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
                )
                .bind(seq)
                .bind(event.time_ms)
                .bind(&event.kind)
                .bind(&event.actor)
                .bind(&event.subject)
                .bind(&event.audience)
                .bind(&event.scope)
                .bind(event.decision.as_str())
                .bind(&event.reason)
                .bind(&event.request_id)
                .bind(&prev)
                .bind(&hash)
                .bind(&event.txn)
                .bind(&event.chain)
                .bind(&event.purpose)
                .execute(&mut **tx)
                .await?;
                prev = hash;
            }
            sqlx::query("UPDATE audit_head SET seq = $1, hash = $2 WHERE id = 1")
                .bind(seq)
                .bind(&prev)
                .execute(&mut **tx)
                .await?;
            Ok(())
        }

        async fn publish_in(
            tx: &mut Tx,
            kind: RevocationKind,
            subject: &str,
            action: RevocationAction,
            now: i64,
            expires_at: Option<i64>,
        ) -> Result<()> {
            sqlx::query(
                "INSERT INTO revocations (kind, subject, action, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(kind.as_str())
            .bind(subject)
            .bind(action.as_str())
            .bind(now)
            .bind(expires_at)
            .execute(&mut **tx)
            .await?;
            Ok(())
        }

        async fn consume_in(tx: &mut Tx, assertion: &UsedAssertion) -> Result<()> {
            let result = sqlx::query("INSERT INTO used_assertions (client_id, jti, expires_at) VALUES ($1, $2, $3)")
                .bind(&assertion.client_id)
                .bind(&assertion.jti)
                .bind(assertion.expires_at)
                .execute(&mut **tx)
                .await;
            match result {
                Ok(_) => Ok(()),
                Err(e) if StoreError::is_unique_violation(&e) => Err(StoreError::ReplayedAssertion),
                Err(e) => Err(e.into()),
            }
        }

        /// The SPIFFE IDs and permissions of every agent descended from
        /// `ancestor` through `agents.parent` (children, their children, …),
        /// rows locked on PostgreSQL. `UNION` ends the walk even if a name
        /// reused after a deletion made the parent links loop.
        async fn descendants_in(tx: &mut Tx, ancestor: &str) -> Result<Vec<AgentRow>> {
            let rows = sqlx::query(concat!(
                "SELECT * FROM agents WHERE spiffe_id IN ( \
                     WITH RECURSIVE descendant(id) AS ( \
                         SELECT spiffe_id FROM agents WHERE parent = $1 \
                         UNION SELECT a.spiffe_id FROM agents a JOIN descendant d ON a.parent = d.id) \
                     SELECT id FROM descendant) \
                 AND spiffe_id <> $1 ORDER BY spiffe_id",
                $for_update
            ))
            .bind(ancestor)
            .fetch_all(&mut **tx)
            .await?;
            rows.iter().map(agent_from_row).collect()
        }

        /// Disables every active descendant of `ancestor`, publishes an agent
        /// revocation for each and returns the audit events that report it,
        /// derived from `cause` (the ancestor's own change).
        async fn disable_descendants_in(
            tx: &mut Tx,
            ancestor: &str,
            now: i64,
            cause: &AuditEvent,
            what_happened: &str,
        ) -> Result<Vec<AuditEvent>> {
            let mut events = Vec::new();
            for child in descendants_in(tx, ancestor).await? {
                if child.status != AgentStatus::Active {
                    continue;
                }
                sqlx::query("UPDATE agents SET status = $1, updated_at = $2 WHERE spiffe_id = $3")
                    .bind(AgentStatus::Disabled.as_str())
                    .bind(now)
                    .bind(&child.id)
                    .execute(&mut **tx)
                    .await?;
                publish_in(tx, RevocationKind::Agent, &child.id, RevocationAction::Revoke, now, None).await?;
                let mut event = cause.clone();
                event.kind = "agent.revoked".into();
                event.subject.clone_from(&child.id);
                event.scope = String::new();
                event.reason = format!("its ancestor {ancestor} was {what_happened}");
                events.push(event);
            }
            Ok(events)
        }

        /// Removes from every descendant of `ancestor` the permissions that
        /// `ancestor` no longer holds, so spawned agents stay within their
        /// parent's permissions; returns the audit events that report it.
        async fn narrow_descendants_in(
            tx: &mut Tx,
            ancestor: &str,
            permissions: &[String],
            now: i64,
            cause: &AuditEvent,
        ) -> Result<Vec<AuditEvent>> {
            let mut events = Vec::new();
            for child in descendants_in(tx, ancestor).await? {
                let kept: Vec<String> =
                    child.permissions.iter().filter(|p| permissions.contains(p)).cloned().collect();
                if kept.len() == child.permissions.len() {
                    continue;
                }
                sqlx::query("UPDATE agents SET permissions = $1, updated_at = $2 WHERE spiffe_id = $3")
                    .bind(serde_json::to_string(&kept).unwrap_or_default())
                    .bind(now)
                    .bind(&child.id)
                    .execute(&mut **tx)
                    .await?;
                let mut event = cause.clone();
                event.kind = "agent.updated".into();
                event.subject.clone_from(&child.id);
                event.scope = kept.join(" ");
                event.reason = format!("changed permissions: narrowed with its ancestor {ancestor}");
                events.push(event);
            }
            Ok(events)
        }

        #[async_trait::async_trait]
        impl crate::Store for $store {
            async fn setting(&self, key: &str) -> Result<Option<String>> {
                let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(match row {
                    Some(r) => Some(r.try_get("value")?),
                    None => None,
                })
            }

            async fn init_setting(&self, key: &str, value: &str) -> Result<String> {
                let (mut tx, _writer) = self.begin().await?;
                sqlx::query("INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING")
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                let row = sqlx::query("SELECT value FROM settings WHERE key = $1")
                    .bind(key)
                    .fetch_one(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(row.try_get("value")?)
            }

            async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
                let rows = sqlx::query(
                    "SELECT kid, alg, public_jwk, sealed_private, created_at FROM signing_keys ORDER BY created_at, kid",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter()
                    .map(|r| {
                        Ok(SigningKeyRow {
                            kid: r.try_get("kid")?,
                            alg: r.try_get("alg")?,
                            public_jwk: r.try_get("public_jwk")?,
                            sealed_private: r.try_get("sealed_private")?,
                            created_at: r.try_get("created_at")?,
                        })
                    })
                    .collect()
            }

            async fn add_signing_key(&self, key: &SigningKeyRow) -> Result<()> {
                sqlx::query(
                    "INSERT INTO signing_keys (kid, alg, public_jwk, sealed_private, created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&key.kid)
                .bind(&key.alg)
                .bind(&key.public_jwk)
                .bind(&key.sealed_private)
                .bind(key.created_at)
                .execute(&self.pool)
                .await?;
                Ok(())
            }

            async fn agent(&self, name: &str) -> Result<Option<AgentRow>> {
                let row = sqlx::query("SELECT * FROM agents WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(agent_from_row).transpose()
            }

            async fn agents(&self) -> Result<Vec<AgentRow>> {
                let rows = sqlx::query("SELECT * FROM agents ORDER BY name").fetch_all(&self.pool).await?;
                rows.iter().map(agent_from_row).collect()
            }

            async fn create_agent(&self, agent: &AgentRow, audit: &AuditEvent) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                // A parent disabled, deleted or expired while this agent was being
                // spawned must not leave a usable child behind: its row is locked
                // (PostgreSQL) or the write lock held (SQLite) until the commit.
                if let Some(parent) = &agent.parent {
                    let row = sqlx::query(concat!("SELECT * FROM agents WHERE spiffe_id = $1", $for_update))
                        .bind(parent)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let usable = match row {
                        Some(r) => {
                            let p = agent_from_row(&r)?;
                            p.status == AgentStatus::Active && p.expires_at.is_none_or(|e| agent.created_at < e)
                        }
                        None => false,
                    };
                    if !usable {
                        return Err(StoreError::NotFound(format!("an active parent agent {parent}")));
                    }
                }
                let permissions = serde_json::to_string(&agent.permissions).unwrap_or_default();
                let result = sqlx::query(
                    "INSERT INTO agents (name, spiffe_id, description, owner, permissions, public_jwk, status, \
                     created_at, updated_at, bearer_allowed, expires_at, parent, tags) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                )
                .bind(&agent.name)
                .bind(&agent.id)
                .bind(&agent.description)
                .bind(&agent.owner)
                .bind(permissions)
                .bind(agent.public_jwk.to_string())
                .bind(agent.status.as_str())
                .bind(agent.created_at)
                .bind(agent.updated_at)
                .bind(i64::from(agent.bearer_allowed))
                .bind(agent.expires_at)
                .bind(agent.parent.as_deref())
                .bind(serde_json::to_string(&agent.tags).unwrap_or_default())
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
                    "SELECT action FROM revocations WHERE kind = 'agent' AND subject = $1 ORDER BY seq DESC LIMIT 1",
                )
                .bind(&agent.id)
                .fetch_optional(&mut *tx)
                .await?;
                let revoked = match last {
                    Some(row) => row.try_get::<String, _>("action")? == RevocationAction::Revoke.as_str(),
                    None => false,
                };
                if revoked {
                    let now = agent.created_at;
                    publish_in(&mut tx, RevocationKind::Agent, &agent.id, RevocationAction::Restore, now, None).await?;
                }
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn update_agent(&self, name: &str, update: &AgentUpdate, audit: &AuditEvent) -> Result<AgentRow> {
                let (mut tx, _writer) = self.begin().await?;
                let row = sqlx::query(concat!("SELECT * FROM agents WHERE name = $1", $for_update))
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                let mut agent = match row {
                    Some(r) => agent_from_row(&r)?,
                    None => return Err(StoreError::NotFound(format!("agent \"{name}\""))),
                };
                let old_status = agent.status;
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
                agent.updated_at = update.now;
                sqlx::query(
                    "UPDATE agents SET permissions = $1, description = $2, status = $3, updated_at = $4, \
                     bearer_allowed = $5, tags = $6 WHERE name = $7",
                )
                .bind(serde_json::to_string(&agent.permissions).unwrap_or_default())
                .bind(&agent.description)
                .bind(agent.status.as_str())
                .bind(agent.updated_at)
                .bind(i64::from(agent.bearer_allowed))
                .bind(serde_json::to_string(&agent.tags).unwrap_or_default())
                .bind(name)
                .execute(&mut *tx)
                .await?;
                if agent.status != old_status {
                    let action = match agent.status {
                        AgentStatus::Disabled => RevocationAction::Revoke,
                        AgentStatus::Active => RevocationAction::Restore,
                    };
                    publish_in(&mut tx, RevocationKind::Agent, &agent.id, action, update.now, None).await?;
                }
                let mut events = vec![audit.clone()];
                if let Some(p) = &update.permissions {
                    events.extend(narrow_descendants_in(&mut tx, &agent.id, p, update.now, audit).await?);
                }
                // Re-enabling never re-enables descendants: they were disabled
                // with their ancestor and stay so until enabled one by one.
                if update.status == Some(AgentStatus::Disabled) {
                    events.extend(disable_descendants_in(&mut tx, &agent.id, update.now, audit, "disabled").await?);
                }
                append_in(&mut tx, &events).await?;
                tx.commit().await?;
                Ok(agent)
            }

            async fn delete_agent(&self, name: &str, audit: &AuditEvent) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                let row = sqlx::query("DELETE FROM agents WHERE name = $1 RETURNING spiffe_id")
                    .bind(name)
                    .fetch_optional(&mut *tx)
                    .await?;
                let Some(row) = row else {
                    return Err(StoreError::NotFound(format!("agent \"{name}\"")));
                };
                let id: String = row.try_get("spiffe_id")?;
                let now = audit.time_ms / 1000;
                // The name may be registered again later, with another key: the
                // old agent's outstanding tokens must stay dead when it is.
                let outstanding = sqlx::query(
                    "SELECT jti, expires_at FROM issued_tokens \
                     WHERE (client_id = $1 OR subject = $1 OR audience = $1) AND expires_at >= $2",
                )
                .bind(&id)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                for token in &outstanding {
                    let jti: String = token.try_get("jti")?;
                    let expires_at: i64 = token.try_get("expires_at")?;
                    publish_in(&mut tx, RevocationKind::Token, &jti, RevocationAction::Revoke, now, Some(expires_at)).await?;
                }
                publish_in(&mut tx, RevocationKind::Agent, &id, RevocationAction::Revoke, now, None).await?;
                let mut events = vec![audit.clone()];
                events.extend(disable_descendants_in(&mut tx, &id, now, audit, "deleted").await?);
                append_in(&mut tx, &events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn consume_assertion(&self, assertion: &UsedAssertion) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                consume_in(&mut tx, assertion).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn issue_token(
                &self,
                assertion: &UsedAssertion,
                token: &IssuedToken,
                approval: Option<&str>,
                audit: &AuditEvent,
            ) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                consume_in(&mut tx, assertion).await?;
                // The approval is used up by this token and no other: a second
                // request racing this one waits for the row and then finds it used.
                if let Some(id) = approval {
                    let done = sqlx::query(
                        "UPDATE approvals SET status = $3 WHERE id = $1 AND status = $4 AND expires_at > $2",
                    )
                    .bind(id)
                    .bind(token.issued_at)
                    .bind(ApprovalStatus::Used.as_str())
                    .bind(ApprovalStatus::Approved.as_str())
                    .execute(&mut *tx)
                    .await?;
                    if done.rows_affected() == 0 {
                        return Err(StoreError::Stale("the approval is not approved, already used or expired".into()));
                    }
                }
                sqlx::query(
                    "INSERT INTO issued_tokens (jti, client_id, subject, audience, scope, issued_at, expires_at, \
                     parent_jti, txn) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&token.jti)
                .bind(&token.client_id)
                .bind(&token.subject)
                .bind(&token.audience)
                .bind(&token.scope)
                .bind(token.issued_at)
                .bind(token.expires_at)
                .bind(token.parent_jti.as_deref())
                .bind(token.txn.as_deref())
                .execute(&mut *tx)
                .await?;
                // A parent revoked while this exchange was under way must not
                // leave an unrevoked child behind.
                if let Some(parent) = &token.parent_jti {
                    let revoked = sqlx::query("SELECT 1 AS one FROM revocations WHERE kind = 'token' AND subject = $1 LIMIT 1")
                        .bind(parent)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if revoked.is_some() {
                        return Err(StoreError::Conflict("a revocation of the subject token".into()));
                    }
                }
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn token_revoked(&self, jti: &str) -> Result<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM revocations WHERE kind = 'token' AND subject = $1 LIMIT 1")
                    .bind(jti)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn revoke_token(&self, jti: &str, expires_at: i64, audit: &AuditEvent) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                let now = audit.time_ms / 1000;
                publish_in(&mut tx, RevocationKind::Token, jti, RevocationAction::Revoke, now, Some(expires_at)).await?;
                let descendants = sqlx::query(
                    "WITH RECURSIVE descendant(jti) AS ( \
                         SELECT jti FROM issued_tokens WHERE parent_jti = $1 \
                         UNION SELECT t.jti FROM issued_tokens t JOIN descendant d ON t.parent_jti = d.jti) \
                     SELECT t.jti, t.expires_at FROM issued_tokens t JOIN descendant d ON t.jti = d.jti \
                     WHERE t.expires_at >= $2",
                )
                .bind(jti)
                .bind(now)
                .fetch_all(&mut *tx)
                .await?;
                for row in &descendants {
                    let child: String = row.try_get("jti")?;
                    let child_exp: i64 = row.try_get("expires_at")?;
                    publish_in(&mut tx, RevocationKind::Token, &child, RevocationAction::Revoke, now, Some(child_exp)).await?;
                }
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn revoke_task(&self, txn: &str, expires_at: i64, audit: &AuditEvent) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                let now = audit.time_ms / 1000;
                publish_in(&mut tx, RevocationKind::Task, txn, RevocationAction::Revoke, now, Some(expires_at)).await?;
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn task_revoked(&self, txn: &str) -> Result<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM revocations WHERE kind = 'task' AND subject = $1 LIMIT 1")
                    .bind(txn)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn revoke_key(&self, jkt: &str, audit: &AuditEvent) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                let now = audit.time_ms / 1000;
                publish_in(&mut tx, RevocationKind::Key, jkt, RevocationAction::Revoke, now, None).await?;
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn key_revoked(&self, jkt: &str) -> Result<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM revocations WHERE kind = 'key' AND subject = $1 LIMIT 1")
                    .bind(jkt)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn task_exists(&self, txn: &str) -> Result<bool> {
                let row = sqlx::query("SELECT 1 AS one FROM issued_tokens WHERE txn = $1 LIMIT 1")
                    .bind(txn)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some())
            }

            async fn put_delegation(&self, grant: &DelegationRow, audit: &AuditEvent) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                sqlx::query(
                    "INSERT INTO delegations (from_agent, to_agent, permissions, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (from_agent, to_agent) DO UPDATE SET permissions = excluded.permissions, \
                     created_at = excluded.created_at",
                )
                .bind(&grant.from)
                .bind(&grant.to)
                .bind(serde_json::to_string(&grant.permissions).unwrap_or_default())
                .bind(grant.created_at)
                .execute(&mut *tx)
                .await?;
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn delegation(&self, from: &str, to: &str) -> Result<Option<DelegationRow>> {
                let row = sqlx::query("SELECT * FROM delegations WHERE from_agent = $1 AND to_agent = $2")
                    .bind(from)
                    .bind(to)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(delegation_from_row).transpose()
            }

            async fn delegations(&self, from: &str) -> Result<Vec<DelegationRow>> {
                let rows = sqlx::query("SELECT * FROM delegations WHERE from_agent = $1 ORDER BY to_agent")
                    .bind(from)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(delegation_from_row).collect()
            }

            async fn delete_delegation(&self, from: &str, to: &str, audit: &AuditEvent) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                let done = sqlx::query("DELETE FROM delegations WHERE from_agent = $1 AND to_agent = $2")
                    .bind(from)
                    .bind(to)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("a delegation from {from} to {to}")));
                }
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn add_policy_set(
                &self,
                files: &str,
                digest: &str,
                policy_count: i64,
                now: i64,
                audit: &AuditEvent,
            ) -> Result<i64> {
                let (mut tx, _writer) = self.begin().await?;
                let row = sqlx::query(
                    "INSERT INTO policy_sets (files, digest, policy_count, created_at) VALUES ($1, $2, $3, $4) \
                     RETURNING version",
                )
                .bind(files)
                .bind(digest)
                .bind(policy_count)
                .bind(now)
                .fetch_one(&mut *tx)
                .await?;
                let version: i64 = row.try_get("version")?;
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(version)
            }

            async fn policy_sets(&self) -> Result<Vec<PolicySetRow>> {
                let rows = sqlx::query(
                    "SELECT p.version, p.files, p.digest, p.policy_count, p.created_at, a.version AS active_version \
                     FROM policy_sets p LEFT JOIN policy_active a ON a.version = p.version ORDER BY p.version DESC",
                )
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(policy_set_from_row).collect()
            }

            async fn policy_set(&self, version: i64) -> Result<Option<PolicySetRow>> {
                let row = sqlx::query(
                    "SELECT p.version, p.files, p.digest, p.policy_count, p.created_at, a.version AS active_version \
                     FROM policy_sets p LEFT JOIN policy_active a ON a.version = p.version WHERE p.version = $1",
                )
                .bind(version)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(policy_set_from_row).transpose()
            }

            async fn active_policy_set(&self) -> Result<Option<PolicySetRow>> {
                let row = sqlx::query(
                    "SELECT p.version, p.files, p.digest, p.policy_count, p.created_at, a.version AS active_version \
                     FROM policy_active a JOIN policy_sets p ON p.version = a.version WHERE a.id = 1",
                )
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(policy_set_from_row).transpose()
            }

            async fn activate_policy_set(&self, version: i64, now: i64, audit: &AuditEvent) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                let exists = sqlx::query("SELECT 1 AS one FROM policy_sets WHERE version = $1")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
                if exists.is_none() {
                    return Err(StoreError::NotFound(format!("policy set version {version}")));
                }
                sqlx::query(
                    "INSERT INTO policy_active (id, version, activated_at) VALUES (1, $1, $2) \
                     ON CONFLICT (id) DO UPDATE SET version = excluded.version, activated_at = excluded.activated_at",
                )
                .bind(version)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                publish_in(&mut tx, RevocationKind::Policy, &version.to_string(), RevocationAction::Revoke, now, None)
                    .await?;
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_approval(&self, approval: &ApprovalRow, audit: &AuditEvent) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                let result = sqlx::query(
                    "INSERT INTO approvals (id, agent, audience, scope, txn, purpose, grant_type, policies, approvers, \
                     status, created_at, expires_at, last_poll_at, decided_by, decided_at, reason, subject) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
                )
                .bind(&approval.id)
                .bind(&approval.agent)
                .bind(&approval.audience)
                .bind(&approval.scope)
                .bind(&approval.txn)
                .bind(&approval.purpose)
                .bind(&approval.grant_type)
                .bind(&approval.policies)
                .bind(approval.approvers.as_deref())
                .bind(approval.status.as_str())
                .bind(approval.created_at)
                .bind(approval.expires_at)
                .bind(approval.last_poll_at)
                .bind(approval.decided_by.as_deref())
                .bind(approval.decided_at)
                .bind(approval.reason.as_deref())
                .bind(&approval.subject)
                .execute(&mut *tx)
                .await;
                match result {
                    Ok(_) => {}
                    Err(e) if StoreError::is_unique_violation(&e) => {
                        return Err(StoreError::Conflict(format!("approval {}", approval.id)));
                    }
                    Err(e) => return Err(e.into()),
                }
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn approval(&self, id: &str) -> Result<Option<ApprovalRow>> {
                let row = sqlx::query("SELECT * FROM approvals WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?;
                row.as_ref().map(approval_from_row).transpose()
            }

            async fn pending_approval(&self, request: &ApprovalRequest<'_>, now: i64) -> Result<Option<ApprovalRow>> {
                let row = sqlx::query(
                    "SELECT * FROM approvals WHERE agent = $1 AND subject = $2 AND audience = $3 AND scope = $4 \
                     AND purpose = $5 AND grant_type = $6 AND ($7 IS NULL OR txn = $7) AND status = $8 AND expires_at > $9 \
                     ORDER BY created_at DESC, id LIMIT 1",
                )
                .bind(request.agent)
                .bind(request.subject)
                .bind(request.audience)
                .bind(request.scope)
                .bind(request.purpose)
                .bind(request.grant_type)
                .bind(request.txn)
                .bind(ApprovalStatus::Pending.as_str())
                .bind(now)
                .fetch_optional(&self.pool)
                .await?;
                row.as_ref().map(approval_from_row).transpose()
            }

            async fn pending_approval_count(&self, agent: &str, now: i64) -> Result<i64> {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM approvals WHERE agent = $1 AND status = $2 AND expires_at > $3",
                )
                .bind(agent)
                .bind(ApprovalStatus::Pending.as_str())
                .bind(now)
                .fetch_one(&self.pool)
                .await?;
                Ok(row.try_get("n")?)
            }

            async fn approvals(&self, status: Option<ApprovalStatus>, limit: i64) -> Result<Vec<ApprovalRow>> {
                let rows = sqlx::query(
                    "SELECT * FROM approvals WHERE ($1 IS NULL OR status = $1) ORDER BY created_at DESC, id LIMIT $2",
                )
                .bind(status.map(ApprovalStatus::as_str))
                .bind(limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(approval_from_row).collect()
            }

            async fn poll_approval(&self, id: &str, now: i64, interval: i64) -> Result<bool> {
                let (mut tx, _writer) = self.begin().await?;
                // One statement tests and records the poll, so of two racing
                // polls only one passes.
                let done = sqlx::query("UPDATE approvals SET last_poll_at = $2 WHERE id = $1 AND last_poll_at <= $2 - $3")
                    .bind(id)
                    .bind(now)
                    .bind(interval)
                    .execute(&mut *tx)
                    .await?;
                if done.rows_affected() == 0 {
                    let exists = sqlx::query("SELECT 1 AS one FROM approvals WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    if exists.is_none() {
                        return Err(StoreError::NotFound(format!("approval {id}")));
                    }
                    return Ok(false);
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn decide_approval(
                &self,
                id: &str,
                decision: &ApprovalDecision,
                audit: &AuditEvent,
            ) -> Result<ApprovalRow> {
                let (mut tx, _writer) = self.begin().await?;
                let row = sqlx::query(
                    "UPDATE approvals SET status = $2, decided_by = $3, decided_at = $4, reason = $5 \
                     WHERE id = $1 AND status = $6 AND expires_at > $4 RETURNING *",
                )
                .bind(id)
                .bind(decision.status.as_str())
                .bind(&decision.by)
                .bind(decision.now)
                .bind(decision.reason.as_deref())
                .bind(ApprovalStatus::Pending.as_str())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(row) = row else {
                    let current = sqlx::query("SELECT * FROM approvals WHERE id = $1")
                        .bind(id)
                        .fetch_optional(&mut *tx)
                        .await?;
                    return Err(match current.as_ref().map(approval_from_row).transpose()? {
                        None => StoreError::NotFound(format!("approval {id}")),
                        Some(a) if a.status != ApprovalStatus::Pending => {
                            StoreError::Stale(format!("the approval is no longer pending (it was {})", a.status.as_str()))
                        }
                        Some(_) => StoreError::Stale("the approval has expired".into()),
                    });
                };
                let approval = approval_from_row(&row)?;
                append_in(&mut tx, std::slice::from_ref(audit)).await?;
                tx.commit().await?;
                Ok(approval)
            }

            async fn task_records(&self, txn: &str) -> Result<Vec<AuditRecord>> {
                let rows = sqlx::query("SELECT * FROM audit_log WHERE txn = $1 ORDER BY seq LIMIT 10000")
                    .bind(txn)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(audit_from_row).collect()
            }

            async fn revocations_since(&self, since: i64, limit: i64) -> Result<Vec<RevocationRow>> {
                let rows = sqlx::query("SELECT * FROM revocations WHERE seq > $1 ORDER BY seq LIMIT $2")
                    .bind(since)
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?;
                rows.iter().map(revocation_from_row).collect()
            }

            async fn purge_expired(&self, now: i64) -> Result<u64> {
                let done = sqlx::query("DELETE FROM used_assertions WHERE expires_at < $1")
                    .bind(now)
                    .execute(&self.pool)
                    .await?;
                Ok(done.rows_affected())
            }

            async fn append_audit(&self, events: &[AuditEvent]) -> Result<()> {
                let (mut tx, _writer) = self.begin().await?;
                append_in(&mut tx, events).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn audit_records(&self, filter: &AuditFilter) -> Result<Vec<AuditRecord>> {
                let rows = sqlx::query(
                    "SELECT * FROM audit_log WHERE seq > $1 \
                     AND ($2 IS NULL OR actor = $2 OR subject = $2 OR audience = $2) \
                     AND ($3 IS NULL OR kind = $3) ORDER BY seq LIMIT $4",
                )
                .bind(filter.since)
                .bind(filter.agent.as_deref())
                .bind(filter.kind.as_deref())
                .bind(filter.limit)
                .fetch_all(&self.pool)
                .await?;
                rows.iter().map(audit_from_row).collect()
            }

            async fn audit_head(&self) -> Result<(i64, String)> {
                let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1").fetch_one(&self.pool).await?;
                Ok((row.try_get("seq")?, row.try_get("hash")?))
            }
        }
    };
}

pub(crate) use sql_store;
