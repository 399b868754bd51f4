//! The log entry format (see the module documentation of `replica`).

use crate::shard::ShardId;

pub const ENTRY_CONTEXT_BYTES: usize = 17;
pub const ENTRY_KIND_TRANSFERS: u8 = 1;
pub const ENTRY_KIND_MARKERS: u8 = 2;

pub fn entry_context(kind: u8, proposer: u64, proposal: u64) -> [u8; ENTRY_CONTEXT_BYTES] {
    let mut context = [0u8; ENTRY_CONTEXT_BYTES];
    context[0] = kind;
    context[1..9].copy_from_slice(&proposer.to_le_bytes());
    context[9..17].copy_from_slice(&proposal.to_le_bytes());
    context
}

/// (kind, proposer, proposal); kind 0 when the context is not ours.
pub fn parse_context(context: &[u8]) -> (u8, u64, u64) {
    if context.len() != ENTRY_CONTEXT_BYTES {
        return (0, 0, 0);
    }
    (
        context[0],
        u64::from_le_bytes(context[1..9].try_into().unwrap()),
        u64::from_le_bytes(context[9..17].try_into().unwrap()),
    )
}

/// Parses a markers payload; `None` when malformed.
pub fn parse_markers(data: &[u8]) -> Option<Vec<(ShardId, u64)>> {
    let count = u32::from_le_bytes(data.get(..4)?.try_into().ok()?) as usize;
    if data.len() != 4 + count * 12 {
        return None;
    }
    Some(
        data[4..]
            .chunks_exact(12)
            .map(|c| {
                (
                    u32::from_le_bytes(c[..4].try_into().unwrap()),
                    u64::from_le_bytes(c[4..].try_into().unwrap()),
                )
            })
            .collect(),
    )
}
