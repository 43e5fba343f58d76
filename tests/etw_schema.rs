//! docs/etw.md is the schema: its provider GUID, keywords and every event's level, keywords and
//! fields (names, order, types) must equal the driver's event table (`nbshm::etw::EVENTS`), and
//! the GUID must be the EventSource name hash of the provider name, recomputed here
//! independently of the `tracelogging` crate.

use nbshm::etw::{EVENTS, KEYWORDS, provider_id, provider_name};
use nbshm::names::ETW_PROVIDER_NAME;
use sha1::{Digest, Sha1};

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/etw.md")).unwrap()
}

/// Rows of the first markdown table after `heading` (cells trimmed, header and rule skipped).
fn table_after(text: &str, heading: &str) -> Vec<Vec<String>> {
    let start = text.find(heading).unwrap_or_else(|| panic!("{heading} not in docs/etw.md"));
    let rest = &text[start + heading.len()..];
    rest.lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .skip(2)
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect())
        .collect()
}

/// The EventSource/TraceLogging provider id: SHA-1 over the namespace
/// 482C2DB2-C390-47C8-87F8-1A15BFC130FB and the upper-cased name in UTF-16BE; the first 16
/// bytes, with the version nibble set to 5, read as a little-endian GUID.
fn name_hash_guid(name: &str) -> String {
    let mut h = Sha1::new();
    h.update([
        0x48, 0x2C, 0x2D, 0xB2, 0xC3, 0x90, 0x47, 0xC8, 0x87, 0xF8, 0x1A, 0x15, 0xBF, 0xC1, 0x30, 0xFB,
    ]);
    for unit in name.to_uppercase().encode_utf16() {
        h.update(unit.to_be_bytes());
    }
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[7] = (b[7] & 0x0F) | 0x50;
    format!(
        "{:08x}-{:04x}-{:04x}-{:02x}{:02x}-{}",
        u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_le_bytes([b[4], b[5]]),
        u16::from_le_bytes([b[6], b[7]]),
        b[8],
        b[9],
        b[10..].iter().fold(String::new(), |mut s, x| {
            use std::fmt::Write as _;
            let _ = write!(s, "{x:02x}");
            s
        })
    )
}

#[test]
fn provider_guid_is_the_name_hash_and_documented() {
    assert_eq!(provider_name(), ETW_PROVIDER_NAME);
    let computed = name_hash_guid(ETW_PROVIDER_NAME);
    let from_crate = String::from_utf8(provider_id().to_utf8_bytes().to_vec()).unwrap();
    assert_eq!(from_crate, computed, "tracelogging's GUID equals the independent computation");
    // The published example of the algorithm, to prove the computation itself.
    assert_eq!(name_hash_guid("MyProvider"), "b3864c38-4273-58c5-545b-8b3608343471");
    let rows = table_after(&doc(), "## Provider");
    assert_eq!(rows, vec![vec![ETW_PROVIDER_NAME.to_owned(), format!("{{{computed}}}")]]);
}

#[test]
fn keywords_table_matches_code() {
    let rows = table_after(&doc(), "## Keywords");
    let got: Vec<(u64, String)> = rows
        .iter()
        .map(|r| (u64::from_str_radix(r[0].trim_start_matches("0x"), 16).unwrap(), r[1].clone()))
        .collect();
    let want: Vec<(u64, String)> = KEYWORDS.iter().map(|(v, n)| (*v, (*n).to_owned())).collect();
    assert_eq!(got, want);
    // Every event listed under its keyword.
    for row in &rows {
        let bit = u64::from_str_radix(row[0].trim_start_matches("0x"), 16).unwrap();
        for e in EVENTS.iter().filter(|e| e.keywords & bit != 0) {
            assert!(row[2].contains(e.name), "{} not listed under keyword {}", e.name, row[1]);
        }
    }
}

#[test]
fn every_event_is_documented_with_its_level_keywords_and_fields() {
    let text = doc();
    let documented: Vec<&str> =
        text.lines().filter_map(|l| l.strip_prefix("### ")).filter(|n| !n.contains(' ')).collect();
    let coded: Vec<&str> = EVENTS.iter().map(|e| e.name).collect();
    assert_eq!(documented, coded, "the same events, in the same order");
    for e in EVENTS {
        let heading = format!("### {}\n", e.name);
        let start = text.find(&heading).unwrap();
        let meta = text[start + heading.len()..].lines().find(|l| l.starts_with("level:")).unwrap();
        let want_meta = format!(
            "level: {} ({}) · keywords: {:#x}",
            match e.level.as_int() {
                3 => "Warning",
                4 => "Informational",
                5 => "Verbose",
                other => panic!("undocumented level {other}"),
            },
            e.level.as_int(),
            e.keywords
        );
        assert_eq!(meta, want_meta, "{}", e.name);
        let rows = table_after(&text, &heading);
        let fields: Vec<(String, String)> = rows.iter().map(|r| (r[0].clone(), r[1].clone())).collect();
        let want: Vec<(String, String)> =
            e.fields.iter().map(|(n, t)| ((*n).to_owned(), (*t).to_owned())).collect();
        assert_eq!(fields, want, "{}: fields and types", e.name);
        assert!(rows.iter().all(|r| r.len() == 3 && !r[2].is_empty()), "{}: every field explained", e.name);
    }
}

#[test]
fn event_field_sets_are_unique() {
    // Decoders that lose the event name (some CSV/XML renderings) can still tell events apart by
    // their exact field sets; `nbshm-trace` relies on it.
    for (i, a) in EVENTS.iter().enumerate() {
        for b in &EVENTS[i + 1..] {
            let fa: std::collections::BTreeSet<_> = a.fields.iter().map(|f| f.0).collect();
            let fb: std::collections::BTreeSet<_> = b.fields.iter().map(|f| f.0).collect();
            assert_ne!(fa, fb, "{} and {} have the same fields", a.name, b.name);
        }
    }
}
