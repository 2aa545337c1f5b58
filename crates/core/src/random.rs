//! Token IDs, nonces and credentials from the system CSPRNG.

use crate::b64url_encode;

/// `len` bytes from the system CSPRNG, base64url-encoded: token IDs, nonces,
/// credentials.
pub fn random_b64(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG is available");
    b64url_encode(bytes)
}

/// `len` raw bytes from the system CSPRNG.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    aws_lc_rs::rand::fill(&mut bytes).expect("the system RNG is available");
    bytes
}
