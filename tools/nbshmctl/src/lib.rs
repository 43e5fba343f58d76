//! `nbshmctl`: asks the nbshm driver, through its control device `\\.\Nbshm`, which adapters see
//! shared memory, how much, over which handles, and changes its runtime configuration, without
//! an ETW session. docs/ioctl.md maps every command to its IOCTL.
//!
//! Everything but the device itself is portable and lives here: the command line, the
//! [`Client`] (requests, buffer sizing, paging, decoding with `nbshm-proto`) and the output
//! (tables and `--json`). The device is behind the [`Transport`] trait: on Windows
//! [`windows::Device`] (`CreateFileW` + `DeviceIoControl`); in the tests, the real driver running
//! in the user-mode NDIS model, through the model's I/O manager (src/tests.rs).

use std::fmt::{self, Write as _};
use std::io::Write;

use clap::{Parser, Subcommand};
use nbshm_proto::ioctl::{
    IOCTL_NBSHM_GET_CONFIG, IOCTL_NBSHM_LIST_MODULES, IOCTL_NBSHM_QUERY_HANDLES, IOCTL_NBSHM_QUERY_VERSION,
    IOCTL_NBSHM_RESET_STATS, IOCTL_NBSHM_SET_CONFIG,
};
use nbshm_proto::status::{
    STATUS_ACCESS_DENIED, STATUS_BUFFER_OVERFLOW, STATUS_BUFFER_TOO_SMALL, STATUS_INFO_LENGTH_MISMATCH,
    STATUS_INVALID_DEVICE_REQUEST, STATUS_INVALID_PARAMETER, STATUS_NOT_FOUND, STATUS_NOT_SUPPORTED,
    STATUS_OBJECT_NAME_NOT_FOUND, STATUS_REVISION_MISMATCH, STATUS_SUCCESS,
};
use nbshm_proto::{
    ALL_MODULES, ANOMALY_NAMES, CONFIG_FLAG_RUNTIME, ConfigResponse, DecodeError, DirStats, GetConfigRequest,
    HandleListHeader, HandleRecord, HandlesRequest, HasHeader, KEYWORD_NAMES, ListModulesRequest,
    ModuleListHeader, ModuleRecord, ResetRequest, ResetResponse, SetConfigRequest, SetConfigResponse,
    VersionResponse, Wire, decode_fixed, decode_list,
};
use serde_json::{Value, json};

#[cfg(windows)]
pub mod windows;

/// `FILE_READ_DATA`: what a handle needs for the queries.
pub const ACCESS_READ: u32 = 0x1;
/// `FILE_WRITE_DATA`: what a handle needs for `reset` and `config set`.
pub const ACCESS_WRITE: u32 = 0x2;

/// A request the driver completed with success or a warning (data came back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// `STATUS_SUCCESS` or a warning (`STATUS_BUFFER_OVERFLOW`).
    pub status: i32,
    /// Bytes written to the output (`IoStatus.Information`).
    pub bytes: usize,
}

/// Why a command failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// The driver (or the I/O manager) failed the request with this `NTSTATUS`.
    Status(i32),
    /// A Windows error with no counterpart among the protocol's statuses.
    Win32(u32),
    /// The response does not decode (another protocol version, a short response).
    Protocol(String),
    /// Bad command line.
    Usage(String),
}

impl From<DecodeError> for Error {
    fn from(e: DecodeError) -> Self {
        Self::Protocol(e.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Status(s) => {
                let name = nbshm_proto::status::name(*s).unwrap_or("NTSTATUS");
                let hint = match *s {
                    STATUS_OBJECT_NAME_NOT_FOUND => ": is the nbshm driver installed and started?",
                    STATUS_ACCESS_DENIED => {
                        ": the device admits only SYSTEM and Administrators (run elevated)"
                    }
                    STATUS_REVISION_MISMATCH => {
                        ": the driver speaks another protocol version than this nbshmctl"
                    }
                    STATUS_INVALID_DEVICE_REQUEST => {
                        ": the driver does not know this request (older driver?)"
                    }
                    _ => "",
                };
                write!(f, "{name} ({:#010x}){hint}", s.cast_unsigned())
            }
            Self::Win32(e) => write!(f, "Windows error {e}"),
            Self::Protocol(m) => write!(f, "unexpected response: {m}"),
            Self::Usage(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// The way to the driver: `DeviceIoControl` on an open handle.
pub trait Transport {
    /// Sends control code `code` with `input`; the driver writes into `output`.
    ///
    /// # Errors
    /// The request failed: an error status (no data), or a transport failure.
    fn ioctl(&mut self, code: u32, input: &[u8], output: &mut [u8]) -> Result<Completion, Error>;
}

/// The `NTSTATUS` behind a Win32 error that `DeviceIoControl`/`CreateFileW` report for the
/// statuses of this protocol (the standard `RtlNtStatusToDosError` mapping).
#[must_use]
pub const fn win32_to_status(error: u32) -> Option<i32> {
    Some(match error {
        1 => STATUS_INVALID_DEVICE_REQUEST,    // ERROR_INVALID_FUNCTION
        2 | 3 => STATUS_OBJECT_NAME_NOT_FOUND, // ERROR_FILE_NOT_FOUND, ERROR_PATH_NOT_FOUND
        5 => STATUS_ACCESS_DENIED,             // ERROR_ACCESS_DENIED
        24 => STATUS_INFO_LENGTH_MISMATCH,     // ERROR_BAD_LENGTH
        50 => STATUS_NOT_SUPPORTED,            // ERROR_NOT_SUPPORTED
        87 => STATUS_INVALID_PARAMETER,        // ERROR_INVALID_PARAMETER
        122 => STATUS_BUFFER_TOO_SMALL,        // ERROR_INSUFFICIENT_BUFFER
        234 => STATUS_BUFFER_OVERFLOW,         // ERROR_MORE_DATA
        1168 => STATUS_NOT_FOUND,              // ERROR_NOT_FOUND
        1306 => STATUS_REVISION_MISMATCH,      // ERROR_REVISION_MISMATCH
        _ => return None,
    })
}

fn encode<T: Wire>(v: &T) -> Vec<u8> {
    let mut b = vec![0; T::SIZE];
    let _ = v.encode(&mut b);
    b
}

/// A module's handle table, gathered page by page.
#[derive(Clone, Debug)]
pub struct HandleTable {
    /// The header of the last page (capacity, distinct handles, overflow segments).
    pub header: HandleListHeader,
    /// Every used slot.
    pub records: Vec<HandleRecord>,
    /// Pages it took.
    pub pages: usize,
}

/// The protocol client.
pub struct Client<'t> {
    transport: &'t mut dyn Transport,
    page_bytes: usize,
}

impl fmt::Debug for Client<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("page_bytes", &self.page_bytes).finish_non_exhaustive()
    }
}

/// Output bytes per handle-table page by default (1170 records).
pub const DEFAULT_PAGE_BYTES: usize = 64 * 1024;

impl<'t> Client<'t> {
    /// A client over `transport`.
    pub fn new(transport: &'t mut dyn Transport) -> Self {
        Self { transport, page_bytes: DEFAULT_PAGE_BYTES }
    }

    /// Uses `bytes` of output per handle-table page (at least one record's worth).
    #[must_use]
    pub fn with_page_bytes(mut self, bytes: usize) -> Self {
        self.page_bytes = bytes.max(HandleListHeader::SIZE + HandleRecord::SIZE);
        self
    }

    fn fixed<R: Wire + HasHeader>(&mut self, code: u32, input: &[u8]) -> Result<R, Error> {
        let mut out = vec![0; R::SIZE];
        let c = self.transport.ioctl(code, input, &mut out)?;
        if c.status != STATUS_SUCCESS {
            return Err(Error::Status(c.status));
        }
        Ok(decode_fixed(out.get(..c.bytes).unwrap_or_default())?)
    }

    /// `IOCTL_NBSHM_QUERY_VERSION`.
    ///
    /// # Errors
    /// The request failed or the response does not decode.
    pub fn version(&mut self) -> Result<VersionResponse, Error> {
        self.fixed(IOCTL_NBSHM_QUERY_VERSION, &[])
    }

    /// `IOCTL_NBSHM_LIST_MODULES`, sized by the driver's answer: a first call with room for a few
    /// records, and on `STATUS_BUFFER_OVERFLOW` another with the size the header asks for (a few
    /// times, since modules can attach in between). Sorted by module id.
    ///
    /// # Errors
    /// The request failed, the response does not decode, or the list kept growing.
    pub fn modules(&mut self) -> Result<Vec<ModuleRecord>, Error> {
        let request = encode(&ListModulesRequest::new());
        let mut size = ModuleListHeader::SIZE + 4 * ModuleRecord::SIZE;
        for _ in 0..8 {
            let mut out = vec![0; size];
            let c = self.transport.ioctl(IOCTL_NBSHM_LIST_MODULES, &request, &mut out)?;
            let list = decode_list::<ModuleListHeader, ModuleRecord>(out.get(..c.bytes).unwrap_or_default())?;
            if c.status == STATUS_BUFFER_OVERFLOW {
                let required = usize::try_from(list.header.required_bytes).unwrap_or(usize::MAX);
                size = required.max(size + ModuleRecord::SIZE);
                continue;
            }
            if c.status != STATUS_SUCCESS {
                return Err(Error::Status(c.status));
            }
            let mut v: Vec<ModuleRecord> = list.iter().collect();
            v.sort_by_key(|r| r.id);
            return Ok(v);
        }
        Err(Error::Protocol("the module list kept growing".into()))
    }

    /// `IOCTL_NBSHM_QUERY_HANDLES`, page after page until the end of the table.
    ///
    /// # Errors
    /// The request failed (`STATUS_NOT_FOUND`: no such module), or a page made no progress.
    pub fn handles(&mut self, module: u32) -> Result<HandleTable, Error> {
        let mut start = 0u32;
        let mut records = Vec::new();
        let mut pages = 0;
        loop {
            let mut out = vec![0; self.page_bytes];
            let c = self.transport.ioctl(
                IOCTL_NBSHM_QUERY_HANDLES,
                &encode(&HandlesRequest::new(module, start)),
                &mut out,
            )?;
            if c.status != STATUS_SUCCESS {
                return Err(Error::Status(c.status));
            }
            let list = decode_list::<HandleListHeader, HandleRecord>(out.get(..c.bytes).unwrap_or_default())?;
            pages += 1;
            records.extend(list.iter());
            let h = list.header;
            if h.next_index >= h.capacity {
                return Ok(HandleTable { header: h, records, pages });
            }
            if h.next_index <= start {
                return Err(Error::Protocol(format!("handle page at slot {start} made no progress")));
            }
            start = h.next_index;
        }
    }

    /// `IOCTL_NBSHM_RESET_STATS` for `module`, or every module.
    ///
    /// # Errors
    /// The request failed (`STATUS_NOT_FOUND`: no such module).
    pub fn reset(&mut self, module: Option<u32>) -> Result<ResetResponse, Error> {
        self.fixed(IOCTL_NBSHM_RESET_STATS, &encode(&ResetRequest::new(module.unwrap_or(ALL_MODULES))))
    }

    /// `IOCTL_NBSHM_GET_CONFIG`.
    ///
    /// # Errors
    /// The request failed or the response does not decode.
    pub fn config(&mut self) -> Result<ConfigResponse, Error> {
        self.fixed(IOCTL_NBSHM_GET_CONFIG, &encode(&GetConfigRequest::new()))
    }

    /// `IOCTL_NBSHM_SET_CONFIG` of keyword `name` (case-insensitive).
    ///
    /// # Errors
    /// An unknown keyword name ([`Error::Usage`]), or the driver's refusal:
    /// `STATUS_INVALID_PARAMETER` (out of range), `STATUS_NOT_SUPPORTED` (not a runtime keyword).
    pub fn set_config(&mut self, name: &str, value: u32) -> Result<SetConfigResponse, Error> {
        let Some(keyword) = nbshm_proto::keyword_id(name) else {
            return Err(Error::Usage(format!(
                "unknown keyword {name:?} (one of {})",
                KEYWORD_NAMES.join(", ")
            )));
        };
        self.fixed(IOCTL_NBSHM_SET_CONFIG, &encode(&SetConfigRequest::new(keyword, value)))
    }
}

// --- Command line ----------------------------------------------------------------------------------

/// Exit codes.
pub mod exit {
    /// Done.
    pub const OK: u8 = 0;
    /// The device could not be opened, or the driver refused the request.
    pub const FAILED: u8 = 1;
    /// Bad command line.
    pub const USAGE: u8 = 2;
}

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "nbshmctl",
    version,
    about = "Query and configure the nbshm filter driver through \\\\.\\Nbshm (no ETW session needed)"
)]
pub struct Cli {
    /// Print JSON instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Driver version and one line per attached module.
    Status,
    /// Every attached module with its statistics, per direction.
    Modules,
    /// The shared-memory handles one module has seen (module id from `modules`).
    Handles {
        /// Module id.
        module: u32,
    },
    /// Zero the statistics of one module, or of every module.
    Reset {
        /// Module id (all modules if omitted).
        module: Option<u32>,
    },
    /// Show or change the configuration.
    Config {
        /// get or set.
        #[command(subcommand)]
        action: ConfigAction,
    },
}

/// `config` actions.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Every keyword with its value, default, range and whether it can change at run time.
    Get,
    /// Change one runtime keyword (not persisted: the registry keeps the load-time value).
    Set {
        /// Keyword name (case-insensitive).
        keyword: String,
        /// New value (must be in range).
        value: u32,
    },
}

impl Cli {
    /// Parses `args` (without the program name).
    ///
    /// # Errors
    /// clap's error (also for `--help` and `--version`, which it prints itself).
    pub fn parse_args(args: &[String]) -> Result<Self, clap::Error> {
        Self::try_parse_from(std::iter::once("nbshmctl".to_owned()).chain(args.iter().cloned()))
    }

    /// The handle access the command needs (what `main` opens the device with).
    #[must_use]
    pub fn required_access(&self) -> u32 {
        match self.command {
            Command::Reset { .. } | Command::Config { action: ConfigAction::Set { .. } } => {
                ACCESS_READ | ACCESS_WRITE
            }
            _ => ACCESS_READ,
        }
    }
}

fn module_arg(module: u32) -> Result<u32, Error> {
    if module == 0 {
        Err(Error::Usage("module ids start at 1 (see `nbshmctl modules`)".into()))
    } else {
        Ok(module)
    }
}

/// Runs a parsed command over `transport`, writing the result to `out`.
///
/// # Errors
/// What failed, with the driver's status where there is one.
pub fn execute(cli: &Cli, transport: &mut dyn Transport, out: &mut dyn Write) -> Result<(), Error> {
    let mut client = Client::new(transport);
    let text = match &cli.command {
        Command::Status => {
            let v = client.version()?;
            let modules = client.modules()?;
            if cli.json { json_line(&status_json(&v, &modules)) } else { status_text(&v, &modules) }
        }
        Command::Modules => {
            let modules = client.modules()?;
            if cli.json {
                json_line(&json!({ "modules": modules.iter().map(module_json).collect::<Vec<_>>() }))
            } else {
                modules_text(&modules)
            }
        }
        Command::Handles { module } => {
            let module = module_arg(*module)?;
            let table = client.handles(module).map_err(|e| not_found(e, module))?;
            if cli.json { json_line(&handles_json(module, &table)) } else { handles_text(module, &table) }
        }
        Command::Reset { module } => {
            let module = module.map(module_arg).transpose()?;
            let r = client.reset(module).map_err(|e| match module {
                Some(m) => not_found(e, m),
                None => e,
            })?;
            if cli.json {
                json_line(&json!({ "modules_reset": r.modules_reset }))
            } else {
                format!("statistics reset on {} module(s)\n", r.modules_reset)
            }
        }
        Command::Config { action: ConfigAction::Get } => {
            let c = client.config()?;
            if cli.json { json_line(&config_json(&c)) } else { config_text(&c) }
        }
        Command::Config { action: ConfigAction::Set { keyword, value } } => {
            let r = match client.set_config(keyword, *value) {
                Ok(r) => r,
                Err(e) => return Err(explain_set_failure(&mut client, keyword, *value, e)),
            };
            let name = nbshm_proto::keyword_name(r.keyword).unwrap_or("?");
            if cli.json {
                json_line(&json!({
                    "keyword": name,
                    "old_value": r.old_value,
                    "new_value": r.new_value,
                    "timers_rearmed": r.timers_rearmed,
                }))
            } else {
                let mut s = format!("{name}: {} -> {}", r.old_value, r.new_value);
                if r.timers_rearmed > 0 {
                    let _ = write!(s, " ({} usage timer(s) re-armed)", r.timers_rearmed);
                }
                s.push('\n');
                s
            }
        }
    };
    out.write_all(text.as_bytes()).map_err(|e| Error::Usage(format!("writing the output: {e}")))
}

fn not_found(e: Error, module: u32) -> Error {
    match e {
        Error::Status(STATUS_NOT_FOUND) => {
            Error::Usage(format!("no module {module} is attached (see `nbshmctl modules`)"))
        }
        e => e,
    }
}

/// Turns the driver's refusal of `config set` into a message with the keyword's range.
fn explain_set_failure(client: &mut Client<'_>, keyword: &str, value: u32, e: Error) -> Error {
    let id = nbshm_proto::keyword_id(keyword);
    let limits = id.and_then(|id| {
        let c = client.config().ok()?;
        c.values.iter().find(|v| v.keyword == id).copied()
    });
    let name = id.and_then(nbshm_proto::keyword_name).unwrap_or(keyword);
    match (e, limits) {
        (Error::Status(STATUS_INVALID_PARAMETER), Some(l)) => Error::Usage(format!(
            "{name} = {value} refused (STATUS_INVALID_PARAMETER): the range is {}..={}",
            l.min, l.max
        )),
        (Error::Status(STATUS_NOT_SUPPORTED), _) => Error::Usage(format!(
            "{name} cannot change at run time (STATUS_NOT_SUPPORTED): set the {name} REG_DWORD under \
             HKLM\\SYSTEM\\CurrentControlSet\\Services\\nbshm\\Parameters and restart the driver"
        )),
        (e, _) => e,
    }
}

/// Runs the tool: parses `args`, opens the device with `open(access)`, executes. Returns the
/// exit code; messages go to `err`.
pub fn run<'a>(
    args: &[String],
    open: &mut dyn FnMut(u32) -> Result<Box<dyn Transport + 'a>, Error>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> u8 {
    let cli = match Cli::parse_args(args) {
        Ok(c) => c,
        Err(e) => {
            let failed = e.use_stderr();
            let text = e.render().to_string();
            let _ = if failed { err.write_all(text.as_bytes()) } else { out.write_all(text.as_bytes()) };
            return if failed { exit::USAGE } else { exit::OK };
        }
    };
    let mut transport = match open(cli.required_access()) {
        Ok(t) => t,
        Err(e) => {
            let _ = writeln!(err, "nbshmctl: cannot open {}: {e}", nbshm_proto::USER_PATH);
            return exit::FAILED;
        }
    };
    match execute(&cli, &mut *transport, out) {
        Ok(()) => exit::OK,
        Err(e @ Error::Usage(_)) => {
            let _ = writeln!(err, "nbshmctl: {e}");
            exit::USAGE
        }
        Err(e) => {
            let _ = writeln!(err, "nbshmctl: {e}");
            exit::FAILED
        }
    }
}

// --- Output ----------------------------------------------------------------------------------------

fn json_line(v: &Value) -> String {
    format!("{v}\n")
}

fn name(m: &ModuleRecord) -> String {
    String::from_utf16_lossy(m.name_units())
}

fn dir_json(d: &DirStats) -> Value {
    let anomalies: serde_json::Map<String, Value> =
        ANOMALY_NAMES.iter().zip(d.anomalies).map(|(n, v)| ((*n).to_owned(), json!(v))).collect();
    json!({
        "nbls": d.nbls,
        "net_buffers": d.net_buffers,
        "net_buffers_walked": d.walked,
        "net_buffers_with_shared_memory": d.with_shared_memory,
        "segments": d.segments,
        "shared_bytes": d.shared_bytes,
        "max_chain_length": d.max_chain,
        "anomalies": anomalies,
        "rejected_nbls": d.rejected_nbls,
    })
}

/// One module as JSON (also what `nbshm-sim` would print for it).
#[must_use]
pub fn module_json(m: &ModuleRecord) -> Value {
    json!({
        "id": m.id,
        "if_index": m.if_index,
        "base_if_index": m.base_if_index,
        "state": nbshm_proto::state::name(m.state),
        "name": name(m),
        "media_type": m.media_type,
        "distinct_handles": m.distinct_handles,
        "handle_capacity": m.handle_capacity,
        "handle_overflow_segments": m.handle_overflow_segments,
        "in_flight": m.in_flight,
        "resets": m.resets,
        "receive": dir_json(&m.receive),
        "send": dir_json(&m.send),
    })
}

fn driver_version(v: &VersionResponse) -> String {
    let end = v.driver_version.iter().position(|b| *b == 0).unwrap_or(v.driver_version.len());
    String::from_utf8_lossy(v.driver_version.get(..end).unwrap_or_default()).into_owned()
}

fn status_json(v: &VersionResponse, modules: &[ModuleRecord]) -> Value {
    json!({
        "driver": {
            "version": driver_version(v),
            "protocol_version": v.protocol_version,
            "ndis_version": format!("{}.{}", v.ndis_major, v.ndis_minor),
            "modules_attached": v.modules_attached,
        },
        "modules": modules.iter().map(module_json).collect::<Vec<_>>(),
    })
}

fn status_text(v: &VersionResponse, modules: &[ModuleRecord]) -> String {
    let mut s = format!(
        "nbshm {} (protocol {}, NDIS {}.{}), {} module(s) attached\n",
        driver_version(v),
        v.protocol_version,
        v.ndis_major,
        v.ndis_minor,
        modules.len()
    );
    if modules.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "{:>4} {:>8} {:<10} {:>12} {:>12} {:>12} {:>12} {:>15} {:>8} {:>9}  NAME",
        "ID",
        "IFINDEX",
        "STATE",
        "RX NB",
        "TX NB",
        "NB W/SHM",
        "SEGMENTS",
        "SHARED BYTES",
        "HANDLES",
        "ANOMALIES"
    );
    for m in modules {
        let _ = writeln!(
            s,
            "{:>4} {:>8} {:<10} {:>12} {:>12} {:>12} {:>12} {:>15} {:>8} {:>9}  {}",
            m.id,
            m.if_index,
            nbshm_proto::state::name(m.state),
            m.receive.net_buffers,
            m.send.net_buffers,
            m.receive.with_shared_memory + m.send.with_shared_memory,
            m.receive.segments + m.send.segments,
            m.receive.shared_bytes + m.send.shared_bytes,
            m.distinct_handles,
            m.receive.anomalies_total() + m.send.anomalies_total(),
            name(m)
        );
    }
    s
}

fn modules_text(modules: &[ModuleRecord]) -> String {
    if modules.is_empty() {
        return "no module attached\n".into();
    }
    let mut s = String::new();
    for m in modules {
        let _ = writeln!(
            s,
            "module {}  ifindex {} (miniport {})  {}  \"{}\"",
            m.id,
            m.if_index,
            m.base_if_index,
            nbshm_proto::state::name(m.state),
            name(m)
        );
        let _ = writeln!(
            s,
            "  handles {} of {} (segments without a slot: {}), in flight {}, resets {}",
            m.distinct_handles, m.handle_capacity, m.handle_overflow_segments, m.in_flight, m.resets
        );
        let _ = writeln!(s, "  {:<32} {:>15} {:>15}", "", "receive", "send");
        let (rx, tx) = (&m.receive, &m.send);
        let mut row = |label: &str, a: u64, b: u64| {
            let _ = writeln!(s, "  {label:<32} {a:>15} {b:>15}");
        };
        row("NBLs", rx.nbls, tx.nbls);
        row("NET_BUFFERs", rx.net_buffers, tx.net_buffers);
        row("NET_BUFFERs walked", rx.walked, tx.walked);
        row("NET_BUFFERs with shared memory", rx.with_shared_memory, tx.with_shared_memory);
        row("segments", rx.segments, tx.segments);
        row("shared bytes", rx.shared_bytes, tx.shared_bytes);
        row("longest chain", u64::from(rx.max_chain), u64::from(tx.max_chain));
        for ((kind, in_rx), in_tx) in ANOMALY_NAMES.iter().zip(rx.anomalies).zip(tx.anomalies) {
            row(&format!("anomaly {kind}"), in_rx, in_tx);
        }
        row("NBLs rejected while not running", rx.rejected_nbls, tx.rejected_nbls);
    }
    s
}

fn handle_json(h: &HandleRecord) -> Value {
    json!({
        "slot": h.slot,
        "handle": format!("{:#x}", h.handle),
        "receive_segments": h.receive_segments,
        "receive_bytes": h.receive_bytes,
        "send_segments": h.send_segments,
        "send_bytes": h.send_bytes,
        "min_offset": h.min_offset,
        "max_end": h.max_end,
    })
}

fn handles_json(module: u32, t: &HandleTable) -> Value {
    json!({
        "module_id": module,
        "capacity": t.header.capacity,
        "distinct": t.header.distinct,
        "overflow_segments": t.header.overflow_segments,
        "handles": t.records.iter().map(handle_json).collect::<Vec<_>>(),
    })
}

fn handles_text(module: u32, t: &HandleTable) -> String {
    let mut s = format!(
        "module {module}: {} distinct handle(s), table capacity {}, segments without a slot {}\n",
        t.header.distinct, t.header.capacity, t.header.overflow_segments
    );
    if t.records.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "{:>6} {:>18} {:>12} {:>15} {:>12} {:>15} {:>11} {:>12}",
        "SLOT", "HANDLE", "RX SEGS", "RX BYTES", "TX SEGS", "TX BYTES", "MIN OFFSET", "MAX END"
    );
    for h in &t.records {
        let _ = writeln!(
            s,
            "{:>6} {:>#18x} {:>12} {:>15} {:>12} {:>15} {:>11} {:>12}",
            h.slot,
            h.handle,
            h.receive_segments,
            h.receive_bytes,
            h.send_segments,
            h.send_bytes,
            h.min_offset,
            h.max_end
        );
    }
    s
}

fn config_json(c: &ConfigResponse) -> Value {
    Value::Array(
        c.values
            .iter()
            .map(|v| {
                json!({
                    "keyword": nbshm_proto::keyword_name(v.keyword).unwrap_or("?"),
                    "value": v.value,
                    "default": v.default,
                    "min": v.min,
                    "max": v.max,
                    "runtime": v.flags & CONFIG_FLAG_RUNTIME != 0,
                })
            })
            .collect(),
    )
}

fn config_text(c: &ConfigResponse) -> String {
    let mut s = format!("{:<26} {:>10} {:>10} {:>20}  RUNTIME\n", "KEYWORD", "VALUE", "DEFAULT", "RANGE");
    for v in &c.values {
        let _ = writeln!(
            s,
            "{:<26} {:>10} {:>10} {:>20}  {}",
            nbshm_proto::keyword_name(v.keyword).unwrap_or("?"),
            v.value,
            v.default,
            format!("{}..={}", v.min, v.max),
            if v.flags & CONFIG_FLAG_RUNTIME != 0 { "yes" } else { "no (load/attach)" }
        );
    }
    s
}

#[cfg(test)]
mod tests;
