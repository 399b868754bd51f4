//! Gateway mode: custodial accounts. The genesis may name a gateway as an account's
//! controller (`"controller": "gateway:NAME"`); a submission the API authenticated as that
//! gateway moves such accounts without their Ed25519 signatures. Every other rule (nonce
//! window, result codes, durability, replication) is the same, and every other account still
//! needs its signature: a transfer the gateway does not control is verified like anyone's.
//!
//! The map comes from the genesis, which every validator of a chain holds identically, so the
//! verdict is the same wherever the transfer enters; followers apply the leader's log without
//! verifying, as for signed transfers.

use crate::genesis::Genesis;
use crate::record::{Address, Record};
use std::collections::HashMap;

/// A gateway of this chain (an index into the genesis's gateway names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GatewayId(pub u32);

/// Which gateway controls which account, from the genesis.
#[derive(Debug, Default)]
pub struct Custody {
    gateways: HashMap<String, GatewayId>,
    /// Looked up once per record of a gateway's submission: foldhash (randomly seeded per
    /// process), not SipHash.
    controllers: HashMap<Address, GatewayId, foldhash::fast::RandomState>,
}

impl Custody {
    pub fn from_genesis(genesis: &Genesis) -> Custody {
        let mut custody = Custody::default();
        for (address, name) in &genesis.controllers {
            let next = GatewayId(custody.gateways.len() as u32);
            let id = *custody.gateways.entry(name.clone()).or_insert(next);
            custody.controllers.insert(*address, id);
        }
        custody
    }

    /// The gateway named `name`, if the genesis gives it any account.
    pub fn gateway(&self, name: &str) -> Option<GatewayId> {
        self.gateways.get(name).copied()
    }

    /// Per record: whether `gateway` controls its source account (it needs no signature).
    /// Empty when none does, or when no gateway submits (every record is verified).
    pub fn custodial(&self, gateway: Option<GatewayId>, records: &[Record]) -> Vec<bool> {
        let Some(gateway) = gateway else {
            return Vec::new();
        };
        let custodial: Vec<bool> = records
            .iter()
            .map(|r| self.controllers.get(&r.from()) == Some(&gateway))
            .collect();
        if custodial.iter().any(|&c| c) {
            custodial
        } else {
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::genesis::Allocation;
    use crate::record::Transfer;

    fn record_from(from: Address) -> Record {
        Transfer {
            chain_id: 7,
            from,
            to: Address([9; 32]),
            asset: 0,
            amount: 1,
            nonce: 1,
        }
        .with_signature(&[0; 64])
    }

    #[test]
    fn a_gateway_controls_only_the_accounts_the_genesis_gives_it() {
        let (a, b, c) = (Address([1; 32]), Address([2; 32]), Address([3; 32]));
        let genesis = Genesis {
            chain_id: 7,
            shards: Some(1),
            allocations: [a, b, c]
                .iter()
                .map(|&address| Allocation {
                    address,
                    asset: 0,
                    amount: 10,
                })
                .collect(),
            controllers: [(a, "acme".to_string()), (b, "other".to_string())].into(),
        };
        let custody = Custody::from_genesis(&genesis);
        let acme = custody.gateway("acme").expect("named in the genesis");
        assert_eq!(custody.gateway("nobody"), None);
        let records = [record_from(a), record_from(b), record_from(c)];
        assert_eq!(
            custody.custodial(Some(acme), &records),
            vec![true, false, false]
        );
        let other = custody.gateway("other").unwrap();
        assert_eq!(
            custody.custodial(Some(other), &records[2..]),
            Vec::<bool>::new()
        );
    }
}
