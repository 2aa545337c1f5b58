//! What one policy decision costs as the policy set grows.
//!
//! Sets of 10, 100 and 1,000 policies: the eight example policies of
//! `policies/examples/` plus generated permits and forbids over distinct
//! agents and permissions, with `when` conditions over the environment, the
//! clock, tags, the delegation depth and the chain (see
//! `examples/support/policy_sets.rs`). Cedar evaluates every policy of the
//! set for every request, so the cost grows with the set.
//!
//! - `decision/{permit,deny,approval}/N`: `PolicySet::decide` of one query
//!   (`read:res-2`, permitted; `write:res-2` at 20:00 in production,
//!   forbidden; `payments:refund`, permitted once a person approves) against
//!   the set of N policies. Each benchmark checks its outcome first.
//! - `decision/reference/1`: the permit query against a set of one policy
//!   (`reads-are-low-risk` alone) — the reference the other figures are
//!   divided by: the fixed cost of a decision (entities, context, request,
//!   interpreting the response) with next to no policy to evaluate.
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

use policy_sets::{SIZES, World, check};

fn decisions(c: &mut Criterion) {
    let world = World::new();
    let mut group = c.benchmark_group("decision");

    let reference = policy_sets::reference_set();
    let q = world.reference_query();
    check(&reference, &q, &world.queries()[0].2);
    group.bench_with_input(BenchmarkId::new("reference", 1), &q, |b, q| {
        b.iter(|| reference.decide(black_box(q)).expect("decides"));
    });

    for n in SIZES {
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
