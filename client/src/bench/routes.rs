//! Steering (on by default for HTTP): where each shard's transfers are best sent — the validator
//! that leads the shard, on the core that owns it there — so that a batch is parsed, verified,
//! ordered and answered on one core of one node, without a forward between validators or a
//! message between cores. The rule of the cores is the node's contract
//! (`aurigraph_wire::steering`); who leads is asked of the nodes before the load starts.

use super::BenchError;
use crate::connector::Steer;
use crate::http::Client;
use crate::ops::json_u64;
use aurigraph_wire::record::Address;
use aurigraph_wire::shard::shard_of;
use aurigraph_wire::steering::core_of_shard;
use std::time::Duration;

/// One place transfers are sent to: a node (index into the load's URLs) and one of its cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Route {
    pub url: usize,
    pub core: usize,
    pub cores: usize,
}

/// The route of every shard.
#[derive(Debug)]
pub(crate) struct Routes {
    pub shards: u32,
    /// Distinct routes, ascending.
    pub routes: Vec<Route>,
    /// Index into `routes` of each shard's route.
    shard_route: Vec<usize>,
}

/// What a node says of itself: its id, shards and cores (`GET /api/v11/info`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct NodeInfo {
    pub node_id: u64,
    pub shards: u32,
    pub cores: usize,
}

impl Routes {
    /// Routes for nodes `infos` (same chain, in the load's URL order). `leaders[s]` is the
    /// node id leading shard `s`, when known; a shard whose leader is not one of the nodes, or
    /// unknown, is sent to the first node (which forwards it).
    pub fn new(infos: &[NodeInfo], leaders: &[Option<u64>]) -> Routes {
        let shards = infos[0].shards;
        let placed: Vec<Route> = (0..shards)
            .map(|s| {
                let leader = leaders.get(s as usize).copied().flatten();
                let url = infos
                    .iter()
                    .position(|i| Some(i.node_id) == leader)
                    .unwrap_or(0);
                let cores = infos[url].cores;
                Route {
                    url,
                    core: core_of_shard(s, cores),
                    cores,
                }
            })
            .collect();
        let mut routes = placed.clone();
        routes.sort_unstable();
        routes.dedup();
        let shard_route = placed
            .iter()
            .map(|r| routes.binary_search(r).expect("a route of the list"))
            .collect();
        Routes {
            shards,
            routes,
            shard_route,
        }
    }

    /// The route (index into `routes`) of transfers sent by `address`.
    pub fn of(&self, address: &Address) -> usize {
        self.shard_route[shard_of(address, self.shards) as usize]
    }
}

/// Asks the nodes behind `clients` (one per URL) for their shards, cores and, with several,
/// each shard's leader.
pub(crate) async fn discover(clients: &[Client]) -> Result<Routes, BenchError> {
    let mut infos = Vec::with_capacity(clients.len());
    for client in clients {
        infos.push(node_info(client).await?);
    }
    if let Some(other) = infos.iter().find(|i| i.shards != infos[0].shards) {
        return Err(BenchError::Steering(format!(
            "the nodes disagree on the shard count ({} and {})",
            infos[0].shards, other.shards
        )));
    }
    let mut leaders = vec![None; infos[0].shards as usize];
    if clients.len() > 1 {
        let status = clients[0].get_json("/api/v11/consensus/status").await?;
        for s in status["shards"].as_array().into_iter().flatten() {
            if let (Some(shard), Some(leader)) = (s["shard"].as_u64(), s["leader"].as_u64()) {
                if let Some(slot) = leaders.get_mut(shard as usize) {
                    *slot = Some(leader);
                }
            }
        }
    }
    Ok(Routes::new(&infos, &leaders))
}

async fn node_info(client: &Client) -> Result<NodeInfo, BenchError> {
    let info = client.get_json("/api/v11/info").await?;
    let field = |name: &str| {
        info.get(name).and_then(json_u64).ok_or_else(|| {
            BenchError::Steering(format!(
                "{}/api/v11/info has no \"{name}\" (use --no-steer with this node)",
                client.base_url()
            ))
        })
    };
    let (node_id, shards, cores) = (field("nodeId")?, field("shards")?, field("cores")?);
    if shards == 0 || shards > u64::from(u32::MAX) || cores == 0 {
        return Err(BenchError::Steering(format!(
            "{}/api/v11/info reports {shards} shards on {cores} cores",
            client.base_url()
        )));
    }
    Ok(NodeInfo {
        node_id,
        shards: shards as u32,
        cores: cores as usize,
    })
}

/// One client per route of `routes`, each of whose connections lands on its route's core;
/// `max_idle` connections each, with the gateway's bearer `token` if any.
pub(crate) fn route_clients(
    routes: &[Route],
    urls: &[String],
    timeout: Duration,
    max_idle: usize,
    token: Option<&str>,
) -> Result<Vec<Client>, BenchError> {
    routes
        .iter()
        .map(|r| {
            let steer = Steer {
                core: r.core,
                cores: r.cores,
            };
            let client = Client::with_steering(&urls[r.url], timeout, max_idle, Some(steer))?;
            Ok(match token {
                Some(token) => client.with_bearer(token)?,
                None => client,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(node_id: u64, cores: usize) -> NodeInfo {
        NodeInfo {
            node_id,
            shards: 4,
            cores,
        }
    }

    #[test]
    fn one_node_has_a_route_per_core() {
        let routes = Routes::new(&[info(1, 2)], &[None; 4]);
        let expected: Vec<Route> = (0..2)
            .map(|core| Route {
                url: 0,
                core,
                cores: 2,
            })
            .collect();
        assert_eq!(routes.routes, expected);
        assert_eq!(routes.shard_route, [0, 1, 0, 1]);
    }

    #[test]
    fn shards_go_to_their_leader_and_unknown_leaders_to_the_first_node() {
        // Shards 0..3 led by nodes 7, 8, 9 (not loaded) and unknown.
        let infos = [info(7, 2), info(8, 3)];
        let routes = Routes::new(&infos, &[Some(7), Some(8), Some(9), None]);
        let of = |s: usize| routes.routes[routes.shard_route[s]];
        assert_eq!(
            of(0),
            Route {
                url: 0,
                core: 0,
                cores: 2
            }
        );
        assert_eq!(
            of(1),
            Route {
                url: 1,
                core: 1,
                cores: 3
            }
        );
        assert_eq!(
            of(2),
            Route {
                url: 0,
                core: 0,
                cores: 2
            }
        );
        assert_eq!(
            of(3),
            Route {
                url: 0,
                core: 1,
                cores: 2
            }
        );
        assert_eq!(routes.routes.len(), 3);
    }
}
