//! The listener's main loop: connect, serve the control channel, reconnect.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::listener::spare::SparePool;
use crate::listener::{
    request, AcceptRequest, Backoff, ListenerCommand, ListenerEvent, ListenerOptions, ListenerSink,
};
use crate::sas;
use crate::socket::handshake::Endpoint;
use crate::socket::CONTROL_EVENT_COST;
use crate::socket::{
    self, frame, Command, ConnectOptions, Event, EventSink, Handle, SocketError, SocketOptions,
};

/// Time allowed for the closing handshake of the control channel.
const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Largest control message accepted.
const MAX_CONTROL_MESSAGE: u64 = 1024 * 1024;

/// Forwards the control channel's socket events into the loop.
struct ChannelSink(Mutex<mpsc::UnboundedSender<Event>>);

impl EventSink for ChannelSink {
    fn push(&self, event: Event) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(event);
        }
    }
}

fn error(message: impl Into<String>, code: &'static str) -> SocketError {
    SocketError::coded(message, code)
}

/// Errors after which reconnecting cannot help: the entity is gone, or a fixed token is
/// refused.
fn is_final(e: &SocketError, static_token: bool) -> bool {
    match e.status_code {
        Some(404) => true,
        Some(401) | Some(403) => static_token,
        _ => false,
    }
}

enum TokenOutcome {
    Token(String),
    Failed(String),
    Close,
}

/// Asks the owner for a token and waits for it.
async fn request_token(
    opts: &ListenerOptions,
    sink: &dyn ListenerSink,
    commands: &mut mpsc::UnboundedReceiver<ListenerCommand>,
    next_request: &mut u64,
) -> TokenOutcome {
    *next_request += 1;
    let request = *next_request;
    sink.push(ListenerEvent::NeedToken {
        request,
        renewal: false,
    });
    let wait = async {
        loop {
            match commands.recv().await {
                None | Some(ListenerCommand::Close) => return TokenOutcome::Close,
                Some(ListenerCommand::Token { request: r, result }) if r == request => {
                    return match result {
                        Ok(t) if !t.is_empty() => TokenOutcome::Token(t),
                        Ok(_) => TokenOutcome::Failed(
                            "the token provider returned an empty token".into(),
                        ),
                        Err(m) => TokenOutcome::Failed(m),
                    }
                }
                Some(_) => continue,
            }
        }
    };
    match tokio::time::timeout(opts.token_timeout, wait).await {
        Ok(o) => o,
        Err(_) => TokenOutcome::Failed(format!(
            "the token provider did not answer within {} ms",
            opts.token_timeout.as_millis()
        )),
    }
}

/// Waits out `delay` unless a close is requested; true when it was.
async fn pause_or_close(
    delay: Duration,
    commands: &mut mpsc::UnboundedReceiver<ListenerCommand>,
) -> bool {
    if delay.is_zero() {
        return false;
    }
    let sleep = tokio::time::sleep(delay);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return false,
            c = commands.recv() => match c {
                None | Some(ListenerCommand::Close) => return true,
                Some(_) => continue,
            },
        }
    }
}

enum Opening {
    Open,
    Failed(SocketError),
    Close,
}

/// Waits for the control channel's handshake.
async fn wait_open(
    events: &mut mpsc::UnboundedReceiver<Event>,
    commands: &mut mpsc::UnboundedReceiver<ListenerCommand>,
    handle: &Handle,
) -> Opening {
    let mut failure = None;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Some(Event::Open { .. }) => return Opening::Open,
                Some(Event::Error(e)) => failure = Some(e),
                Some(Event::Closed { .. }) | None => {
                    return Opening::Failed(failure.unwrap_or_else(|| error("the control channel closed during its handshake", "ECONNRESET")))
                }
                Some(_) => {}
            },
            c = commands.recv() => match c {
                None | Some(ListenerCommand::Close) => {
                    handle.send(Command::Terminate);
                    return Opening::Close;
                }
                Some(_) => {}
            },
        }
    }
}

/// Completes at `at`, or never.
async fn at_or_never(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The shortest wait before a renewal or a renewal retry: a token that already looks expired
/// (a cached one, or clock skew) must not make the listener renew in a loop.
const MIN_RENEW_DELAY: Duration = Duration::from_secs(1);

/// How long the channel must have been up for its loss to start the reconnect schedule over
/// (first retry at once); a channel that drops sooner keeps backing off.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// When to renew a token expiring at `expires_at` (Unix seconds).
fn renewal_time(opts: &ListenerOptions, expires_at: u64) -> Instant {
    let left_ms = (expires_at as f64 * 1000.0 - sas::now_ms()).max(0.0);
    let wait = Duration::from_millis((left_ms * opts.renew_at.clamp(0.0, 1.0)) as u64);
    Instant::now() + wait.max(MIN_RENEW_DELAY)
}

/// When to try a failed renewal again: soon, but well before the token expires.
fn retry_time(expires_at: Option<u64>) -> Instant {
    let left_ms = expires_at.map_or(0.0, |e| (e as f64 * 1000.0 - sas::now_ms()).max(0.0));
    let wait = Duration::from_millis((left_ms / 4.0).clamp(0.0, 5000.0) as u64);
    Instant::now() + wait.max(MIN_RENEW_DELAY)
}

enum End {
    Lost(SocketError),
    Closed,
}

/// The owner's side of the loop: where events go, whether accepts may be made here, the
/// spare connection for them, and those still in their handshake.
struct Owner<'a> {
    sink: &'a dyn ListenerSink,
    auto_accept: &'a AtomicBool,
    spares: Option<&'a Arc<SparePool>>,
    accepting: &'a Arc<InFlight>,
}

/// Accept handshakes the listener started by itself and that are not over yet: the
/// listener's close waits for them, so that the owner hears of every connection it
/// accepted before it hears that the listener is closed.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    fn start(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn done(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.idle.notify_waiters();
        }
    }

    /// Waits until none is left, at most `limit`.
    async fn settled(&self, limit: Duration) {
        let wait = async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.count.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        };
        let _ = tokio::time::timeout(limit, wait).await;
    }
}

/// Runs the open control channel until it is lost or closed.
async fn serve(
    opts: &ListenerOptions,
    owner: &Owner<'_>,
    handle: &Handle,
    events: &mut mpsc::UnboundedReceiver<Event>,
    commands: &mut mpsc::UnboundedReceiver<ListenerCommand>,
    token: &str,
    next_request: &mut u64,
) -> End {
    let sink = owner.sink;
    let mut expires = sas::parse_token(token).ok().map(|p| p.expires_at);
    let mut renew_at = expires.map(|e| renewal_time(opts, e));
    let mut next_ping = opts.keep_alive.map(|k| Instant::now() + k);
    let mut pong_deadline: Option<Instant> = None;
    let mut pending_renewal: Option<u64> = None;
    let mut renewal_deadline: Option<Instant> = None;
    let mut last_error: Option<SocketError> = None;
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                None => return End::Lost(error("the control channel ended", "ECONNRESET")),
                // The loop handles what it reads at once: count it as consumed, or the socket
                // would stop reading once 16 MiB had passed.
                Some(Event::Message { binary: false, frames }) => {
                    handle.shared.consumed(frames.iter().map(Vec::len).sum());
                    if let Some(text) = frames.first().and_then(|f| std::str::from_utf8(f).ok()) {
                        on_text(text, opts, owner, handle);
                    }
                }
                Some(Event::Message { binary: true, frames }) => {
                    handle.shared.consumed(frames.iter().map(Vec::len).sum());
                    log::debug!("listener: ignoring a binary frame on the control channel");
                }
                Some(Event::Pong(p)) => {
                    handle.shared.consumed(p.len() + CONTROL_EVENT_COST);
                    pong_deadline = None;
                }
                Some(Event::Ping(p)) => handle.shared.consumed(p.len() + CONTROL_EVENT_COST),
                Some(Event::Error(e)) => last_error = Some(e),
                Some(Event::Closed { code, reason, .. }) => {
                    let reason = String::from_utf8_lossy(&reason).into_owned();
                    let e = last_error.take().unwrap_or_else(|| {
                        error(
                            format!("the service closed the control channel: {code}{}{reason}", if reason.is_empty() { "" } else { " " }),
                            "ERR_CONTROL_CHANNEL_CLOSED",
                        )
                    });
                    return End::Lost(e);
                }
                Some(_) => {}
            },
            _ = at_or_never(next_ping) => {
                handle.send(Command::Frame { opcode: frame::OP_PING, fin: true, payload: Vec::new(), accounted: 0, ack: 0 });
                if pong_deadline.is_none() {
                    pong_deadline = Some(Instant::now() + opts.pong_timeout);
                }
                next_ping = opts.keep_alive.map(|k| Instant::now() + k);
            }
            _ = at_or_never(pong_deadline) => {
                handle.send(Command::Terminate);
                let _ = tokio::time::timeout(CLOSE_WAIT, async {
                    while let Some(ev) = events.recv().await {
                        if matches!(ev, Event::Closed { .. }) { break; }
                    }
                }).await;
                return End::Lost(error(
                    format!("the control channel did not answer a ping within {} ms", opts.pong_timeout.as_millis()),
                    "ETIMEDOUT",
                ));
            }
            _ = at_or_never(renew_at) => {
                renew_at = None;
                if opts.static_token {
                    if let Some(e) = expires {
                        sink.push(ListenerEvent::TokenExpiring { expires_at: e });
                    }
                } else {
                    *next_request += 1;
                    pending_renewal = Some(*next_request);
                    renewal_deadline = Some(Instant::now() + opts.token_timeout);
                    sink.push(ListenerEvent::NeedToken { request: *next_request, renewal: true });
                }
            }
            _ = at_or_never(renewal_deadline) => {
                // The provider never answered: give up on this request and try again.
                renewal_deadline = None;
                pending_renewal = None;
                let message = format!("the token provider did not answer within {} ms", opts.token_timeout.as_millis());
                log::warn!("listener: token renewal failed: {message}");
                sink.push(ListenerEvent::TokenError { message });
                renew_at = Some(retry_time(expires));
            }
            c = commands.recv() => match c {
                None | Some(ListenerCommand::Close) => {
                    handle.send(Command::Close { code: Some(1000), reason: Vec::new() });
                    let _ = tokio::time::timeout(CLOSE_WAIT, async {
                        while let Some(ev) = events.recv().await {
                            if matches!(ev, Event::Closed { .. }) { break; }
                        }
                    }).await;
                    handle.send(Command::Terminate);
                    return End::Closed;
                }
                Some(ListenerCommand::Token { request, result }) if Some(request) == pending_renewal => {
                    pending_renewal = None;
                    renewal_deadline = None;
                    let current = expires;
                    let parsed = result
                        .and_then(|t| {
                            sas::parse_token(&t).map(|p| (t, p.expires_at)).map_err(|e| format!("the token provider returned a malformed token: {e}"))
                        })
                        .and_then(|(t, e)| {
                            if current.is_some_and(|c| e <= c) {
                                Err("the token provider returned a token that does not expire later than the current one".to_owned())
                            } else {
                                Ok((t, e))
                            }
                        });
                    match parsed {
                        Ok((t, e)) => {
                            let message = serde_json::json!({ "renewToken": { "token": t } }).to_string();
                            handle.send(Command::Frame { opcode: frame::OP_TEXT, fin: true, payload: message.into_bytes(), accounted: 0, ack: 0 });
                            expires = Some(e);
                            renew_at = Some(renewal_time(opts, e));
                            log::info!("listener: token renewed (expires at {e})");
                            sink.push(ListenerEvent::Renewed);
                        }
                        Err(message) => {
                            log::warn!("listener: token renewal failed: {message}");
                            sink.push(ListenerEvent::TokenError { message });
                            renew_at = Some(retry_time(expires));
                        }
                    }
                }
                Some(_) => {}
            },
        }
    }
}

/// Whether the sender offered subprotocols (then the owner chooses, as ws's server does).
fn offers_protocol(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
}

/// Accepts a sender here, without the owner's round trip, if the owner takes it; over the
/// spare connection if there is one for this endpoint, and then makes the next spare.
fn accept_here(opts: &ListenerOptions, owner: &Owner<'_>, request: &AcceptRequest) -> bool {
    let socket = Handle::new(&opts.accept_socket);
    let Some(socket_sink) = owner.sink.accepted(request, &socket) else {
        return false;
    };
    let spare = owner
        .spares
        .and_then(|pool| Endpoint::of(&request.address).and_then(|e| pool.take(&e)));
    // Once this handshake is over: if it worked, the next spare is opened (then, not
    // competing with it; and not towards an endpoint that just failed), and the listener's
    // close need not wait for it any more.
    owner.accepting.start();
    let accepting = owner.accepting.clone();
    let refill = owner
        .spares
        .map(|pool| (pool.clone(), request.address.clone(), opts.ca.clone()));
    let then: Box<dyn FnOnce(bool) + Send> = Box::new(move |opened| {
        if let (true, Some((pool, address, ca))) = (opened, refill) {
            pool.refill(&address, &ca);
        }
        accepting.done();
    });
    log::debug!(
        "listener: accepting {} here{}",
        request.id,
        if spare.is_some() {
            " over the spare connection"
        } else {
            ""
        }
    );
    socket.start_then(
        ConnectOptions {
            url: request.address.clone(),
            headers: Vec::new(),
            protocols: Vec::new(),
            handshake_timeout: opts.accept_timeout,
            ca: opts.ca.clone(),
        },
        opts.accept_socket,
        socket_sink,
        spare,
        Some(then),
    );
    true
}

/// Handles a text message from the service: `accept` is accepted here (auto-accept) or goes
/// to the owner, `request` gets a 501 answer (HTTP relaying is not supported), anything else
/// is ignored.
fn on_text(text: &str, opts: &ListenerOptions, owner: &Owner<'_>, handle: &Handle) {
    let sink = owner.sink;
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        log::debug!("listener: ignoring a control message that is not JSON");
        return;
    };
    if let Some(a) = value.get("accept") {
        let (Some(id), Some(address)) = (
            a.get("id").and_then(|v| v.as_str()),
            a.get("address").and_then(|v| v.as_str()),
        ) else {
            log::debug!("listener: ignoring an accept without id or address");
            return;
        };
        let headers = a
            .get("connectHeaders")
            .and_then(|h| h.as_object())
            .map(|h| {
                h.iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            v.as_str()
                                .map(str::to_owned)
                                .unwrap_or_else(|| v.to_string()),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let remote = a.get("remoteEndpoint");
        log::debug!("listener: accept request {id}");
        let request = AcceptRequest {
            id: id.to_owned(),
            url: request::request_url(address, &opts.entity),
            address: address.to_owned(),
            headers,
            remote_address: remote
                .and_then(|r| r.get("address"))
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            remote_port: remote
                .and_then(|r| r.get("port"))
                .and_then(|v| v.as_u64())
                .and_then(|p| u16::try_from(p).ok()),
        };
        if owner.auto_accept.load(Ordering::SeqCst)
            && !offers_protocol(&request.headers)
            && accept_here(opts, owner, &request)
        {
            return;
        }
        sink.push(ListenerEvent::Accept(request));
    } else if let Some(r) = value.get("request") {
        match r.get("id").and_then(|v| v.as_str()) {
            Some(id) => {
                log::debug!("listener: answering an HTTP request with 501");
                let response = serde_json::json!({
                    "response": {
                        "requestId": id,
                        "statusCode": 501,
                        "statusDescription": "Not Implemented",
                        "responseHeaders": {},
                        "body": false
                    }
                })
                .to_string();
                handle.send(Command::Frame {
                    opcode: frame::OP_TEXT,
                    fin: true,
                    payload: response.into_bytes(),
                    accounted: 0,
                    ack: 0,
                });
            }
            None => log::debug!("listener: ignoring a request without id"),
        }
    } else {
        log::debug!("listener: ignoring an unknown control message");
    }
}

/// The listener's life: connect, serve, reconnect, until closed or a final error.
pub(super) async fn run(
    opts: ListenerOptions,
    sink: Arc<dyn ListenerSink>,
    mut commands: mpsc::UnboundedReceiver<ListenerCommand>,
    auto_accept: Arc<AtomicBool>,
) {
    let spares = opts
        .spare_max_age
        .map(|age| SparePool::new(age, opts.accept_timeout));
    let accepting = Arc::new(InFlight::default());
    let mut backoff = Backoff::new(opts.reconnect_delays.clone(), opts.jitter);
    let mut next_request = 0u64;
    let mut cause: Option<SocketError> = None;
    let final_error = loop {
        let delay = if cause.is_none() {
            Duration::ZERO
        } else {
            backoff.next_delay()
        };
        match &cause {
            None => log::info!(
                "listener: connecting to {}",
                crate::redact::redact_secrets(&opts.url)
            ),
            Some(e) => log::info!(
                "listener: reconnecting in {} ms after: {}",
                delay.as_millis(),
                e.message
            ),
        }
        sink.push(ListenerEvent::Connecting {
            error: cause.clone(),
            delay_ms: delay.as_millis() as u64,
        });
        if pause_or_close(delay, &mut commands).await {
            break None;
        }
        let token = match request_token(&opts, &*sink, &mut commands, &mut next_request).await {
            TokenOutcome::Token(t) => t,
            TokenOutcome::Failed(message) => {
                sink.push(ListenerEvent::TokenError {
                    message: message.clone(),
                });
                cause = Some(error(format!("no token: {message}"), "ERR_TOKEN_PROVIDER"));
                continue;
            }
            TokenOutcome::Close => break None,
        };
        let (tx, mut events) = mpsc::unbounded_channel();
        let mut socket_options = SocketOptions::default();
        socket_options.limits.max_payload = MAX_CONTROL_MESSAGE;
        socket_options.close_timeout = CLOSE_WAIT;
        let handle = socket::connect(
            ConnectOptions {
                url: opts.url.clone(),
                headers: vec![("ServiceBusAuthorization".to_owned(), token.clone())],
                protocols: Vec::new(),
                handshake_timeout: opts.handshake_timeout,
                ca: opts.ca.clone(),
            },
            socket_options,
            Arc::new(ChannelSink(Mutex::new(tx))),
        );
        match wait_open(&mut events, &mut commands, &handle).await {
            Opening::Open => {}
            Opening::Failed(e) => {
                if is_final(&e, opts.static_token) {
                    break Some(e);
                }
                cause = Some(e);
                continue;
            }
            Opening::Close => break None,
        }
        let online_at = Instant::now();
        log::info!("listener: online");
        sink.push(ListenerEvent::Online);
        let owner = Owner {
            sink: &*sink,
            auto_accept: &auto_accept,
            spares: spares.as_ref(),
            accepting: &accepting,
        };
        match serve(
            &opts,
            &owner,
            &handle,
            &mut events,
            &mut commands,
            &token,
            &mut next_request,
        )
        .await
        {
            End::Lost(e) => {
                if online_at.elapsed() >= STABLE_AFTER {
                    // It was up long enough: start the schedule over, first retry at once. A
                    // channel the service drops right away keeps backing off instead.
                    backoff.reset();
                }
                log::warn!("listener: offline: {}", e.message);
                sink.push(ListenerEvent::Offline { error: e.clone() });
                cause = Some(e);
            }
            End::Closed => break None,
        }
    };
    if let Some(pool) = &spares {
        pool.close();
    }
    accepting.settled(opts.accept_timeout).await;
    match &final_error {
        Some(e) => log::error!("listener: stopped: {}", e.message),
        None => log::info!("listener: closed"),
    }
    sink.push(ListenerEvent::Closed { error: final_error });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn final_errors() {
        let status = |s| SocketError {
            status_code: Some(s),
            ..error("x", "ERR_UNEXPECTED_RESPONSE")
        };
        assert!(is_final(&status(404), false));
        assert!(!is_final(&status(401), false));
        assert!(is_final(&status(401), true));
        assert!(is_final(&status(403), true));
        assert!(!is_final(&status(500), true));
        assert!(!is_final(&error("refused", "ECONNREFUSED"), true));
    }
}
