//! Fuzzes the command layer: a command drawn from the table with arbitrary arguments, run on a
//! real store and through the forwarding port's validation and split (see
//! `command::invariants`): one reply, no panic, a refused command changes nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    command::invariants::check(data);
});
