//! Test support: a writer that keeps the agent's log lines, to assert on
//! what an operator would read.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use tracing_subscriber::filter;
use tracing_subscriber::layer::{Layer, SubscriberExt};

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
    ///
    /// One process-wide subscriber writes each line into the buffer of the
    /// thread that logged it. A subscriber per test (`set_default`) loses
    /// lines when tests run in parallel: a callsite first hit on a thread
    /// without one can cache "never" for every thread.
    pub fn capture(&self) -> Guard {
        static INSTALLED: OnceLock<()> = OnceLock::new();
        INSTALLED.get_or_init(|| {
            let layer = super::lines(LogFormat::Text, || ThreadBuffer, false)
                .with_filter(filter::dynamic_filter_fn(|_, _| capturing()));
            // Another test may have set one already; then its lines go
            // there and this test's assertions say so.
            let _ =
                tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer));
        });
        let previous = CURRENT.with(|c| c.replace(Some(self.clone())));
        Guard { previous }
    }
}

thread_local! {
    /// Where this thread's lines go while a [`Guard`] lives.
    static CURRENT: RefCell<Option<Captured>> = const { RefCell::new(None) };
}

fn capturing() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// Writes to the capturing thread's buffer (nothing when none).
struct ThreadBuffer;

impl std::io::Write for ThreadBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        CURRENT.with(|c| match c.borrow_mut().as_mut() {
            Some(out) => out.write(buf),
            None => Ok(buf.len()),
        })
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Ends this thread's capture when dropped.
pub struct Guard {
    previous: Option<Captured>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| c.replace(previous));
    }
}
