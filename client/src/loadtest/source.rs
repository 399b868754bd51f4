//! What each request of a run is. Transfers come from the benchmark's workload (its accounts,
//! plan and batch signing): signer threads build the batches in order, ahead of the load, into
//! a bounded queue that the requests take from; reads and paths are made when sent.

use crate::bench::load::{PATH_BATCH, PATH_GATEWAY_BATCH};
use crate::bench::workload::{sign_batch, Plan};
use aurigraph_wire::batch::BatchBuilder;
use aurigraph_wire::record::Address;
use bytes::Bytes;
use ed25519_dalek::SigningKey;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

/// One request to send.
pub(crate) enum Request {
    /// `POST path` with a binary batch of `records` transfers.
    Batch {
        path: &'static str,
        bytes: Bytes,
        records: usize,
    },
    /// `GET path`.
    Get { path: String },
}

/// Where requests come from.
pub(crate) enum Source {
    Transfers {
        queue: async_channel::Receiver<(usize, Bytes)>,
        path: &'static str,
    },
    Reads {
        addresses: Vec<Address>,
        next: AtomicU64,
    },
    Path(String),
}

impl Source {
    pub fn reads(addresses: Vec<Address>) -> Source {
        Source::Reads {
            addresses,
            next: AtomicU64::new(0),
        }
    }

    /// The next request; `None` once the signers stopped (transfers only).
    pub async fn next(&self) -> Option<Request> {
        match self {
            Source::Transfers { queue, path } => {
                let (records, bytes) = queue.recv().await.ok()?;
                Some(Request::Batch {
                    path,
                    bytes,
                    records,
                })
            }
            Source::Reads { addresses, next } => {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize % addresses.len();
                Some(Request::Get {
                    path: format!("/api/v11/accounts/{}", addresses[k].to_hex()),
                })
            }
            Source::Path(path) => Some(Request::Get { path: path.clone() }),
        }
    }
}

/// What the signer threads need.
pub(crate) struct SignerPlan {
    pub plan: Plan,
    pub keys: Vec<SigningKey>,
    pub addresses: Vec<Address>,
    pub chain_id: u32,
    pub nonce_bases: Vec<u64>,
    /// Unsigned records for a gateway (custodial accounts).
    pub sign: bool,
    pub threads: usize,
    /// Batches built ahead of the load at most.
    pub ahead: usize,
}

/// The signer threads; [`Signers::stop`] ends them.
pub(crate) struct Signers {
    queue: async_channel::Receiver<(usize, Bytes)>,
    threads: Vec<JoinHandle<()>>,
}

impl Signers {
    /// Starts the threads, and returns them with the source that takes their batches.
    pub fn start(p: SignerPlan) -> (Signers, Source) {
        let (tx, rx) = async_channel::bounded(p.ahead.max(1));
        let shared = Arc::new(p);
        let next = Arc::new(AtomicUsize::new(0));
        let threads = (0..shared.threads.max(1))
            .map(|_| {
                let (tx, shared, next) = (tx.clone(), shared.clone(), next.clone());
                std::thread::Builder::new()
                    .name("loadtest-sign".into())
                    .spawn(move || sign_loop(&shared, &next, &tx))
                    .expect("spawn a signer thread")
            })
            .collect();
        let path = if shared.sign {
            PATH_BATCH
        } else {
            PATH_GATEWAY_BATCH
        };
        let source = Source::Transfers {
            queue: rx.clone(),
            path,
        };
        (Signers { queue: rx, threads }, source)
    }

    /// Closes the queue (the batches in it are dropped, never sent) and joins the threads.
    pub fn stop(self) {
        self.queue.close();
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn sign_loop(p: &SignerPlan, next: &AtomicUsize, tx: &async_channel::Sender<(usize, Bytes)>) {
    let mut builder = BatchBuilder::with_capacity(p.plan.batch_size);
    loop {
        let b = next.fetch_add(1, Ordering::Relaxed);
        if b >= p.plan.batches() {
            return;
        }
        let records = p.plan.batch_range(b).len();
        let bytes = sign_batch(
            &p.plan,
            b,
            &p.keys,
            &p.addresses,
            p.chain_id,
            &p.nonce_bases,
            p.sign,
            &mut builder,
        );
        if tx.send_blocking((records, bytes)).is_err() {
            return; // stopped
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::workload::bench_keys;
    use aurigraph_wire::batch::decode_batch;
    use aurigraph_wire::record::address_of;

    #[test]
    fn signers_feed_batches_in_plan_order_and_stop() {
        let keys = bench_keys(0, 4, 1);
        let addresses: Vec<Address> = keys.iter().map(address_of).collect();
        let plan = Plan {
            transfers: 1000,
            accounts: 4,
            batch_size: 3,
            seed: 0,
            lanes: None,
        };
        let (signers, source) = Signers::start(SignerPlan {
            plan,
            keys,
            addresses: addresses.clone(),
            chain_id: 7,
            nonce_bases: vec![10; 4],
            sign: true,
            threads: 1,
            ahead: 2,
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut nonces = Vec::new();
        rt.block_on(async {
            for _ in 0..3 {
                let Some(Request::Batch {
                    path,
                    bytes,
                    records,
                }) = source.next().await
                else {
                    panic!("a batch")
                };
                assert_eq!((path, records), (PATH_BATCH, 3));
                let view = decode_batch(&bytes).unwrap();
                nonces.extend(view.records().iter().map(|r| r.nonce()));
            }
        });
        // Transfers 0..9 of the plan: senders 0,1,2,3,0,1,2,3,0 with nonces above the base.
        assert_eq!(nonces, [11, 11, 11, 11, 12, 12, 12, 12, 13]);
        signers.stop();
        let reads = Source::reads(addresses.clone());
        rt.block_on(async {
            let Some(Request::Get { path }) = reads.next().await else {
                panic!("a read")
            };
            assert_eq!(path, format!("/api/v11/accounts/{}", addresses[0].to_hex()));
        });
    }
}
