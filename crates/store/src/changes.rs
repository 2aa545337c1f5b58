//! What other processes on the same database changed, as signals: on
//! PostgreSQL every commit that publishes revocations, activates a policy
//! set or changes the admin credential or the operators sends a `NOTIFY` on
//! [`CHANGES_CHANNEL`], and each replica's listener turns it into a wake-up.
//! A replica still re-reads on a timer behind the signals, for whatever was
//! sent while its listening connection was down.

use std::time::Duration;

use tokio::sync::watch;

/// The PostgreSQL `NOTIFY` channel that carries changes between replicas;
/// the payload names what changed ([`Change::payload`]).
pub const CHANGES_CHANNEL: &str = "agentauth_changes";

/// One kind of change another replica may make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Entries were added to the revocation feed.
    Revocations,
    /// A policy set was activated (also a feed entry).
    Policy,
    /// The admin credential or the operators changed.
    Credentials,
}

impl Change {
    /// The `NOTIFY` payload for this change.
    pub fn payload(self) -> &'static str {
        match self {
            Self::Revocations => "revocations",
            Self::Policy => "policy",
            Self::Credentials => "credentials",
        }
    }
}

/// How many changes of each kind were signalled; the counts only grow. A
/// lost listening connection counts as one of each, since anything may have
/// been missed meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    revocations: u64,
    policy: u64,
    credentials: u64,
}

impl Changes {
    fn of(&self, change: Change) -> u64 {
        match change {
            Change::Revocations => self.revocations,
            Change::Policy => self.policy,
            Change::Credentials => self.credentials,
        }
    }

    /// Counts a notification with `payload`; an unknown payload counts as
    /// every kind.
    pub(crate) fn signal(&mut self, payload: &str) {
        match payload {
            "revocations" => self.revocations += 1,
            // A policy activation is a feed entry too.
            "policy" => {
                self.policy += 1;
                self.revocations += 1;
            }
            "credentials" => self.credentials += 1,
            _ => self.everything(),
        }
    }

    /// Counts one of each kind.
    pub(crate) fn everything(&mut self) {
        self.revocations += 1;
        self.policy += 1;
        self.credentials += 1;
    }
}

/// A receiver of change signals; cheap to clone, one per waiting task. On a
/// store no other process writes to (SQLite), it never fires and every wait
/// lasts its full time.
#[derive(Debug, Clone, Default)]
pub struct ChangeSignals {
    receiver: Option<watch::Receiver<Changes>>,
    /// The counts each kind's last wait ended at.
    seen: Changes,
}

impl ChangeSignals {
    /// Signals fed by `receiver`.
    pub(crate) fn new(receiver: watch::Receiver<Changes>) -> Self {
        let seen = *receiver.borrow();
        Self {
            receiver: Some(receiver),
            seen,
        }
    }

    /// Whether another process can signal anything at all.
    pub fn live(&self) -> bool {
        self.receiver.is_some()
    }

    /// Waits until `change` has been signalled since the last wait for it
    /// ended (at once if it already was) or `within` has passed, whichever
    /// is first.
    pub async fn wait(&mut self, change: Change, within: Duration) {
        let Some(receiver) = self.receiver.as_mut() else {
            tokio::time::sleep(within).await;
            return;
        };
        let seen = self.seen.of(change);
        let waited = {
            let signalled = receiver.wait_for(|now| now.of(change) > seen);
            match tokio::time::timeout(within, signalled).await {
                Ok(Ok(now)) => Some(Some(*now)),
                Err(_) => Some(None),
                Ok(Err(_)) => None,
            }
        };
        let now = match waited {
            Some(Some(now)) => now,
            Some(None) => return,
            // The listener is gone: fall back to the timer alone.
            None => {
                self.receiver = None;
                tokio::time::sleep(within).await;
                return;
            }
        };
        match change {
            Change::Revocations => self.seen.revocations = now.revocations,
            Change::Policy => self.seen.policy = now.policy,
            Change::Credentials => self.seen.credentials = now.credentials,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_wait_ends_on_its_own_kind_of_change_and_not_on_another() {
        let (tx, rx) = watch::channel(Changes::default());
        let mut signals = ChangeSignals::new(rx);
        let started = tokio::time::Instant::now();
        let waiting = tokio::spawn(async move {
            signals.wait(Change::Policy, Duration::from_secs(60)).await;
            signals
        });
        tokio::time::sleep(Duration::from_secs(1)).await;
        tx.send_modify(|c| c.signal("credentials"));
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert!(
            !waiting.is_finished(),
            "a credentials change is not a policy change"
        );
        tx.send_modify(|c| c.signal("policy"));
        let mut signals = waiting.await.unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(2));
        // The policy change also counts as a revocation feed change.
        let before = tokio::time::Instant::now();
        signals
            .wait(Change::Revocations, Duration::from_secs(60))
            .await;
        assert_eq!(before.elapsed(), Duration::ZERO);
        // Without a new signal the wait lasts its full time.
        let before = tokio::time::Instant::now();
        signals
            .wait(Change::Revocations, Duration::from_secs(5))
            .await;
        assert_eq!(before.elapsed(), Duration::from_secs(5));
        // A listener that is gone leaves the timer.
        drop(tx);
        let before = tokio::time::Instant::now();
        signals.wait(Change::Policy, Duration::from_secs(3)).await;
        assert_eq!(before.elapsed(), Duration::from_secs(3));
        assert!(!signals.live());
    }

    #[tokio::test(start_paused = true)]
    async fn without_a_listener_a_wait_is_a_timer() {
        let mut signals = ChangeSignals::default();
        let before = tokio::time::Instant::now();
        signals
            .wait(Change::Credentials, Duration::from_secs(7))
            .await;
        assert_eq!(before.elapsed(), Duration::from_secs(7));
    }
}
