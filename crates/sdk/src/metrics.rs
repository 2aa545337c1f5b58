//! The verifying layer's numbers for Prometheus: every decision by the check
//! that made it, audit shipping (buffered, delivered, dropped) and the
//! revocation feed's state. An agent mounts them on its own `/metrics`
//! ([`Verifier::metrics`]) or adds them to a registry it already serves
//! ([`Verifier::register_metrics`]). Labels take only the fixed check names.

use std::sync::Weak;

use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use http::header;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::Check;
use crate::verifier::{Inner, Verifier};

/// A decision and, for a denial, the check that refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    /// `allow` or `deny`.
    decision: &'static str,
    /// The failed check's name, or `all` for an allowed request.
    check: &'static str,
}

/// Counters the layer bumps on every request.
pub(crate) struct LayerCounters {
    decisions: Family<DecisionLabels, Counter>,
    /// The allowed series, resolved once: an allowed request costs one
    /// atomic add, no lookup.
    allowed: Counter,
}

impl Default for LayerCounters {
    fn default() -> Self {
        let decisions = Family::<DecisionLabels, Counter>::default();
        let allowed = decisions
            .get_or_create(&DecisionLabels {
                decision: "allow",
                check: "all",
            })
            .clone();
        Self { decisions, allowed }
    }
}

impl LayerCounters {
    /// One request passed every check.
    pub(crate) fn allowed(&self) {
        self.allowed.inc();
    }

    /// One request refused at `check`.
    pub(crate) fn denied(&self, check: Check) {
        self.decisions
            .get_or_create(&DecisionLabels {
                decision: "deny",
                check: check.as_str(),
            })
            .inc();
    }
}

/// Reads a verifier's state at each scrape. It holds the verifier weakly, so
/// a registry that outlives the verifier does not keep its tasks running;
/// after the verifier is gone it reports nothing.
struct LayerCollector(Weak<Inner>);

impl std::fmt::Debug for LayerCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LayerCollector")
    }
}

impl Collector for LayerCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(inner) = self.0.upgrade() else {
            return Ok(());
        };
        let verifier = Verifier::from_inner(inner);
        let decisions = &verifier.counters().decisions;
        decisions.encode(encoder.encode_descriptor(
            "agentauth_layer_decisions",
            "Requests the verifying layer decided, by decision and by the check that refused",
            None,
            decisions.metric_type(),
        )?)?;
        let audit = verifier.audit_stats();
        gauge(
            &mut encoder,
            "agentauth_layer_audit_buffered",
            "Audit events waiting for delivery to the authority",
            audit.buffered as i64,
        )?;
        counter(
            &mut encoder,
            "agentauth_layer_audit_delivered",
            "Audit events the authority has taken",
            audit.delivered,
        )?;
        counter(
            &mut encoder,
            "agentauth_layer_audit_dropped",
            "Audit events dropped: the buffer was full or the authority refused them",
            audit.dropped,
        )?;
        gauge(
            &mut encoder,
            "agentauth_layer_revocation_feed_fresh",
            "1 while the revocation feed was reached within the grace period, else 0",
            i64::from(verifier.revocation_feed_fresh()),
        )?;
        gauge(
            &mut encoder,
            "agentauth_layer_revocation_seq",
            "Sequence number of the last revocation feed entry applied",
            verifier.last_applied_seq(),
        )
    }
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let counter = ConstCounter::new(value);
    counter.encode(encoder.encode_descriptor(name, help, None, counter.metric_type())?)
}

impl Verifier {
    /// Adds this verifier's metrics to `registry`, for an agent that already
    /// serves one: `agentauth_layer_decisions_total{decision, check}`,
    /// `agentauth_layer_audit_buffered`, `…_audit_delivered_total`,
    /// `…_audit_dropped_total`, `…_revocation_feed_fresh` and
    /// `…_revocation_seq` (names take the registry's prefix, if any).
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register_collector(Box::new(LayerCollector(self.downgrade())));
    }

    /// A `GET` handler that answers with this verifier's metrics as
    /// OpenMetrics text: `.route("/metrics", verifier.metrics())`. Put it
    /// behind whatever protects the agent's operational endpoints; the
    /// numbers name no agent and no token.
    pub fn metrics(&self) -> MethodRouter {
        let mut registry = Registry::default();
        self.register_metrics(&mut registry);
        let registry = std::sync::Arc::new(registry);
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let mut text = String::new();
                if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
                    return http::StatusCode::INTERNAL_SERVER_ERROR.into_response();
                }
                (
                    [(
                        header::CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    text,
                )
                    .into_response()
            }
        })
    }
}
