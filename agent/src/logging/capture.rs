//! Test support: a writer that keeps the agent's log lines, to assert on
//! what an operator would read.

use std::sync::{Arc, Mutex, PoisonError};

use tracing_subscriber::layer::SubscriberExt;

use crate::config::LogFormat;

/// A writer that keeps what was written.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner)).into_owned()
    }

    /// Capture this thread's log lines as `baton-agent` writes them (text
    /// format) until the guard drops (use a single-threaded runtime).
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        let w = self.clone();
        let layer = super::lines(LogFormat::Text, move || w.clone(), false);
        let guard = tracing::subscriber::set_default(tracing_subscriber::registry().with(layer));
        // Callsites first hit by parallel tests without a subscriber may have
        // cached "never": ask them again.
        tracing::callsite::rebuild_interest_cache();
        guard
    }
}
