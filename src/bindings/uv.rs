//! Node.js's libuv, as far as the addon needs it: the hub's wake-up (`uv_async_t`, see
//! `hub.rs`) and inline reads' socket watchers (`uv_poll_t`, see `reader.rs`). The addon
//! runs inside `node`, which exports libuv's functions to addons.

// Inline reads are Unix only: elsewhere the poll handle's parts go unused.
#![cfg_attr(not(unix), allow(dead_code))]

use std::os::raw::c_int;
use std::sync::OnceLock;

/// An opaque `uv_async_t`: its memory is sized by `uv_handle_size`, and, as every libuv
/// handle's, its first field is `void* data`.
#[repr(C)]
pub struct Async {
    _opaque: [u8; 0],
}

/// An opaque `uv_poll_t` (as [`Async`]).
#[repr(C)]
pub struct Poll {
    _opaque: [u8; 0],
}

/// An opaque `uv_handle_t`: any handle, for `uv_close`.
#[repr(C)]
pub struct Handle {
    _opaque: [u8; 0],
}

/// `UV_ASYNC` of `uv_handle_type`.
pub const ASYNC: c_int = 1;

/// `UV_POLL` of `uv_handle_type`.
pub const POLL: c_int = 8;

/// `UV_READABLE` of `uv_poll_event`.
pub const READABLE: c_int = 1;

/// An async handle's callback.
pub type Callback = unsafe extern "C" fn(*mut Async);

/// A poll handle's callback: the handle, a status (negative: an error) and the events.
pub type PollCallback = unsafe extern "C" fn(*mut Poll, c_int, c_int);

/// A closed handle's callback.
pub type CloseCallback = unsafe extern "C" fn(*mut Handle);

/// The platform's socket type for `uv_poll_init` (`uv_poll_init_socket` on Windows).
#[cfg(unix)]
pub type OsSocket = c_int;

/// The platform's socket type for `uv_poll_init` (`uv_poll_init_socket` on Windows).
#[cfg(windows)]
pub type OsSocket = usize;

/// libuv's functions, looked up in the running program when first needed rather than
/// linked: `node` exports them on every platform, but only Linux links an addon with
/// undefined symbols by default (napi-rs looks Node-API's up the same way on Windows).
struct Api {
    handle_size: unsafe extern "C" fn(c_int) -> usize,
    async_init: unsafe extern "C" fn(*mut napi::sys::uv_loop_s, *mut Async, Callback) -> c_int,
    async_send: unsafe extern "C" fn(*mut Async) -> c_int,
    close: unsafe extern "C" fn(*mut Handle, Option<CloseCallback>),
    r#ref: unsafe extern "C" fn(*mut Handle),
    unref: unsafe extern "C" fn(*mut Handle),
    /// Poll handles' functions: optional, the hub works without them (inline reads are then
    /// off).
    poll: Option<PollApi>,
}

/// libuv's poll handle functions.
struct PollApi {
    init: unsafe extern "C" fn(*mut napi::sys::uv_loop_s, *mut Poll, OsSocket) -> c_int,
    start: unsafe extern "C" fn(*mut Poll, c_int, PollCallback) -> c_int,
    stop: unsafe extern "C" fn(*mut Poll) -> c_int,
}

static API: OnceLock<Option<Api>> = OnceLock::new();

/// The functions, or `None` when the program does not export them.
fn api() -> Option<&'static Api> {
    API.get_or_init(|| {
        // SAFETY: the running program itself is never unloaded, and each symbol is
        // libuv's function of the declared signature (uv.h, libuv 1.x).
        unsafe {
            #[cfg(unix)]
            let program = libloading::os::unix::Library::this();
            #[cfg(windows)]
            let program = libloading::os::windows::Library::this().ok()?;
            #[cfg(unix)]
            let poll_init = b"uv_poll_init\0";
            #[cfg(windows)]
            let poll_init = b"uv_poll_init_socket\0";
            let api = Api {
                handle_size: *program.get(b"uv_handle_size\0").ok()?,
                async_init: *program.get(b"uv_async_init\0").ok()?,
                async_send: *program.get(b"uv_async_send\0").ok()?,
                close: *program.get(b"uv_close\0").ok()?,
                r#ref: *program.get(b"uv_ref\0").ok()?,
                unref: *program.get(b"uv_unref\0").ok()?,
                poll: (|| {
                    Some(PollApi {
                        init: *program.get(poll_init).ok()?,
                        start: *program.get(b"uv_poll_start\0").ok()?,
                        stop: *program.get(b"uv_poll_stop\0").ok()?,
                    })
                })(),
            };
            // The functions stay valid as long as the program runs.
            std::mem::forget(program);
            Some(api)
        }
    })
    .as_ref()
}

/// libuv's functions can be called.
pub fn available() -> bool {
    api().is_some()
}

/// libuv's poll handle functions can be called too.
pub fn polls_available() -> bool {
    api().is_some_and(|a| a.poll.is_some())
}

// The functions below call libuv's when `available()`; callers check it once (a hub whose
// handle could not be made never calls them). Each has libuv's contract: on the loop's
// thread, with a handle of the right kind (but `uv_async_send`, from any thread).

/// A handle's memory, zeroed and 8-byte aligned, for a handle of `kind`; freed by [`free`].
pub fn alloc(kind: c_int) -> *mut u64 {
    let words = handle_words(kind);
    Box::into_raw(vec![0u64; words].into_boxed_slice()).cast::<u64>()
}

/// Frees what [`alloc`] gave for `kind`.
///
/// # Safety
/// `memory` came from `alloc(kind)`, and libuv is done with it.
pub unsafe fn free(memory: *mut u64, kind: c_int) {
    let words = handle_words(kind);
    // SAFETY: as the caller promises: a boxed slice of this length.
    unsafe {
        drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
            memory, words,
        )))
    };
}

fn handle_words(kind: c_int) -> usize {
    // SAFETY: `uv_handle_size` only reads its argument.
    unsafe { uv_handle_size(kind) }.div_ceil(8).max(1)
}

pub unsafe fn uv_handle_size(kind: c_int) -> usize {
    api().map_or(0, |a| unsafe { (a.handle_size)(kind) })
}

pub unsafe fn uv_async_init(lp: *mut napi::sys::uv_loop_s, h: *mut Async, cb: Callback) -> c_int {
    api().map_or(-1, |a| unsafe { (a.async_init)(lp, h, cb) })
}

pub unsafe fn uv_async_send(h: *mut Async) -> c_int {
    api().map_or(-1, |a| unsafe { (a.async_send)(h) })
}

pub unsafe fn uv_close(h: *mut Handle, cb: Option<CloseCallback>) {
    if let Some(a) = api() {
        unsafe { (a.close)(h, cb) }
    }
}

pub unsafe fn uv_ref(h: *mut Handle) {
    if let Some(a) = api() {
        unsafe { (a.r#ref)(h) }
    }
}

pub unsafe fn uv_unref(h: *mut Handle) {
    if let Some(a) = api() {
        unsafe { (a.unref)(h) }
    }
}

pub unsafe fn uv_poll_init(lp: *mut napi::sys::uv_loop_s, h: *mut Poll, fd: OsSocket) -> c_int {
    api()
        .and_then(|a| a.poll.as_ref())
        .map_or(-1, |p| unsafe { (p.init)(lp, h, fd) })
}

pub unsafe fn uv_poll_start(h: *mut Poll, events: c_int, cb: PollCallback) -> c_int {
    api()
        .and_then(|a| a.poll.as_ref())
        .map_or(-1, |p| unsafe { (p.start)(h, events, cb) })
}

pub unsafe fn uv_poll_stop(h: *mut Poll) -> c_int {
    api()
        .and_then(|a| a.poll.as_ref())
        .map_or(-1, |p| unsafe { (p.stop)(h) })
}
