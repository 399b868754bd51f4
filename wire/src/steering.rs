//! Connection steering: which core of a node owns a shard, and which core accepts a connection.
//!
//! A node runs one executor per core; shard `s` lives on core `s mod C` ([`core_of_shard`]).
//! Every core listens on the node's HTTP port, and the node tells the kernel to hand a new
//! connection to the core named by its **source port** ([`core_of_source_port`]: `(port / 2)
//! mod C`). A client that knows the node's core count (`GET /api/v11/info`: `"cores"`) and the
//! shard count can therefore open, for each core, connections that land on it (choosing the
//! local port, [`source_ports_for`]) and send each of them only transfers whose sender's shard
//! lives on that core: the request is parsed, verified, ordered and answered on one core, with
//! no message between cores.
//!
//! Steering is an optimisation, never a requirement: a transfer sent to any core reaches its
//! shard (one message between cores), and a connection whose port was rewritten on the way
//! (NAT) is simply served where it lands. Why `port / 2`: Linux gives `connect()` ephemeral
//! ports of one parity where it can (keeping the other for `bind()`), so `port mod C` would put
//! every unsteered connection of a 2-core node on the same core; halving first spreads them.

/// The core that owns `shard` on a node of `cores` executors.
#[inline]
pub fn core_of_shard(shard: u32, cores: usize) -> usize {
    assert!(cores > 0);
    shard as usize % cores
}

/// The core whose listener accepts a connection from source port `port` on a node of `cores`
/// executors.
#[inline]
pub fn core_of_source_port(port: u16, cores: usize) -> usize {
    assert!(cores > 0);
    (port >> 1) as usize % cores
}

/// The lowest port a steered client binds: below it, ports need privileges or are well known.
pub const SOURCE_PORT_MIN: u16 = 1024;

/// The source ports whose connections land on `core` of a `cores`-core node, from `first`
/// (rounded up into the range) upwards, wrapping once around `SOURCE_PORT_MIN..=65535`.
pub fn source_ports_for(core: usize, cores: usize, first: u16) -> impl Iterator<Item = u16> {
    assert!(core < cores);
    let first = first.max(SOURCE_PORT_MIN);
    (first..=u16::MAX)
        .chain(SOURCE_PORT_MIN..first)
        .filter(move |&port| core_of_source_port(port, cores) == core)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_one_parity_spread_over_two_cores() {
        let mut per_core = [0usize; 2];
        for port in (32768u16..33768).step_by(2) {
            per_core[core_of_source_port(port, 2)] += 1;
        }
        assert_eq!(per_core, [250, 250]);
    }

    #[test]
    fn source_ports_land_on_their_core_and_cover_the_range() {
        for cores in [1usize, 2, 3, 16] {
            for core in 0..cores {
                let ports: Vec<u16> = source_ports_for(core, cores, 60_000).collect();
                assert!(ports
                    .iter()
                    .all(|&p| core_of_source_port(p, cores) == core && p >= SOURCE_PORT_MIN));
                assert!(ports[0] >= 60_000);
                let expected = (SOURCE_PORT_MIN..=u16::MAX)
                    .filter(|&p| core_of_source_port(p, cores) == core)
                    .count();
                assert_eq!(ports.len(), expected, "each port once");
            }
        }
        assert_eq!(source_ports_for(0, 1, 0).next(), Some(SOURCE_PORT_MIN));
    }

    #[test]
    fn shards_go_round_robin_over_cores() {
        assert_eq!(
            (0..6).map(|s| core_of_shard(s, 4)).collect::<Vec<_>>(),
            [0, 1, 2, 3, 0, 1]
        );
    }
}
