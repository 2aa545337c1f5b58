//! `GET /v1/revocations?since=SEQ`: the revocation list verifiers poll. It
//! holds only token IDs and agent SPIFFE IDs, so it is public like a CRL.

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::AuthorityError;
use crate::server::AppState;

/// Most entries one page returns.
const PAGE: i64 = 1000;

/// Query of the feed.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Since {
    since: Option<i64>,
}

/// Entries after `since`, oldest first; `more` says another page is waiting.
pub(crate) async fn since(
    State(s): State<AppState>,
    query: Result<Query<Since>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, AuthorityError> {
    let Query(q) = query.map_err(|e| AuthorityError::InvalidRequest(format!("bad query: {e}")))?;
    let since = q.since.unwrap_or(0).max(0);
    let entries = s.store.revocations_since(since, PAGE + 1).await?;
    let more = entries.len() as i64 > PAGE;
    let entries = &entries[..entries.len().min(PAGE as usize)];
    let last = entries.last().map_or(since, |e| e.seq);
    Ok(Json(
        json!({"revocations": entries, "last_seq": last, "more": more}),
    ))
}
