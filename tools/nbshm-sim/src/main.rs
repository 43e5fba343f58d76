//! `nbshm-sim`: see the library docs (`nbshm_sim`).

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    std::process::ExitCode::from(nbshm_sim::main_with(&args, &nbshm_sim::Output::Stdout))
}
