//! A request rendezvous, service side: the WebSocket a listener opens on a request's address
//! (`sb-hc-action=request`), over which the relay sends requests and bodies and reads
//! responses and bodies.
//!
//! Frame-level, not message-level, because bodies of any size stream through it: a body is
//! one binary message of many frames, and a message-level library would hold the whole of it.
//! A reader task turns incoming frames into [`RvEvent`]s (text messages whole and bounded,
//! binary messages piece by piece) through a small channel, so that a consumer that stops
//! taking pieces stops the task reading the listener; it answers pings and close frames
//! itself. Writes go through [`RvWriter`], one whole frame at a time.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;

use crate::io::IoStream;
use crate::socket::frame::{self, Expect};

/// Events buffered between the reader task and the consumer (each at most one read, 64 KiB).
const EVENT_QUEUE: usize = 4;

/// How much the reader task reads at a time.
const READ_BYTES: usize = 64 * 1024;

/// How long a close frame may take to go out, and how long the relay then waits for the
/// listener's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// What the listener sent on a rendezvous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RvEvent {
    /// A whole text message.
    Text(String),
    /// A piece of a binary message, in order; `fin` on its last piece.
    Binary {
        /// The bytes.
        data: Vec<u8>,
        /// True on the message's last piece.
        fin: bool,
    },
    /// The socket is done: the listener closed it (the close frame was answered), the stream
    /// ended, or the listener broke the protocol (answered with a close code).
    Closed,
}

struct WriterState {
    io: WriteHalf<IoStream>,
    /// A write was abandoned mid-frame (its future dropped): the stream can only be shut.
    broken: bool,
    /// The close frame went out.
    closed: bool,
}

/// The writing side of a rendezvous; clones share it. Each call writes whole frames, so
/// frames from the relay's request flow and the reader task's pongs never interleave.
#[derive(Clone)]
pub struct RvWriter {
    inner: Arc<Mutex<WriterState>>,
}

/// A server frame (unmasked) header for a payload of `len` bytes.
fn frame_header(fin: bool, opcode: u8, len: usize) -> Vec<u8> {
    let mut h = Vec::with_capacity(10);
    h.push(if fin { 0x80 } else { 0 } | opcode);
    match len {
        n if n < 126 => h.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            h.push(126);
            h.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            h.push(127);
            h.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    h
}

fn broken_pipe() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the rendezvous is closed")
}

impl RvWriter {
    async fn frame(&self, fin: bool, opcode: u8, payload: &[u8]) -> std::io::Result<()> {
        let mut w = self.inner.lock().await;
        if w.broken || w.closed {
            return Err(broken_pipe());
        }
        // Set while the frame is being written: if this future is dropped half-way, the
        // stream is left mid-frame and must not carry anything else.
        w.broken = true;
        let header = frame_header(fin, opcode, payload.len());
        if payload.len() < 1024 {
            let mut all = header;
            all.extend_from_slice(payload);
            w.io.write_all(&all).await?;
        } else {
            w.io.write_all(&header).await?;
            w.io.write_all(payload).await?;
        }
        w.io.flush().await?;
        w.broken = false;
        Ok(())
    }

    /// Sends a text message in one frame.
    pub async fn text(&self, text: &str) -> std::io::Result<()> {
        self.frame(true, frame::OP_TEXT, text.as_bytes()).await
    }

    /// Sends one frame of a binary message: the first frame is a binary frame, the others
    /// continuation frames; `fin` ends the message.
    pub async fn binary(&self, first: bool, fin: bool, data: &[u8]) -> std::io::Result<()> {
        let opcode = if first {
            frame::OP_BINARY
        } else {
            frame::OP_CONTINUATION
        };
        self.frame(fin, opcode, data).await
    }

    async fn pong(&self, data: &[u8]) -> std::io::Result<()> {
        self.frame(true, frame::OP_PONG, data).await
    }

    /// Sends a close frame (once; best effort, bounded in time) and shuts the write side.
    pub async fn close(&self, code: u16, reason: &str) {
        let Ok(mut w) = tokio::time::timeout(CLOSE_WAIT, self.inner.lock()).await else {
            return;
        };
        if !w.broken && !w.closed {
            w.closed = true;
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(&reason.as_bytes()[..reason.len().min(123)]);
            let mut f = frame_header(true, frame::OP_CLOSE, payload.len());
            f.extend_from_slice(&payload);
            let _ = tokio::time::timeout(CLOSE_WAIT, w.io.write_all(&f)).await;
        }
        w.closed = true;
        let _ = tokio::time::timeout(CLOSE_WAIT, w.io.shutdown()).await;
    }
}

/// An open rendezvous: events from the listener, and the writer. Dropping it stops its
/// reader task and closes the socket.
pub struct Rendezvous {
    /// What the listener sends.
    pub events: mpsc::Receiver<RvEvent>,
    /// Where the relay writes.
    pub writer: RvWriter,
    reader: JoinHandle<()>,
}

impl Drop for Rendezvous {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

impl Rendezvous {
    /// Starts serving `stream` (after its 101), of which `initial` was already read. Text
    /// messages above `max_text` bytes end the socket with 1009.
    pub fn start(stream: IoStream, initial: Vec<u8>, max_text: usize) -> Rendezvous {
        let (read, write) = tokio::io::split(stream);
        let writer = RvWriter {
            inner: Arc::new(Mutex::new(WriterState {
                io: write,
                broken: false,
                closed: false,
            })),
        };
        let (tx, events) = mpsc::channel(EVENT_QUEUE);
        let reader = tokio::spawn(read_loop(read, initial, tx, writer.clone(), max_text));
        Rendezvous {
            events,
            writer,
            reader,
        }
    }

    /// Closes the socket from the relay's side with `code` and waits (briefly) for the
    /// listener's close reply, so that the listener reads the close frame rather than a
    /// reset.
    pub async fn close(mut self, code: u16, reason: &str) {
        self.writer.close(code, reason).await;
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(e) = self.events.recv().await {
                if e == RvEvent::Closed {
                    break;
                }
            }
        })
        .await;
    }
}

/// The reader task's position in the frame stream.
#[derive(Debug, Clone, Copy)]
enum ReadState {
    Header,
    Payload {
        remaining: u64,
        mask: [u8; 4],
        offset: usize,
        fin: bool,
        /// The data message's opcode (text or binary), for continuation frames too.
        opcode: u8,
    },
}

/// What one parsing step found.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// More bytes are needed.
    Need,
    /// Progress, nothing to report.
    Nothing,
    /// Something for the consumer.
    Event(RvEvent),
    /// A ping to answer.
    Ping(Vec<u8>),
    /// A close frame with this code (to echo).
    Close(u16),
    /// A protocol violation: close with this code.
    Fail(u16, String),
}

/// Client frames in, events out; no I/O.
struct Parser {
    buf: Vec<u8>,
    state: ReadState,
    /// The opcode of the data message in progress.
    message: Option<u8>,
    /// A text message's bytes so far.
    text: Vec<u8>,
    max_text: usize,
}

impl Parser {
    fn step(&mut self) -> Step {
        match self.state {
            ReadState::Header => self.header(),
            ReadState::Payload {
                remaining,
                mask,
                offset,
                fin,
                opcode,
            } => {
                if self.buf.is_empty() {
                    return Step::Need;
                }
                let take =
                    usize::try_from(remaining).map_or(self.buf.len(), |r| r.min(self.buf.len()));
                let mut data = Vec::with_capacity(take);
                frame::extend_masked(&mut data, &self.buf[..take], mask, offset);
                self.buf.drain(..take);
                let left = remaining - take as u64;
                self.state = if left == 0 {
                    ReadState::Header
                } else {
                    ReadState::Payload {
                        remaining: left,
                        mask,
                        offset: (offset + take) % 4,
                        fin,
                        opcode,
                    }
                };
                let last = left == 0 && fin;
                if last {
                    self.message = None;
                }
                if opcode == frame::OP_TEXT {
                    self.text.extend_from_slice(&data);
                    if last {
                        return self.text_message();
                    }
                    return Step::Nothing;
                }
                Step::Event(RvEvent::Binary { data, fin: last })
            }
        }
    }

    fn header(&mut self) -> Step {
        let expect = Expect {
            masked: true,
            rsv1: false,
            fragmented: Some(self.message.is_some()),
        };
        let h = match frame::parse_header(&self.buf, expect) {
            Ok(Some(h)) => h,
            Ok(None) => return Step::Need,
            Err(e) => return Step::Fail(e.close_code.unwrap_or(1002), e.message),
        };
        let mask = h.mask.unwrap_or_default();
        if h.opcode >= frame::OP_CLOSE {
            // Control frames are at most 125 bytes (checked): handle each whole.
            let total = h.size + h.len as usize;
            if self.buf.len() < total {
                return Step::Need;
            }
            let mut payload = Vec::with_capacity(h.len as usize);
            frame::extend_masked(&mut payload, &self.buf[h.size..total], mask, 0);
            self.buf.drain(..total);
            return match h.opcode {
                frame::OP_PING => Step::Ping(payload),
                frame::OP_CLOSE => Step::Close(
                    payload
                        .get(..2)
                        .map(|c| u16::from_be_bytes([c[0], c[1]]))
                        .filter(|c| frame::is_valid_close_code(*c))
                        .unwrap_or(1000),
                ),
                _ => Step::Nothing,
            };
        }
        let opcode = if h.opcode == frame::OP_CONTINUATION {
            self.message.unwrap_or(frame::OP_BINARY)
        } else {
            h.opcode
        };
        if opcode == frame::OP_TEXT
            && (self.text.len() as u64).saturating_add(h.len) > self.max_text as u64
        {
            return Step::Fail(1009, "text message too big".into());
        }
        self.buf.drain(..h.size);
        self.message = Some(opcode);
        if h.len > 0 {
            self.state = ReadState::Payload {
                remaining: h.len,
                mask,
                offset: 0,
                fin: h.fin,
                opcode,
            };
            return Step::Nothing;
        }
        if !h.fin {
            return Step::Nothing;
        }
        self.message = None;
        if opcode == frame::OP_TEXT {
            return self.text_message();
        }
        Step::Event(RvEvent::Binary {
            data: Vec::new(),
            fin: true,
        })
    }

    fn text_message(&mut self) -> Step {
        match String::from_utf8(std::mem::take(&mut self.text)) {
            Ok(t) => Step::Event(RvEvent::Text(t)),
            Err(_) => Step::Fail(1007, "invalid UTF-8 in a text message".into()),
        }
    }
}

/// Reads frames until the socket ends, sending events to `tx`; always ends with
/// [`RvEvent::Closed`] unless the consumer is gone.
async fn read_loop(
    mut io: ReadHalf<IoStream>,
    initial: Vec<u8>,
    tx: mpsc::Sender<RvEvent>,
    writer: RvWriter,
    max_text: usize,
) {
    let mut p = Parser {
        buf: initial,
        state: ReadState::Header,
        message: None,
        text: Vec::new(),
        max_text,
    };
    loop {
        match p.step() {
            Step::Need => {
                p.buf.reserve(READ_BYTES);
                match io.read_buf(&mut p.buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
            Step::Nothing => {}
            Step::Event(e) => {
                if tx.send(e).await.is_err() {
                    return;
                }
            }
            Step::Ping(payload) => {
                let _ = writer.pong(&payload).await;
            }
            Step::Close(code) => {
                writer.close(code, "").await;
                break;
            }
            Step::Fail(code, why) => {
                log::debug!("relay: closing a rendezvous with {code}: {why}");
                writer.close(code, "").await;
                break;
            }
        }
    }
    let _ = tx.send(RvEvent::Closed).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        frame::encode(&mut out, b0 & 0x80 != 0, b0 & 0x0f, payload, [1, 2, 3, 4]);
        out
    }

    fn parse_all(wire: &[u8], max_text: usize) -> Vec<Step> {
        let mut p = Parser {
            buf: wire.to_vec(),
            state: ReadState::Header,
            message: None,
            text: Vec::new(),
            max_text,
        };
        let mut steps = Vec::new();
        loop {
            match p.step() {
                Step::Need => return steps,
                Step::Nothing => {}
                s @ Step::Fail(..) => {
                    steps.push(s);
                    return steps;
                }
                s => steps.push(s),
            }
        }
    }

    #[test]
    fn frames_become_events() {
        let mut wire = masked(0x01, b"{\"a\"");
        wire.extend(masked(0x89, b"p"));
        wire.extend(masked(0x80, b":1}"));
        wire.extend(masked(0x02, b"ab"));
        wire.extend(masked(0x00, b""));
        wire.extend(masked(0x80, b"c"));
        wire.extend(masked(0x82, b""));
        wire.extend(masked(0x88, &1001u16.to_be_bytes()));
        assert_eq!(
            parse_all(&wire, 100),
            vec![
                Step::Ping(b"p".to_vec()),
                Step::Event(RvEvent::Text("{\"a\":1}".into())),
                Step::Event(RvEvent::Binary {
                    data: b"ab".to_vec(),
                    fin: false
                }),
                Step::Event(RvEvent::Binary {
                    data: b"c".to_vec(),
                    fin: true
                }),
                Step::Event(RvEvent::Binary {
                    data: Vec::new(),
                    fin: true
                }),
                Step::Close(1001),
            ]
        );
    }

    #[test]
    fn violations_fail_with_a_close_code() {
        assert!(matches!(
            parse_all(&masked(0x81, &[b'x'; 20]), 10)[..],
            [Step::Fail(1009, _)]
        ));
        assert!(matches!(
            parse_all(&masked(0x81, &[0xff]), 10)[..],
            [Step::Fail(1007, _)]
        ));
        assert!(matches!(
            parse_all(&[0x82, 0x01, b'x'], 10)[..],
            [Step::Fail(1002, _)]
        ));
        let mut wire = masked(0x02, b"a");
        wire.extend(masked(0x82, b"b"));
        assert!(matches!(
            parse_all(&wire, 10)[..],
            [Step::Event(_), Step::Fail(1002, _)]
        ));
    }
}
