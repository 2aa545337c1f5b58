//! p50/p99 of one policy decision at 10, 100 and 1,000 policies, each next
//! to a reference measured in the same process, interleaved with it.
//!
//! ```sh
//! cargo run --release -p agentauth-policy --example decision_percentiles          # 20,000 per case
//! cargo run --release -p agentauth-policy --example decision_percentiles -- 5000
//! ```
//!
//! The sets and queries are those of `benches/decision.rs`
//! (`examples/support/policy_sets.rs`). Every case times N decisions one by
//! one with `std::time::Instant`, in rounds of 1,000, and before each round
//! times 1,000 evaluations of the reference: Cedar's own `is_authorized` of
//! the permit query against one policy (`reads-are-low-risk` alone), request
//! and entities built beforehand. The ratios divide a case's percentile by
//! the same percentile of its own interleaved reference samples, so a burst
//! of load from elsewhere on the machine moves both.
//!
//! The repeated cases decide the same query again and again, as a token
//! calling one route does: the query's shape (principal, target, action) and
//! its context are each built once. Two more cases at 100 policies show what
//! a first sight costs: `new task` gives every decision its own `txn` (the
//! context is built each time) and `new shape` gives every decision a
//! principal with different facts (entities built and scopes worked out each
//! time). Each timed decision's outcome is checked once up front and every
//! result is consumed (`black_box`). One run takes a few seconds.

use std::hint::black_box;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentauth_policy::{Outcome, PolicySet, Query};

#[path = "support/policy_sets.rs"]
mod policy_sets;

use policy_sets::{CedarReference, World, check};

/// Decisions per round; a case's reference round of the same size precedes each.
const ROUND: usize = 1_000;
/// The issue's target for p50 at 100 policies.
const TARGET_P50_AT_100: Duration = Duration::from_micros(20);

/// Nanoseconds of each decision of `queries`, in order.
fn time(set: &PolicySet, queries: &[Query<'_>], into: &mut Vec<u64>) {
    for q in queries {
        let start = Instant::now();
        let d = set.decide(black_box(q));
        let elapsed = start.elapsed();
        black_box(d.expect("decides"));
        into.push(nanos(elapsed));
    }
}

/// Nanoseconds of each of `count` reference evaluations.
fn time_reference(reference: &CedarReference, count: usize, into: &mut Vec<u64>) {
    for _ in 0..count {
        let start = Instant::now();
        let allowed = black_box(reference).allows();
        let elapsed = start.elapsed();
        black_box(allowed);
        into.push(nanos(elapsed));
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

struct Stats {
    p50: f64,
    p99: f64,
    mean: f64,
}

fn stats(samples: &mut [u64]) -> Stats {
    samples.sort_unstable();
    let at = |pct: usize| samples[(samples.len() * pct / 100).min(samples.len() - 1)] as f64;
    Stats {
        p50: at(50),
        p99: at(99),
        mean: samples.iter().sum::<u64>() as f64 / samples.len() as f64,
    }
}

fn micros(ns: f64) -> String {
    format!("{:.2} µs", ns / 1_000.0)
}

fn main() -> ExitCode {
    let per_case: usize = match std::env::args().nth(1).map(|a| a.parse()) {
        None => 20_000,
        Some(Ok(n)) if n >= ROUND => n,
        Some(_) => {
            eprintln!("usage: decision_percentiles [DECISIONS_PER_CASE ≥ {ROUND}]");
            return ExitCode::FAILURE;
        }
    };
    let rounds = per_case.div_ceil(ROUND);
    let world = World::new();
    let reference = CedarReference::new();

    println!(
        "policy decision latency: {} decisions per case in {rounds} rounds of {ROUND}, each round after {ROUND} reference evaluations",
        rounds * ROUND
    );
    println!(
        "reference: Cedar's is_authorized of the permit query against reads-are-low-risk alone (request and entities prebuilt)\n"
    );
    println!(
        "{:>8} {:>19} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12} {:>12}",
        "policies", "query", "p50", "p99", "mean", "ref p50", "ref p99", "p50 ÷ ref", "p99 ÷ ref"
    );
    let mut all_reference = Vec::new();
    let mut verdict = Vec::new();
    let mut warm = Vec::with_capacity(2 * ROUND);
    // First-sight variants of the permit query, one per timed decision.
    let (permit, permit_context) = (world.queries()[0].1, world.working_hours.clone());
    let contexts: Vec<_> = (0..rounds * ROUND)
        .map(|i| {
            let mut c = permit_context.clone();
            c.txn = format!("txn-{i}");
            c
        })
        .collect();
    let principals: Vec<_> = (0..rounds * ROUND)
        .map(|i| {
            let mut p = world.principal.clone();
            p.owner = format!("owner-{i}@example.com");
            p
        })
        .collect();
    for n in policy_sets::sizes() {
        let set = policy_sets::set(n);
        let mut cases: Vec<(&str, Vec<Query<'_>>, Outcome)> = world
            .queries()
            .into_iter()
            .map(|(name, q, expected)| (name, vec![q; rounds * ROUND], expected))
            .collect();
        if n == 100 {
            let new_task = contexts.iter().map(|c| Query {
                context: c,
                ..permit
            });
            let new_shape = principals.iter().map(|p| Query {
                principal: p,
                ..permit
            });
            cases.push(("permit, new task", new_task.collect(), Outcome::Permit));
            cases.push(("permit, new shape", new_shape.collect(), Outcome::Permit));
        }
        for (name, queries, expected) in &cases {
            check(&set, &queries[0], expected);
            check(&set, &queries[queries.len() - 1], expected);
            // Warm-up, untimed figures.
            warm.clear();
            time_reference(&reference, ROUND, &mut warm);
            time(&set, &queries[..ROUND], &mut warm);
            let mut samples = Vec::with_capacity(rounds * ROUND);
            let mut ref_samples = Vec::with_capacity(rounds * ROUND);
            for round in queries.chunks(ROUND) {
                time_reference(&reference, ROUND, &mut ref_samples);
                time(&set, round, &mut samples);
            }
            all_reference.extend_from_slice(&ref_samples);
            let s = stats(&mut samples);
            let r = stats(&mut ref_samples);
            println!(
                "{n:>8} {name:>19} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12.2} {:>12.2}",
                micros(s.p50),
                micros(s.p99),
                micros(s.mean),
                micros(r.p50),
                micros(r.p99),
                s.p50 / r.p50,
                s.p99 / r.p99,
            );
            // The target is for the steady state; first sights are shown above.
            if n == 100 && !name.contains("new") {
                verdict.push((*name, s.p50));
            }
        }
    }
    let r = stats(&mut all_reference);
    println!(
        "{:>8} {:>19} {:>10} {:>10} {:>10}   (all reference rounds pooled)",
        1,
        "reference",
        micros(r.p50),
        micros(r.p99),
        micros(r.mean)
    );

    println!("\nPolicySet::load (parse, annotations, strict validation), median of 5:");
    for n in policy_sets::sizes() {
        let files = policy_sets::files(n);
        let mut loads: Vec<u64> = (0..5)
            .map(|_| {
                let start = Instant::now();
                black_box(PolicySet::load(black_box(&files)).expect("validates"));
                u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX)
            })
            .collect();
        let s = stats(&mut loads);
        println!("{n:>8} policies: {:.2} ms", s.p50 / 1e6);
    }

    println!();
    let target = TARGET_P50_AT_100.as_nanos() as f64;
    for (name, p50) in verdict {
        let met = if p50 <= target { "met" } else { "MISSED" };
        println!(
            "p50 at 100 policies, {name}: {} (target ≤ {}: {met})",
            micros(p50),
            micros(target)
        );
    }
    ExitCode::SUCCESS
}
