//! The metrics of each request: its count and duration, and what its response says (error codes, Fetch's
//! bytes). Here, above the API modules, because it needs the broker (`Apis`) and the dispatcher's
//! [`Reply`]; the metric registry below only takes plain values.

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Instant;

use kafka_protocol::messages::ApiKey;

use super::Reply;
use crate::api::Apis;
use crate::api::response_metrics::ResponseMetrics;

thread_local! {
    /// The broker whose request this thread is handling (set by [`in_request`]), so response observers can
    /// record without every API call site passing it along.
    static CURRENT: RefCell<Option<Arc<Apis>>> = const { RefCell::new(None) };
}

/// Restores the previous request scope when dropped (also on panic).
struct ScopeGuard(Option<Arc<Apis>>);

impl Drop for ScopeGuard {
    fn drop(&mut self) {
        let previous = self.0.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Runs the synchronous part of one request (`route`) and records it: the request count and its duration
/// (for a reply computed later, when it is ready, with the parked time separately). Responses built inside
/// record their error codes (see [`observe_response`]).
pub fn in_request(apis: &Arc<Apis>, api: ApiKey, route: impl FnOnce() -> Reply) -> Reply {
    if !apis.metrics.is_enabled() {
        return route();
    }
    let started = Instant::now();
    let reply = {
        let previous = CURRENT.with(|c| c.borrow_mut().replace(apis.clone()));
        let _restore = ScopeGuard(previous);
        route()
    };
    match reply {
        Reply::Later(pending) => {
            let apis = apis.clone();
            let parked_at = Instant::now();
            Reply::Later(Box::pin(async move {
                let response = pending.await;
                apis.metrics.request_parked(api, parked_at.elapsed());
                apis.metrics.request_done(api, started.elapsed());
                response
            }))
        }
        other => {
            apis.metrics.request_done(api, started.elapsed());
            other
        }
    }
}

/// Records what a response says (error codes; Fetch's bytes and records per topic), for the broker whose
/// request this thread is handling. Does nothing outside [`in_request`].
pub fn observe_response<R: ResponseMetrics>(response: &R) {
    CURRENT.with(|c| {
        if let Some(apis) = c.borrow().as_ref() {
            response.observe(apis);
        }
    });
}

/// A handle to record a response that is computed later (on another task), taken while the request is
/// being handled.
pub struct LaterObserver(Option<Arc<Apis>>);

impl LaterObserver {
    pub fn observe<R: ResponseMetrics>(&self, response: &R) {
        if let Some(apis) = &self.0 {
            response.observe(apis);
        }
    }
}

/// See [`LaterObserver`].
pub fn later_observer() -> LaterObserver {
    LaterObserver(CURRENT.with(|c| c.borrow().clone()))
}
