//! What one policy decision costs as the policy set grows.
//!
//! Sets of 10, 100 and 1,000 policies: the eight example policies of
//! `policies/examples/` plus generated permits and forbids over distinct
//! agents and permissions, with `when` conditions over the environment, the
//! clock, tags, the delegation depth and the chain (see
//! `examples/support/policy_sets.rs`). Per request, a decision evaluates the
//! policies whose scope matches and whose conditions read the context, so
//! the cost grows with how many of those the set has.
//!
//! - `decision/{permit,deny,approval}/N`: `PolicySet::decide` of one query
//!   (`read:res-2`, permitted; `write:res-2` at 20:00 in production,
//!   forbidden; `payments:refund`, permitted once a person approves) against
//!   the set of N policies. Each benchmark checks its outcome first.
//! - `decision/reference/1`: Cedar's own `is_authorized` of the permit
//!   query against `reads-are-low-risk` alone, request and entities built
//!   beforehand — the reference the other figures are divided by: one
//!   policy's worth of Cedar work, none of agentauth's.
//! - `policy_load/load/100`: `PolicySet::load` of the 100-policy set (parse,
//!   annotations, strict validation against the schema) — a one-off cost when
//!   a version is loaded or activated, for information.
//!
//! Run: `cargo bench -p agentauth-policy --bench decision`
//! (`bench/policy.sh` runs it with the percentile run of
//! `examples/decision_percentiles.rs` and prints the ratios).

use std::hint::black_box;
use std::time::Duration;

use agentauth_policy::PolicySet;
use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};

#[path = "../examples/support/policy_sets.rs"]
mod policy_sets;

use policy_sets::{CedarReference, World, check};

fn decisions(c: &mut Criterion) {
    let world = World::new();
    let mut group = c.benchmark_group("decision");

    let reference = CedarReference::new();
    group.bench_function(BenchmarkId::new("reference", 1), |b| {
        b.iter(|| black_box(&reference).allows());
    });

    for n in policy_sets::sizes() {
        let set = policy_sets::set(n);
        for (name, q, expected) in world.queries() {
            check(&set, &q, &expected);
            group.bench_with_input(BenchmarkId::new(name, n), &q, |b, q| {
                b.iter(|| set.decide(black_box(q)).expect("decides"));
            });
        }
    }
    group.finish();
}

fn load(c: &mut Criterion) {
    let files = policy_sets::files(100);
    let mut group = c.benchmark_group("policy_load");
    // Milliseconds per iteration: fewer samples, a longer window.
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(5));
    group.bench_with_input(BenchmarkId::new("load", 100), &files, |b, files| {
        b.iter(|| PolicySet::load(black_box(files)).expect("validates"));
    });
    group.finish();
}

criterion_group!(policy, decisions, load);
criterion_main!(policy);
