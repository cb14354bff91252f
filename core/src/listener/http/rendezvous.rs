//! HTTP over a rendezvous socket: the WebSocket to a request's address, opened by the
//! listener for a request the service sends there (too large, chunked or slow for the
//! control channel) or for a response too large or slow for it. One request at a time
//! travels on it: its `request` message, its body streamed in pieces, the response back.
//! The service routes the sender's later requests to the same socket, so it is served
//! until either side closes it, or it has been idle for [`HttpContext::idle_timeout`].

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::listener::http::exchange::{self, Exchange, Route, State};
use crate::listener::http::message::{parse_request, RequestHead, RequestMessage, Unusable};
use crate::listener::http::{ExchangeEvent, HttpRequest, RequestBody};
use crate::listener::{request, ChannelSink, ListenerSink};
use crate::socket::{
    self, Command, ConnectOptions, Event, Handle, SocketError, SocketOptions, CONTROL_EVENT_COST,
};

/// Unconsumed bytes of a request body that a rendezvous holds before it stops reading.
const BODY_HIGH_WATER: usize = 256 * 1024;

/// What every exchange and rendezvous of one listener share.
pub(crate) struct HttpContext {
    /// The owner, who takes requests.
    pub sink: Arc<dyn ListenerSink>,
    /// The Hybrid Connection's path, for `req.url`.
    pub entity: String,
    /// Extra trusted certificates.
    pub ca: Vec<Vec<u8>>,
    /// The listener's proxies.
    pub proxy: Option<Arc<crate::socket::ProxyConfig>>,
    /// Time allowed to open a rendezvous.
    pub connect_timeout: Duration,
    /// How long the service waits for a response (60 s).
    pub request_timeout: Duration,
    /// How long a rendezvous with no request is kept.
    pub idle_timeout: Duration,
    /// The owner serves HTTP (else requests are answered 501).
    pub enabled: Arc<AtomicBool>,
    /// Cancelled when the listener stops: every exchange and rendezvous ends.
    pub cancel: CancellationToken,
    /// Ids of requests in progress on the control channel: a repeated one is ignored.
    pub in_flight: Mutex<HashSet<String>>,
    /// Exchanges whose owner sent the response itself (see `Exchange::end_with`), whose
    /// tasks are still to be told to end.
    pub ended_inline: Mutex<Vec<Arc<State>>>,
    /// Exchanges whose task has not started (see `exchange::prepare`), oldest first, with
    /// when each was handed over.
    pub waiting: Mutex<VecDeque<(Instant, Arc<State>)>>,
    /// The listener's runtime, where exchanges' tasks start and where what the control
    /// channel brings starts its tasks (the owner's thread, which may read the channel and
    /// answer requests, is not one of its threads).
    pub runtime: tokio::runtime::Handle,
}

/// How often the listener tells the tasks of exchanges answered inline to end, when no new
/// request does it sooner: bounds how long they wait (and what they hold) after a burst.
pub(crate) const END_INLINE_EVERY: Duration = Duration::from_secs(1);

impl HttpContext {
    /// The owner sent `state`'s response itself, on its own thread: its task ends the next
    /// time a tokio thread of the listener looks ([`HttpContext::end_inline_tasks`]), rather
    /// than being woken from the owner's thread now.
    pub(crate) fn inline_done(&self, state: Arc<State>) {
        if let Ok(mut list) = self.ended_inline.lock() {
            list.push(state);
        }
    }

    /// An exchange's task waits to start (see `exchange::prepare`).
    pub(crate) fn waiting_task(&self, state: Arc<State>) {
        if let Ok(mut list) = self.waiting.lock() {
            // Those answered already go now (a few at a time), rather than with the sweep:
            // under load, that keeps the list short.
            for _ in 0..4 {
                match list.front() {
                    Some((_, s)) if !s.task_waiting() => {
                        list.pop_front();
                    }
                    _ => break,
                }
            }
            list.push_back((Instant::now(), state));
        }
    }

    /// Starts the tasks of exchanges handed over at least [`END_INLINE_EVERY`] ago that are
    /// still waiting (their owner has not answered yet: the task keeps the relay's
    /// deadline), or all of them once the listener stops (they end at once); forgets those
    /// that are done.
    pub(crate) fn start_overdue_tasks(&self) {
        let all = self.cancel.is_cancelled();
        let due: Vec<Arc<State>> = match self.waiting.lock() {
            Ok(mut list) => {
                let mut due = Vec::new();
                while let Some((at, _)) = list.front() {
                    if !all && at.elapsed() < END_INLINE_EVERY {
                        break;
                    }
                    if let Some((_, state)) = list.pop_front() {
                        due.push(state);
                    }
                }
                due
            }
            Err(_) => Vec::new(),
        };
        for state in due {
            state.start_task();
        }
    }

    /// Wakes the tasks of exchanges answered inline, which then end. On a tokio thread:
    /// when a request arrives, and every [`END_INLINE_EVERY`].
    pub(crate) fn end_inline_tasks(&self) {
        let list = self
            .ended_inline
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default();
        for state in list {
            state.wake_task();
        }
    }
}

/// Tells the tasks of exchanges answered inline to end, every [`END_INLINE_EVERY`], until
/// the listener stops (when every exchange's task ends anyway).
pub(crate) async fn end_inline_tasks_until_closed(ctx: Arc<HttpContext>) {
    let mut every = tokio::time::interval(END_INLINE_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ctx.cancel.cancelled() => break,
            _ = every.tick() => {
                ctx.end_inline_tasks();
                ctx.start_overdue_tasks();
            }
        }
    }
    ctx.end_inline_tasks();
    ctx.start_overdue_tasks();
}

/// A request received, for the owner.
pub(crate) fn http_request(
    ctx: &HttpContext,
    head: &RequestHead,
    body: RequestBody,
) -> HttpRequest {
    HttpRequest {
        id: head.id.clone(),
        method: head.method.clone(),
        url: request::target_url(&head.target, &ctx.entity),
        headers: head.headers.clone(),
        remote_address: head.remote_address.clone(),
        remote_port: head.remote_port,
        body,
    }
}

/// Hands a request to the owner and starts its exchange; answers 501 itself when nobody
/// serves HTTP. Returns the exchange's state if one started.
pub(crate) fn start(
    ctx: &Arc<HttpContext>,
    head: &RequestHead,
    body: RequestBody,
    route: Route,
) -> Option<Arc<State>> {
    if !ctx.enabled.load(Ordering::SeqCst) {
        log::debug!("listener: request {}: no 'request' listener (501)", head.id);
        exchange::answer(&route, &head.id, 501, "Not Implemented");
        return None;
    }
    ctx.end_inline_tasks();
    let exchange = Exchange::new();
    let request = http_request(ctx, head, body);
    let prepared = exchange::prepare(
        &exchange,
        ctx,
        head.id.clone(),
        head.method.eq_ignore_ascii_case("HEAD"),
        route.clone(),
    );
    let Some(sink) = ctx.sink.http_request(request, &exchange) else {
        prepared.drop_unstarted(&exchange);
        exchange::answer(&route, &head.id, 501, "Not Implemented");
        return None;
    };
    prepared.start(&exchange, sink);
    Some(exchange.state.clone())
}

/// Opens a rendezvous socket to `address` (as given: the address is its own credential)
/// and waits for its handshake.
pub(crate) async fn open(
    ctx: &HttpContext,
    address: &str,
) -> Result<(Handle, mpsc::UnboundedReceiver<Event>), SocketError> {
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut options = SocketOptions::default();
    options.limits.max_payload = 0;
    options.limits.stream_binary = true;
    options.inbound_high_water = BODY_HIGH_WATER;
    let handle = socket::connect(
        ConnectOptions {
            url: address.to_owned(),
            headers: Vec::new(),
            protocols: Vec::new(),
            handshake_timeout: ctx.connect_timeout,
            deflate: None,
            ca: ctx.ca.clone(),
            proxy: ctx.proxy.clone(),
        },
        options,
        Arc::new(ChannelSink::new(tx)),
    );
    let mut failure = None;
    loop {
        match events.recv().await {
            Some(Event::Open { .. }) => return Ok((handle, events)),
            Some(Event::Error(e)) => failure = Some(e),
            Some(Event::Closed { .. }) | None => {
                return Err(failure.unwrap_or_else(|| {
                    SocketError::coded("the rendezvous closed during its handshake", "ECONNRESET")
                }))
            }
            Some(_) => {}
        }
    }
}

/// Opens the rendezvous of a request the service sent there, and serves it.
pub(crate) async fn fetch(ctx: Arc<HttpContext>, address: String) {
    let opened = tokio::select! {
        r = open(&ctx, &address) => r,
        _ = ctx.cancel.cancelled() => return,
    };
    match opened {
        Ok((socket, events)) => serve(socket, events, ctx, None).await,
        Err(e) => log::debug!(
            "listener: cannot open a request's rendezvous: {}",
            e.message
        ),
    }
}

/// Where the pieces of a request's body go.
enum Body {
    /// No body is being read.
    None,
    /// To this exchange's owner.
    To(Arc<State>),
    /// Nowhere: a body no one reads (answered without an owner).
    Discard,
}

/// The rendezvous loop's state.
struct Rendezvous {
    socket: Handle,
    ctx: Arc<HttpContext>,
    /// The exchange on this socket now; the next request waits for its end.
    current: Option<Arc<State>>,
    body: Body,
    /// Requests that came before the current exchange ended.
    held: VecDeque<String>,
    last_error: Option<SocketError>,
}

impl Rendezvous {
    /// A request message: starts its exchange (or holds it while one is running).
    fn on_text(&mut self, text: String) {
        if self.current.is_some() || !matches!(self.body, Body::None) {
            self.held.push_back(text);
            return;
        }
        let value = match serde_json::from_str::<serde_json::Value>(&text) {
            Ok(v) => v,
            Err(_) => {
                log::debug!("listener: ignoring a rendezvous message that is not JSON");
                return;
            }
        };
        let Some(r) = value.get("request") else {
            log::debug!("listener: ignoring an unknown rendezvous message");
            return;
        };
        let route = Route::Rendezvous(self.socket.clone());
        let head = match parse_request(r) {
            Ok(RequestMessage::Inline(head)) => head,
            Ok(RequestMessage::Rendezvous { .. }) | Err(Unusable::Ignore(_)) => {
                log::debug!("listener: ignoring an incomplete request on a rendezvous");
                return;
            }
            Err(Unusable::HeadersTooLarge(head)) => {
                exchange::answer(&route, &head.id, 431, "Request Header Fields Too Large");
                if head.body {
                    self.body = Body::Discard;
                }
                return;
            }
        };
        let body = if head.body {
            RequestBody::Streamed
        } else {
            RequestBody::Empty
        };
        self.current = start(&self.ctx, &head, body, route);
        self.body = match (&self.current, head.body) {
            (_, false) => Body::None,
            (Some(state), true) => {
                state.set_body_source(self.socket.clone());
                Body::To(state.clone())
            }
            (None, true) => Body::Discard,
        };
    }

    /// A piece of the current request's body.
    fn on_chunk(&mut self, data: Vec<u8>, last: bool) {
        match &self.body {
            Body::To(state) if !state.is_over() => {
                state.emit(ExchangeEvent::Body {
                    data,
                    source: self.socket.shared.clone(),
                });
                if last {
                    state.emit(ExchangeEvent::BodyEnd);
                }
            }
            Body::To(_) | Body::Discard | Body::None => {
                // The owner is gone (or never was): the body is read and dropped, so that
                // the sender's next request can follow.
                self.socket.shared.consumed(data.len());
                self.socket.shared.resume();
            }
        }
        if last {
            self.body = Body::None;
        }
    }

    /// The current exchange is over: the next request may start.
    fn next(&mut self) {
        self.current = None;
        if matches!(self.body, Body::To(_)) {
            // Answered before its body was all read: the rest is drained here, so that the
            // sender's next request can follow.
            self.body = Body::Discard;
        }
        // Reading goes on whatever the owner's reader left it as: a body's reader that
        // paused at its last piece is never asked for more (a stream that has ended reads no
        // further), and the sender's next request comes on this socket.
        self.socket.shared.resume();
        while self.current.is_none() && matches!(self.body, Body::None) {
            let Some(text) = self.held.pop_front() else {
                break;
            };
            self.on_text(text);
        }
    }

    /// The socket is gone: the exchange on it fails.
    fn lost(&mut self) {
        let e = self.last_error.take().unwrap_or_else(|| {
            SocketError::coded("the relay closed the request's connection", "ECONNRESET")
        });
        if let Some(state) = self.current.take() {
            state.finish(ExchangeEvent::Aborted(e));
        }
    }
}

/// Serves requests on a rendezvous socket until it closes, the listener stops, or it has
/// been idle too long. `current` is an exchange already answering over it (the one that
/// opened it).
pub(crate) async fn serve(
    socket: Handle,
    mut events: mpsc::UnboundedReceiver<Event>,
    ctx: Arc<HttpContext>,
    current: Option<Arc<State>>,
) {
    let mut r = Rendezvous {
        socket,
        ctx: ctx.clone(),
        current,
        body: Body::None,
        held: VecDeque::new(),
        last_error: None,
    };
    let mut idle_at = Instant::now() + ctx.idle_timeout;
    loop {
        let busy = r.current.clone();
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Message { binary: false, frames }) => {
                    let bytes: usize = frames.iter().map(Vec::len).sum();
                    r.socket.shared.consumed(bytes);
                    let text = frames.concat();
                    match String::from_utf8(text) {
                        Ok(t) => r.on_text(t),
                        Err(_) => log::debug!("listener: ignoring a rendezvous message that is not UTF-8"),
                    }
                }
                Some(Event::Message { frames, .. }) => {
                    r.socket.shared.consumed(frames.iter().map(Vec::len).sum());
                }
                Some(Event::Chunk { data, last, .. }) => r.on_chunk(data, last),
                Some(Event::Written { bytes, .. }) => {
                    if let Some(state) = &r.current {
                        state.sent(bytes);
                    }
                }
                Some(Event::Ping(p) | Event::Pong(p)) => r.socket.shared.consumed(p.len() + CONTROL_EVENT_COST),
                Some(Event::Error(e)) => r.last_error = Some(e),
                Some(Event::Closed { .. }) | None => {
                    r.lost();
                    return;
                }
                Some(_) => {}
            },
            _ = async { if let Some(s) = &busy { s.over().await } }, if busy.is_some() => {
                r.next();
                idle_at = Instant::now() + ctx.idle_timeout;
            }
            _ = tokio::time::sleep_until(idle_at), if r.current.is_none() => {
                log::debug!("listener: closing an idle rendezvous");
                r.socket.send(Command::Close { code: Some(1000), reason: Vec::new() });
                idle_at = Instant::now() + ctx.idle_timeout;
            }
            _ = ctx.cancel.cancelled() => {
                r.socket.send(Command::Close { code: Some(1001), reason: Vec::new() });
                r.lost();
                // The socket's own close completes in its task.
                return;
            }
        }
    }
}
