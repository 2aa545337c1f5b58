//! The form parser: `agentauth_authority::parse_form`, which runs the
//! repeated/surplus parameter check and then the form decoding it guards.
//!
//! Asserts: a form is accepted exactly when a reference decoder written here
//! finds at most 64 parameters with distinct names; a refusal names a
//! repeated parameter or the bound; an accepted form decodes to the
//! reference's pairs, and typed fields read the reference's values.
#![no_main]

use std::collections::HashSet;

use agentauth_authority::{BodyError, parse_form};
use libfuzzer_sys::fuzz_target;

/// The authority's bound on form parameters (`body::MAX_FORM_PARAMETERS`).
const MAX_PARAMETERS: usize = 64;

/// `application/x-www-form-urlencoded` parsing (WHATWG URL §5.1), written
/// independently: split on `&`, skip empty pieces, split at the first `=`,
/// `+` is a space, `%XX` is a byte (anything else after `%` stays), and the
/// bytes are read as UTF-8 with replacement.
fn reference(form: &[u8]) -> Vec<(String, String)> {
    form.split(|b| *b == b'&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| match piece.iter().position(|b| *b == b'=') {
            Some(i) => (decode(&piece[..i]), decode(&piece[i + 1..])),
            None => (decode(piece), String::new()),
        })
        .collect()
}

fn decode(bytes: &[u8]) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push(u8::try_from(high * 16 + low).expect("two hex digits"));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A typed request, as the token endpoint reads one.
#[derive(serde::Deserialize)]
struct TokenRequest {
    grant_type: String,
    scope: Option<String>,
}

/// What the check must say: the first parameter past the bound, else the
/// first repeated name (shortened to 64 characters), else nothing.
fn expected_refusal(pairs: &[(String, String)]) -> Option<Result<String, usize>> {
    let mut seen = HashSet::new();
    for (name, _) in pairs {
        if seen.len() == MAX_PARAMETERS {
            return Some(Err(MAX_PARAMETERS));
        }
        if !seen.insert(name) {
            return Some(Ok(name.chars().take(64).collect()));
        }
    }
    None
}

fuzz_target!(|data: &[u8]| {
    let pairs = reference(data);
    let mut names = HashSet::new();
    let distinct = pairs.iter().all(|(name, _)| names.insert(name.as_str()));
    let acceptable = distinct && pairs.len() <= MAX_PARAMETERS;

    let parsed = parse_form::<Vec<(String, String)>>(data);
    assert_eq!(parsed.is_ok(), acceptable, "{pairs:?}");
    match (parsed, expected_refusal(&pairs)) {
        (Ok(parsed), None) => assert_eq!(parsed, pairs),
        (Err(BodyError::RepeatedParameter(name)), Some(Ok(expected))) => {
            assert_eq!(name, expected);
        }
        (Err(BodyError::TooManyParameters { limit }), Some(Err(expected))) => {
            assert_eq!(limit, expected);
        }
        (got, want) => panic!("parse_form said {got:?}, the reference {want:?}"),
    }

    if let Ok(typed) = parse_form::<TokenRequest>(data) {
        let value = |name: &str| {
            pairs
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(Some(typed.grant_type), value("grant_type"));
        assert_eq!(typed.scope, value("scope"));
    }
});
