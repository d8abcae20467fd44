//! A cache filled from lists rather than watches.

use std::sync::Arc;

use super::{Cache, Cached, WriterOf, Writers, watch};
use crate::model::issuance::IssuanceKey;

/// A cache filled from lists rather than watches: what `ce-operator can-i` reads with the
/// caller's kubeconfig, and what the unit tests of the cache's readers feed by hand.
pub struct Snapshot {
    pub cache: Arc<Cache>,
    writers: Writers,
}

impl Snapshot {
    /// A snapshot under `IssuanceKey::for_tests` in tests; with a key of its own otherwise
    /// (`can-i` names its caller, it authenticates nobody).
    pub fn new(scope: Option<&str>) -> Self {
        #[cfg(test)]
        let key = IssuanceKey::for_tests();
        #[cfg(not(test))]
        let key = {
            use rand::TryRngCore;
            let mut bytes = [0u8; crate::model::issuance::KEY_BYTES];
            rand::rngs::OsRng
                .try_fill_bytes(&mut bytes)
                .expect("the operating system's random source");
            IssuanceKey::from_bytes(&bytes).expect("a full-length key")
        };
        let (cache, writers) = Cache::new(scope.map(str::to_owned), key);
        Self { cache, writers }
    }

    /// Applies objects as watch events would, indexes included.
    pub fn apply<K: Cached>(&mut self, objects: impl IntoIterator<Item = K>) -> &mut Self
    where
        Writers: WriterOf<K>,
    {
        for obj in objects {
            watch::apply_one(&self.cache, &mut self.writers, obj);
        }
        self
    }
}

#[cfg(test)]
pub(crate) mod testing {
    pub use super::Snapshot as TestCache;
}
