//! Bindings for the client WebSocket (`relayedConnect`'s socket).
//!
//! Events go up through one ThreadsafeFunction per socket. The tokio side pushes events into
//! a queue and schedules at most one JS call at a time; that call drains the whole queue, so
//! under load one JS call carries many events, in order, as one flat array (no object per
//! event). Large payloads reach JS as external buffers (no copy). The ThreadsafeFunction keeps the process alive while the
//! socket exists and is released once the close event is delivered.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyco_core::socket::{self, Command, ConnectOptions, Event, EventSink, Handle, SocketOptions};
use napi::bindgen_prelude::{Buffer, Function};
use napi::Status;
use napi_derive::napi;

use crate::bindings::event_queue::{Batch, EventQueue};

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
}

/// Payloads up to this size are copied into a JS-owned Buffer; larger ones are handed over
/// as external buffers without a copy. For small payloads the copy is cheaper than the
/// finalizer an external buffer needs.
const COPY_BELOW: usize = 512;

/// One value of the flat event list JavaScript receives (see [`to_js`]).
pub enum Flat {
    /// A number.
    Num(f64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(String),
    /// `null`.
    Null,
    /// Bytes, as a Buffer (copied when small, external when large).
    Bytes(Vec<u8>),
    /// A nested array.
    List(Vec<Flat>),
}

impl napi::bindgen_prelude::ToNapiValue for Flat {
    unsafe fn to_napi_value(
        env: napi::sys::napi_env,
        val: Self,
    ) -> napi::Result<napi::sys::napi_value> {
        // SAFETY: `env` is the live environment napi-rs passes while converting the
        // callback's arguments on the JS thread; every branch delegates to napi's own
        // conversions or to `napi_create_buffer_copy` with a valid pointer and length.
        unsafe {
            match val {
                Flat::Num(n) => f64::to_napi_value(env, n),
                Flat::Bool(b) => bool::to_napi_value(env, b),
                Flat::Str(s) => String::to_napi_value(env, s),
                Flat::Null => {
                    napi::bindgen_prelude::Null::to_napi_value(env, napi::bindgen_prelude::Null)
                }
                Flat::Bytes(v) if v.len() < COPY_BELOW => {
                    let mut out = std::ptr::null_mut();
                    let status = napi::sys::napi_create_buffer_copy(
                        env,
                        v.len(),
                        v.as_ptr().cast(),
                        std::ptr::null_mut(),
                        &mut out,
                    );
                    if status != napi::sys::Status::napi_ok {
                        return Err(napi::Error::new(
                            Status::GenericFailure,
                            "cannot create a Buffer",
                        ));
                    }
                    Ok(out)
                }
                Flat::Bytes(v) => Buffer::to_napi_value(env, Buffer::from(v)),
                Flat::List(items) => Vec::<Flat>::to_napi_value(env, items),
            }
        }
    }
}

/// The socket's event queue (see `event_queue`).
struct Queue(Arc<EventQueue<Event, Flat>>);

impl EventSink for Queue {
    fn push(&self, event: Event) {
        self.0.push(event);
    }
}

fn ids(v: Vec<u32>) -> Flat {
    if v.is_empty() {
        Flat::Null
    } else {
        Flat::List(v.into_iter().map(|i| Flat::Num(f64::from(i))).collect())
    }
}

fn opt_str(s: Option<String>) -> Flat {
    s.map_or(Flat::Null, Flat::Str)
}

/// Flattens queued events for JS: one array, each event a type number followed by its
/// fields (`lib/websocket.js` reads them back):
/// `0 protocol` open · `1 data|frames binary` message · `2 data` ping · `3 data` pong ·
/// `4 bytes acks failed` written · `5` close frame received ·
/// `6 message code range statusCode statusDescription` error ·
/// `7 code reason frameReceived frameSent` closed.
/// Returns it, the message bytes it carries, and whether the close is among them.
fn to_js(events: Vec<Event>) -> (Vec<Flat>, usize, bool) {
    let mut out = Vec::with_capacity(events.len() * 3);
    let mut bytes = 0;
    let mut done = false;
    for e in events {
        match e {
            Event::Open { protocol } => out.extend([Flat::Num(0.0), Flat::Str(protocol)]),
            Event::Message { binary, mut frames } => {
                bytes += frames.iter().map(Vec::len).sum::<usize>();
                let data = if frames.len() == 1 {
                    Flat::Bytes(frames.pop().unwrap_or_default())
                } else {
                    Flat::List(frames.into_iter().map(Flat::Bytes).collect())
                };
                out.extend([Flat::Num(1.0), data, Flat::Bool(binary)]);
            }
            Event::Ping(d) => {
                bytes += d.len() + socket::connection::CONTROL_EVENT_COST;
                out.extend([Flat::Num(2.0), Flat::Bytes(d)]);
            }
            Event::Pong(d) => {
                bytes += d.len() + socket::connection::CONTROL_EVENT_COST;
                out.extend([Flat::Num(3.0), Flat::Bytes(d)]);
            }
            Event::Written {
                bytes,
                acks,
                failed,
            } => out.extend([
                Flat::Num(4.0),
                Flat::Num(bytes as f64),
                ids(acks),
                ids(failed),
            ]),
            Event::CloseReceived => out.push(Flat::Num(5.0)),
            Event::Error(e) => out.extend([
                Flat::Num(6.0),
                Flat::Str(e.message),
                opt_str(e.code),
                Flat::Bool(e.range_error),
                e.status_code
                    .map_or(Flat::Null, |c| Flat::Num(f64::from(c))),
                opt_str(e.status_description),
            ]),
            Event::Closed {
                code,
                reason,
                frame_received,
                frame_sent,
            } => {
                done = true;
                out.extend([
                    Flat::Num(7.0),
                    Flat::Num(f64::from(code)),
                    Flat::Bytes(reason),
                    Flat::Bool(frame_received),
                    Flat::Bool(frame_sent),
                ]);
            }
        }
    }
    (out, bytes, done)
}

/// A client WebSocket connection.
#[napi]
pub struct NativeSocket {
    handle: Handle,
}

/// Starts connecting; `onEvents(events)` receives batches of events, the last being close.
#[napi(js_name = "connectSocket")]
pub fn connect_socket(
    options: NativeConnectOptions,
    on_events: Function<Vec<Flat>, ()>,
) -> napi::Result<NativeSocket> {
    let shared_slot: Arc<Mutex<Option<Arc<socket::connection::Shared>>>> =
        Arc::new(Mutex::new(None));
    let slot = shared_slot.clone();
    let queue = EventQueue::new(on_events, move |drained| {
        let (items, bytes, last) = to_js(drained);
        if bytes > 0 {
            if let Ok(s) = slot.lock() {
                if let Some(shared) = s.as_ref() {
                    shared.consumed(bytes);
                }
            }
        }
        Batch { items, last }
    })?;
    let connect = ConnectOptions {
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
    };
    let mut socket_options = SocketOptions::default();
    socket_options.limits.max_payload = options.max_payload.max(0.0) as u64;
    socket_options.auto_pong = options.auto_pong;
    socket_options.close_timeout = Duration::from_millis(options.close_timeout.max(1.0) as u64);
    let sink: Arc<dyn EventSink> = Arc::new(Queue(queue));
    // The core spawns its tasks with `tokio::spawn`: run it inside napi's runtime.
    let handle = napi::bindgen_prelude::within_runtime_if_available(|| {
        socket::connect(connect, socket_options, sink)
    });
    if let Ok(mut s) = shared_slot.lock() {
        *s = Some(handle.shared.clone());
    }
    Ok(NativeSocket { handle })
}

#[napi]
impl NativeSocket {
    /// Queues a frame: `opcode` 1 text, 2 binary, 9 ping, 10 pong; `accounted` and `ack`
    /// come back in the written event.
    #[napi]
    pub fn send(&self, data: &[u8], opcode: u32, fin: bool, accounted: f64, ack: u32) -> bool {
        self.handle.send(Command::Frame {
            opcode: (opcode & 0x0f) as u8,
            fin,
            payload: socket::pool::copy_of(data),
            accounted: accounted as usize,
            ack,
        })
    }

    /// Queues small frames packed by `lib/websocket.js` (see `hyco_core::socket::connection::BATCH_HEADER`).
    #[napi]
    pub fn send_batch(&self, data: &[u8]) -> bool {
        self.handle.send(Command::Batch(data.to_vec()))
    }

    /// Starts the closing handshake. `code` absent: a close frame without a code.
    #[napi]
    pub fn close(&self, code: Option<u32>, reason: Option<&[u8]>) -> bool {
        self.handle.send(Command::Close {
            code: code.and_then(|c| u16::try_from(c).ok()),
            reason: reason.map(<[u8]>::to_vec).unwrap_or_default(),
        })
    }

    /// Drops the connection now.
    #[napi]
    pub fn terminate(&self) -> bool {
        self.handle.send(Command::Terminate)
    }

    /// Stops reading from the socket.
    #[napi]
    pub fn pause(&self) {
        self.handle.shared.pause();
    }

    /// Reads again.
    #[napi]
    pub fn resume(&self) {
        self.handle.shared.resume();
    }
}
