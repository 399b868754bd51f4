#![no_main]
//! cargo-fuzz target: see [`aurigraph_fuzz::beacon_pulse`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| aurigraph_fuzz::beacon_pulse(data));
