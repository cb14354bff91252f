//! permessage-deflate's per-message work (RFC 7692 §7): compressing outgoing frames and
//! inflating incoming messages, on the connection's tokio thread, with zlib-rs.
//!
//! Memory is held only while it is used. A compressor or inflater is made on first use and
//! dropped when the connection has nothing left to do (see [`PerMessage::release`]); between
//! uses a connection keeps this box and, only when the peer keeps its context (no
//! `*_no_context_takeover` for the peer), the last `2^window_bits` bytes it inflated (at
//! most 32 KiB), which become the next inflater's dictionary. Dropping the compressor is
//! always allowed: a new deflate stream starting at a flushed byte boundary is a valid
//! continuation, it only does not refer back to earlier messages.
//!
//! While in use: a compressor takes about `2^(w+2) + 128 KiB + 7·2^(memLevel+6)` bytes
//! (about 370 KiB at the defaults w = 15, memLevel = 8), an inflater about 40 KiB. A released
//! context is reset and kept for reuse by the next connection of the same tokio thread (at
//! most [`KEEP`] of each kind and configuration per thread): making one costs more than the
//! compression of a small message, and freeing and remaking hundreds of kilobytes per message
//! fragments the allocator's memory.

use std::cell::RefCell;

use zlib_rs::{Deflate, DeflateConfig, DeflateFlush, Inflate, InflateError, InflateFlush, Status};

use crate::socket::deflate::Agreement;
use crate::socket::error::SocketError;

/// The bytes a sync flush ends with: removed from a compressed message's end when sent,
/// put back before it is inflated (RFC 7692 §7.2.1, §7.2.2).
pub const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Output grows in steps of at least this many bytes.
const STEP: usize = 16 * 1024;

/// Released contexts a tokio thread keeps for reuse, per kind and configuration.
pub const KEEP: usize = 2;

/// Contexts released on this thread, reset, for the next one that needs one.
#[derive(Default)]
struct Spares {
    deflate: Vec<(DeflateConfig, Deflate)>,
    inflate: Vec<Inflate>,
}

thread_local! {
    static SPARES: RefCell<Spares> = RefCell::new(Spares::default());
}

/// A compressor for `config`: a spare of this thread's, or a new one.
fn take_deflate(config: DeflateConfig) -> Deflate {
    let spare = SPARES.with(|cell| {
        let mut spares = cell.try_borrow_mut().ok()?;
        let i = spares.deflate.iter().position(|(c, _)| *c == config)?;
        Some(spares.deflate.swap_remove(i).1)
    });
    spare.unwrap_or_else(|| Deflate::new_with_config(config))
}

/// Gives a compressor back for reuse (reset), or drops it when this thread has enough.
fn give_deflate(config: DeflateConfig, mut ctx: Deflate) {
    SPARES.with(|cell| {
        if let Ok(mut spares) = cell.try_borrow_mut() {
            if spares.deflate.iter().filter(|(c, _)| *c == config).count() < KEEP {
                ctx.reset();
                spares.deflate.push((config, ctx));
            }
        }
    });
}

/// A fresh raw inflater: a spare of this thread's, or a new one (`bits` for a new one; a
/// spare has the largest window, which reads every stream).
fn take_inflate(bits: u8) -> Inflate {
    let spare = SPARES.with(|cell| cell.try_borrow_mut().ok()?.inflate.pop());
    spare.unwrap_or_else(|| Inflate::new(false, bits))
}

/// Gives an inflater back for reuse (reset), or drops it when this thread has enough.
fn give_inflate(mut ctx: Inflate) {
    SPARES.with(|cell| {
        if let Ok(mut spares) = cell.try_borrow_mut() {
            if spares.inflate.len() < KEEP {
                ctx.reset(false);
                spares.inflate.push(ctx);
            }
        }
    });
}

/// A connection's compression state, boxed: an idle connection keeps only this (about 330
/// bytes: the contexts' handles are inline, their memory is not) and its history.
pub struct PerMessage {
    /// Outgoing.
    pub deflate: Deflater,
    /// Incoming.
    pub inflate: Inflater,
    /// Where the connection's task resumes a send batch it stopped compressing part way
    /// (see [`Deflater::part`]): the bytes of it already framed.
    pub batch_from: usize,
}

impl PerMessage {
    /// The state for an agreement.
    pub fn new(agreement: &Agreement) -> Self {
        let (bits, reset) = agreement.deflate_window();
        let (in_bits, in_reset) = agreement.inflate_window();
        PerMessage {
            deflate: Deflater {
                ctx: None,
                // zlib-rs, like zlib, has no raw deflate with a 256-byte window: with 8 bits
                // agreed, messages go uncompressed (always allowed).
                usable: bits >= 9,
                config: DeflateConfig {
                    window_bits: -i32::from(bits.clamp(9, 15)),
                    level: i32::from(agreement.level.clamp(-1, 9)),
                    mem_level: i32::from(agreement.mem_level.clamp(1, 9)),
                    ..DeflateConfig::default()
                },
                reset,
                compressing: false,
            },
            inflate: Inflater {
                ctx: None,
                // Node.js makes a 9-bit window of an 8-bit one when it compresses: a larger
                // window reads every stream a smaller one does.
                bits: in_bits.clamp(9, 15),
                reset: in_reset,
                history: Vec::new(),
                in_message: false,
                ended: false,
            },
            batch_from: 0,
        }
    }

    /// Lets go of the contexts the connection does not need while idle (keeping what the
    /// peer's next message may refer to).
    pub fn release(&mut self) {
        if let Some(ctx) = self.deflate.ctx.take() {
            give_deflate(self.deflate.config, ctx);
        }
        self.inflate.release();
    }
}

/// Compresses outgoing messages.
pub struct Deflater {
    ctx: Option<Deflate>,
    usable: bool,
    config: DeflateConfig,
    /// `*_no_context_takeover` for this end: a fresh stream for every message.
    reset: bool,
    /// The message being sent is compressed (decided on its first frame).
    compressing: bool,
}

impl Deflater {
    /// Payload bytes the connection compresses before it writes them and lets its reading
    /// have a turn: about 140 µs of zlib-rs's work at this level on JSON-like text
    /// (measured per KiB: 8.5 µs at level 6, 1.25 at 1, 26 at 8; bench/RESULTS.md), so that
    /// the peer starts inflating early while a fast level does not pay a write per
    /// message.
    pub fn part(&self) -> usize {
        const KIB: usize = 1024;
        match self.config.level {
            0 => 1024 * KIB,
            1 => 128 * KIB,
            2 => 64 * KIB,
            3..=5 => 32 * KIB,
            8 => 8 * KIB,
            // 6 (and -1, zlib's default, which is 6), 7, 9.
            _ => 16 * KIB,
        }
    }

    /// Whether a data frame is compressed: the first frame of a message decides (`wanted`,
    /// the owner's choice), its continuations follow.
    pub fn decide(&mut self, first: bool, wanted: bool) -> bool {
        if first {
            self.compressing = wanted && self.usable;
        }
        self.compressing
    }

    /// Compresses one frame's payload into `out` (cleared first), with a sync flush; the
    /// final frame's flush tail is removed.
    pub fn compress(
        &mut self,
        payload: &[u8],
        fin: bool,
        out: &mut Vec<u8>,
    ) -> Result<(), SocketError> {
        let config = self.config;
        let ctx = self.ctx.get_or_insert_with(|| take_deflate(config));
        out.clear();
        let mut input = payload;
        loop {
            let len = out.len();
            out.resize(len + (input.len() / 2).max(STEP.min(payload.len() + 64)), 0);
            let (before_in, before_out) = (ctx.total_in(), ctx.total_out());
            let status = ctx
                .compress(input, &mut out[len..], DeflateFlush::SyncFlush)
                .map_err(|e| {
                    SocketError::coded(
                        format!(
                            "compression failed: {}",
                            ctx_message(ctx.error_message(), e.as_str())
                        ),
                        "ERR_DEFLATE",
                    )
                })?;
            let used = (ctx.total_in() - before_in) as usize;
            let made = (ctx.total_out() - before_out) as usize;
            input = &input[used..];
            let full = len + made == out.len();
            out.truncate(len + made);
            // Done when all input is in and the flush did not run out of room.
            if input.is_empty() && !full {
                break;
            }
            if used == 0 && made == 0 && status == Status::BufError && !full {
                break;
            }
        }
        if fin {
            if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            }
            if out.is_empty() {
                // Nothing was pending (an empty message right after a flush): an empty
                // stored block's first byte, which the tail completes (RFC 7692 §7.2.3.6).
                out.push(0x00);
            }
            if self.reset {
                ctx.reset();
            }
        }
        Ok(())
    }
}

/// Inflates incoming messages.
pub struct Inflater {
    ctx: Option<Inflate>,
    bits: u8,
    /// The peer's `*_no_context_takeover`: every message starts a fresh stream.
    reset: bool,
    /// The last bytes inflated (at most a window), for a new inflater's dictionary: kept
    /// only while the peer keeps its context.
    history: Vec<u8>,
    /// A compressed message is half read: its inflater must stay.
    in_message: bool,
    /// The peer ended its deflate stream (a final block): the next message starts afresh.
    ended: bool,
}

fn ctx_message(msg: Option<&'static str>, fallback: &'static str) -> &'static str {
    msg.filter(|m| !m.is_empty()).unwrap_or(fallback)
}

/// ws reports an inflate failure with zlib's error, its code, and close code 1007.
fn inflate_error(e: InflateError, msg: Option<&'static str>) -> SocketError {
    let code = match e {
        InflateError::NeedDict { .. } => "Z_NEED_DICT",
        InflateError::StreamError => "Z_STREAM_ERROR",
        InflateError::DataError => "Z_DATA_ERROR",
        InflateError::MemError => "Z_MEM_ERROR",
    };
    SocketError::protocol(code, ctx_message(msg, e.as_str()), 1007, false)
}

/// ws's error for a message over `maxPayload`.
fn too_big() -> SocketError {
    SocketError::protocol(
        "WS_ERR_UNSUPPORTED_MESSAGE_LENGTH",
        "Max payload size exceeded",
        1009,
        true,
    )
}

impl Inflater {
    fn window(&self) -> usize {
        1 << self.bits
    }

    fn release(&mut self) {
        if self.in_message {
            return;
        }
        let Some(ctx) = self.ctx.take() else {
            return;
        };
        give_inflate(ctx);
        let w = self.window();
        if self.history.len() > w {
            self.history.drain(..self.history.len() - w);
        }
        self.history.shrink_to_fit();
    }

    /// Inflates one frame's payload of a compressed message (the final one with the flush
    /// tail put back), appending to `out`; fails with ws's 1009 error as soon as this frame
    /// makes more than `limit` bytes (`None`: no limit), and with zlib's error (1007) on bad
    /// data.
    pub fn inflate(
        &mut self,
        payload: &[u8],
        fin: bool,
        limit: Option<u64>,
        out: &mut Vec<u8>,
    ) -> Result<(), SocketError> {
        let start = out.len();
        let result = self.run(payload, fin, limit, out);
        if result.is_err() {
            // The stream is broken: nothing of it is kept (the connection fails anyway).
            self.ctx = None;
            self.history = Vec::new();
            self.in_message = false;
            return result;
        }
        if !self.reset && !self.ended {
            let made = &out[start..];
            let w = self.window();
            self.history
                .extend_from_slice(&made[made.len().saturating_sub(w)..]);
            if self.history.len() > 2 * w {
                self.history.drain(..self.history.len() - w);
            }
        }
        self.in_message = !fin;
        if fin && (self.reset || self.ended) {
            if let Some(ctx) = self.ctx.take() {
                give_inflate(ctx);
            }
            self.history = Vec::new();
            self.ended = false;
        }
        Ok(())
    }

    fn run(
        &mut self,
        payload: &[u8],
        fin: bool,
        limit: Option<u64>,
        out: &mut Vec<u8>,
    ) -> Result<(), SocketError> {
        if self.ended {
            // ws starts a new inflater after a final block; what follows it in the same
            // message is not read.
            return Ok(());
        }
        let bits = self.bits;
        let history = &self.history;
        let ctx = self.ctx.get_or_insert_with(|| {
            let mut i = take_inflate(bits);
            if !history.is_empty() {
                // Within a window by construction, so it cannot fail.
                let _ = i.set_dictionary(history);
            }
            i
        });
        let limit = limit.unwrap_or(u64::MAX);
        let start = out.len();
        let mut input = payload;
        let mut tail = fin;
        loop {
            if input.is_empty() && tail {
                input = &TAIL;
                tail = false;
            }
            let len = out.len();
            let room = (input.len().saturating_mul(4)).clamp(STEP, 1 << 20);
            out.resize(len + room, 0);
            let (before_in, before_out) = (ctx.total_in(), ctx.total_out());
            let status = ctx
                .decompress(input, &mut out[len..], InflateFlush::SyncFlush)
                .map_err(|e| inflate_error(e, ctx.error_message()));
            let used = (ctx.total_in() - before_in) as usize;
            let made = (ctx.total_out() - before_out) as usize;
            out.truncate(len + made);
            let status = status?;
            if (out.len() - start) as u64 > limit {
                return Err(too_big());
            }
            input = &input[used..];
            if status == Status::StreamEnd {
                self.ended = true;
                return Ok(());
            }
            let full = made == room;
            if input.is_empty() && !tail && !full {
                return Ok(());
            }
            if used == 0 && made == 0 && !full {
                // No progress possible (not reachable with input and room): stop.
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socket::deflate::{accept_offer, check_answer, DeflateOptions, Negotiation};

    fn pair(offer: DeflateOptions, server: DeflateOptions) -> (PerMessage, PerMessage) {
        let answer = accept_offer(&server, &crate::socket::deflate::offer(&offer))
            .unwrap()
            .unwrap();
        let header = answer.params.format();
        let client = check_answer(Some(&Negotiation::Offer(offer)), Some(&header))
            .unwrap()
            .unwrap();
        (PerMessage::new(&client), PerMessage::new(&answer))
    }

    fn json(n: usize, seed: u32) -> Vec<u8> {
        let mut s = String::new();
        let mut i = seed;
        while s.len() < n {
            i = i.wrapping_mul(1_103_515_245).wrapping_add(12345);
            s.push_str(&format!(
                "{{\"id\":{},\"name\":\"user{}\",\"ok\":true}},",
                i % 1000,
                i % 97
            ));
        }
        s.truncate(n);
        s.into_bytes()
    }

    /// Sends `msgs` from `a` to `b` (each in `frags` frames), releasing both between
    /// messages when `release`; returns the wire sizes.
    fn send(
        a: &mut PerMessage,
        b: &mut PerMessage,
        msgs: &[Vec<u8>],
        frags: usize,
        release: bool,
    ) -> usize {
        let mut wire = 0;
        for m in msgs {
            let mut got = Vec::new();
            let chunk = m.len().div_ceil(frags).max(1);
            let pieces: Vec<&[u8]> = if m.is_empty() {
                vec![&m[..]]
            } else {
                m.chunks(chunk).collect()
            };
            for (k, piece) in pieces.iter().enumerate() {
                let fin = k + 1 == pieces.len();
                assert!(a.deflate.decide(k == 0, true));
                let mut c = Vec::new();
                a.deflate.compress(piece, fin, &mut c).unwrap();
                wire += c.len();
                b.inflate.inflate(&c, fin, None, &mut got).unwrap();
            }
            assert_eq!(&got, m);
            if release {
                a.release();
                b.release();
            }
        }
        wire
    }

    #[test]
    fn round_trips_every_way() {
        let msgs: Vec<Vec<u8>> = (0..20)
            .map(|k| json(3000 + k * 100, k as u32))
            .chain([Vec::new(), b"x".to_vec()])
            .collect();
        let d = DeflateOptions::default();
        let variants = [
            d,
            DeflateOptions {
                server_no_context_takeover: Some(true),
                client_no_context_takeover: Some(true),
                ..d
            },
            DeflateOptions {
                server_max_window_bits: crate::socket::deflate::WindowBits::Bits(9),
                client_max_window_bits: crate::socket::deflate::WindowBits::Bits(10),
                level: 1,
                mem_level: 1,
                ..d
            },
            DeflateOptions {
                level: 9,
                mem_level: 9,
                ..d
            },
        ];
        for v in variants {
            for frags in [1, 3] {
                for release in [false, true] {
                    let (mut c, mut s) = pair(v, d);
                    send(&mut c, &mut s, &msgs, frags, release);
                    send(&mut s, &mut c, &msgs, frags, release);
                }
            }
        }
    }

    #[test]
    fn context_takeover_pays_and_survives_release() {
        let msgs: Vec<Vec<u8>> = (0..10).map(|_| json(2000, 7)).collect();
        let d = DeflateOptions::default();
        let (mut c, mut s) = pair(d, d);
        // The same message again: with the context kept, it costs a few bytes.
        let kept = send(&mut c, &mut s, &msgs, 1, false);
        let (mut c2, mut s2) = pair(
            DeflateOptions {
                client_no_context_takeover: Some(true),
                ..d
            },
            d,
        );
        let fresh = send(&mut c2, &mut s2, &msgs, 1, false);
        assert!(kept * 3 < fresh, "{kept} {fresh}");
        // Released between messages, the receiver's dictionary still reads a sender that
        // refers back (the sender here keeps its context throughout).
        let (mut a, mut b) = pair(d, d);
        for m in &msgs {
            let mut cmp = Vec::new();
            a.deflate.decide(true, true);
            a.deflate.compress(m, true, &mut cmp).unwrap();
            let mut got = Vec::new();
            b.inflate.inflate(&cmp, true, None, &mut got).unwrap();
            assert_eq!(&got, m);
            b.release();
            assert!(b.inflate.ctx.is_none() && b.inflate.history.len() <= 1 << 15);
        }
    }

    #[test]
    fn bombs_and_garbage_fail_as_ws() {
        let d = DeflateOptions::default();
        let (mut c, mut s) = pair(d, d);
        let zeros = vec![0u8; 10 << 20];
        let mut bomb = Vec::new();
        c.deflate.decide(true, true);
        c.deflate.compress(&zeros, true, &mut bomb).unwrap();
        assert!(bomb.len() < 20_000);
        let mut out = Vec::new();
        let e = s
            .inflate
            .inflate(&bomb, true, Some(1 << 20), &mut out)
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str(), e.close_code),
            (
                Some("WS_ERR_UNSUPPORTED_MESSAGE_LENGTH"),
                "Max payload size exceeded",
                Some(1009)
            )
        );
        assert!(out.len() < 3 << 20, "stopped early: {}", out.len());
        let (_, mut s) = pair(d, d);
        let e = s
            .inflate
            .inflate(&[0xff, 0xff, 0xff], true, None, &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            (e.code, e.close_code, e.range_error),
            (Some("Z_DATA_ERROR"), Some(1007), false)
        );
        assert_eq!(e.message, "invalid block type");
        // A back reference into a message this inflater never saw: what a sender that
        // ignores `*_no_context_takeover` produces.
        let (mut c, _) = pair(d, d);
        let m = json(2000, 3);
        let mut first = Vec::new();
        c.deflate.decide(true, true);
        c.deflate.compress(&m, true, &mut first).unwrap();
        let mut second = Vec::new();
        c.deflate.compress(&m, true, &mut second).unwrap();
        let (_, mut s) = pair(d, d);
        let e = s
            .inflate
            .inflate(&second, true, None, &mut Vec::new())
            .unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str()),
            (Some("Z_DATA_ERROR"), "invalid distance too far back")
        );
    }

    #[test]
    fn a_final_block_restarts_the_stream() {
        // A message compressed with a final block (as some peers send), then a normal one.
        let mut z = Deflate::new_with_config(DeflateConfig {
            window_bits: -15,
            ..DeflateConfig::default()
        });
        let mut fin = vec![0u8; 256];
        z.compress(b"hello hello", &mut fin, DeflateFlush::Finish)
            .unwrap();
        fin.truncate(z.total_out() as usize);
        let d = DeflateOptions::default();
        let (mut c, mut s) = pair(d, d);
        let mut got = Vec::new();
        s.inflate.inflate(&fin, true, None, &mut got).unwrap();
        assert_eq!(got, b"hello hello");
        send(&mut c, &mut s, &[b"again again".to_vec()], 1, false);
    }

    #[test]
    fn released_contexts_are_reused_on_the_same_thread() {
        let spares = || SPARES.with(|c| (c.borrow().deflate.len(), c.borrow().inflate.len()));
        let d = DeflateOptions::default();
        let (mut c, mut s) = pair(d, d);
        let before = spares();
        send(&mut c, &mut s, &[json(3000, 1)], 1, true);
        let after = spares();
        assert!(after.0 >= 1 && after.1 >= 1, "{before:?} {after:?}");
        // The next message takes them back, and the peer still reads it (dictionary kept).
        c.deflate.decide(true, true);
        let mut cmp = Vec::new();
        c.deflate.compress(&json(3000, 1), true, &mut cmp).unwrap();
        assert_eq!(spares().0, after.0 - 1);
        let mut got = Vec::new();
        s.inflate.inflate(&cmp, true, None, &mut got).unwrap();
        assert_eq!(got, json(3000, 1));
        assert_eq!(spares().1, after.1 - 1);
        // At most KEEP of each are kept.
        let mut many: Vec<(PerMessage, PerMessage)> = (0..5).map(|_| pair(d, d)).collect();
        for (a, b) in &mut many {
            send(a, b, &[json(100, 2)], 1, false);
        }
        for (a, b) in &mut many {
            a.release();
            b.release();
        }
        assert!(spares().0 <= KEEP && spares().1 <= KEEP);
    }

    #[test]
    fn a_part_is_about_the_same_work_at_every_level() {
        let part = |level| {
            let d = DeflateOptions {
                level,
                ..DeflateOptions::default()
            };
            pair(d, d).0.deflate.part()
        };
        assert_eq!(part(-1), 16 * 1024);
        assert_eq!(part(6), 16 * 1024);
        assert!(part(1) > part(4) && part(4) > part(6) && part(6) > part(8));
    }

    #[test]
    fn an_idle_connection_keeps_little() {
        // What README states: the box, without the contexts' memory.
        assert!(std::mem::size_of::<PerMessage>() <= 384);
    }

    #[test]
    fn an_eight_bit_window_sends_uncompressed() {
        let d = DeflateOptions::default();
        let eight = DeflateOptions {
            client_max_window_bits: crate::socket::deflate::WindowBits::Bits(8),
            ..d
        };
        let (mut c, _) = pair(d, eight);
        assert!(!c.deflate.decide(true, true));
        assert!(!c.deflate.decide(false, true));
    }
}
