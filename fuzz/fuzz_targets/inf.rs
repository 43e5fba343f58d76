//! The INF parser on arbitrary text: parsing and every lookup must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nbshm::host::inf::Inf;

fuzz_target!(|text: &str| {
    if let Ok(inf) = Inf::parse(text) {
        for section in &inf.sections {
            for line in &section.lines {
                for v in &line.values {
                    let _ = inf.expand(v, line.line_no);
                }
                if let Some(k) = &line.key {
                    let _ = inf.values(&section.name, k);
                }
            }
        }
        let _ = Inf::parse_int(text);
    }
});
