//! The one way events go up to JavaScript: one queue and one wake-up per Node.js environment,
//! shared by every socket and listener created in it.
//!
//! Tokio threads push events tagged with their object's id; at most one wake-up of the JS
//! thread is pending at a time, and the call it makes drains everything queued, so under load
//! one call carries many events of many objects, in order (`lib/native-events.js` hands each
//! to its object). The call's arguments are the events' values, and the small payloads among
//! them travel in one ArrayBuffer (`delivery`); a long delivery is split into a few calls.
//!
//! The wake-up is a libuv `uv_async_t` of the environment's loop (Node.js's own libuv, whose
//! functions it exports to addons), not a napi ThreadsafeFunction: a ThreadsafeFunction wakes
//! the JS thread while holding its queue's mutex, so the JS thread, woken at once on the other
//! core (or preempting the waking thread on this one), first blocks on that mutex, and both
//! threads switch twice more per wake-up. `uv_async_send` takes no lock. The call into
//! JavaScript goes through `napi_make_callback`, as a ThreadsafeFunction's does, so that
//! microtasks (the sockets' packed sends among them) run when it returns.
//!
//! One wake-up for all, rather than one per object: a handle per socket would cost memory
//! that a listener with thousands of idle connections would pay for nothing. Keep-alive stays
//! per object: the handle is referenced (it keeps the event loop alive) exactly while some
//! object has not yet delivered its last event (a socket's close, a listener's `closed`), and
//! unreferenced otherwise, so the process exits by itself once everything is closed.
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
//! newest copy's callback receives the events; the callback it replaces is released (a
//! wake-up always calls the current one, so no batch goes to a function that is no longer
//! current).

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use napi::bindgen_prelude::{
    FromNapiValue, Function, JsObjectValue, JsValue, Object, ObjectRef, Unknown,
};
use napi::sys;
use napi::{Env, Status};
use napi_derive::napi;

use crate::bindings::delivery;
use crate::bindings::flat::Flat;
use crate::bindings::reader;
use crate::bindings::uv;
use hyco_core::socket::{Command, Handle};

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
    /// Where each event starts in `values` (a delivery's call may be split between events).
    starts: Vec<usize>,
    consumed: Vec<(Arc<dyn Consumer>, usize)>,
    finished: Vec<Id>,
    /// Sockets whose task asks JavaScript's thread to read them (see `reader.rs`).
    inline: Vec<Id>,
}

/// The hub's `uv_async_t`, or null once closed.
struct Wake(*mut uv::Async);

// SAFETY: `uv_async_send` may be called from any thread; everything else done with the
// pointer (init, ref, unref, close) happens on the JS thread, and `Hub::wake_lock` keeps
// sending and closing apart.
unsafe impl Send for Wake {}
unsafe impl Sync for Wake {}

/// What the JS thread needs to call the events callback.
struct JsSide {
    env: sys::napi_env,
    /// The callback `initEvents` registered (a strong reference).
    callback: sys::napi_ref,
    /// For `napi_make_callback`.
    context: sys::napi_async_context,
    /// The handle is referenced (keeps the event loop alive).
    referenced: bool,
}

// SAFETY: only used on the JS thread of `env` (the mutex around it is never contended).
unsafe impl Send for JsSide {}

/// The queue between tokio and one environment's JS thread.
pub struct Hub {
    queue: Mutex<Queue>,
    scheduled: AtomicBool,
    /// The environment is gone: events are dropped.
    closed: AtomicBool,
    /// The wake-up: read-locked to send (by any thread, never contended but by a close),
    /// write-locked to close.
    wake_lock: RwLock<Wake>,
    js: Mutex<Option<JsSide>>,
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
    let raw = env.raw();
    let hub = match HUB.try_with(|h| h.borrow().clone()).ok().flatten() {
        Some(hub) => hub,
        None => {
            let hub = Arc::new(Hub {
                queue: Mutex::new(Queue::default()),
                scheduled: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                wake_lock: RwLock::new(Wake(std::ptr::null_mut())),
                js: Mutex::new(None),
                targets: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
            });
            // SAFETY: on the JS thread of `raw`, a live environment (napi-rs passed it).
            unsafe { hub.open_wake(raw)? };
            // When the environment goes (a worker thread ends), so do its objects: nothing
            // else would stop a listener whose JavaScript side is gone.
            env.add_env_cleanup_hook(hub.clone(), |hub| hub.shutdown())?;
            let _ = HUB.try_with(|h| *h.borrow_mut() = Some(hub.clone()));
            hub
        }
    };
    // SAFETY: `raw` is live and this is its JS thread; the function value is napi-rs's,
    // valid for this call, and the reference made of it keeps it beyond.
    unsafe {
        let mut callback = std::ptr::null_mut();
        check(sys::napi_create_reference(
            raw,
            on_events.value().value,
            1,
            &mut callback,
        ))?;
        let mut js = hub
            .js
            .lock()
            .map_err(|_| napi::Error::new(Status::GenericFailure, "hyco-ws-rs: events lock"))?;
        match js.as_mut() {
            Some(side) => {
                // The previous callback is let go: events go to the new one from now on.
                sys::napi_delete_reference(raw, side.callback);
                side.callback = callback;
            }
            None => {
                let mut name = std::ptr::null_mut();
                let text = "hyco-ws-rs:events";
                check(sys::napi_create_string_utf8(
                    raw,
                    text.as_ptr().cast(),
                    text.len() as isize,
                    &mut name,
                ))?;
                let mut resource = std::ptr::null_mut();
                check(sys::napi_create_object(raw, &mut resource))?;
                let mut context = std::ptr::null_mut();
                check(sys::napi_async_init(raw, resource, name, &mut context))?;
                *js = Some(JsSide {
                    env: raw,
                    callback,
                    context,
                    referenced: false,
                });
            }
        }
    }
    // Whatever is queued goes to the new callback, in a call of its own.
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
        None if contract != EVENT_CONTRACT => Err(throw_mismatch(
            env,
            format!(
                "hyco-ws-rs: lib/ and the native addon hand events over differently (lib/'s \
                 event contract {contract}; the addon's is {EVENT_CONTRACT}). Rebuild the addon \
                 (\"npm run build\") for this version of the package."
            ),
        )),
        None => {
            let class: Function<(), Unknown> = env.get_global()?.get_named_property("Map")?;
            let registry = Object::from_unknown(class.new_instance(())?)?;
            let map = registry.create_ref::<false>()?;
            let _ = REGISTRY.try_with(|r| *r.borrow_mut() = Some(Registry { contract, map }));
            Ok(registry)
        }
    }
}

/// The event contract of this addon's calls (`lib/native-events.js`'s `EVENT_CONTRACT`): 2
/// since the events are the call's arguments with the small payloads packed, and sockets
/// take runs (`messages` events); 3 since a pack and a run are ArrayBuffers, not Buffers.
/// The first copy of `lib/` on a thread must have it; later copies must have the first
/// one's.
const EVENT_CONTRACT: u32 = 3;

/// Throws `message` as an `Error` with code `ERR_HYCO_NATIVE_MISMATCH`; returns the napi
/// error to propagate.
fn throw_mismatch(env: &Env, message: String) -> napi::Error {
    match env.throw_error(&message, Some(MISMATCH)) {
        Ok(()) => napi::Error::new(Status::PendingException, message),
        Err(_) => napi::Error::new(Status::GenericFailure, message),
    }
}

/// A napi status as a result.
pub(crate) fn check(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(
            Status::GenericFailure,
            format!("hyco-ws-rs: Node-API call failed ({status})"),
        ))
    }
}

/// libuv calls this on the JS thread once `uv_async_send` was called (once for several).
unsafe extern "C" fn on_wake(handle: *mut uv::Async) {
    // SAFETY: the handle's `data` (its first field) holds the `Arc<Hub>` leaked by
    // `open_wake`, released only by `on_closed`, after which libuv calls nothing else.
    let hub = unsafe { &*(*(handle as *const *const Hub)) };
    // This runs on the JavaScript thread, called by libuv: a panic must not unwind into it
    // (none is known). The events of that call are lost instead.
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| hub.deliver())).is_err() {
        log::error!("hyco-ws-rs: internal error while handing events to JavaScript");
    }
}

/// libuv is done with the handle: its memory and the hub it held go.
unsafe extern "C" fn on_closed(handle: *mut uv::Handle) {
    // SAFETY: as in `on_wake`; the memory is what `open_wake` allocated for it.
    unsafe {
        drop(Arc::from_raw(*(handle as *const *const Hub)));
        uv::free(handle.cast::<u64>(), uv::ASYNC);
    }
}

/// Starts inline reads for the sockets whose tasks asked, when dropped: after the
/// delivery's call, however it returns.
struct Attach<'a>(&'a Hub, sys::napi_env, Vec<Id>);

impl Drop for Attach<'_> {
    fn drop(&mut self) {
        for id in self.2.drain(..) {
            if let Some(handle) = self.0.with(id, |h: &Handle| h.clone()) {
                // Watching reads the socket at once, on the JS thread (possibly while a panic
                // of the delivery unwinds): a panic there ends that connection, and goes no
                // further.
                let watched = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    // SAFETY: on the JS thread of the live environment `self.1` (a
                    // delivery's).
                    unsafe { reader::watch(self.1, id, &handle) };
                }));
                if watched.is_err() {
                    log::error!("hyco-ws-rs: internal error while starting inline reads");
                    handle.send(Command::Terminate);
                }
            }
        }
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
    pub fn sync_ref(&self, _env: &Env) {
        self.sync_ref_here();
    }

    /// [`Hub::sync_ref`], on the JS thread.
    fn sync_ref_here(&self) {
        let live = self.targets.lock().map(|t| !t.is_empty()).unwrap_or(false);
        let Ok(mut js) = self.js.lock() else {
            return;
        };
        let Some(side) = js.as_mut().filter(|s| s.referenced != live) else {
            return;
        };
        if let Ok(w) = self.wake_lock.read() {
            if !w.0.is_null() {
                // SAFETY: an open handle of this thread's loop.
                unsafe {
                    if live {
                        uv::uv_ref(w.0.cast());
                    } else {
                        uv::uv_unref(w.0.cast());
                    }
                }
                side.referenced = live;
            }
        }
    }

    /// Makes the wake-up handle on `env`'s loop (unreferenced until an object needs it).
    ///
    /// # Safety
    /// On the JS thread of `env`, a live environment; once per hub.
    unsafe fn open_wake(self: &Arc<Self>, env: sys::napi_env) -> napi::Result<()> {
        // SAFETY: as the caller promises; the handle's memory is zeroed, sized and aligned
        // (8 bytes) for a `uv_async_t`, and its `data` set after `uv_async_init` (which
        // leaves it alone) to an `Arc<Hub>` that `on_closed` releases.
        unsafe {
            if !uv::available() {
                return Err(napi::Error::new(
                    Status::GenericFailure,
                    "hyco-ws-rs: this program does not export libuv's functions",
                ));
            }
            let mut lp = std::ptr::null_mut();
            check(sys::napi_get_uv_event_loop(env, &mut lp))?;
            let handle = uv::alloc(uv::ASYNC).cast::<uv::Async>();
            let status: c_int = uv::uv_async_init(lp, handle, on_wake);
            if status != 0 {
                uv::free(handle.cast::<u64>(), uv::ASYNC);
                return Err(napi::Error::new(
                    Status::GenericFailure,
                    format!("hyco-ws-rs: uv_async_init failed ({status})"),
                ));
            }
            *(handle as *mut *const Hub) = Arc::into_raw(self.clone());
            uv::uv_unref(handle.cast());
            if let Ok(mut w) = self.wake_lock.write() {
                w.0 = handle;
            }
        }
        Ok(())
    }

    /// Reads inline with `read` (see `reader.rs`), then hands everything queued to the
    /// JavaScript callback at once, as a wake-up would: no wake-up is sent meanwhile. On the
    /// JS thread, from libuv. `read` must not panic (a guard still delivers if it does, so
    /// that wake-ups are not left off).
    pub fn deliver_after<R>(&self, read: impl FnOnce() -> R) -> R {
        /// Delivers when dropped, however `read` ends.
        struct Then<'a>(&'a Hub);
        impl Drop for Then<'_> {
            fn drop(&mut self) {
                self.0.deliver();
            }
        }
        // Set, a push does not send a wake-up: the delivery below takes what it queued.
        self.scheduled.store(true, Ordering::Release);
        let _then = Then(self);
        read()
    }

    /// Hands everything queued to the JavaScript callback. On the JS thread, from libuv.
    fn deliver(&self) {
        // Cleared before draining, so that an event pushed meanwhile schedules a wake-up.
        self.scheduled.store(false, Ordering::Release);
        let (mut list, starts, inline) = self.drain();
        self.wake_if_only_finals();
        self.sync_ref_here();
        let (env, callback, context) = match self.js.lock().ok().as_deref() {
            Some(Some(side)) => (side.env, side.callback, side.context),
            _ => return,
        };
        // After the call, so that the answers it sends go first; the tasks read meanwhile.
        let _start = Attach(self, env, inline);
        if list.is_empty() {
            return;
        }
        // SAFETY: libuv runs this on the loop's own JS thread, outside any JavaScript, while
        // the environment lives (its cleanup closes the handle); every value is made and used
        // inside the handle scope opened here.
        unsafe {
            let mut scope = std::ptr::null_mut();
            if sys::napi_open_handle_scope(env, &mut scope) != sys::Status::napi_ok {
                return;
            }
            // Responses the handlers send inline meanwhile go out together once it returns.
            let _ = hyco_core::listener::hold_inline_responses(|| {
                Self::call(env, callback, context, &mut list, &starts)
            });
            sys::napi_close_handle_scope(env, scope);
        }
        self.recycle(list, starts);
    }

    /// Gives the emptied vectors of a delivery back to the queue, unless events queued
    /// meanwhile made new ones, or they grew large in a burst: a steady flow of events then
    /// costs no allocation per delivery.
    fn recycle(&self, mut values: Vec<Flat>, mut starts: Vec<usize>) {
        /// Vectors of up to this many values are kept (32 bytes each, and 8 for a start:
        /// at most 160 KiB for the process).
        const KEEP: usize = 4096;
        if values.capacity() > KEEP {
            return;
        }
        values.clear();
        starts.clear();
        if let Ok(mut q) = self.queue.lock() {
            if q.values.capacity() == 0 && q.starts.capacity() == 0 {
                q.values = values;
                q.starts = starts;
            }
        }
    }

    /// Calls `callback(pack, ...list)` (see `delivery`) as a callback from the event loop,
    /// once per part of `list`: microtasks run when each returns, and an exception one
    /// throws is the process's uncaught exception.
    ///
    /// # Safety
    /// On `env`'s JS thread, in an open handle scope, outside JavaScript.
    unsafe fn call(
        env: sys::napi_env,
        callback: sys::napi_ref,
        context: sys::napi_async_context,
        list: &mut Vec<Flat>,
        starts: &[usize],
    ) -> napi::Result<()> {
        // SAFETY: as the caller promises.
        unsafe {
            let mut func = std::ptr::null_mut();
            check(sys::napi_get_reference_value(env, callback, &mut func))?;
            let mut recv = std::ptr::null_mut();
            check(sys::napi_get_global(env, &mut recv))?;
            delivery::in_parts(env, list, starts, |args| {
                let mut result = std::ptr::null_mut();
                let status = sys::napi_make_callback(
                    env,
                    context,
                    recv,
                    func,
                    args.len(),
                    args.as_ptr(),
                    &mut result,
                );
                if status == sys::Status::napi_pending_exception {
                    let mut err = std::ptr::null_mut();
                    sys::napi_get_and_clear_last_exception(env, &mut err);
                    sys::napi_fatal_exception(env, err);
                    // Reported; the next parts' events are still delivered.
                    return Ok(());
                }
                check(status)
            })
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
            let start = q.values.len();
            q.starts.push(start);
            q.values.push(Flat::Num(id as f64));
            q.values.extend(event);
            match then {
                Then::Nothing => {}
                // A run of one socket's messages tells it once.
                Then::Consumed(c, bytes) => match q.consumed.last_mut() {
                    Some((last, sum)) if Arc::ptr_eq(last, &c) => *sum += bytes,
                    _ => q.consumed.push((c, bytes)),
                },
                Then::Last => q.finished.push(id),
            }
        }
    }

    /// Queues object `id`'s last event without waking JavaScript (see [`Hub::push_quiet`]),
    /// unless every object left has its last event queued: then nothing else would deliver
    /// them, and the event loop, kept alive for them, would never end.
    pub fn push_last_quiet<const N: usize>(&self, id: Id, event: [Flat; N]) {
        self.push_quiet(id, event, Then::Last);
        self.wake_if_only_finals();
    }

    /// Schedules a delivery when every object left has its last event queued. Called after
    /// such a push, and by each delivery once it has removed the objects it ended: a push
    /// that reads the counts while a delivery is between taking the queue and removing its
    /// objects sees those objects still there, but then the delivery's own check, which
    /// comes after both, sees the pushed event and the removal.
    fn wake_if_only_finals(&self) {
        // Two locks, one after the other (never nested).
        let finals = self.queue.lock().map(|q| q.finished.len()).unwrap_or(0);
        if finals == 0 {
            return;
        }
        let objects = self.targets.lock().map(|t| t.len()).unwrap_or(0);
        if objects <= finals {
            self.schedule();
        }
    }

    /// Schedules a JS call if anything is queued (see [`Hub::push_quiet`]), events or
    /// sockets to read inline.
    pub fn wake(&self) {
        if self
            .queue
            .lock()
            .map(|q| !q.values.is_empty() || !q.inline.is_empty())
            .unwrap_or(false)
        {
            self.schedule();
        }
    }

    fn schedule(&self) {
        if !self.scheduled.swap(true, Ordering::AcqRel) {
            if let Ok(w) = self.wake_lock.read() {
                if !w.0.is_null() {
                    // SAFETY: an open handle (closing takes the write lock and nulls it);
                    // `uv_async_send` is thread-safe and takes no lock.
                    unsafe { uv::uv_async_send(w.0) };
                }
            }
        }
    }

    /// The environment is being torn down: stops every socket and listener, drops their
    /// events and releases the function.
    fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        reader::unwatch_all();
        let targets = take_all(&self.targets);
        for target in targets.values() {
            target.stop();
        }
        drop(take_all(&self.queue));
        if let Ok(mut w) = self.wake_lock.write() {
            let handle = std::mem::replace(&mut w.0, std::ptr::null_mut());
            if !handle.is_null() {
                // SAFETY: this runs on the JS thread (an environment cleanup hook); the
                // handle is open and nothing sends on it any more (it is nulled under the
                // write lock). `on_closed` frees it.
                unsafe { uv::uv_close(handle.cast(), Some(on_closed)) };
            }
        }
        if let Ok(mut js) = self.js.lock() {
            if let Some(side) = js.take() {
                // SAFETY: the environment is still live during its cleanup hooks.
                unsafe {
                    sys::napi_delete_reference(side.env, side.callback);
                    sys::napi_async_destroy(side.env, side.context);
                }
            }
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
    /// forgets the objects whose last event is among them (and stops watching their
    /// sockets). Returns the values, and the sockets to read inline. On the JS thread.
    fn drain(&self) -> (Vec<Flat>, Vec<usize>, Vec<Id>) {
        let Queue {
            values,
            starts,
            consumed,
            finished,
            inline,
        } = take_all(&self.queue);
        for (consumer, bytes) in consumed {
            consumer.consumed(bytes);
        }
        if !finished.is_empty() {
            if let Ok(mut t) = self.targets.lock() {
                for id in &finished {
                    t.remove(id);
                }
            }
            for id in finished {
                reader::unwatch(id);
            }
        }
        (values, starts, inline)
    }

    /// Forgets object `id`, which has no event of its own to end with (a listener's control
    /// channel, see `listener.rs`), with the next delivery: its handle goes from the table
    /// and its socket is no longer watched. Schedules that delivery.
    pub fn forget(&self, id: Id) {
        if let Ok(mut q) = self.queue.lock() {
            q.finished.push(id);
        }
        self.schedule();
    }

    /// Socket `id`'s task asks JavaScript's thread to read it (see `reader.rs`): done with
    /// the next delivery, which [`Hub::wake`] schedules (the socket's sink calls it at the
    /// end of the task's turn, with the events that made the task ask).
    pub fn want_inline(&self, id: Id) {
        if self.closed.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut q) = self.queue.lock() {
            q.inline.push(id);
        }
    }
}
