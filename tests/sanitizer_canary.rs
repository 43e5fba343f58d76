//! Deliberate defects that `tools/sanitizers.sh` runs, one at a time, to prove each sanitizer
//! run is live (it must report them and fail). Ignored in every other run: they are undefined
//! behaviour on purpose.
#![allow(unsafe_code, reason = "deliberate undefined behaviour for the sanitizer canary")]

use std::cell::UnsafeCell;

struct Racy(UnsafeCell<u64>);
// SAFETY: it is not: the canary shares it without synchronization on purpose.
unsafe impl Sync for Racy {}

static RACY: Racy = Racy(UnsafeCell::new(0));

#[test]
#[ignore = "undefined behaviour on purpose: run by tools/sanitizers.sh under AddressSanitizer"]
fn canary_heap_use_after_free() {
    let v = vec![7u8; 16];
    let p = v.as_ptr().wrapping_add(3);
    drop(v);
    // SAFETY: it is not: `p` dangles (the sanitizer must catch this read).
    let x = unsafe { p.read_volatile() };
    assert_eq!(x, 7);
}

#[test]
#[ignore = "undefined behaviour on purpose: run by tools/sanitizers.sh under ThreadSanitizer"]
fn canary_data_race() {
    let bump = || {
        for _ in 0..1000 {
            // SAFETY: it is not: two threads write without synchronization (the sanitizer must
            // catch this).
            unsafe { *RACY.0.get() += 1 };
        }
    };
    let t = std::thread::spawn(bump);
    bump();
    t.join().expect("thread");
}
