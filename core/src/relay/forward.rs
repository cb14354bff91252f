//! The relayed connection: frames from one client are unmasked and passed to the other,
//! streaming, so the relay never holds more than one read buffer per direction.
//!
//! Both peers are WebSocket clients (the sender, and the listener's accept socket), so both
//! send masked frames and expect unmasked ones: the relay rewrites each frame header without
//! the mask and unmasks the payload as it passes. Frames are not reassembled: fragmentation,
//! pings, pongs and close frames go end to end unchanged, so a ping from one side is answered
//! by the other and a close code reaches the other side as sent.
//!
//! Backpressure is natural: a direction only reads again once its last write is done, so a
//! peer that stops reading stops the relay reading the other peer.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::socket::error::SocketError;
use crate::socket::frame::{self, Expect};

/// What the relay requires of every frame: both peers are clients, so frames come masked;
/// RSV1 only where permessage-deflate was agreed end to end ([`Relaying::rsv1`]); messages
/// are not followed (fragments pass as they come).
const CLIENT_FRAMES: Expect = Expect {
    masked: true,
    rsv1: false,
    fragmented: None,
};

/// How a pair is relayed.
#[derive(Debug, Clone, Copy)]
pub struct Relaying {
    /// Largest read buffer per direction.
    pub buffer_bytes: usize,
    /// permessage-deflate was agreed (the sender offered it and the listener answered with
    /// it): RSV1 may mark a message's first frame.
    pub rsv1: bool,
}

/// First size of a direction's read buffer; it doubles up to the configured maximum while
/// reads fill it, and comes back to this size once a read leaves most of it empty and
/// everything read has been passed on (the traffic is sparse again), so that an idle
/// connection holds two small buffers, not the largest its bursts needed.
const INITIAL_BUFFER: usize = 2 * 1024;

/// How long the relay waits for the other direction to finish once one has ended.
const LINGER: Duration = Duration::from_secs(5);

/// Counters shared with the relay's statistics.
#[derive(Debug, Default)]
pub struct ForwardStats {
    /// Bytes read from one peer and not yet written to the other.
    pub buffered_bytes: AtomicUsize,
}

/// Parser state of one direction.
#[derive(Debug, Clone, Copy)]
enum State {
    Header,
    Payload {
        remaining: u64,
        mask: [u8; 4],
        offset: usize,
    },
}

/// Rewrites client frames into server frames, chunk by chunk.
#[derive(Debug)]
pub struct FrameRewriter {
    state: State,
    expect: Expect,
    /// True once a close frame went through.
    pub close_seen: bool,
}

impl Default for FrameRewriter {
    fn default() -> Self {
        FrameRewriter::new(false)
    }
}

impl FrameRewriter {
    /// A rewriter that lets RSV1 through on data frames when `rsv1` (permessage-deflate was
    /// agreed); [`FrameRewriter::default`] refuses it.
    pub fn new(rsv1: bool) -> Self {
        FrameRewriter {
            state: State::Header,
            expect: Expect {
                rsv1,
                ..CLIENT_FRAMES
            },
            close_seen: false,
        }
    }

    /// Consumes as much of `input` as possible, appending server frames to `out`. Returns
    /// how many bytes were consumed; the rest is an incomplete frame header.
    pub fn process(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, SocketError> {
        let mut pos = 0;
        loop {
            match self.state {
                State::Header => {
                    let avail = &input[pos..];
                    let Some(h) = frame::parse_header(avail, self.expect)? else {
                        return Ok(pos);
                    };
                    if h.len >> 63 != 0 {
                        // RFC 6455 5.2: the most significant bit must be 0.
                        return Err(SocketError::protocol(
                            "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH",
                            "Unsupported WebSocket frame: payload length > 2^63 - 1",
                            1002,
                            true,
                        ));
                    }
                    if h.opcode == frame::OP_CLOSE {
                        self.close_seen = true;
                    }
                    // The same header without the mask: the frame goes on as a server's.
                    out.push(avail[0]);
                    out.push(avail[1] & 0x7f);
                    out.extend_from_slice(&avail[2..h.size - 4]);
                    pos += h.size;
                    self.state = match h.mask {
                        Some(mask) if h.len > 0 => State::Payload {
                            remaining: h.len,
                            mask,
                            offset: 0,
                        },
                        _ => State::Header,
                    };
                }
                State::Payload {
                    remaining,
                    mask,
                    offset,
                } => {
                    let avail = input.len() - pos;
                    if avail == 0 {
                        return Ok(pos);
                    }
                    let take = usize::try_from(remaining).map_or(avail, |r| r.min(avail));
                    // Unmasked as it is copied out (see `frame::extend_masked`).
                    frame::extend_masked(out, &input[pos..pos + take], mask, offset);
                    pos += take;
                    let left = remaining - take as u64;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Payload {
                            remaining: left,
                            mask,
                            offset: (offset + take) % 4,
                        }
                    };
                }
            }
        }
    }
}

/// An unmasked server close frame with `code` and `reason`.
pub fn close_frame(code: u16, reason: &str) -> Vec<u8> {
    let reason = &reason.as_bytes()[..reason.len().min(123)];
    let mut f = vec![0x88, (2 + reason.len()) as u8];
    f.extend_from_slice(&code.to_be_bytes());
    f.extend_from_slice(reason);
    f
}

/// Bytes counted in [`ForwardStats::buffered_bytes`] by one direction; uncounted on drop, so
/// that a cancelled relay leaves the counter right.
struct Held<'a> {
    stats: &'a ForwardStats,
    bytes: usize,
}

impl Held<'_> {
    fn set(&mut self, bytes: usize) {
        if bytes >= self.bytes {
            self.stats
                .buffered_bytes
                .fetch_add(bytes - self.bytes, Ordering::Relaxed);
        } else {
            self.stats
                .buffered_bytes
                .fetch_sub(self.bytes - bytes, Ordering::Relaxed);
        }
        self.bytes = bytes;
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.set(0);
    }
}

/// State shared by the two directions of one relayed connection.
struct Shared {
    closes: AtomicUsize,
    finished: AtomicBool,
    done: Notify,
}

impl Shared {
    /// Tells the other direction to stop.
    fn finish(&self) {
        self.finished.store(true, Ordering::SeqCst);
        self.done.notify_waiters();
    }
}

/// Moves frames from `reader` (one client) to `writer` (the other) until the stream ends,
/// both close frames have passed, or the other direction gives up.
async fn forward<R, W>(
    mut reader: R,
    initial: Vec<u8>,
    mut writer: W,
    how: Relaying,
    shared: Arc<Shared>,
    stats: Arc<ForwardStats>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut rewriter = FrameRewriter::new(how.rsv1);
    let max = how.buffer_bytes.max(256);
    let mut input = vec![0u8; INITIAL_BUFFER.min(max).max(initial.len().min(max))];
    let mut filled = initial.len().min(input.len());
    input[..filled].copy_from_slice(&initial[..filled]);
    let mut out = Vec::with_capacity(input.len() + 64);
    let mut pending_initial = filled > 0;
    // The last read filled less than a quarter of the buffer.
    let mut sparse = false;
    let mut held = Held {
        stats: &stats,
        bytes: 0,
    };
    loop {
        if !pending_initial {
            // Register for the stop signal before checking the flag, so none is missed.
            let stop = shared.done.notified();
            tokio::pin!(stop);
            stop.as_mut().enable();
            if shared.finished.load(Ordering::SeqCst) {
                break;
            }
            let read = tokio::select! {
                r = reader.read(&mut input[filled..]) => r,
                _ = &mut stop => break,
            };
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    filled += n;
                    // A full buffer means more is waiting: read more at a time.
                    if filled == input.len() && input.len() < max {
                        input.resize((input.len() * 2).min(max), 0);
                    }
                    sparse = n < input.len() / 4;
                }
            }
        }
        pending_initial = false;
        held.set(filled);
        let had_close = rewriter.close_seen;
        let result = rewriter.process(&input[..filled], &mut out);
        let consumed = match result {
            Ok(c) => c,
            Err(e) => {
                log::debug!(
                    "relay: protocol error from a peer ({}); closing the connection",
                    e.message
                );
                out.extend_from_slice(&close_frame(1002, "Protocol error from peer"));
                let _ = writer.write_all(&out).await;
                break;
            }
        };
        // Flushed as well: a TLS stream (tokio-rustls) takes the bytes into its buffer and
        // says they are written even when the socket could not take them, and only a later
        // write or a flush sends them. Without the flush, the last frame before a pause (a
        // close, a final message) could wait there for as long as the other side is quiet.
        let write = match writer.write_all(&out).await {
            Ok(()) => writer.flush().await,
            Err(e) => Err(e),
        };
        out.clear();
        input.copy_within(consumed..filled, 0);
        filled -= consumed;
        if sparse && filled == 0 && input.len() > INITIAL_BUFFER {
            // Back to the small buffers (see `INITIAL_BUFFER`).
            input = vec![0u8; INITIAL_BUFFER.min(max)];
            out = Vec::with_capacity(input.len() + 64);
        }
        held.set(filled);
        if write.is_err() {
            break;
        }
        if rewriter.close_seen && !had_close && shared.closes.fetch_add(1, Ordering::SeqCst) == 1 {
            // Both close frames have passed: the closing handshake is complete.
            break;
        }
        if shared.finished.load(Ordering::SeqCst) {
            break;
        }
    }
    drop(held);
    let _ = writer.flush().await;
    let _ = writer.shutdown().await;
    shared.finish();
}

/// Relays between two clients until both are done. `a_initial`/`b_initial` are bytes
/// already read from each (after their handshakes).
pub async fn relay<A, B>(
    a: A,
    a_initial: Vec<u8>,
    b: B,
    b_initial: Vec<u8>,
    how: Relaying,
    stats: Arc<ForwardStats>,
) where
    A: AsyncRead + AsyncWrite + Unpin,
    B: AsyncRead + AsyncWrite + Unpin,
{
    let shared = Arc::new(Shared {
        closes: AtomicUsize::new(0),
        finished: AtomicBool::new(false),
        done: Notify::new(),
    });
    let (a_read, a_write) = tokio::io::split(a);
    let (b_read, b_write) = tokio::io::split(b);
    let a_to_b = forward(
        a_read,
        a_initial,
        b_write,
        how,
        shared.clone(),
        stats.clone(),
    );
    let b_to_a = forward(b_read, b_initial, a_write, how, shared.clone(), stats);
    tokio::pin!(a_to_b, b_to_a);
    tokio::select! {
        _ = &mut a_to_b => { let _ = tokio::time::timeout(LINGER, b_to_a).await; }
        _ = &mut b_to_a => { let _ = tokio::time::timeout(LINGER, a_to_b).await; }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::buffering_stream::{until, Buffered, BufferingStream};

    fn masked(b0: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut f = vec![b0];
        match payload.len() {
            n if n < 126 => f.push(0x80 | n as u8),
            n if n < 65536 => {
                f.push(0x80 | 126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(0x80 | 127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        f
    }

    #[test]
    fn unmasks_frames_split_anywhere() {
        let payload: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = masked(0x82, &payload, [1, 2, 3, 4]);
        wire.extend(masked(0x89, b"ping", [9, 8, 7, 6]));
        wire.extend(masked(0x81, b"", [0, 0, 0, 0]));
        for split in [1usize, 2, 3, 7, 13, 1000, wire.len()] {
            let mut rw = FrameRewriter::default();
            let mut out = Vec::new();
            let mut pending: Vec<u8> = Vec::new();
            for piece in wire.chunks(split) {
                pending.extend_from_slice(piece);
                let used = rw.process(&pending, &mut out).unwrap();
                pending.drain(..used);
            }
            assert!(pending.is_empty());
            let mut expected = vec![0x82, 127];
            expected.extend_from_slice(&(payload.len() as u64).to_be_bytes());
            expected.extend_from_slice(&payload);
            expected.extend_from_slice(&[0x89, 4]);
            expected.extend_from_slice(b"ping");
            expected.extend_from_slice(&[0x81, 0]);
            assert_eq!(out, expected, "split {split}");
        }
    }

    #[test]
    fn refuses_what_rfc_6455_forbids() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (masked(0xc2, b"x", [1; 4]), "WS_ERR_UNEXPECTED_RSV_1"),
            (masked(0x83, b"x", [1; 4]), "WS_ERR_INVALID_OPCODE"),
            (vec![0x82, 0x01, b'x'], "WS_ERR_EXPECTED_MASK"),
            (masked(0x09, b"x", [1; 4]), "WS_ERR_EXPECTED_FIN"),
            (
                masked(0x89, &[0u8; 126], [1; 4]),
                "WS_ERR_INVALID_CONTROL_PAYLOAD_LENGTH",
            ),
            (
                {
                    let mut f = vec![0x82, 0x80 | 127];
                    f.extend_from_slice(&u64::MAX.to_be_bytes());
                    f.extend_from_slice(&[1, 2, 3, 4]);
                    f
                },
                "WS_ERR_UNSUPPORTED_DATA_PAYLOAD_LENGTH",
            ),
        ];
        for (wire, code) in cases {
            let mut out = Vec::new();
            let err = FrameRewriter::default()
                .process(&wire, &mut out)
                .unwrap_err();
            assert_eq!((err.code, err.close_code), (Some(code), Some(1002)));
        }
    }

    #[test]
    fn rsv1_passes_only_where_deflate_was_agreed() {
        let wire = masked(0xc1, b"x", [1; 4]);
        let mut out = Vec::new();
        assert_eq!(
            FrameRewriter::new(true).process(&wire, &mut out),
            Ok(wire.len())
        );
        assert_eq!(out, vec![0xc1, 1, b'x']);
        for (rw, frame) in [
            (FrameRewriter::default(), masked(0xc1, b"x", [1; 4])),
            // Never on a continuation or a control frame.
            (FrameRewriter::new(true), masked(0xc0, b"x", [1; 4])),
            (FrameRewriter::new(true), masked(0xc9, b"x", [1; 4])),
        ] {
            let mut rw = rw;
            let err = rw.process(&frame, &mut Vec::new()).unwrap_err();
            assert_eq!(err.code, Some("WS_ERR_UNEXPECTED_RSV_1"));
        }
    }

    #[test]
    fn notices_close_frames() {
        let wire = masked(0x88, &[0x03, 0xe8], [5; 4]);
        let mut rw = FrameRewriter::default();
        let mut out = Vec::new();
        rw.process(&wire, &mut out).unwrap();
        assert!(rw.close_seen);
        assert_eq!(out, vec![0x88, 2, 0x03, 0xe8]);
        assert_eq!(close_frame(1002, "x"), vec![0x88, 3, 0x03, 0xea, b'x']);
    }

    #[tokio::test]
    async fn the_last_frame_reaches_a_buffering_stream_once_it_is_writable() {
        let state = Arc::new(std::sync::Mutex::new(Buffered::default()));
        let (mut client, a) = tokio::io::duplex(1 << 16);
        let how = Relaying {
            buffer_bytes: 1 << 16,
            rsv1: false,
        };
        let b = BufferingStream(state.clone());
        let task = tokio::spawn(relay(a, vec![], b, vec![], how, Default::default()));
        // The last frame for a while (then a close, which the peer waits for).
        client
            .write_all(&masked(0x82, b"last", [1, 2, 3, 4]))
            .await
            .unwrap();
        client
            .write_all(&masked(0x88, &4002u16.to_be_bytes(), [5, 6, 7, 8]))
            .await
            .unwrap();
        until(&state, |b| b.pending.len() == 10).await;
        // The socket becomes writable; nothing else happens on either side.
        Buffered::make_writable(&state)
            .expect("the relay waits for the socket")
            .wake();
        until(&state, |b| b.sent.len() == 10).await;
        assert_eq!(
            state.lock().unwrap().sent,
            [&[0x82, 4][..], b"last", &[0x88, 2, 0x0f, 0xa2]].concat()
        );
        task.abort();
    }
}
