//! How CLI commands reach the authority: its URL and the admin credential.

use std::path::PathBuf;

use agentauth_api::OAuthError;
use agentauth_authority::ADMIN_TOKEN_FILE;
use anyhow::{Context as _, anyhow, bail};
use clap::Args;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Where the authority is and how to prove admin rights.
#[derive(Debug, Clone, Args)]
pub(crate) struct Connection {
    /// Base URL of the authority.
    #[arg(long, env = "AGENTAUTH_URL", default_value = "http://127.0.0.1:8080")]
    pub(crate) authority: String,
    /// Data dir whose admin-token file is used when AGENTAUTH_ADMIN_TOKEN is unset.
    #[arg(long, env = "AGENTAUTH_DATA_DIR", default_value = "./agentauth-data")]
    pub(crate) data_dir: PathBuf,
}

impl Connection {
    /// The admin credential from `AGENTAUTH_ADMIN_TOKEN` or `<data-dir>/admin-token`.
    pub(crate) fn admin_token(&self) -> anyhow::Result<String> {
        if let Ok(token) = std::env::var("AGENTAUTH_ADMIN_TOKEN") {
            return Ok(token.trim().to_owned());
        }
        let path = self.data_dir.join(ADMIN_TOKEN_FILE);
        let token = std::fs::read_to_string(&path).with_context(|| {
            format!("no admin credential: set AGENTAUTH_ADMIN_TOKEN or point --data-dir at the authority's data dir ({} is unreadable)", path.display())
        })?;
        Ok(token.trim().to_owned())
    }

    /// Calls the admin API without a body and reads the answer as `T`, or
    /// fails with the authority's error as one line.
    pub(crate) async fn admin<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
    ) -> anyhow::Result<T> {
        self.admin_answer(method, path, None::<&()>).await?.read()
    }

    /// [`Connection::admin`] with a JSON body.
    pub(crate) async fn admin_with<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.admin_answer(method, path, Some(body)).await?.read()
    }

    /// Calls the admin API and returns its answer whatever the status, for
    /// callers that read an error's body; fails only when the authority
    /// cannot be reached or there is no admin credential.
    pub(crate) async fn admin_answer<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> anyhow::Result<Answer> {
        let url = format!("{}{path}", self.authority.trim_end_matches('/'));
        let mut request = reqwest::Client::new()
            .request(method, &url)
            .bearer_auth(self.admin_token()?);
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request
            .send()
            .await
            .with_context(|| format!("cannot reach the authority at {}", self.authority))?;
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Ok(Answer { status, text })
    }
}

/// One answer of the admin API, successful or not.
#[derive(Debug)]
pub(crate) struct Answer {
    /// The HTTP status.
    pub(crate) status: StatusCode,
    /// The body as sent.
    text: String,
}

impl Answer {
    /// The error body of a refusal; `None` on success, or when the body is
    /// no OAuth error.
    pub(crate) fn refusal(&self) -> Option<OAuthError> {
        if self.status.is_success() {
            return None;
        }
        serde_json::from_str(&self.text).ok()
    }

    /// The answer read as `T` (an empty body reads as `null`), or the
    /// authority's error as one line.
    pub(crate) fn read<T: DeserializeOwned>(self) -> anyhow::Result<T> {
        if !self.status.is_success() {
            let (code, description) = match self.refusal() {
                Some(e) => (e.error, e.error_description),
                None => ("error".to_owned(), self.text),
            };
            bail!(
                "the authority refused ({} {code}): {description}",
                self.status.as_u16()
            );
        }
        let text = if self.text.is_empty() {
            "null"
        } else {
            &self.text
        };
        serde_json::from_str(text).map_err(|e| anyhow!("the authority sent invalid JSON: {e}"))
    }
}
