//! The listener's main loop: connect, serve the control channel (`session.rs`), reconnect
//! with backoff, until closed or a final error.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::listener::accept::InFlight;
use crate::listener::control::{ControlContext, ControlSink};
use crate::listener::http::{self, HttpContext};
use crate::listener::session::{self, error, End, CLOSE_WAIT};
use crate::listener::spare::SparePool;
use crate::listener::{
    Backoff, ListenerCommand, ListenerEvent, ListenerOptions, ListenerSink, Token,
};
use crate::socket::{Command, ConnectOptions, Event, Handle, SocketError, SocketOptions};

/// Largest control message accepted.
const MAX_CONTROL_MESSAGE: u64 = 1024 * 1024;

/// The control channel's `SocketOptions::sparse_read` (8 KiB for data sockets): the service
/// sends an HTTP request inline as two messages back to back, its head (headers up to 32
/// KiB) and its body (up to 64 KiB), which the JS thread goes on reading.
const CONTROL_SPARSE_READ: usize = 128 * 1024;

/// Errors after which reconnecting cannot help: the entity is gone, or a token that cannot
/// change (a fixed one, or one from a key) is refused. Only the relay's answers count: a
/// proxy's refusal (which has a status too) may pass.
fn is_final(e: &SocketError, auth_final: bool) -> bool {
    if e.code != Some("ERR_UNEXPECTED_RESPONSE") {
        return false;
    }
    match e.status_code {
        Some(404) => true,
        Some(401) | Some(403) => auth_final,
        _ => false,
    }
}

enum TokenOutcome {
    Token(Token),
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
                        Ok(t) if !t.value.is_empty() => TokenOutcome::Token(t),
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

/// How long the channel must have been up for its loss to start the reconnect schedule over
/// (the first retry within a zero step's spread, see `Backoff`); a channel that drops
/// sooner keeps backing off.
const STABLE_AFTER: Duration = Duration::from_secs(10);

/// What the owner turns on and off while the listener runs (see [`super::ListenerHandle`]).
pub(super) struct Switches {
    /// Accept senders here.
    pub auto_accept: Arc<AtomicBool>,
    /// Hand HTTP requests to the owner.
    pub http: Arc<AtomicBool>,
    /// Copy the service's control messages to the owner.
    pub control_tap: Arc<AtomicBool>,
}

/// The listener's life: connect, serve, reconnect, until closed or a final error.
pub(super) async fn run(
    opts: ListenerOptions,
    sink: Arc<dyn ListenerSink>,
    mut commands: mpsc::UnboundedReceiver<ListenerCommand>,
    switches: Switches,
) {
    let http = Arc::new(HttpContext {
        sink: sink.clone(),
        entity: opts.entity.clone(),
        ca: opts.ca.clone(),
        proxy: opts.proxy.clone(),
        connect_timeout: opts.accept_timeout,
        request_timeout: opts.request_timeout,
        idle_timeout: opts.rendezvous_idle,
        enabled: switches.http,
        cancel: tokio_util::sync::CancellationToken::new(),
        in_flight: Mutex::new(HashSet::new()),
        ended_inline: Mutex::new(Vec::new()),
        waiting: Mutex::new(VecDeque::new()),
        runtime: tokio::runtime::Handle::current(),
    });
    tokio::spawn(http::end_inline_tasks_until_closed(http.clone()));
    let spares = opts
        .spare_max_age
        .map(|age| SparePool::new(age, opts.accept_timeout));
    let control = Arc::new(ControlContext {
        opts: opts.clone(),
        sink: sink.clone(),
        auto_accept: switches.auto_accept,
        spares,
        accepting: Arc::new(InFlight::default()),
        http,
        control_tap: switches.control_tap,
    });
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
        socket_options.inline_reads = opts.inline_reads;
        // A request's head and body (up to 96 KiB inline) stay with the JS thread. Dense
        // traffic gives reading back anyway (see `control.rs`).
        socket_options.sparse_read = CONTROL_SPARSE_READ;
        let handle = Handle::new(&socket_options);
        let channel_sink = Arc::new(ControlSink::new(control.clone(), handle.clone(), tx));
        handle.start(
            ConnectOptions {
                url: opts.url.clone(),
                headers: vec![("ServiceBusAuthorization".to_owned(), token.value.clone())],
                protocols: Vec::new(),
                handshake_timeout: opts.handshake_timeout,
                deflate: None,
                ca: opts.ca.clone(),
                proxy: opts.proxy.clone(),
            },
            socket_options,
            channel_sink.clone(),
        );
        let opening = wait_open(&mut events, &mut commands, &handle).await;
        if !matches!(opening, Opening::Open) {
            channel_sink.retire();
        }
        match opening {
            Opening::Open => {}
            Opening::Failed(e) => {
                if is_final(&e, opts.auth_final) {
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
        // The service's messages reach the owner after `online`.
        channel_sink.serve();
        let owner = control.owner();
        let end = session::serve(
            &opts,
            &owner,
            &channel_sink,
            &mut events,
            &mut commands,
            &token,
            &mut next_request,
        )
        .await;
        channel_sink.retire();
        match end {
            End::Reopen(e) => {
                // Asked for: a fresh channel at once, whatever the schedule was.
                backoff.reset();
                log::info!("listener: reopening the control channel, as asked");
                sink.push(ListenerEvent::Offline { error: e });
                // Not a failure: the next attempt carries no error (hyco-ws reported none
                // for its controlChannel.close() either).
                cause = None;
            }
            End::Lost(e) => {
                if online_at.elapsed() >= STABLE_AFTER {
                    // It was up long enough: start the schedule over, first retry within 0-200
                    // ms. A channel the service drops right away keeps backing off instead.
                    backoff.reset();
                }
                log::warn!("listener: offline: {}", e.message);
                sink.push(ListenerEvent::Offline { error: e.clone() });
                cause = Some(e);
            }
            End::Closed => break None,
        }
    };
    if let Some(pool) = &control.spares {
        pool.close();
    }
    // Requests in progress cannot be answered once the listener is gone.
    control.http.cancel.cancel();
    control.accepting.settled(opts.accept_timeout).await;
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
        let proxy = |s, code| SocketError {
            status_code: Some(s),
            ..error("proxy", code)
        };
        assert!(!is_final(&proxy(404, "ERR_PROXY_REFUSED"), true));
        assert!(!is_final(&proxy(403, "ERR_PROXY_REFUSED"), true));
        assert!(!is_final(&proxy(407, "ERR_PROXY_AUTH"), true));
    }
}
