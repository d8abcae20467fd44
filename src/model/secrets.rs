//! Secret values: generation from the OS CSPRNG and fingerprints. Values never leave this
//! module except into a Secret's data.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use rand::{TryRngCore, rngs::OsRng};
use sha2::{Digest, Sha256};

/// Data key of the current secret.
pub const KEY_CURRENT: &str = "secret";
/// Data key of the previous secret during a rotation's grace period.
pub const KEY_PREVIOUS: &str = "previous";
/// Secret annotation: when the previous secret is removed (RFC 3339).
pub const ANNOTATION_PREVIOUS_EXPIRES: &str = "ce.tenancy.io/previous-expires-at";
/// Secret annotation: the rotation request (annotation value) this Secret has acted on, so
/// that a restart or a lost status never rotates twice.
pub const ANNOTATION_ROTATION_REQUEST: &str = "ce.tenancy.io/rotation-request";

/// The fewest random bytes a secret may have: 256 bits.
pub const MIN_SECRET_BYTES: usize = 32;

/// A new secret of `bytes` random bytes (at least 32) from the operating system's CSPRNG,
/// as URL-safe base64 without padding.
pub fn generate(bytes: usize) -> Result<String, rand::rand_core::OsError> {
    let mut buf = vec![0u8; bytes.max(MIN_SECRET_BYTES)];
    OsRng.try_fill_bytes(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// The first 16 hex digits of the SHA-256 of a secret: enough to tell secrets apart, useless
/// to recover one.
pub fn fingerprint(secret: &[u8]) -> String {
    Sha256::digest(secret)[..8].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_secrets_have_the_requested_entropy_and_are_url_safe() {
        let s = generate(32).unwrap();
        assert_eq!(URL_SAFE_NO_PAD.decode(&s).unwrap().len(), 32);
        assert!(
            s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{s}"
        );
        assert_eq!(URL_SAFE_NO_PAD.decode(generate(100).unwrap()).unwrap().len(), 100);
    }

    #[test]
    fn never_fewer_than_256_bits() {
        assert_eq!(URL_SAFE_NO_PAD.decode(generate(4).unwrap()).unwrap().len(), 32);
    }

    #[test]
    fn secrets_differ() {
        let all: std::collections::HashSet<_> = (0..100).map(|_| generate(32).unwrap()).collect();
        assert_eq!(all.len(), 100);
    }

    #[test]
    fn fingerprint_is_a_sha256_prefix() {
        // SHA-256("abc") = ba7816bf8f01cfea...
        assert_eq!(fingerprint(b"abc"), "ba7816bf8f01cfea");
        assert_eq!(fingerprint(b"abc").len(), 16);
    }
}
