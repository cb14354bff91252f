//! Bindings for the client WebSocket (`relayedConnect`'s socket).
//!
//! Events go up through one ThreadsafeFunction per socket. The tokio side pushes events into
//! a queue and schedules at most one JS call at a time; that call drains the whole queue, so
//! under load one JS call carries many events, in order. Message payloads reach JS as
//! external buffers (no copy). The ThreadsafeFunction keeps the process alive while the
//! socket exists and is released once the close event is delivered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyco_core::socket::{self, Command, ConnectOptions, Event, EventSink, Handle, SocketOptions};
use napi::bindgen_prelude::{Buffer, Function};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::Status;
use napi_derive::napi;

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

/// One event, as JavaScript receives it. `t` says which fields are set:
/// 0 open (`protocol`), 1 message (`binary`, `data` or `frames`), 2 ping (`data`),
/// 3 pong (`data`), 4 written (`bytes`, `acks`, `failed`), 5 close frame received,
/// 6 error (`message`, `code`, `range`, `statusCode`, `statusDescription`),
/// 7 closed (`code`, `data` = reason, `frameReceived`, `frameSent`).
#[napi(object)]
pub struct SocketEventJs {
    /// Event type.
    pub t: u32,
    /// Payload, reason, or a whole message.
    pub data: Option<Buffer>,
    /// The frames of a fragmented binary message.
    pub frames: Option<Vec<Buffer>>,
    /// Binary (true) or text message.
    pub binary: Option<bool>,
    /// Bytes written.
    pub bytes: Option<f64>,
    /// Completed callback ids.
    pub acks: Option<Vec<u32>>,
    /// Callback ids of frames dropped while closing.
    pub failed: Option<Vec<u32>>,
    /// Close code, or the error's `code` text in `errCode`.
    pub code: Option<u32>,
    /// Error code (`WS_ERR_*`, `ECONNREFUSED`, ...).
    pub err_code: Option<String>,
    /// Error message.
    pub message: Option<String>,
    /// The error is a `RangeError`.
    pub range: Option<bool>,
    /// HTTP status of a refused handshake.
    pub status_code: Option<u32>,
    /// Reason phrase of a refused handshake.
    pub status_description: Option<String>,
    /// Negotiated subprotocol.
    pub protocol: Option<String>,
    /// A close frame was received.
    pub frame_received: Option<bool>,
    /// A close frame was sent.
    pub frame_sent: Option<bool>,
}

impl SocketEventJs {
    fn of(t: u32) -> Self {
        SocketEventJs {
            t,
            data: None,
            frames: None,
            binary: None,
            bytes: None,
            acks: None,
            failed: None,
            code: None,
            err_code: None,
            message: None,
            range: None,
            status_code: None,
            status_description: None,
            protocol: None,
            frame_received: None,
            frame_sent: None,
        }
    }
}

type EventsFn = ThreadsafeFunction<(), (), Vec<SocketEventJs>, Status, false>;

/// The event queue between the tokio side and the JS thread.
struct Queue {
    events: Mutex<Vec<Event>>,
    scheduled: AtomicBool,
    tsfn: Mutex<Option<EventsFn>>,
}

impl EventSink for Queue {
    fn push(&self, event: Event) {
        if let Ok(mut q) = self.events.lock() {
            q.push(event);
        }
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            if let Ok(t) = self.tsfn.lock() {
                if let Some(tsfn) = t.as_ref() {
                    tsfn.call((), ThreadsafeFunctionCallMode::NonBlocking);
                }
            }
        }
    }
}

/// Converts queued events for JS; returns them, the message bytes they carry, and whether
/// the last event (close) is among them.
fn to_js(events: Vec<Event>) -> (Vec<SocketEventJs>, usize, bool) {
    let mut out = Vec::with_capacity(events.len());
    let mut bytes = 0;
    let mut done = false;
    for e in events {
        out.push(match e {
            Event::Open { protocol } => SocketEventJs {
                protocol: Some(protocol),
                ..SocketEventJs::of(0)
            },
            Event::Message { binary, mut frames } => {
                bytes += frames.iter().map(Vec::len).sum::<usize>();
                let mut ev = SocketEventJs {
                    binary: Some(binary),
                    ..SocketEventJs::of(1)
                };
                if frames.len() == 1 {
                    ev.data = frames.pop().map(Buffer::from);
                } else {
                    ev.frames = Some(frames.into_iter().map(Buffer::from).collect());
                }
                ev
            }
            Event::Ping(d) => SocketEventJs {
                data: Some(d.into()),
                ..SocketEventJs::of(2)
            },
            Event::Pong(d) => SocketEventJs {
                data: Some(d.into()),
                ..SocketEventJs::of(3)
            },
            Event::Written {
                bytes,
                acks,
                failed,
            } => SocketEventJs {
                bytes: Some(bytes as f64),
                acks: Some(acks),
                failed: Some(failed),
                ..SocketEventJs::of(4)
            },
            Event::CloseReceived => SocketEventJs::of(5),
            Event::Error(e) => SocketEventJs {
                message: Some(e.message),
                err_code: e.code,
                range: Some(e.range_error),
                status_code: e.status_code.map(u32::from),
                status_description: e.status_description,
                ..SocketEventJs::of(6)
            },
            Event::Closed {
                code,
                reason,
                frame_received,
                frame_sent,
            } => {
                done = true;
                SocketEventJs {
                    code: Some(u32::from(code)),
                    data: Some(reason.into()),
                    frame_received: Some(frame_received),
                    frame_sent: Some(frame_sent),
                    ..SocketEventJs::of(7)
                }
            }
        });
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
    on_events: Function<Vec<SocketEventJs>, ()>,
) -> napi::Result<NativeSocket> {
    let queue = Arc::new(Queue {
        events: Mutex::new(Vec::new()),
        scheduled: AtomicBool::new(false),
        tsfn: Mutex::new(None),
    });
    let shared_slot: Arc<Mutex<Option<Arc<socket::connection::Shared>>>> =
        Arc::new(Mutex::new(None));
    let (q, slot) = (queue.clone(), shared_slot.clone());
    let tsfn: EventsFn = on_events
        .build_threadsafe_function::<()>()
        .callee_handled::<false>()
        .build_callback(move |_ctx| {
            q.scheduled.store(false, Ordering::Release);
            let drained = q
                .events
                .lock()
                .map(|mut e| std::mem::take(&mut *e))
                .unwrap_or_default();
            let (events, bytes, done) = to_js(drained);
            if bytes > 0 {
                if let Ok(s) = slot.lock() {
                    if let Some(shared) = s.as_ref() {
                        shared.consumed(bytes);
                    }
                }
            }
            if done {
                // The close is the last event: let the process exit once it is handled.
                if let Ok(mut t) = q.tsfn.lock() {
                    t.take();
                }
            }
            Ok(events)
        })?;
    if let Ok(mut t) = queue.tsfn.lock() {
        *t = Some(tsfn);
    }
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
    let sink: Arc<dyn EventSink> = queue;
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
            payload: data.to_vec(),
            accounted: accounted as usize,
            ack,
        })
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
