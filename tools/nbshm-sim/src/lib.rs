//! `nbshm-sim`: runs the real nbshm filter driver code against the user-mode NDIS model.
//! (The binary is `src/main.rs`; this library is the whole tool, so that its tests run without
//! building the binary: see the note in Cargo.toml.)
//!
//! It loads the driver, attaches it to simulated miniports, drives traffic from several CPU
//! threads (sends, receives with and without RESOURCES, VMQ shared-memory chains, injected
//! defects, pause/restart churn), then compares what the driver counted with what the model
//! generated. Driver-side figures are the driver's own statistics; `generated` figures are the
//! model's. Exits non-zero on any contract violation or mismatch.

use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use nbshm::config::{CONFIG, Keyword};
use nbshm::host::device::FILE_READ_DATA;
use nbshm::host::model::{Model, ModelOptions};
use nbshm::host::traffic::{Inject, RunReport, TrafficSpec, run};
use nbshm::host::{etw as recorder, violations};
use nbshm::shmem::AnomalyKind;
use nbshm::stats::DirSnapshot;
use nbshm_proto::ioctl::IOCTL_NBSHM_LIST_MODULES;
use nbshm_proto::status::{STATUS_BUFFER_OVERFLOW, STATUS_SUCCESS};
use nbshm_proto::{DirStats, ListModulesRequest, ModuleListHeader, ModuleRecord, Wire, decode_list};
use serde_json::{Value, json};

/// Command line.
#[derive(Debug, Parser)]
#[command(
    name = "nbshm-sim",
    version,
    about = "Run the nbshm filter driver against the user-mode NDIS model"
)]
pub struct Args {
    /// Simulated miniports (adapters) the filter attaches to.
    #[arg(long, default_value_t = 2)]
    miniports: usize,
    /// Simulated CPUs (traffic threads; also KeQueryMaximumProcessorCountEx).
    #[arg(long, default_value_t = 2)]
    cpus: u32,
    /// NBLs per miniport and direction (default 10000; with --pcap, enough for the capture).
    #[arg(long)]
    nbls: Option<u64>,
    /// NET_BUFFERs per NBL.
    #[arg(long, default_value_t = 1)]
    nbs_per_nbl: u32,
    /// NBLs per FilterSend/FilterReceive call.
    #[arg(long, default_value_t = 16)]
    batch: u32,
    /// Shared-memory segments per NET_BUFFER.
    #[arg(long, default_value_t = 1)]
    segments: u32,
    /// Fraction of send NET_BUFFERs, and of receive indications (the VMQ queues), with shared memory.
    #[arg(long, default_value_t = 0.9)]
    shared_fraction: f64,
    /// Shared-memory allocations (distinct handles) per miniport and direction.
    #[arg(long, default_value_t = 8)]
    handles: u32,
    /// MaxSegmentsPerNetBuffer: the walk's bound.
    #[arg(long, default_value_t = 64)]
    max_segments: u32,
    /// Pause/restart cycles during traffic.
    #[arg(long, default_value_t = 0)]
    churn: u32,
    /// Fraction of receive indications with NDIS_RECEIVE_FLAGS_RESOURCES.
    #[arg(long, default_value_t = 0.2)]
    resources_fraction: f64,
    /// Fraction of calls made at DISPATCH_LEVEL.
    #[arg(long, default_value_t = 0.5)]
    dispatch_fraction: f64,
    /// Inject defects: KIND=COUNT, KIND in cycle, overlong, offset_overflow, null_handle,
    /// zero_length, bad_pointer (repeatable). Each makes exactly one anomaly.
    #[arg(long, value_parser = parse_inject)]
    inject: Vec<(Inject, u64)>,
    /// Take packet sizes and count from a capture (pcap or pcapng).
    #[arg(long)]
    pcap: Option<PathBuf>,
    /// Seed of every random choice.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Pass-through baseline: walk nothing (SendPathWalk = ReceivePathWalk = 0).
    #[arg(long)]
    no_walk: bool,
    /// Print every ETW event as a JSON line (a verbose session on all keywords).
    #[arg(long)]
    events: bool,
    /// Print the summary as one JSON object (the last line of stdout).
    #[arg(long)]
    json: bool,
}

fn parse_inject(s: &str) -> Result<(Inject, u64), String> {
    let (kind, count) = s.split_once('=').ok_or_else(|| format!("{s:?}: expected KIND=COUNT"))?;
    let kind = Inject::from_name(kind).ok_or_else(|| {
        let kinds: Vec<_> = Inject::ALL.iter().map(|k| k.name()).collect();
        format!("unknown defect {kind:?} (one of {})", kinds.join(", "))
    })?;
    let count = count.parse().map_err(|e| format!("{s:?}: {e}"))?;
    Ok((kind, count))
}

/// Packet lengths of a pcap or pcapng capture, in order.
fn capture_sizes(path: &Path) -> Result<Vec<u32>, String> {
    use pcap_file::pcap::PcapReader;
    use pcap_file::pcapng::{Block, PcapNgReader};
    let err = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| err(&e))?;
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(|e| err(&e))?;
    let file = BufReader::new(std::fs::File::open(path).map_err(|e| err(&e))?);
    let mut sizes = Vec::new();
    if magic == [0x0A, 0x0D, 0x0D, 0x0A] {
        let mut r = PcapNgReader::new(file).map_err(|e| err(&e))?;
        while let Some(block) = r.next_block() {
            match block.map_err(|e| err(&e))? {
                Block::EnhancedPacket(p) => sizes.push(p.original_len),
                Block::SimplePacket(p) => sizes.push(p.original_len),
                Block::Packet(p) => sizes.push(p.original_len),
                _ => {}
            }
        }
    } else {
        let mut r = PcapReader::new(file).map_err(|e| err(&e))?;
        while let Some(p) = r.next_packet() {
            sizes.push(p.map_err(|e| err(&e))?.orig_len);
        }
    }
    if sizes.is_empty() {
        return Err(format!("{}: no packets", path.display()));
    }
    Ok(sizes)
}

fn anomalies_json(a: &[u64; 5]) -> Value {
    let mut m = serde_json::Map::new();
    for k in AnomalyKind::ALL {
        m.insert(k.name().to_owned(), json!(a[k.index()]));
    }
    Value::Object(m)
}

fn summary_json(args: &Args, r: &RunReport, per_module: &[Value]) -> Value {
    let d = &r.driver;
    let g = &r.generated;
    json!({
        "sent_nbls": r.sent_nbls,
        "send_completed_nbls": r.send_completed_nbls,
        "indicated_nbls": r.indicated_nbls,
        "returned_nbls": r.returned_nbls,
        "net_buffers": d.net_buffers,
        "net_buffers_walked": d.walked,
        "net_buffers_with_shared_memory": d.with_shared_memory,
        "segments": d.segments,
        "shared_bytes": d.shared_bytes,
        "distinct_handles": r.driver_distinct_handles,
        "max_chain_length": d.max_chain,
        "anomalies": anomalies_json(&d.anomalies),
        "rejected_nbls": d.rejected_nbls,
        "generated": {
            "net_buffers": g.net_buffers,
            "net_buffers_walked": g.walked,
            "net_buffers_with_shared_memory": g.with_shared_memory,
            "segments": g.segments,
            "shared_bytes": g.shared_bytes,
            "distinct_handles": r.generated_distinct_handles,
            "max_chain_length": g.max_chain,
            "anomalies": anomalies_json(&g.anomalies),
            "rejected_nbls": g.rejected_nbls,
            "injected": anomalies_json(&r.injected),
        },
        "contract_violations": r.contract_violations,
        "ns_per_net_buffer": (r.ns_per_net_buffer() * 10.0).round() / 10.0,
        "elapsed_ms": u64::try_from(r.elapsed.as_millis()).unwrap_or(u64::MAX),
        "churn_cycles": r.churn_cycles,
        "pauses_pended": r.pauses_pended,
        "miniports": args.miniports,
        "cpus": args.cpus,
        "walk": !args.no_walk,
        "max_segments": CONFIG.max_segments(),
        "modules": per_module,
    })
}

fn print_table(out: &mut dyn Write, r: &RunReport, mismatch: bool) -> std::io::Result<()> {
    let d = &r.driver;
    let g = &r.generated;
    writeln!(out, "{:<34} {:>14} {:>14}", "", "driver", "generated")?;
    let mut row = |name: &str, a: u64, b: u64| {
        let mark = if a == b { "" } else { "  <-- differs" };
        writeln!(out, "{name:<34} {a:>14} {b:>14}{mark}")
    };
    row("NET_BUFFERs", d.net_buffers, g.net_buffers)?;
    row("NET_BUFFERs walked", d.walked, g.walked)?;
    row("NET_BUFFERs with shared memory", d.with_shared_memory, g.with_shared_memory)?;
    row("segments", d.segments, g.segments)?;
    row("shared bytes", d.shared_bytes, g.shared_bytes)?;
    row("distinct handles", r.driver_distinct_handles, r.generated_distinct_handles)?;
    row("max chain length", u64::from(d.max_chain), u64::from(g.max_chain))?;
    for k in AnomalyKind::ALL {
        row(&format!("anomaly {}", k.name()), d.anomalies[k.index()], g.anomalies[k.index()])?;
    }
    row("NBLs rejected while paused", d.rejected_nbls, g.rejected_nbls)?;
    writeln!(out)?;
    writeln!(
        out,
        "sent {} / completed {}   indicated {} / returned {}   churn cycles {} (pended pauses {})",
        r.sent_nbls,
        r.send_completed_nbls,
        r.indicated_nbls,
        r.returned_nbls,
        r.churn_cycles,
        r.pauses_pended
    )?;
    writeln!(
        out,
        "contract violations {}   {:.1} ns per NET_BUFFER ({} ms){}",
        r.contract_violations,
        r.ns_per_net_buffer(),
        r.elapsed.as_millis(),
        if mismatch { "   STATISTICS DIFFER" } else { "" }
    )
}

/// Exit codes: 0 clean, 1 contract violation, 2 bad usage or failed setup, 3 the driver's
/// statistics differ from what the model generated.
pub mod exit {
    /// Everything conserved and counted exactly.
    pub const OK: u8 = 0;
    /// The model recorded a contract violation.
    pub const VIOLATION: u8 = 1;
    /// Bad arguments, unreadable capture, or the driver failed to load/attach.
    pub const USAGE: u8 = 2;
    /// Driver statistics differ from the generated traffic.
    pub const MISMATCH: u8 = 3;
}

/// A cloneable in-memory or stdout sink for the tool's output.
#[derive(Clone)]
pub enum Output {
    /// The process's stdout.
    Stdout,
    /// A buffer (tests).
    Buffer(Arc<Mutex<Vec<u8>>>),
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Self::Stdout => std::io::stdout().lock().write(buf),
            Self::Buffer(b) => {
                b.lock().unwrap_or_else(std::sync::PoisonError::into_inner).extend_from_slice(buf);
                Ok(buf.len())
            }
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Self::Stdout => std::io::stdout().lock().flush(),
            Self::Buffer(_) => Ok(()),
        }
    }
}

/// Runs the tool with `args` (as after the program name), writing its output to `out` and
/// diagnostics to stderr. Returns the exit code.
#[must_use]
pub fn main_with(args: &[String], out: &Output) -> u8 {
    let args = match Args::try_parse_from(std::iter::once("nbshm-sim".to_owned()).chain(args.iter().cloned()))
    {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { exit::USAGE } else { exit::OK };
        }
    };
    match run_sim(&args, out) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("nbshm-sim: {e}");
            exit::USAGE
        }
    }
}

fn validate(args: &Args) -> Result<(), String> {
    if args.miniports == 0 || args.cpus == 0 {
        return Err("--miniports and --cpus must be at least 1".into());
    }
    for (name, f) in [
        ("--shared-fraction", args.shared_fraction),
        ("--resources-fraction", args.resources_fraction),
        ("--dispatch-fraction", args.dispatch_fraction),
    ] {
        if !(0.0..=1.0).contains(&f) {
            return Err(format!("{name} must be within 0..=1"));
        }
    }
    if !Keyword::MaxSegmentsPerNetBuffer.valid(args.max_segments) {
        let i = Keyword::MaxSegmentsPerNetBuffer.info();
        return Err(format!("--max-segments must be within {}..={}", i.min, i.max));
    }
    Ok(())
}

/// The driver's per-module records, asked for as `nbshmctl modules` asks: LIST_MODULES through
/// the model's I/O manager, sized by the driver's `STATUS_BUFFER_OVERFLOW` answer. Sorted by id.
fn driver_modules(model: &Model) -> Result<Vec<ModuleRecord>, String> {
    let mut request = vec![0; ListModulesRequest::SIZE];
    let _ = ListModulesRequest::new().encode(&mut request);
    let mut size = ModuleListHeader::SIZE + 4 * ModuleRecord::SIZE;
    for _ in 0..4 {
        let r = model.ioctl(IOCTL_NBSHM_LIST_MODULES, &request, size, FILE_READ_DATA);
        if r.status != STATUS_SUCCESS && r.status != STATUS_BUFFER_OVERFLOW {
            return Err(format!("IOCTL_NBSHM_LIST_MODULES failed: {:#010x}", r.status.cast_unsigned()));
        }
        let list = decode_list::<ModuleListHeader, ModuleRecord>(&r.output)
            .map_err(|e| format!("IOCTL_NBSHM_LIST_MODULES: {e}"))?;
        if r.status == STATUS_BUFFER_OVERFLOW {
            size = usize::try_from(list.header.required_bytes).unwrap_or(usize::MAX);
            continue;
        }
        let mut records: Vec<ModuleRecord> = list.iter().collect();
        records.sort_by_key(|m| m.id);
        return Ok(records);
    }
    Err("IOCTL_NBSHM_LIST_MODULES: the list kept growing".into())
}

fn add_dir(total: &mut DirSnapshot, d: &DirStats) {
    total.nbls += d.nbls;
    total.net_buffers += d.net_buffers;
    total.walked += d.walked;
    total.with_shared_memory += d.with_shared_memory;
    total.segments += d.segments;
    total.shared_bytes += d.shared_bytes;
    total.max_chain = total.max_chain.max(d.max_chain);
    for (t, a) in total.anomalies.iter_mut().zip(d.anomalies) {
        *t += a;
    }
    total.rejected_nbls += d.rejected_nbls;
}

/// Both directions of every module, summed; and the distinct handles, summed.
fn driver_totals(records: &[ModuleRecord]) -> (DirSnapshot, u64) {
    let mut total = DirSnapshot::default();
    let mut handles = 0;
    for m in records {
        add_dir(&mut total, &m.receive);
        add_dir(&mut total, &m.send);
        handles += u64::from(m.distinct_handles);
    }
    (total, handles)
}

/// The driver's per-module figures, in module order.
fn modules_json(records: &[ModuleRecord]) -> Vec<Value> {
    records
        .iter()
        .map(|m| {
            json!({
                "module_id": m.id,
                "if_index": m.if_index,
                "name": String::from_utf16_lossy(m.name_units()),
                "receive_net_buffers": m.receive.net_buffers,
                "send_net_buffers": m.send.net_buffers,
                "segments": m.receive.segments + m.send.segments,
                "shared_bytes": m.receive.shared_bytes + m.send.shared_bytes,
                "anomalies": m.receive.anomalies_total() + m.send.anomalies_total(),
                "distinct_handles": m.distinct_handles,
            })
        })
        .collect()
}

fn run_sim(args: &Args, out: &Output) -> Result<u8, String> {
    validate(args)?;
    let sizes = args.pcap.as_deref().map(capture_sizes).transpose()?.unwrap_or_default();
    let nbls = args.nbls.unwrap_or_else(|| {
        if sizes.is_empty() {
            10_000
        } else {
            (sizes.len() as u64).div_ceil(u64::from(args.nbs_per_nbl.max(1)))
        }
    });
    let opts = ModelOptions { cpus: args.cpus, seed: args.seed, ..ModelOptions::default() };
    let mut model = Model::new(opts);
    if args.events {
        let mut sink = out.clone();
        recorder::forward(move |ev| {
            let _ = writeln!(sink, "{}", ev.to_json());
        });
    }
    if args.events {
        // A verbose session on every keyword, started before the driver loads (as a user starts
        // WPR before installing the filter), so DriverLoaded is seen too.
        recorder::enable(5, u64::MAX, 0);
    }
    let status = model.load();
    if status < 0 {
        return Err(format!("DriverEntry failed: {:#010x}", status.cast_unsigned()));
    }
    CONFIG
        .set(Keyword::MaxSegmentsPerNetBuffer, args.max_segments)
        .map_err(|v| format!("max segments {v}"))?;
    if args.no_walk {
        CONFIG.set(Keyword::SendPathWalk, 0).map_err(|_| "SendPathWalk")?;
        CONFIG.set(Keyword::ReceivePathWalk, 0).map_err(|_| "ReceivePathWalk")?;
    }
    for i in 0..args.miniports {
        let (idx, st) = model.add_miniport(&format!("Simulated VMQ Ethernet Adapter #{}", i + 1));
        if st != 0 {
            return Err(format!("FilterAttach failed on miniport {i}: {:#010x}", st.cast_unsigned()));
        }
        let st = model.restart(idx);
        if st != 0 {
            return Err(format!("FilterRestart failed on miniport {i}: {:#010x}", st.cast_unsigned()));
        }
    }
    let spec = TrafficSpec {
        nbls,
        nbs_per_nbl: args.nbs_per_nbl.max(1),
        batch: args.batch.max(1),
        segments: args.segments.max(1),
        shared_fraction: args.shared_fraction,
        handles: args.handles.max(1),
        resources_fraction: args.resources_fraction,
        dispatch_fraction: args.dispatch_fraction,
        inject: args.inject.clone(),
        sizes,
        churn: args.churn,
        seed: args.seed,
        receive: true,
        send: true,
        progress: (!args.json).then_some(Duration::from_secs(1)),
    };
    let report = run(&model, &spec, args.cpus);
    if args.events {
        // As WPR does for a profile with CaptureStateOnSave (etw/nbshm.wprp) when the trace is
        // saved: ask for a rundown, so the trace ends with every module's totals.
        recorder::capture_state();
    }
    let records = driver_modules(&model)?;
    let per_module = modules_json(&records);
    let (driver, driver_distinct_handles) = driver_totals(&records);
    let report = RunReport { driver, driver_distinct_handles, ..report };
    model.unload();
    if args.events {
        recorder::reset();
    }
    let violations_after = violations::count();
    let report = RunReport { contract_violations: violations_after, ..report };
    let mismatch = report.driver != report.generated
        || report.driver_distinct_handles != report.generated_distinct_handles
        || report.sent_nbls != report.send_completed_nbls
        || report.indicated_nbls != report.returned_nbls;
    let mut out = out.clone();
    let written = if args.json {
        writeln!(out, "{}", summary_json(args, &report, &per_module))
    } else {
        print_table(&mut out, &report, mismatch)
    };
    written.map_err(|e| format!("writing the report: {e}"))?;
    for v in violations::list().iter().take(20) {
        eprintln!("contract violation: {v}");
    }
    Ok(if report.contract_violations > 0 {
        exit::VIOLATION
    } else if mismatch {
        eprintln!("nbshm-sim: the driver's statistics differ from what the model generated");
        exit::MISMATCH
    } else {
        exit::OK
    })
}

#[cfg(test)]
mod tests;
