//! The one way events go up to JavaScript: one queue and one ThreadsafeFunction per Node.js
//! environment, shared by every socket and listener created in it.
//!
//! Tokio threads push events tagged with their object's id; at most one JS call is scheduled
//! at a time, and that call drains everything queued, so under load one call carries many
//! events of many objects, in order (`lib/native-events.js` hands each to its object).
//!
//! One function for all, rather than one per object: a ThreadsafeFunction costs a libuv
//! handle, a queue, a mutex and an async resource, kilobytes per socket that a listener with
//! thousands of idle connections would pay for nothing. Keep-alive stays per object: the
//! function is referenced (it keeps the event loop alive) exactly while some object has not
//! yet delivered its last event (a socket's close, a listener's `closed`), and unreferenced
//! otherwise, so the process exits by itself once everything is closed.
//!
//! Objects are addressed from JavaScript by id (see `socket.rs`, `listener.rs`): the
//! targets table holds their handles until their last event is delivered.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use hyco_core::listener::{AcceptRequest, ListenerEvent, ListenerHandle};
use hyco_core::socket::connection::Shared;
use hyco_core::socket::{Event, Handle};
use napi::bindgen_prelude::Function;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;

use crate::bindings::flat::Flat;
use crate::bindings::{listener, socket};

/// Event type of a listener event in the flat list (one field: the event object).
const EV_LISTENER: f64 = 8.0;
/// Event type of a connection a listener accepted by itself (fields: the listener's id,
/// the chosen subprotocol, the accept request object).
const EV_ACCEPTED: f64 = 9.0;

/// What an object sends up.
pub enum Up {
    /// A socket's event.
    Socket(Event),
    /// A socket a listener accepted by itself is open.
    Accepted {
        /// The listener's id.
        listener: u32,
        /// The chosen subprotocol.
        protocol: String,
        /// The sender's request.
        request: AcceptRequest,
    },
    /// A listener's event.
    Listener(ListenerEvent),
}

struct Queued {
    id: u32,
    up: Up,
    /// The socket's state, for message events: their bytes count as consumed once they
    /// reach JavaScript.
    shared: Option<Arc<Shared>>,
}

/// A native object JavaScript addresses by id.
pub enum Target {
    /// A WebSocket.
    Socket(Handle),
    /// A listener.
    Listener(ListenerHandle),
}

type EventsFn = ThreadsafeFunction<(), (), Vec<Flat>, Status, false, true>;

/// The queue between tokio and one environment's JS thread.
pub struct Hub {
    queue: Mutex<Vec<Queued>>,
    scheduled: AtomicBool,
    tsfn: Mutex<Option<EventsFn>>,
    targets: Mutex<HashMap<u32, Target>>,
    next_id: AtomicU32,
}

thread_local! {
    /// The hub of the environment whose JS thread this is.
    static HUB: RefCell<Option<Arc<Hub>>> = const { RefCell::new(None) };
}

/// This environment's hub (on its JS thread).
pub fn current() -> napi::Result<Arc<Hub>> {
    // lib/native-events.js calls initEvents() when it loads, before anything else can run.
    HUB.with(|h| h.borrow().clone()).ok_or_else(|| {
        napi::Error::new(
            Status::GenericFailure,
            "hyco-ws-rs: initEvents() was not called",
        )
    })
}

/// Registers this environment's event callback: `onEvents(list)` receives every socket's
/// and listener's events as one flat list (`id type fields...` repeated). Called once, by
/// `lib/native-events.js`.
#[napi(js_name = "initEvents")]
pub fn init_events(on_events: Function<Vec<Flat>, ()>) -> napi::Result<()> {
    if HUB.with(|h| h.borrow().is_some()) {
        return Err(napi::Error::new(
            Status::GenericFailure,
            "hyco-ws-rs: initEvents() was already called",
        ));
    }
    let hub = Arc::new(Hub {
        queue: Mutex::new(Vec::new()),
        scheduled: AtomicBool::new(false),
        tsfn: Mutex::new(None),
        targets: Mutex::new(HashMap::new()),
        next_id: AtomicU32::new(1),
    });
    let h = hub.clone();
    let tsfn: EventsFn = on_events
        .build_threadsafe_function::<()>()
        .callee_handled::<false>()
        .weak::<true>()
        .build_callback(move |ctx| {
            // Cleared before draining, so that an event pushed meanwhile schedules a call.
            h.scheduled.store(false, Ordering::Release);
            let drained = h
                .queue
                .lock()
                .map(|mut q| std::mem::take(&mut *q))
                .unwrap_or_default();
            let list = h.convert(drained);
            h.sync_ref(&ctx.env);
            Ok(list)
        })?;
    if let Ok(mut t) = hub.tsfn.lock() {
        *t = Some(tsfn);
    }
    HUB.with(|h| *h.borrow_mut() = Some(hub));
    Ok(())
}

impl Hub {
    /// A fresh id.
    pub fn next_id(&self) -> u32 {
        loop {
            let id = self.next_id.fetch_add(1, Ordering::Relaxed);
            // 0 is never an id; after 2^32 objects the count wraps around.
            if id != 0 {
                return id;
            }
        }
    }

    /// Adds an object; its events may be pushed from now on.
    pub fn insert(&self, id: u32, target: Target) {
        if let Ok(mut t) = self.targets.lock() {
            t.insert(id, target);
        }
    }

    /// Runs `f` on a socket's handle; `None` when it is gone (or not a socket).
    pub fn with_socket<R>(&self, id: u32, f: impl FnOnce(&Handle) -> R) -> Option<R> {
        let targets = self.targets.lock().ok()?;
        match targets.get(&id) {
            Some(Target::Socket(h)) => Some(f(h)),
            _ => None,
        }
    }

    /// Runs `f` on a listener's handle; `None` when it is gone.
    pub fn with_listener<R>(&self, id: u32, f: impl FnOnce(&ListenerHandle) -> R) -> Option<R> {
        let targets = self.targets.lock().ok()?;
        match targets.get(&id) {
            Some(Target::Listener(h)) => Some(f(h)),
            _ => None,
        }
    }

    /// Keeps the event loop alive while any object has events still to deliver. On the JS
    /// thread only.
    #[allow(deprecated)] // napi-rs's ref/unref: the only way to change a live function's hold
    pub fn sync_ref(&self, env: &Env) {
        let live = self.targets.lock().map(|t| !t.is_empty()).unwrap_or(false);
        if let Ok(mut t) = self.tsfn.lock() {
            if let Some(tsfn) = t.as_mut() {
                let _ = if live {
                    tsfn.refer(env)
                } else {
                    tsfn.unref(env)
                };
            }
        }
    }

    /// Queues an event and schedules a JS call if none is pending. Never blocks on JS.
    pub fn push(&self, id: u32, up: Up, shared: Option<Arc<Shared>>) {
        if let Ok(mut q) = self.queue.lock() {
            q.push(Queued { id, up, shared });
        }
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            if let Ok(t) = self.tsfn.lock() {
                if let Some(tsfn) = t.as_ref() {
                    tsfn.call((), ThreadsafeFunctionCallMode::NonBlocking);
                }
            }
        }
    }

    /// Flattens drained events for JS and forgets the objects whose last event is among
    /// them. On the JS thread.
    fn convert(&self, drained: Vec<Queued>) -> Vec<Flat> {
        let mut out = Vec::with_capacity(drained.len() * 4);
        let mut gone = Vec::new();
        for q in drained {
            out.push(Flat::Num(f64::from(q.id)));
            match q.up {
                Up::Socket(e) => {
                    let (bytes, last) = socket::flatten(e, &mut out);
                    if bytes > 0 {
                        if let Some(s) = &q.shared {
                            s.consumed(bytes);
                        }
                    }
                    if last {
                        gone.push(q.id);
                    }
                }
                Up::Accepted {
                    listener,
                    protocol,
                    request,
                } => out.extend([
                    Flat::Num(EV_ACCEPTED),
                    Flat::Num(f64::from(listener)),
                    Flat::Str(protocol),
                    Flat::Listener(Box::new(listener::accept_js(request))),
                ]),
                Up::Listener(e) => {
                    if matches!(e, ListenerEvent::Closed { .. }) {
                        gone.push(q.id);
                    }
                    out.extend([
                        Flat::Num(EV_LISTENER),
                        Flat::Listener(Box::new(listener::to_js(e))),
                    ]);
                }
            }
        }
        if !gone.is_empty() {
            if let Ok(mut t) = self.targets.lock() {
                for id in gone {
                    t.remove(&id);
                }
            }
        }
        out
    }
}
