#![no_main]
//! cargo-fuzz target: see [`aurigraph_fuzz::json_transfers`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| aurigraph_fuzz::json_transfers(data));
