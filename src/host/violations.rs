//! Contract violations the model detects. Any violation fails the tests and `nbshm-sim`.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// One breach of the NDIS or kernel contract.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// The API or rule concerned.
    pub api: &'static str,
    /// What happened.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.api, self.message)
    }
}

static LIST: Mutex<Vec<Violation>> = Mutex::new(Vec::new());
static COUNT: AtomicU64 = AtomicU64::new(0);
/// Keep at most this many messages (the count is always exact).
const KEEP: usize = 1000;

/// Records a violation.
pub fn violation(api: &'static str, message: String) {
    COUNT.fetch_add(1, Ordering::Relaxed);
    if std::env::var_os("NBSHM_MODEL_DEBUG").is_some() {
        eprintln!("contract violation: {api}: {message}");
    }
    let mut l = LIST.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    if l.len() < KEEP {
        l.push(Violation { api, message });
    }
}

/// Total violations recorded since the last [`reset`].
#[must_use]
pub fn count() -> u64 {
    COUNT.load(Ordering::Relaxed)
}

/// The recorded violations (up to 1000).
#[must_use]
pub fn list() -> Vec<Violation> {
    LIST.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
}

/// Clears the record.
pub fn reset() {
    COUNT.store(0, Ordering::Relaxed);
    LIST.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clear();
}
