//! `grpc.health.v1.Health` (tonic-health's service), fed from the node's own health checks:
//! `""` (the node) and every `aurigraph.v11` service are `SERVING` while the ledger check is
//! `UP` (every shard has a leader), `NOT_SERVING` otherwise; an unknown service name is
//! `NOT_FOUND`. `Check` refreshes the statuses before answering; `Watch` streams are fed by a
//! refresh every [`WATCH_REFRESH`] on each core that has served one.

use super::{GrpcBody, GrpcResponse};
use crate::http::routes::node::{checks, Health};
use crate::http::routes::Backend;
use crate::http::routes::Ctx;
use hyper::Request;
use std::cell::OnceCell;
use std::rc::Rc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::{HealthReporter, HealthService};
use tonic_health::ServingStatus;

pub const CHECK: &str = "/grpc.health.v1.Health/Check";
pub const WATCH: &str = "/grpc.health.v1.Health/Watch";

/// How often a core that serves `Watch` streams looks at the node's health.
pub const WATCH_REFRESH: Duration = Duration::from_secs(1);

/// One core's health service and the reporter that sets its statuses.
pub struct CoreHealth {
    reporter: HealthReporter,
    server: HealthServer<HealthService>,
    watched: std::cell::Cell<bool>,
}

/// One core's health service, made at its first use.
#[derive(Default)]
pub struct CoreHealthCell {
    health: OnceCell<Rc<CoreHealth>>,
}

impl CoreHealthCell {
    fn health(&self) -> Rc<CoreHealth> {
        self.health
            .get_or_init(|| {
                let reporter = HealthReporter::new();
                let server =
                    HealthServer::new(HealthService::from_health_reporter(reporter.clone()));
                Rc::new(CoreHealth {
                    reporter,
                    server,
                    watched: std::cell::Cell::new(false),
                })
            })
            .clone()
    }
}

/// Sets every status from the node's checks now.
async fn refresh<B: Backend>(ctx: &Ctx<B>, health: &CoreHealth) {
    let (up, _) = checks(ctx, Health::Ready).await;
    let status = if up {
        ServingStatus::Serving
    } else {
        ServingStatus::NotServing
    };
    for service in std::iter::once("").chain(aurigraph_proto::SERVICES.iter().copied()) {
        health.reporter.set_service_status(service, status).await;
    }
}

/// Serves `Check` or `Watch`.
pub async fn serve<B: Backend, T: GrpcBody>(ctx: &Rc<Ctx<B>>, request: Request<T>) -> GrpcResponse {
    let health = ctx.grpc.health.health();
    refresh(ctx, &health).await;
    if request.uri().path() == WATCH && !health.watched.replace(true) {
        let ctx = ctx.clone();
        let watched = health.clone();
        glommio::spawn_local(async move {
            while !ctx.settings.draining.load(Ordering::Relaxed) {
                glommio::timer::sleep(WATCH_REFRESH).await;
                refresh(&ctx, &watched).await;
            }
        })
        .detach();
    }
    let mut server = health.server.clone();
    match tower_service::Service::call(&mut server, request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}
