#![no_main]
//! cargo-fuzz target: see [`aurigraph_fuzz::peer_frame`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| aurigraph_fuzz::peer_frame(data));
