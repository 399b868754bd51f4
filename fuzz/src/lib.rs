//! The decoders of bytes a validator takes from outside, each behind one function that a
//! cargo-fuzz target (`fuzz_targets/`, feature `libfuzzer`) calls with libFuzzer's input, and
//! that `tests/corpora.rs` calls with every input kept in `corpus/` (the fuzzers' corpora,
//! minimised, and any input that once crashed). Each function must return for any input: an
//! error is an answer, a panic or a hang is a defect. What a decoder accepts is also used the
//! way the node uses it, so that a "valid" result that breaks its user counts too.
//!
//! How to run one: `cargo +nightly fuzz run binary_batch --fuzz-dir fuzz --features libfuzzer`
//! (docs/security.md has the runs and their figures).

use aurigraph_api::http::types::{BatchJson, TransferJson};
use aurigraph_beacon::nist::NistCertificate;
use aurigraph_beacon::twine::TwineChain;
use aurigraph_net::transport::{decode_frame, frame_checksum, Frame, Limits, HEADER_BYTES};
use std::sync::OnceLock;

/// The chain id the JSON transfers are checked against (any: the check is the same).
const CHAIN_ID: u32 = 7;
/// Shards a peer frame may address (as a node of 16 shards would allow).
const SHARDS: u32 = 16;

/// A binary batch of transfers, as `POST /api/v11/transactions/batch` takes it; every record
/// of a batch that validates is read (its hash computed, as admission does).
pub fn binary_batch(data: &[u8]) {
    if let Ok(batch) = aurigraph_wire::batch::decode_batch(data) {
        for record in batch.records() {
            std::hint::black_box(record.tx_hash());
        }
    }
}

/// A JSON body of `POST /api/v11/transactions` (one transfer) and of the batch endpoint (many),
/// each transfer turned into a record as the API does.
pub fn json_transfers(data: &[u8]) {
    if let Ok(transfer) = serde_json::from_slice::<TransferJson>(data) {
        let _ = std::hint::black_box(transfer.to_record(CHAIN_ID, None));
    }
    if let Ok(batch) = serde_json::from_slice::<BatchJson>(data) {
        for (i, transfer) in batch.transactions.iter().enumerate() {
            let _ = std::hint::black_box(transfer.to_record(CHAIN_ID, Some(i)));
        }
    }
}

/// A frame of a peer link (handshake or data), as a validator reads it from a peer's socket;
/// the messages of a data frame are walked. The frame's checksum covers everything behind the
/// header, so a mutated frame almost never gets past it: each input is decoded as it is and
/// again with its checksum made right, which reaches the payload's decoders.
pub fn peer_frame(data: &[u8]) {
    let limits = Limits::new(SHARDS);
    walk_frame(data, &limits);
    if let Some(fixed) = with_valid_checksum(data) {
        walk_frame(&fixed, &limits);
    }
}

fn walk_frame(data: &[u8], limits: &Limits) {
    if let Ok(Some((Frame::Data(frame), _))) = decode_frame(data, limits) {
        for message in frame.iter() {
            std::hint::black_box(message);
        }
    }
}

/// `data` with the frame checksum (bytes 12..16: CRC-32C of bytes 0..12 and the payload the
/// header declares) made right; `None` when the bytes are too short to hold that payload.
fn with_valid_checksum(data: &[u8]) -> Option<Vec<u8>> {
    let declared = u32::from_le_bytes(data.get(8..12)?.try_into().ok()?) as usize;
    let payload = data.get(HEADER_BYTES..HEADER_BYTES.checked_add(declared)?)?;
    let crc = frame_checksum(&data[0..12], payload);
    let mut fixed = data.to_vec();
    fixed[12..16].copy_from_slice(&crc.to_le_bytes());
    Some(fixed)
}

/// One message of a peer link's data frame: a raft message or a piece, a forward, receipts.
pub fn peer_message(data: &[u8]) {
    let _ = std::hint::black_box(aurigraph_engine::peering::decode(data));
}

/// A shard's state as a snapshot carries it (from a leader, or reassembled from pieces).
pub fn shard_state(data: &[u8]) {
    let _ = std::hint::black_box(aurigraph_engine::state_snapshot::decode_state(data));
}

/// A record of a write-ahead-log segment, as recovery reads one at each offset.
pub fn wal_record(data: &[u8]) {
    let _ = std::hint::black_box(aurigraph_storage::record::decode(data, 0));
}

/// A randomness beacon's documents: a Twine chain record (CURBy) checked against a pinned
/// chain, a pulse of a known chain, and a NIST pulse against NIST's certificate.
pub fn beacon_pulse(data: &[u8]) {
    let _ = TwineChain::verify(data, aurigraph_beacon::curbyq::BELL_CHAIN_CID);
    let _ = aurigraph_beacon::twine::verify_pulse(known_chain(), data);
    let _ = aurigraph_beacon::nist::verify_pulse(nist_certificate(), data);
}

fn known_chain() -> &'static TwineChain {
    static CHAIN: OnceLock<TwineChain> = OnceLock::new();
    CHAIN.get_or_init(|| {
        let json = include_bytes!("../../beacon/tests/fixtures/beacon/bell_chain.json");
        TwineChain::verify(json, aurigraph_beacon::curbyq::BELL_CHAIN_CID)
            .expect("the fixture's chain verifies")
    })
}

fn nist_certificate() -> &'static NistCertificate {
    static CERTIFICATE: OnceLock<NistCertificate> = OnceLock::new();
    CERTIFICATE.get_or_init(|| {
        let pem = include_bytes!("../../beacon/tests/fixtures/beacon/nist_cert_5501e3d7.pem");
        NistCertificate::from_pem(pem).expect("the fixture's certificate parses")
    })
}

/// A target: its name (its corpus directory is `corpus/NAME`) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 7] = [
    ("binary_batch", binary_batch),
    ("json_transfers", json_transfers),
    ("peer_frame", peer_frame),
    ("peer_message", peer_message),
    ("shard_state", shard_state),
    ("wal_record", wal_record),
    ("beacon_pulse", beacon_pulse),
];
