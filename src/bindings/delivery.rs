//! One delivery's flat values (see `hub`) made into the arguments of the events callback,
//! on the JS thread: `callback(pack, ...list)`.
//!
//! Two costs dominated a small message's delivery (`perf` of a listener at 20,000 messages
//! a second): setting each value into a JavaScript array with `napi_set_element` (V8's
//! generic property path, once per value), and making each payload a Buffer of its own (an
//! allocation, an `ArrayBuffer`, a `Uint8Array` given Buffer's prototype). So the values
//! are passed as the call's arguments (JavaScript collects them with a rest parameter,
//! which V8 builds in one go), and the small payloads of a part are copied into one
//! ArrayBuffer, `pack`, that JavaScript cuts into Buffer views (`lib/native-events.js`), as
//! ws's messages are views of the chunk the socket read. An ArrayBuffer rather than a
//! Buffer: a Buffer made through Node-API gets its prototype set afterwards, a slow runtime
//! call.
//!
//! `list` starts with a header: `n`, then `n` pairs `(index, length)`: the value at `index`
//! in `list` is the next `length` bytes of `pack`. The events follow the header. A delivery
//! too long for one call is split at event boundaries into parts, one call each: a call's
//! arguments live on the stack, and a pack is kept alive by any view of it, so both are
//! bounded ([`MAX_VALUES`], [`MAX_PACK`]).

use napi::bindgen_prelude::ToNapiValue;
use napi::sys;

use crate::bindings::flat::{self, Flat};
use crate::bindings::hub::check;
use hyco_core::socket::pool;

/// At most this many event values per call. A call's arguments are on the JS thread's
/// stack: with the header's two per packed payload (an event has three values at least),
/// under 14,000 of them, 110 KiB.
const MAX_VALUES: usize = 8192;

/// At most this many bytes in one pack: a view a handler keeps holds its whole pack (ws's
/// messages hold the chunk their socket read, up to 64 KiB).
const MAX_PACK: usize = 16 * 1024;

/// The payload of `value` if it goes into a pack.
fn packable(value: &Flat) -> Option<&[u8]> {
    match value {
        Flat::Bytes(b) if flat::copied(b.len()) => Some(b),
        _ => None,
    }
}

/// One call's share of a delivery.
#[derive(Debug, PartialEq)]
struct Part {
    /// Its end in the delivery's values.
    end: usize,
    /// How many payloads go into its pack.
    packed: usize,
    /// Their bytes.
    bytes: usize,
}

/// Splits `values` (events starting at the indices `starts`, in order) into the parts
/// that are called one at a time.
fn parts(values: &[Flat], starts: &[usize]) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut part = Part {
        end: 0,
        packed: 0,
        bytes: 0,
    };
    let mut begin = 0;
    for (k, &start) in starts.iter().enumerate() {
        let end = starts.get(k + 1).copied().unwrap_or(values.len());
        let (packed, bytes) = values[start..end]
            .iter()
            .filter_map(packable)
            .fold((0, 0), |(n, b), p| (n + 1, b + p.len()));
        if start > begin && (end - begin > MAX_VALUES || part.bytes + bytes > MAX_PACK) {
            part.end = start;
            parts.push(std::mem::replace(
                &mut part,
                Part {
                    end: 0,
                    packed: 0,
                    bytes: 0,
                },
            ));
            begin = start;
        }
        part.packed += packed;
        part.bytes += bytes;
    }
    if begin < values.len() {
        part.end = values.len();
        parts.push(part);
    }
    parts
}

/// Calls `call(args)` once per part of `values` (events starting at `starts`), with
/// `args` = `[pack, ...list]` as described above, and leaves `values` empty (its capacity
/// kept). Stops at the first failed call.
///
/// # Safety
/// On `env`'s JS thread, in an open handle scope, outside JavaScript.
pub unsafe fn in_parts(
    env: sys::napi_env,
    values: &mut Vec<Flat>,
    starts: &[usize],
    mut call: impl FnMut(&[sys::napi_value]) -> napi::Result<()>,
) -> napi::Result<()> {
    let parts = parts(values, starts);
    // Sized once for the largest part: `begin..end` values and a header of two per payload.
    let mut begin = 0;
    let most = parts
        .iter()
        .map(|p| {
            let n = p.end - std::mem::replace(&mut begin, p.end);
            2 + 2 * p.packed + n
        })
        .max()
        .unwrap_or(0);
    let mut args = Vec::with_capacity(most);
    let mut values = values.drain(..);
    let mut begin = 0;
    for part in parts {
        args.clear();
        let n = part.end - begin;
        begin = part.end;
        // A scope per part: a garbage collection during a call visits every handle still
        // open, and an earlier part's are not needed any more.
        // SAFETY: as the caller promises; the scope is closed below, whatever happened.
        let result = unsafe {
            let mut scope = std::ptr::null_mut();
            check(sys::napi_open_handle_scope(env, &mut scope))?;
            let result = arguments(env, &part, values.by_ref().take(n), &mut args)
                .and_then(|()| call(&args));
            sys::napi_close_handle_scope(env, scope);
            result
        };
        result?;
    }
    Ok(())
}

/// The arguments of one part's call, into `args`.
///
/// # Safety
/// As [`in_parts`].
unsafe fn arguments(
    env: sys::napi_env,
    part: &Part,
    values: impl Iterator<Item = Flat>,
    args: &mut Vec<sys::napi_value>,
) -> napi::Result<()> {
    // Even one payload goes in a pack: an ArrayBuffer and a view made in JavaScript cost
    // less than a Buffer made through Node-API (see `flat::array_buffer`).
    let packing = part.packed > 0;
    let header = 1 + 2 * part.packed;
    // SAFETY: as the caller promises; every pointer handed to Node-API is valid for the
    // call, and the pack is written within the `part.bytes` Node-API allocated for it.
    unsafe {
        let mut undefined = std::ptr::null_mut();
        check(sys::napi_get_undefined(env, &mut undefined))?;
        let mut data: *mut u8 = std::ptr::null_mut();
        let mut pack = undefined;
        if packing {
            (pack, data) = flat::array_buffer(env, part.bytes)?;
        }
        args.push(pack);
        args.push(number(env, part.packed)?);
        // The header's pairs, filled in as the payloads come.
        args.resize(1 + header, undefined);
        let (mut pair, mut at) = (2, 0usize);
        for (k, value) in values.enumerate() {
            match value {
                Flat::Bytes(p) if packing && flat::copied(p.len()) => {
                    // `parts` counted these very values: anything else is a bug, refused
                    // rather than written past the pack or the header.
                    if at + p.len() > part.bytes || pair + 1 > header {
                        return Err(napi::Error::new(
                            napi::Status::GenericFailure,
                            "hyco-ws-rs: a delivery's pack does not match its part",
                        ));
                    }
                    if !p.is_empty() {
                        // Not for none: with nothing to pack, Node-API may give no pointer.
                        std::ptr::copy_nonoverlapping(p.as_ptr(), data.add(at), p.len());
                    }
                    at += p.len();
                    args[pair] = number(env, header + k)?;
                    args[pair + 1] = number(env, p.len())?;
                    pair += 2;
                    args.push(undefined);
                    pool::give_back_small(p);
                }
                value => args.push(Flat::to_napi_value(env, value)?),
            }
        }
    }
    Ok(())
}

/// A JavaScript number.
///
/// # Safety
/// As [`in_parts`].
unsafe fn number(env: sys::napi_env, n: usize) -> napi::Result<sys::napi_value> {
    // SAFETY: as the caller promises.
    unsafe { f64::to_napi_value(env, n as f64) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ends(values: &[Flat], starts: &[usize]) -> Vec<usize> {
        parts(values, starts).iter().map(|p| p.end).collect()
    }

    fn event(payload: usize) -> Vec<Flat> {
        vec![
            Flat::Num(1.0),
            Flat::Num(2.0),
            Flat::Bytes(vec![7; payload]),
            Flat::Bool(true),
        ]
    }

    fn delivery(payloads: &[usize]) -> (Vec<Flat>, Vec<usize>) {
        let mut values = Vec::new();
        let mut starts = Vec::new();
        for &p in payloads {
            starts.push(values.len());
            values.extend(event(p));
        }
        (values, starts)
    }

    #[test]
    fn one_part_while_small() {
        let (values, starts) = delivery(&[64; 100]);
        assert_eq!(ends(&values, &starts), vec![400]);
    }

    #[test]
    fn parts_end_at_event_boundaries_by_pack_size() {
        // 256 events of 100 bytes: 163 fit in 16 KiB.
        let (values, starts) = delivery(&[100; 256]);
        assert_eq!(ends(&values, &starts), vec![163 * 4, 256 * 4]);
        let p = parts(&values, &starts);
        assert_eq!((p[0].packed, p[0].bytes), (163, 16300));
        assert_eq!((p[1].packed, p[1].bytes), (93, 9300));
    }

    #[test]
    fn parts_end_at_event_boundaries_by_value_count() {
        // Large payloads are not packed: only the count of values splits.
        let (values, starts) = delivery(&[4096; 3000]);
        assert_eq!(ends(&values, &starts), vec![8192, 12000]);
        assert!(parts(&values, &starts).iter().all(|p| p.packed == 0));
    }

    #[test]
    fn nothing_to_call_for_nothing() {
        assert!(parts(&[], &[]).is_empty());
    }
}
