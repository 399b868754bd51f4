#![no_main]
//! cargo-fuzz target: see [`aurigraph_fuzz::wal_record`].

libfuzzer_sys::fuzz_target!(|data: &[u8]| aurigraph_fuzz::wal_record(data));
