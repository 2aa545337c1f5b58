//! End-to-end tests: each starts the real `agentauth` binary on a free
//! loopback port with a temporary data dir and drives it over HTTP.

#![allow(unreachable_pub)]

mod support;

mod cli;
mod delegation;
mod feed;
mod layer;
mod lifecycle;
mod oauth;
mod registry;
