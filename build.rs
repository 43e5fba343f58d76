//! Build script: the WDK configuration runs only for the `wdk` feature on a Windows host.
//!
//! Under `wdk`, `wdk_build::configure_wdk_binary_build` finds the WDK, adds its km library
//! directory to the link search path and emits the WDM driver link arguments and cfgs. ndis.lib
//! lives in that same directory; `src/sys/imports.rs` names it with `#[link]`. Every other build
//! (host tests, the Linux cross-build with `kernel`) needs nothing from here.

#[cfg(all(windows, feature = "wdk"))]
fn main() -> Result<(), wdk_build::ConfigError> {
    println!("cargo::rerun-if-changed=build.rs");
    wdk_build::configure_wdk_binary_build()
}

#[cfg(not(all(windows, feature = "wdk")))]
fn main() {
    println!("cargo::rerun-if-changed=build.rs");
}
