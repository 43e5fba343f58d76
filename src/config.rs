//! Runtime configuration: the registry keywords, their defaults and ranges, and the live values.
//!
//! Values are read from the service's `Parameters` key at DriverEntry (src/filter/registry.rs),
//! can be changed at run time through the control device (`IOCTL_NBSHM_SET_CONFIG`), and are
//! read by the data path with one relaxed atomic load per callback. Out-of-range registry values
//! are clamped into range and reported once through ETW (`ConfigClamped`); out-of-range IOCTL
//! values are refused with `STATUS_INVALID_PARAMETER`.

use core::sync::atomic::{AtomicU32, Ordering::Relaxed};

/// A configuration keyword.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Keyword {
    /// Bound on segments followed per NET_BUFFER (also what stops cycles).
    MaxSegmentsPerNetBuffer = 0,
    /// 1: walk `SharedMemoryInfo` on the send path; 0: count send NET_BUFFERs only.
    SendPathWalk = 1,
    /// Period of the UsageSnapshot/HandleUsage ETW events, in milliseconds.
    UsageIntervalMs = 2,
    /// Capacity of each module's handle table (a power of two; applies at the next attach).
    HandleTableSize = 3,
    /// 1: emit per-segment verbose events when a session asks for them; 0: never.
    VerboseSegments = 4,
    /// 1: walk `SharedMemoryInfo` on receives that carry the VALID flag; 0: count only.
    ReceivePathWalk = 5,
}

/// Static description of a keyword.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeywordInfo {
    /// The keyword.
    pub keyword: Keyword,
    /// Registry value name (REG_DWORD).
    pub name: &'static str,
    /// Default.
    pub default: u32,
    /// Smallest accepted value.
    pub min: u32,
    /// Largest accepted value.
    pub max: u32,
    /// Whether the control device may change it at run time (else: next attach / reload).
    pub runtime: bool,
    /// What it does.
    pub description: &'static str,
}

/// Every keyword, in [`Keyword`] order.
pub const KEYWORDS: [KeywordInfo; 6] = [
    KeywordInfo {
        keyword: Keyword::MaxSegmentsPerNetBuffer,
        name: "MaxSegmentsPerNetBuffer",
        default: 64,
        min: 1,
        max: 1024,
        runtime: true,
        description: "segments followed per NET_BUFFER before the chain counts as overlong",
    },
    KeywordInfo {
        keyword: Keyword::SendPathWalk,
        name: "SendPathWalk",
        default: 1,
        min: 0,
        max: 1,
        runtime: true,
        description: "walk SharedMemoryInfo in FilterSendNetBufferLists (0: count only)",
    },
    KeywordInfo {
        keyword: Keyword::UsageIntervalMs,
        name: "UsageIntervalMs",
        default: 5000,
        min: 100,
        max: 3_600_000,
        runtime: true,
        description: "period of the UsageSnapshot and HandleUsage events",
    },
    KeywordInfo {
        keyword: Keyword::HandleTableSize,
        name: "HandleTableSize",
        default: 256,
        min: 16,
        max: 4096,
        runtime: false,
        description: "distinct handles tracked per module (power of two; applies at attach)",
    },
    KeywordInfo {
        keyword: Keyword::VerboseSegments,
        name: "VerboseSegments",
        default: 1,
        min: 0,
        max: 1,
        runtime: true,
        description: "allow per-segment verbose events when a session enables them",
    },
    KeywordInfo {
        keyword: Keyword::ReceivePathWalk,
        name: "ReceivePathWalk",
        default: 1,
        min: 0,
        max: 1,
        runtime: true,
        description: "walk SharedMemoryInfo on receives flagged SHARED_MEMORY_INFO_VALID (0: count only)",
    },
];

impl Keyword {
    /// Every keyword.
    pub const ALL: [Self; 6] = [
        Self::MaxSegmentsPerNetBuffer,
        Self::SendPathWalk,
        Self::UsageIntervalMs,
        Self::HandleTableSize,
        Self::VerboseSegments,
        Self::ReceivePathWalk,
    ];

    /// Its static description.
    #[must_use]
    pub const fn info(self) -> &'static KeywordInfo {
        match self {
            Self::MaxSegmentsPerNetBuffer => &KEYWORDS[0],
            Self::SendPathWalk => &KEYWORDS[1],
            Self::UsageIntervalMs => &KEYWORDS[2],
            Self::HandleTableSize => &KEYWORDS[3],
            Self::VerboseSegments => &KEYWORDS[4],
            Self::ReceivePathWalk => &KEYWORDS[5],
        }
    }

    /// The keyword with this numeric id.
    #[must_use]
    pub fn from_id(id: u32) -> Option<Self> {
        Self::ALL.into_iter().find(|k| *k as u32 == id)
    }

    /// The keyword with this registry name (case-insensitive, as the registry is).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.info().name.eq_ignore_ascii_case(name))
    }

    /// Brings `value` into range: `(accepted value, whether it had to change)`.
    /// `HandleTableSize` is also rounded down to a power of two.
    #[must_use]
    pub fn clamp(self, value: u32) -> (u32, bool) {
        let info = self.info();
        let mut v = value.clamp(info.min, info.max);
        if self == Self::HandleTableSize && !v.is_power_of_two() {
            v = 1 << v.ilog2();
        }
        (v, v != value)
    }

    /// Whether `value` is acceptable as is.
    #[must_use]
    pub fn valid(self, value: u32) -> bool {
        !self.clamp(value).1
    }
}

/// The live configuration (one per driver).
#[derive(Debug)]
pub struct Config {
    values: [AtomicU32; 6],
}

impl Config {
    /// All defaults.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            values: [
                AtomicU32::new(KEYWORDS[0].default),
                AtomicU32::new(KEYWORDS[1].default),
                AtomicU32::new(KEYWORDS[2].default),
                AtomicU32::new(KEYWORDS[3].default),
                AtomicU32::new(KEYWORDS[4].default),
                AtomicU32::new(KEYWORDS[5].default),
            ],
        }
    }

    fn slot(&self, k: Keyword) -> &AtomicU32 {
        match k {
            Keyword::MaxSegmentsPerNetBuffer => &self.values[0],
            Keyword::SendPathWalk => &self.values[1],
            Keyword::UsageIntervalMs => &self.values[2],
            Keyword::HandleTableSize => &self.values[3],
            Keyword::VerboseSegments => &self.values[4],
            Keyword::ReceivePathWalk => &self.values[5],
        }
    }

    /// Current value.
    #[must_use]
    #[inline]
    pub fn get(&self, k: Keyword) -> u32 {
        self.slot(k).load(Relaxed)
    }

    /// Sets a value that is already valid for `k`.
    ///
    /// # Errors
    /// `value` is out of range (nothing is changed).
    pub fn set(&self, k: Keyword, value: u32) -> Result<(), u32> {
        if k.valid(value) {
            self.slot(k).store(value, Relaxed);
            Ok(())
        } else {
            Err(value)
        }
    }

    /// Sets `value` clamped into range; returns `(stored, clamped)`.
    pub fn set_clamped(&self, k: Keyword, value: u32) -> (u32, bool) {
        let (v, clamped) = k.clamp(value);
        self.slot(k).store(v, Relaxed);
        (v, clamped)
    }

    /// Restores every default.
    pub fn reset(&self) {
        for k in Keyword::ALL {
            self.slot(k).store(k.info().default, Relaxed);
        }
    }

    /// `MaxSegmentsPerNetBuffer`.
    #[must_use]
    #[inline]
    pub fn max_segments(&self) -> u32 {
        self.get(Keyword::MaxSegmentsPerNetBuffer)
    }

    /// `SendPathWalk`.
    #[must_use]
    #[inline]
    pub fn send_path_walk(&self) -> bool {
        self.get(Keyword::SendPathWalk) != 0
    }

    /// `ReceivePathWalk`.
    #[must_use]
    #[inline]
    pub fn receive_path_walk(&self) -> bool {
        self.get(Keyword::ReceivePathWalk) != 0
    }

    /// `VerboseSegments`.
    #[must_use]
    #[inline]
    pub fn verbose_segments(&self) -> bool {
        self.get(Keyword::VerboseSegments) != 0
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::new()
    }
}

/// The driver's configuration.
pub static CONFIG: Config = Config::new();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_matches_enum_order_and_defaults_are_valid() {
        for (i, k) in Keyword::ALL.into_iter().enumerate() {
            assert_eq!(k as usize, i);
            assert_eq!(KEYWORDS[i].keyword, k);
            assert!(k.valid(k.info().default), "{k:?}");
            assert_eq!(Keyword::from_name(&k.info().name.to_lowercase()), Some(k));
            assert_eq!(Keyword::from_id(i as u32), Some(k));
        }
        assert_eq!(Keyword::from_id(6), None);
    }

    #[test]
    fn clamping() {
        assert_eq!(Keyword::MaxSegmentsPerNetBuffer.clamp(0), (1, true));
        assert_eq!(Keyword::MaxSegmentsPerNetBuffer.clamp(5000), (1024, true));
        assert_eq!(Keyword::MaxSegmentsPerNetBuffer.clamp(64), (64, false));
        assert_eq!(Keyword::HandleTableSize.clamp(300), (256, true));
        assert_eq!(Keyword::HandleTableSize.clamp(1 << 20), (4096, true));
        assert_eq!(Keyword::SendPathWalk.clamp(7), (1, true));
        let c = Config::new();
        assert_eq!(c.set(Keyword::UsageIntervalMs, 10), Err(10));
        assert_eq!(c.get(Keyword::UsageIntervalMs), 5000);
        assert_eq!(c.set_clamped(Keyword::UsageIntervalMs, 10), (100, true));
        c.reset();
        assert_eq!(c.get(Keyword::UsageIntervalMs), 5000);
    }
}
