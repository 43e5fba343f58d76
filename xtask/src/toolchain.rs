//! The Debian toolchain the cross-build uses, and the message that says how to get it.
//!
//! rustup's toolchain has no Windows targets and no `rust-src` on these machines (rustup cannot
//! download them), so the kernel image is built with Debian's rustc/cargo (`rustc-web`,
//! `cargo-web`), whose standard-library source (`rust-web-src`) `-Zbuild-std` compiles for the
//! Windows targets, linked by LLVM's `lld-link` against import libraries made by `llvm-dlltool`.

use std::env;
use std::path::{Path, PathBuf};

/// The one command that installs everything [`require`] looks for (as root, Debian 12).
pub const INSTALL_COMMAND: &str =
    "apt-get update && apt-get install -y rustc-web cargo-web rust-web-src lld llvm";

/// Debian's rustc (rustup's proxy comes first on PATH, so it is called by full path).
const RUSTC: &str = "/usr/bin/rustc";
/// Debian's cargo.
const CARGO: &str = "/usr/bin/cargo";
/// Debian's standard-library source, which `-Zbuild-std` compiles.
const LIBRARY_SOURCE: &str = "/usr/lib/rustlib/src/rust/library";

/// Paths of the tools the cross-build runs.
#[derive(Debug)]
pub struct Toolchain {
    /// Debian's rustc.
    pub rustc: PathBuf,
    /// Debian's cargo.
    pub cargo: PathBuf,
    /// LLVM's MSVC-compatible linker.
    pub lld_link: PathBuf,
    /// LLVM's import-library generator.
    pub dlltool: PathBuf,
}

/// Finds the toolchain, or explains what is missing and how to install it.
pub fn require() -> Result<Toolchain, String> {
    let mut missing = Vec::new();
    let mut file = |path: &str| {
        let path = PathBuf::from(path);
        if !path.is_file() {
            missing.push(path.display().to_string());
        }
        path
    };
    let rustc = file(RUSTC);
    let cargo = file(CARGO);
    if !Path::new(LIBRARY_SOURCE).join("core/src/lib.rs").is_file() {
        missing.push(format!("{LIBRARY_SOURCE} (standard-library source)"));
    }
    let mut tool = |name: &str| {
        find_in_path(name).unwrap_or_else(|| {
            missing.push(format!("{name} (on PATH)"));
            PathBuf::from(name)
        })
    };
    let lld_link = tool("lld-link");
    let dlltool = tool("llvm-dlltool");
    if missing.is_empty() {
        Ok(Toolchain { rustc, cargo, lld_link, dlltool })
    } else {
        Err(format!(
            "the Debian toolchain for the cross-build is not complete; missing:\n  {}\n\
             install it (as root) with:\n  {INSTALL_COMMAND}",
            missing.join("\n  ")
        ))
    }
}

/// Installs the toolchain with apt-get (as root), for `cargo xtask sys --install-toolchain`.
pub fn install() -> Result<(), String> {
    eprintln!("installing the Debian toolchain: {INSTALL_COMMAND}");
    let status = std::process::Command::new("sh")
        .args(["-c", INSTALL_COMMAND])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .status()
        .map_err(|e| format!("could not run apt-get: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{INSTALL_COMMAND}` failed ({status}); it needs root on Debian 12 with its repositories"
        ))
    }
}

/// The first `name` on PATH that is a file.
fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}
