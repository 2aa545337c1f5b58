//! On-behalf-of calls: a handler that received a verified request gets a
//! client for the next hop that exchanges the incoming token (RFC 8693), so
//! the subject, the task and the actor chain flow without the handler
//! touching tokens.

use std::collections::HashMap;
use std::sync::Mutex;

use agentauth_core::{Scope, SpiffeId, unix_now};

use crate::{AccessToken, Client, SdkError, VerifiedAgent};

/// A client acting for the caller of the current request.
#[derive(Debug)]
pub struct OnBehalfOf {
    client: Client,
    subject_token: String,
    subject_exp: i64,
    cache: Mutex<HashMap<(SpiffeId, Scope), AccessToken>>,
}

impl Client {
    /// A client for the next hop that acts on behalf of `caller`, whose
    /// verified token it exchanges as needed.
    pub fn on_behalf_of(&self, caller: &VerifiedAgent) -> OnBehalfOf {
        OnBehalfOf {
            client: self.clone(),
            subject_token: caller.token.0.clone(),
            subject_exp: caller.claims.exp,
            cache: Mutex::new(HashMap::new()),
        }
    }
}

impl OnBehalfOf {
    /// A token for `audience` with `scope`, exchanged from the caller's token
    /// (cached while it is fresh; it never outlives the caller's token).
    pub async fn token(&self, audience: &SpiffeId, scope: &Scope) -> Result<AccessToken, SdkError> {
        let key = (audience.clone(), scope.clone());
        let now = unix_now();
        let cached = self.cache.lock().expect("lock").get(&key).cloned();
        if let Some(token) = cached.filter(|t| t.expires_at - 5 > now) {
            return Ok(token);
        }
        if self.subject_exp <= now {
            return Err(SdkError::TokenRefused {
                status: 400,
                error: "invalid_request".into(),
                description: "the caller's token has expired; nothing can be delegated".into(),
            });
        }
        let fresh = self
            .client
            .exchange(&self.subject_token, audience, scope)
            .await?;
        self.cache.lock().expect("lock").insert(key, fresh.clone());
        Ok(fresh)
    }

    /// Sends `request` to `audience` with a delegated token carrying `scope`,
    /// signed with this agent's key.
    pub async fn call(
        &self,
        request: reqwest::RequestBuilder,
        audience: &SpiffeId,
        scope: &Scope,
    ) -> Result<reqwest::Response, SdkError> {
        let token = self.token(audience, scope).await?;
        self.client.send(request, &token).await
    }
}
