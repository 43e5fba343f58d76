//! `nbshm-trace`: reads a decoded nbshm ETW trace and summarizes shared-memory usage per adapter
//! and per handle.
//!
//! Inputs, detected by their first non-blank character:
//! * XML in the Windows event schema, as the in-box decoders write it (`tracerpt <etl> -of XML`,
//!   `netsh trace convert ... dump=XML`): one `<Event>` per record with `<System>` (provider,
//!   level, keywords) and `<EventData><Data Name="...">` fields. A TraceLogging event's name is
//!   taken from `RenderingInfo/Task` or a non-numeric `System/Task`; when a decoder leaves it
//!   out, the event is recognised by its fields (every nbshm event has a distinct field set);
//! * JSON lines, as `nbshm-sim --events` prints them (`{"event": NAME, "level": n, ...}`).
//!
//! The summary takes each module's latest UsageSnapshot per direction and latest HandleUsage per
//! handle (both are running totals), the names from FilterAttached, and, when the trace holds
//! verbose events, recounts segments, bytes and handles from the SharedMemorySegment events
//! themselves, so a reader can see whether the per-packet events and the driver's counters agree
//! (they differ when the session started late or the session dropped events).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The provider name every nbshm event carries.
pub const PROVIDER_NAME: &str = "Nbshm.SharedMemoryFilter";

/// One decoded event: its name and its fields as text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Event name (empty when neither the decoder nor the field set told it).
    pub name: String,
    /// Fields by name, values as the decoder wrote them.
    pub fields: BTreeMap<String, String>,
}

impl Event {
    /// Integer field (decimal or `0x` hexadecimal).
    #[must_use]
    pub fn int(&self, name: &str) -> Option<u64> {
        let v = self.fields.get(name)?.trim();
        match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
            Some(h) => u64::from_str_radix(h, 16).ok(),
            None => v.parse().ok(),
        }
    }

    /// Text field.
    #[must_use]
    pub fn text(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(|s| s.trim())
    }
}

/// Fields that identify an event when the decoder did not keep its name (each set is unique to
/// one event; the test `field_signatures_match_the_driver_schema` holds them to src/etw.rs).
pub const SIGNATURES: &[(&str, &[&str])] = &[
    ("DriverLoaded", &["Version", "NdisMajor", "NdisMinor", "Processors"]),
    ("DriverUnloading", &["Version", "NdisMajor", "NdisMinor"]),
    (
        "FilterAttached",
        &[
            "ModuleId",
            "IfIndex",
            "BaseMiniportIfIndex",
            "MiniportName",
            "MediaType",
            "HandleTableSize",
            "State",
        ],
    ),
    (
        "FilterDetached",
        &[
            "ModuleId",
            "IfIndex",
            "MiniportName",
            "ReceiveNetBuffers",
            "SendNetBuffers",
            "Segments",
            "SharedBytes",
            "Anomalies",
            "DistinctHandles",
        ],
    ),
    ("FilterPaused", &["ModuleId", "IfIndex", "PauseReason", "Pending"]),
    ("FilterRestarted", &["ModuleId", "IfIndex"]),
    (
        "SharedMemorySegment",
        &[
            "Direction",
            "ModuleId",
            "IfIndex",
            "Nbl",
            "NbIndex",
            "SegmentIndex",
            "Handle",
            "Offset",
            "Length",
            "Flags",
        ],
    ),
    (
        "NetBufferSharedMemory",
        &["Direction", "ModuleId", "IfIndex", "Nbl", "NbIndex", "DataLength", "Segments", "SharedBytes"],
    ),
    (
        "UsageSnapshot",
        &[
            "ModuleId",
            "IfIndex",
            "Direction",
            "Nbls",
            "NetBuffers",
            "NetBuffersWalked",
            "NetBuffersWithSharedMemory",
            "Segments",
            "SharedBytes",
            "DistinctHandles",
            "MaxChainLength",
            "Anomalies",
            "Overlong",
            "OffsetOverflow",
            "NullHandle",
            "ZeroLength",
            "BadPointer",
            "RejectedNbls",
            "IntervalMs",
        ],
    ),
    (
        "HandleUsage",
        &[
            "ModuleId",
            "IfIndex",
            "Handle",
            "ReceiveSegments",
            "ReceiveBytes",
            "SendSegments",
            "SendBytes",
            "MinOffset",
            "MaxEnd",
        ],
    ),
    ("ChainAnomaly", &["Direction", "ModuleId", "IfIndex", "Nbl", "NbIndex", "SegmentIndex", "Kind"]),
    ("ConfigClamped", &["Keyword", "Value", "Clamped"]),
];

/// Anomaly kinds in counter order, with their UsageSnapshot field names.
pub const ANOMALIES: [(&str, &str); 5] = [
    ("overlong", "Overlong"),
    ("offset_overflow", "OffsetOverflow"),
    ("null_handle", "NullHandle"),
    ("zero_length", "ZeroLength"),
    ("bad_pointer", "BadPointer"),
];

fn identify(fields: &BTreeMap<String, String>) -> String {
    SIGNATURES
        .iter()
        .find(|(_, names)| names.len() == fields.len() && names.iter().all(|n| fields.contains_key(*n)))
        .map_or_else(String::new, |(name, _)| (*name).to_owned())
}

/// Parses decoded trace text (XML or JSON lines) into nbshm events; other providers' events are
/// skipped.
///
/// # Errors
/// Malformed XML or JSON, or input in neither format.
pub fn parse(text: &str) -> Result<Vec<Event>, String> {
    match text.trim_start().chars().next() {
        Some('<') => parse_xml(text),
        Some('{') => parse_json_lines(text),
        None => Ok(Vec::new()),
        Some(c) => {
            Err(format!("not a decoded trace (starts with {c:?}); expected tracerpt/netsh XML or JSON lines"))
        }
    }
}

/// Parses event-schema XML (`tracerpt -of XML`, `netsh trace convert dump=XML`).
///
/// # Errors
/// Malformed XML.
pub fn parse_xml(text: &str) -> Result<Vec<Event>, String> {
    fn child<'a, 'i>(parent: roxmltree::Node<'a, 'i>, name: &str) -> Option<roxmltree::Node<'a, 'i>> {
        parent.children().find(|c| c.tag_name().name() == name)
    }
    let doc = roxmltree::Document::parse(text).map_err(|e| format!("XML: {e}"))?;
    let mut out = Vec::new();
    for ev in doc.descendants().filter(|n| n.tag_name().name() == "Event") {
        let Some(system) = child(ev, "System") else { continue };
        let provider = child(system, "Provider");
        let provider_name = provider.and_then(|p| p.attribute("Name")).unwrap_or("").trim();
        if !provider_name.eq_ignore_ascii_case(PROVIDER_NAME) {
            continue;
        }
        let mut fields = BTreeMap::new();
        if let Some(data) = child(ev, "EventData") {
            for d in data.children().filter(|c| c.tag_name().name() == "Data") {
                if let Some(name) = d.attribute("Name") {
                    fields.insert(name.to_owned(), d.text().unwrap_or("").to_owned());
                }
            }
        }
        let rendered_task = child(ev, "RenderingInfo").and_then(|r| child(r, "Task")).and_then(|t| t.text());
        let system_task = child(system, "Task").and_then(|t| t.text()).filter(|t| t.parse::<u64>().is_err());
        let name = rendered_task
            .or(system_task)
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map_or_else(|| identify(&fields), str::to_owned);
        out.push(Event { name, fields });
    }
    Ok(out)
}

/// Parses `nbshm-sim --events` JSON lines (other JSON lines, e.g. the summary, are skipped).
///
/// # Errors
/// A line that is not JSON.
pub fn parse_json_lines(text: &str) -> Result<Vec<Event>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let Some(obj) = v.as_object() else { continue };
        let Some(name) = obj.get("event").and_then(|n| n.as_str()) else { continue };
        let fields = obj
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "event" | "level" | "keywords"))
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect();
        out.push(Event { name: name.to_owned(), fields });
    }
    Ok(out)
}

/// Totals of one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Direction {
    /// NBLs.
    pub nbls: u64,
    /// NET_BUFFERs.
    pub net_buffers: u64,
    /// NET_BUFFERs walked.
    pub walked: u64,
    /// Walked NET_BUFFERs with shared memory.
    pub with_shared_memory: u64,
    /// Segments.
    pub segments: u64,
    /// Bytes.
    pub shared_bytes: u64,
    /// Longest chain.
    pub max_chain: u64,
    /// Anomalies by kind ([`ANOMALIES`] order).
    pub anomalies: [u64; 5],
    /// NBLs rejected while paused.
    pub rejected_nbls: u64,
}

/// One handle's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Handle {
    /// Segments on receive / send.
    pub segments: [u64; 2],
    /// Bytes on receive / send.
    pub bytes: [u64; 2],
    /// Smallest offset.
    pub min_offset: u64,
    /// Largest end.
    pub max_end: u64,
}

/// What the per-packet verbose events add up to (when the trace has them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Recount {
    /// SharedMemorySegment events by direction.
    pub segments: [u64; 2],
    /// Their bytes by direction.
    pub bytes: [u64; 2],
    /// Distinct handles in them.
    pub handles: usize,
    /// NetBufferSharedMemory events by direction.
    pub net_buffers: [u64; 2],
    /// ChainAnomaly events by kind.
    pub anomalies: [u64; 5],
}

/// One adapter (filter module).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Module {
    /// Module id.
    pub id: u64,
    /// Interface index.
    pub if_index: u64,
    /// Adapter name (FilterAttached).
    pub name: String,
    /// Latest UsageSnapshot, receive then send.
    pub usage: [Option<Direction>; 2],
    /// Distinct handles (latest UsageSnapshot).
    pub distinct_handles: u64,
    /// Latest HandleUsage by handle.
    pub handles: BTreeMap<u64, Handle>,
    /// Recount from verbose events.
    pub recount: Recount,
    /// Whether it detached in the trace.
    pub detached: bool,
}

/// The whole summary.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Modules by id.
    pub modules: BTreeMap<u64, Module>,
    /// Events read, by name.
    pub events: BTreeMap<String, u64>,
}

fn dir_index(e: &Event) -> usize {
    usize::from(e.text("Direction") == Some("send"))
}

/// Builds the summary from parsed events (in trace order).
#[must_use]
pub fn summarize(events: &[Event]) -> Summary {
    let mut summary = Summary::default();
    let mut seen_handles: BTreeMap<u64, std::collections::BTreeSet<u64>> = BTreeMap::new();
    for ev in events {
        *summary
            .events
            .entry(if ev.name.is_empty() { "(unknown)".to_owned() } else { ev.name.clone() })
            .or_default() += 1;
        let Some(id) = ev.int("ModuleId") else { continue };
        let m = summary.modules.entry(id).or_insert_with(|| Module { id, ..Module::default() });
        if let Some(i) = ev.int("IfIndex") {
            m.if_index = i;
        }
        let g = |k: &str| ev.int(k).unwrap_or(0);
        match ev.name.as_str() {
            "FilterAttached" => ev.text("MiniportName").unwrap_or("").clone_into(&mut m.name),
            "FilterDetached" => {
                m.detached = true;
                if m.name.is_empty() {
                    ev.text("MiniportName").unwrap_or("").clone_into(&mut m.name);
                }
            }
            "UsageSnapshot" => {
                let d = Direction {
                    nbls: g("Nbls"),
                    net_buffers: g("NetBuffers"),
                    walked: g("NetBuffersWalked"),
                    with_shared_memory: g("NetBuffersWithSharedMemory"),
                    segments: g("Segments"),
                    shared_bytes: g("SharedBytes"),
                    max_chain: g("MaxChainLength"),
                    anomalies: ANOMALIES.map(|(_, f)| g(f)),
                    rejected_nbls: g("RejectedNbls"),
                };
                m.usage[dir_index(ev)] = Some(d);
                m.distinct_handles = g("DistinctHandles");
            }
            "HandleUsage" => {
                m.handles.insert(
                    g("Handle"),
                    Handle {
                        segments: [g("ReceiveSegments"), g("SendSegments")],
                        bytes: [g("ReceiveBytes"), g("SendBytes")],
                        min_offset: g("MinOffset"),
                        max_end: g("MaxEnd"),
                    },
                );
            }
            "SharedMemorySegment" => {
                let d = dir_index(ev);
                m.recount.segments[d] += 1;
                m.recount.bytes[d] += g("Length");
                let h = g("Handle");
                if h != 0 {
                    seen_handles.entry(id).or_default().insert(h);
                }
            }
            "NetBufferSharedMemory" => m.recount.net_buffers[dir_index(ev)] += 1,
            "ChainAnomaly" => {
                if let Some(k) = ANOMALIES.iter().position(|(n, _)| Some(*n) == ev.text("Kind")) {
                    m.recount.anomalies[k] += 1;
                }
            }
            _ => {}
        }
    }
    for (id, handles) in seen_handles {
        if let Some(m) = summary.modules.get_mut(&id) {
            m.recount.handles = handles.len();
        }
    }
    summary
}

/// The summary as readable text.
#[must_use]
pub fn render_text(s: &Summary) -> String {
    let mut o = String::new();
    let total: u64 = s.events.values().sum();
    let _ = writeln!(o, "{total} nbshm events; {} modules", s.modules.len());
    for m in s.modules.values() {
        let _ = writeln!(
            o,
            "\nmodule {} (IfIndex {}) {:?}{}",
            m.id,
            m.if_index,
            m.name,
            if m.detached { " [detached]" } else { "" }
        );
        let _ = writeln!(
            o,
            "  {:<8} {:>10} {:>12} {:>10} {:>10} {:>10} {:>14} {:>6} {:>10}",
            "dir",
            "NBLs",
            "NET_BUFFERs",
            "walked",
            "with shm",
            "segments",
            "shared bytes",
            "chain",
            "anomalies"
        );
        for (i, d) in m.usage.iter().enumerate() {
            let dir = if i == 0 { "receive" } else { "send" };
            match d {
                Some(d) => {
                    let _ = writeln!(
                        o,
                        "  {dir:<8} {:>10} {:>12} {:>10} {:>10} {:>10} {:>14} {:>6} {:>10}",
                        d.nbls,
                        d.net_buffers,
                        d.walked,
                        d.with_shared_memory,
                        d.segments,
                        d.shared_bytes,
                        d.max_chain,
                        d.anomalies.iter().sum::<u64>()
                    );
                    let kinds: Vec<String> = ANOMALIES
                        .iter()
                        .zip(d.anomalies)
                        .filter(|(_, n)| *n > 0)
                        .map(|((k, _), n)| format!("{k} {n}"))
                        .collect();
                    if !kinds.is_empty() {
                        let _ = writeln!(o, "           anomalies: {}", kinds.join(", "));
                    }
                }
                None => {
                    let _ = writeln!(o, "  {dir:<8} (no UsageSnapshot in the trace)");
                }
            }
        }
        let _ = writeln!(o, "  distinct handles: {}", m.distinct_handles);
        if !m.handles.is_empty() {
            let _ = writeln!(
                o,
                "  {:<20} {:>10} {:>14} {:>10} {:>14} {:>10} {:>12}",
                "handle", "rx segs", "rx bytes", "tx segs", "tx bytes", "min off", "max end"
            );
            for (h, u) in &m.handles {
                let _ = writeln!(
                    o,
                    "  {:<20} {:>10} {:>14} {:>10} {:>14} {:>10} {:>12}",
                    format!("{h:#x}"),
                    u.segments[0],
                    u.bytes[0],
                    u.segments[1],
                    u.bytes[1],
                    u.min_offset,
                    u.max_end
                );
            }
        }
        let r = &m.recount;
        if r.segments.iter().sum::<u64>() + r.net_buffers.iter().sum::<u64>() > 0 {
            let _ = writeln!(
                o,
                "  verbose events: {} rx / {} tx segments ({} / {} bytes), {} handles, {} rx / {} tx NET_BUFFERs",
                r.segments[0],
                r.segments[1],
                r.bytes[0],
                r.bytes[1],
                r.handles,
                r.net_buffers[0],
                r.net_buffers[1]
            );
        }
    }
    o
}

fn dir_json(d: Option<&Direction>) -> serde_json::Value {
    d.map_or(serde_json::Value::Null, |d| {
        serde_json::json!({
            "nbls": d.nbls,
            "net_buffers": d.net_buffers,
            "net_buffers_walked": d.walked,
            "net_buffers_with_shared_memory": d.with_shared_memory,
            "segments": d.segments,
            "shared_bytes": d.shared_bytes,
            "max_chain_length": d.max_chain,
            "anomalies": ANOMALIES.iter().zip(d.anomalies).map(|((k, _), n)| ((*k).to_owned(), serde_json::json!(n))).collect::<serde_json::Map<_, _>>(),
            "rejected_nbls": d.rejected_nbls,
        })
    })
}

/// The summary as one JSON object.
#[must_use]
pub fn render_json(s: &Summary) -> serde_json::Value {
    let modules: Vec<serde_json::Value> = s
        .modules
        .values()
        .map(|m| {
            serde_json::json!({
                "module_id": m.id,
                "if_index": m.if_index,
                "name": m.name,
                "detached": m.detached,
                "receive": dir_json(m.usage[0].as_ref()),
                "send": dir_json(m.usage[1].as_ref()),
                "distinct_handles": m.distinct_handles,
                "handles": m.handles.iter().map(|(h, u)| serde_json::json!({
                    "handle": format!("{h:#x}"),
                    "receive_segments": u.segments[0],
                    "receive_bytes": u.bytes[0],
                    "send_segments": u.segments[1],
                    "send_bytes": u.bytes[1],
                    "min_offset": u.min_offset,
                    "max_end": u.max_end,
                })).collect::<Vec<_>>(),
                "verbose_recount": {
                    "segments": m.recount.segments,
                    "bytes": m.recount.bytes,
                    "handles": m.recount.handles,
                    "net_buffers": m.recount.net_buffers,
                    "anomalies": m.recount.anomalies,
                },
            })
        })
        .collect();
    serde_json::json!({ "events": s.events, "modules": modules })
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Renders `nbshm-sim --events` JSON lines as event-schema XML in the layout `tracerpt -of XML`
/// writes (System with Provider/Level/Keywords, EventData/Data Name=..., the TraceLogging event
/// name in RenderingInfo/Task). The project's own sample of a decoded trace, used to test the
/// summarizer on Linux; not byte-for-byte tracerpt output (no timestamps, process ids, etc.).
///
/// # Errors
/// A line that is not JSON.
pub fn render_xml(json_lines: &str, provider_guid: &str) -> Result<String, String> {
    let mut o = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Events>\n");
    for (i, line) in json_lines.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
        let Some(obj) = v.as_object() else { continue };
        let Some(name) = obj.get("event").and_then(|n| n.as_str()) else { continue };
        let level = obj.get("level").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let keywords = obj.get("keywords").and_then(serde_json::Value::as_u64).unwrap_or(0);
        let _ = write!(
            o,
            "<Event xmlns=\"http://schemas.microsoft.com/win/2004/08/events/event\">\n\t<System>\n\t\t<Provider Name=\"{PROVIDER_NAME}\" Guid=\"{{{provider_guid}}}\" />\n\t\t<EventID>0</EventID>\n\t\t<Version>0</Version>\n\t\t<Level>{level}</Level>\n\t\t<Task>0</Task>\n\t\t<Opcode>0</Opcode>\n\t\t<Keywords>{keywords:#x}</Keywords>\n\t</System>\n\t<EventData>\n"
        );
        for (k, v) in obj.iter().filter(|(k, _)| !matches!(k.as_str(), "event" | "level" | "keywords")) {
            let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
            let _ = writeln!(o, "\t\t<Data Name=\"{}\">{}</Data>", xml_escape(k), xml_escape(&text));
        }
        let _ = write!(
            o,
            "\t</EventData>\n\t<RenderingInfo Culture=\"en-US\">\n\t\t<Task>{}</Task>\n\t</RenderingInfo>\n</Event>\n",
            xml_escape(name)
        );
    }
    o.push_str("</Events>\n");
    Ok(o)
}

#[cfg(test)]
mod tests;
