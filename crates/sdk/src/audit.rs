//! Ships the layer's decisions to the authority in batches, off the request
//! path: a bounded buffer that keeps what the authority has not yet taken
//! (while it is down, say) and retries with backoff; events beyond the bound
//! are counted as dropped and the count is reported with the next batch.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use agentauth_api::{EventBatch, ReportedEvent};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::{Client, Metadata, SdkError};

/// Events held (queued or awaiting delivery) before new ones are dropped,
/// unless [`crate::VerifierConfig::audit_buffer`] says otherwise.
pub(crate) const DEFAULT_BUFFER: usize = 4096;
/// The scope that lets an agent report its decisions to the audit log.
static AUDIT_WRITE: std::sync::LazyLock<agentauth_core::Scope> = std::sync::LazyLock::new(|| {
    agentauth_core::Scope::parse("audit:write").expect("a valid permission")
});
/// Most events per batch.
const BATCH: usize = 200;
/// Longest an event waits before its batch is sent.
const LINGER: Duration = Duration::from_millis(500);
/// First wait after a failed delivery; doubled on each failure up to
/// [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between two delivery attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

enum Message {
    Event(Box<ReportedEvent>),
    Flush(oneshot::Sender<()>),
}

/// Counters shared by the sink and its shipping task.
#[derive(Default)]
struct Counts {
    /// Events offered and not yet delivered or given up on.
    held: AtomicUsize,
    /// Dropped events not yet reported to the authority.
    unreported: AtomicU64,
    /// Every event dropped since the sink started.
    dropped_total: AtomicU64,
    /// Every event the authority has taken.
    delivered_total: AtomicU64,
}

impl Counts {
    fn drop_events(&self, n: u64) {
        self.unreported.fetch_add(n, Ordering::Relaxed);
        self.dropped_total.fetch_add(n, Ordering::Relaxed);
    }
}

/// The sending half; cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditSink {
    tx: mpsc::UnboundedSender<Message>,
    capacity: usize,
    counts: Arc<Counts>,
}

/// What the audit sink has done so far, for monitoring.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AuditStats {
    /// Events waiting to be delivered (queued, or kept while the authority
    /// cannot be reached).
    pub buffered: usize,
    /// Events the authority has taken.
    pub delivered: u64,
    /// Events dropped: the buffer was full, or the authority refused them.
    pub dropped: u64,
}

impl AuditSink {
    /// Starts the shipping task, holding at most `capacity` events.
    pub(crate) fn spawn(client: Client, metadata: Metadata, capacity: usize) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let counts = Arc::new(Counts::default());
        tokio::spawn(ship(rx, client, metadata, counts.clone()));
        Self {
            tx,
            capacity: capacity.max(1),
            counts,
        }
    }

    /// Queues an event, or counts it as dropped if the buffer is full.
    pub(crate) fn offer(&self, event: ReportedEvent) {
        let counts = &self.counts;
        if counts.held.fetch_add(1, Ordering::AcqRel) >= self.capacity {
            counts.held.fetch_sub(1, Ordering::AcqRel);
            counts.drop_events(1);
            return;
        }
        if self.tx.send(Message::Event(Box::new(event))).is_err() {
            counts.held.fetch_sub(1, Ordering::AcqRel);
            counts.drop_events(1);
        }
    }

    /// Tries to deliver everything queued so far and waits for the attempt.
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// The counters as they are now.
    pub(crate) fn stats(&self) -> AuditStats {
        AuditStats {
            buffered: self.counts.held.load(Ordering::Acquire),
            delivered: self.counts.delivered_total.load(Ordering::Relaxed),
            dropped: self.counts.dropped_total.load(Ordering::Relaxed),
        }
    }
}

/// The shipping task: gathers events into `pending`, delivers them in
/// batches, and on failure keeps them and tries again after a backoff.
async fn ship(
    mut rx: mpsc::UnboundedReceiver<Message>,
    client: Client,
    metadata: Metadata,
    counts: Arc<Counts>,
) {
    let mut pending: VecDeque<ReportedEvent> = VecDeque::new();
    let mut retry_at: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    loop {
        let first = match retry_at {
            None => match rx.recv().await {
                Some(m) => Some(m),
                None => return,
            },
            Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                Ok(Some(m)) => Some(m),
                Ok(None) => return,
                Err(_) => None,
            },
        };
        let mut waiters = Vec::new();
        let mut next = first;
        let deadline = Instant::now() + LINGER;
        while let Some(message) = next.take() {
            match message {
                Message::Event(e) => pending.push_back(*e),
                Message::Flush(done) => {
                    waiters.push(done);
                    break;
                }
            }
            if pending.len() >= BATCH {
                break;
            }
            next = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten();
        }
        let due = retry_at.is_none_or(|at| Instant::now() >= at);
        if due || !waiters.is_empty() {
            match deliver(&client, &metadata, &mut pending, &counts).await {
                Ok(()) => {
                    retry_at = None;
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    tracing::warn!(
                        error = %e,
                        buffered = pending.len(),
                        retry_in_ms = backoff.as_millis() as u64,
                        "could not ship audit records; keeping them to try again"
                    );
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        for w in waiters {
            let _ = w.send(());
        }
    }
}

/// Sends `pending` in batches until it is empty or a batch fails. A batch the
/// authority refuses for good (a 4xx other than 408 or 429: this agent may
/// not report, say) is counted as dropped rather than retried forever; any
/// other failure leaves the batch at the front of `pending`.
async fn deliver(
    client: &Client,
    metadata: &Metadata,
    pending: &mut VecDeque<ReportedEvent>,
    counts: &Counts,
) -> Result<(), SdkError> {
    loop {
        let lost = counts.unreported.swap(0, Ordering::Relaxed);
        if pending.is_empty() && lost == 0 {
            return Ok(());
        }
        let n = pending.len().min(BATCH);
        let body = EventBatch {
            events: pending.range(..n).cloned().collect(),
            dropped: lost,
        };
        match post(client, metadata, &body).await {
            Ok(()) => {
                pending.drain(..n);
                counts.held.fetch_sub(n, Ordering::AcqRel);
                counts
                    .delivered_total
                    .fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) if refused_for_good(&e) => {
                tracing::warn!(error = %e, events = n, "the authority refused audit records; dropping them");
                pending.drain(..n);
                counts.held.fetch_sub(n, Ordering::AcqRel);
                counts.unreported.fetch_add(lost, Ordering::Relaxed);
                counts.drop_events(n as u64);
                return Err(e);
            }
            Err(e) => {
                counts.unreported.fetch_add(lost, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
}

async fn post(client: &Client, metadata: &Metadata, body: &EventBatch) -> Result<(), SdkError> {
    let token = client.token(&metadata.authority_id, &AUDIT_WRITE).await?;
    let request = client
        .http()
        .post(&metadata.audit_events_endpoint)
        .json(body);
    let response = client.send(request, &token).await?;
    response
        .error_for_status()
        .map(|_| ())
        .map_err(SdkError::from)
}

/// Whether trying the same batch again cannot help.
fn refused_for_good(e: &SdkError) -> bool {
    let status = match e {
        SdkError::TokenRefused { status, .. } => *status,
        SdkError::PermissionNotHeld(_) => return true,
        SdkError::Transport(e) => match e.status() {
            Some(s) => s.as_u16(),
            None => return false,
        },
        _ => return false,
    };
    (400..500).contains(&status) && status != 408 && status != 429
}
