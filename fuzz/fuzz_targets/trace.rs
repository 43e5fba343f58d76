//! The trace summarizer on arbitrary input (it reads files decoded on another machine): parsing,
//! summarizing and rendering must return, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(events) = nbshm_trace::parse(text) {
        let s = nbshm_trace::summarize(&events);
        let _ = nbshm_trace::render_text(&s);
        let _ = nbshm_trace::render_json(&s);
    }
    let _ = nbshm_trace::render_xml(text, "00000000-0000-0000-0000-000000000000");
});
