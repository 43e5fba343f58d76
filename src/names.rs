//! The names the driver registers, in one place: the INF (`inf/nbshm.inx`), the scripts and the
//! docs must agree with these, and tests/inf.rs and tests/consistency.rs check that they do.

/// Service name: `ServiceName` at registration = INF `AddService` = `Ndi\Service`.
pub const SERVICE_NAME: &str = "nbshm";
/// `UniqueName` at registration = INF `NetCfgInstanceId` (braces included).
pub const UNIQUE_NAME: &str = "{cb5200c2-de85-4fab-aff4-ae9256259c70}";
/// `FriendlyName` at registration.
pub const FRIENDLY_NAME: &str = "nbshm NET_BUFFER shared-memory monitor";
/// INF `ComponentId` (what `netcfg -i` and `Get-NetAdapterBinding -ComponentID` take).
pub const COMPONENT_ID: &str = "nbshm_lwf";
/// Driver image name.
pub const IMAGE_NAME: &str = "nbshm.sys";
/// INF name.
pub const INF_NAME: &str = "nbshm.inf";
/// ETW `TraceLogging` provider name (its GUID is the name hash; see docs/etw.md).
pub const ETW_PROVIDER_NAME: &str = "Nbshm.SharedMemoryFilter";

/// UTF-16 form of an ASCII string literal, as a fixed array (no terminator), at compile time.
#[macro_export]
macro_rules! utf16 {
    ($s:expr) => {{
        const S: &str = $s;
        const N: usize = S.len();
        #[allow(
            clippy::indexing_slicing,
            reason = "const evaluation: an out-of-range index is a compile error"
        )]
        const W: [u16; N] = {
            let b = S.as_bytes();
            let mut w = [0u16; N];
            let mut i = 0;
            while i < N {
                assert!(b[i] < 0x80, "utf16! takes ASCII only");
                w[i] = b[i] as u16;
                i += 1;
            }
            w
        };
        W
    }};
}

/// `SERVICE_NAME` as UTF-16.
pub static SERVICE_NAME_W: [u16; SERVICE_NAME.len()] = utf16!(SERVICE_NAME);
/// `UNIQUE_NAME` as UTF-16.
pub static UNIQUE_NAME_W: [u16; UNIQUE_NAME.len()] = utf16!(UNIQUE_NAME);
/// `FRIENDLY_NAME` as UTF-16.
pub static FRIENDLY_NAME_W: [u16; FRIENDLY_NAME.len()] = utf16!(FRIENDLY_NAME);
