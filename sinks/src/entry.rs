//! What every sink writes: a shard's applied entries as rows (transfers with their results, the
//! balances they changed), and the chain check that finds entries lost on the way (a gap).

use aurigraph_engine::replica::{AccountBalance, AppliedEntry, BOOTSTRAP_INDEX};
use aurigraph_wire::batch::decode_batch;
use std::collections::HashMap;

/// One committed transfer as the sinks store it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArchivedTransfer {
    pub tx_hash: [u8; 32],
    pub from: [u8; 32],
    pub to: [u8; 32],
    pub asset: u32,
    pub amount: u64,
    pub nonce: u64,
    /// The contract's result code name (`OK`, `INSUFFICIENT_FUNDS`, ...).
    pub result: &'static str,
}

/// The rows of one applied log entry: it covers log indexes `previous + 1 ..= index` (see
/// `AppliedEntry`), holds its transfers in the entry's order and the balances it changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryBatch {
    pub index: u64,
    pub previous: u64,
    pub transfers: Vec<ArchivedTransfer>,
    pub balances: Vec<AccountBalance>,
}

impl EntryBatch {
    /// An entry with transfers only, following the one before it (`index - 1`).
    pub fn transfers(index: u64, transfers: Vec<ArchivedTransfer>) -> EntryBatch {
        EntryBatch {
            index,
            previous: index.saturating_sub(1),
            transfers,
            balances: Vec::new(),
        }
    }

    /// A shard's applied entry as rows (decoding its batch, hashing each transfer: done on the
    /// sink's thread, never on an executor).
    pub fn of_applied(entry: &AppliedEntry) -> EntryBatch {
        let transfers = if entry.data.is_empty() {
            Vec::new()
        } else {
            let records = decode_batch(&entry.data)
                .expect("an applied entry is a valid batch")
                .records();
            records
                .iter()
                .zip(&entry.results)
                .map(|(r, result)| ArchivedTransfer {
                    tx_hash: r.tx_hash().0,
                    from: r.from().0,
                    to: r.to().0,
                    asset: r.asset(),
                    amount: r.amount(),
                    nonce: r.nonce(),
                    result: result.as_str(),
                })
                .collect()
        };
        EntryBatch {
            index: entry.index,
            previous: entry.previous,
            transfers,
            balances: entry.balances.clone(),
        }
    }

    /// What the entry counts for in a sink's bounds: its rows, at least 1 (an entry with none
    /// still moves its shard's cursor, so it must be written too).
    pub fn weight(&self) -> usize {
        (self.transfers.len() + self.balances.len()).max(1)
    }
}

/// Log indexes of a shard that a sink never received: `after + 1 ..= up_to`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    pub shard: u32,
    pub after: u64,
    pub up_to: u64,
}

impl Gap {
    pub fn entries(&self) -> u64 {
        self.up_to - self.after
    }
}

impl std::fmt::Display for Gap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {} missed log indexes {}..={}",
            self.shard,
            self.after + 1,
            self.up_to
        )
    }
}

/// The entries past a shard's `cursor` (the last index a sink wrote), and the gaps in their
/// chain: where an entry's `previous` is beyond what came before it. Entries must be in
/// increasing log order. An empty store (cursor 0) misses nothing up to the shard's founding
/// snapshot (`BOOTSTRAP_INDEX`: genesis, no transfers).
pub fn fresh_after(
    shard: u32,
    cursor: u64,
    entries: &[EntryBatch],
) -> (Vec<&EntryBatch>, Vec<Gap>) {
    let mut at = cursor.max(BOOTSTRAP_INDEX);
    let mut fresh = Vec::new();
    let mut gaps = Vec::new();
    for entry in entries.iter().filter(|e| e.index > cursor) {
        if entry.previous > at {
            gaps.push(Gap {
                shard,
                after: at,
                up_to: entry.previous,
            });
        }
        at = entry.index;
        fresh.push(entry);
    }
    (fresh, gaps)
}

/// The latest balance of each (account, asset) the entries changed, with the log index of the
/// entry that set it, in first-change order.
pub fn latest_balances<'a>(
    entries: impl IntoIterator<Item = &'a EntryBatch>,
) -> Vec<(AccountBalance, u64)> {
    let mut at: HashMap<([u8; 32], u32), usize> = HashMap::new();
    let mut latest: Vec<(AccountBalance, u64)> = Vec::new();
    for entry in entries {
        for b in &entry.balances {
            match at.entry((b.address.0, b.asset)) {
                std::collections::hash_map::Entry::Occupied(i) => {
                    latest[*i.get()] = (*b, entry.index)
                }
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(latest.len());
                    latest.push((*b, entry.index));
                }
            }
        }
    }
    latest
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurigraph_engine::Address;

    fn entry(index: u64, previous: u64) -> EntryBatch {
        EntryBatch {
            index,
            previous,
            transfers: Vec::new(),
            balances: Vec::new(),
        }
    }

    #[test]
    fn entries_at_or_below_the_cursor_are_skipped_and_a_broken_chain_is_a_gap() {
        let entries = [entry(3, 2), entry(5, 3), entry(9, 7), entry(10, 9)];
        let (fresh, gaps) = fresh_after(1, 3, &entries);
        assert_eq!(
            fresh.iter().map(|e| e.index).collect::<Vec<_>>(),
            [5, 9, 10]
        );
        // 6 and 7 never arrived (8..=9 are covered by entry 9's chain).
        assert_eq!(
            gaps,
            [Gap {
                shard: 1,
                after: 5,
                up_to: 7
            }]
        );
        assert_eq!(gaps[0].entries(), 2);
        assert_eq!(gaps[0].to_string(), "shard 1 missed log indexes 6..=7");
        // The cursor behind the first entry's chain: what lies between is missed too, except
        // the founding snapshot of an empty store.
        let (_, gaps) = fresh_after(0, 0, &[entry(12, 10)]);
        assert_eq!(gaps.len(), 1);
        assert_eq!((gaps[0].after, gaps[0].up_to), (1, 10));
        assert!(fresh_after(0, 0, &[entry(5, 1)]).1.is_empty());
        // Resent entries overlapping the cursor are no gap.
        assert!(fresh_after(0, 9, &entries).1.is_empty());
    }

    #[test]
    fn the_latest_balance_of_each_account_and_asset_wins() {
        let b = |a: u8, asset: u32, balance: u64| AccountBalance {
            address: Address([a; 32]),
            asset,
            balance,
        };
        let mut first = entry(1, 0);
        first.balances = vec![b(1, 0, 10), b(2, 0, 5), b(1, 7, 3)];
        let mut second = entry(2, 1);
        second.balances = vec![b(1, 0, 8), b(3, 0, 1)];
        assert_eq!(
            latest_balances([&first, &second]),
            [
                (b(1, 0, 8), 2),
                (b(2, 0, 5), 1),
                (b(1, 7, 3), 1),
                (b(3, 0, 1), 2)
            ]
        );
    }
}
