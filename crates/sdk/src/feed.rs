//! Following the authority's revocation stream (`GET /v1/revocations/stream`,
//! Server-Sent Events): a background task that keeps one stream open,
//! applies each entry as it arrives, and reconnects with backoff, resuming
//! after the last applied sequence number (`Last-Event-ID`). Polling stays
//! as the fallback (see `verifier.rs`); this module also tracks how fresh the
//! verifier's copy of the list is.

use std::sync::Mutex;
use std::sync::Weak;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use agentauth_api::RevocationEntry;

use crate::verifier::Inner;

/// A stream that has been silent this long is taken as broken and reopened.
/// The authority sends a keep-alive comment every 5 s.
const STREAM_IDLE: Duration = Duration::from_secs(15);
/// Longest wait for the authority to answer a stream request.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// First and longest wait between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// A stream that stayed up this long resets the backoff.
const STABLE: Duration = Duration::from_secs(5);
/// Longest line and longest event the parser accepts: entries are a few
/// hundred bytes, so anything near these is not the authority's feed.
const MAX_LINE: usize = 16 * 1024;
const MAX_EVENT: usize = 64 * 1024;

/// How current the verifier's revocation list is.
#[derive(Debug)]
pub(crate) struct Health {
    /// The last time the authority answered: stream data or keep-alive, a
    /// stream opened or closed, or a successful poll.
    last_contact: Mutex<Instant>,
    /// A stream is open: entries arrive as they are committed.
    stream_up: AtomicBool,
}

impl Health {
    pub(crate) fn new() -> Self {
        Self {
            last_contact: Mutex::new(Instant::now()),
            stream_up: AtomicBool::new(false),
        }
    }

    /// The authority answered just now.
    pub(crate) fn touch(&self) {
        *self.last_contact.lock().expect("lock") = Instant::now();
    }

    pub(crate) fn stream_up(&self) -> bool {
        self.stream_up.load(Ordering::Relaxed)
    }

    fn set_stream_up(&self, up: bool) {
        self.stream_up.store(up, Ordering::Relaxed);
    }

    /// Whether the list is known to be current within `grace`: an open
    /// stream (a silent one is dropped after [`STREAM_IDLE`]), or contact
    /// with the authority at most `grace` ago.
    pub(crate) fn fresh(&self, grace: Duration) -> bool {
        self.stream_up() || self.last_contact.lock().expect("lock").elapsed() <= grace
    }
}

/// How one stream connection ended.
enum Outcome {
    /// The verifier is gone: stop.
    Gone,
    /// No stream was opened (unreachable, refused, not an event stream).
    NotOpened,
    /// A stream was open for this long; `touch` if the authority was
    /// reachable until the end (closed or reset rather than silent).
    Closed { lasted: Duration, touch: bool },
}

/// Follows the stream until the verifier is dropped (`alive` then closes).
pub(crate) fn spawn(inner: Weak<Inner>, mut alive: watch::Receiver<()>) {
    tokio::spawn(async move {
        let mut backoff = BACKOFF_MIN;
        loop {
            let outcome = tokio::select! {
                outcome = follow(&inner) => outcome,
                _ = alive.changed() => return,
            };
            let Some(strong) = inner.upgrade() else {
                return;
            };
            strong.health.set_stream_up(false);
            drop(strong);
            match outcome {
                Outcome::Gone => return,
                Outcome::NotOpened => {}
                Outcome::Closed { lasted, touch } => {
                    if let Some(strong) = inner.upgrade()
                        && touch
                    {
                        strong.health.touch();
                    }
                    if lasted >= STABLE {
                        backoff = BACKOFF_MIN;
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(jitter(backoff)) => {}
                _ = alive.changed() => return,
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    });
}

/// Between half and all of `d`, so that verifiers cut off together do not
/// all come back at the same instant.
fn jitter(d: Duration) -> Duration {
    let noise = agentauth_core::random_bytes(2);
    let fraction = f64::from(u16::from_le_bytes([noise[0], noise[1]])) / f64::from(u16::MAX);
    d.mul_f64(0.5 + fraction / 2.0)
}

/// Opens one stream from the last applied entry on and applies what it brings.
async fn follow(inner: &Weak<Inner>) -> Outcome {
    let (http, url, since) = {
        let Some(strong) = inner.upgrade() else {
            return Outcome::Gone;
        };
        let url = format!(
            "{}/stream",
            strong
                .metadata
                .revocation_list_endpoint
                .trim_end_matches('/')
        );
        let since = strong.revocations.read().expect("lock").last_seq;
        (strong.http.clone(), url, since)
    };
    let request = http
        .get(&url)
        .header(http::header::ACCEPT, "text/event-stream")
        .header("last-event-id", since.to_string())
        .send();
    let mut response = match tokio::time::timeout(CONNECT_TIMEOUT, request).await {
        Ok(Ok(response)) => response,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the revocation stream is unreachable");
            return Outcome::NotOpened;
        }
        Err(_) => {
            tracing::debug!("the revocation stream did not answer in time");
            return Outcome::NotOpened;
        }
    };
    let is_stream = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    if !response.status().is_success() || !is_stream {
        tracing::debug!(status = %response.status(), "the authority refused the revocation stream");
        return Outcome::NotOpened;
    }
    let opened = Instant::now();
    match inner.upgrade() {
        Some(strong) => {
            strong.health.touch();
            strong.health.set_stream_up(true);
        }
        None => return Outcome::Gone,
    }
    tracing::debug!(since, "following the revocation stream");
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    loop {
        let chunk = match tokio::time::timeout(STREAM_IDLE, response.chunk()).await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => {
                tracing::debug!("the authority closed the revocation stream");
                return closed(opened, true);
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the revocation stream broke; reconnecting");
                return closed(opened, true);
            }
            Err(_) => {
                tracing::warn!("the revocation stream went silent; reconnecting");
                return closed(opened, false);
            }
        };
        let Some(strong) = inner.upgrade() else {
            return Outcome::Gone;
        };
        strong.health.touch();
        if let Err(e) = parser.push(&chunk, &mut events) {
            tracing::warn!(
                error = e,
                "the revocation stream sent garbage; reconnecting"
            );
            return closed(opened, false);
        }
        let entries: Vec<RevocationEntry> = events
            .drain(..)
            .filter(|e| e.event == "revocation")
            .filter_map(|e| match serde_json::from_str(&e.data) {
                Ok(entry) => Some(entry),
                Err(err) => {
                    tracing::warn!(error = %err, id = ?e.id, "ignoring an unreadable revocation event");
                    None
                }
            })
            .collect();
        if !entries.is_empty() {
            strong.apply_revocations(&entries);
        }
    }
}

fn closed(opened: Instant, touch: bool) -> Outcome {
    Outcome::Closed {
        lasted: opened.elapsed(),
        touch,
    }
}

/// One dispatched Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `event:` field, `message` if none was given.
    pub(crate) event: String,
    /// The last `id:` seen on the stream.
    pub(crate) id: Option<String>,
    /// The `data:` lines joined by newlines.
    pub(crate) data: String,
}

/// A bounded incremental parser of the `text/event-stream` format (the
/// WHATWG HTML "Server-sent events" interpretation rules).
#[derive(Debug, Default)]
pub(crate) struct SseParser {
    line: Vec<u8>,
    after_cr: bool,
    event: String,
    data: String,
    has_data: bool,
    id: Option<String>,
}

impl SseParser {
    /// Consumes `bytes`, appending each completed event to `out`.
    pub(crate) fn push(
        &mut self,
        bytes: &[u8],
        out: &mut Vec<SseEvent>,
    ) -> Result<(), &'static str> {
        for &b in bytes {
            // CRLF is one line end, even when split across chunks.
            if std::mem::take(&mut self.after_cr) && b == b'\n' {
                continue;
            }
            match b {
                b'\r' | b'\n' => {
                    self.after_cr = b == b'\r';
                    self.end_line(out)?;
                }
                _ if self.line.len() >= MAX_LINE => return Err("a line is too long"),
                _ => self.line.push(b),
            }
        }
        Ok(())
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), &'static str> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            let data = std::mem::take(&mut self.data);
            if std::mem::take(&mut self.has_data) {
                out.push(SseEvent {
                    event: if event.is_empty() {
                        "message".into()
                    } else {
                        event
                    },
                    id: self.id.clone(),
                    data,
                });
            }
            return Ok(());
        }
        let line = String::from_utf8(line).map_err(|_| "a line is not UTF-8")?;
        if line.starts_with(':') {
            return Ok(()); // a comment: the keep-alive
        }
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => value.clone_into(&mut self.event),
            "data" => {
                if self.data.len() + value.len() + 1 > MAX_EVENT {
                    return Err("an event is too large");
                }
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            "id" if !value.contains('\0') => self.id = Some(value.to_owned()),
            _ => {} // retry and unknown fields
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(chunks: &[&[u8]]) -> Result<Vec<SseEvent>, &'static str> {
        let mut parser = SseParser::default();
        let mut out = Vec::new();
        for chunk in chunks {
            parser.push(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn ev(event: &str, id: Option<&str>, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            id: id.map(str::to_owned),
            data: data.into(),
        }
    }

    #[test]
    fn events_split_anywhere_are_reassembled() {
        let stream: &[u8] =
            b": keep-alive\n\nid: 1\nevent: revocation\ndata: {\"seq\":1}\n\nid:2\r\nevent:revocation\r\ndata:{\"seq\":2}\r\n\r\n";
        let whole = parse(&[stream]).unwrap();
        assert_eq!(
            whole,
            vec![
                ev("revocation", Some("1"), "{\"seq\":1}"),
                ev("revocation", Some("2"), "{\"seq\":2}"),
            ]
        );
        for cut in 0..stream.len() {
            let (a, b) = stream.split_at(cut);
            assert_eq!(parse(&[a, b]).unwrap(), whole, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(parse(&bytes).unwrap(), whole);
    }

    #[test]
    fn data_lines_join_and_events_without_data_are_dropped() {
        let out = parse(&[b"event: x\n\ndata: a\ndata:b\r\rdata\n\n"]).unwrap();
        assert_eq!(
            out,
            vec![ev("message", None, "a\nb"), ev("message", None, "")]
        );
    }

    #[test]
    fn overlong_lines_and_events_are_refused() {
        let long = vec![b'a'; MAX_LINE + 1];
        assert!(parse(&[&long]).is_err());
        let line = format!("data: {}\n", "a".repeat(MAX_LINE - 10));
        let many = line.repeat(MAX_EVENT / MAX_LINE + 1);
        assert!(parse(&[many.as_bytes()]).is_err());
    }
}
