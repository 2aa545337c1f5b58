//! Token requests refused before their client authenticated: counted per
//! claimed client and peer address, and written to the audit log as one
//! `token.refusals_counted` record per window. A flood of garbage then costs
//! a map update per request instead of a write under the store's one lock,
//! and the log still says who was hammered from where, and how often.
//! Refusals of an authenticated client are audited one by one as before.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::{Mutex, Weak};
use std::time::Duration;

use agentauth_core::{AuditEvent, AuditKind, Decision};
use tokio::task::JoinHandle;

use crate::audit::event;

/// Most (client, address) pairs counted separately in one window; the rest
/// are counted together, so memory stays bounded whatever the sender varies.
const MAX_PAIRS: usize = 4096;
/// Most pairs a record names, busiest first; the others are summed.
const NAMED_IN_RECORD: usize = 20;
/// Longest claimed client name kept.
const MAX_CLIENT_LEN: usize = 128;

/// One pair's refusals in the current window.
#[derive(Debug, Default)]
struct Count {
    refused: u64,
    /// The OAuth code of the latest refusal.
    last_code: &'static str,
}

#[derive(Debug, Default)]
struct Window {
    pairs: HashMap<(String, IpAddr), Count>,
    /// Refusals of pairs beyond [`MAX_PAIRS`].
    unlisted: u64,
    total: u64,
}

/// The counts of the current window.
#[derive(Debug, Default)]
pub(crate) struct RefusalTally {
    window: Mutex<Window>,
}

impl RefusalTally {
    /// Counts one refusal of a request claiming `client` ("" when it named
    /// none) from `peer`, refused with OAuth error `code`.
    pub(crate) fn count(&self, client: &str, peer: IpAddr, code: &'static str) {
        let client: String = client.chars().take(MAX_CLIENT_LEN).collect();
        let mut w = self.window.lock().expect("lock");
        w.total += 1;
        let full = w.pairs.len() >= MAX_PAIRS;
        match w.pairs.get_mut(&(client.clone(), peer)) {
            Some(c) => {
                c.refused += 1;
                c.last_code = code;
            }
            None if full => w.unlisted += 1,
            None => {
                w.pairs.insert(
                    (client, peer),
                    Count {
                        refused: 1,
                        last_code: code,
                    },
                );
            }
        }
    }

    /// Ends the window: the record that reports it, if anything was refused.
    pub(crate) fn take(&self, window_secs: u64) -> Option<AuditEvent> {
        let w = std::mem::take(&mut *self.window.lock().expect("lock"));
        if w.total == 0 {
            return None;
        }
        let mut pairs: Vec<_> = w.pairs.into_iter().collect();
        pairs.sort_by(|a, b| b.1.refused.cmp(&a.1.refused).then(a.0.cmp(&b.0)));
        let mut reason = format!(
            "{} token requests refused before their client authenticated in {window_secs} s:",
            w.total
        );
        let mut rest = w.unlisted;
        for (i, ((client, peer), c)) in pairs.iter().enumerate() {
            if i >= NAMED_IN_RECORD {
                rest += c.refused;
                continue;
            }
            let who = if client.is_empty() {
                "anonymous"
            } else {
                client
            };
            let _ = write!(
                reason,
                " {who} from {peer}: {} ({});",
                c.refused, c.last_code
            );
        }
        if rest > 0 {
            let _ = write!(reason, " others: {rest};");
        }
        let mut record = event(
            AuditKind::TokenRefusalsCounted,
            "anonymous",
            "token endpoint",
            Decision::Deny,
        );
        record.reason = reason;
        Some(record)
    }
}

/// Writes the window's record every `window` and stops with the state.
pub(crate) fn spawn_flusher(state: Weak<crate::server::State>, window: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(window);
        tick.tick().await;
        loop {
            tick.tick().await;
            let Some(s) = state.upgrade() else { return };
            flush(&s).await;
        }
    })
}

/// Appends the current window's record, if any.
pub(crate) async fn flush(s: &crate::server::State) {
    let Some(record) = s.refusals.take(s.config.refusal_audit_window_secs) else {
        return;
    };
    if let Err(e) = s.store.append_audit(&[record]).await {
        tracing::error!(error = %e, "could not audit the refused token requests of a window");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn a_window_is_one_record_naming_the_busiest_pairs_first() {
        let tally = RefusalTally::default();
        assert!(tally.take(10).is_none(), "nothing refused, nothing written");
        for _ in 0..300 {
            tally.count("", A, "invalid_request");
        }
        for _ in 0..5 {
            tally.count("spiffe://td/agent/x", B, "invalid_client");
        }
        let record = tally.take(10).unwrap();
        assert_eq!(record.kind, AuditKind::TokenRefusalsCounted);
        assert_eq!(
            record.reason,
            "305 token requests refused before their client authenticated in 10 s: \
             anonymous from 10.0.0.1: 300 (invalid_request); \
             spiffe://td/agent/x from 10.0.0.2: 5 (invalid_client);"
        );
        assert!(tally.take(10).is_none(), "the next window starts empty");
    }

    #[test]
    fn memory_and_the_record_stay_bounded_whatever_the_sender_varies() {
        let tally = RefusalTally::default();
        for i in 0..(MAX_PAIRS + 100) {
            tally.count(&format!("c{i}{}", "x".repeat(500)), A, "invalid_client");
        }
        assert_eq!(tally.window.lock().unwrap().pairs.len(), MAX_PAIRS);
        let record = tally.take(1).unwrap();
        assert!(
            record
                .reason
                .starts_with(&format!("{} token requests", MAX_PAIRS + 100))
        );
        assert!(
            record
                .reason
                .ends_with(&format!(" others: {};", MAX_PAIRS + 100 - NAMED_IN_RECORD)),
            "{}",
            &record.reason[record.reason.len() - 40..]
        );
        assert!(record.reason.len() < NAMED_IN_RECORD * (MAX_CLIENT_LEN + 60) + 200);
    }
}
