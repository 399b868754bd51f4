#![no_main]
//! cargo-fuzz target: see [`aurigraph_fuzz::shard_state`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| aurigraph_fuzz::shard_state(data));
