//! The `.def` import lists in `src/sys/`: the names the driver may import from each module.
//! `cargo xtask sys` makes the import libraries from them; `check-sys` holds the image to them.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// One `.def` file: `LIBRARY <module>` and the names under `EXPORTS`.
#[derive(Debug, PartialEq, Eq)]
pub struct DefFile {
    /// The module, as written after `LIBRARY` (e.g. `ndis.sys`).
    pub library: String,
    /// The listed names.
    pub names: BTreeSet<String>,
}

impl DefFile {
    /// Parses the subset of the `.def` syntax these files use: `;` comments, `LIBRARY <name>`,
    /// `EXPORTS`, then one plain name a line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut library = None;
        let mut names = BTreeSet::new();
        let mut in_exports = false;
        for (number, line) in text.lines().enumerate() {
            let line = line.split(';').next().unwrap_or_default().trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix("LIBRARY ") {
                library = Some(name.trim().to_owned());
            } else if line == "EXPORTS" {
                in_exports = true;
            } else if in_exports && !line.contains(char::is_whitespace) && !line.contains(['=', '@']) {
                names.insert(line.to_owned());
            } else {
                return Err(format!(
                    "line {}: {line:?} is not part of the supported .def syntax",
                    number + 1
                ));
            }
        }
        let library = library.ok_or("no LIBRARY line")?;
        Ok(Self { library, names })
    }
}

/// Every `src/sys/*.def`, sorted by path.
pub fn def_paths(sys_dir: &Path) -> Result<Vec<PathBuf>, String> {
    let entries = fs::read_dir(sys_dir).map_err(|e| format!("{}: {e}", sys_dir.display()))?;
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(|e| format!("{}: {e}", sys_dir.display()))?.path();
        if path.extension().is_some_and(|ext| ext == "def") {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(format!("no .def files in {}", sys_dir.display()));
    }
    Ok(paths)
}

/// Module (lower case) → names, for every `.def` list.
pub fn import_lists(sys_dir: &Path) -> Result<BTreeMap<String, BTreeSet<String>>, String> {
    let mut lists = BTreeMap::new();
    for path in def_paths(sys_dir)? {
        let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let def = DefFile::parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        lists.insert(def.library.to_ascii_lowercase(), def.names);
    }
    Ok(lists)
}

#[cfg(test)]
mod tests {
    use super::DefFile;

    #[test]
    fn parses_library_and_names() {
        let def = DefFile::parse(
            "; comment\nLIBRARY ndis.sys\nEXPORTS\n    NdisFRegisterFilterDriver ; why\n\n    B\n",
        )
        .unwrap();
        assert_eq!(def.library, "ndis.sys");
        assert_eq!(
            def.names.iter().map(String::as_str).collect::<Vec<_>>(),
            ["B", "NdisFRegisterFilterDriver"]
        );
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        assert!(DefFile::parse("EXPORTS\nA\n").is_err());
        assert!(DefFile::parse("LIBRARY x.dll\nA\n").is_err());
        assert!(DefFile::parse("LIBRARY x.dll\nEXPORTS\nA @1\n").is_err());
    }

    #[test]
    fn the_project_lists_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../src/sys");
        let lists = super::import_lists(&dir).unwrap();
        assert!(lists.get("ndis.sys").is_some_and(|names| names.contains("NdisFRegisterFilterDriver")));
        assert!(lists.contains_key("ntoskrnl.exe"));
        assert!(lists.contains_key("hal.dll"));
    }
}
