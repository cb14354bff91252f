//! Bindings for client WebSockets: `relayedConnect`'s sockets and a listener's accepted
//! ones. JavaScript addresses a socket by the id `connectSocket` returns; its events go up
//! through the environment's hub (`hub.rs`), in order, as part of one flat list. Large
//! payloads reach JS as external buffers (no copy).

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyco_core::socket::budget;
use hyco_core::socket::deflate::{self, DeflateOptions, Negotiation, WindowBits};
use hyco_core::socket::task::{Direct, Outgoing};
use hyco_core::socket::{
    Command, ConnectOptions, Event, EventSink, Handle, Shared, SocketError, SocketOptions,
    CONTROL_EVENT_COST,
};
use napi::bindgen_prelude::Buffer;
use napi::Env;
use napi_derive::napi;

use crate::bindings::events::up;
use crate::bindings::flat::Flat;
use crate::bindings::hub::{self, id_of, Consumer, Hub, Id, Target, Then};
use crate::bindings::proxy::{self, NativeProxyOptions};
use crate::bindings::reader;
use crate::bindings::run::{Flush, Pending};

/// Options of `connectSocket`, checked by `lib/connect.js`.
#[napi(object)]
pub struct NativeConnectOptions {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Request headers.
    pub headers: Option<HashMap<String, String>>,
    /// Offered subprotocols.
    pub protocols: Option<Vec<String>>,
    /// Handshake timeout, ms.
    pub handshake_timeout: f64,
    /// Largest message, bytes (0: none).
    pub max_payload: f64,
    /// Extra trusted certificates, PEM.
    pub ca: Option<Vec<Buffer>>,
    /// Closing-handshake timeout, ms.
    pub close_timeout: f64,
    /// Answer pings automatically.
    pub auto_pong: bool,
    /// Proxy settings; absent: connect directly.
    pub proxy: Option<NativeProxyOptions>,
    /// permessage-deflate: offered with these options (a sender), or the compressor's
    /// options of an accept socket that answers with `deflate_answer`.
    pub per_message_deflate: Option<NativeDeflateOptions>,
    /// An accept socket's permessage-deflate answer (from `deflateAccept`): it runs as the
    /// extension's server.
    pub deflate_answer: Option<String>,
    /// Message bytes waiting for JavaScript above which reading stops; absent: 16 MiB.
    pub inbound_high_water: Option<f64>,
    /// Heartbeat interval, ms; absent or 0: none.
    pub heartbeat_ms: Option<f64>,
}

/// A socket's options from JavaScript's numbers (checked by `lib/`).
pub fn socket_options(
    max_payload: f64,
    auto_pong: bool,
    close_timeout_ms: f64,
    inbound_high_water: Option<f64>,
    heartbeat_ms: Option<f64>,
) -> SocketOptions {
    let mut o = SocketOptions::default();
    o.limits.max_payload = max_payload.max(0.0) as u64;
    o.auto_pong = auto_pong;
    o.close_timeout = Duration::from_millis(close_timeout_ms.max(1.0) as u64);
    if let Some(hw) = inbound_high_water {
        o.inbound_high_water = hw.max(0.0) as usize;
    }
    // Whole milliseconds, at least 1, as setInterval counts (0.5 was a zero interval).
    o.heartbeat = heartbeat_ms
        .filter(|ms| *ms > 0.0)
        .map(|ms| Duration::from_millis((ms as u64).max(1)));
    // JavaScript's sockets: the JS thread reads them while their traffic is sparse.
    o.inline_reads = reader::enabled();
    // And they echo the peer's close frame themselves, once the messages before it are
    // emitted, so that replies to them go out first (`socketEchoClose`), as with ws.
    o.owner_echoes_close = true;
    o
}

/// Sets the process's inbound budget (bytes of messages waiting for JavaScript, over every
/// socket, above which every socket stops reading; 0: none) and returns the previous one.
#[napi(js_name = "setInboundBudget", catch_unwind)]
pub fn set_inbound_budget(bytes: f64) -> f64 {
    budget::set_limit(bytes.max(0.0) as usize) as f64
}

/// The inbound budget and what is used of it now.
#[napi(object)]
pub struct InboundBudget {
    /// The budget, bytes (0: none).
    pub limit: f64,
    /// Message bytes waiting for JavaScript now, over every socket.
    pub used: f64,
}

/// `getInboundBudget()`.
#[napi(js_name = "getInboundBudget", catch_unwind)]
pub fn get_inbound_budget() -> InboundBudget {
    InboundBudget {
        limit: budget::limit() as f64,
        used: budget::used() as f64,
    }
}

/// ws's `perMessageDeflate` options, checked by `lib/deflate.js`. A window-bits option is
/// absent (not given), 0 (`false`), 1 (`true`) or 8 to 15.
#[napi(object)]
pub struct NativeDeflateOptions {
    /// `serverNoContextTakeover`.
    pub server_no_context_takeover: Option<bool>,
    /// `clientNoContextTakeover`.
    pub client_no_context_takeover: Option<bool>,
    /// `serverMaxWindowBits`.
    pub server_max_window_bits: Option<u32>,
    /// `clientMaxWindowBits`.
    pub client_max_window_bits: Option<u32>,
    /// `zlibDeflateOptions.level`, -1 to 9.
    pub level: Option<i32>,
    /// `zlibDeflateOptions.memLevel`, 1 to 9.
    pub mem_level: Option<i32>,
}

fn window_bits(v: Option<u32>) -> WindowBits {
    match v {
        None => WindowBits::Unset,
        Some(0) => WindowBits::Off,
        Some(b @ 8..=15) => WindowBits::Bits(b as u8),
        Some(_) => WindowBits::Any,
    }
}

/// The core's options for `n`.
pub fn deflate_options(n: &NativeDeflateOptions) -> DeflateOptions {
    let d = DeflateOptions::default();
    DeflateOptions {
        server_no_context_takeover: n.server_no_context_takeover,
        client_no_context_takeover: n.client_no_context_takeover,
        server_max_window_bits: window_bits(n.server_max_window_bits),
        client_max_window_bits: window_bits(n.client_max_window_bits),
        level: n.level.map_or(d.level, |l| l.clamp(-1, 9) as i8),
        mem_level: n.mem_level.map_or(d.mem_level, |m| m.clamp(1, 9) as u8),
    }
}

/// A listener's permessage-deflate answer to a sender's `Sec-WebSocket-Extensions` offer,
/// as ws's `WebSocketServer` chooses it: the answer, `null` when nothing is agreed, or an
/// error with ws's message when ws would refuse the handshake (400).
#[napi(js_name = "deflateAccept", catch_unwind)]
pub fn deflate_accept(
    options: NativeDeflateOptions,
    offer: String,
) -> napi::Result<Option<String>> {
    deflate::accept_offer(&deflate_options(&options), &offer)
        .map(|a| a.map(|a| a.params.format()))
        .map_err(|m| napi::Error::new(napi::Status::InvalidArg, m))
}

/// Where a socket's events go: the hub, tagged with its id.
pub struct SocketSink {
    id: Id,
    hub: Arc<Hub>,
    shared: Arc<Shared>,
    /// A connection a listener accepts by itself, not open yet: its open event goes up as
    /// `accepted`.
    accepting: AtomicBool,
    /// In the connection task's turn (see `EventSink::turn_start`): events are queued
    /// without waking JavaScript, which `held` then asks for at the turn's end.
    turn: AtomicBool,
    held: AtomicBool,
    /// The task asked, in its turn, that JavaScript's thread read the socket (see
    /// `EventSink::inline_wanted`): published at the turn's end.
    inline_asked: AtomicBool,
    /// In a read's pushes (see `EventSink::read_start`): small messages are held.
    reading: AtomicBool,
    /// The read's small messages, sent up together (see `run`).
    pending: Mutex<Pending>,
}

impl SocketSink {
    /// A sink for socket `id`; `accepting` for one a listener accepts by itself.
    pub fn new(id: Id, hub: Arc<Hub>, handle: &Handle, accepting: bool) -> Self {
        SocketSink {
            id,
            hub,
            shared: handle.shared.clone(),
            accepting: AtomicBool::new(accepting),
            turn: AtomicBool::new(false),
            held: AtomicBool::new(false),
            inline_asked: AtomicBool::new(false),
            reading: AtomicBool::new(false),
            pending: Mutex::new(Pending::default()),
        }
    }
}

impl SocketSink {
    /// Queues an event for JavaScript: at once, or at the end of the task's turn.
    fn up<const N: usize>(&self, event: [Flat; N], then: Then) {
        if self.turn.load(Ordering::SeqCst) {
            self.hub.push_quiet(self.id, event, then);
            self.wake_at_turn_end();
        } else {
            self.hub.push(self.id, event, then);
        }
    }

    /// After something queued quietly because a turn was on: asks for the wake-up at the
    /// turn's end, or gives it now if the turn has ended meanwhile. A push from another
    /// thread than the turn's (the JS thread's inline read, which takes the connection's
    /// lock between the task's poll and its `turn_end`) can see the turn on and then miss its
    /// end. All four operations are SeqCst, here and in `turn_end`: whichever of the two
    /// comes second in their order sees the other's store, so one of them wakes.
    fn wake_at_turn_end(&self) {
        self.held.store(true, Ordering::SeqCst);
        if !self.turn.load(Ordering::SeqCst) && self.held.swap(false, Ordering::SeqCst) {
            self.hub.wake();
        }
    }

    /// The read's held messages. A poisoned lock is taken as it is: `Pending` holds no
    /// invariant a panic could break, and its messages must not be lost.
    fn pending(&self) -> MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends up the small messages the read held, if any.
    fn flush(&self) {
        let held = self.pending().take();
        if let Some(flush) = held {
            self.send(flush);
        }
    }

    /// Sends up a lone message or a run.
    fn send(&self, flush: Flush) {
        let consumed = |bytes| Then::Consumed(self.shared.clone(), bytes);
        match flush {
            Flush::One(payload, binary) => {
                let bytes = payload.len();
                self.up(
                    up::Message(Flat::Bytes(payload), Flat::Bool(binary)),
                    consumed(bytes),
                );
            }
            Flush::Run(run, payloads) => self.up(up::Messages(Flat::Run(run)), consumed(payloads)),
        }
    }
}

impl EventSink for SocketSink {
    fn turn_start(&self) {
        self.turn.store(true, Ordering::SeqCst);
    }

    fn turn_end(&self) {
        // SeqCst: see `wake_at_turn_end`.
        self.turn.store(false, Ordering::SeqCst);
        let asked = self.inline_asked.swap(false, Ordering::SeqCst);
        if asked {
            self.hub.want_inline(self.id);
        }
        if self.held.swap(false, Ordering::SeqCst) || asked {
            self.hub.wake();
        }
    }

    fn read_start(&self) {
        self.reading.store(true, Ordering::Relaxed);
    }

    fn read_end(&self) {
        // Under the connection's lock, on the thread that read: nothing pushed by another
        // thread can come between the read's messages and what it pushed before them.
        self.flush();
        self.reading.store(false, Ordering::Relaxed);
    }

    fn inline_wanted(&self) {
        if self.turn.load(Ordering::SeqCst) {
            // Published at the turn's end, once the connection's lock is free: a delivery
            // running meanwhile (another socket's events) would take the request while the
            // task still holds the lock, find it busy and decline, and the offer was lost
            // until a later sparse turn (a lone message was never read inline). The same
            // SeqCst re-check as `wake_at_turn_end`'s, should the turn end meanwhile.
            self.inline_asked.store(true, Ordering::SeqCst);
            if self.turn.load(Ordering::SeqCst) || !self.inline_asked.swap(false, Ordering::SeqCst)
            {
                return;
            }
        }
        self.hub.want_inline(self.id);
        self.hub.wake();
    }

    fn push(&self, event: Event) {
        let event = match event {
            // A small whole message of a read waits for the read's others (see `run`).
            Event::Message { binary, mut frames }
                if frames.len() == 1
                    && Pending::joins(&frames[0])
                    && self.reading.load(Ordering::Relaxed) =>
            {
                let payload = frames.pop().unwrap_or_default();
                let full = self.pending().add(payload, binary);
                if let Some(flush) = full {
                    self.send(flush);
                }
                return;
            }
            other => other,
        };
        // Whatever the read held goes first (only a read holds anything: its end flushes).
        if self.reading.load(Ordering::Relaxed) {
            self.flush();
        }
        let id = self.id;
        let hub = self;
        let consumed = |bytes| Then::Consumed(self.shared.clone(), bytes);
        match event {
            Event::Open {
                protocol,
                extensions,
            } => {
                let (p, e) = (Flat::Str(protocol), Flat::Str(extensions));
                if self.accepting.swap(false, Ordering::AcqRel) {
                    hub.up(up::Accepted(p, e), Then::Nothing);
                } else {
                    hub.up(up::Open(p, e), Then::Nothing);
                }
            }
            Event::Message { binary, mut frames } => {
                let bytes = frames.iter().map(Vec::len).sum::<usize>();
                let data = if frames.len() == 1 {
                    Flat::Bytes(frames.pop().unwrap_or_default())
                } else {
                    Flat::List(frames.into_iter().map(Flat::Bytes).collect())
                };
                hub.up(up::Message(data, Flat::Bool(binary)), consumed(bytes));
            }
            Event::Chunk { data, .. } => {
                // JavaScript's sockets take whole messages: their decoders never stream.
                log::error!("socket {id}: a streamed message piece has no JavaScript reader");
                self.shared.consumed(data.len());
            }
            Event::Ping(d) => {
                let bytes = d.len() + CONTROL_EVENT_COST;
                hub.up(up::Ping(Flat::Bytes(d)), consumed(bytes));
            }
            Event::Pong(d) => {
                let bytes = d.len() + CONTROL_EVENT_COST;
                hub.up(up::Pong(Flat::Bytes(d)), consumed(bytes));
            }
            Event::Written {
                bytes,
                acks,
                failed,
            } => hub.up(
                up::Written(Flat::Num(bytes as f64), Flat::ids(acks), Flat::ids(failed)),
                Then::Nothing,
            ),
            Event::CloseReceived => hub.up(up::CloseReceived(), Then::Nothing),
            Event::Error(e) => {
                let range_error = Flat::Bool(e.range_error);
                let [message, code, status_code, status_description] = error_fields(e);
                hub.up(
                    up::Error(message, code, range_error, status_code, status_description),
                    Then::Nothing,
                );
            }
            Event::Closed {
                code,
                reason,
                frame_received,
                frame_sent,
            } => hub.up(
                up::Closed(
                    Flat::Num(f64::from(code)),
                    Flat::Bytes(reason),
                    Flat::Bool(frame_received),
                    Flat::Bool(frame_sent),
                ),
                Then::Last,
            ),
        }
    }

    /// For a listener's accept: its accepting event was queued without waking JavaScript
    /// (see `HubListenerSink::accepted`); now that the request is out, JavaScript prepares
    /// the socket while the response travels.
    fn request_sent(&self) {
        if self.accepting.load(Ordering::Acquire) {
            self.hub.wake();
        }
    }
}

/// An error's message, code, HTTP status and its description, as flat values.
pub fn error_fields(e: SocketError) -> [Flat; 4] {
    [
        Flat::Str(e.message),
        Flat::opt_str(e.code.map(str::to_owned)),
        Flat::opt_num(e.status_code),
        Flat::opt_str(e.status_description),
    ]
}

impl Consumer for Shared {
    fn consumed(&self, bytes: usize) {
        Shared::consumed(self, bytes);
    }
}

impl Target for Handle {
    fn stop(&self) {
        self.send(Command::Terminate);
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Starts connecting; returns the socket's id. Its events reach `initEvents`' callback,
/// the last being the close.
#[napi(js_name = "connectSocket", catch_unwind)]
pub fn connect_socket(env: Env, options: NativeConnectOptions) -> napi::Result<f64> {
    let hub = hub::current()?;
    let config = options.per_message_deflate.as_ref().map(deflate_options);
    let deflate = match (options.deflate_answer, config) {
        (Some(answer), config) => Some(Negotiation::Answer(
            deflate::answered(&answer, &config.unwrap_or_default())
                .map_err(|m| napi::Error::new(napi::Status::InvalidArg, m))?,
        )),
        (None, Some(config)) => Some(Negotiation::Offer(config)),
        (None, None) => None,
    };
    let connect = ConnectOptions {
        deflate,
        url: options.url,
        headers: options
            .headers
            .map(|h| h.into_iter().collect())
            .unwrap_or_default(),
        protocols: options.protocols.unwrap_or_default(),
        handshake_timeout: Duration::from_millis(options.handshake_timeout.max(1.0) as u64),
        ca: options
            .ca
            .unwrap_or_default()
            .into_iter()
            .map(|b| b.to_vec())
            .collect(),
        proxy: proxy::config(options.proxy),
    };
    let socket_options = socket_options(
        options.max_payload,
        options.auto_pong,
        options.close_timeout,
        options.inbound_high_water,
        options.heartbeat_ms,
    );
    let id = hub.next_id();
    let handle = Handle::new(&socket_options);
    let sink: Arc<dyn EventSink> = Arc::new(SocketSink::new(id, hub.clone(), &handle, false));
    // The core spawns its tasks with `tokio::spawn`: run it inside napi's runtime. Started
    // before it is added, as `listen()` does: a start that fails (a panic, which napi turns
    // into an exception) leaves no object that no event would ever remove, keeping the event
    // loop alive. Its events wait in the queue meanwhile: deliveries run on this thread.
    napi::bindgen_prelude::within_runtime_if_available(|| {
        handle.start(connect, socket_options, sink)
    });
    // The hub refuses new objects once its environment is being torn down: the socket,
    // which nobody could close then, stops at once.
    if !hub.insert(id, Arc::new(handle.clone())) {
        handle.send(Command::Terminate);
        return Err(napi::Error::new(
            napi::Status::GenericFailure,
            "hyco-ws-rs: the environment is shutting down",
        ));
    }
    hub.sync_ref(&env);
    Ok(id as f64)
}

/// Sends a command to socket `id`; false when it is gone.
fn command(id: f64, c: Command) -> bool {
    hub::current()
        .ok()
        .and_then(|hub| hub.with(id_of(id), |h: &Handle| h.send(c)))
        .unwrap_or(false)
}

/// Sends on socket `id`: at once from this thread when `direct` (JavaScript has no earlier
/// send whose written event it still awaits) and the connection takes it (see
/// `Handle::send_direct`), else queued with the `Command` that `queued` makes. 1: written
/// now (its bytes and callbacks are complete, and no written event will report them); 0:
/// queued (reported by a written event), or the socket is gone (its close event follows).
fn send_on(id: f64, direct: bool, send: Outgoing<'_>, queued: impl FnOnce() -> Command) -> u32 {
    let Ok(hub) = hub::current() else {
        return 0;
    };
    hub.with(id_of(id), |h: &Handle| {
        if direct {
            match h.send_direct(send) {
                Direct::Written => return 1,
                Direct::Handed => return 0,
                Direct::Refused => {}
            }
        }
        h.send(queued());
        0
    })
    .unwrap_or(0)
}

/// Sends a frame: `opcode` 1 text, 2 binary, 9 ping, 10 pong; `compress` asks for
/// permessage-deflate (where agreed); `accounted` and `ack` come back in the written event.
/// `direct` and the result: see `send_on`.
#[napi(js_name = "socketSend", catch_unwind)]
#[allow(clippy::too_many_arguments)]
pub fn socket_send(
    id: f64,
    data: &[u8],
    opcode: u32,
    fin: bool,
    compress: bool,
    accounted: f64,
    ack: u32,
    direct: bool,
) -> u32 {
    let (opcode, accounted) = ((opcode & 0x0f) as u8, accounted as usize);
    let send = Outgoing::Frame {
        opcode,
        fin,
        payload: data,
        compress,
        accounted,
        ack,
    };
    send_on(id, direct, send, || {
        Command::frame(opcode, fin, data, compress, accounted, ack)
    })
}

/// Sends small frames packed by `lib/websocket.js` (see
/// `hyco_core::socket::batch::BATCH_HEADER`). `direct` and the result: see `send_on`.
#[napi(js_name = "socketSendBatch", catch_unwind)]
pub fn socket_send_batch(id: f64, data: &[u8], direct: bool) -> u32 {
    send_on(id, direct, Outgoing::Batch(data), || {
        Command::Batch(hyco_core::socket::pool::copy_of(data))
    })
}

/// Starts the closing handshake. `code` absent: a close frame without a code.
#[napi(js_name = "socketClose", catch_unwind)]
pub fn socket_close(id: f64, code: Option<u32>, reason: Option<&[u8]>) -> bool {
    command(
        id,
        Command::Close {
            code: code.and_then(|c| u16::try_from(c).ok()),
            reason: reason.map(<[u8]>::to_vec).unwrap_or_default(),
        },
    )
}

/// Answers the peer's close frame (with its code and reason), once JavaScript has emitted
/// the messages before it; nothing if a close frame of ours already went.
#[napi(js_name = "socketEchoClose", catch_unwind)]
pub fn socket_echo_close(id: f64) -> bool {
    command(id, Command::EchoClose)
}

/// Drops the connection now.
#[napi(js_name = "socketTerminate", catch_unwind)]
pub fn socket_terminate(id: f64) -> bool {
    command(id, Command::Terminate)
}

/// Stops reading from the socket.
#[napi(js_name = "socketPause", catch_unwind)]
pub fn socket_pause(id: f64) {
    if let Ok(hub) = hub::current() {
        hub.with(id_of(id), |h: &Handle| h.shared.pause());
    }
}

/// Reads again.
#[napi(js_name = "socketResume", catch_unwind)]
pub fn socket_resume(id: f64) {
    if let Ok(hub) = hub::current() {
        hub.with(id_of(id), |h: &Handle| h.shared.resume());
    }
}
