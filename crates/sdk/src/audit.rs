//! Ships the layer's decisions to the authority in batches, off the request
//! path: a bounded buffer, drops counted and reported, never a wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use agentauth_api::{EventBatch, ReportedEvent};
use tokio::sync::{mpsc, oneshot};

use crate::{Client, Metadata};

/// Events buffered before new ones are dropped.
const BUFFER: usize = 4096;
/// The scope that lets an agent report its decisions to the audit log.
static AUDIT_WRITE: std::sync::LazyLock<agentauth_core::Scope> = std::sync::LazyLock::new(|| {
    agentauth_core::Scope::parse("audit:write").expect("a valid permission")
});
/// Most events per batch.
const BATCH: usize = 200;
/// Longest an event waits before its batch is sent.
const LINGER: Duration = Duration::from_millis(500);

enum Message {
    Event(Box<ReportedEvent>),
    Flush(oneshot::Sender<()>),
}

/// The sending half; cheap to clone.
#[derive(Clone)]
pub(crate) struct AuditSink {
    tx: mpsc::Sender<Message>,
    dropped: Arc<AtomicU64>,
}

impl AuditSink {
    /// Starts the shipping task.
    pub(crate) fn spawn(client: Client, metadata: Metadata) -> Self {
        let (tx, rx) = mpsc::channel(BUFFER);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(ship(rx, client, metadata, dropped.clone()));
        Self { tx, dropped }
    }

    /// Queues an event, or counts it as dropped if the buffer is full.
    pub(crate) fn offer(&self, event: ReportedEvent) {
        if self.tx.try_send(Message::Event(Box::new(event))).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until everything queued so far has been sent (or given up on).
    pub(crate) async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).await.is_ok() {
            let _ = wait.await;
        }
    }
}

async fn ship(
    mut rx: mpsc::Receiver<Message>,
    client: Client,
    metadata: Metadata,
    dropped: Arc<AtomicU64>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        let Some(first) = rx.recv().await else { return };
        let mut waiters = Vec::new();
        let deadline = tokio::time::Instant::now() + LINGER;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Event(e) => batch.push(*e),
                Message::Flush(done) => {
                    waiters.push(done);
                    break;
                }
            }
            if batch.len() >= BATCH {
                break;
            }
            next = tokio::time::timeout_at(deadline, rx.recv())
                .await
                .ok()
                .flatten();
        }
        send(&client, &metadata, &mut batch, &dropped).await;
        for w in waiters {
            let _ = w.send(());
        }
    }
}

async fn send(
    client: &Client,
    metadata: &Metadata,
    batch: &mut Vec<ReportedEvent>,
    dropped: &AtomicU64,
) {
    let lost = dropped.swap(0, Ordering::Relaxed);
    if batch.is_empty() && lost == 0 {
        return;
    }
    let body = EventBatch {
        events: std::mem::take(batch),
        dropped: lost,
    };
    let result = async {
        let token = client.token(&metadata.authority_id, &AUDIT_WRITE).await?;
        let request = client
            .http()
            .post(&metadata.audit_events_endpoint)
            .json(&body);
        let response = client.send(request, &token).await?;
        response
            .error_for_status()
            .map(|_| ())
            .map_err(crate::SdkError::from)
    }
    .await;
    let sent = body.events.len();
    if let Err(e) = result {
        tracing::warn!(error = %e, events = sent, "could not ship audit records; counting them as dropped");
        dropped.fetch_add(sent as u64 + lost, Ordering::Relaxed);
    }
    // The buffer goes back for the next batch, emptied but with its capacity.
    *batch = body.events;
    batch.clear();
}
