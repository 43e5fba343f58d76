//! One source of truth for the kernel imports: the functions src/sys/imports.rs declares and the
//! `.def` lists next to it (from which `cargo xtask sys` makes the import libraries) must agree.

use std::collections::BTreeSet;

use nbshm::sys::{ALL_IMPORTS, TRACELOGGING_IMPORTS};

/// Parses a `.def` file: its LIBRARY name and EXPORTS list.
fn parse_def(path: &str) -> (String, BTreeSet<String>) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut library = None;
    let mut exports = BTreeSet::new();
    let mut in_exports = false;
    for line in text.lines() {
        let line = line.split(';').next().unwrap().trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix("LIBRARY") {
            library = Some(name.trim().to_owned());
        } else if line == "EXPORTS" {
            in_exports = true;
        } else {
            assert!(in_exports, "{path}: {line:?} before EXPORTS");
            assert!(exports.insert(line.to_owned()), "{path}: {line} listed twice");
        }
    }
    (library.unwrap_or_else(|| panic!("{path}: no LIBRARY")), exports)
}

fn def_path(module: &str) -> String {
    let stem = module.split('.').next().unwrap();
    format!("{}/src/sys/{stem}.def", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn import_lists_match_def_files() {
    for (module, declared) in ALL_IMPORTS {
        let (library, listed) = parse_def(&def_path(module));
        assert_eq!(&library, module, "LIBRARY line of {module}'s .def");
        let declared: BTreeSet<String> = declared.iter().map(|s| (*s).to_owned()).collect();
        let missing: Vec<_> = declared.difference(&listed).collect();
        assert!(missing.is_empty(), "declared in imports.rs but missing from {module}'s .def: {missing:?}");
        let extra: Vec<_> = listed
            .difference(&declared)
            .filter(|name| !(*module == "ntoskrnl.exe" && TRACELOGGING_IMPORTS.contains(&name.as_str())))
            .collect();
        assert!(extra.is_empty(), "{module}'s .def lists functions nothing declares: {extra:?}");
    }
}

#[test]
fn tracelogging_imports_are_listed_for_ntoskrnl() {
    let (_, listed) = parse_def(&def_path("ntoskrnl.exe"));
    for name in TRACELOGGING_IMPORTS {
        assert!(listed.contains(*name), "{name} missing from ntoskrnl.def");
    }
}
