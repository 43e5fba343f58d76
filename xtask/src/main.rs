//! `cargo xtask`: nbshm's build tasks (see docs/cross-build.md).
//!
//! * `cargo xtask sys [--arch x64|arm64]`: builds the kernel image on Linux with Debian's
//!   toolchain and writes the driver package; the last line on stdout is the `.sys` path.
//! * `cargo xtask check-sys [--arch x64|arm64] [PATH]`: checks a built `.sys` (by default the
//!   package's) and exits non-zero if any rule fails.

mod arch;
mod check;
mod checksum;
mod date;
mod defs;
mod inf;
mod mapfile;
mod sys;
mod toolchain;
mod unwind;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use arch::Arch;

const USAGE: &str = "usage:
  cargo xtask sys [--arch x64|arm64] [--install-toolchain]
      cross-build nbshm.sys with Debian's toolchain; prints the .sys path last on stdout
      (--install-toolchain: when the toolchain is missing, install it with apt-get first; root)
  cargo xtask check-sys [--arch x64|arm64] [PATH]
      check a built .sys (default: the package of --arch, x64 if not given)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(code) => code,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (xtask lives in its `xtask/` folder).
fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir).to_path_buf()
}

/// `--arch X` and at most one positional argument.
fn parse_options(args: &[String]) -> Result<(Option<Arch>, Option<PathBuf>), String> {
    let mut arch = None;
    let mut path = None;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        if arg == "--arch" {
            let value = args.next().ok_or("--arch needs a value (x64 or arm64)")?;
            arch = Some(Arch::parse(value)?);
        } else if let Some(value) = arg.strip_prefix("--arch=") {
            arch = Some(Arch::parse(value)?);
        } else if arg.starts_with('-') || path.is_some() {
            return Err(format!("unexpected argument {arg:?}\n{USAGE}"));
        } else {
            path = Some(PathBuf::from(arg));
        }
    }
    Ok((arch, path))
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let root = workspace_root();
    let Some((command, rest)) = args.split_first() else {
        eprintln!("{USAGE}");
        return Ok(ExitCode::FAILURE);
    };
    match command.as_str() {
        "sys" => {
            let install = rest.iter().any(|a| a == "--install-toolchain");
            let rest: Vec<String> = rest.iter().filter(|a| *a != "--install-toolchain").cloned().collect();
            let (arch, path) = parse_options(&rest)?;
            if install && toolchain::require().is_err() {
                toolchain::install()?;
            }
            if path.is_some() {
                return Err(format!("`sys` takes no path\n{USAGE}"));
            }
            let image = sys::build(&root, arch.unwrap_or(Arch::X64))?;
            println!("{}", image.display());
            Ok(ExitCode::SUCCESS)
        }
        "check-sys" => {
            let (arch, path) = parse_options(rest)?;
            let image =
                path.unwrap_or_else(|| sys::package_dir(&root, arch.unwrap_or(Arch::X64)).join("nbshm.sys"));
            sys::check(&root, &image, arch)
        }
        "help" | "-h" | "--help" => {
            println!("{USAGE}");
            Ok(ExitCode::SUCCESS)
        }
        other => Err(format!("unknown command {other:?}\n{USAGE}")),
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::parse_options;
    use crate::arch::Arch;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options() {
        assert_eq!(parse_options(&args(&[])), Ok((None, None)));
        assert_eq!(parse_options(&args(&["--arch", "arm64"])), Ok((Some(Arch::Arm64), None)));
        assert_eq!(
            parse_options(&args(&["--arch=x64", "a.sys"])),
            Ok((Some(Arch::X64), Some(PathBuf::from("a.sys"))))
        );
        assert!(parse_options(&args(&["--arch"])).is_err());
        assert!(parse_options(&args(&["a", "b"])).is_err());
        assert!(parse_options(&args(&["--release"])).is_err());
    }
}
