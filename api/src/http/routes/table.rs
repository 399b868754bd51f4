//! The route table: every endpoint once, with its method, path template, handler and OpenAPI
//! operation. It drives the routing ([`lookup`]), the `route` label of the request metrics
//! ([`route_label`]: the path template) and the OpenAPI document (`openapi::document`). Adding
//! an endpoint is one entry here (and its handler and description next to the others of its
//! kind).

use super::{accounts, admin, blocks, consensus, node, portal, quantum, transactions};
use super::{Answer, Backend, Ctx, RequestBody};
use aurigraph_engine::runtime::Engine;
use futures::future::{FutureExt, LocalBoxFuture};
use hyper::body::Incoming;
use hyper::{Method, Request};
use serde_json::Value;
use std::marker::PhantomData;

/// Most `{name}` segments in one path template.
pub const PARAMS_MAX: usize = 2;

/// The `{name}` segments of a matched path, in template order (unused ones are empty).
pub type Params<'a> = [&'a str; PARAMS_MAX];

/// An endpoint: answers a request whose path matched (with its parameters).
pub type Handler<B, T> =
    for<'a> fn(&'a Ctx<B>, Request<T>, Params<'a>) -> LocalBoxFuture<'a, Answer>;

/// One endpoint.
pub struct Route<B, T> {
    pub method: Method,
    /// The path template (`{name}` matches one segment); also the metric `route` label.
    pub path: &'static str,
    pub handler: Handler<B, T>,
    /// The OpenAPI operation object (summary, description, parameters, responses); null for
    /// the portal's routes, which the document leaves out.
    pub doc: fn() -> Value,
}

/// The table for a ledger `B` and request bodies `T` (only the handlers depend on them).
pub struct Routes<B, T>(PhantomData<(B, T)>);

impl<B: Backend, T: RequestBody> Routes<B, T> {
    /// Every endpoint, in the order of the metric labels. A path matches the first template
    /// that fits, so a literal segment is listed before a `{name}` in the same place.
    pub const TABLE: &'static [Route<B, T>] = &[
        Route {
            method: Method::GET,
            path: "/q/health/live",
            handler: |c, _, _| node::health(c, node::Health::Live).boxed_local(),
            doc: node::live_doc,
        },
        Route {
            method: Method::GET,
            path: "/q/health/ready",
            handler: |c, _, _| node::health(c, node::Health::Ready).boxed_local(),
            doc: node::ready_doc,
        },
        Route {
            method: Method::GET,
            path: "/metrics",
            handler: |c, _, _| node::metrics(c).boxed_local(),
            doc: node::metrics_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/health",
            handler: |c, _, _| node::health(c, node::Health::Ready).boxed_local(),
            doc: node::health_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/info",
            handler: |c, _, _| node::info(c).boxed_local(),
            doc: node::info_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/stats",
            handler: |c, _, _| node::stats(c).boxed_local(),
            doc: node::stats_doc,
        },
        Route {
            method: Method::POST,
            path: "/api/v11/transactions",
            handler: |c, r, _| transactions::submit(c, r).boxed_local(),
            doc: transactions::submit_doc,
        },
        Route {
            method: Method::POST,
            path: "/api/v11/transactions/batch",
            handler: |c, r, _| transactions::submit_batch(c, r).boxed_local(),
            doc: transactions::submit_batch_doc,
        },
        Route {
            method: Method::POST,
            path: "/api/v11/gateway/transactions/batch",
            handler: |c, r, _| transactions::submit_gateway_batch(c, r).boxed_local(),
            doc: transactions::submit_gateway_batch_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/transactions/{txHash}",
            handler: |c, _, [hash, _]| transactions::transaction(c, hash).boxed_local(),
            doc: transactions::transaction_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/accounts/{address}",
            handler: |c, _, [address, _]| accounts::account(c, address).boxed_local(),
            doc: accounts::account_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/accounts/{address}/transactions",
            handler: |c, r, [address, _]| accounts::transactions(c, r, address).boxed_local(),
            doc: accounts::transactions_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/blocks/latest",
            handler: |c, _, _| blocks::latest(c).boxed_local(),
            doc: blocks::latest_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/blocks/{shard}/{height}",
            handler: |c, _, [shard, height]| blocks::block(c, shard, height).boxed_local(),
            doc: blocks::block_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/validators",
            handler: |c, _, _| consensus::validators(c).boxed_local(),
            doc: consensus::validators_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/admin/backup",
            handler: |c, r, _| admin::backup(c, r).boxed_local(),
            doc: admin::backup_doc,
        },
        Route {
            method: Method::POST,
            path: "/api/v11/admin/validators",
            handler: |c, r, _| admin::validators(c, r).boxed_local(),
            doc: admin::validators_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/consensus/status",
            handler: |c, _, _| consensus::status(c).boxed_local(),
            doc: consensus::status_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/openapi.json",
            handler: |c, _, _| std::future::ready(node::openapi(c)).boxed_local(),
            doc: node::openapi_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/quantum/randomness/random-bytes",
            handler: |c, r, _| std::future::ready(quantum::random_bytes(c, &r)).boxed_local(),
            doc: quantum::random_bytes_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/quantum/randomness/transaction-nonce",
            handler: |c, _, _| std::future::ready(quantum::transaction_nonce(c)).boxed_local(),
            doc: quantum::transaction_nonce_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/quantum/randomness/crypto-seed",
            handler: |c, r, _| std::future::ready(quantum::crypto_seed(c, &r)).boxed_local(),
            doc: quantum::crypto_seed_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/quantum/randomness/health",
            handler: |c, _, _| std::future::ready(quantum::health(c)).boxed_local(),
            doc: quantum::health_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/quantum/randomness/info",
            handler: |c, _, _| std::future::ready(quantum::info(c)).boxed_local(),
            doc: quantum::info_doc,
        },
        Route {
            method: Method::GET,
            path: "/api/v11/quantum/randomness/pulse/latest",
            handler: |c, _, _| std::future::ready(quantum::pulse_latest(c)).boxed_local(),
            doc: quantum::pulse_latest_doc,
        },
        // The paths V11 clients used, served by the endpoints they meant (documented as
        // deprecated aliases).
        Route {
            method: Method::GET,
            path: "/api/v11/blockchain/latest",
            handler: |c, _, _| blocks::latest(c).boxed_local(),
            doc: || alias_doc("/api/v11/blocks/latest", blocks::latest_doc()),
        },
        Route {
            method: Method::GET,
            path: "/api/v11/blockchain/stats",
            handler: |c, _, _| node::stats(c).boxed_local(),
            doc: || alias_doc("/api/v11/stats", node::stats_doc()),
        },
        Route {
            method: Method::GET,
            path: "/api/v11/consensus/metrics",
            handler: |c, _, _| consensus::status(c).boxed_local(),
            doc: || alias_doc("/api/v11/consensus/status", consensus::status_doc()),
        },
        Route {
            method: Method::GET,
            path: "/api/v11/system/status",
            handler: |c, _, _| node::health(c, node::Health::Ready).boxed_local(),
            doc: || alias_doc("/api/v11/health", node::health_doc()),
        },
        // The portal: a page for people, not part of the JSON API (left out of its description).
        Route {
            method: Method::GET,
            path: "/",
            handler: |_, r, _| std::future::ready(portal::serve(&r, &portal::INDEX)).boxed_local(),
            doc: portal::undescribed,
        },
        Route {
            method: Method::GET,
            path: "/portal/app.js",
            handler: |_, r, _| std::future::ready(portal::serve(&r, &portal::APP_JS)).boxed_local(),
            doc: portal::undescribed,
        },
        Route {
            method: Method::GET,
            path: "/portal/style.css",
            handler: |_, r, _| {
                std::future::ready(portal::serve(&r, &portal::STYLE_CSS)).boxed_local()
            },
            doc: portal::undescribed,
        },
        Route {
            method: Method::GET,
            path: "/portal/icon.svg",
            handler: |_, r, _| {
                std::future::ready(portal::serve(&r, &portal::ICON_SVG)).boxed_local()
            },
            doc: portal::undescribed,
        },
    ];
}

/// The table as routing, metrics and the OpenAPI document read it: every instantiation lists
/// the same endpoints in the same order, so this one (the node's own types) stands for all.
pub const SPEC: &[Route<Engine, Incoming>] = Routes::<Engine, Incoming>::TABLE;

/// The `route` label of requests whose path matches no endpoint.
pub const UNMATCHED: &str = "unmatched";

/// Metric label slots: one per endpoint, then [`UNMATCHED`].
pub const ROUTE_SLOTS: usize = SPEC.len() + 1;

/// The `route` label of a slot: the endpoint's path template, or [`UNMATCHED`].
pub fn route_label(slot: usize) -> &'static str {
    SPEC.get(slot).map_or(UNMATCHED, |r| r.path)
}

/// Where a request goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup<'p> {
    /// The endpoint at `slot` of the table takes it.
    Found {
        slot: usize,
        params: Params<'p>,
    },
    /// The path is an endpoint's (the first at `slot`) but not with this method; `allow`
    /// lists the methods it takes (the `Allow` header).
    WrongMethod {
        slot: usize,
        allow: String,
    },
    NotFound,
}

impl Lookup<'_> {
    /// The metric label slot of the request.
    pub fn slot(&self) -> usize {
        match self {
            Lookup::Found { slot, .. } | Lookup::WrongMethod { slot, .. } => *slot,
            Lookup::NotFound => ROUTE_SLOTS - 1,
        }
    }
}

/// Finds the endpoint of a request. The path picks the template (the first in the table that
/// fits it, so `/api/v11/transactions/batch` is never a `{txHash}`); the method then picks the
/// endpoint among those of that template.
pub fn lookup<'p>(method: &Method, path: &'p str) -> Lookup<'p> {
    let Some((first, params)) = SPEC
        .iter()
        .enumerate()
        .find_map(|(slot, r)| fit(r.path, path).map(|params| (slot, params)))
    else {
        return Lookup::NotFound;
    };
    let template = SPEC[first].path;
    let same = || {
        SPEC.iter()
            .enumerate()
            .filter(move |(_, r)| r.path == template)
    };
    match same().find(|(_, r)| r.method == *method) {
        Some((slot, _)) => Lookup::Found { slot, params },
        None => Lookup::WrongMethod {
            slot: first,
            allow: same()
                .map(|(_, r)| r.method.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
    }
}

/// The parameters of `path` if it fits `template` segment by segment (`{name}` fits any one
/// segment, the empty one included; anything else only itself).
fn fit<'p>(template: &str, path: &'p str) -> Option<Params<'p>> {
    let mut params = [""; PARAMS_MAX];
    let mut taken = 0;
    let mut want = template.split('/');
    let mut have = path.split('/');
    loop {
        match (want.next(), have.next()) {
            (None, None) => return Some(params),
            (Some(w), Some(h)) if w.starts_with('{') && w.ends_with('}') => {
                *params.get_mut(taken)? = h;
                taken += 1;
            }
            (Some(w), Some(h)) if w == h => {}
            _ => return None,
        }
    }
}

/// The description of a V11 path alias: `target`'s, marked deprecated, naming `target`.
fn alias_doc(target: &str, mut doc: Value) -> Value {
    let summary = doc["summary"].as_str().unwrap_or_default().to_string();
    doc["summary"] = format!("{summary} (V11 alias of {target})").into();
    doc["deprecated"] = true.into();
    doc
}
