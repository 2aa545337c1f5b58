//! What an X.509-SVID costs the authority and a verifier: issuing one from a
//! CSR (CSR signature check, certificate build, one ECDSA signature) and
//! checking a chain, each against one bare ECDSA P-256 signature measured in
//! the same run (`bench/svid.sh` prints the ratios).

use std::hint::black_box;

use agentauth_core::{SpiffeId, TrustDomain};
use agentauth_svid::{CertificateAuthority, check_svid};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};
use criterion::{Criterion, criterion_group, criterion_main};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256};

fn svid(c: &mut Criterion) {
    let now = agentauth_core::unix_now();
    let td = TrustDomain::new("agentauth.local").unwrap();
    let id = SpiffeId::parse("spiffe://agentauth.local/agent/bench").unwrap();
    let ca = CertificateAuthority::generate(&td, now, 86_400).unwrap();
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .der()
        .as_ref()
        .to_vec();
    let issued = ca.issue(&csr, &id, now, 3600).unwrap();

    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng).unwrap();
    let signer = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_ref()).unwrap();
    let message = [7u8; 256];

    let mut group = c.benchmark_group("svid");
    group.bench_function("ecdsa_p256_signature", |b| {
        b.iter(|| signer.sign(&rng, black_box(&message)).unwrap());
    });
    group.bench_function("issue_from_csr", |b| {
        b.iter(|| ca.issue(black_box(&csr), &id, now, 3600).unwrap());
    });
    group.bench_function("check_svid", |b| {
        b.iter(|| {
            check_svid(
                &[black_box(&issued.der)],
                &[ca.cert_der()],
                "agentauth.local",
                now,
            )
            .unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, svid);
criterion_main!(benches);
