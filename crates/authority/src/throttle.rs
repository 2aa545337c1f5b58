//! Rate limits on the token endpoint: per peer address before anything is
//! parsed or verified, and per client once its assertion has verified (so
//! nobody can spend another agent's budget by claiming its name); and on the
//! events an authenticated agent reports to the audit log. A request over a
//! limit is answered 429 with `Retry-After` and costs nothing more.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use agentauth_core::SpiffeId;
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};

/// Which limit a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// `token_requests_per_address` (per second).
    Address,
    /// `token_requests_per_client` (per second).
    Client,
    /// `audit_events_per_agent` (events per second).
    AuditEvents,
}

impl Limit {
    /// The setting that sets it.
    pub fn setting(self) -> &'static str {
        match self {
            Self::Address => "token_requests_per_address",
            Self::Client => "token_requests_per_client",
            Self::AuditEvents => "audit_events_per_agent",
        }
    }
}

/// A refused request: which limit, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many requests ({} per second); retry after {retry_after_secs} s", .limit.setting())]
pub struct Throttled {
    /// The limit that was reached.
    pub limit: Limit,
    /// Whole seconds until a request would be accepted, at least 1.
    pub retry_after_secs: u64,
}

/// The token endpoint's and the audit intake's limits; a rate of 0 turns one off.
pub(crate) struct Throttle {
    by_address: Option<DefaultKeyedRateLimiter<IpAddr>>,
    by_client: Option<DefaultKeyedRateLimiter<SpiffeId>>,
    audit_by_agent: Option<DefaultKeyedRateLimiter<SpiffeId>>,
}

/// A limiter of `per_second` requests with a burst of twice that, or none.
fn limiter<K: Clone + std::hash::Hash + Eq>(per_second: u32) -> Option<DefaultKeyedRateLimiter<K>> {
    let rate = NonZeroU32::new(per_second)?;
    let burst = rate.saturating_mul(NonZeroU32::new(2).expect("2 is not zero"));
    Some(DefaultKeyedRateLimiter::keyed(
        Quota::per_second(rate).allow_burst(burst),
    ))
}

impl Throttle {
    /// Limits of `per_address` and `per_client` token requests, and of
    /// `audit_per_agent` reported events, per second.
    pub(crate) fn new(per_address: u32, per_client: u32, audit_per_agent: u32) -> Self {
        Self {
            by_address: limiter(per_address),
            by_client: limiter(per_client),
            audit_by_agent: limiter(audit_per_agent),
        }
    }

    /// Counts `events` reported by `agent` against its limit; a batch
    /// larger than the whole burst is refused as well.
    pub(crate) fn audit_events(&self, agent: &SpiffeId, events: usize) -> Result<(), Throttled> {
        let (Some(limiter), Some(n)) = (
            self.audit_by_agent.as_ref(),
            u32::try_from(events).ok().and_then(NonZeroU32::new),
        ) else {
            return Ok(());
        };
        let refused = |wait: Duration| Throttled {
            limit: Limit::AuditEvents,
            retry_after_secs: round_up(wait),
        };
        match limiter.check_key_n(agent, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(refused(
                not_until.wait_time_from(DefaultClock::default().now()),
            )),
            Err(_) => Err(refused(Duration::from_secs(1))),
        }
    }

    /// Counts a request from `peer` against its address's limit.
    pub(crate) fn address(&self, peer: IpAddr) -> Result<(), Throttled> {
        check(self.by_address.as_ref(), &peer, Limit::Address)
    }

    /// Counts a request of the authenticated `client` against its limit.
    pub(crate) fn client(&self, client: &SpiffeId) -> Result<(), Throttled> {
        check(self.by_client.as_ref(), client, Limit::Client)
    }

    /// Forgets keys that are back at a full budget, so memory follows the
    /// recent senders only. Called periodically.
    pub(crate) fn forget_idle(&self) {
        for limiter in self.by_address.iter() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        for limiter in self.by_client.iter().chain(self.audit_by_agent.iter()) {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn check<K: Clone + std::hash::Hash + Eq>(
    limiter: Option<&DefaultKeyedRateLimiter<K>>,
    key: &K,
    limit: Limit,
) -> Result<(), Throttled> {
    let Some(limiter) = limiter else {
        return Ok(());
    };
    limiter.check_key(key).map_err(|not_until| {
        let wait = not_until.wait_time_from(DefaultClock::default().now());
        Throttled {
            limit,
            retry_after_secs: round_up(wait),
        }
    })
}

/// Whole seconds, rounded up, at least 1 (`Retry-After` has no fractions).
fn round_up(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_over_its_burst_is_refused_and_others_are_not() {
        let throttle = Throttle::new(5, 0, 0);
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        for _ in 0..10 {
            throttle.address(a).unwrap();
        }
        let refused = throttle.address(a).unwrap_err();
        assert_eq!(refused.limit, Limit::Address);
        assert!(refused.retry_after_secs >= 1);
        assert!(
            throttle.address(b).is_ok(),
            "another address keeps its budget"
        );
    }

    #[test]
    fn reported_events_count_one_by_one_against_the_agents_budget() {
        let throttle = Throttle::new(0, 0, 5);
        let (a, b) = (
            SpiffeId::parse("spiffe://td/agent/a").unwrap(),
            SpiffeId::parse("spiffe://td/agent/b").unwrap(),
        );
        throttle.audit_events(&a, 8).unwrap();
        let refused = throttle.audit_events(&a, 3).unwrap_err();
        assert_eq!(refused.limit, Limit::AuditEvents);
        throttle.audit_events(&a, 0).unwrap();
        assert!(
            throttle.audit_events(&b, 10).is_ok(),
            "b has its own budget"
        );
        assert!(
            throttle.audit_events(&b, 11).is_err(),
            "a batch beyond the whole burst never fits"
        );
    }

    #[test]
    fn a_rate_of_zero_is_no_limit() {
        let throttle = Throttle::new(0, 0, 0);
        let id = SpiffeId::parse("spiffe://td/agent/a").unwrap();
        for _ in 0..10_000 {
            throttle.address(IpAddr::from([10, 0, 0, 1])).unwrap();
            throttle.client(&id).unwrap();
        }
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(round_up(Duration::from_millis(1)), 1);
        assert_eq!(round_up(Duration::from_millis(1001)), 2);
        assert_eq!(round_up(Duration::ZERO), 1);
    }
}
