//! Compiles c/walk.c with the platform C compiler at -O2.

fn main() {
    println!("cargo::rerun-if-changed=c/walk.c");
    cc::Build::new().file("c/walk.c").opt_level(2).warnings(true).compile("nbshm_cwalk");
}
