#![no_main]
//! cargo-fuzz target: see [`aurigraph_fuzz::peer_message`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| aurigraph_fuzz::peer_message(data));
