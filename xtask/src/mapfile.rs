//! Symbol names from the linker map (`lld-link /MAP`), to name the functions the checks report.
//!
//! The image has no symbol table; the map lists every symbol the linker placed, public and
//! static, with its address. Lines of interest, after the `Publics by Value` header:
//!
//! ```text
//!  0001:000000c0       _RNvNtCs..._5nbshm6filter13driver_unload 00000001800010c0     obj
//! ```
//! (section:offset, name, load address, then optionally `f` and the object). The RVA is the load
//! address minus the `Preferred load address` the map states.

/// One symbol of the map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Symbol {
    /// Address relative to the image base.
    pub rva: u32,
    /// The name as linked (mangled).
    pub name: String,
}

/// The symbols of a map, sorted by RVA.
#[derive(Debug, Default)]
pub struct SymbolMap {
    symbols: Vec<Symbol>,
}

impl SymbolMap {
    /// Parses the text of a map written by `lld-link /MAP` (the MSVC layout).
    pub fn parse(text: &str) -> Result<Self, String> {
        let base = text
            .lines()
            .find_map(|line| line.trim().strip_prefix("Preferred load address is "))
            .ok_or("no `Preferred load address` line: not an lld-link/MSVC map")?;
        let base = u64::from_str_radix(base.trim(), 16).map_err(|e| format!("load address {base:?}: {e}"))?;
        let mut symbols = Vec::new();
        let mut in_symbols = false;
        for line in text.lines() {
            if line.contains("Publics by Value") {
                in_symbols = true;
                continue;
            }
            if !in_symbols {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [place, name, address, ..] = fields.as_slice() else { continue };
            if !is_section_offset(place) {
                continue;
            }
            let Ok(address) = u64::from_str_radix(address, 16) else { continue };
            // Absolute symbols (section 0) and anything below the base have no RVA in the image.
            let Some(rva) = address.checked_sub(base).and_then(|rva| u32::try_from(rva).ok()) else {
                continue;
            };
            if place.starts_with("0000:") {
                continue;
            }
            symbols.push(Symbol { rva, name: (*name).to_owned() });
        }
        if symbols.is_empty() {
            return Err("the map lists no symbols".to_owned());
        }
        symbols.sort_by(|a, b| a.rva.cmp(&b.rva).then_with(|| a.name.cmp(&b.name)));
        Ok(Self { symbols })
    }

    /// The symbol that starts exactly at `rva` (the first by name if several do, e.g. after
    /// identical-code folding).
    pub fn at(&self, rva: u32) -> Option<&Symbol> {
        let first = self.symbols.partition_point(|s| s.rva < rva);
        self.symbols.get(first).filter(|s| s.rva == rva)
    }

    /// Every symbol.
    pub fn symbols(&self) -> &[Symbol] {
        &self.symbols
    }
}

/// `SSSS:OOOOOOOO` in hex.
fn is_section_offset(text: &str) -> bool {
    text.split_once(':').is_some_and(|(section, offset)| {
        section.len() == 4
            && offset.len() == 8
            && section.bytes().chain(offset.bytes()).all(|b| b.is_ascii_hexdigit())
    })
}

/// A readable form of a linked name: demangled without the hash suffix.
pub fn readable(name: &str) -> String {
    format!("{:#}", rustc_demangle::demangle(name))
}

#[cfg(test)]
mod tests {
    use super::{SymbolMap, readable};

    const MAP: &str = " nbshm

 Timestamp is 6b01e2e3 (Sat Nov 21 18:28:51 2026)

 Preferred load address is 0000000180000000

 Start         Length     Name                   Class
 0001:00000000 000000d6H .text                   CODE

  Address         Publics by Value              Rva+Base               Lib:Object

 0000:00000000       ___ImageBase               0000000180000000     <linker-defined>
 0001:00000000       DriverEntry                0000000180001000     nbshm.o
 0002:00000000       _fltused                   0000000180002000     nbshm.o
 0002:000000e8       __imp_NdisFRegisterFilterDriver 00000001800020e8     ndis:ndis.sys

 entry point at         0001:00000000

 Static symbols

 0001:000000c0       _RNvNtCs5OnT7H402Uu_5nbshm6filter13driver_unload 00000001800010c0 f   nbshm.o
";

    #[test]
    fn reads_publics_and_statics_with_rvas() {
        let map = SymbolMap::parse(MAP).unwrap();
        let names: Vec<(u32, &str)> = map.symbols().iter().map(|s| (s.rva, s.name.as_str())).collect();
        assert_eq!(
            names,
            [
                (0x1000, "DriverEntry"),
                (0x10c0, "_RNvNtCs5OnT7H402Uu_5nbshm6filter13driver_unload"),
                (0x2000, "_fltused"),
                (0x20e8, "__imp_NdisFRegisterFilterDriver"),
            ]
        );
        assert_eq!(
            map.at(0x10c0).map(|s| readable(&s.name)).as_deref(),
            Some("nbshm::filter::driver_unload")
        );
        assert!(map.at(0x10c1).is_none());
    }

    #[test]
    fn rejects_other_text() {
        assert!(SymbolMap::parse("hello\n").is_err());
        assert!(SymbolMap::parse(" Preferred load address is 0000000140000000\n").is_err());
    }
}
