//! The workload: clients submit a few signed transfers (the native asset and a second one, to
//! accounts of the same or the other shard and to fresh addresses) to a random validator's
//! replica of the sender's shard; a follower forwards them to the leader.

use super::{Cluster, Input, ASSET_B, CHAIN};
use crate::record::{address_of, Address, Transfer};
use crate::shard::shard_of;
use rand::Rng;

impl Cluster {
    /// A client submits a few signed transfers to some validator's replica of the sender's shard.
    pub(super) fn submit_workload(&mut self) {
        let sender = self.rng.gen_range(0..self.keys.len());
        let count = self.rng.gen_range(1..4);
        let from = address_of(&self.keys[sender]);
        let shard = shard_of(&from, self.config.shards);
        let mut records = Vec::new();
        for _ in 0..count {
            let to = if self.rng.gen_bool(0.2) {
                let mut a = [0u8; 32];
                a[0] = 0xee;
                a[1] = self.rng.gen_range(0..16);
                Address(a)
            } else {
                let mut r = self.rng.gen_range(0..self.keys.len());
                if r == sender {
                    r = (r + 1) % self.keys.len();
                }
                address_of(&self.keys[r])
            };
            let asset = if sender % 2 == 0 && self.rng.gen_bool(0.3) {
                ASSET_B
            } else {
                0
            };
            self.nonces[sender] += 1;
            let record = Transfer {
                chain_id: CHAIN,
                from,
                to,
                asset,
                amount: self.rng.gen_range(1..2_000),
                nonce: self.nonces[sender],
            }
            .sign(&self.keys[sender]);
            records.push(record);
        }
        let up: Vec<usize> = (0..self.validators.len())
            .filter(|&v| self.validators[v].up)
            .collect();
        if up.is_empty() {
            return;
        }
        let v = up[self.rng.gen_range(0..up.len())];
        let client = self.next_client;
        self.next_client += 1;
        self.clients.insert(client, records.clone());
        self.stats.submitted += records.len() as u64;
        self.validators[v].shards[shard as usize]
            .inputs
            .push_back(Input::Submit { client, records });
    }
}
