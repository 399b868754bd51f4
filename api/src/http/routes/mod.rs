//! The endpoints of the HTTP API (documented in `docs/api.md`). Everything here is independent
//! of sockets and executors: [`handle`] finds a request's endpoint in the route [`table`] and
//! turns the request into a response using a [`Backend`] (the engine in production, a fake in
//! the tests).
//!
//! One module per kind of endpoint: [`transactions`], [`accounts`], [`blocks`], [`consensus`]
//! (and validators), [`admin`], [`quantum`] (randomness), [`node`] (health, info, figures,
//! metrics, this API's description), [`portal`] (the page for people at `/`); [`archive`] reads
//! the PostgreSQL archive for them, [`request`] reads requests, [`auth`] says who sends them,
//! [`response`] writes answers.

pub mod accounts;
pub mod admin;
pub mod archive;
pub mod auth;
pub mod backend;
pub mod blocks;
pub mod consensus;
pub mod node;
pub mod portal;
pub mod quantum;
pub mod request;
pub mod response;
pub mod table;
pub mod transactions;

#[cfg(test)]
pub(crate) mod tests;

pub use backend::{Backend, MembershipResults};

use super::error::ApiError;
use super::{HttpSettings, Surface};
use crate::http::in_flight::InFlightCounts;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Body;
use hyper::{Request, Response};
use std::sync::atomic::Ordering;
use std::time::Instant;
use table::{route_label, Lookup, Routes};
use tracing::Instrument;

/// What a request handler sees: its core, the ledger, the settings (shared figures included).
pub struct Ctx<B> {
    pub core: usize,
    pub backend: B,
    pub settings: HttpSettings,
    /// The memory this core's request bodies hold while they are read.
    pub bodies: crate::http::limits::BodyBudget,
    /// Each bearer token's request bucket on this core.
    pub principals: crate::http::limits::PrincipalRates,
    /// This core's gRPC state (its health service).
    pub grpc: crate::grpc::CoreState,
}

impl<B> Ctx<B> {
    pub fn new(core: usize, backend: B, settings: HttpSettings) -> Ctx<B> {
        let bodies = crate::http::limits::BodyBudget::new(settings.body_bytes_budget_per_core);
        let principals = crate::http::limits::PrincipalRates::new(settings.request_rate_per_token);
        Ctx {
            core,
            backend,
            settings,
            bodies,
            principals,
            grpc: crate::grpc::CoreState::default(),
        }
    }
}

pub type HttpResponse = Response<Full<Bytes>>;
pub type Answer = Result<HttpResponse, ApiError>;
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request body the endpoints can read (hyper's in production, any body in the tests).
pub trait RequestBody: Body<Data = Bytes, Error: Into<BoxError>> + 'static {}

impl<T> RequestBody for T
where
    T: Body<Data = Bytes> + 'static,
    T::Error: Into<BoxError>,
{
}

/// Counts a request in its core's `in_flight` for as long as it is handled (also when its
/// future is dropped because the client went away).
pub(crate) struct InFlight<'a>(&'a InFlightCounts, usize);

impl<'a> InFlight<'a> {
    pub(crate) fn enter(counts: &'a InFlightCounts, core: usize) -> InFlight<'a> {
        counts.enter(core);
        InFlight(counts, core)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.exit(self.1);
    }
}

/// Answers one request. Never panics on input; every failure is the contract's error shape.
pub async fn handle<B: Backend, T: RequestBody>(ctx: &Ctx<B>, request: Request<T>) -> HttpResponse {
    let _in_flight = InFlight::enter(&ctx.settings.in_flight, ctx.core);
    let started = Instant::now();
    let uri = request.uri().clone();
    let method = request.method().clone();
    let found = table::lookup(&method, uri.path());
    let slot = found.slot();
    // One span per request at debug level (a disabled span costs a level check): whatever the
    // request logs carries its method, route template and core; `status` is filled in at the end.
    let span = tracing::debug_span!(
        "request",
        method = %method,
        route = route_label(slot),
        core = ctx.core,
        status = tracing::field::Empty,
    );
    let cors = &ctx.settings.cors;
    let origin = (!cors.is_off())
        .then(|| request.headers().get(hyper::header::ORIGIN).cloned())
        .flatten();
    let mut response = if ctx.settings.draining.load(Ordering::SeqCst) {
        ApiError::shutting_down().into_response()
    } else if let Some(headers) = cors.preflight(&method, request.headers()) {
        let mut preflight = Response::new(Full::new(Bytes::new()));
        *preflight.status_mut() = crate::http::cors::PREFLIGHT_STATUS;
        *preflight.headers_mut() = headers;
        preflight
    } else {
        match dispatch(ctx, request, found).instrument(span.clone()).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    };
    if origin.is_some() {
        cors.decorate(origin.as_ref(), response.headers_mut());
    }
    if !span.is_disabled() {
        span.record("status", response.status().as_u16());
        span.in_scope(|| {
            tracing::debug!(
                elapsed_us = started.elapsed().as_micros() as u64,
                "request served"
            )
        });
    }
    ctx.settings.metrics.record_request(
        ctx.core,
        slot,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// Runs the endpoint a request was found to go to, or answers why none takes it.
async fn dispatch<B: Backend, T: RequestBody>(
    ctx: &Ctx<B>,
    request: Request<T>,
    found: Lookup<'_>,
) -> Answer {
    if ctx.settings.surface == Surface::Grpc {
        return Err(ApiError::new(
            super::error::ErrorCode::NotFound,
            format!(
                "{} {} is HTTP: this listener (--grpc-addr) serves gRPC only (content-type \
                 application/grpc over HTTP/2); the HTTP API is on --http-addr",
                request.method(),
                request.uri().path()
            ),
        ));
    }
    match found {
        Lookup::Found { slot, .. }
            if ctx.settings.surface == Surface::Public
                && Routes::<B, T>::TABLE[slot]
                    .path
                    .starts_with(admin::PATH_PREFIX) =>
        {
            Err(ApiError::admin_listener_only(
                request.method().as_str(),
                request.uri().path(),
            ))
        }
        Lookup::Found { slot, params } => {
            (Routes::<B, T>::TABLE[slot].handler)(ctx, request, params).await
        }
        Lookup::WrongMethod { allow, .. } => Err(ApiError::method_not_allowed(
            request.method().as_str(),
            request.uri().path(),
            allow,
        )),
        Lookup::NotFound => Err(ApiError::route_not_found(
            request.method().as_str(),
            request.uri().path(),
        )),
    }
}
