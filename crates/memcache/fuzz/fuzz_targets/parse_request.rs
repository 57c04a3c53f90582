//! Fuzzes the memcached text request parser: no panics, limits respected, split-invariance,
//! and canonical re-encoding round trips (see `memcache::invariants`).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first byte picks where to split the rest, so the fuzzer explores read boundaries.
    if let Some((&split, rest)) = data.split_first() {
        memcache::invariants::check(rest, usize::from(split) * rest.len() / 255);
    }
});
