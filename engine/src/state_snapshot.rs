//! A shard's state as an rkyv archive: what snapshots store and what catch-up ships.
//!
//! Accounts are written in address order, so the same state always archives to the same bytes.
//! Loading validates the archive with rkyv's checked access before a single field is trusted.

use crate::ledger::{Account, Receipt, ShardState};
use crate::record::Address;
use crate::shard::SHARDS_MAX;
use rkyv::{Archive, Serialize};
use std::collections::VecDeque;

#[derive(Archive, Serialize)]
struct StateArchive {
    format_version: u32,
    shard: u32,
    shard_count: u32,
    chain_id: u32,
    applied_index: u64,
    assets: Vec<u32>,
    accounts: Vec<AccountArchive>,
    inbound_watermark: Vec<u64>,
    outbox: Vec<Vec<ReceiptArchive>>,
    block_hash: [u8; 32],
}

#[derive(Archive, Serialize)]
struct AccountArchive {
    address: [u8; 32],
    nonce_high: u64,
    nonce_window: u64,
    native: u64,
    others: Vec<(u32, u64)>,
}

#[derive(Archive, Serialize)]
struct ReceiptArchive {
    source_index: u64,
    to: [u8; 32],
    asset: u32,
    amount: u64,
}

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateSnapshotError {
    #[error("state archive failed validation: {0}")]
    Archive(String),
    #[error("state archive is invalid: {0}")]
    Invalid(String),
}

/// Archives the shard's state.
pub fn encode_state(state: &ShardState) -> Vec<u8> {
    let accounts = state
        .accounts_sorted()
        .into_iter()
        .map(|(address, a)| AccountArchive {
            address: address.0,
            nonce_high: a.nonce_high,
            nonce_window: a.nonce_window,
            native: a.native,
            others: a.others.as_deref().cloned().unwrap_or_default(),
        })
        .collect();
    let archive = StateArchive {
        format_version: FORMAT_VERSION,
        shard: state.shard(),
        shard_count: state.shard_count(),
        chain_id: state.chain_id(),
        applied_index: state.applied_index(),
        assets: state.assets().to_vec(),
        accounts,
        inbound_watermark: (0..state.shard_count())
            .map(|s| state.inbound_watermark(s))
            .collect(),
        outbox: (0..state.shard_count())
            .map(|d| {
                state
                    .outbox(d)
                    .iter()
                    .map(|r| ReceiptArchive {
                        source_index: r.source_index,
                        to: r.to.0,
                        asset: r.asset,
                        amount: r.amount,
                    })
                    .collect()
            })
            .collect(),
        block_hash: state.block_hash(),
    };
    rkyv::to_bytes::<rkyv::rancor::Error>(&archive)
        .expect("archiving to memory cannot fail")
        .into_vec()
}

/// Validates and loads an archived shard state.
pub fn decode_state(bytes: &[u8]) -> Result<ShardState, StateSnapshotError> {
    let a = rkyv::access::<ArchivedStateArchive, rkyv::rancor::Error>(bytes)
        .map_err(|e| StateSnapshotError::Archive(e.to_string()))?;
    let invalid = |m: String| Err(StateSnapshotError::Invalid(m));
    if a.format_version.to_native() != FORMAT_VERSION {
        return invalid(format!(
            "format version {} (expected {FORMAT_VERSION})",
            a.format_version.to_native()
        ));
    }
    let shard_count = a.shard_count.to_native();
    let shard = a.shard.to_native();
    if shard_count == 0 || shard_count > SHARDS_MAX || shard >= shard_count {
        return invalid(format!("shard {shard} of {shard_count}"));
    }
    if a.inbound_watermark.len() != shard_count as usize || a.outbox.len() != shard_count as usize {
        return invalid("per-shard tables do not match the shard count".into());
    }
    let assets: Vec<u32> = a.assets.iter().map(|x| x.to_native()).collect();
    if assets.is_empty() || !assets.windows(2).all(|w| w[0] < w[1]) {
        return invalid("asset list must be non-empty and sorted".into());
    }
    let accounts = a.accounts.iter().map(|acc| {
        let others: Vec<(u32, u64)> = acc
            .others
            .iter()
            .map(|e| (e.0.to_native(), e.1.to_native()))
            .collect();
        (
            Address(acc.address),
            Account {
                nonce_high: acc.nonce_high.to_native(),
                nonce_window: acc.nonce_window.to_native(),
                native: acc.native.to_native(),
                others: (!others.is_empty()).then(|| Box::new(others)),
            },
        )
    });
    let outbox: Vec<VecDeque<Receipt>> = a
        .outbox
        .iter()
        .map(|q| {
            q.iter()
                .map(|r| Receipt {
                    source_index: r.source_index.to_native(),
                    to: Address(r.to),
                    asset: r.asset.to_native(),
                    amount: r.amount.to_native(),
                })
                .collect()
        })
        .collect();
    Ok(ShardState::from_parts(
        shard,
        shard_count,
        a.chain_id.to_native(),
        assets,
        a.applied_index.to_native(),
        accounts,
        a.inbound_watermark.iter().map(|w| w.to_native()).collect(),
        outbox,
        a.block_hash,
    ))
}
