//! The model's ETW recorder: a simulated trace session for the host build.
//!
//! `crate::etw` hands every event here as well as to `tracelogging` (which is a no-op on a
//! non-Windows host). A session is enabled with a level and keyword masks exactly as ETW
//! filters a provider (`level <= session level`, and a non-zero keyword must match any and all
//! masks), and enabling it calls the driver's own enable-callback path, so the rundown code runs
//! as it would under a real session.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering::Relaxed};

use tracelogging::Level;

/// A field value as the recorder keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FieldValue {
    /// Unsigned integer fields (u8/u32/u64).
    U64(u64),
    /// Hex-formatted fields (pointers, flags).
    Hex(u64),
    /// Strings (str8/str16).
    Str(String),
}

impl FieldValue {
    /// The integer value (`U64` or `Hex`).
    #[must_use]
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            Self::U64(v) | Self::Hex(v) => Some(*v),
            Self::Str(_) => None,
        }
    }

    /// The string value.
    #[must_use]
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// One recorded event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Event name.
    pub name: &'static str,
    /// Level.
    pub level: u8,
    /// Keyword bits.
    pub keywords: u64,
    /// Fields in schema order.
    pub fields: Vec<(&'static str, FieldValue)>,
}

impl Recorded {
    /// The value of field `name`.
    #[must_use]
    pub fn field(&self, name: &str) -> Option<&FieldValue> {
        self.fields.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Integer field `name` (panics if absent or not an integer: test helper).
    #[must_use]
    pub fn u64(&self, name: &str) -> u64 {
        self.field(name)
            .and_then(FieldValue::as_u64)
            .unwrap_or_else(|| panic!("{} has no integer {name}", self.name))
    }

    /// String field `name` (panics if absent or not a string: test helper).
    #[must_use]
    pub fn str(&self, name: &str) -> &str {
        self.field(name)
            .and_then(FieldValue::as_str)
            .unwrap_or_else(|| panic!("{} has no string {name}", self.name))
    }

    /// The event as one JSON line: `{"event": NAME, "level": n, "keywords": n, fields...}`.
    /// Integers are numbers; `Hex` fields are `"0x…"` strings.
    #[must_use]
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(128);
        let _ = write!(
            s,
            "{{\"event\":{},\"level\":{},\"keywords\":{}",
            json_str(self.name),
            self.level,
            self.keywords
        );
        for (name, value) in &self.fields {
            let _ = write!(s, ",{}:", json_str(name));
            let _ = match value {
                FieldValue::U64(v) => write!(s, "{v}"),
                FieldValue::Hex(v) => write!(s, "\"{v:#x}\""),
                FieldValue::Str(v) => write!(s, "{}", json_str(v)),
            };
        }
        s.push('}');
        s
    }
}

/// JSON string literal with the mandatory escapes.
#[must_use]
pub fn json_str(v: &str) -> String {
    let mut s = String::with_capacity(v.len() + 2);
    s.push('"');
    for c in v.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '\r' => s.push_str("\\r"),
            '\t' => s.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(s, "\\u{:04x}", c as u32);
            }
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

type Callback = Box<dyn FnMut(&Recorded) + Send>;

enum Sink {
    Collect(Vec<Recorded>),
    Forward(Callback),
}

static LEVEL: AtomicI32 = AtomicI32::new(-1);
static ANY: AtomicU64 = AtomicU64::new(0);
static ALL: AtomicU64 = AtomicU64::new(0);
static SINK: Mutex<Sink> = Mutex::new(Sink::Collect(Vec::new()));

/// ETW's filter: the same test the `tracelogging` provider makes.
#[must_use]
#[inline]
pub fn enabled(level: Level, keyword: u64) -> bool {
    i32::from(level.as_int()) <= LEVEL.load(Relaxed) && {
        let any = ANY.load(Relaxed);
        let all = ALL.load(Relaxed);
        keyword == 0 || (keyword & any != 0 && keyword & all == all)
    }
}

/// Records an event if the session wants it (`fields` is only built then).
pub fn record(
    name: &'static str,
    level: Level,
    keywords: u64,
    fields: impl FnOnce() -> Vec<(&'static str, FieldValue)>,
) {
    if !enabled(level, keywords) {
        return;
    }
    let _scope = super::kernel::ModelScope::enter();
    let ev = Recorded { name, level: level.as_int(), keywords, fields: fields() };
    let mut sink = SINK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match &mut *sink {
        Sink::Collect(v) => v.push(ev),
        Sink::Forward(f) => f(&ev),
    }
}

/// Starts (or changes) the simulated session and runs the driver's enable callback path
/// (which writes the rundown), as ETW does when a session enables the provider.
pub fn enable(level: u8, match_any: u64, match_all: u64) {
    ANY.store(match_any, Relaxed);
    ALL.store(match_all, Relaxed);
    LEVEL.store(i32::from(level), Relaxed);
    crate::etw::on_enable(1);
}

/// Asks for a rundown (`EVENT_CONTROL_CODE_CAPTURE_STATE`).
pub fn capture_state() {
    crate::etw::on_enable(2);
}

/// Stops the session.
pub fn disable() {
    LEVEL.store(-1, Relaxed);
    crate::etw::on_enable(0);
}

/// Takes the events collected so far.
#[must_use]
pub fn take() -> Vec<Recorded> {
    let mut sink = SINK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    match &mut *sink {
        Sink::Collect(v) => std::mem::take(v),
        Sink::Forward(_) => Vec::new(),
    }
}

/// Sends every event to `f` instead of collecting it (for streaming output).
pub fn forward(f: impl FnMut(&Recorded) + Send + 'static) {
    *SINK.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Sink::Forward(Box::new(f));
}

/// Back to collecting, discarding anything collected; session off.
pub fn reset() {
    LEVEL.store(-1, Relaxed);
    ANY.store(0, Relaxed);
    ALL.store(0, Relaxed);
    *SINK.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Sink::Collect(Vec::new());
}
