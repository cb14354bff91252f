//! One open control channel, from its open to its loss or close: the keep-alive pings, the
//! token's renewal, the socket's close, and the owner's commands, each a named step of
//! [`Session`]. What the service sends is handled where it is read (`control.rs`).

use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::listener::accept::Owner;
use crate::listener::control::ControlSink;
use crate::listener::{ListenerCommand, ListenerEvent, ListenerOptions, Token};
use crate::sas;
use crate::socket::{frame, Command, Event, Handle, SocketError, CONTROL_EVENT_COST};

/// Time allowed for the closing handshake of the control channel.
pub(super) const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The shortest wait before a renewal or a renewal retry: a token that already looks expired
/// (a cached one, or clock skew) must not make the listener renew in a loop.
const MIN_RENEW_DELAY: Duration = Duration::from_secs(1);

/// How a session ended.
pub(super) enum End {
    /// The channel was lost: reconnect.
    Lost(SocketError),
    /// The owner asked for a fresh channel ([`ListenerCommand::Reconnect`]): reconnect at
    /// once.
    Reopen(SocketError),
    /// The owner closed the listener.
    Closed,
}

/// A failure with a message and a code.
pub(super) fn error(message: impl Into<String>, code: &'static str) -> SocketError {
    SocketError::coded(message, code)
}

/// Completes at `at`, or never.
pub(super) async fn at_or_never(at: Option<Instant>) {
    match at {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// The instant of Unix time `at_ms`, seen from now (at least [`MIN_RENEW_DELAY`] away).
fn instant_of(at_ms: f64) -> Instant {
    // A time centuries away would overflow `Instant`: a year is as good as never.
    let wait_ms = (at_ms - sas::now_ms()).clamp(0.0, 365.0 * 86_400_000.0);
    Instant::now() + Duration::from_millis(wait_ms as u64).max(MIN_RENEW_DELAY)
}

/// While the current token has more than this left, a renewal that gives back a token that
/// expires no later (a credential's cached one) is asked for again quietly (see
/// `renewal_answered`); closer to the expiry it is a failure, with a warning.
const QUIET_WHILE_MS: f64 = 120_000.0;

/// Longest wait between renewal retries once they back off (see [`retry_time`]).
const MAX_RETRY_DELAY: Duration = Duration::from_secs(60);

/// When to renew `token`: at `renew_at` (80 %) of its remaining life, or when its provider
/// asked (`refreshAfterTimestamp`) if that is earlier (a provider's request after the
/// token's expiry, or at it, would leave the channel with an expired token); `None` when
/// neither is known. A request for a renewal within [`MIN_RENEW_DELAY`] (or in the past:
/// typically seconds where milliseconds are meant) is not followed: each fresh token would
/// be renewed a second later, and on and on.
fn renewal_time(opts: &ListenerOptions, token: &Token) -> Option<Instant> {
    let now = sas::now_ms();
    let by_life = token
        .expiry_ms()
        .map(|expires| now + (expires - now).max(0.0) * opts.renew_at.clamp(0.0, 1.0));
    let min_ms = MIN_RENEW_DELAY.as_millis() as f64;
    let refresh = token.refresh_ms().filter(|r| *r > now + min_ms);
    let at = match (refresh, by_life) {
        (Some(refresh), Some(life)) => refresh.min(life),
        (Some(at), None) | (None, Some(at)) => at,
        (None, None) => return None,
    };
    Some(instant_of(at))
}

/// When to try a failed renewal again, after `failures` failures in a row: while the
/// current token lives, soon but well before it expires (a quarter of its life left, from
/// 1 s to 5 s); once it has expired (or its expiry is unknown), from 1 s, doubling with
/// each failure up to [`MAX_RETRY_DELAY`], so that a provider that keeps failing is not
/// called every second.
fn retry_time(expires_ms: Option<f64>, failures: u32) -> Instant {
    let left_ms = expires_ms.map_or(0.0, |e| (e - sas::now_ms()).max(0.0));
    let wait = if left_ms > 0.0 {
        Duration::from_millis((left_ms / 4.0).min(5000.0) as u64).max(MIN_RENEW_DELAY)
    } else {
        MIN_RENEW_DELAY
            .saturating_mul(1 << failures.saturating_sub(1).min(6))
            .min(MAX_RETRY_DELAY)
    };
    Instant::now() + wait
}

/// Sends a text message on the control channel.
pub(super) fn send_text(handle: &Handle, text: String) {
    handle.send(Command::Frame {
        opcode: frame::OP_TEXT,
        fin: true,
        payload: text.into_bytes(),
        compress: false,
        accounted: 0,
        ack: 0,
    });
}

/// The open channel's state between its steps.
struct Session<'a> {
    opts: &'a ListenerOptions,
    owner: &'a Owner<'a>,
    handle: &'a Handle,
    /// Where the service's messages are handled (retired as the session ends).
    control: &'a ControlSink,
    /// The current token's expiry, Unix milliseconds, when known.
    expires: Option<f64>,
    /// When to renew (or, for a fixed token, to warn of its expiry).
    renew_at: Option<Instant>,
    next_ping: Option<Instant>,
    pong_deadline: Option<Instant>,
    /// The request number of the renewal token asked for, and how long the owner has.
    pending_renewal: Option<u64>,
    /// Renewals that failed in a row (see [`retry_time`]).
    renew_failures: u32,
    renewal_deadline: Option<Instant>,
    next_request: &'a mut u64,
    /// The socket's error, reported with its close.
    last_error: Option<SocketError>,
}

impl<'a> Session<'a> {
    fn new(
        opts: &'a ListenerOptions,
        owner: &'a Owner<'a>,
        control: &'a ControlSink,
        token: &Token,
        next_request: &'a mut u64,
    ) -> Self {
        Session {
            opts,
            owner,
            handle: control.channel(),
            control,
            expires: token.expiry_ms(),
            renew_at: renewal_time(opts, token),
            next_ping: opts.keep_alive.map(|k| Instant::now() + k),
            pong_deadline: None,
            pending_renewal: None,
            renew_failures: 0,
            renewal_deadline: None,
            next_request,
            last_error: None,
        }
    }

    /// An event of the control channel's socket, other than a message (the service's
    /// messages are handled where they are read, see `control.rs`). The session handles
    /// what it reads at once, so it counts it as consumed.
    fn on_socket_event(&mut self, ev: Option<Event>) -> Option<End> {
        let shared = &self.handle.shared;
        match ev {
            None => return Some(End::Lost(error("the control channel ended", "ECONNRESET"))),
            Some(Event::Pong(p)) => {
                shared.consumed(p.len() + CONTROL_EVENT_COST);
                self.pong_deadline = None;
                self.handle.keep_reading(false);
            }
            Some(Event::Ping(p)) => shared.consumed(p.len() + CONTROL_EVENT_COST),
            Some(Event::Error(e)) => self.last_error = Some(e),
            Some(Event::Closed { code, reason, .. }) => {
                let reason = String::from_utf8_lossy(&reason).into_owned();
                let e = self.last_error.take().unwrap_or_else(|| {
                    let sep = if reason.is_empty() { "" } else { " " };
                    error(
                        format!("the service closed the control channel: {code}{sep}{reason}"),
                        "ERR_CONTROL_CHANNEL_CLOSED",
                    )
                });
                return Some(End::Lost(e));
            }
            Some(_) => {}
        }
        None
    }

    /// Time for a keep-alive ping; its pong is due within `pong_timeout`.
    fn ping(&mut self) {
        // The pong must be read even if the owner's thread, which may be reading the
        // channel inline, is busy for longer than the pong may take: the task reads until
        // it comes.
        self.handle.keep_reading(true);
        self.handle.send(Command::empty_ping());
        if self.pong_deadline.is_none() {
            self.pong_deadline = Some(Instant::now() + self.opts.pong_timeout);
        }
        self.next_ping = self.opts.keep_alive.map(|k| Instant::now() + k);
    }

    /// A ping went unanswered: the path is dead, drop the channel.
    async fn pong_overdue(&mut self, events: &mut mpsc::UnboundedReceiver<Event>) -> End {
        self.control.retire();
        self.handle.send(Command::Terminate);
        wait_closed(events).await;
        End::Lost(error(
            format!(
                "the control channel did not answer a ping within {} ms",
                self.opts.pong_timeout.as_millis()
            ),
            "ETIMEDOUT",
        ))
    }

    /// Time to renew: ask the owner for a token (or warn that a fixed one will expire).
    fn renewal_due(&mut self) {
        self.renew_at = None;
        let sink = self.owner.sink;
        if self.opts.static_token {
            if let Some(e) = self.expires {
                sink.push(ListenerEvent::TokenExpiring {
                    expires_at: (e / 1000.0) as u64,
                });
            }
            return;
        }
        *self.next_request += 1;
        self.pending_renewal = Some(*self.next_request);
        self.renewal_deadline = Some(Instant::now() + self.opts.token_timeout);
        sink.push(ListenerEvent::NeedToken {
            request: *self.next_request,
            renewal: true,
        });
    }

    /// The provider never answered: give up on this request and try again.
    fn renewal_overdue(&mut self) {
        self.renewal_deadline = None;
        self.pending_renewal = None;
        let message = format!(
            "the token provider did not answer within {} ms",
            self.opts.token_timeout.as_millis()
        );
        self.renewal_failed(message);
    }

    fn renewal_failed(&mut self, message: String) {
        log::warn!("listener: token renewal failed: {message}");
        self.owner.sink.push(ListenerEvent::TokenError { message });
        // Counted once the current token has expired (see `retry_time`): failures while it
        // lived do not lengthen the first retries after.
        self.renew_failures = if self.expires.is_some_and(|e| e > sas::now_ms()) {
            0
        } else {
            self.renew_failures.saturating_add(1)
        };
        self.renew_at = Some(retry_time(self.expires, self.renew_failures));
    }

    /// The owner's answer to a renewal: send it to the service if it is a token that
    /// expires later than the current one.
    fn renewal_answered(&mut self, result: Result<Token, String>) {
        self.pending_renewal = None;
        self.renewal_deadline = None;
        let current = self.expires;
        let now = sas::now_ms();
        // A credential's cache (MSAL's, the `az` CLI's) gives its token back until a few
        // minutes before it expires: not a failure while the current token has time left.
        // Asked again later, quietly.
        // The returned token's expiry, read once (parsing a SAS or a JWT).
        let expiry = result.as_ref().ok().and_then(Token::expiry_ms);
        let cached = expiry.is_some_and(|e| e > now && current.is_some_and(|c| e <= c));
        let left_ms = current.map_or(0.0, |c| c - now);
        if cached && left_ms > QUIET_WHILE_MS {
            log::debug!("listener: the token provider gave back a token that does not expire later (a cached one): asking again later");
            // When the credential said it refreshes (not past the quiet time), else every
            // quarter of the time left, at most a minute.
            let refresh = result.as_ref().ok().and_then(Token::refresh_ms);
            let wait_ms = match refresh {
                Some(r) if r > now => (r - now).min(left_ms - QUIET_WHILE_MS),
                _ => (left_ms / 4.0).min(60_000.0),
            };
            let wait = Duration::from_millis(wait_ms as u64);
            self.renew_at = Some(Instant::now() + wait.max(MIN_RENEW_DELAY));
            return;
        }
        let checked = result.and_then(|t| match expiry {
            None if t.value.is_empty() => Err("the token provider returned an empty token".to_owned()),
            None => Err("the token provider returned a token whose expiry is unknown (neither SAS, nor a JWT, nor with expiresOnTimestamp)".to_owned()),
            // Expired as it comes: most likely `expiresOnTimestamp` in seconds, not
            // milliseconds (renewing it would renew again at once, and on and on).
            Some(e) if e <= now => Err(format!(
                "the token provider returned a token that has already expired (at {} s Unix time; {})",
                (e / 1000.0).floor(),
                if t.expires_at_ms.is_some() {
                    "expiresOnTimestamp must be an absolute Unix time in milliseconds, not a lifetime"
                } else {
                    "by the token's own expiry: is this machine's clock right?"
                }
            )),
            Some(e) if current.is_some_and(|c| e <= c) => Err(
                "the token provider returned a token that does not expire later than the current one"
                    .to_owned(),
            ),
            Some(e) => Ok((t, e)),
        });
        match checked {
            Ok((t, e)) => {
                send_text(
                    self.handle,
                    serde_json::json!({ "renewToken": { "token": t.value } }).to_string(),
                );
                self.expires = Some(e);
                self.renew_failures = 0;
                self.renew_at = renewal_time(self.opts, &t);
                log::info!(
                    "listener: token renewed (expires at {} s)",
                    (e / 1000.0) as u64
                );
                self.owner.sink.push(ListenerEvent::Renewed);
            }
            Err(message) => self.renewal_failed(message),
        }
    }

    /// The owner closes the listener: close the channel (1000) and wait for its end.
    async fn close(&mut self, events: &mut mpsc::UnboundedReceiver<Event>) -> End {
        // Accepts and requests the service sent before it sees our close frame still reach
        // the owner, which refuses them at once (503) rather than leave their senders
        // waiting for the service's timeout.
        self.control.wind_down();
        self.handle.send(Command::Close {
            code: Some(1000),
            reason: Vec::new(),
        });
        wait_closed(events).await;
        self.handle.send(Command::Terminate);
        End::Closed
    }

    /// The owner wants a fresh channel: close this one (1000) and say so.
    async fn reopen(&mut self, events: &mut mpsc::UnboundedReceiver<Event>) -> End {
        // Accepts and requests the service sent before it sees our close frame are served
        // as any: their addresses do not depend on this channel.
        self.control.wind_down();
        self.handle.send(Command::Close {
            code: Some(1000),
            reason: Vec::new(),
        });
        wait_closed(events).await;
        self.handle.send(Command::Terminate);
        End::Reopen(error(
            "the control channel was closed by its owner (controlChannel.close())",
            // Its own code: JavaScript tells a reopen it asked for from a loss by it.
            "ERR_CONTROL_CHANNEL_REOPENED",
        ))
    }
}

/// Waits (at most [`CLOSE_WAIT`]) for the channel's socket to report its close.
async fn wait_closed(events: &mut mpsc::UnboundedReceiver<Event>) {
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while let Some(ev) = events.recv().await {
            if matches!(ev, Event::Closed { .. }) {
                break;
            }
        }
    })
    .await;
}

/// Runs the open control channel until it is lost or closed.
pub(super) async fn serve(
    opts: &ListenerOptions,
    owner: &Owner<'_>,
    control: &ControlSink,
    events: &mut mpsc::UnboundedReceiver<Event>,
    commands: &mut mpsc::UnboundedReceiver<ListenerCommand>,
    token: &Token,
    next_request: &mut u64,
) -> End {
    let mut s = Session::new(opts, owner, control, token, next_request);
    loop {
        tokio::select! {
            ev = events.recv() => {
                if let Some(end) = s.on_socket_event(ev) {
                    return end;
                }
            }
            _ = at_or_never(s.next_ping) => s.ping(),
            _ = at_or_never(s.pong_deadline) => return s.pong_overdue(events).await,
            _ = at_or_never(s.renew_at) => s.renewal_due(),
            _ = at_or_never(s.renewal_deadline) => s.renewal_overdue(),
            c = commands.recv() => match c {
                None | Some(ListenerCommand::Close) => return s.close(events).await,
                Some(ListenerCommand::Reconnect) => return s.reopen(events).await,
                Some(ListenerCommand::Token { request, result }) if Some(request) == s.pending_renewal => {
                    s.renewal_answered(result);
                }
                Some(_) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Seconds from now until `at` (rounded).
    fn secs_until(at: Instant) -> u64 {
        (at - Instant::now()).as_secs_f64().round() as u64
    }

    fn token(expires_in_s: Option<f64>, refresh_in_s: Option<f64>) -> Token {
        let now = sas::now_ms();
        Token {
            value: "opaque".to_owned(),
            expires_at_ms: expires_in_s.map(|s| now + s * 1000.0),
            refresh_at_ms: refresh_in_s.map(|s| now + s * 1000.0),
        }
    }

    #[test]
    fn a_token_is_renewed_at_80_percent_of_its_life_or_earlier_when_its_provider_asks() {
        let opts = ListenerOptions::new("wss://ns/hc");
        let at = |t: Token| renewal_time(&opts, &t).map(secs_until);
        assert_eq!(at(token(Some(100.0), None)), Some(80));
        assert_eq!(at(token(Some(100.0), Some(50.0))), Some(50));
        // A provider asking for the renewal at the expiry or after it is not followed.
        assert_eq!(at(token(Some(100.0), Some(100.0))), Some(80));
        assert_eq!(at(token(Some(100.0), Some(600.0))), Some(80));
        assert_eq!(at(token(None, Some(30.0))), Some(30));
        // Nor one asking for it now or in the past (seconds where milliseconds are meant).
        assert_eq!(at(token(Some(100.0), Some(0.0))), Some(80));
        assert_eq!(at(token(Some(100.0), Some(-1.7e6))), Some(80));
        assert_eq!(at(token(None, None)), None);
        // Never sooner than a second away.
        assert_eq!(at(token(Some(-5.0), None)), Some(1));
    }

    #[test]
    fn failed_renewals_retry_before_the_expiry_then_back_off_once_it_is_past() {
        let live = Some(sas::now_ms() + 600_000.0);
        assert_eq!(secs_until(retry_time(live, 1)), 5);
        assert_eq!(secs_until(retry_time(live, 30)), 5);
        let near = Some(sas::now_ms() + 8_000.0);
        assert_eq!(secs_until(retry_time(near, 3)), 2);
        let past = Some(sas::now_ms() - 1_000.0);
        let waits: Vec<u64> = (1..=9).map(|n| secs_until(retry_time(past, n))).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(secs_until(retry_time(None, 2)), 2);
    }
}
