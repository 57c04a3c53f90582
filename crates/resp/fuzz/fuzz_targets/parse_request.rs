//! Fuzzes the RESP request parser: no panics, split-invariance, and re-encoding round trips
//! (see `resp::invariants`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where to split the rest, so the fuzzer explores read boundaries.
    if let Some((&split, rest)) = data.split_first() {
        resp::invariants::check(rest, usize::from(split) * rest.len() / 255);
    }
});
