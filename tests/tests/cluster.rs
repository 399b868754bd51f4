//! Real-process replication tests: three `aurigraph node` processes on loopback,
//! each ordered pair of validators linked through a fault-injecting proxy
//! (`aurigraph_testkit::proxy`), driven by the `Cluster` harness (`aurigraph_testkit::cluster`).
//!
//! Every test ends with `wait_converged`: on every replica, every shard at the same applied
//! index with the same state hash. Clusters run one at a time within this binary.
//! The proxy's own unit tests: `cargo test -p aurigraph-testkit proxy`.

use aurigraph_testkit::cluster::{committed, Cluster, SUBMIT_ATTEMPT_TIMEOUT};
use aurigraph_testkit::*;
use aurigraph_wire::record::{address_of, Address, Record, RECORD_BYTES};
use aurigraph_wire::shard::shard_of;
use ed25519_dalek::SigningKey;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: u32 = 2;
const VALIDATORS: usize = 3;

/// Key indexes grouped by the shard of their address.
fn by_shard(keys: &[SigningKey]) -> Vec<Vec<usize>> {
    let mut groups = vec![Vec::new(); SHARDS as usize];
    for (i, k) in keys.iter().enumerate() {
        groups[shard_of(&address_of(k), SHARDS) as usize].push(i);
    }
    for (s, g) in groups.iter().enumerate() {
        assert!(
            g.len() >= 5,
            "test keys: only {} of {} addresses in shard {s}; use more keys",
            g.len(),
            keys.len()
        );
    }
    groups
}

/// The balances (asset 0) of every key after these committed transfers, from genesis.
fn expected_balances(keys: &[SigningKey], transfers: &[Record]) -> Vec<(Address, u64)> {
    let mut balances: BTreeMap<Address, u64> =
        keys.iter().map(|k| (address_of(k), FUNDS)).collect();
    for r in transfers {
        *balances.get_mut(&r.from()).unwrap() -= r.amount();
        *balances.get_mut(&r.to()).unwrap() += r.amount();
    }
    assert_eq!(
        balances.values().sum::<u64>(),
        FUNDS * keys.len() as u64,
        "the test's own bookkeeping lost money"
    );
    balances.into_iter().collect()
}

/// A committed transfer is in node i's ledger and node i says so: its lookup answers the
/// first decision the log made (`OK`; a resubmission answered `NONCE_REPLAYED` does not replace
/// it), on every validator alike — the window of decided transfers is part of the state and
/// travels in snapshots, so restarts, kills and catch-up from a snapshot do not change the
/// answer. Each sender in these tests sends its nonces in order, one at a time, so a spent
/// nonce >= n means n committed: then a lookup that does not answer `OK` is a failure.
fn present(cluster: &Cluster, i: usize, record: &Record) -> Result<(), String> {
    let lookup = cluster.transaction(i, record);
    if let Some(v) = &lookup {
        if v["result"] == "OK" {
            return Ok(());
        }
        if v["status"] != "PENDING" {
            return Err(format!(
                "node {i}: transfer {} decided otherwise: {v}",
                record.tx_hash().to_hex()
            ));
        }
    }
    let (_, nonce) = cluster.account(i, &record.from());
    if nonce >= record.nonce() {
        Err(format!(
            "node {i}: transfer {} (nonce {}) applied (the account's nonce is {nonce}) but the \
             lookup answers {:?}",
            record.tx_hash().to_hex(),
            record.nonce(),
            lookup.map(|v| v.to_string())
        ))
    } else {
        Err(format!(
            "node {i}: transfer {} (nonce {}) is missing: lookup {:?}, account nonce {nonce}",
            record.tx_hash().to_hex(),
            record.nonce(),
            cluster.transaction(i, record).map(|v| v.to_string())
        ))
    }
}

fn assert_all_present(cluster: &Cluster, i: usize, records: &[Record]) {
    let missing: Vec<String> = records
        .iter()
        .filter_map(|r| present(cluster, i, r).err())
        .collect();
    if !missing.is_empty() {
        cluster.fail(&format!(
            "{} of {} acknowledged transfers missing on node {i}:\n{}",
            missing.len(),
            records.len(),
            missing.join("\n")
        ));
    }
}

/// Sets the flag when dropped, so that load threads stop even when the test panics (a
/// scoped thread that never stops would hang the test instead of failing it).
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Three validators that carried four rounds of transfers (same-shard and cross-shard) from
/// two senders per shard, through all three.
struct Traffic {
    cluster: Cluster,
    keys: Vec<SigningKey>,
    senders: Vec<usize>,
    receivers: Vec<Vec<usize>>,
    three: Vec<usize>,
    sent: Vec<Record>,
}

impl Traffic {
    fn start(dir: &std::path::Path) -> Traffic {
        let keys = keys(16);
        let groups = by_shard(&keys);
        let cluster = Cluster::start(dir, VALIDATORS, &genesis(&keys, SHARDS));
        let senders: Vec<usize> = groups.iter().flat_map(|g| g[..2].to_vec()).collect();
        let receivers: Vec<Vec<usize>> = groups.iter().map(|g| g[2..].to_vec()).collect();
        let three: Vec<usize> = (0..VALIDATORS).collect();
        let sent = send_rounds(&cluster, &keys, &senders, &receivers, &three, 0..4);
        Traffic {
            cluster,
            keys,
            senders,
            receivers,
            three,
            sent,
        }
    }
}

/// `aurigraph validators add` of validator `i` (id i + 1) as a learner, through `via`.
fn add_learner(cluster: &Cluster, i: usize, via: &[usize]) {
    let peer_addr = format!("127.0.0.1:{}", cluster.node(i).peer_port);
    cluster.validators_cli(&[
        "add".into(),
        "--id".into(),
        (i + 1).to_string(),
        "--peer-addr".into(),
        peer_addr,
        "--nodes".into(),
        cluster.urls(via),
    ]);
}

/// Submits `record` through `node` (resubmitting as clients do) until `deadline`: the reply
/// when it committed; otherwise `what` and the reason go to `failures` and `None` comes back.
fn committed_or_failed(
    submitter: &aurigraph_testkit::cluster::Submitter,
    node: usize,
    record: &Record,
    deadline: Instant,
    attempt_timeout: Duration,
    what: &str,
    failures: &Mutex<Vec<String>>,
) -> Option<aurigraph_testkit::cluster::Submitted> {
    match submitter.try_submit(node, record, deadline, attempt_timeout) {
        Ok(sub) if sub.committed() => Some(sub),
        Ok(sub) => {
            failures
                .lock()
                .unwrap()
                .push(format!("{what}: {}", sub.reply));
            None
        }
        Err(e) => {
            failures.lock().unwrap().push(format!("{what}: {e}"));
            None
        }
    }
}

/// Sends one transfer per round (nonce = round + 1) from each sender, concurrently across senders and in nonce
/// order within one, alternating a same-shard and a cross-shard receiver, each through
/// `via[(sender position + round) % via.len()]`. Asserts each one `CONFIRMED`/`OK` and
/// returns them.
fn send_rounds(
    cluster: &Cluster,
    keys: &[SigningKey],
    senders: &[usize],
    receivers: &[Vec<usize>],
    via: &[usize],
    rounds: std::ops::Range<u64>,
) -> Vec<Record> {
    let sent = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for (pos, &k) in senders.iter().enumerate() {
            let (sent, rounds) = (&sent, rounds.clone());
            s.spawn(move || {
                let from = address_of(&keys[k]);
                let home = shard_of(&from, SHARDS) as usize;
                for round in rounds {
                    // Even rounds stay in the sender's shard, odd ones cross to the other.
                    let shard = if round % 2 == 0 {
                        home
                    } else {
                        (home + 1) % SHARDS as usize
                    };
                    let choices = &receivers[shard];
                    let to = address_of(&keys[choices[(pos + round as usize) % choices.len()]]);
                    let record = transfer(&keys[k], to, 1 + round + pos as u64, round + 1);
                    let node = via[(pos + round as usize) % via.len()];
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let submitted = cluster
                        .try_submit(node, &record, deadline, SUBMIT_ATTEMPT_TIMEOUT)
                        .unwrap_or_else(|e| cluster.fail(&format!("submit: {e}")));
                    let reply = &submitted.reply;
                    // A follower answers RETRY as soon as its leader changes, although the
                    // old leader may still commit the forwarded transfer; the resubmission
                    // then finds it committed (NONCE_REPLAYED): the documented outcome of a
                    // resubmitted transfer, accepted only after a retry.
                    let ok = reply["status"] == "CONFIRMED" && reply["result"] == "OK";
                    let replayed = submitted.attempts > 1 && committed(reply);
                    if !ok && !replayed {
                        cluster.fail(&format!(
                            "transfer {round} of sender {k} through node {node}: {reply}"
                        ));
                    }
                    assert_eq!(reply["txHash"], record.tx_hash().to_hex(), "{reply}");
                    assert_eq!(reply["shard"], home, "{reply}");
                    sent.lock().unwrap().push(record);
                }
            });
        }
    });
    sent.into_inner().unwrap()
}

#[test]
fn transfers_through_any_validator() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(16);
    let groups = by_shard(&keys);
    let cluster = Cluster::start(dir.path(), VALIDATORS, &genesis(&keys, SHARDS));

    // Two senders per shard; everyone else only receives.
    let senders: Vec<usize> = groups.iter().flat_map(|g| g[..2].to_vec()).collect();
    let receivers: Vec<Vec<usize>> = groups.iter().map(|g| g[2..].to_vec()).collect();
    let all: Vec<usize> = (0..VALIDATORS).collect();
    let sent = send_rounds(&cluster, &keys, &senders, &receivers, &all, 0..6);
    assert_eq!(sent.len(), senders.len() * 6);

    cluster.wait_converged();
    let expect = expected_balances(&keys, &sent);
    for i in 0..VALIDATORS {
        cluster.wait_balances(i, &expect);
        for record in &sent {
            let v = cluster.transaction(i, record).unwrap_or_else(|| {
                cluster.fail(&format!(
                    "node {i} does not know transfer {}",
                    record.tx_hash().to_hex()
                ))
            });
            assert_eq!(
                (v["status"].as_str(), v["result"].as_str()),
                (Some("CONFIRMED"), Some("OK")),
                "node {i}: {v}"
            );
        }
        for &k in &senders {
            assert_eq!(cluster.account(i, &address_of(&keys[k])).1, 6, "node {i}");
        }
    }
    // Each validator's metrics show its links to the two others up, and replication traffic.
    for i in 0..VALIDATORS {
        let r = cluster
            .request(i, "GET", "/metrics", None, Duration::from_secs(5))
            .unwrap();
        let text = String::from_utf8_lossy(&r.body).to_string();
        for j in (0..VALIDATORS).filter(|&j| j != i) {
            let series = format!(
                "aurigraph_peer_link_up{{core=\"0\",peer=\"{}\"}} 1\n",
                j + 1
            );
            assert!(text.contains(&series), "node {i}: no `{series}` in\n{text}");
        }
        let sent = text
            .lines()
            .find_map(|l| l.strip_prefix("aurigraph_peer_bytes_sent_total{core=\"0\"} "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0);
        assert!(sent > 0.0, "node {i} sent no replication bytes");
    }
    // A bad signature is refused whichever validator the client asked (a follower verifies
    // before forwarding, and the leader takes its verdict).
    let k = senders[0];
    for i in 0..VALIDATORS {
        let mut record = transfer(&keys[k], address_of(&keys[receivers[0][0]]), 1, 7);
        record.0[RECORD_BYTES - 1] ^= 0x40;
        let reply = cluster.submit(i, &record);
        assert_eq!(
            (reply["status"].as_str(), reply["result"].as_str()),
            (Some("REJECTED"), Some("BAD_SIGNATURE")),
            "node {i}: {reply}"
        );
    }
    cluster.wait_converged();
    for i in 0..VALIDATORS {
        assert_eq!(cluster.account(i, &address_of(&keys[k])).1, 6, "node {i}");
    }
}

/// One acknowledged transfer of the load.
struct Ack {
    record: Record,
    shard: u32,
    /// When the attempt that was answered went out, and when the answer came.
    sent: Instant,
    answered: Instant,
}

#[test]
fn sigkill_of_a_leader_under_load_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(24);
    let groups = by_shard(&keys);
    let cluster = Cluster::start(dir.path(), VALIDATORS, &genesis(&keys, SHARDS));
    let leaders = cluster.wait_leaders();
    let victim = leaders[0];
    let survivors: Vec<usize> = (0..VALIDATORS).filter(|&i| i != victim).collect();

    // Two load workers per shard, each its own sender (nonces in order, one in flight).
    // A prober (shard 0) sends to a sink (shard 0) after the kill, to time the failover.
    let (prober, sink) = (groups[0][2], groups[0][3]);
    let workers: Vec<usize> = groups.iter().flat_map(|g| g[..2].to_vec()).collect();
    let receivers: Vec<usize> = (0..keys.len())
        .filter(|k| !workers.contains(k) && *k != prober && *k != sink)
        .collect();
    let stop = AtomicBool::new(false);
    let acks: Mutex<Vec<Ack>> = Mutex::new(Vec::new());
    let probes: Mutex<Vec<Ack>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let submitter = cluster.submitter();
    let mut killed_at = None;
    let in_flight = AtomicUsize::new(0);

    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for (w, &k) in workers.iter().enumerate() {
            let (stop, acks, failures, submitter) = (&stop, &acks, &failures, submitter.clone());
            let (keys, receivers, survivors) = (&keys, &receivers, &survivors);
            s.spawn(move || {
                let shard = shard_of(&address_of(&keys[k]), SHARDS);
                let mut nonce = 0u64;
                // Stops between transfers only: every transfer sent is acknowledged or failed.
                while !stop.load(Ordering::SeqCst) {
                    nonce += 1;
                    let to = address_of(&keys[receivers[(w + nonce as usize) % receivers.len()]]);
                    let record = transfer(&keys[k], to, 1, nonce);
                    let node = survivors[(w + nonce as usize) % survivors.len()];
                    let deadline = Instant::now() + Duration::from_secs(30);
                    let what = format!("sender {k} nonce {nonce} via node {node}");
                    let attempt = Duration::from_secs(2);
                    let Some(sub) = committed_or_failed(
                        &submitter, node, &record, deadline, attempt, &what, failures,
                    ) else {
                        return;
                    };
                    acks.lock().unwrap().push(Ack {
                        record,
                        shard,
                        sent: sub.sent,
                        answered: sub.answered,
                    });
                }
            });
        }
        let poll = |what: &str, limit: Duration, done: &dyn Fn(&[Ack]) -> bool| {
            let deadline = Instant::now() + limit;
            loop {
                if done(&acks.lock().unwrap()) {
                    return;
                }
                let failed = failures.lock().unwrap().clone();
                if !failed.is_empty() || Instant::now() > deadline {
                    stop.store(true, Ordering::SeqCst);
                    cluster.fail(&format!("{what}; load failures: {failed:?}"));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        };
        let per_shard_after = |acks: &[Ack], shard: u32, since: Instant| {
            acks.iter()
                .filter(|a| a.shard == shard && a.sent >= since)
                .count()
        };
        let start = Instant::now();
        poll("load warm-up", Duration::from_secs(30), &|a| {
            (0..SHARDS).all(|s| per_shard_after(a, s, start) >= 10)
        });

        let kill = Instant::now();
        cluster.kill9(victim);
        killed_at = Some(kill);
        // Probe shard 0 every 20 ms with a fresh transfer (one attempt each, at most 48 in
        // flight, inside the 64-nonce anti-replay window) until one is acknowledged: requests
        // that were in flight at the kill may hang until their client's timeout, and must
        // not hide when the new leader starts taking writes.
        let mut nonce = 0u64;
        while probes.lock().unwrap().is_empty() {
            if kill.elapsed() > Duration::from_secs(30) {
                stop.store(true, Ordering::SeqCst);
                cluster.fail("no write to shard 0 was acknowledged within 30 s of the kill");
            }
            if in_flight.load(Ordering::SeqCst) < 48 {
                nonce += 1;
                in_flight.fetch_add(1, Ordering::SeqCst);
                let (probes, in_flight, submitter) = (&probes, &in_flight, submitter.clone());
                let record = transfer(&keys[prober], address_of(&keys[sink]), 1, nonce);
                let node = survivors[nonce as usize % survivors.len()];
                s.spawn(move || {
                    if let Ok(sub) = submitter.submit_once(node, &record, Duration::from_secs(3)) {
                        if sub.committed() {
                            probes.lock().unwrap().push(Ack {
                                record,
                                shard: 0,
                                sent: sub.sent,
                                answered: sub.answered,
                            });
                        }
                    }
                    in_flight.fetch_sub(1, Ordering::SeqCst);
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The load's own view: its first shard-0 transfer sent after the kill and answered.
        poll(
            "the load's writes to shard 0 never resumed after the kill",
            Duration::from_secs(30),
            &|a| per_shard_after(a, 0, kill) >= 1,
        );
        // Some more load on the new leaders, then stop.
        poll("load after failover", Duration::from_secs(30), &|a| {
            (0..SHARDS).all(|s| per_shard_after(a, s, kill) >= 10)
        });
        stop.store(true, Ordering::SeqCst);
    });

    let failed = failures.into_inner().unwrap();
    if !failed.is_empty() {
        cluster.fail(&format!("load failures: {failed:?}"));
    }
    let kill = killed_at.unwrap();
    let acks = acks.into_inner().unwrap();
    let probes = probes.into_inner().unwrap();
    let failover = probes.iter().map(|a| a.answered - kill).min().unwrap();
    let load_view = acks
        .iter()
        .filter(|a| a.shard == 0 && a.sent >= kill)
        .map(|a| a.answered - kill)
        .min()
        .unwrap();
    println!(
        "FAILOVER: shard 0 acknowledged a write again {} ms after SIGKILL of its leader \
         (node id {}; probed every 20 ms; target 1000 ms); the load (2 s client timeout per \
         attempt) got its first shard-0 acknowledgement after {} ms",
        failover.as_millis(),
        victim + 1,
        load_view.as_millis()
    );
    println!(
        "load: {} transfers acknowledged, {} of them sent after the kill; {} probes acknowledged",
        acks.len(),
        acks.iter().filter(|a| a.sent >= kill).count(),
        probes.len()
    );
    if failover >= Duration::from_secs(5) {
        cluster.fail(&format!("failover took {failover:?} (limit 5 s)"));
    }

    // Every worker's acknowledged nonces are 1..=n without a gap (one in flight each, every
    // one acknowledged before the next), so its acknowledged transfers are exactly its
    // committed ones and the balances of everyone but the prober and the sink follow.
    let records: Vec<Record> = acks.iter().map(|a| a.record).collect();
    for &k in &workers {
        let mut nonces: Vec<u64> = records
            .iter()
            .filter(|r| r.from() == address_of(&keys[k]))
            .map(|r| r.nonce())
            .collect();
        nonces.sort_unstable();
        assert!(
            nonces.iter().copied().eq(1..=nonces.len() as u64),
            "sender {k}: acknowledged nonces {nonces:?}"
        );
    }
    let probe_pair = [address_of(&keys[prober]), address_of(&keys[sink])];
    let expect: Vec<(Address, u64)> = expected_balances(&keys, &records)
        .into_iter()
        .filter(|(a, _)| !probe_pair.contains(a))
        .collect();
    let check = |i: usize| {
        assert_all_present(&cluster, i, &records);
        // Unacknowledged probes may have committed too: only acknowledged ones must be there.
        let probe_records: Vec<Record> = probes.iter().map(|a| a.record).collect();
        for r in &probe_records {
            match cluster.transaction(i, r) {
                Some(v) if v["result"] == "OK" || v["result"] == "NONCE_REPLAYED" => {}
                other => cluster.fail(&format!(
                    "node {i}: acknowledged probe {} (nonce {}): {other:?}",
                    r.tx_hash().to_hex(),
                    r.nonce()
                )),
            }
        }
        cluster.wait_balances(i, &expect);
        let pair: u64 = probe_pair.iter().map(|a| cluster.account(i, a).0).sum();
        assert_eq!(pair, 2 * FUNDS, "node {i}: prober and sink together");
    };

    cluster.wait_converged();
    for &i in &survivors {
        check(i);
    }
    cluster.restart(victim);
    cluster.wait_converged();
    for i in 0..VALIDATORS {
        check(i);
    }
    cluster.wait_converged();
}

#[test]
fn a_partitioned_validator_catches_up_after_healing() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(16);
    let groups = by_shard(&keys);
    let cluster = Cluster::start(dir.path(), VALIDATORS, &genesis(&keys, SHARDS));
    let leaders = cluster.wait_leaders();
    // With 2 shards and 3 validators one validator leads no shard: partition it.
    let victim = (0..VALIDATORS)
        .find(|i| !leaders.contains(i))
        .expect("a validator that leads no shard");
    let majority: Vec<usize> = (0..VALIDATORS).filter(|&i| i != victim).collect();
    let applied = |i: usize, shard: u32| {
        cluster::shard_status(&cluster.status(i), shard).unwrap()["appliedIndex"]
            .as_u64()
            .unwrap()
    };
    let before: Vec<u64> = (0..SHARDS).map(|s| applied(victim, s)).collect();

    cluster.partition(victim);
    let senders: Vec<usize> = groups.iter().flat_map(|g| g[..2].to_vec()).collect();
    let receivers: Vec<Vec<usize>> = groups.iter().map(|g| g[2..].to_vec()).collect();
    let mut sent = send_rounds(&cluster, &keys, &senders, &receivers, &majority, 0..6);

    // The majority went on; the partitioned validator saw none of it.
    for shard in 0..SHARDS {
        let ahead = majority.iter().map(|&i| applied(i, shard)).max().unwrap();
        let behind = applied(victim, shard);
        if behind >= ahead {
            cluster.fail(&format!(
                "shard {shard}: the partitioned node {victim} applied {behind} (before the \
                 partition {}), the majority {ahead}: the partition did not hold",
                before[shard as usize]
            ));
        }
    }
    for &k in &senders {
        let (_, nonce) = cluster.account(victim, &address_of(&keys[k]));
        if nonce != 0 {
            cluster.fail(&format!(
                "the partitioned node {victim} applied transfers of sender {k} (nonce {nonce})"
            ));
        }
    }

    // Keep it cut off until it notices (no leader known for any shard: its election timer
    // fired, and with pre-vote it cannot win or disturb anyone), and write more meanwhile.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = cluster.status(victim);
        if (0..SHARDS).all(|s| cluster::shard_status(&status, s).unwrap()["leader"].is_null()) {
            break;
        }
        if Instant::now() > deadline {
            cluster.fail(&format!(
                "the partitioned node {victim} still reports a leader after 20 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    sent.extend(send_rounds(
        &cluster,
        &keys,
        &senders,
        &receivers,
        &majority,
        6..10,
    ));
    let terms = |i: usize| -> Vec<u64> {
        let status = cluster.status(i);
        (0..SHARDS)
            .map(|s| {
                cluster::shard_status(&status, s).unwrap()["term"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    };
    let terms_before = terms(majority[0]);

    cluster.heal(victim);
    cluster.wait_converged();
    // Reported, not asserted: with pre-vote and check-quorum the healed node should not have
    // forced an election, so the terms stay as they were.
    println!(
        "PARTITION: node id {} healed; shard terms on the majority {terms_before:?} before, {:?} \
         after",
        victim + 1,
        terms(majority[0])
    );
    let expect = expected_balances(&keys, &sent);
    for i in 0..VALIDATORS {
        cluster.wait_balances(i, &expect);
    }
    assert_all_present(&cluster, victim, &sent);
    cluster.wait_converged();
}

/// Runs `aurigraph validators ARGS…` and fails the test with its output when it fails.
#[test]
fn a_fourth_validator_joins_as_learner_is_promoted_and_one_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let Traffic {
        mut cluster,
        keys,
        senders,
        receivers,
        three,
        mut sent,
    } = Traffic::start(dir.path());

    // Add validator 4: start it with --join, make it a learner everywhere, promote it.
    let fourth = cluster.add_joining_node();
    add_learner(&cluster, fourth, &three);
    cluster.validators_cli(&[
        "promote".into(),
        "--id".into(),
        "4".into(),
        "--nodes".into(),
        cluster.urls(&three),
    ]);
    cluster.wait_converged();
    for i in 0..=fourth {
        let status = cluster.status(i);
        for shard in 0..SHARDS {
            let s = cluster::shard_status(&status, shard).unwrap();
            assert_eq!(
                s["voters"],
                serde_json::json!([1, 2, 3, 4]),
                "node {i}: {s}"
            );
        }
    }
    // Writes through the new validator too.
    let four: Vec<usize> = (0..=fourth).collect();
    sent.extend(send_rounds(
        &cluster,
        &keys,
        &senders,
        &receivers,
        &four,
        4..6,
    ));

    // Remove validator 1, then stop it; the other three carry on.
    cluster.validators_cli(&[
        "remove".into(),
        "--id".into(),
        "1".into(),
        "--nodes".into(),
        cluster.urls(&four),
    ]);
    cluster.kill9(0);
    let rest: Vec<usize> = (1..=fourth).collect();
    sent.extend(send_rounds(
        &cluster,
        &keys,
        &senders,
        &receivers,
        &rest,
        6..8,
    ));
    let statuses = cluster.wait_converged();
    for status in &statuses {
        for shard in 0..SHARDS {
            let s = cluster::shard_status(status, shard).unwrap();
            assert_eq!(s["voters"], serde_json::json!([2, 3, 4]), "{s}");
        }
    }
    let expect = expected_balances(&keys, &sent);
    for &i in &rest {
        cluster.wait_balances(i, &expect);
    }
    // Validator 4 restarted without --join (its data directory remembers that it joined): it
    // recovers into the same membership and the replicas converge again.
    cluster.drop_arg(fourth, "--join");
    cluster.restart(fourth);
    sent.extend(send_rounds(
        &cluster,
        &keys,
        &senders,
        &receivers,
        &rest,
        8..9,
    ));
    cluster.wait_converged();
    let expect = expected_balances(&keys, &sent);
    cluster.wait_balances(fourth, &expect);
}

#[test]
fn a_validator_behind_a_truncated_log_catches_up_from_a_snapshot() {
    // Snapshots (and log truncation) every 4 applied entries: a validator cut off for a few
    // rounds is behind the leaders' first log index and can only catch up from a snapshot,
    // with cross-shard receipts in flight (pruned only up to what every validator credited).
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(16);
    let groups = by_shard(&keys);
    let cluster = Cluster::start_with_config(
        dir.path(),
        VALIDATORS,
        &genesis(&keys, SHARDS),
        // Pieces of 512 bytes: the shipped snapshots travel in several pieces.
        Some("snapshot_interval_entries = 4\nsnapshot_piece_bytes = 512\n"),
    );
    let leaders = cluster.wait_leaders();
    let victim = (0..VALIDATORS)
        .find(|i| !leaders.contains(i))
        .expect("a validator that leads no shard");
    let majority: Vec<usize> = (0..VALIDATORS).filter(|&i| i != victim).collect();
    let senders: Vec<usize> = groups.iter().flat_map(|g| g[..2].to_vec()).collect();
    let receivers: Vec<Vec<usize>> = groups.iter().map(|g| g[2..].to_vec()).collect();
    let all: Vec<usize> = (0..VALIDATORS).collect();
    let mut sent = send_rounds(&cluster, &keys, &senders, &receivers, &all, 0..4);

    cluster.partition(victim);
    sent.extend(send_rounds(
        &cluster,
        &keys,
        &senders,
        &receivers,
        &majority,
        4..16,
    ));
    cluster.heal(victim);
    cluster.wait_converged();
    let log = cluster.log_text(victim);
    assert!(
        log.contains("caught up from the leader's snapshot"),
        "node {victim} caught up without a snapshot:\n{}",
        cluster.diagnostics()
    );
    let pieces = majority
        .iter()
        .any(|&i| cluster.log_text(i).contains("snapshot sent in pieces"));
    assert!(
        pieces,
        "no leader sent its snapshot in pieces:\n{}",
        cluster.diagnostics()
    );
    let expect = expected_balances(&keys, &sent);
    for i in 0..VALIDATORS {
        cluster.wait_balances(i, &expect);
    }
    // And it takes part again: writes through it commit.
    sent.extend(send_rounds(
        &cluster,
        &keys,
        &senders,
        &receivers,
        &all,
        16..18,
    ));
    cluster.wait_converged();
    let expect = expected_balances(&keys, &sent);
    cluster.wait_balances(victim, &expect);
}

/// The rolling upgrade procedure (docs/operations.md): one validator at a time is stopped with
/// SIGTERM (it drains), replaced (here: the same binary) and started again, and the next one
/// only once it is back. Senders keep sending through every validator throughout, resubmitting
/// as clients do (a 503, a refused connection); not one transfer fails, and every
/// acknowledged one is on every validator afterwards.
#[test]
fn a_rolling_restart_under_load_fails_no_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys(16);
    let groups = by_shard(&keys);
    let cluster = Cluster::start(dir.path(), VALIDATORS, &genesis(&keys, SHARDS));
    cluster.wait_leaders();
    let senders: Vec<usize> = groups.iter().flat_map(|g| g[..2].to_vec()).collect();
    let receivers: Vec<usize> = (0..keys.len()).filter(|k| !senders.contains(k)).collect();
    let stop = AtomicBool::new(false);
    let acks: Mutex<Vec<Record>> = Mutex::new(Vec::new());
    let failures: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let submitter = cluster.submitter();
    std::thread::scope(|s| {
        let _stop = StopOnDrop(&stop);
        for (w, &k) in senders.iter().enumerate() {
            let (stop, acks, failures, submitter) = (&stop, &acks, &failures, submitter.clone());
            let (keys, receivers) = (&keys, &receivers);
            s.spawn(move || {
                let mut nonce = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    nonce += 1;
                    let to = address_of(&keys[receivers[(w + nonce as usize) % receivers.len()]]);
                    let record = transfer(&keys[k], to, 1, nonce);
                    let node = (w + nonce as usize) % VALIDATORS;
                    let deadline = Instant::now() + Duration::from_secs(60);
                    let what = format!("sender {k} nonce {nonce} via node {node}");
                    let attempt = SUBMIT_ATTEMPT_TIMEOUT;
                    let submitted = committed_or_failed(
                        &submitter, node, &record, deadline, attempt, &what, failures,
                    );
                    if submitted.is_none() {
                        return;
                    }
                    acks.lock().unwrap().push(record);
                }
            });
        }
        let acked = || acks.lock().unwrap().len();
        for i in 0..VALIDATORS {
            // Load on the cluster before each stop.
            let before = acked();
            let deadline = Instant::now() + Duration::from_secs(30);
            while acked() < before + 20 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            assert_eq!(
                cluster.terminate(i),
                Some(0),
                "validator {i} stopped cleanly"
            );
            cluster.start_again(i);
            cluster.wait_leaders();
        }
        let before = acked();
        let deadline = Instant::now() + Duration::from_secs(30);
        while acked() < before + 20 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        stop.store(true, Ordering::SeqCst);
    });
    let failed = failures.into_inner().unwrap();
    if !failed.is_empty() {
        cluster.fail(&format!("transfers failed:\n{}", failed.join("\n")));
    }
    let records = acks.into_inner().unwrap();
    println!(
        "{} transfers acknowledged across the rolling restart",
        records.len()
    );
    assert!(
        records.len() >= 80,
        "only {} transfers went through",
        records.len()
    );
    cluster.wait_converged();
    for i in 0..VALIDATORS {
        assert_all_present(&cluster, i, &records);
    }
    cluster.wait_balances(0, &expected_balances(&keys, &records));
}

/// A new validator seeded from a backup of a running one (`aurigraph backup create`, then
/// `restore` into its data directory) starts from the backup's state, joins, catches up from
/// the cluster (the leaders' logs, or a leader's snapshot where a shard needs one) and
/// converges with the others. (It found a defect: a ready cycle whose only write is a
/// leader's snapshot, saved outside the WAL, must count as durable at once.)
#[test]
fn a_validator_seeded_from_a_backup_joins_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let Traffic {
        mut cluster,
        keys,
        senders,
        receivers,
        three,
        mut sent,
    } = Traffic::start(dir.path());

    let backup = dir.path().join("backup-of-1");
    let token_file = cluster.admin_token_file.clone();
    aurigraph_ok(&[
        "backup".as_ref(),
        "create".as_ref(),
        "--node".as_ref(),
        format!("http://127.0.0.1:{}", cluster.http_port(0)).as_ref(),
        "--token-file".as_ref(),
        token_file.as_os_str(),
        "--out".as_ref(),
        backup.as_os_str(),
    ]);
    // More transfers after the backup: the new validator gets them from the cluster.
    sent.extend(send_rounds(
        &cluster,
        &keys,
        &senders,
        &receivers,
        &three,
        4..6,
    ));

    let fourth = cluster.add_joining_node_from_backup(&backup);
    let log = cluster.log_text(fourth);
    assert!(log.contains("shard recovered"), "{log}");
    add_learner(&cluster, fourth, &three);
    let statuses = cluster.wait_converged();
    assert!(
        cluster.is_live(fourth) && statuses.len() == VALIDATORS + 1,
        "the seeded validator stopped:\n{}",
        cluster.log_text(fourth)
    );
    assert_all_present(&cluster, fourth, &sent);
    cluster.wait_balances(fourth, &expected_balances(&keys, &sent));
}
