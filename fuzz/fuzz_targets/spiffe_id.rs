//! Identities: `SpiffeId::parse`, `AgentName::new` and `TrustDomain::new` on
//! arbitrary text.
//!
//! Asserts: each accepts exactly what a reference written from the SPIFFE-ID
//! spec and the registry pattern accepts; a parsed ID prints as its input,
//! re-parses equal, splits into a valid trust domain and path, survives a
//! JSON round trip, and an agent ID rebuilds from its parts.
#![no_main]

use agentauth_core::{AgentName, SpiffeId, TrustDomain};
use libfuzzer_sys::fuzz_target;

fn is_trust_domain(s: &str) -> bool {
    (1..=255).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
}

fn is_segment(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
}

/// `spiffe://<trust domain>[/<segment>...]`, at most 2048 bytes.
fn is_spiffe_id(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("spiffe://") else {
        return false;
    };
    if s.len() > 2048 {
        return false;
    }
    match rest.split_once('/') {
        None => is_trust_domain(rest),
        Some((domain, path)) => is_trust_domain(domain) && path.split('/').all(is_segment),
    }
}

/// `[a-z0-9][a-z0-9-]{0,62}`.
fn is_agent_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && s.len() <= 63
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    assert_eq!(TrustDomain::new(text).is_ok(), is_trust_domain(text));
    assert_eq!(AgentName::new(text).is_ok(), is_agent_name(text));
    let parsed = SpiffeId::parse(text);
    assert_eq!(parsed.is_ok(), is_spiffe_id(text), "{text:?}");
    let Ok(id) = parsed else {
        return;
    };
    assert_eq!(id.to_string(), text);
    assert_eq!(SpiffeId::parse(id.as_str()).expect("re-parses"), id);
    let domain = TrustDomain::new(id.trust_domain()).expect("its trust domain is valid");
    assert!(id.is_in(&domain));
    assert_eq!(format!("spiffe://{}{}", id.trust_domain(), id.path()), text);
    assert!(id.path().is_empty() || id.path().starts_with('/'));

    let json = serde_json::to_string(&id).expect("serializes");
    assert_eq!(
        serde_json::from_str::<SpiffeId>(&json).expect("deserializes"),
        id
    );

    if let Some(name) = id.agent_name() {
        assert_eq!(SpiffeId::agent(&domain, &name), id);
        assert_eq!(format!("/agent/{name}"), id.path());
    }
    if id.path() == "/authority" {
        assert_eq!(SpiffeId::authority(&domain), id);
    }
});
