//! End-to-end tests: each starts the real `agentauth` binary on a free
//! loopback port with a temporary data dir and drives it over HTTP.

#![allow(unreachable_pub)]

mod support;

/// The example customer agent, shared by the tests that put a layer in front of it.
#[allow(dead_code, unreachable_pub)]
#[path = "../../examples/customer_agent.rs"]
mod customer_agent;

mod approval;
mod cli;
mod connections;
mod crash;
mod delegation;
mod dpop;
mod ephemeral;
mod faults;
mod federation;
mod feed;
mod inheritance;
mod layer;
mod lifecycle;
mod monitoring;
mod node;
mod oauth;
mod policy;
mod registry;
mod replicas;
mod rotation;
mod spawning;
mod standards;
mod standing;
mod svid;
mod tasks;
mod tls;
mod workload;
