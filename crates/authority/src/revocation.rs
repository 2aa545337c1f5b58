//! The revocation feed. It holds only token IDs, task IDs and agent SPIFFE
//! IDs, so both forms are public like a CRL:
//!
//! - `GET /v1/revocations?since=SEQ`: pages of entries, for verifiers that poll;
//! - `GET /v1/revocations/stream`: the same entries as Server-Sent Events, one
//!   event per entry (`id: <seq>`, `event: revocation`, `data: <json>`),
//!   starting after `Last-Event-ID` (or `?since=`) and then pushing new
//!   entries as they are committed.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Weak};
use std::time::Duration;

use agentauth_api::{FeedQuery, RevocationAction, RevocationEntry, RevocationKind, RevocationPage};
use agentauth_core::unix_now;
use agentauth_store::{Change, ChangeSignals, RevocationRow, Store};
use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, header};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::AuthorityError;
use crate::body::QueryParams;
use crate::server::{AppState, State as AuthorityState};

/// Why a revocation request, or a read of the feed, was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RevocationRefusal {
    /// A token ID to revoke is empty or longer than 256 characters.
    #[error("a token ID is 1 to 256 characters")]
    TokenIdLength,
    /// A key to revoke is not named by an RFC 7638 SHA-256 thumbprint.
    #[error("a key is named by its RFC 7638 SHA-256 thumbprint (43 base64url characters)")]
    NotAThumbprint,
    /// `Last-Event-ID` is not a sequence number of the feed.
    #[error("Last-Event-ID must be a revocation sequence number")]
    LastEventId,
    /// Every stream slot is taken; the client should poll or retry.
    #[error(
        "{MAX_STREAMS} revocation streams are open already; poll /v1/revocations or retry later"
    )]
    TooManyStreams,
}

/// Most entries one page returns.
const PAGE: i64 = 1000;
/// Most entries one stream reads from the store at a time (its memory bound).
const STREAM_PAGE: i64 = 256;
/// Most streams open at once; more are answered 503.
const MAX_STREAMS: usize = 1000;
/// Interval of the SSE keep-alive comments. Verifiers count a silent stream
/// as broken after a few of these, so keep it well below their grace period.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How often the watcher looks for entries written by another process
/// (another replica on the same PostgreSQL).
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// A stream re-reads the store at least this often even if nobody woke it.
const STREAM_RECHECK: Duration = Duration::from_secs(30);
/// While a stream waits for a gap in the sequence to fill, it re-reads this often.
const GAP_RECHECK: Duration = Duration::from_millis(100);
/// A gap in the sequence whose next entry is this old is taken as final (a
/// rolled-back insert) rather than a transaction that has yet to commit.
const GAP_SETTLE_SECS: i64 = 3;

/// What handlers use to wake the streams, and what bounds them.
pub(crate) struct Notifier {
    /// Bumped after every commit that published revocations.
    changes: watch::Sender<u64>,
    /// Set once, when the server shuts down: streams end so it can.
    closing: watch::Sender<bool>,
    /// One permit per open stream.
    streams: Arc<Semaphore>,
}

impl Notifier {
    pub(crate) fn new() -> Self {
        Self {
            changes: watch::Sender::new(0),
            closing: watch::Sender::new(false),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
        }
    }

    /// Wakes every open stream to read the store.
    pub(crate) fn changed(&self) {
        self.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// How many revocation streams are open now.
    pub(crate) fn open_streams(&self) -> usize {
        MAX_STREAMS - self.streams.available_permits()
    }

    /// Ends every open stream and the watcher (graceful shutdown waits for
    /// open responses, and a stream would otherwise never end).
    pub(crate) fn close(&self) {
        self.closing.send_replace(true);
    }
}

/// `GET /v1/revocations?since=SEQ`: a page of the feed.
pub(crate) async fn since(
    State(s): State<AppState>,
    QueryParams(q): QueryParams<FeedQuery>,
) -> Result<Json<RevocationPage>, AuthorityError> {
    Ok(Json(page(&s, q.since.unwrap_or(0)).await?))
}

/// Entries after `since`, oldest first; `more` says another page is waiting.
pub(crate) async fn page(s: &AuthorityState, since: i64) -> Result<RevocationPage, AuthorityError> {
    let since = since.max(0);
    let mut entries = s.store.revocations_since(since, PAGE + 1).await?;
    let more = entries.len() as i64 > PAGE;
    entries.truncate(PAGE as usize);
    let (entries, held_back) = settled(since, entries, unix_now());
    let last_seq = entries.last().map_or(since, |e| e.seq);
    Ok(RevocationPage {
        revocations: entries.iter().map(entry).collect(),
        last_seq,
        more: more && !held_back,
    })
}

/// A stored feed entry as the feed and the stream send it.
fn entry(row: &RevocationRow) -> RevocationEntry {
    use agentauth_store::{RevocationAction as Action, RevocationKind as Kind};
    RevocationEntry {
        seq: row.seq,
        kind: match row.kind {
            Kind::Agent => RevocationKind::Agent,
            Kind::Token => RevocationKind::Token,
            Kind::Task => RevocationKind::Task,
            Kind::Key => RevocationKind::Key,
            Kind::Policy => RevocationKind::Policy,
        },
        subject: row.subject.clone(),
        action: match row.action {
            Action::Revoke => RevocationAction::Revoke,
            Action::Restore => RevocationAction::Restore,
        },
        created_at: row.created_at,
        expires_at: row.expires_at,
    }
}

/// The entries that may be handed out now: all of them, unless the sequence
/// has a gap that a transaction still open may fill (PostgreSQL assigns the
/// number at insert, so commits can land out of order); then those before
/// the gap, and `true`. A reader that skipped such a gap would never see the
/// entry, as it resumes after the highest sequence number it has seen.
fn settled(mut prev: i64, rows: Vec<RevocationRow>, now: i64) -> (Vec<RevocationRow>, bool) {
    let mut ready = Vec::with_capacity(rows.len());
    for row in rows {
        if row.seq != prev + 1 && row.created_at > now - GAP_SETTLE_SECS {
            return (ready, true);
        }
        prev = row.seq;
        ready.push(row);
    }
    (ready, false)
}

/// `GET /v1/revocations/stream`: Server-Sent Events from `Last-Event-ID`
/// (or `?since=`) on; 503 when too many streams are open.
pub(crate) async fn stream(
    State(s): State<AppState>,
    headers: HeaderMap,
    QueryParams(q): QueryParams<FeedQuery>,
) -> Result<Response, AuthorityError> {
    let cursor = match headers.get("last-event-id") {
        Some(value) => last_event_id(value.to_str().ok())?,
        None => q.since.unwrap_or(0).max(0),
    };
    let feed = subscribe(&s, cursor)?;
    let events = futures_util::stream::unfold(feed, |mut feed| async move {
        let event = sse_event(&feed.next().await?)?;
        Some((Ok::<_, Infallible>(event), feed))
    });
    let mut response = Sse::new(events)
        .keep_alive(KeepAlive::new().interval(KEEP_ALIVE))
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Reverse proxies that buffer responses would hold events back.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

/// A feed entry as one Server-Sent Event; `None` (which ends the stream)
/// if it cannot be encoded.
fn sse_event(entry: &RevocationEntry) -> Option<Event> {
    match Event::default()
        .id(entry.seq.to_string())
        .event("revocation")
        .json_data(entry)
    {
        Ok(event) => Some(event),
        Err(e) => {
            tracing::error!(error = %e, "encoding a revocation event failed");
            None
        }
    }
}

/// The sequence number a reconnecting stream resumes after.
fn last_event_id(value: Option<&str>) -> Result<i64, RevocationRefusal> {
    value
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|seq| *seq >= 0)
        .ok_or(RevocationRefusal::LastEventId)
}

/// A subscription to the feed after `cursor`, holding one of the bounded
/// stream slots until it is dropped.
pub(crate) fn subscribe(s: &AuthorityState, cursor: i64) -> Result<Feed, RevocationRefusal> {
    let permit = s
        .feed
        .streams
        .clone()
        .try_acquire_owned()
        .map_err(|_| RevocationRefusal::TooManyStreams)?;
    Ok(Feed {
        store: s.store.clone(),
        cursor,
        pending: VecDeque::new(),
        changes: s.feed.changes.subscribe(),
        closing: s.feed.closing.subscribe(),
        _permit: permit,
    })
}

/// One subscriber's position in the feed. Holds at most one page of entries.
pub(crate) struct Feed {
    store: Arc<dyn Store>,
    cursor: i64,
    pending: VecDeque<RevocationRow>,
    changes: watch::Receiver<u64>,
    closing: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
}

impl Feed {
    /// The next entry, waiting for one as long as it takes; `None` ends the
    /// stream (shutdown or a store failure: the client reconnects and resumes).
    pub(crate) async fn next(&mut self) -> Option<RevocationEntry> {
        loop {
            if *self.closing.borrow() {
                return None;
            }
            if let Some(row) = self.pending.pop_front() {
                self.cursor = row.seq;
                return Some(entry(&row));
            }
            // Marked seen before reading, so a commit after the read still wakes us.
            self.changes.borrow_and_update();
            let rows = match self.store.revocations_since(self.cursor, STREAM_PAGE).await {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "reading revocations for a stream failed; closing it");
                    return None;
                }
            };
            let (ready, held_back) = settled(self.cursor, rows, unix_now());
            if !ready.is_empty() {
                self.pending = ready.into();
                continue;
            }
            let wait = if held_back {
                GAP_RECHECK
            } else {
                STREAM_RECHECK
            };
            tokio::select! {
                changed = self.changes.changed() => if changed.is_err() { return None },
                closed = self.closing.changed() => if closed.is_err() { return None },
                () = tokio::time::sleep(wait) => {}
            }
        }
    }
}

/// Wakes the streams when entries appear that this process did not write:
/// another replica on the same PostgreSQL. Each commit that publishes
/// revocations there sends a `NOTIFY`, which wakes this watcher at once
/// ([`agentauth_store::Store::change_signals`]); it also reads the store
/// every second while streams are open, for notifications lost while its
/// listening connection was down. The in-process wake-up
/// ([`AuthorityState::revocations_changed`]) covers this replica's own writes.
pub(crate) fn spawn_watcher(
    state: Weak<AuthorityState>,
    mut signals: ChangeSignals,
) -> tokio::task::JoinHandle<()> {
    let Some(mut closing) = state.upgrade().map(|s| s.feed.closing.subscribe()) else {
        return tokio::spawn(async {});
    };
    tokio::spawn(async move {
        let mut head: Option<i64> = None;
        loop {
            let Some(s) = state.upgrade() else { return };
            // The head is read once at start, then only while someone listens.
            if head.is_none() || s.feed.changes.receiver_count() > 0 {
                match newest(&*s.store, head.unwrap_or(0)).await {
                    Ok(newest) => {
                        if head.is_some_and(|h| newest > h) {
                            s.feed.changed();
                        }
                        head = Some(newest);
                    }
                    Err(e) => tracing::warn!(error = %e, "watching the revocation feed failed"),
                }
            }
            drop(s);
            tokio::select! {
                () = signals.wait(Change::Revocations, WATCH_INTERVAL) => {}
                _ = closing.wait_for(|c| *c) => return,
            }
        }
    })
}

/// The highest sequence number in the store, reading on from `from`.
pub(crate) async fn newest(
    store: &dyn Store,
    mut from: i64,
) -> Result<i64, agentauth_store::StoreError> {
    const SCAN: i64 = 10_000;
    loop {
        let rows = store.revocations_since(from, SCAN).await?;
        if let Some(last) = rows.last() {
            from = from.max(last.seq);
        }
        if (rows.len() as i64) < SCAN {
            return Ok(from);
        }
    }
}

#[cfg(test)]
mod tests {
    use agentauth_store::{RevocationAction, RevocationKind};

    use super::*;

    fn row(seq: i64, created_at: i64) -> RevocationRow {
        RevocationRow {
            seq,
            kind: RevocationKind::Token,
            subject: format!("j{seq}"),
            action: RevocationAction::Revoke,
            created_at,
            expires_at: None,
        }
    }

    fn seqs(rows: &[RevocationRow]) -> Vec<i64> {
        rows.iter().map(|r| r.seq).collect()
    }

    #[test]
    fn last_event_id_is_a_sequence_number_or_refused() {
        assert_eq!(last_event_id(Some(" 7 ")).unwrap(), 7);
        for bad in [None, Some(""), Some("-1"), Some("seven")] {
            assert!(
                matches!(last_event_id(bad), Err(RevocationRefusal::LastEventId)),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_contiguous_run_is_handed_out_whole() {
        let (ready, held) = settled(3, vec![row(4, 100), row(5, 100)], 100);
        assert_eq!((seqs(&ready), held), (vec![4, 5], false));
    }

    #[test]
    fn a_fresh_gap_holds_back_what_follows_it() {
        let (ready, held) = settled(3, vec![row(4, 100), row(6, 100), row(7, 100)], 101);
        assert_eq!((seqs(&ready), held), (vec![4], true));
        let (ready, held) = settled(3, vec![row(5, 100)], 100);
        assert_eq!((seqs(&ready), held), (vec![], true));
    }

    #[test]
    fn an_old_gap_is_final() {
        let now = 100 + GAP_SETTLE_SECS;
        let (ready, held) = settled(3, vec![row(4, 100), row(6, 100), row(7, now)], now);
        assert_eq!((seqs(&ready), held), (vec![4, 6, 7], false));
    }
}
