#![no_main]
//! cargo-fuzz target: see [`aurigraph_fuzz::binary_batch`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| aurigraph_fuzz::binary_batch(data));
