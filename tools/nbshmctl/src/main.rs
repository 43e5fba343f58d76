//! `nbshmctl`: see the library docs (`nbshmctl`).

#[cfg(windows)]
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut open = |access: u32| -> Result<Box<dyn nbshmctl::Transport>, nbshmctl::Error> {
        Ok(Box::new(nbshmctl::windows::Device::open(access)?))
    };
    let code = nbshmctl::run(&args, &mut open, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::ExitCode::from(code)
}

#[cfg(not(windows))]
fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut open = |_access: u32| -> Result<Box<dyn nbshmctl::Transport>, nbshmctl::Error> {
        Err(nbshmctl::Error::Usage(
            "nbshmctl talks to the nbshm driver's control device and runs on Windows only \
             (its logic is tested on this platform against the driver in the user-mode NDIS model: \
             cargo test -p nbshmctl)"
                .into(),
        ))
    };
    let code = nbshmctl::run(&args, &mut open, &mut std::io::stdout(), &mut std::io::stderr());
    std::process::ExitCode::from(code)
}
