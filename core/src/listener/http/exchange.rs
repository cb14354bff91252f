//! One HTTP request and its response: the owner's [`Exchange`] handle, and the task that
//! turns what the owner writes into the relay's response, inline on the control channel or
//! streamed over a rendezvous.
//!
//! The owner writes the response as Node.js serializes it (see `response.rs`). The task
//! buffers it, and sends it inline (the `response` message and one binary message, as one
//! batch, so that no other response comes between them) when it ends within
//! [`INLINE_BODY_MAX`] bytes and [`STREAM_AFTER`]. A response that grows larger, takes
//! longer, flushes its head early or is an event stream goes over a rendezvous instead: for
//! a request that came on the control channel the listener opens the request's address
//! itself (and serves later requests of that sender there), and the body follows in frames
//! as it is written, held back by the socket's pace.
//!
//! The common case, a response written whole in one call (`res.end(body)` of a small
//! response to a request that came on the control channel), skips the task: the owner's
//! [`Exchange::end_with`] parses it and sends it inline from the owner's own thread, written
//! straight to the control channel when it is idle ([`Handle::send_direct`]), so that a
//! small request costs the JS thread no wake-up of a tokio thread. Such a request's task
//! never starts: a control-channel exchange's task waits ([`prepare`]) until the owner asks
//! something of it, or the listener's sweep finds it unanswered after a second
//! ([`HttpContext::start_overdue_tasks`]; the relay's deadline counts from the request's
//! arrival). A task that did start and whose response then went inline is told to end later,
//! in bulk ([`HttpContext::end_inline_tasks`]), by the listener's tokio threads.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::listener::http::held;
use crate::listener::http::message::{response_message, status_message};
use crate::listener::http::rendezvous::{self, HttpContext};
use crate::listener::http::response::{Head, Part, ResponseParser};
use crate::listener::http::{ExchangeEvent, ExchangeSink};
use crate::socket::batch::BATCH_HEADER;
use crate::socket::frame::{OP_BINARY, OP_CONTINUATION, OP_TEXT};
use crate::socket::{Command, Handle, SocketError};

/// Largest body sent inline on the control channel (the protocol article's 64 kB).
pub const INLINE_BODY_MAX: usize = 64 * 1024;

/// Largest `response` message sent inline (the article's 32 kB of header metadata).
const INLINE_HEAD_MAX: usize = 32 * 1024;

/// A response still being written this long after its first write goes over a rendezvous
/// (as Microsoft's .NET listener does), so that a slow response is not held back whole.
pub const STREAM_AFTER: Duration = Duration::from_secs(2);

/// Bytes the owner may have written and not yet sent before [`Exchange::write`] asks it to
/// wait for [`ExchangeEvent::Drained`]. Above [`INLINE_BODY_MAX`], so that an owner told to
/// wait has written more than fits inline, and the response is streamed (its bytes then
/// drain as the socket takes them) rather than held until [`STREAM_AFTER`].
const HIGH_WATER: usize = 2 * INLINE_BODY_MAX;

/// Below this, a waiting owner is told to write again.
const LOW_WATER: usize = INLINE_BODY_MAX / 2;

/// What the owner asks of the response.
enum Cmd {
    /// Bytes of the serialized response.
    Write(Vec<u8>),
    /// The response is complete.
    End,
    /// Give up on the response.
    Abort,
}

/// State shared by the owner's handle, the exchange's task and the rendezvous it uses.
pub(crate) struct State {
    commands: Mutex<Commands>,
    notify: Notify,
    /// Bytes the owner wrote that have not gone out yet.
    pending: AtomicUsize,
    /// The owner was asked to wait: it hears `Drained` once `pending` is low.
    blocked: AtomicBool,
    /// The socket the request's body streams from (paused and resumed by the owner).
    body_source: Mutex<Option<Handle>>,
    /// The exchange is over: its last event was sent.
    over: AtomicBool,
    over_notify: Notify,
    sink: OnceLock<Arc<dyn ExchangeSink>>,
    /// Events of the exchange before its owner's sink was attached (the owner may answer
    /// on its own thread before the thread that handed it the request attaches it).
    early: Mutex<Vec<ExchangeEvent>>,
    /// What the owner needs to send the response inline itself (see [`Exchange::end_with`]):
    /// set for a request that came on the control channel.
    inline: OnceLock<Inline>,
    /// The exchange's task, not started yet (see [`prepare`]): started when the owner asks
    /// something of it, or by the listener's sweep ([`HttpContext::start_overdue_tasks`]);
    /// dropped unstarted when the owner sends the response inline.
    waiting: Mutex<Option<ExchangeTask>>,
}

/// The owner's commands, and whether the task or the owner has acted on any.
#[derive(Default)]
struct Commands {
    queue: VecDeque<Cmd>,
    /// The task took commands, or the owner sent the response itself: from then on, only
    /// the task (or nobody) sends anything of this response.
    taken: bool,
    /// The owner sent the whole response itself: the task has nothing left to do.
    sent_inline: bool,
}

/// A control-channel request's response, as the owner sends it inline.
struct Inline {
    channel: Handle,
    request_id: String,
    head_request: bool,
    /// Weak: the context's list of exchanges answered inline holds their states.
    ctx: Weak<HttpContext>,
}

impl State {
    fn new() -> Arc<State> {
        Arc::new(State {
            commands: Mutex::new(Commands::default()),
            notify: Notify::new(),
            pending: AtomicUsize::new(0),
            blocked: AtomicBool::new(false),
            body_source: Mutex::new(None),
            over: AtomicBool::new(false),
            over_notify: Notify::new(),
            sink: OnceLock::new(),
            early: Mutex::new(Vec::new()),
            inline: OnceLock::new(),
            waiting: Mutex::new(None),
        })
    }

    fn push(&self, c: Cmd) {
        if let Ok(mut q) = self.commands.lock() {
            q.queue.push_back(c);
        }
        self.start_task();
        self.notify.notify_one();
    }

    /// Starts the exchange's task if it is still waiting to start. True if it was.
    pub(crate) fn start_task(&self) -> bool {
        let waiting = self.waiting.lock().ok().and_then(|mut w| w.take());
        match waiting {
            Some(task) => {
                task.spawn();
                true
            }
            None => false,
        }
    }

    /// Drops the exchange's task if it never started (the response went out inline, so
    /// it has nothing to do). True if it had not started.
    fn drop_waiting_task(&self) -> bool {
        let waiting = self.waiting.lock().ok().and_then(|mut w| w.take());
        waiting.is_some()
    }

    /// Whether the exchange's task is still waiting to start.
    pub(crate) fn task_waiting(&self) -> bool {
        self.waiting.lock().map(|w| w.is_some()).unwrap_or(false)
    }

    fn take(&self) -> VecDeque<Cmd> {
        self.commands
            .lock()
            .map(|mut q| {
                if !q.queue.is_empty() {
                    q.taken = true;
                }
                std::mem::take(&mut q.queue)
            })
            .unwrap_or_default()
    }

    /// The owner may send the whole response itself: nothing was asked of the task yet.
    /// Once this returns true, the task sends nothing.
    fn claim_inline(&self) -> bool {
        match self.commands.lock() {
            Ok(mut q) if !q.taken && q.queue.is_empty() && !self.is_over() => {
                q.taken = true;
                q.sent_inline = true;
                true
            }
            _ => false,
        }
    }

    /// Wakes the task (which ends if the owner sent the response itself).
    pub(crate) fn wake_task(&self) {
        self.notify.notify_one();
    }

    /// The owner sent the whole response itself.
    fn sent_inline(&self) -> bool {
        self.commands.lock().map(|q| q.sent_inline).unwrap_or(false)
    }

    /// Tells the owner (once its sink is attached: see [`Exchange::attach`]).
    pub(crate) fn emit(&self, e: ExchangeEvent) {
        if let Some(sink) = self.sink.get() {
            sink.push(e);
            return;
        }
        let Ok(mut early) = self.early.lock() else {
            return;
        };
        // Attached meanwhile: `attach` sets the sink once the early events are out.
        match self.sink.get() {
            Some(sink) => {
                drop(early);
                sink.push(e);
            }
            None => early.push(e),
        }
    }

    /// `bytes` of the response left (sent inline, or written to the rendezvous socket).
    pub(crate) fn sent(&self, bytes: usize) {
        let before = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |p| {
                Some(p.saturating_sub(bytes))
            })
            .unwrap_or(0);
        if before.saturating_sub(bytes) < LOW_WATER && self.blocked.swap(false, Ordering::SeqCst) {
            self.emit(ExchangeEvent::Drained);
        }
    }

    /// Ends the exchange with its last event (once).
    pub(crate) fn finish(&self, last: ExchangeEvent) {
        if !self.over.swap(true, Ordering::SeqCst) {
            self.emit(last);
            self.over_notify.notify_waiters();
        }
    }

    /// Whether the exchange is over.
    pub(crate) fn is_over(&self) -> bool {
        self.over.load(Ordering::SeqCst)
    }

    /// Completes once the exchange is over.
    pub(crate) async fn over(&self) {
        loop {
            let n = self.over_notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.is_over() {
                return;
            }
            n.await;
        }
    }

    /// The request's body streams from `source`.
    pub(crate) fn set_body_source(&self, source: Handle) {
        if let Ok(mut s) = self.body_source.lock() {
            *s = Some(source);
        }
    }

    fn with_body_source(&self, f: impl FnOnce(&Handle)) {
        if let Some(h) = self
            .body_source
            .lock()
            .ok()
            .as_ref()
            .and_then(|s| s.as_ref())
        {
            f(h);
        }
    }
}

/// The owner's handle on one exchange.
#[derive(Clone)]
pub struct Exchange {
    pub(crate) state: Arc<State>,
}

impl Exchange {
    pub(crate) fn new() -> Exchange {
        Exchange {
            state: State::new(),
        }
    }

    /// Where the exchange's events go (set once): events emitted before go there first, in
    /// order.
    pub(crate) fn attach(&self, sink: Arc<dyn ExchangeSink>) {
        let Ok(mut early) = self.state.early.lock() else {
            return;
        };
        for e in early.drain(..) {
            sink.push(e);
        }
        let _ = self.state.sink.set(sink);
    }

    /// Bytes of the response as Node.js serializes it. Returns false once enough is waiting
    /// to go out that the owner should wait for [`ExchangeEvent::Drained`] (the bytes are
    /// taken either way); false too once the exchange is over (they are dropped).
    pub fn write(&self, data: Vec<u8>) -> bool {
        if self.state.is_over() {
            return false;
        }
        let total = self.state.pending.fetch_add(data.len(), Ordering::SeqCst) + data.len();
        self.state.push(Cmd::Write(data));
        if total >= HIGH_WATER {
            self.state.blocked.store(true, Ordering::SeqCst);
            // It may have drained meanwhile: check again, so that no `Drained` is lost.
            if self.state.pending.load(Ordering::SeqCst) < LOW_WATER {
                self.state.sent(0);
            }
            return false;
        }
        true
    }

    /// The response is complete.
    pub fn end(&self) {
        self.state.push(Cmd::End);
    }

    /// The response's last bytes (if any) and its end, in one step. A response written whole
    /// here (nothing written before) that fits the control channel it is answering is sent
    /// at once from the calling thread (see [`Exchange::end_inline`]); anything else goes to
    /// the exchange's task.
    pub fn end_with(&self, data: Option<Vec<u8>>) {
        if let Some(d) = data.as_deref() {
            if self.end_inline(d) {
                return;
            }
        }
        if let Some(d) = data.filter(|d| !d.is_empty()) {
            if !self.state.is_over() {
                self.state.pending.fetch_add(d.len(), Ordering::SeqCst);
                if let Ok(mut q) = self.state.commands.lock() {
                    q.queue.push_back(Cmd::Write(d));
                }
            }
        }
        self.end();
    }

    /// Sends `data`, a whole serialized response, inline on the control channel from the
    /// calling thread, when the request came there, nothing of the response was written
    /// before, and it fits (head and body within the control channel's limits, not an
    /// event stream). Returns false, having sent nothing, otherwise.
    fn end_inline(&self, data: &[u8]) -> bool {
        let Some(inline) = self.state.inline.get() else {
            return false;
        };
        // A channel being closed takes no more frames: the task sends it over a rendezvous.
        if inline.channel.closing() {
            return false;
        }
        // Gone with the listener: the task has ended the exchange, or is about to.
        let Some(ctx) = inline.ctx.upgrade() else {
            return false;
        };
        let mut parser = ResponseParser::default();
        let mut parts = Vec::new();
        if data.is_empty() || parser.feed(data, &mut parts).is_err() {
            return false;
        }
        let mut parts = parts.into_iter();
        let Some(Part::Head(head)) = parts.next() else {
            return false;
        };
        let mut body = Vec::new();
        for part in parts {
            match part {
                Part::Body(b) => body.extend_from_slice(&b),
                Part::Head(_) => return false,
            }
        }
        if is_event_stream(&head) || body.len() > INLINE_BODY_MAX {
            return false;
        }
        let with_body = may_have_body(inline.head_request, head.status) && !body.is_empty();
        let Some(Command::Batch(bytes)) =
            inline_batch(&inline.request_id, &head, with_body.then_some(&body[..]))
        else {
            return false;
        };
        if !self.state.claim_inline() {
            return false;
        }
        let state = self.state.clone();
        let request_id = inline.request_id.clone();
        held::send(
            &inline.channel,
            bytes,
            Box::new(move |ok| {
                // A request from the control channel is over: its id may come again.
                if let Ok(mut ids) = ctx.in_flight.lock() {
                    ids.remove(&request_id);
                }
                if ok {
                    state.finish(ExchangeEvent::Finished);
                } else {
                    log::debug!("listener: request {request_id}: {}", gone().message);
                    state.finish(ExchangeEvent::Aborted(gone()));
                }
                // A task that never started has nothing to end; one the sweep started waits
                // to be told.
                if !state.drop_waiting_task() {
                    ctx.inline_done(state);
                }
            }),
        );
        true
    }

    /// Gives up on the response (the owner destroyed it).
    pub fn abort(&self) {
        self.state.push(Cmd::Abort);
    }

    /// Stops reading the request's body (the owner's buffer is full).
    pub fn pause_body(&self) {
        self.state.with_body_source(|h| h.shared.pause());
    }

    /// Reads the request's body again.
    pub fn resume_body(&self) {
        self.state.with_body_source(|h| h.shared.resume());
    }
}

/// Where the response goes.
#[derive(Clone)]
pub(crate) enum Route {
    /// The request came on the control channel: a response there, or over a rendezvous the
    /// exchange opens at `address`.
    Control { channel: Handle, address: String },
    /// The request came over this rendezvous socket: the response goes there.
    Rendezvous(Handle),
}

/// Packs frames as one command, so that nothing else is sent between them.
fn batch(frames: &[(u8, &[u8])]) -> Command {
    let mut data = Vec::with_capacity(frames.iter().map(|(_, p)| BATCH_HEADER + p.len()).sum());
    for (opcode, payload) in frames {
        data.push(0x80 | opcode);
        data.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        data.extend_from_slice(&0u32.to_be_bytes());
        data.extend_from_slice(payload);
    }
    Command::Batch(data)
}

/// A response as it goes inline on the control channel: the `response` message and the
/// body (if any) as one batch, so that no other response comes between them. `None` when
/// the message is too large for the control channel.
fn inline_batch(request_id: &str, head: &Head, body: Option<&[u8]>) -> Option<Command> {
    let message = response_message(request_id, head, body.is_some());
    if message.len() > INLINE_HEAD_MAX {
        return None;
    }
    let mut frames: Vec<(u8, &[u8])> = vec![(OP_TEXT, message.as_bytes())];
    if let Some(b) = body {
        frames.push((OP_BINARY, b));
    }
    Some(batch(&frames))
}

/// A frame for a socket. Body bytes count as the response's own (`accounted`), so that the
/// socket's written events tell the exchange when they have left; the `response` message
/// does not.
fn frame(opcode: u8, fin: bool, payload: Vec<u8>) -> Command {
    let accounted = if opcode == OP_TEXT { 0 } else { payload.len() };
    Command::Frame {
        opcode,
        fin,
        payload,
        compress: false,
        accounted,
        ack: 0,
    }
}

/// Whether a response with this status to this method has a body (RFC 7230 §3.3.3).
fn may_have_body(head_request: bool, status: u16) -> bool {
    !head_request && status != 204 && status != 304 && !(100..200).contains(&status)
}

/// An event stream (server-sent events) must reach the sender as it is written.
fn is_event_stream(head: &Head) -> bool {
    head.headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("content-type")
            && v.trim_start()
                .to_ascii_lowercase()
                .starts_with("text/event-stream")
    })
}

/// How an exchange ended.
enum Outcome {
    /// The response went out.
    Finished,
    /// It did not: why.
    Failed(SocketError),
    /// The relay stopped waiting for it (and answered the sender itself).
    Overdue(SocketError),
}

/// The task of one exchange.
pub(crate) struct ExchangeTask {
    pub(crate) state: Arc<State>,
    pub(crate) ctx: Arc<HttpContext>,
    pub(crate) request_id: String,
    pub(crate) head_request: bool,
    pub(crate) route: Route,
    parser: ResponseParser,
    head: Option<Head>,
    body: Vec<u8>,
    /// Streaming over this socket (the `response` message is out).
    stream: Option<Handle>,
    /// A data frame of the body went out (the next is a continuation).
    framed: bool,
    ended: bool,
    switch_at: Option<Instant>,
    /// When the request was handed to the owner: the relay's deadline counts from there,
    /// however late the task starts.
    started: Instant,
}

impl ExchangeTask {
    pub(crate) fn new(
        state: Arc<State>,
        ctx: Arc<HttpContext>,
        request_id: String,
        head_request: bool,
        route: Route,
    ) -> Self {
        ExchangeTask {
            state,
            ctx,
            request_id,
            head_request,
            route,
            parser: ResponseParser::default(),
            head: None,
            body: Vec::new(),
            stream: None,
            framed: false,
            ended: false,
            switch_at: None,
            started: Instant::now(),
        }
    }

    /// Starts the task on the listener's runtime (from any thread: the owner's is not one
    /// of tokio's), counted while it runs.
    fn spawn(self) {
        let runtime = self.ctx.runtime.clone();
        runtime.spawn(self.run(crate::live::ExchangeCounted::start()));
    }

    /// Runs the exchange to its end: the response out, or given up.
    pub(crate) async fn run(mut self, _counted: crate::live::ExchangeCounted) {
        let deadline = tokio::time::sleep_until(self.started + self.ctx.request_timeout);
        tokio::pin!(deadline);
        let cancel = self.ctx.cancel.clone();
        let outcome = loop {
            if self.state.sent_inline() {
                // The owner sent the response itself, and did what ends the exchange.
                return;
            }
            let step = tokio::select! {
                _ = self.state.notify.notified() => self.on_commands().await,
                _ = crate::listener::session::at_or_never(self.switch_at) => {
                    self.switch_at = None;
                    self.start_streaming().await.err().map(Outcome::Failed)
                }
                _ = &mut deadline, if self.stream.is_none() => Some(Outcome::Overdue(SocketError::coded(
                    format!(
                        "the relay stopped waiting for the response after {} ms",
                        self.ctx.request_timeout.as_millis()
                    ),
                    "ETIMEDOUT",
                ))),
                _ = cancel.cancelled() => Some(Outcome::Failed(SocketError::coded(
                    "the listener closed",
                    "ERR_LISTENER_CLOSED",
                ))),
            };
            if let Some(o) = step {
                break o;
            }
        };
        if matches!(self.route, Route::Control { .. }) {
            // A request from the control channel is over: its id may come again.
            if let Ok(mut ids) = self.ctx.in_flight.lock() {
                ids.remove(&self.request_id);
            }
        }
        match outcome {
            Outcome::Finished => self.state.finish(ExchangeEvent::Finished),
            Outcome::Failed(e) => {
                log::debug!("listener: request {}: {}", self.request_id, e.message);
                match &self.stream {
                    // The sender's response is cut short: the relay drops its connection.
                    Some(s) => {
                        s.send(Command::Terminate);
                    }
                    // Nothing of the response went out (destroyed, unparsable, its
                    // rendezvous refused): the sender hears at once, as Node's own server
                    // drops the connection, rather than at the relay's deadline.
                    None => answer(&self.route, &self.request_id, 500, "Internal Server Error"),
                }
                self.state.finish(ExchangeEvent::Aborted(e));
            }
            Outcome::Overdue(e) => {
                log::debug!("listener: request {}: {}", self.request_id, e.message);
                self.state.finish(ExchangeEvent::Aborted(e));
            }
        }
    }

    /// Handles what the owner asked since the last time.
    async fn on_commands(&mut self) -> Option<Outcome> {
        let commands = self.state.take();
        let mut head_alone = false;
        for c in commands {
            if self.ended {
                continue;
            }
            match c {
                Cmd::Write(data) => match self.on_write(&data).await {
                    Ok(alone) => head_alone = alone,
                    Err(e) => return Some(Outcome::Failed(e)),
                },
                Cmd::End => {
                    let result = self.on_end().await;
                    self.ended = true;
                    return Some(match result {
                        Ok(()) => Outcome::Finished,
                        Err(e) => Outcome::Failed(e),
                    });
                }
                Cmd::Abort => {
                    return Some(Outcome::Failed(SocketError::coded(
                        "the response was destroyed",
                        "ERR_STREAM_DESTROYED",
                    )))
                }
            }
        }
        // `flushHeaders()` (a head written alone) asks for the head to go out now: the body
        // will follow as it comes, over a rendezvous. An owner told to wait has more to
        // write than fits inline: the same.
        if (head_alone || self.state.blocked.load(Ordering::SeqCst)) && self.stream.is_none() {
            if let Err(e) = self.start_streaming().await {
                return Some(Outcome::Failed(e));
            }
        }
        None
    }

    /// Takes bytes of the serialized response. Returns whether they held the head and no
    /// body.
    async fn on_write(&mut self, data: &[u8]) -> Result<bool, SocketError> {
        if self.switch_at.is_none() && self.stream.is_none() {
            self.switch_at = Some(Instant::now() + STREAM_AFTER);
        }
        let mut parts = Vec::new();
        self.parser.feed(data, &mut parts)?;
        let mut body_bytes = 0;
        let mut saw_head = false;
        for part in parts {
            match part {
                Part::Head(h) => {
                    saw_head = true;
                    let stream_now = is_event_stream(&h);
                    self.head = Some(h);
                    if stream_now {
                        self.start_streaming().await?;
                    }
                }
                Part::Body(b) => {
                    body_bytes += b.len();
                    if self.take_body(b)? {
                        self.start_streaming().await?;
                    }
                }
            }
        }
        // What was not body (the head, chunk sizes) leaves with the body around it.
        self.state.sent(data.len() - body_bytes);
        Ok(saw_head && body_bytes == 0)
    }

    /// Adds body bytes: sent when streaming, else buffered while the response may still go
    /// inline. Returns whether the buffer outgrew the control channel (stream it now).
    fn take_body(&mut self, b: Vec<u8>) -> Result<bool, SocketError> {
        if !self.has_body() {
            // Node writes none for HEAD, 204 and 304; anything else would break the sender.
            self.state.sent(b.len());
            return Ok(false);
        }
        if let Some(s) = &self.stream {
            let opcode = if self.framed {
                OP_CONTINUATION
            } else {
                OP_BINARY
            };
            self.framed = true;
            if !s.send(frame(opcode, false, b)) {
                return Err(gone());
            }
            return Ok(false);
        }
        self.body.extend_from_slice(&b);
        Ok(self.body.len() > INLINE_BODY_MAX)
    }

    fn has_body(&self) -> bool {
        self.head
            .as_ref()
            .is_none_or(|h| may_have_body(self.head_request, h.status))
    }

    /// The owner ended the response: sends what is left. A response still whole goes in
    /// one piece, inline on the control channel (or on the request's rendezvous); one whose
    /// head is too large for the control channel is streamed after all.
    async fn on_end(&mut self) -> Result<(), SocketError> {
        let Some(head) = self.head.as_ref() else {
            return Err(SocketError::coded(
                "the response ended without a head",
                "ERR_HTTP_INVALID_RESPONSE",
            ));
        };
        let with_body = may_have_body(self.head_request, head.status);
        if self.stream.is_none() {
            let has_body = with_body && !self.body.is_empty();
            let sent = self.body.len();
            let ok = match &self.route {
                // A channel being closed (the listener closes or reopens it) takes no more
                // frames: over the request's rendezvous, as a head too large for it.
                Route::Control { channel, .. } if channel.closing() => None,
                Route::Control { channel, .. } => {
                    let body = has_body.then_some(&self.body[..]);
                    inline_batch(&self.request_id, head, body).map(|c| channel.send(c))
                }
                Route::Rendezvous(socket) => {
                    let message = response_message(&self.request_id, head, has_body);
                    let mut ok = socket.send(frame(OP_TEXT, true, message.into_bytes()));
                    if has_body {
                        ok &= socket.send(frame(OP_BINARY, true, std::mem::take(&mut self.body)));
                    }
                    Some(ok)
                }
            };
            match ok {
                Some(ok) => {
                    self.state.sent(sent);
                    return if ok { Ok(()) } else { Err(gone()) };
                }
                // A head too large for the control channel: over a rendezvous after all.
                None => self.start_streaming().await?,
            }
        }
        if let Some(s) = &self.stream {
            if with_body {
                let opcode = if self.framed {
                    OP_CONTINUATION
                } else {
                    OP_BINARY
                };
                if !s.send(frame(opcode, true, Vec::new())) {
                    return Err(gone());
                }
            }
        }
        Ok(())
    }

    /// Sends the head now and the body as it comes: over the request's rendezvous, which
    /// the listener opens if the request came on the control channel.
    async fn start_streaming(&mut self) -> Result<(), SocketError> {
        if self.stream.is_some() || self.ended {
            return Ok(());
        }
        let Some(head) = self.head.as_ref() else {
            // Nothing to send yet: the head decides (a body written before any head is not
            // something Node does).
            return Ok(());
        };
        let has_body = may_have_body(self.head_request, head.status);
        let socket = match &self.route {
            Route::Rendezvous(s) => s.clone(),
            Route::Control { address, .. } => {
                let (socket, events) = rendezvous::open(&self.ctx, address).await?;
                // The rendezvous serves this response, then the sender's later requests.
                tokio::spawn(rendezvous::serve(
                    socket.clone(),
                    events,
                    self.ctx.clone(),
                    Some(self.state.clone()),
                ));
                socket
            }
        };
        let message = response_message(&self.request_id, head, has_body);
        if !socket.send(frame(OP_TEXT, true, message.into_bytes())) {
            return Err(gone());
        }
        self.stream = Some(socket);
        self.switch_at = None;
        let body = std::mem::take(&mut self.body);
        if !body.is_empty() {
            self.take_body(body)?;
        }
        Ok(())
    }
}

/// The connection the response was going to is gone.
fn gone() -> SocketError {
    SocketError::coded(
        "the connection to the relay was lost before the response went out",
        "ECONNRESET",
    )
}

/// An exchange made ready before its request is handed to the owner (see [`prepare`]).
pub(crate) struct Prepared {
    /// The task, when it starts at once ([`Prepared::start`]); `None` when it waits.
    task: Option<ExchangeTask>,
}

impl Prepared {
    /// The owner took the request: its events go to `sink`, and a task that starts at once
    /// starts.
    pub(crate) fn start(self, exchange: &Exchange, sink: Arc<dyn ExchangeSink>) {
        exchange.attach(sink);
        if let Some(task) = self.task {
            task.spawn();
        }
    }

    /// The owner declined the request: nothing will start.
    pub(crate) fn drop_unstarted(self, exchange: &Exchange) {
        exchange.state.drop_waiting_task();
    }
}

/// Readies an exchange's task for a request, before the request goes to the owner: the
/// owner may answer on its own thread at once, and whatever it does must find the
/// exchange ready (its inline route, its waiting task).
pub(crate) fn prepare(
    exchange: &Exchange,
    ctx: &Arc<HttpContext>,
    request_id: String,
    head_request: bool,
    route: Route,
) -> Prepared {
    if let Route::Control { channel, .. } = &route {
        let _ = exchange.state.inline.set(Inline {
            channel: channel.clone(),
            request_id: request_id.clone(),
            head_request,
            ctx: Arc::downgrade(ctx),
        });
    }
    let lazy = matches!(route, Route::Control { .. })
        && ctx.request_timeout >= LAZY_MIN_TIMEOUT
        && !ctx.cancel.is_cancelled();
    let task = ExchangeTask::new(
        exchange.state.clone(),
        ctx.clone(),
        request_id,
        head_request,
        route,
    );
    if !lazy {
        return Prepared { task: Some(task) };
    }
    // Most requests on the control channel are answered whole, at once, by the owner
    // itself (`Exchange::end_with`): their task would start, wait and be told to end, a
    // wake-up of a tokio thread and a timer for nothing. It starts when the owner asks
    // something of it, or when the sweep finds it still waiting.
    if let Ok(mut w) = exchange.state.waiting.lock() {
        *w = Some(task);
    }
    ctx.waiting_task(exchange.state.clone());
    Prepared { task: None }
}

/// A listener whose relay waits less than this for a response starts every exchange's
/// task at once, so that the sweep (every [`super::rendezvous::END_INLINE_EVERY`], which
/// starts those handed over at least that long before) never starts one near its deadline.
const LAZY_MIN_TIMEOUT: Duration = Duration::from_secs(3);

/// Answers a request with a status of the listener's own (no owner, headers too large),
/// where it came from.
pub(crate) fn answer(route: &Route, id: &str, status: u16, reason: &str) {
    let message = status_message(id, status, reason);
    let socket = match route {
        Route::Control { channel, .. } => channel,
        Route::Rendezvous(s) => s,
    };
    socket.send(frame(OP_TEXT, true, message.into_bytes()));
}
