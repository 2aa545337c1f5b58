//! HTTP Message Signatures (RFC 9421) over the parts of a request agentauth
//! binds — method, target URI, Authorization and the body's Content-Digest
//! (RFC 9530) — signed with the key named in the token's `cnf`.
//!
//! Only the profile agentauth uses is implemented: the one signature tagged
//! `agentauth` (whatever its label, RFC 9421 §7.2.5; other signatures are
//! ignored), covering exactly the four components in any order, with the
//! `created`, `expires`, `nonce`, `keyid`, `alg` and `tag` parameters in any
//! order. The signature base is built from the components and parameters in
//! the order the signer sent them (RFC 9421 §2.3, §3.2): what was signed is
//! what is checked. Anything else is refused, naming the rule.

use aws_lc_rs::digest;
use sfv::{
    BareItem, Dictionary, FieldType, InnerList, Integer, KeyRef, ListEntry, ListSerializer, Parser,
    StringRef,
};

use crate::{HttpSigError, JwsAlg, PublicJwk, SigningKey, b64url_encode};

/// The dictionary key agentauth's own signer gives its signature in
/// `Signature-Input` and `Signature`. Verifiers select by [`SIGNATURE_TAG`], not by label.
pub const SIGNATURE_LABEL: &str = "agentauth";
/// The `tag` parameter that marks the application profile; the verifier
/// checks the one signature that carries it.
pub const SIGNATURE_TAG: &str = "agentauth";
/// The signature parameters the profile knows.
const KNOWN_PARAMETERS: [&str; 6] = ["created", "expires", "nonce", "keyid", "alg", "tag"];
/// The covered components, in signing order.
pub const COVERED_COMPONENTS: [&str; 4] =
    ["@method", "@target-uri", "authorization", "content-digest"];
/// Longest header value we parse.
const MAX_FIELD_LEN: usize = 4096;

/// The RFC 9530 `Content-Digest` value of `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    use base64::Engine as _;
    let hash = digest::digest(&digest::SHA256, body);
    format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD.encode(hash.as_ref())
    )
}

/// The values of the covered components of one request.
#[derive(Debug, Clone, Copy)]
pub struct SignedComponents<'a> {
    /// `@method`, e.g. `GET`.
    pub method: &'a str,
    /// `@target-uri`, the absolute request URI.
    pub target_uri: &'a str,
    /// The `Authorization` field value.
    pub authorization: &'a str,
    /// The `Content-Digest` field value.
    pub content_digest: &'a str,
}

/// The signature parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    /// Creation time, seconds since the epoch.
    pub created: i64,
    /// Expiry time.
    pub expires: i64,
    /// Single-use value for replay detection.
    pub nonce: String,
    /// The signer's key: the JWK thumbprint in the token's `cnf.jkt`.
    pub keyid: String,
    /// The algorithm, matching the key.
    pub alg: JwsAlg,
}

/// The two header values a signed request carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureHeaders {
    /// The `Signature-Input` value.
    pub signature_input: String,
    /// The `Signature` value.
    pub signature: String,
}

/// RFC 9421 algorithm name of a JWS algorithm.
fn httpsig_alg(alg: JwsAlg) -> &'static str {
    match alg {
        JwsAlg::EdDSA | JwsAlg::Ed25519 => "ed25519",
        JwsAlg::ES256 => "ecdsa-p256-sha256",
    }
}

fn alg_from_name(name: &str) -> Option<JwsAlg> {
    match name {
        "ed25519" => Some(JwsAlg::EdDSA),
        "ecdsa-p256-sha256" => Some(JwsAlg::ES256),
        _ => None,
    }
}

/// The value of one covered component.
fn component_value<'a>(parts: &SignedComponents<'a>, name: &str) -> &'a str {
    match name {
        "@method" => parts.method,
        "@target-uri" => parts.target_uri,
        "authorization" => parts.authorization.trim(),
        _ => parts.content_digest.trim(),
    }
}

/// The serialized inner list with parameters, exactly as `@signature-params` covers it.
fn serialize_params(params: &SignatureParams) -> Result<String, HttpSigError> {
    let bad = |_| HttpSigError::Malformed("a parameter cannot be serialized");
    let key = |k: &'static str| KeyRef::from_str(k).map_err(bad);
    let int = |v: i64| {
        Integer::try_from(v).map_err(|_| HttpSigError::Malformed("a time is out of range"))
    };
    let mut list = ListSerializer::new();
    {
        let mut inner = list.inner_list();
        for component in COVERED_COMPONENTS {
            inner.bare_item(StringRef::from_str(component).map_err(bad)?);
        }
        inner
            .finish()
            .parameter(key("created")?, int(params.created)?)
            .parameter(key("expires")?, int(params.expires)?)
            .parameter(
                key("nonce")?,
                StringRef::from_str(&params.nonce).map_err(bad)?,
            )
            .parameter(
                key("keyid")?,
                StringRef::from_str(&params.keyid).map_err(bad)?,
            )
            .parameter(
                key("alg")?,
                StringRef::from_str(httpsig_alg(params.alg)).map_err(bad)?,
            )
            .parameter(
                key("tag")?,
                StringRef::from_str(SIGNATURE_TAG).map_err(bad)?,
            );
    }
    list.finish()
        .ok_or(HttpSigError::Malformed("empty signature parameters"))
}

/// The RFC 9421 §2.5 signature base: each component in `order`, then
/// `@signature-params` as serialized.
fn signature_base(parts: &SignedComponents<'_>, order: &[&str], serialized_params: &str) -> String {
    let mut base = String::new();
    for name in order {
        base.push_str(&format!("\"{name}\": {}\n", component_value(parts, name)));
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(serialized_params);
    base
}

/// Signs a request's components with `key`.
pub fn sign_request(
    parts: &SignedComponents<'_>,
    params: &SignatureParams,
    key: &SigningKey,
) -> Result<SignatureHeaders, HttpSigError> {
    if !key.public_jwk().accepts(params.alg) {
        return Err(HttpSigError::AlgorithmMismatch);
    }
    let serialized = serialize_params(params)?;
    let signature = key.sign(signature_base(parts, &COVERED_COMPONENTS, &serialized).as_bytes());
    use base64::Engine as _;
    Ok(SignatureHeaders {
        signature_input: format!("{SIGNATURE_LABEL}={serialized}"),
        signature: format!(
            "{SIGNATURE_LABEL}=:{}:",
            base64::engine::general_purpose::STANDARD.encode(signature)
        ),
    })
}

/// A signature read from the headers, not yet verified.
#[derive(Debug, Clone)]
pub struct ReceivedSignature {
    /// Its parameters.
    pub params: SignatureParams,
    /// The label it was sent under; any label is fine, the tag selects it.
    pub label: String,
    signature: Vec<u8>,
    /// The covered components in the order the signer listed them.
    components: Vec<&'static str>,
    /// `@signature-params` as received (RFC 9421 §2.3), parameter order kept.
    serialized_params: String,
}

fn string_param(list: &InnerList, name: &'static str) -> Result<String, HttpSigError> {
    list.params
        .get(name)
        .and_then(BareItem::as_string)
        .map(|s| s.as_str().to_owned())
        .ok_or(HttpSigError::MissingParameter(name))
}

fn integer_param(list: &InnerList, name: &'static str) -> Result<i64, HttpSigError> {
    list.params
        .get(name)
        .and_then(BareItem::as_integer)
        .map(i64::from)
        .ok_or(HttpSigError::MissingParameter(name))
}

fn is_tagged(list: &InnerList) -> bool {
    list.params
        .get("tag")
        .and_then(BareItem::as_string)
        .is_some_and(|t| t.as_str() == SIGNATURE_TAG)
}

/// The label and inner list of the one signature tagged `agentauth`.
fn select_tagged(inputs: &Dictionary) -> Result<(&str, &InnerList), HttpSigError> {
    let mut tagged = inputs.iter().filter_map(|(label, entry)| match entry {
        ListEntry::InnerList(list) if is_tagged(list) => Some((label.as_str(), list)),
        _ => None,
    });
    match (tagged.next(), tagged.next()) {
        (Some(one), None) => Ok(one),
        (Some(_), Some(_)) => Err(HttpSigError::SeveralTagged),
        // Our own label without our tag: say what is wrong with it.
        (None, _) if inputs.contains_key(SIGNATURE_LABEL) => Err(HttpSigError::WrongTag),
        (None, _) => Err(HttpSigError::Missing),
    }
}

/// The covered components, each exactly once, in the signer's order.
fn covered_components(list: &InnerList) -> Result<Vec<&'static str>, HttpSigError> {
    let mut order = Vec::with_capacity(COVERED_COMPONENTS.len());
    for item in &list.items {
        let known = item
            .bare_item
            .as_string()
            .and_then(|name| COVERED_COMPONENTS.iter().find(|c| **c == name.as_str()))
            .filter(|c| item.params.is_empty() && !order.contains(*c))
            .ok_or(HttpSigError::WrongComponents)?;
        order.push(*known);
    }
    if order.len() != COVERED_COMPONENTS.len() {
        return Err(HttpSigError::WrongComponents);
    }
    Ok(order)
}

impl ReceivedSignature {
    /// Parses the signature tagged `agentauth` out of `Signature-Input` and
    /// `Signature`, whatever its label and parameter order; other signatures
    /// are ignored. Refuses another component set, unknown parameters and
    /// more than one tagged signature.
    pub fn parse(signature_input: &str, signature: &str) -> Result<Self, HttpSigError> {
        if signature_input.len() > MAX_FIELD_LEN || signature.len() > MAX_FIELD_LEN {
            return Err(HttpSigError::Malformed("a signature header is too long"));
        }
        let inputs: Dictionary = Parser::new(signature_input).parse().map_err(|_| {
            HttpSigError::Malformed("Signature-Input is not a structured dictionary")
        })?;
        let signatures: Dictionary = Parser::new(signature)
            .parse()
            .map_err(|_| HttpSigError::Malformed("Signature is not a structured dictionary"))?;
        let (label, list) = select_tagged(&inputs)?;
        let Some(ListEntry::Item(sig_item)) = signatures.get(label) else {
            return Err(HttpSigError::Malformed(
                "Signature has no entry under the label of the agentauth-tagged Signature-Input",
            ));
        };
        let signature = sig_item
            .bare_item
            .as_byte_sequence()
            .ok_or(HttpSigError::Malformed(
                "the signature is not a byte sequence",
            ))?
            .to_vec();
        let components = covered_components(list)?;
        if list
            .params
            .keys()
            .any(|k| !KNOWN_PARAMETERS.contains(&k.as_str()))
        {
            return Err(HttpSigError::Malformed("unknown signature parameter"));
        }
        let alg_name = string_param(list, "alg")?;
        let params = SignatureParams {
            created: integer_param(list, "created")?,
            expires: integer_param(list, "expires")?,
            nonce: string_param(list, "nonce")?,
            keyid: string_param(list, "keyid")?,
            alg: alg_from_name(&alg_name).ok_or(HttpSigError::AlgorithmMismatch)?,
        };
        if params.nonce.is_empty() || params.nonce.len() > 128 {
            return Err(HttpSigError::Malformed(
                "the nonce must be 1 to 128 characters",
            ));
        }
        // RFC 9421 §2.3: the parameters are covered as the signer serialized
        // them, in its order; re-serializing the parsed inner list gives that.
        let serialized_params = vec![ListEntry::InnerList(list.clone())]
            .serialize()
            .ok_or(HttpSigError::Malformed("empty signature parameters"))?;
        Ok(Self {
            params,
            label: label.to_owned(),
            signature,
            components,
            serialized_params,
        })
    }

    /// Checks time bounds (`now`, with `skew` seconds of tolerance, and a
    /// signature lifetime of at most `window` seconds), that the key is the
    /// one bound in the token, and the signature itself.
    pub fn verify(
        &self,
        parts: &SignedComponents<'_>,
        key: &PublicJwk,
        expected_keyid: &str,
        now: i64,
        skew: i64,
        window: i64,
    ) -> Result<(), HttpSigError> {
        self.params.check_times(now, skew, window)?;
        if self.params.keyid != expected_keyid {
            return Err(HttpSigError::KeyMismatch);
        }
        if !key.accepts(self.params.alg) {
            return Err(HttpSigError::AlgorithmMismatch);
        }
        let base = signature_base(parts, &self.components, &self.serialized_params);
        if key.verify(base.as_bytes(), &self.signature) {
            Ok(())
        } else {
            Err(HttpSigError::BadSignature)
        }
    }
}

impl SignatureParams {
    /// The time rules of a received signature: not created in the future, not
    /// expired, `expires − created` at most `window` and `created` at most
    /// `window` old (both beyond `skew`), so a proof is replayable nowhere
    /// for longer than the window however its signer set the times.
    pub fn check_times(&self, now: i64, skew: i64, window: i64) -> Result<(), HttpSigError> {
        if self.created > now.saturating_add(skew) {
            return Err(HttpSigError::FromTheFuture);
        }
        if self.expires.saturating_add(skew) < now || self.expires < self.created {
            return Err(HttpSigError::Expired);
        }
        let lifetime = self.expires.saturating_sub(self.created);
        if lifetime > window {
            return Err(HttpSigError::SignatureWindowTooLong {
                secs: lifetime,
                max: window,
            });
        }
        let age = now.saturating_sub(self.created);
        if age > window.saturating_add(skew) {
            return Err(HttpSigError::CreatedTooOld {
                age,
                max: window.saturating_add(skew),
            });
        }
        Ok(())
    }
}

/// A fresh random nonce for a signature.
pub fn signature_nonce() -> String {
    b64url_encode(crate::random_bytes(16))
}

#[cfg(test)]
mod tests {
    use super::*;

    const URI: &str = "http://127.0.0.1:9001/api/customer/42";

    fn parts<'a>(digest: &'a str) -> SignedComponents<'a> {
        SignedComponents {
            method: "POST",
            target_uri: URI,
            authorization: "Bearer abc.def.ghi",
            content_digest: digest,
        }
    }

    fn params(key: &SigningKey, created: i64) -> SignatureParams {
        SignatureParams {
            created,
            expires: created + 60,
            nonce: "n-1".into(),
            keyid: key.public_jwk().thumbprint().0,
            alg: key.alg(),
        }
    }

    fn round_trip(
        key: &SigningKey,
        signed: &SignedComponents<'_>,
        checked: &SignedComponents<'_>,
    ) -> Result<(), HttpSigError> {
        let headers = sign_request(signed, &params(key, 1_000), key)?;
        let received = ReceivedSignature::parse(&headers.signature_input, &headers.signature)?;
        received.verify(
            checked,
            &key.public_jwk(),
            &key.public_jwk().thumbprint().0,
            1_010,
            30,
            60,
        )
    }

    #[test]
    fn content_digest_matches_rfc9530_example() {
        // RFC 9530 §B.1: the digest of {"hello": "world"}\n.
        assert_eq!(
            content_digest(b"{\"hello\": \"world\"}\n"),
            "sha-256=:RK/0qy18MlBSVnWgjwz6lZEWjP/lF5HF9bvEF8FabDg=:"
        );
    }

    #[test]
    fn a_signed_request_verifies_for_both_curves() {
        let digest = content_digest(b"{}");
        for key in [SigningKey::generate_ed25519(), SigningKey::generate_p256()] {
            round_trip(&key, &parts(&digest), &parts(&digest)).unwrap();
        }
    }

    #[test]
    fn the_signature_input_is_the_canonical_inner_list() {
        let key = SigningKey::generate_ed25519();
        let headers = sign_request(&parts("d"), &params(&key, 1_000), &key).unwrap();
        let expected = format!(
            "agentauth=(\"@method\" \"@target-uri\" \"authorization\" \"content-digest\");created=1000;expires=1060;nonce=\"n-1\";keyid=\"{}\";alg=\"ed25519\";tag=\"agentauth\"",
            key.public_jwk().thumbprint()
        );
        assert_eq!(headers.signature_input, expected);
        assert!(headers.signature.starts_with("agentauth=:") && headers.signature.ends_with(':'));
    }

    #[test]
    fn any_changed_component_breaks_the_signature() {
        let key = SigningKey::generate_ed25519();
        let digest = content_digest(b"{}");
        let other_digest = content_digest(b"{\"x\":1}");
        let signed = parts(&digest);
        let changes = [
            SignedComponents {
                method: "GET",
                ..signed
            },
            SignedComponents {
                target_uri: "http://127.0.0.1:9001/api/customer/43",
                ..signed
            },
            SignedComponents {
                authorization: "Bearer other",
                ..signed
            },
            SignedComponents {
                content_digest: &other_digest,
                ..signed
            },
        ];
        for changed in changes {
            assert_eq!(
                round_trip(&key, &signed, &changed),
                Err(HttpSigError::BadSignature)
            );
        }
    }

    #[test]
    fn time_key_and_algorithm_are_enforced() {
        let key = SigningKey::generate_ed25519();
        let digest = content_digest(b"");
        let p = parts(&digest);
        let headers = sign_request(&p, &params(&key, 1_000), &key).unwrap();
        let received =
            ReceivedSignature::parse(&headers.signature_input, &headers.signature).unwrap();
        let jkt = key.public_jwk().thumbprint().0;
        let public = key.public_jwk();
        assert_eq!(
            received.verify(&p, &public, &jkt, 1_000 - 31, 30, 60),
            Err(HttpSigError::FromTheFuture)
        );
        assert_eq!(
            received.verify(&p, &public, &jkt, 1_060 + 31, 30, 60),
            Err(HttpSigError::Expired)
        );
        assert!(
            received
                .verify(&p, &public, &jkt, 1_060 + 30, 30, 60)
                .is_ok()
        );
        assert_eq!(
            received.verify(&p, &public, "other", 1_000, 30, 60),
            Err(HttpSigError::KeyMismatch)
        );
        let thief = SigningKey::generate_ed25519();
        assert_eq!(
            received.verify(&p, &thief.public_jwk(), &jkt, 1_000, 30, 60),
            Err(HttpSigError::BadSignature)
        );
        let p256 = SigningKey::generate_p256();
        assert_eq!(
            received.verify(&p, &p256.public_jwk(), &jkt, 1_000, 30, 60),
            Err(HttpSigError::AlgorithmMismatch)
        );
    }

    fn timed(created: i64, expires: i64) -> SignatureParams {
        SignatureParams {
            created,
            expires,
            nonce: "n".into(),
            keyid: "k".into(),
            alg: JwsAlg::Ed25519,
        }
    }

    #[test]
    fn a_far_future_expires_is_refused_naming_the_window() {
        let now = 1_000_000;
        assert_eq!(
            timed(now, now + 1_000_000_000_000).check_times(now, 30, 60),
            Err(HttpSigError::SignatureWindowTooLong {
                secs: 1_000_000_000_000,
                max: 60
            })
        );
        assert_eq!(
            timed(now, now + 61).check_times(now, 30, 60),
            Err(HttpSigError::SignatureWindowTooLong { secs: 61, max: 60 })
        );
        assert!(timed(now, now + 60).check_times(now, 30, 60).is_ok());
        assert!(timed(now, now + 300).check_times(now, 30, 300).is_ok());
        assert_eq!(
            timed(i64::MIN, i64::MAX).check_times(now, 30, 60),
            Err(HttpSigError::SignatureWindowTooLong {
                secs: i64::MAX,
                max: 60
            })
        );
    }

    #[test]
    fn a_signature_created_longer_ago_than_the_window_is_refused() {
        let now = 1_000_000;
        for age in [91, 120, 10_000] {
            for lifetime in [0, 30, 60, 1_000] {
                let created = now - age;
                assert!(
                    timed(created, created + lifetime)
                        .check_times(now, 30, 60)
                        .is_err(),
                    "age {age}, lifetime {lifetime}"
                );
            }
        }
        assert!(timed(now - 90, now - 30).check_times(now, 30, 60).is_ok());
    }

    /// A signature made from a hand-written inner list, as another library
    /// would send it: the base lists the components in `inner`'s order.
    fn foreign(
        key: &SigningKey,
        p: &SignedComponents<'_>,
        label: &str,
        order: &[&str],
        params: &str,
    ) -> (String, String) {
        use base64::Engine as _;
        let names: Vec<String> = order.iter().map(|c| format!("\"{c}\"")).collect();
        let inner = format!("({}){params}", names.join(" "));
        let mut base = String::new();
        for c in order {
            base.push_str(&format!("\"{c}\": {}\n", component_value(p, c)));
        }
        base.push_str(&format!("\"@signature-params\": {inner}"));
        let sig = base64::engine::general_purpose::STANDARD.encode(key.sign(base.as_bytes()));
        (format!("{label}={inner}"), format!("{label}=:{sig}:"))
    }

    fn python_order_params(key: &SigningKey) -> String {
        // http-message-signatures 3.0 writes created, keyid, alg, expires, nonce, tag.
        format!(
            ";created=1000;keyid=\"{}\";alg=\"ed25519\";expires=1060;nonce=\"n-1\";tag=\"agentauth\"",
            key.public_jwk().thumbprint()
        )
    }

    fn check(
        key: &SigningKey,
        p: &SignedComponents<'_>,
        input: &str,
        sig: &str,
    ) -> Result<ReceivedSignature, HttpSigError> {
        let received = ReceivedSignature::parse(input, sig)?;
        let jkt = key.public_jwk().thumbprint().0;
        received.verify(p, &key.public_jwk(), &jkt, 1_010, 30, 60)?;
        Ok(received)
    }

    #[test]
    fn parameters_and_components_in_the_signers_order_verify_as_received() {
        let key = SigningKey::generate_ed25519();
        let digest = content_digest(b"{}");
        let p = parts(&digest);
        let params = python_order_params(&key);
        let (input, sig) = foreign(&key, &p, "pyhms", &COVERED_COMPONENTS, &params);
        let received = check(&key, &p, &input, &sig).unwrap();
        assert_eq!(received.label, "pyhms");
        assert_eq!(received.params.nonce, "n-1");
        let shuffled = ["content-digest", "@target-uri", "authorization", "@method"];
        let (input, sig) = foreign(&key, &p, "sig1", &shuffled, &params);
        check(&key, &p, &input, &sig).unwrap();
    }

    #[test]
    fn params_reordered_after_signing_no_longer_verify() {
        let key = SigningKey::generate_ed25519();
        let digest = content_digest(b"{}");
        let p = parts(&digest);
        let (input, sig) = foreign(
            &key,
            &p,
            "pyhms",
            &COVERED_COMPONENTS,
            &python_order_params(&key),
        );
        // Move `created` to the end: what is checked is no longer what was signed.
        let moved = input.replacen(";created=1000", "", 1) + ";created=1000";
        assert_eq!(
            check(&key, &p, &moved, &sig).unwrap_err(),
            HttpSigError::BadSignature
        );
    }

    #[test]
    fn the_tagged_signature_counts_among_several_with_other_labels() {
        let key = SigningKey::generate_ed25519();
        let digest = content_digest(b"{}");
        let p = parts(&digest);
        let (ours_in, ours_sig) = foreign(
            &key,
            &p,
            "sig2",
            &COVERED_COMPONENTS,
            &python_order_params(&key),
        );
        // A proxy's signature with its own label and tag, over other components, and garbage bytes.
        let input = format!("proxy=(\"@method\");created=1;keyid=\"p\";tag=\"gateway\", {ours_in}");
        let sig = format!("proxy=:AAAA:, {ours_sig}");
        let received = check(&key, &p, &input, &sig).unwrap();
        assert_eq!(received.label, "sig2");
        // Order of the dictionary members does not matter either.
        let input = format!("{ours_in}, agentauth=(\"@method\");tag=\"other\"");
        let sig = format!("agentauth=:AAAA:, {ours_sig}");
        check(&key, &p, &input, &sig).unwrap();
    }

    #[test]
    fn two_signatures_tagged_agentauth_are_refused() {
        let key = SigningKey::generate_ed25519();
        let digest = content_digest(b"{}");
        let p = parts(&digest);
        let params = python_order_params(&key);
        let (a_in, a_sig) = foreign(&key, &p, "a", &COVERED_COMPONENTS, &params);
        let (b_in, b_sig) = foreign(&key, &p, "b", &COVERED_COMPONENTS, &params);
        let err = check(
            &key,
            &p,
            &format!("{a_in}, {b_in}"),
            &format!("{a_sig}, {b_sig}"),
        )
        .unwrap_err();
        assert_eq!(err, HttpSigError::SeveralTagged);
        assert!(err.to_string().contains("more than one"), "{err}");
    }

    #[test]
    fn a_duplicated_or_parameterised_component_is_refused() {
        let key = SigningKey::generate_ed25519();
        let digest = content_digest(b"{}");
        let p = parts(&digest);
        let params = python_order_params(&key);
        let twice = [
            "@method",
            "@method",
            "@target-uri",
            "authorization",
            "content-digest",
        ];
        let (input, sig) = foreign(&key, &p, "s", &twice, &params);
        assert_eq!(
            check(&key, &p, &input, &sig).unwrap_err(),
            HttpSigError::WrongComponents
        );
        let input = input.replacen("\"@method\"", "\"@method\";req", 1);
        assert_eq!(
            ReceivedSignature::parse(&input, &sig).unwrap_err(),
            HttpSigError::WrongComponents
        );
    }

    #[test]
    fn a_bad_signature_names_the_signature_base_not_a_guessed_cause() {
        let message = HttpSigError::BadSignature.to_string();
        assert!(message.contains("signature base"), "{message}");
        assert!(message.contains("parameters, as received"), "{message}");
        assert!(!message.contains("body changed"), "{message}");
    }

    #[test]
    fn other_profiles_are_refused() {
        let sig = "agentauth=:AAAA:";
        let cases = [
            (
                "agentauth=(\"@method\" \"@target-uri\" \"authorization\");created=1;expires=2;nonce=\"n\";keyid=\"k\";alg=\"ed25519\";tag=\"agentauth\"",
                HttpSigError::WrongComponents,
            ),
            (
                "agentauth=(\"@method\" \"@target-uri\" \"authorization\" \"content-digest\");created=1;expires=2;nonce=\"n\";keyid=\"k\";alg=\"ed25519\";tag=\"other\"",
                HttpSigError::WrongTag,
            ),
            (
                "agentauth=(\"@method\" \"@target-uri\" \"authorization\" \"content-digest\");created=1;expires=2;nonce=\"n\";keyid=\"k\";alg=\"hmac-sha256\";tag=\"agentauth\"",
                HttpSigError::AlgorithmMismatch,
            ),
            (
                "agentauth=(\"@method\" \"@target-uri\" \"authorization\" \"content-digest\");created=1;nonce=\"n\";keyid=\"k\";alg=\"ed25519\";tag=\"agentauth\"",
                HttpSigError::MissingParameter("expires"),
            ),
            ("other=(\"@method\");created=1", HttpSigError::Missing),
        ];
        for (input, expected) in cases {
            assert_eq!(
                ReceivedSignature::parse(input, sig).unwrap_err(),
                expected,
                "{input}"
            );
        }
        assert!(matches!(
            ReceivedSignature::parse("not a dictionary ((", sig),
            Err(HttpSigError::Malformed(_))
        ));
    }
}
