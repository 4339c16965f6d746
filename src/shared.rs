//! The one place where async code reaches the synchronous manifest.
//!
//! rusqlite is blocking, so every manifest call runs on tokio's blocking pool behind one mutex: `SQLite`
//! serialises writers anyway, and one connection keeps the prepared-statement cache warm.

use std::sync::{Arc, Mutex};

use crate::manifest::{Manifest, ManifestError};

/// A manifest shared by the crawler and the downloader of one run.
#[derive(Clone)]
pub struct SharedManifest(Arc<Mutex<Manifest>>);

impl SharedManifest {
    /// Share an open manifest.
    pub fn new(manifest: Manifest) -> Self {
        Self(Arc::new(Mutex::new(manifest)))
    }

    /// Run `f` with exclusive access to the manifest on the blocking pool.
    pub async fn call<T, F>(&self, f: F) -> Result<T, ManifestError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Manifest) -> Result<T, ManifestError> + Send + 'static,
    {
        let inner = Arc::clone(&self.0);
        tokio::task::spawn_blocking(move || {
            // A panic while holding the lock poisons it; the connection itself is still consistent (every
            // write is a transaction), so carry on with it.
            let mut guard = inner
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .expect("manifest task panicked")
    }
}
