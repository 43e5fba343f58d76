//! docs/ioctl.md is the contract of the control device: its IOCTL table must carry the codes,
//! access and sizes of `nbshm-proto`, and its keyword table the defaults, ranges and runtime flags
//! of `config::KEYWORDS`.

use nbshm::config::KEYWORDS;
use nbshm_proto::ioctl::{ALL, FILE_READ_ACCESS, FILE_WRITE_ACCESS, access};

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ioctl.md")).unwrap()
}

/// The cells of the table row whose first cell is `` `key` ``.
fn row(doc: &str, key: &str) -> Vec<String> {
    let first = format!("`{key}`");
    let rows: Vec<Vec<String>> = doc
        .lines()
        .filter(|l| l.starts_with('|'))
        .map(|l| l.trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect::<Vec<_>>())
        .filter(|cells| cells.first() == Some(&first))
        .collect();
    assert_eq!(rows.len(), 1, "docs/ioctl.md: one table row for {key}, found {}", rows.len());
    rows.into_iter().next().unwrap()
}

#[test]
fn the_ioctl_table_matches_the_protocol() {
    let doc = doc();
    for (code, name) in ALL {
        let cells = row(&doc, name);
        assert_eq!(cells[1], format!("0x{code:08X}"), "{name} code");
        assert_eq!(cells[2], format!("0x{:03X}", (code >> 2) & 0xFFF), "{name} function");
        let want = match access(code) {
            FILE_READ_ACCESS => "read",
            FILE_WRITE_ACCESS => "write",
            other => panic!("{name}: access {other}"),
        };
        assert_eq!(cells[3], want, "{name} access");
    }
}

#[test]
fn the_keyword_table_matches_the_configuration() {
    let doc = doc();
    for k in &KEYWORDS {
        let cells = row(&doc, k.name);
        assert_eq!(cells[1], k.default.to_string(), "{} default", k.name);
        assert_eq!(cells[2], format!("{}..={}", k.min, k.max), "{} range", k.name);
        assert_eq!(cells[3], if k.runtime { "yes" } else { "no" }, "{} runtime", k.name);
    }
}

#[test]
fn the_structure_sizes_are_the_protocols() {
    use nbshm_proto::{
        ConfigResponse, HandleListHeader, HandleRecord, ModuleListHeader, ModuleRecord, VersionResponse, Wire,
    };
    let doc = doc();
    for (name, size) in [
        ("VersionResponse", VersionResponse::SIZE),
        ("ModuleListHeader", ModuleListHeader::SIZE),
        ("ModuleRecord", ModuleRecord::SIZE),
        ("HandleListHeader", HandleListHeader::SIZE),
        ("HandleRecord", HandleRecord::SIZE),
    ] {
        assert_eq!(row(&doc, name)[1], size.to_string(), "{name} size");
    }
    assert_eq!(row(&doc, "ConfigValue` / `ConfigResponse")[1], format!("24 / {}", ConfigResponse::SIZE));
}
