//! `cargo xtask sys` (build and package) and the driver of `cargo xtask check-sys`.
//!
//! Layout under the workspace's `target/cross/` (a target dir of its own: Debian's toolchain
//! must not share artifacts with rustup's):
//! ```text
//! implib/<arch>/{ndis,ntoskrnl,hal,rpcrt4}.lib     import libraries made from src/sys/*.def
//! <triple>/release/nbshm.dll, nbshm.pdb, nbshm.map the link output
//! <triple>/release/nbshm_package/                  nbshm.sys, nbshm.pdb, nbshm.map, nbshm.inf
//! ```

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use crate::arch::Arch;
use crate::check::{self, Facts, Policy};
use crate::date::Date;
use crate::mapfile::SymbolMap;
use crate::toolchain::{self, Toolchain};
use crate::{checksum, defs, inf};

/// The package folder of `arch`, as the WDK flow names it (`<crate>_package`).
pub fn package_dir(root: &Path, arch: Arch) -> PathBuf {
    cross_dir(root).join(arch.triple()).join("release").join("nbshm_package")
}

fn cross_dir(root: &Path) -> PathBuf {
    root.join("target").join("cross")
}

/// Linker and code-generation flags of the kernel image. rustc adds `/DLL`, `/DEF` (the
/// `DriverEntry` export), `/IMPLIB`, `/NOLOGO` and, for this profile, `/DEBUG` and `/OPT:REF,ICF`;
/// the ones given here make it a driver:
fn rustflags(tools: &Toolchain, libdir: &Path, map: &Path) -> Vec<OsString> {
    let mut flags: Vec<OsString> = Vec::new();
    let mut flag = |text: &str| flags.push(text.into());
    flag("-C");
    flag(&format!("linker={}", tools.lld_link.display()));
    // The profile already says so; repeated so that a profile change cannot turn on unwinding.
    flag("-C");
    flag("panic=abort");
    flag("-L");
    flag(&format!("native={}", libdir.display()));
    for arg in [
        // A kernel-mode driver image (IMAGE_SUBSYSTEM_NATIVE), entered at DriverEntry.
        "/SUBSYSTEM:NATIVE",
        "/DRIVER",
        "/ENTRY:DriverEntry",
        // No CRT or other default library: every symbol comes from our objects or the three
        // import libraries, and an unexpected dependency is a link error.
        "/NODEFAULTLIB",
        // HVCI/kCFG-era loader expectations: relocatable, non-executable data.
        "/NXCOMPAT",
        "/DYNAMICBASE",
        // The PDB for debugging, unreferenced code dropped and identical code folded.
        "/DEBUG",
        "/OPT:REF,ICF",
    ] {
        flag("-C");
        flag(&format!("link-arg={arg}"));
    }
    // The map names the functions the frame check reports.
    flags.push("-C".into());
    flags.push(format!("link-arg=/MAP:{}", map.display()).into());
    flags
}

/// Runs a command with its output on stderr (stdout is kept for the `.sys` path).
fn run(command: &mut Command) -> Result<(), String> {
    eprintln!("+ {command:?}");
    let status = command
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("{}: {e}", command.get_program().display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{} failed: {status}", command.get_program().display()))
    }
}

/// The crate version, from `cargo metadata`.
fn crate_version(root: &Path) -> Result<String, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(root.join("Cargo.toml"))
        .output()
        .map_err(|e| format!("cargo metadata: {e}"))?;
    if !output.status.success() {
        return Err(format!("cargo metadata failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    let metadata: serde_json::Value =
        serde_json::from_slice(&output.stdout).map_err(|e| format!("cargo metadata output: {e}"))?;
    metadata["packages"]
        .as_array()
        .and_then(|packages| packages.iter().find(|p| p["name"] == "nbshm"))
        .and_then(|package| package["version"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| "cargo metadata lists no nbshm package version".to_owned())
}

fn io<T>(what: &Path, result: std::io::Result<T>) -> Result<T, String> {
    result.map_err(|e| format!("{}: {e}", what.display()))
}

/// Builds, links and packages `nbshm.sys` for `arch`; returns the absolute path of the `.sys`.
pub fn build(root: &Path, arch: Arch) -> Result<PathBuf, String> {
    let tools = toolchain::require()?;
    let cross = cross_dir(root);

    // 1. Import libraries from the .def lists.
    let libdir = cross.join("implib").join(arch.name());
    io(&libdir, fs::create_dir_all(&libdir))?;
    for def in defs::def_paths(&root.join("src").join("sys"))? {
        let stem = def.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let lib = libdir.join(format!("{stem}.lib"));
        run(Command::new(&tools.dlltool)
            .args(["-m", arch.dlltool_machine(), "-d"])
            .arg(&def)
            .arg("-l")
            .arg(&lib))?;
    }

    // 2. Compile (core, alloc and compiler_builtins from Debian's source) and link.
    let release = cross.join(arch.triple()).join("release");
    let map = release.join("nbshm.map");
    let flags = rustflags(&tools, &libdir, &map);
    let mut cargo = Command::new(&tools.cargo);
    cargo
        .current_dir(root)
        .args(["build", "--release", "--locked", "--package", "nbshm", "--lib"])
        .args(["--no-default-features", "--features", "kernel", "--target", arch.triple()])
        .args(["-Zbuild-std=core,alloc,compiler_builtins", "-Zbuild-std-features=compiler-builtins-mem"])
        .arg("--target-dir")
        .arg(&cross)
        .env("RUSTC", &tools.rustc)
        .env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", flags.join(&OsString::from("\u{1f}")));
    // Settings of the calling environment that would change or break this build.
    for variable in [
        "RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "RUSTUP_TOOLCHAIN",
    ] {
        cargo.env_remove(variable);
    }
    run(&mut cargo)?;

    // 3. The package: the image (renamed, checksum set), its PDB and map, the stamped INF.
    let package = package_dir(root, arch);
    if package.exists() {
        io(&package, fs::remove_dir_all(&package))?;
    }
    io(&package, fs::create_dir_all(&package))?;
    let dll = release.join("nbshm.dll");
    let mut image = io(&dll, fs::read(&dll))?;
    let pe_pointer = goblin::pe::PE::parse(&image)
        .map_err(|e| format!("{}: {e}", dll.display()))?
        .header
        .dos_header
        .pe_pointer;
    let sum = checksum::write(&mut image, checksum::field_offset(pe_pointer))?;
    let sys = package.join("nbshm.sys");
    io(&sys, fs::write(&sys, &image))?;
    for name in ["nbshm.pdb", "nbshm.map"] {
        let from = release.join(name);
        io(&from, fs::copy(&from, package.join(name)))?;
    }
    let template_path = root.join("inf").join("nbshm.inx");
    let template = io(&template_path, fs::read_to_string(&template_path))?;
    let version = inf::driver_version(&crate_version(root)?)?;
    let stamped = inf::stamp(&template, Date::today()?, &version, arch)?;
    let inf_path = package.join("nbshm.inf");
    io(&inf_path, fs::write(&inf_path, stamped))?;

    let sys = io(&sys, fs::canonicalize(&sys))?;
    eprintln!("packaged {arch} driver {version} (checksum {sum:#010x}) in {}", package.display());
    Ok(sys)
}

/// Checks one image; the exit code says whether every rule holds.
pub fn check(root: &Path, image: &Path, arch: Option<Arch>) -> Result<ExitCode, String> {
    let bytes = io(image, fs::read(image))?;
    let facts = Facts::read(&bytes).map_err(|e| format!("{}: {e}", image.display()))?;
    let map_path = image.with_extension("map");
    let map = if map_path.is_file() {
        let text = io(&map_path, fs::read_to_string(&map_path))?;
        Some(SymbolMap::parse(&text).map_err(|e| format!("{}: {e}", map_path.display()))?)
    } else {
        None
    };
    let policy = Policy {
        arch,
        import_lists: defs::import_lists(&root.join("src").join("sys"))?,
        frame_limit: check::FRAME_LIMIT,
    };
    let shown = fs::canonicalize(image).unwrap_or_else(|_| image.to_path_buf());
    println!("check-sys: {}", shown.display());
    match &map {
        Some(_) => println!("map: {}", map_path.display()),
        None => println!("map: none ({} not found)", map_path.display()),
    }
    print!("{}", check::inventory(&facts, map.as_ref()));
    let outcomes = check::evaluate(&facts, &policy, map.as_ref());
    for outcome in &outcomes {
        println!("{} {}: {}", if outcome.passed { "PASS" } else { "FAIL" }, outcome.rule, outcome.detail);
    }
    let failed = outcomes.iter().filter(|o| !o.passed).count();
    if failed == 0 {
        println!("check-sys: all {} rules hold", outcomes.len());
        Ok(ExitCode::SUCCESS)
    } else {
        println!("check-sys: {failed} of {} rules fail", outcomes.len());
        Ok(ExitCode::FAILURE)
    }
}
