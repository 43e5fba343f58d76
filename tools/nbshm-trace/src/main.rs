//! `nbshm-trace`: see the library docs (`nbshm_trace`).
//!
//! ```text
//! nbshm-trace summarize <decoded.xml | events.jsonl> [--json]
//! nbshm-trace render-xml <events.jsonl>      (JSON lines -> event-schema XML, to stdout)
//! ```

use std::process::ExitCode;

const GUID: &str = "aab8608e-524a-5040-b756-a83bade72c1f";

fn usage() -> ExitCode {
    eprintln!(
        "usage: nbshm-trace summarize <decoded.xml|events.jsonl> [--json]\n       nbshm-trace render-xml <events.jsonl>"
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(cmd), Some(path)) = (args.first(), args.get(1)) else { return usage() };
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t.trim_start_matches('\u{feff}').to_owned(),
        Err(e) => {
            eprintln!("nbshm-trace: {path}: {e}");
            return ExitCode::from(2);
        }
    };
    match cmd.as_str() {
        "summarize" => match nbshm_trace::parse(&text) {
            Ok(events) if events.is_empty() => {
                eprintln!("nbshm-trace: {path}: no {} events", nbshm_trace::PROVIDER_NAME);
                ExitCode::from(1)
            }
            Ok(events) => {
                let s = nbshm_trace::summarize(&events);
                if args.iter().any(|a| a == "--json") {
                    println!("{}", nbshm_trace::render_json(&s));
                } else {
                    print!("{}", nbshm_trace::render_text(&s));
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nbshm-trace: {path}: {e}");
                ExitCode::from(2)
            }
        },
        "render-xml" => match nbshm_trace::render_xml(&text, GUID) {
            Ok(xml) => {
                print!("{xml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("nbshm-trace: {path}: {e}");
                ExitCode::from(2)
            }
        },
        _ => usage(),
    }
}
