//! The agent's side of getting and presenting tokens.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use agentauth_api::{
    ACCESS_TOKEN_TYPE, OAuthError, TOKEN_EXCHANGE_GRANT, TokenRequest, TokenResponse,
};
use agentauth_core::{
    ClientAssertionClaims, Scope, SignatureParams, SignedComponents, SigningKey, SpiffeId,
    content_digest, create_dpop_proof, random_b64, sign_request, signature_nonce, unix_now,
};
use tokio::sync::OnceCell;

use crate::{Endpoint, Metadata, SdkError};

/// How long a request signature stays valid (RFC 9421 `expires` - `created`).
const SIGNATURE_LIFETIME_SECS: i64 = 60;

/// An access token as the token endpoint returned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessToken {
    /// The JWT. Treat it as a secret: never log it whole.
    pub token: String,
    /// Granted scope.
    pub scope: Scope,
    /// Expiry, seconds since the epoch (by our clock).
    pub expires_at: i64,
    /// When we got it.
    pub issued_at: i64,
}

impl AccessToken {
    /// Whether to fetch a new one rather than use this: within the last fifth
    /// of its lifetime, or 10 s before expiry, whichever comes first.
    fn needs_refresh(&self, now: i64) -> bool {
        let lifetime = self.expires_at - self.issued_at;
        now >= self.expires_at - 10 || now >= self.issued_at + lifetime * 4 / 5
    }
}

/// A token request that waits for a person's approval (`authorization_pending`).
/// Pass it to [`Client::wait_for_approval`], which repeats the same request
/// with the `approval_id` until a person decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingApproval {
    /// What the authority calls the approval; people decide on it by this ID.
    pub approval_id: String,
    /// Seconds to wait between polls.
    pub interval: i64,
    /// When the approval expires, seconds since the epoch (by our clock).
    pub expires_at: i64,
    /// The original token request, repeated on each poll (boxed: errors stay small).
    request: Box<TokenRequest>,
    /// Where the token goes in the cache once issued.
    cache_key: Option<(SpiffeId, Scope)>,
}

/// Longest pause between polls, whatever `slow_down` asks.
const MAX_POLL_INTERVAL_SECS: i64 = 60;

/// An agent's client: its identity and private key, the authority it trusts,
/// and a token cache keyed by (audience, scope).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    authority_url: String,
    agent_id: SpiffeId,
    key: SigningKey,
    metadata: OnceCell<Metadata>,
    cache: Mutex<HashMap<(SpiffeId, Scope), AccessToken>>,
    permissions: Mutex<Option<Scope>>,
    dpop: std::sync::atomic::AtomicBool,
}

impl Client {
    /// A client for `agent_id` holding `key`, talking to the authority at `authority_url`.
    pub fn new(authority_url: &str, agent_id: SpiffeId, key: SigningKey) -> Self {
        Self::with_http(authority_url, agent_id, key, reqwest::Client::new())
    }

    /// The same over `http`: a client that trusts the authority's CA (an
    /// authority on `serve --tls`), or presents a client certificate.
    pub fn with_http(
        authority_url: &str,
        agent_id: SpiffeId,
        key: SigningKey,
        http: reqwest::Client,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                http,
                authority_url: authority_url.trim_end_matches('/').to_owned(),
                agent_id,
                key,
                metadata: OnceCell::new(),
                cache: Mutex::new(HashMap::new()),
                permissions: Mutex::new(None),
                dpop: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// Declares the permissions this agent was registered with, so that
    /// [`Client::call`] refuses early, before any token request, what the
    /// agent cannot do. The authority and the receiver still check.
    pub fn with_permissions(self, permissions: Scope) -> Self {
        *self.inner.permissions.lock().expect("lock") = Some(permissions);
        self
    }

    /// This agent's SPIFFE ID.
    pub fn agent_id(&self) -> &SpiffeId {
        &self.inner.agent_id
    }

    /// The authority's metadata, fetched once.
    pub async fn metadata(&self) -> Result<&Metadata, SdkError> {
        self.inner
            .metadata
            .get_or_try_init(|| Metadata::fetch(&self.inner.http, &self.inner.authority_url))
            .await
    }

    /// A token for `audience` with `scope`, from the cache while fresh.
    pub async fn token(&self, audience: &SpiffeId, scope: &Scope) -> Result<AccessToken, SdkError> {
        let key = (audience.clone(), scope.clone());
        let now = unix_now();
        if let Some(hit) = self
            .inner
            .cache
            .lock()
            .expect("lock")
            .get(&key)
            .filter(|t| !t.needs_refresh(now))
        {
            return Ok(hit.clone());
        }
        let fresh = match self.fetch_token(audience, scope, None).await {
            Err(SdkError::ApprovalPending(mut pending)) => {
                pending.cache_key = Some(key);
                return Err(SdkError::ApprovalPending(pending));
            }
            other => other?,
        };
        self.inner
            .cache
            .lock()
            .expect("lock")
            .insert(key, fresh.clone());
        Ok(fresh)
    }

    /// Drops every cached token, so the next call asks the authority again.
    pub fn clear_cache(&self) {
        self.inner.cache.lock().expect("lock").clear();
    }

    /// Asks the token endpoint for a new token (client_credentials,
    /// private_key_jwt), bypassing the cache; `expires_in` asks for a lifetime.
    pub async fn fetch_token(
        &self,
        audience: &SpiffeId,
        scope: &Scope,
        expires_in: Option<i64>,
    ) -> Result<AccessToken, SdkError> {
        let request = TokenRequest {
            grant_type: Some("client_credentials".into()),
            resource: Some(audience.to_string()),
            scope: Some(scope.to_string()),
            expires_in: expires_in.map(|s| s.to_string()),
            ..TokenRequest::default()
        };
        self.token_request(&request).await
    }

    /// Exchanges `subject_token`, a token addressed to this agent, for one
    /// addressed to `audience` with `scope` (RFC 8693): same subject and task,
    /// this agent as the new actor, bound to this agent's key.
    pub async fn exchange(
        &self,
        subject_token: &str,
        audience: &SpiffeId,
        scope: &Scope,
    ) -> Result<AccessToken, SdkError> {
        let request = TokenRequest {
            grant_type: Some(TOKEN_EXCHANGE_GRANT.into()),
            subject_token: Some(subject_token.into()),
            subject_token_type: Some(ACCESS_TOKEN_TYPE.into()),
            resource: Some(audience.to_string()),
            scope: Some(scope.to_string()),
            ..TokenRequest::default()
        };
        self.token_request(&request).await
    }

    /// Waits for a person to decide on `pending`: repeats the token request
    /// with its `approval_id` every `interval` seconds (longer after a
    /// `slow_down`) until the token is issued, the request is denied
    /// ([`SdkError::ApprovalDenied`]), the approval expires
    /// ([`SdkError::ApprovalExpired`]) or `give_up_after` passes
    /// ([`SdkError::ApprovalTimedOut`]). A token fetched through
    /// [`Client::token`] or [`Client::call`] is cached as usual.
    pub async fn wait_for_approval(
        &self,
        pending: &PendingApproval,
        give_up_after: std::time::Duration,
    ) -> Result<AccessToken, SdkError> {
        let deadline = tokio::time::Instant::now() + give_up_after;
        let mut interval = pending.interval.clamp(1, MAX_POLL_INTERVAL_SECS);
        let request = TokenRequest {
            approval_id: Some(pending.approval_id.clone()),
            ..(*pending.request).clone()
        };
        loop {
            let pause = std::time::Duration::from_secs(interval as u64);
            if tokio::time::Instant::now() + pause > deadline {
                return Err(SdkError::ApprovalTimedOut(pending.approval_id.clone()));
            }
            tokio::time::sleep(pause).await;
            match self.token_request(&request).await {
                Ok(token) => {
                    if let Some(key) = &pending.cache_key {
                        self.inner
                            .cache
                            .lock()
                            .expect("lock")
                            .insert(key.clone(), token.clone());
                    }
                    return Ok(token);
                }
                Err(SdkError::ApprovalPending(_)) => {}
                Err(SdkError::TokenRefused {
                    error, description, ..
                }) => match error.as_str() {
                    "slow_down" => interval = (interval + 5).min(MAX_POLL_INTERVAL_SECS),
                    "access_denied" => return Err(SdkError::ApprovalDenied(description)),
                    "expired_token" => return Err(SdkError::ApprovalExpired(description)),
                    _ => {
                        return Err(SdkError::TokenRefused {
                            status: 400,
                            error,
                            description,
                        });
                    }
                },
                Err(other) => return Err(other),
            }
        }
    }

    /// Posts a token request authenticated with a fresh client assertion.
    async fn token_request(&self, request: &TokenRequest) -> Result<AccessToken, SdkError> {
        let metadata = self.metadata().await?;
        let now = unix_now();
        let assertion = ClientAssertionClaims::sign(
            &self.inner.key,
            self.inner.agent_id.as_str(),
            &metadata.issuer,
            random_b64(16),
            now,
        );
        let form = TokenRequest {
            client_assertion_type: Some(agentauth_core::CLIENT_ASSERTION_TYPE.into()),
            client_assertion: Some(assertion),
            ..request.clone()
        };
        let mut post = self.inner.http.post(&metadata.token_endpoint).form(&form);
        if self.uses_dpop() {
            let proof =
                create_dpop_proof(&self.inner.key, "POST", &metadata.token_endpoint, None, now);
            post = post.header("dpop", proof);
        }
        let response = post
            .send()
            .await
            .map_err(SdkError::unreachable(Endpoint::Token))?;
        token_answer(response, request, now).await
    }

    /// RFC 8705 `tls_client_auth`, against an authority on `serve --tls`:
    /// the request goes over a mutual-TLS connection presenting `source`'s
    /// current SVID (this agent's), with no assertion, and the token is
    /// bound to that certificate (`cnf.x5t#S256`): good only over
    /// connections that present it. Not cached; ask again when
    /// [`SvidSource::leaf`](crate::mtls::SvidSource::leaf) changes.
    pub async fn fetch_certificate_bound_token(
        &self,
        source: &std::sync::Arc<crate::mtls::SvidSource>,
        audience: &SpiffeId,
        scope: &Scope,
    ) -> Result<AccessToken, SdkError> {
        let metadata = self.metadata().await?;
        let mut tls = crate::mtls::client_config(
            source,
            crate::mtls::AllowedPeers::Only(vec![metadata.authority_id.clone()]),
        )?;
        // A fresh handshake each time, so the certificate presented is the
        // source's current one.
        tls.resumption = rustls::client::Resumption::disabled();
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .pool_max_idle_per_host(0)
            .build()
            .map_err(SdkError::unreachable(Endpoint::Token))?;
        let request = TokenRequest {
            grant_type: Some("client_credentials".into()),
            client_id: Some(self.inner.agent_id.to_string()),
            resource: Some(audience.to_string()),
            scope: Some(scope.to_string()),
            ..TokenRequest::default()
        };
        let now = unix_now();
        let response = http
            .post(&metadata.token_endpoint)
            .form(&request)
            .send()
            .await
            .map_err(SdkError::unreachable(Endpoint::Token))?;
        token_answer(response, &request, now).await
    }

    /// Sends `request` to the agent `audience` with a token carrying `scope`.
    /// If permissions were declared, a scope outside them is refused here first.
    pub async fn call(
        &self,
        request: reqwest::RequestBuilder,
        audience: &SpiffeId,
        scope: &Scope,
    ) -> Result<reqwest::Response, SdkError> {
        if let Some(held) = self.inner.permissions.lock().expect("lock").as_ref()
            && let Some(missing) = scope.missing_from(held).into_iter().next()
        {
            return Err(SdkError::PermissionNotHeld(missing));
        }
        let token = self.token(audience, scope).await?;
        self.send(request, &token).await
    }

    /// Sends `request` with `token`, signed (RFC 9421) with this agent's key:
    /// method, target URI, Authorization and the body's Content-Digest.
    pub async fn send(
        &self,
        request: reqwest::RequestBuilder,
        token: &AccessToken,
    ) -> Result<reqwest::Response, SdkError> {
        if !self.uses_dpop() {
            let mut request = request.bearer_auth(&token.token).build()?;
            self.sign(&mut request)?;
            return Ok(self.inner.http.execute(request).await?);
        }
        let mut request = request
            .header(http::header::AUTHORIZATION, format!("DPoP {}", token.token))
            .build()?;
        let proof = create_dpop_proof(
            &self.inner.key,
            request.method().as_str(),
            request.url().as_str(),
            Some(&token.token),
            unix_now(),
        );
        let proof = http::HeaderValue::from_str(&proof).map_err(|_| SdkError::UnsignableBody)?;
        request.headers_mut().insert("dpop", proof);
        Ok(self.inner.http.execute(request).await?)
    }

    /// Uses DPoP (RFC 9449) instead of HTTP message signatures: token requests
    /// carry a DPoP proof (so tokens are bound to this agent's key as DPoP
    /// tokens) and calls send `Authorization: DPoP` with a fresh proof.
    pub fn with_dpop(self) -> Self {
        self.inner
            .dpop
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self
    }

    fn uses_dpop(&self) -> bool {
        self.inner.dpop.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Adds `Content-Digest`, `Signature-Input` and `Signature` to a request
    /// that already carries its `Authorization` header.
    pub fn sign(&self, request: &mut reqwest::Request) -> Result<(), SdkError> {
        let body: &[u8] = match request.body() {
            None => &[],
            Some(body) => body.as_bytes().ok_or(SdkError::UnsignableBody)?,
        };
        let digest = content_digest(body);
        let authorization = request
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let now = unix_now();
        let params = SignatureParams {
            created: now,
            expires: now + SIGNATURE_LIFETIME_SECS,
            nonce: signature_nonce(),
            keyid: self.inner.key.public_jwk().thumbprint().0,
            alg: self.inner.key.alg(),
        };
        let target_uri = request.url().to_string();
        let parts = SignedComponents {
            method: request.method().as_str(),
            target_uri: &target_uri,
            authorization: &authorization,
            content_digest: &digest,
        };
        let signed = sign_request(&parts, &params, &self.inner.key)?;
        let headers = request.headers_mut();
        for (name, value) in [
            ("content-digest", digest),
            ("signature-input", signed.signature_input),
            ("signature", signed.signature),
        ] {
            let value =
                http::HeaderValue::from_str(&value).map_err(|_| SdkError::UnsignableBody)?;
            headers.insert(name, value);
        }
        Ok(())
    }

    /// The HTTP client, for building requests to pass to [`Client::call`].
    pub fn http(&self) -> &reqwest::Client {
        &self.inner.http
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("agent_id", &self.inner.agent_id.as_str())
            .finish_non_exhaustive()
    }
}

/// The token endpoint's answer to `request` (sent at `now`): the token, a
/// pending approval, or the refusal.
async fn token_answer(
    response: reqwest::Response,
    request: &TokenRequest,
    now: i64,
) -> Result<AccessToken, SdkError> {
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(SdkError::unreachable(Endpoint::Token))?;
    if !status.is_success() {
        let err: OAuthError =
            serde_json::from_slice(&body).map_err(|_| SdkError::AuthorityStatus {
                endpoint: Endpoint::Token,
                status: status.as_u16(),
            })?;
        if let ("authorization_pending", Some(approval_id)) =
            (err.error.as_str(), err.approval_id.clone())
        {
            return Err(SdkError::ApprovalPending(PendingApproval {
                approval_id,
                interval: err.interval.unwrap_or(5),
                expires_at: now + err.expires_in.unwrap_or(0),
                request: Box::new(TokenRequest {
                    approval_id: None,
                    ..request.clone()
                }),
                cache_key: None,
            }));
        }
        return Err(SdkError::TokenRefused {
            status: status.as_u16(),
            error: err.error,
            description: err.error_description,
        });
    }
    let ok: TokenResponse =
        serde_json::from_slice(&body).map_err(SdkError::unreadable(Endpoint::Token))?;
    let scope = Scope::parse(&ok.scope).map_err(SdkError::unreadable(Endpoint::Token))?;
    Ok(AccessToken {
        token: ok.access_token,
        scope,
        expires_at: now + ok.expires_in,
        issued_at: now,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_refresh_in_the_last_fifth_of_their_life() {
        let t = AccessToken {
            token: String::new(),
            scope: Scope::default(),
            issued_at: 1_000,
            expires_at: 1_300,
        };
        assert!(!t.needs_refresh(1_000));
        assert!(!t.needs_refresh(1_239));
        assert!(t.needs_refresh(1_240));
        let short = AccessToken {
            issued_at: 1_000,
            expires_at: 1_020,
            ..t
        };
        assert!(short.needs_refresh(1_010));
    }
}
