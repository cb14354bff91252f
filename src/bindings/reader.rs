//! Inline reads, JavaScript's side (see `hyco_core::socket::inline`): when a socket's task
//! hands it reading, a libuv poll handle on the environment's event loop watches the
//! socket, and when it is readable the JS thread reads it, under the connection's lock as
//! the task would, and hands the events to JavaScript in the same callback: a small message
//! then costs one wake-up (the JS thread's) instead of two (a tokio thread's, then the JS
//! thread's).
//!
//! The poll handle watches a duplicate of the socket's descriptor, made while the
//! connection is held (so the descriptor is the socket's), and closed once libuv has closed
//! the handle; the handle is stopped whenever the task reads again, started again when the
//! task next asks the JS thread to read, and closed with the socket's last event (or the
//! environment). Poll handles are unreferenced: the hub's own handle keeps the loop alive
//! while a socket is open.
//!
//! Unix only: elsewhere the core never asks (`hyco_core::socket::dial` makes no watchable
//! stream).

// Inline reads are Unix only: elsewhere the watcher's parts go unused.
#![cfg_attr(not(unix), allow(dead_code))]

use std::cell::RefCell;
use std::collections::HashMap;
use std::os::raw::c_int;
use std::sync::OnceLock;

use hyco_core::io::SocketFd;
use hyco_core::socket::inline::Inline;
use hyco_core::socket::{Command, Handle};
use napi::sys;

use crate::bindings::hub::{self, Id};
use crate::bindings::uv;

/// A watched socket.
struct Watcher {
    /// Its poll handle (libuv's until closed); its `data` points back here.
    poll: *mut uv::Poll,
    /// The socket's handle, for its reads.
    handle: Handle,
    /// The duplicate descriptor the poll handle watches; closed with the watcher.
    #[cfg(unix)]
    _fd: std::os::fd::OwnedFd,
    /// The poll handle is started.
    active: bool,
}

thread_local! {
    /// This JS thread's watched sockets, by id (each a leaked box, freed when its poll
    /// handle is closed).
    static WATCHERS: RefCell<HashMap<Id, *mut Watcher>> = RefCell::new(HashMap::new());
}

/// Inline reads are on, unless `HYCO_WS_RS_INLINE_READS=0` turns them off (a diagnostic
/// switch, for comparing both ways in one benchmark run). Unix only, and only where the
/// process's libuv has poll handles: otherwise every sparse turn would ask, and be declined.
pub fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        cfg!(unix)
            && uv::polls_available()
            && std::env::var("HYCO_WS_RS_INLINE_READS").map_or(true, |v| v.trim() != "0")
    })
}

/// Starts watching socket `id` (its task asked, see `Hub::want_inline`): restarts its poll
/// handle, or makes one, and reads what the socket already holds.
///
/// # Safety
/// On the JS thread of `env`, a live environment.
pub unsafe fn watch(env: sys::napi_env, id: Id, handle: &Handle) {
    if !uv::polls_available() {
        // Answered, so that the task may ask again (it reads meanwhile).
        handle.decline_inline();
        return;
    }
    let kept = WATCHERS.with(|w| w.borrow().get(&id).copied());
    let watcher = match kept {
        Some(w) => {
            // SAFETY: a watcher in the table is live (freed only after it is taken out).
            let w = unsafe { &mut *w };
            let poll = w.poll;
            let active = &mut w.active;
            // SAFETY: an open poll handle of this thread's loop.
            let reading = handle.start_inline(|_| {
                *active =
                    *active || unsafe { uv::uv_poll_start(poll, uv::READABLE, on_readable) } == 0;
                *active
            });
            (!reading).then_some(w as *mut Watcher)
        }
        None => {
            let mut lp = std::ptr::null_mut();
            // SAFETY: as the caller promises.
            if unsafe { sys::napi_get_uv_event_loop(env, &mut lp) } != sys::Status::napi_ok {
                handle.decline_inline();
                return;
            }
            let mut made = None;
            // SAFETY: `start_inline` calls this with the socket's open descriptor, held
            // open for the call.
            let reading = handle.start_inline(|fd| unsafe { open(lp, id, handle, fd, &mut made) });
            made.filter(|_| !reading)
        }
    };
    if let Some(w) = watcher {
        // Not reading inline after all: the watch, if it started, stops (the task reads).
        // SAFETY: a live watcher of the table, its handle open.
        unsafe { stop(&mut *w) };
    }
}

/// Stops a watcher's poll handle, if it is started.
///
/// # Safety
/// A live watcher, its handle open, on its loop's thread.
unsafe fn stop(w: &mut Watcher) {
    if w.active {
        // SAFETY: as the caller promises.
        unsafe { uv::uv_poll_stop(w.poll) };
        w.active = false;
    }
}

/// Makes socket `id`'s watcher over a duplicate of `fd` and starts it; false if that failed
/// (what was made is released). The watcher, once in the table, is left in `made`.
///
/// # Safety
/// On the JS thread of loop `lp`; `fd` is open for the call.
#[cfg(unix)]
unsafe fn open(
    lp: *mut sys::uv_loop_s,
    id: Id,
    handle: &Handle,
    fd: SocketFd,
    made: &mut Option<*mut Watcher>,
) -> bool {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: as the caller promises.
    let Ok(dup) = unsafe { BorrowedFd::borrow_raw(fd) }.try_clone_to_owned() else {
        return false;
    };
    let poll = uv::alloc(uv::POLL).cast::<uv::Poll>();
    // SAFETY: fresh memory of a poll handle's size, on the loop's thread.
    if unsafe { uv::uv_poll_init(lp, poll, dup.as_raw_fd()) } != 0 {
        // SAFETY: libuv did not take the memory.
        unsafe { uv::free(poll.cast(), uv::POLL) };
        return false;
    }
    let watcher = Box::into_raw(Box::new(Watcher {
        poll,
        handle: handle.clone(),
        _fd: dup,
        active: false,
    }));
    *made = Some(watcher);
    // SAFETY: an initialised handle: its `data` (first field) points to its watcher, which
    // the table holds until `unwatch` closes the handle.
    unsafe {
        *(poll as *mut *mut Watcher) = watcher;
        uv::uv_unref(poll.cast());
        WATCHERS.with(|w| w.borrow_mut().insert(id, watcher));
        (*watcher).active = uv::uv_poll_start(poll, uv::READABLE, on_readable) == 0;
        (*watcher).active
    }
}

#[cfg(not(unix))]
unsafe fn open(
    _: *mut sys::uv_loop_s,
    _: Id,
    _: &Handle,
    _: SocketFd,
    _: &mut Option<*mut Watcher>,
) -> bool {
    false
}

/// libuv: the socket is readable, or its poll failed (`status` < 0, and libuv stopped the
/// handle): read it inline, then hand JavaScript what came; after a failure the task reads.
unsafe extern "C" fn on_readable(poll: *mut uv::Poll, status: c_int, _events: c_int) {
    // SAFETY: the handle's `data` points to its live watcher (see `open`).
    let watcher = unsafe { &mut *(*(poll as *const *mut Watcher)) };
    let Ok(hub) = hub::current() else {
        // Not reachable (the environment's hub closes every watcher as it goes); stop
        // rather than be called again and again.
        // SAFETY: the open handle this callback is for.
        unsafe { stop(watcher) };
        watcher.handle.stop_inline();
        return;
    };
    // This runs on the JavaScript thread, called by libuv: a panic must not unwind into it.
    // The read below has its own guard (its connection is ended); this one covers the
    // delivery that follows, as `on_wake`'s does.
    let delivered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        hub.deliver_after(|| {
            let handle = &watcher.handle;
            let step = if status < 0 {
                handle.stop_inline();
                Inline::Stop
            } else {
                // This runs on the JavaScript thread, called by libuv: a panic must not unwind
                // into it (none is known). The connection (its lock poisoned) is ended instead.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| handle.read_inline()))
                    .unwrap_or_else(|_| {
                        log::error!("hyco-ws-rs: internal error while reading a socket inline");
                        handle.send(Command::Terminate);
                        Inline::Stop
                    })
            };
            if step == Inline::Stop {
                // SAFETY: the open handle this callback is for.
                unsafe { stop(watcher) };
            }
        })
    }));
    if delivered.is_err() {
        log::error!("hyco-ws-rs: internal error while handing events to JavaScript");
    }
    // The delivery may have closed the watcher (the socket's last event): not used from
    // here on.
}

/// Stops watching socket `id`, if it was: its poll handle is closed, and its watcher (with
/// the duplicate descriptor) freed once libuv is done with it. On the JS thread.
pub fn unwatch(id: Id) {
    let Some(watcher) = WATCHERS
        .try_with(|w| w.borrow_mut().remove(&id))
        .ok()
        .flatten()
    else {
        return;
    };
    // SAFETY: a live watcher, just taken out of the table; its open handle is closed once.
    unsafe { uv::uv_close((*watcher).poll.cast(), Some(on_closed)) };
}

/// How many sockets this JS thread watches (open or closing poll handles aside).
pub fn watched() -> usize {
    WATCHERS.try_with(|w| w.borrow().len()).unwrap_or(0)
}

/// Stops watching every socket (the environment is going).
pub fn unwatch_all() {
    let ids: Vec<Id> = WATCHERS
        .try_with(|w| w.borrow().keys().copied().collect())
        .unwrap_or_default();
    for id in ids {
        unwatch(id);
    }
}

/// libuv closed a watcher's handle: the watcher (its duplicate descriptor) and the handle's
/// memory go.
unsafe extern "C" fn on_closed(handle: *mut uv::Handle) {
    // SAFETY: a poll handle made by `open`, whose `data` is its watcher's box, out of the
    // table; libuv calls nothing else on it.
    unsafe {
        let watcher = *(handle as *const *mut Watcher);
        drop(Box::from_raw(watcher));
        uv::free(handle.cast(), uv::POLL);
    }
}
