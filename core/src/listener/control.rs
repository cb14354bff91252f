//! What the service sends on the control channel, handled where it is read.
//!
//! The channel's socket hands its messages to [`ControlSink`], on the thread that read
//! them and under the connection's lock: an `accept` or a `request` goes to the owner from
//! there, in the order the service sent them. A request used to cross to the session's
//! task first (a task switch, often a thread's wake-up) before it reached the owner; and
//! when the owner's thread reads the channel itself (inline reads, see
//! `crate::socket::inline`), a request now reaches JavaScript in the same callback that
//! read it, with no tokio thread involved at all.
//!
//! Messages read before the owner was told the channel is online wait for it, and are then
//! handled by the listener's task, in order ([`ControlSink::serve`]); while our close frame
//! is on its way they are still served ([`ControlSink::wind_down`]); once the session ends
//! ([`ControlSink::retire`]), messages are dropped. The socket's other events (open, pings
//! and pongs, errors, the close) go on to the session's task ([`super::session`]), which
//! keeps the channel's timers.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::listener::accept::{self, InFlight, Owner};
use crate::listener::http::message::{parse_request, RequestHead, RequestMessage, Unusable};
use crate::listener::http::{self, HttpContext, RequestBody, Route};
use crate::listener::spare::SparePool;
use crate::listener::{ListenerEvent, ListenerOptions, ListenerSink};
use crate::socket::{Event, EventSink, Handle};

/// What handling the service's messages needs, for the listener's whole life.
pub(super) struct ControlContext {
    pub(super) opts: ListenerOptions,
    pub(super) sink: Arc<dyn ListenerSink>,
    pub(super) auto_accept: Arc<AtomicBool>,
    pub(super) spares: Option<Arc<SparePool>>,
    pub(super) accepting: Arc<InFlight>,
    pub(super) http: Arc<HttpContext>,
    pub(super) control_tap: Arc<AtomicBool>,
}

impl ControlContext {
    /// The owner's side, as the accept and session code take it.
    pub(super) fn owner(&self) -> Owner<'_> {
        Owner {
            sink: &*self.sink,
            auto_accept: &self.auto_accept,
            spares: self.spares.as_ref(),
            accepting: &self.accepting,
        }
    }
}

/// Where the channel is in its life, for the service's messages.
enum Phase {
    /// Open, but the owner has not been told yet (`online`): messages wait, so that none
    /// reaches the owner before it.
    Opening(Vec<(bool, Vec<u8>)>),
    /// Served: messages are handled as they come.
    Live,
    /// Our close frame is on its way (the owner closes the listener, or asked for a fresh
    /// channel): what the service sent before it saw that frame is still handled. An
    /// accept goes to the owner (which accepts it, or refuses it 503 when closing: its
    /// address stays valid whatever happens to this channel); a request's response goes
    /// over its rendezvous, as the channel takes no more frames.
    Closing,
    /// The session is over or ending (closing, reopening, lost, the listener closed): a
    /// message read now is dropped, as the session always dropped one then.
    Retired,
}

/// The messages' side of the channel, under one lock: messages are handled one at a
/// time, in order.
struct Dispatch {
    phase: Phase,
    /// An HTTP request whose body is the next binary message on the channel (`None` in
    /// the request: the body of a refused request, to be dropped).
    awaiting_body: Option<Option<RequestHead>>,
}

/// The control channel socket's sink: handles messages at once, and forwards the rest of
/// the socket's events to the session's task.
pub(super) struct ControlSink {
    ctx: Arc<ControlContext>,
    /// The channel itself: responses and refusals go back on it.
    channel: Handle,
    events: Mutex<mpsc::UnboundedSender<Event>>,
    dispatch: Mutex<Dispatch>,
    /// The socket asked for inline reads during the task's turn: the owner is told when
    /// the turn is over and the connection's lock free (told sooner, its first read would
    /// find the lock taken and give reading back to the task).
    inline_wanted: AtomicBool,
    /// How dense the service's messages are (under the connection's lock: one reader at a
    /// time).
    rate: Mutex<Rate>,
}

/// The service's messages per second above which the control channel is read by tokio's
/// threads rather than the owner's: at saturation, reading inline puts all of a request's
/// listener CPU on the owner's thread (83 µs per small GET against 55 with tokio reading,
/// the same in all), which bounds a listener with cores to spare at a lower rate; below it,
/// inline reads save a quarter of the listener's CPU per request (`bench/RESULTS.md`).
const DENSE_RATE: u64 = 2_000;

/// The rate below which the owner may read the channel again (apart from [`DENSE_RATE`],
/// so that a rate near either does not make reading change hands back and forth).
const SPARSE_RATE: u64 = 1_000;

/// The window over which the rate is counted.
const RATE_WINDOW: Duration = Duration::from_millis(100);

/// The rate of the service's messages, counted over windows of [`RATE_WINDOW`], and
/// whether it is dense (above [`DENSE_RATE`], until it falls below [`SPARSE_RATE`]).
struct Rate {
    since: Instant,
    count: u64,
    dense: bool,
}

impl Rate {
    fn new(now: Instant) -> Self {
        Rate {
            since: now,
            count: 0,
            dense: false,
        }
    }

    /// A message at `now`; returns whether the traffic is dense.
    fn message(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= RATE_WINDOW * 2 {
            // Silence for a window or more: the count before it says nothing of the rate
            // now (a burst and then a pause is not dense traffic).
            *self = Rate::new(now);
        }
        self.count += 1;
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed >= RATE_WINDOW {
            let per_second = self.count * 1000 / (elapsed.as_millis() as u64).max(1);
            if per_second > DENSE_RATE {
                self.dense = true;
            } else if per_second < SPARSE_RATE {
                self.dense = false;
            }
            self.since = now;
            self.count = 0;
        }
        self.dense
    }

    /// Whether the traffic is dense (as of the last message, or sparse again if none came
    /// for a window).
    fn dense(&self, now: Instant) -> bool {
        self.dense && now.saturating_duration_since(self.since) < RATE_WINDOW * 2
    }
}

impl ControlSink {
    pub(super) fn new(
        ctx: Arc<ControlContext>,
        channel: Handle,
        events: mpsc::UnboundedSender<Event>,
    ) -> Self {
        ControlSink {
            ctx,
            channel,
            events: Mutex::new(events),
            dispatch: Mutex::new(Dispatch {
                phase: Phase::Opening(Vec::new()),
                awaiting_body: None,
            }),
            inline_wanted: AtomicBool::new(false),
            rate: Mutex::new(Rate::new(Instant::now())),
        }
    }

    /// The channel.
    pub(super) fn channel(&self) -> &Handle {
        &self.channel
    }

    /// The owner has been told the channel is online: messages are handled from now on,
    /// those that came meanwhile first.
    pub(super) fn serve(&self) {
        let Ok(mut d) = self.dispatch.lock() else {
            return;
        };
        // Only from Opening: a session already over stays over.
        if !matches!(d.phase, Phase::Opening(_)) {
            return;
        }
        let Phase::Opening(held) = std::mem::replace(&mut d.phase, Phase::Live) else {
            return;
        };
        for (binary, data) in held {
            self.handle(&mut d, binary, &data);
        }
    }

    /// Our close frame is about to go: later messages are still served (see
    /// [`Phase::Closing`]) until [`ControlSink::retire`].
    pub(super) fn wind_down(&self) {
        if let Ok(mut d) = self.dispatch.lock() {
            if matches!(d.phase, Phase::Live) {
                d.phase = Phase::Closing;
            }
        }
    }

    /// The session is over or ending: later messages are dropped. Once this returns, no
    /// message is being handled and none will be.
    pub(super) fn retire(&self) {
        if let Ok(mut d) = self.dispatch.lock() {
            d.phase = Phase::Retired;
            // A request whose body will not come now: its id may come again.
            if let Some(Some(head)) = d.awaiting_body.take() {
                self.forget(&head.id);
            }
        }
    }

    /// Whether the session is over or closing its channel.
    fn retired(&self) -> bool {
        self.dispatch
            .lock()
            .map(|d| matches!(d.phase, Phase::Retired | Phase::Closing))
            .unwrap_or(true)
    }

    /// A message from the service: text (an `accept`, a `request`) or binary (the body of
    /// the request before it).
    fn on_message(&self, binary: bool, data: &[u8]) {
        let Ok(mut d) = self.dispatch.lock() else {
            return;
        };
        match &mut d.phase {
            Phase::Opening(held) => held.push((binary, data.to_vec())),
            Phase::Retired => {
                log::debug!("listener: dropping a message of a control channel no longer served")
            }
            Phase::Live | Phase::Closing => self.handle(&mut d, binary, data),
        }
    }

    /// Handles a message, under the dispatch lock.
    fn handle(&self, d: &mut Dispatch, binary: bool, data: &[u8]) {
        // Tasks started from here (on the owner's thread too) run on the listener's runtime.
        let _runtime = self.ctx.http.runtime.enter();
        let awaiting = &mut d.awaiting_body;
        if binary {
            match awaiting.take() {
                Some(Some(head)) => self.serve_request(head, RequestBody::Complete(data.to_vec())),
                Some(None) => {}
                None => log::debug!("listener: ignoring a binary message for no request"),
            }
        } else {
            self.on_text(data, awaiting);
        }
    }

    /// A text message from the service: an `accept`, or a `request`.
    fn on_text(&self, text: &[u8], awaiting: &mut Option<Option<RequestHead>>) {
        if let Some(Some(head)) = awaiting.take() {
            // The protocol puts a request's body right after it: this request is broken.
            log::debug!("listener: request {} lost its body; dropped", head.id);
            self.forget(&head.id);
        }
        if self.ctx.control_tap.load(Ordering::Relaxed) {
            self.ctx.sink.push(ListenerEvent::ControlMessage {
                text: String::from_utf8_lossy(text).into_owned(),
            });
        }
        let Ok(value) = serde_json::from_slice::<serde_json::Value>(text) else {
            log::debug!("listener: ignoring a control message that is not JSON");
            return;
        };
        if let Some(a) = value.get("accept") {
            accept::on_accept(a, &self.ctx.opts, &self.ctx.owner());
        } else if let Some(r) = value.get("request") {
            self.on_request(r, awaiting);
        } else {
            log::debug!("listener: ignoring an unknown control message");
        }
    }

    /// An HTTP request: served now, once its body follows, or fetched from its rendezvous.
    fn on_request(&self, r: &serde_json::Value, awaiting: &mut Option<Option<RequestHead>>) {
        let ctx = &self.ctx.http;
        match parse_request(r) {
            Err(Unusable::Ignore(why)) => log::debug!("listener: ignoring {why}"),
            Err(Unusable::HeadersTooLarge(head)) => {
                http::answer(
                    &self.route(&head),
                    &head.id,
                    431,
                    "Request Header Fields Too Large",
                );
                if head.body {
                    *awaiting = Some(None);
                }
            }
            Ok(RequestMessage::Rendezvous { address }) => {
                tokio::spawn(http::fetch(ctx.clone(), address));
            }
            Ok(RequestMessage::Inline(head)) => {
                let fresh = ctx
                    .in_flight
                    .lock()
                    .map(|mut ids| ids.insert(head.id.clone()))
                    .unwrap_or(true);
                if !fresh {
                    // Its response will answer that id: a second one would confuse the
                    // service.
                    log::debug!("listener: ignoring a second request with id {}", head.id);
                    if head.body {
                        *awaiting = Some(None);
                    }
                } else if head.body {
                    *awaiting = Some(Some(head));
                } else {
                    self.serve_request(head, RequestBody::Empty);
                }
            }
        }
    }

    /// Where a response to a request of this channel goes.
    fn route(&self, head: &RequestHead) -> Route {
        Route::Control {
            channel: self.channel.clone(),
            address: head.address.clone(),
        }
    }

    /// Hands a request from the control channel to the owner.
    fn serve_request(&self, head: RequestHead, body: RequestBody) {
        if http::start(&self.ctx.http, &head, body, self.route(&head)).is_none() {
            self.forget(&head.id);
        }
    }

    /// A request from the control channel is over: its id may come again.
    fn forget(&self, id: &str) {
        if let Ok(mut ids) = self.ctx.http.in_flight.lock() {
            ids.remove(id);
        }
    }
}

impl EventSink for ControlSink {
    fn push(&self, event: Event) {
        match event {
            Event::Message { binary, frames } => {
                let dense = self
                    .rate
                    .lock()
                    .map(|mut r| r.message(Instant::now()))
                    .unwrap_or(false);
                if dense {
                    // Read by the owner's thread: tokio's threads take over (a no-op when
                    // they read already). Under the connection's lock.
                    self.channel.stop_inline();
                }
                // Handled now: the bytes are consumed (or the socket would stop reading after
                // its backlog's worth).
                self.channel
                    .shared
                    .consumed(frames.iter().map(Vec::len).sum());
                // A fragmented message comes as its frames.
                if frames.len() == 1 {
                    self.on_message(binary, &frames[0]);
                } else {
                    self.on_message(binary, &frames.concat());
                }
            }
            other => {
                if matches!(other, Event::Closed { .. }) {
                    self.ctx.sink.control_closed(&self.channel);
                }
                if let Ok(tx) = self.events.lock() {
                    let _ = tx.send(other);
                }
            }
        }
    }

    fn inline_wanted(&self) {
        self.inline_wanted.store(true, Ordering::SeqCst);
    }

    fn turn_end(&self) {
        if self.inline_wanted.swap(false, Ordering::SeqCst) {
            let dense = self
                .rate
                .lock()
                .map(|r| r.dense(Instant::now()))
                .unwrap_or(false);
            if dense || self.retired() {
                // Asked again after a later sparse turn.
                self.channel.decline_inline();
            } else {
                self.ctx.sink.control_inline_wanted(&self.channel);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::listener::AcceptRequest;
    use std::collections::{HashSet, VecDeque};
    use std::time::Duration;

    /// Keeps the accepts the owner hears of.
    #[derive(Default)]
    struct Accepts(Mutex<Vec<AcceptRequest>>);

    impl ListenerSink for Accepts {
        fn push(&self, event: ListenerEvent) {
            if let ListenerEvent::Accept(a) = event {
                self.0.lock().unwrap().push(a);
            }
        }
    }

    fn control(sink: Arc<Accepts>) -> (ControlSink, mpsc::UnboundedReceiver<Event>) {
        let opts = ListenerOptions::new("ws://127.0.0.1:9/hc?sb-hc-action=listen");
        let http = Arc::new(HttpContext {
            sink: sink.clone(),
            entity: opts.entity.clone(),
            ca: Vec::new(),
            proxy: None,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(60),
            enabled: Arc::new(AtomicBool::new(true)),
            cancel: tokio_util::sync::CancellationToken::new(),
            in_flight: Mutex::new(HashSet::new()),
            ended_inline: Mutex::new(Vec::new()),
            waiting: Mutex::new(VecDeque::new()),
            runtime: tokio::runtime::Handle::current(),
        });
        let ctx = Arc::new(ControlContext {
            opts,
            sink,
            auto_accept: Arc::new(AtomicBool::new(false)),
            spares: None,
            accepting: Arc::new(InFlight::default()),
            http,
            control_tap: Arc::new(AtomicBool::new(false)),
        });
        let (tx, rx) = mpsc::unbounded_channel();
        let channel = Handle::new(&crate::socket::SocketOptions::default());
        (ControlSink::new(ctx, channel, tx), rx)
    }

    fn accept(id: &str) -> Event {
        let text = serde_json::json!({
            "accept": { "id": id, "address": "wss://127.0.0.1:9/$hc/hc?sb-hc-action=accept" }
        });
        Event::Message {
            binary: false,
            frames: smallvec::smallvec![text.to_string().into_bytes()],
        }
    }

    fn ids(sink: &Accepts) -> Vec<String> {
        sink.0
            .lock()
            .unwrap()
            .iter()
            .map(|a| a.id.clone())
            .collect()
    }

    #[test]
    fn dense_above_2000_a_second_until_below_1000() {
        let t0 = Instant::now();
        let mut rate = Rate::new(t0);
        let ms = |n: u64| t0 + Duration::from_millis(n);
        // 1,500 a second: not dense.
        for i in 0..300 {
            assert!(!rate.message(ms(i * 2 / 3 + 1)));
        }
        // 5,000 a second for a window: dense.
        let mut dense = false;
        for i in 0..600 {
            dense = rate.message(ms(201 + i / 5));
        }
        assert!(dense);
        assert!(rate.dense(ms(330)));
        // 1,500 a second: still dense (between the two rates).
        for i in 0..300 {
            dense = rate.message(ms(321 + i * 2 / 3));
        }
        assert!(dense);
        // 500 a second: sparse again.
        for i in 0..100 {
            dense = rate.message(ms(521 + i * 2));
        }
        assert!(!dense);
        // Dense, then silence for two windows: sparse.
        for i in 0..600 {
            rate.message(ms(800 + i / 5));
        }
        assert!(rate.dense(ms(925)));
        assert!(!rate.dense(ms(1200)));
        // A burst, a pause, and a message: not dense (the burst's count is not spread over
        // the pause).
        let mut rate = Rate::new(ms(2000));
        for i in 0..495 {
            rate.message(ms(2000 + i / 5));
        }
        assert!(!rate.message(ms(2300)));
    }

    #[tokio::test]
    async fn messages_wait_for_online_and_stop_with_the_session() {
        let sink = Arc::new(Accepts::default());
        let (control, mut rx) = control(sink.clone());
        // Read before the owner heard `online`: held, then handled first, in order.
        control.push(accept("a"));
        control.push(accept("b"));
        assert!(ids(&sink).is_empty());
        control.serve();
        assert_eq!(ids(&sink), ["a", "b"]);
        // Malformed messages are dropped without harm, and the next one is handled.
        for bad in [
            &b"{not json"[..],
            b"[]",
            b"{\"accept\": 7}",
            b"{\"request\": {}}",
        ] {
            control.push(Event::Message {
                binary: false,
                frames: smallvec::smallvec![bad.to_vec()],
            });
        }
        control.push(Event::Message {
            binary: true,
            frames: smallvec::smallvec![vec![1, 2, 3]],
        });
        control.push(accept("c"));
        assert_eq!(ids(&sink), ["a", "b", "c"]);
        // The socket's other events go on to the session.
        control.push(Event::Pong(Vec::new()));
        assert!(matches!(rx.try_recv(), Ok(Event::Pong(_))));
        // While our close frame is on its way, what the service sent before it saw it
        // still reaches the owner.
        control.wind_down();
        control.push(accept("d"));
        assert_eq!(ids(&sink), ["a", "b", "c", "d"]);
        // Once the session ends, nothing more does.
        control.retire();
        control.push(accept("e"));
        control.serve();
        control.wind_down();
        control.push(accept("f"));
        assert_eq!(ids(&sink), ["a", "b", "c", "d"]);
    }
}
