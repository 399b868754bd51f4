//! The benchmark's workload: deterministic accounts, their genesis, which transfers exist, and
//! the pre-signed binary batches.

use aurigraph_wire::batch::BatchBuilder;
use aurigraph_wire::record::{address_of, Address, Transfer};
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use indicatif::ProgressBar;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Chain id of the benchmark's genesis (default of `--chain-id`).
pub const BENCH_CHAIN_ID: u32 = 7;
/// Genesis balance of every benchmark account, asset 0. 10,000,000 accounts (the genesis limit)
/// times this stays below `u64::MAX`.
pub const BENCH_BALANCE: u64 = 1_000_000_000_000;
/// First 16 bytes of every benchmark seed.
pub const BENCH_KEY_TAG: [u8; 16] = *b"aurigraph-bench\0";
/// Nonces a sender may run ahead of its oldest in-flight transfer before the node's anti-replay
/// window (64 below the highest nonce seen) rejects the older one as `NONCE_TOO_OLD`.
pub const NONCE_WINDOW: usize = 64;

/// The key of benchmark account `index`: Ed25519 seed = `BENCH_KEY_TAG` ‖ `seed` (u64 LE) ‖
/// `index` (u64 LE). Public and reproducible on purpose: these keys only hold benchmark funds.
pub fn bench_key(seed: u64, index: u64) -> SigningKey {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&BENCH_KEY_TAG);
    bytes[16..24].copy_from_slice(&seed.to_le_bytes());
    bytes[24..].copy_from_slice(&index.to_le_bytes());
    SigningKey::from_bytes(&bytes)
}

/// The keys of accounts `0..accounts`, derived on `threads` threads.
pub fn bench_keys(seed: u64, accounts: usize, threads: usize) -> Vec<SigningKey> {
    let threads = threads.clamp(1, accounts.max(1));
    let chunk = accounts.div_ceil(threads);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                scope.spawn(move || {
                    let start = (t * chunk).min(accounts);
                    let end = ((t + 1) * chunk).min(accounts);
                    (start..end)
                        .map(|i| bench_key(seed, i as u64))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("key thread"))
            .collect()
    })
}

/// The gateway that controls every benchmark account in a `--gateway` run.
pub const BENCH_GATEWAY: &str = "bench";

/// The benchmark genesis as JSON (the contract's shape; `shards` only when given). With
/// `gateway`, every account is custodial: [`BENCH_GATEWAY`] controls it.
pub fn genesis_json(
    addresses: &[Address],
    chain_id: u32,
    shards: Option<u32>,
    gateway: bool,
) -> String {
    let allocations: Vec<serde_json::Value> = addresses
        .iter()
        .map(|a| {
            let mut allocation = serde_json::json!({"address": a.to_hex(), "asset": 0, "amount": BENCH_BALANCE.to_string()});
            if gateway {
                allocation["controller"] = format!("gateway:{BENCH_GATEWAY}").into();
            }
            allocation
        })
        .collect();
    let mut genesis = serde_json::json!({"chainId": chain_id});
    if let Some(shards) = shards {
        genesis["shards"] = serde_json::json!(shards);
    }
    genesis["allocations"] = serde_json::Value::Array(allocations);
    let mut text = serde_json::to_string_pretty(&genesis).expect("JSON prints");
    text.push('\n');
    text
}

/// Which transfers exist: transfer `k` is sent by account `k % accounts` with that sender's
/// `k / accounts + 1`-th nonce (above its base) to a pseudo-random other account.
///
/// With `lanes` (a steered run), the senders are grouped by where their transfers go: batch `b`
/// belongs to lane `b % L` and holds only that lane's senders, taken in turn (the lane's `m`-th
/// transfer is sent by its `m % n`-th account with that account's `m / n + 1`-th nonce). The
/// receivers are the same either way.
#[derive(Debug, Clone)]
pub struct Plan {
    pub transfers: usize,
    pub accounts: usize,
    pub batch_size: usize,
    pub seed: u64,
    pub lanes: Option<Arc<Lanes>>,
}

/// The accounts of each lane of a steered plan (a lane: the transfers sent to one core of one
/// node).
#[derive(Debug)]
pub struct Lanes {
    /// The accounts of each lane, ascending; no lane is empty.
    accounts: Vec<Vec<usize>>,
    /// Each account's lane and its position there.
    position: Vec<(u32, u32)>,
}

impl Lanes {
    /// Lanes of the accounts whose `key_of_account[a]` is the same (e.g. the route their
    /// shard is served by). Returns the lanes and the key of each lane, ascending.
    pub fn group(key_of_account: &[usize]) -> (Lanes, Vec<usize>) {
        let mut keys: Vec<usize> = key_of_account.to_vec();
        keys.sort_unstable();
        keys.dedup();
        let mut accounts = vec![Vec::new(); keys.len()];
        let mut position = Vec::with_capacity(key_of_account.len());
        for (a, key) in key_of_account.iter().enumerate() {
            let lane = keys.binary_search(key).expect("a key of the list");
            position.push((lane as u32, accounts[lane].len() as u32));
            accounts[lane].push(a);
        }
        (Lanes { accounts, position }, keys)
    }

    /// The number of lanes (at least 1 when there is an account).
    pub fn len(&self) -> usize {
        self.accounts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }
}

impl Plan {
    /// A plan without lanes.
    pub fn new(transfers: usize, accounts: usize, batch_size: usize, seed: u64) -> Plan {
        Plan {
            transfers,
            accounts,
            batch_size,
            seed,
            lanes: None,
        }
    }

    pub fn batches(&self) -> usize {
        self.transfers.div_ceil(self.batch_size)
    }

    /// Transfers `[start, end)` of batch `b`.
    pub fn batch_range(&self, b: usize) -> std::ops::Range<usize> {
        let start = b * self.batch_size;
        start..(start + self.batch_size).min(self.transfers)
    }

    /// The lane of batch `b` (0 without lanes).
    pub fn lane_of_batch(&self, b: usize) -> usize {
        self.lanes.as_ref().map_or(0, |l| b % l.len())
    }

    /// Transfer `k`'s lane and its index among that lane's transfers.
    fn in_lane(&self, lanes: &Lanes, k: usize) -> (usize, usize) {
        let (b, j) = (k / self.batch_size, k % self.batch_size);
        (b % lanes.len(), b / lanes.len() * self.batch_size + j)
    }

    pub fn sender(&self, k: usize) -> usize {
        match &self.lanes {
            None => k % self.accounts,
            Some(lanes) => {
                let (lane, m) = self.in_lane(lanes, k);
                let accounts = &lanes.accounts[lane];
                accounts[m % accounts.len()]
            }
        }
    }

    /// Nonce offset of transfer `k` above its sender's base (1 for the sender's first).
    pub fn nonce_offset(&self, k: usize) -> u64 {
        let (m, n) = match &self.lanes {
            None => (k, self.accounts),
            Some(lanes) => {
                let (lane, m) = self.in_lane(lanes, k);
                (m, lanes.accounts[lane].len())
            }
        };
        (m / n) as u64 + 1
    }

    /// A receiver other than the sender, chosen by a hash of (seed, k).
    pub fn receiver(&self, k: usize) -> usize {
        let sender = self.sender(k);
        let h = splitmix64(self.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        (sender + 1 + (h % (self.accounts as u64 - 1)) as usize) % self.accounts
    }

    /// Transfers sent by account `a`.
    pub fn sends_of(&self, a: usize) -> u64 {
        let (sent, n, i) = match &self.lanes {
            None => (self.transfers, self.accounts, a),
            Some(lanes) => {
                let (lane, i) = lanes.position[a];
                let n = lanes.accounts[lane as usize].len();
                (self.lane_transfers(lanes, lane as usize), n, i as usize)
            }
        };
        (sent / n + usize::from(i < sent % n)) as u64
    }

    /// Transfers of `lane`: its batches are `lane, lane + L, ...`; only the plan's last batch
    /// may be short.
    fn lane_transfers(&self, lanes: &Lanes, lane: usize) -> usize {
        let batches = self.batches();
        let of_lane = batches / lanes.len() + usize::from(lane < batches % lanes.len());
        let mut sent = of_lane * self.batch_size;
        if batches > 0 && (batches - 1) % lanes.len() == lane {
            sent -= self.batch_size - self.batch_range(batches - 1).len();
        }
        sent
    }

    /// How far (in nonces) one sender's in-flight transfers may spread with `in_flight` batches
    /// outstanding; above [`NONCE_WINDOW`], late arrivals may be rejected as `NONCE_TOO_OLD`.
    /// Lanes share the batches in flight; the smallest lane spreads most.
    pub fn nonce_spread(&self, in_flight: usize) -> usize {
        match &self.lanes {
            None => (in_flight * self.batch_size).div_ceil(self.accounts),
            Some(lanes) => {
                let smallest = lanes.accounts.iter().map(Vec::len).min().unwrap_or(1);
                (in_flight.div_ceil(lanes.len()) * self.batch_size).div_ceil(smallest)
            }
        }
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Signs every transfer of `plan` and packs them into batches, on `threads` threads.
/// `nonce_bases[a]` is account `a`'s highest nonce already used on the chain. Unless `sign`:
/// then the records carry no signature (zeros), for a gateway that controls the accounts.
pub fn sign_batches(
    plan: &Plan,
    keys: &[SigningKey],
    chain_id: u32,
    nonce_bases: &[u64],
    threads: usize,
    sign: bool,
    progress: &ProgressBar,
) -> Vec<Bytes> {
    let addresses: Vec<Address> = keys.iter().map(address_of).collect();
    let batches = plan.batches();
    let next = AtomicUsize::new(0);
    let threads = threads.clamp(1, batches.max(1));
    let mut signed: Vec<(usize, Bytes)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut out = Vec::new();
                    let mut builder = BatchBuilder::with_capacity(plan.batch_size);
                    loop {
                        let b = next.fetch_add(1, Ordering::Relaxed);
                        if b >= batches {
                            break out;
                        }
                        let len = plan.batch_range(b).len() as u64;
                        let bytes = sign_batch(
                            plan,
                            b,
                            keys,
                            &addresses,
                            chain_id,
                            nonce_bases,
                            sign,
                            &mut builder,
                        );
                        out.push((b, bytes));
                        progress.inc(len);
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("signing thread"))
            .collect()
    });
    signed.sort_unstable_by_key(|(b, _)| *b);
    signed.into_iter().map(|(_, bytes)| bytes).collect()
}

/// Batch `b` of `plan`, signed by `keys` (unsigned unless `sign`), built with `builder`.
/// `addresses[a]` is the address of `keys[a]`; `nonce_bases[a]` account `a`'s highest nonce
/// already used on the chain.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sign_batch(
    plan: &Plan,
    b: usize,
    keys: &[SigningKey],
    addresses: &[Address],
    chain_id: u32,
    nonce_bases: &[u64],
    sign: bool,
    builder: &mut BatchBuilder,
) -> Bytes {
    for k in plan.batch_range(b) {
        let s = plan.sender(k);
        let transfer = Transfer {
            chain_id,
            from: addresses[s],
            to: addresses[plan.receiver(k)],
            asset: 0,
            amount: 1,
            nonce: nonce_bases[s] + plan.nonce_offset(k),
        };
        if sign {
            builder.push(&transfer.sign(&keys[s]));
        } else {
            builder.push(&transfer.with_signature(&[0; 64]));
        }
    }
    Bytes::from(builder.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use aurigraph_wire::batch::decode_batch;
    use aurigraph_wire::genesis::Genesis;
    use ed25519_dalek::{Signature, Verifier};

    #[test]
    fn plan_covers_every_transfer_once_with_increasing_nonces() {
        let plan = Plan {
            transfers: 1005,
            accounts: 7,
            batch_size: 100,
            seed: 3,
            lanes: None,
        };
        assert_eq!(plan.batches(), 11);
        assert_eq!(plan.batch_range(10), 1000..1005);
        let mut last_nonce = [0u64; 7];
        let mut covered = 0;
        for b in 0..plan.batches() {
            for k in plan.batch_range(b) {
                assert_eq!(k, covered);
                covered += 1;
                let s = plan.sender(k);
                let r = plan.receiver(k);
                assert_ne!(s, r);
                assert!(r < 7);
                assert_eq!(plan.nonce_offset(k), last_nonce[s] + 1);
                last_nonce[s] += 1;
            }
        }
        assert_eq!(covered, 1005);
        for (a, sent) in last_nonce.iter().enumerate() {
            assert_eq!(plan.sends_of(a), *sent);
        }
        assert_eq!(plan.nonce_spread(16), 229);
    }

    #[test]
    fn a_steered_plan_keeps_each_batch_in_one_lane_and_every_nonce_once() {
        // Accounts 0..11 in three lanes of unequal size (keys 5, 9 and 2).
        let keys = [5, 9, 5, 2, 5, 9, 2, 5, 5, 9, 5];
        let (lanes, lane_keys) = Lanes::group(&keys);
        assert_eq!(lane_keys, [2, 5, 9]);
        let plan = Plan {
            lanes: Some(Arc::new(lanes)),
            ..Plan::new(1003, keys.len(), 20, 4)
        };
        let mut last_nonce = vec![0u64; keys.len()];
        for b in 0..plan.batches() {
            let lane = plan.lane_of_batch(b);
            assert_eq!(lane, b % 3);
            for k in plan.batch_range(b) {
                let s = plan.sender(k);
                assert_eq!(keys[s], lane_keys[lane], "transfer {k} of batch {b}");
                assert_ne!(plan.receiver(k), s);
                assert_eq!(plan.nonce_offset(k), last_nonce[s] + 1, "transfer {k}");
                last_nonce[s] += 1;
            }
        }
        for (a, sent) in last_nonce.iter().enumerate() {
            assert_eq!(plan.sends_of(a), *sent, "account {a}");
        }
        assert_eq!(last_nonce.iter().sum::<u64>(), 1003);
        // 16 batches in flight: 6 per lane at most, 120 transfers over the 2 accounts of key 2.
        assert_eq!(plan.nonce_spread(16), 60);
    }

    #[test]
    fn receivers_are_spread_and_deterministic() {
        let plan = Plan {
            transfers: 10_000,
            accounts: 10,
            batch_size: 10,
            seed: 0,
            lanes: None,
        };
        let mut hits = [0u32; 10];
        for k in 0..10_000 {
            hits[plan.receiver(k)] += 1;
        }
        assert!(hits.iter().all(|&h| (800..1200).contains(&h)), "{hits:?}");
        let again = Plan {
            seed: 0,
            ..plan.clone()
        };
        assert_eq!(plan.receiver(1234), again.receiver(1234));
        let two = Plan {
            accounts: 2,
            ..plan
        };
        assert!((0..100).all(|k| two.receiver(k) == 1 - two.sender(k)));
    }

    #[test]
    fn keys_are_deterministic_and_the_genesis_funds_them() {
        let keys = bench_keys(5, 9, 4);
        assert_eq!(keys.len(), 9);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(k.to_bytes(), bench_key(5, i as u64).to_bytes());
        }
        assert_ne!(bench_key(5, 0).to_bytes(), bench_key(6, 0).to_bytes());
        assert_eq!(&bench_key(1, 2).to_bytes()[..16], b"aurigraph-bench\0");
        let addresses: Vec<Address> = keys.iter().map(address_of).collect();
        let g = Genesis::from_json(&genesis_json(&addresses, 7, None, false)).unwrap();
        assert_eq!(g.chain_id, 7);
        assert_eq!(g.shards, None);
        assert_eq!(g.allocations.len(), 9);
        assert!(g
            .allocations
            .iter()
            .all(|a| a.amount == BENCH_BALANCE && a.asset == 0 && addresses.contains(&a.address)));
        let g = Genesis::from_json(&genesis_json(&addresses, 9, Some(4), false)).unwrap();
        assert_eq!((g.chain_id, g.shards), (9, Some(4)));
    }

    #[test]
    fn signed_batches_decode_verify_and_follow_the_plan() {
        let plan = Plan {
            transfers: 25,
            accounts: 4,
            batch_size: 10,
            seed: 1,
            lanes: None,
        };
        let keys = bench_keys(1, 4, 2);
        let bases = [0, 5, 0, 100];
        let batches = sign_batches(&plan, &keys, 7, &bases, 3, true, &ProgressBar::hidden());
        assert_eq!(batches.len(), 3);
        let mut k = 0;
        for (b, bytes) in batches.iter().enumerate() {
            let view = decode_batch(bytes).unwrap();
            assert_eq!(view.len(), plan.batch_range(b).len());
            for record in view.records() {
                let s = plan.sender(k);
                assert_eq!(record.from(), address_of(&keys[s]));
                assert_eq!(record.to(), address_of(&keys[plan.receiver(k)]));
                assert_eq!(record.nonce(), bases[s] + plan.nonce_offset(k));
                assert_eq!(
                    (record.amount(), record.asset(), record.chain_id()),
                    (1, 0, 7)
                );
                keys[s]
                    .verifying_key()
                    .verify(record.message(), &Signature::from_bytes(record.signature()))
                    .unwrap();
                k += 1;
            }
        }
        assert_eq!(k, 25);
    }
}
