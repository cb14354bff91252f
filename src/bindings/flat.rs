//! The values of the flat event list JavaScript receives (see `hub`): numbers, strings,
//! buffers and nested lists, without an object per event. Events are made of these on the
//! tokio threads (see `events`); they become JavaScript values on the JS thread.

use std::ffi::c_void;

use napi::bindgen_prelude::{Null, ToNapiValue};
use napi::Status;

use crate::bindings::run;

/// Payloads below this size are copied into a JS-owned Buffer; larger ones are handed over
/// as external buffers without a copy. For small payloads the copy is cheaper than the
/// finalizer an external buffer needs. The core's small payload buffers are the same size,
/// so that every one of them is copied out here and can be given back.
pub(crate) const COPY_BELOW: usize = hyco_core::socket::pool::SMALL;

/// Whether a payload of `len` bytes is copied (see [`COPY_BELOW`]).
pub(crate) fn copied(len: usize) -> bool {
    len < COPY_BELOW
}

/// One value of the flat event list.
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
    /// A run of small messages (see `run`), copied into an ArrayBuffer (JavaScript makes
    /// the views); the vector is kept for the thread's next run.
    Run(Vec<u8>),
    /// A nested array.
    List(Vec<Flat>),
}

impl Flat {
    /// A list of numbers, or `null` when empty.
    pub fn ids(v: Vec<u32>) -> Flat {
        if v.is_empty() {
            Flat::Null
        } else {
            Flat::List(v.into_iter().map(|i| Flat::Num(f64::from(i))).collect())
        }
    }

    /// A string, or `null`.
    pub fn opt_str(s: Option<String>) -> Flat {
        s.map_or(Flat::Null, Flat::Str)
    }

    /// A number, or `null`.
    pub fn opt_num(n: Option<impl Into<f64>>) -> Flat {
        n.map_or(Flat::Null, |n| Flat::Num(n.into()))
    }

    /// A list of strings.
    pub fn strs(v: Vec<String>) -> Flat {
        Flat::List(v.into_iter().map(Flat::Str).collect())
    }
}

impl ToNapiValue for Flat {
    unsafe fn to_napi_value(
        env: napi::sys::napi_env,
        val: Self,
    ) -> napi::Result<napi::sys::napi_value> {
        // SAFETY: `env` is the live environment napi-rs passes while converting the
        // callback's arguments on the JS thread; every branch delegates to napi's own
        // conversions, to `napi_create_buffer_copy` or `napi_create_arraybuffer` (which
        // copies into the room Node-API made) with a valid pointer and length.
        unsafe {
            match val {
                Flat::Num(n) => f64::to_napi_value(env, n),
                Flat::Bool(b) => bool::to_napi_value(env, b),
                Flat::Str(s) => String::to_napi_value(env, s),
                Flat::Null => Null::to_napi_value(env, Null),
                Flat::Bytes(v) if copied(v.len()) => {
                    let out = copy(env, &v)?;
                    hyco_core::socket::pool::give_back_small(v);
                    Ok(out)
                }
                Flat::Run(v) => {
                    // Copied: an external buffer would cost a finalizer and a garbage
                    // collection's round before the memory could serve again.
                    let out = array_buffer_copy(env, &v)?;
                    run::give_back(v);
                    Ok(out)
                }
                Flat::Bytes(v) => external(env, v),
                Flat::List(items) => Vec::<Flat>::to_napi_value(env, items),
            }
        }
    }
}

/// A Buffer over `bytes` itself, without a copy (`bytes` is not empty). JavaScript's garbage
/// collector lets it go; `bytes` then goes back to the pool of large buffers, so that the
/// next large message reuses its pages rather than faulting fresh ones in. Where external
/// buffers are not allowed (a V8 sandbox, as in Electron), a copy.
///
/// # Safety
/// On `env`'s JS thread, in an open handle scope.
unsafe fn external(
    env: napi::sys::napi_env,
    bytes: Vec<u8>,
) -> napi::Result<napi::sys::napi_value> {
    let len = bytes.len();
    let mut boxed = Box::new(bytes);
    let data = boxed.as_mut_ptr();
    let hint = Box::into_raw(boxed);
    let mut out = std::ptr::null_mut();
    // SAFETY: `data` points to `len` initialised bytes, which stay where they are until
    // `give_back` receives `hint` (the box that owns them); `env` as the caller promises.
    let status = unsafe {
        napi::sys::napi_create_external_buffer(
            env,
            len,
            data.cast(),
            Some(give_back),
            hint.cast(),
            &mut out,
        )
    };
    if status == napi::sys::Status::napi_ok {
        return Ok(out);
    }
    if status == napi::sys::Status::napi_no_external_buffers_allowed {
        // SAFETY: refused, so Node.js did not take `hint`: it is still this function's.
        let bytes = *unsafe { Box::from_raw(hint) };
        let out = unsafe { copy(env, &bytes) };
        hyco_core::socket::pool::recycle(bytes);
        return out;
    }
    // Any other failure: whether Node.js calls the finalizer is not said, so `hint` is left
    // to it (a leak at worst, never a double free), as napi-rs's own Buffer does.
    Err(napi::Error::new(
        Status::GenericFailure,
        "cannot create a Buffer",
    ))
}

/// The finalizer of [`external`]'s Buffers: their bytes go back to the pool.
///
/// # Safety
/// Called once by Node.js with the `hint` [`external`] gave it.
unsafe extern "C" fn give_back(_env: napi::sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the box `external` made, handed over once.
    let bytes = *unsafe { Box::from_raw(hint.cast::<Vec<u8>>()) };
    hyco_core::socket::pool::recycle(bytes);
}

/// A new ArrayBuffer of `len` bytes, and where its bytes are (possibly null for 0 bytes).
///
/// An ArrayBuffer, not a Buffer, for what JavaScript only cuts into views (a run, a
/// delivery's pack): Node-API makes a Buffer in C++ and then sets its prototype, a slow
/// runtime call, which cost more than the copy; a view made in JavaScript does not.
///
/// # Safety
/// On `env`'s JS thread, in an open handle scope.
pub(crate) unsafe fn array_buffer(
    env: napi::sys::napi_env,
    len: usize,
) -> napi::Result<(napi::sys::napi_value, *mut u8)> {
    let mut out = std::ptr::null_mut();
    let mut data: *mut c_void = std::ptr::null_mut();
    // SAFETY: as the caller promises; both out-pointers are valid for the call.
    let status = unsafe { napi::sys::napi_create_arraybuffer(env, len, &mut data, &mut out) };
    if status != napi::sys::Status::napi_ok {
        return Err(napi::Error::new(
            Status::GenericFailure,
            "cannot create an ArrayBuffer",
        ));
    }
    Ok((out, data.cast()))
}

/// An ArrayBuffer holding a copy of `bytes` (see [`array_buffer`]).
///
/// # Safety
/// On `env`'s JS thread, in an open handle scope.
unsafe fn array_buffer_copy(
    env: napi::sys::napi_env,
    bytes: &[u8],
) -> napi::Result<napi::sys::napi_value> {
    // SAFETY: as the caller promises.
    let (out, data) = unsafe { array_buffer(env, bytes.len())? };
    if !bytes.is_empty() {
        // SAFETY: Node-API gave `data`, room for `bytes.len()` bytes, apart from `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len()) };
    }
    Ok(out)
}

/// A Buffer holding a copy of `bytes`.
///
/// # Safety
/// On `env`'s JS thread, in an open handle scope.
unsafe fn copy(env: napi::sys::napi_env, bytes: &[u8]) -> napi::Result<napi::sys::napi_value> {
    let mut out = std::ptr::null_mut();
    // SAFETY: as the caller promises; the pointer and length are the slice's.
    let status = unsafe {
        napi::sys::napi_create_buffer_copy(
            env,
            bytes.len(),
            bytes.as_ptr().cast(),
            std::ptr::null_mut(),
            &mut out,
        )
    };
    if status != napi::sys::Status::napi_ok {
        return Err(napi::Error::new(
            Status::GenericFailure,
            "cannot create a Buffer",
        ));
    }
    Ok(out)
}
