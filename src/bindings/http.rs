//! Bindings for HTTP requests a listener serves (`RelayedServer`'s `'request'`): each
//! exchange is an object of the hub, addressed by the id its `request` event carries; its
//! events go up under that id, and JavaScript writes the response to it by id.

use std::any::Any;
use std::sync::Arc;

use hyco_core::listener::{Exchange, ExchangeEvent, ExchangeSink, HttpRequest, RequestBody};
use napi_derive::napi;

use crate::bindings::events::up;
use crate::bindings::flat::Flat;
use crate::bindings::hub::{self, id_of, Hub, Id, Target, Then};
use crate::bindings::listener::error_list;

/// Where an exchange's events go: the hub, tagged with its id.
pub struct HubExchangeSink {
    id: Id,
    hub: Arc<Hub>,
}

impl ExchangeSink for HubExchangeSink {
    fn push(&self, event: ExchangeEvent) {
        let (id, hub) = (self.id, &*self.hub);
        match event {
            ExchangeEvent::Body { data, source } => {
                let bytes = data.len();
                hub.push(
                    id,
                    up::HttpBody(Flat::Bytes(data)),
                    Then::Consumed(source, bytes),
                );
            }
            ExchangeEvent::BodyEnd => hub.push(id, up::HttpBodyEnd(), Then::Nothing),
            ExchangeEvent::Drained => hub.push(id, up::HttpDrained(), Then::Nothing),
            // JavaScript treats its own end of the response as the exchange's (see
            // lib/http/socket.js): this only has to reach the hub, not wake JavaScript;
            // unless every object left is ending so (the listener closed meanwhile): then
            // it goes now, so that the event loop, and the process, can end.
            ExchangeEvent::Finished => hub.push_last_quiet(id, up::HttpFinished()),
            ExchangeEvent::Aborted(e) => {
                hub.push(id, up::HttpAborted(error_list(Some(e))), Then::Last)
            }
        }
    }
}

impl Target for Exchange {
    fn stop(&self) {
        self.abort();
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Registers an exchange for listener `listener`'s request and queues the request's event;
/// `None` while the environment is being torn down.
pub fn take_request(
    hub: &Arc<Hub>,
    listener: Id,
    request: HttpRequest,
    exchange: &Exchange,
) -> Option<Arc<dyn ExchangeSink>> {
    let id = hub.next_id();
    if !hub.insert(id, Arc::new(exchange.clone())) {
        return None;
    }
    let (body, streamed) = match request.body {
        RequestBody::Empty => (Flat::Null, false),
        RequestBody::Complete(b) => (Flat::Bytes(b), false),
        RequestBody::Streamed => (Flat::Null, true),
    };
    hub.push(
        listener,
        up::Request(
            Flat::Num(id as f64),
            Flat::Str(request.method),
            Flat::Str(request.url),
            Flat::strs(
                request
                    .headers
                    .into_iter()
                    .flat_map(|(k, v)| [k, v])
                    .collect(),
            ),
            Flat::Str(request.id),
            Flat::opt_str(request.remote_address),
            Flat::opt_num(request.remote_port),
            body,
            Flat::Bool(streamed),
        ),
        Then::Nothing,
    );
    Some(Arc::new(HubExchangeSink {
        id,
        hub: hub.clone(),
    }))
}

/// Runs `f` on exchange `id`; `None` when it is gone.
fn with_exchange<R>(id: f64, f: impl FnOnce(&Exchange) -> R) -> Option<R> {
    hub::current().ok().and_then(|hub| hub.with(id_of(id), f))
}

/// Bytes of exchange `id`'s response, as Node serializes it. False: wait for `httpDrained`
/// (or the exchange is gone).
#[napi(js_name = "httpWrite", catch_unwind)]
pub fn http_write(id: f64, data: &[u8]) -> bool {
    with_exchange(id, |x| x.write(data.to_vec())).unwrap_or(false)
}

/// Exchange `id`'s response is complete, with its last bytes if any (one call where a
/// response is written and ended in one tick).
#[napi(js_name = "httpEnd", catch_unwind)]
pub fn http_end(id: f64, data: Option<&[u8]>) {
    with_exchange(id, |x| x.end_with(data.map(<[u8]>::to_vec)));
}

/// Gives up on exchange `id`'s response.
#[napi(js_name = "httpAbort", catch_unwind)]
pub fn http_abort(id: f64) {
    with_exchange(id, Exchange::abort);
}

/// Stops reading exchange `id`'s request body.
#[napi(js_name = "httpPause", catch_unwind)]
pub fn http_pause(id: f64) {
    with_exchange(id, Exchange::pause_body);
}

/// Reads exchange `id`'s request body again.
#[napi(js_name = "httpResume", catch_unwind)]
pub fn http_resume(id: f64) {
    with_exchange(id, Exchange::resume_body);
}
