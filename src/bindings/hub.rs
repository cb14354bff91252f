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
//!
//! Copies of the package's JavaScript: the addon is loaded once per process, but `lib/` may
//! be loaded again in the same thread (jest loads it once per test file, in a vm context of
//! its own; `jest.resetModules()`, a cleared `require` cache, two copies of the package
//! sharing one build). Every copy calls `initEvents` and must keep getting its objects'
//! events, so what a JS thread's copies share lives here, not in any one copy: the hub (one
//! queue, one id counter) and the registry, the JavaScript `Map` from id to object that
//! `initEvents` hands to every copy. Every copy registers its objects there, so whichever
//! copy's callback receives a batch finds every object and calls that object's own
//! handler. The addon makes the `Map` itself, in its own context: one made by a copy would
//! keep that copy's vm context (a jest test file's whole environment) alive for good. The
//! newest copy's callback receives the events; the callback it replaces is released, and a
//! call still pending on it is skipped (see `generation`), so no batch goes to a function
//! that is no longer the current one.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use napi::bindgen_prelude::{FromNapiValue, Function, JsObjectValue, Object, ObjectRef, Unknown};
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi::{Env, Status};
use napi_derive::napi;

use crate::bindings::flat::Flat;

/// Empties a locked collection, returning what it held (nothing if the lock is poisoned).
fn take_all<T: Default>(m: &Mutex<T>) -> T {
    m.lock()
        .map(|mut v| std::mem::take(&mut *v))
        .unwrap_or_default()
}

/// A native object's id, as JavaScript holds it (a number below 2^53).
pub type Id = u64;

/// The id JavaScript passed (ids are whole numbers below 2^53; anything else matches none).
pub fn id_of(n: f64) -> Id {
    if n.is_finite() && n >= 1.0 && n.fract() == 0.0 {
        n as Id
    } else {
        0
    }
}

/// A native object JavaScript addresses by id: a socket's or a listener's handle.
pub trait Target: Send + Sync + 'static {
    /// Stops it: its environment is going away.
    fn stop(&self);

    /// For [`Hub::with`]'s downcast.
    fn as_any(&self) -> &dyn Any;
}

/// Told how many of its bytes JavaScript has taken, once an event carrying them is
/// delivered (a socket's message backlog, which holds back its reading).
pub trait Consumer: Send + Sync {
    /// `bytes` reached JavaScript.
    fn consumed(&self, bytes: usize);
}

/// What the hub does once an event reaches JavaScript.
pub enum Then {
    /// Nothing.
    Nothing,
    /// Tell `consumer` that `bytes` were taken.
    Consumed(Arc<dyn Consumer>, usize),
    /// It was the object's last event: forget the object.
    Last,
}

/// Events waiting for the next JS call: their flat values, and what to do once they are
/// delivered.
#[derive(Default)]
struct Queue {
    values: Vec<Flat>,
    consumed: Vec<(Arc<dyn Consumer>, usize)>,
    finished: Vec<Id>,
}

type EventsFn = ThreadsafeFunction<(), (), Vec<Flat>, Status, false, true>;

/// The queue between tokio and one environment's JS thread.
pub struct Hub {
    queue: Mutex<Queue>,
    scheduled: AtomicBool,
    /// The environment is gone: events are dropped.
    closed: AtomicBool,
    tsfn: Mutex<Option<EventsFn>>,
    /// Which `initEvents` call installed the current function. A call scheduled on a
    /// function that a later `initEvents` replaced finds another number here and leaves
    /// the queue to the current one. Read and written on the JS thread only.
    generation: AtomicU64,
    targets: Mutex<HashMap<Id, Arc<dyn Target>>>,
    next_id: AtomicU64,
}

/// The JavaScript registry every copy of `lib/` on this thread shares, and the contract
/// its objects follow (see [`init_events`]).
struct Registry {
    contract: u32,
    map: ObjectRef<false>,
}

thread_local! {
    /// The hub of the environment whose JS thread this is.
    static HUB: RefCell<Option<Arc<Hub>>> = const { RefCell::new(None) };

    /// The registry of the environment whose JS thread this is. Not unreferenced when the
    /// environment goes: Node deletes an environment's references itself at teardown.
    static REGISTRY: RefCell<Option<Registry>> = const { RefCell::new(None) };
}

/// The code of a `lib/` copy that does not fit this addon or the copies already loaded.
const MISMATCH: &str = "ERR_HYCO_NATIVE_MISMATCH";

/// This environment's hub (on its JS thread).
pub fn current() -> napi::Result<Arc<Hub>> {
    // lib/native-events.js calls initEvents() when it loads, before anything else can run.
    HUB.try_with(|h| h.borrow().clone())
        .ok()
        .flatten()
        .ok_or_else(|| {
            napi::Error::new(
                Status::GenericFailure,
                "hyco-ws-rs: initEvents() was not called",
            )
        })
}

/// Registers a copy of `lib/`'s event callback and returns the registry its objects go in.
///
/// `onEvents(list)` receives every socket's and listener's events as one flat list (`id type
/// fields...` repeated) and hands each to the object registered under its id in the
/// registry, a `Map` made by the first call on a JS thread and returned by every call, so
/// all copies register in one `Map` and any copy's callback finds every object (each
/// object's handler is its own copy's). `contract` numbers what the callback expects of the
/// registered objects (`lib/native-events.js`); a copy with another number than the first
/// one's is refused with `ERR_HYCO_NATIVE_MISMATCH` and changes nothing. Otherwise its
/// callback receives the events from now on (the newest copy's is the one that runs), and
/// whatever is queued goes to it.
#[napi(js_name = "initEvents", catch_unwind)]
pub fn init_events<'env>(
    env: &'env Env,
    on_events: Function<Vec<Flat>, ()>,
    contract: Option<u32>,
) -> napi::Result<Object<'env>> {
    let Some(contract) = contract else {
        // lib/ from before the registry: it would keep a table of its own.
        return Err(throw_mismatch(
            env,
            "hyco-ws-rs: lib/ is older than the native addon (it gives initEvents() no event \
             contract). Rebuild the addon (\"npm run build\") for this version of the \
             package."
                .to_owned(),
        ));
    };
    let shared = shared_registry(env, contract)?;
    let hub = match HUB.try_with(|h| h.borrow().clone()).ok().flatten() {
        Some(hub) => hub,
        None => {
            let hub = Arc::new(Hub {
                queue: Mutex::new(Queue::default()),
                scheduled: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                tsfn: Mutex::new(None),
                generation: AtomicU64::new(0),
                targets: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            });
            // When the environment goes (a worker thread ends), so do its objects: nothing
            // else would stop a listener whose JavaScript side is gone.
            env.add_env_cleanup_hook(hub.clone(), |hub| hub.shutdown())?;
            let _ = HUB.try_with(|h| *h.borrow_mut() = Some(hub.clone()));
            hub
        }
    };
    let generation = hub.generation.load(Ordering::Relaxed).wrapping_add(1);
    let h = hub.clone();
    let tsfn: EventsFn = on_events
        .build_threadsafe_function::<()>()
        .callee_handled::<false>()
        .weak::<true>()
        .build_callback(move |ctx| {
            if h.generation.load(Ordering::Relaxed) != generation {
                // Replaced since this call was scheduled: what is queued goes to the
                // current function, which `initEvents` woke, in order. Nothing is taken
                // here, and `scheduled` is left to the current function's call.
                return Ok(Vec::new());
            }
            // Cleared before draining, so that an event pushed meanwhile schedules a call.
            h.scheduled.store(false, Ordering::Release);
            // This runs on the JavaScript thread, called by Node: a panic must not unwind
            // into it (none is known). The events of that call are lost instead.
            let list = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let list = h.drain();
                h.sync_ref(&ctx.env);
                list
            }))
            .unwrap_or_else(|_| {
                log::error!("hyco-ws-rs: internal error while handing events to JavaScript");
                Vec::new()
            });
            Ok(list)
        })?;
    if let Ok(mut t) = hub.tsfn.lock() {
        // The previous function is released here; a call it still has pending runs, finds
        // another generation and takes nothing.
        hub.generation.store(generation, Ordering::Relaxed);
        *t = Some(tsfn);
    }
    // Whatever is queued goes to the new function, in a call of its own.
    hub.scheduled.store(false, Ordering::Release);
    hub.wake();
    hub.sync_ref(env);
    Ok(shared)
}

/// The registry this JS thread's copies share: the one kept from the first call, or a new
/// `Map`, kept from now on. Refuses a copy of another `contract`.
fn shared_registry(env: &Env, contract: u32) -> napi::Result<Object<'_>> {
    let kept = REGISTRY
        .try_with(|r| {
            r.borrow()
                .as_ref()
                .map(|kept| (kept.contract, kept.map.get_value(env)))
        })
        .ok()
        .flatten();
    match kept {
        Some((kept, _)) if kept != contract => Err(throw_mismatch(
            env,
            format!(
                "hyco-ws-rs: another copy of the package in this thread hands events to its \
                 objects differently (event contract {kept}; this copy's is {contract}). Load \
                 one version of the package per thread, or give each copy a native addon of \
                 its own."
            ),
        )),
        Some((_, map)) => map,
        None => {
            let class: Function<(), Unknown> = env.get_global()?.get_named_property("Map")?;
            let registry = Object::from_unknown(class.new_instance(())?)?;
            let map = registry.create_ref::<false>()?;
            let _ = REGISTRY.try_with(|r| *r.borrow_mut() = Some(Registry { contract, map }));
            Ok(registry)
        }
    }
}

/// Throws `message` as an `Error` with code `ERR_HYCO_NATIVE_MISMATCH`; returns the napi
/// error to propagate.
fn throw_mismatch(env: &Env, message: String) -> napi::Error {
    match env.throw_error(&message, Some(MISMATCH)) {
        Ok(()) => napi::Error::new(Status::PendingException, message),
        Err(_) => napi::Error::new(Status::GenericFailure, message),
    }
}

impl Hub {
    /// A fresh id, never used before in this environment (a 2^53 count does not run out:
    /// at a million objects a second it would take 285 years), so that an event can never
    /// reach another object than its own.
    pub fn next_id(&self) -> Id {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Adds an object; its events may be pushed from now on. False (and nothing added)
    /// once the environment is being torn down: `shutdown` sets `closed` before it takes
    /// the table, and this checks it under the table's lock, so an object is either
    /// stopped by `shutdown` or refused here, never left running unseen.
    pub fn insert(&self, id: Id, target: Arc<dyn Target>) -> bool {
        let Ok(mut t) = self.targets.lock() else {
            return false;
        };
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        t.insert(id, target);
        true
    }

    /// Runs `f` on object `id` if it is a `T` (a socket's or a listener's handle); `None`
    /// when it is gone or of another kind.
    pub fn with<T: 'static, R>(&self, id: Id, f: impl FnOnce(&T) -> R) -> Option<R> {
        let target = self.targets.lock().ok()?.get(&id)?.clone();
        target.as_any().downcast_ref::<T>().map(f)
    }

    /// How many objects JavaScript can address (those whose last event is not delivered
    /// yet), and how many flat values wait for the next JS call.
    pub fn counts(&self) -> (usize, usize) {
        let targets = self.targets.lock().map(|t| t.len()).unwrap_or(0);
        let queued = self.queue.lock().map(|q| q.values.len()).unwrap_or(0);
        (targets, queued)
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

    /// Queues object `id`'s event (its number and fields, see `events.rs`) and schedules a
    /// JS call if none is pending. Never blocks on JS.
    pub fn push<const N: usize>(&self, id: Id, event: [Flat; N], then: Then) {
        self.push_quiet(id, event, then);
        self.schedule();
    }

    /// Queues an event without waking JavaScript: it goes with the next call (in order),
    /// or with the one [`Hub::wake`] schedules. Waking the JS thread costs the waking
    /// thread a few tens of microseconds on a busy machine, which a caller may want to
    /// pay later.
    pub fn push_quiet<const N: usize>(&self, id: Id, event: [Flat; N], then: Then) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut q) = self.queue.lock() {
            q.values.push(Flat::Num(id as f64));
            q.values.extend(event);
            match then {
                Then::Nothing => {}
                Then::Consumed(c, bytes) => q.consumed.push((c, bytes)),
                Then::Last => q.finished.push(id),
            }
        }
    }

    /// Schedules a JS call if anything is queued (see [`Hub::push_quiet`]).
    pub fn wake(&self) {
        if self
            .queue
            .lock()
            .map(|q| !q.values.is_empty())
            .unwrap_or(false)
        {
            self.schedule();
        }
    }

    fn schedule(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            if let Ok(t) = self.tsfn.lock() {
                if let Some(tsfn) = t.as_ref() {
                    tsfn.call((), ThreadsafeFunctionCallMode::NonBlocking);
                }
            }
        }
    }

    /// The environment is being torn down: stops every socket and listener, drops their
    /// events and releases the function.
    fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        let targets = take_all(&self.targets);
        for target in targets.values() {
            target.stop();
        }
        drop(take_all(&self.queue));
        if let Ok(mut t) = self.tsfn.lock() {
            t.take();
        }
        // try_with: at thread exit the slot may already be gone.
        let _ = HUB.try_with(|h| {
            if let Ok(mut h) = h.try_borrow_mut() {
                h.take();
            }
        });
        let _ = REGISTRY.try_with(|r| {
            if let Ok(mut r) = r.try_borrow_mut() {
                r.take();
            }
        });
    }

    /// Takes everything queued for JavaScript: tells consumers their bytes are taken and
    /// forgets the objects whose last event is among them. On the JS thread.
    fn drain(&self) -> Vec<Flat> {
        let Queue {
            values,
            consumed,
            finished,
        } = take_all(&self.queue);
        for (consumer, bytes) in consumed {
            consumer.consumed(bytes);
        }
        if !finished.is_empty() {
            if let Ok(mut t) = self.targets.lock() {
                for id in finished {
                    t.remove(&id);
                }
            }
        }
        values
    }
}
