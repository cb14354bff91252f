//! One listener's control channel, service side: sends `accept` and `request` messages,
//! takes `response` messages (and their bodies) to the waiting HTTP requests, takes
//! `renewToken`, answers pings, and closes with 1008 when the token expires or a renewal
//! fails. Anything else the listener sends is logged and ignored.
//!
//! Writing and reading run side by side (the socket is split): a listener that stops reading
//! blocks only the writer, so its responses are still read and the token expiry still fires.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::WebSocketStream;

use crate::relay::auth::{self, Access};
use crate::relay::config::Right;
use crate::relay::http_message::{self, ListenerReply, ResponseHead};
use crate::relay::http_pending::Delivery;
use crate::relay::registry::{ControlCommand, IoStream};
use crate::relay::state::{RelayEvent, RelayState};

/// How long a closing control channel waits for the listener's close reply (and for its
/// close frame to go out to a listener that does not read).
const CLOSE_WAIT: Duration = Duration::from_secs(5);

type Sink = SplitSink<WebSocketStream<IoStream>, Message>;
type Source = SplitStream<WebSocketStream<IoStream>>;

/// Unix seconds now.
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The monotonic instant at which a token expiring at `expires_at` (Unix seconds) expires.
fn deadline_for(expires_at: u64) -> Instant {
    let left = expires_at.saturating_sub(unix_now());
    // A deadline centuries away would overflow `Instant`: cap it at a year.
    Instant::now() + Duration::from_secs(left.min(365 * 24 * 3600))
}

/// Who is on the other end of the channel.
pub struct ControlContext {
    /// Shared relay state.
    pub state: Arc<RelayState>,
    /// The entity's registry key.
    pub entity_key: String,
    /// The entity's name, for events.
    pub entity_name: String,
    /// The listener's id in the registry.
    pub listener_id: u64,
    /// The host the listener connected to, for renewal checks.
    pub host: String,
    /// The current token's expiry, Unix seconds.
    pub expires_at: u64,
}

/// Why the channel ends.
enum End {
    /// Close it with this code and reason; `why` for the event.
    Close {
        code: u16,
        reason: String,
        why: String,
    },
    /// It is already gone (or the relay stopped).
    Gone(&'static str),
}

/// What a listener's text message asks for.
enum ListenerMessage {
    Renew(String),
    Reply(ListenerReply),
    Other(&'static str),
}

fn classify(text: &str) -> ListenerMessage {
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return ListenerMessage::Other("not JSON");
    };
    match value.get("renewToken") {
        Some(r) => match r.get("token").and_then(|t| t.as_str()) {
            Some(t) => ListenerMessage::Renew(t.to_owned()),
            None => ListenerMessage::Renew(String::new()),
        },
        None if value.get("response").is_some() => {
            ListenerMessage::Reply(within_limit(text, http_message::reply_of(&value)))
        }
        None => ListenerMessage::Other("an unknown command"),
    }
}

/// The article's limit on a response on the control channel: "HTTP header metadata is
/// limited to a total of 32 kB", and a listener whose response exceeds it "MUST upgrade to
/// a rendezvous". Measured as this package's listener measures it (the `response` message).
const CONTROL_RESPONSE_MAX: usize = 32 * 1024;

/// `reply`, unless its message (`text`) is over [`CONTROL_RESPONSE_MAX`]: then its request
/// fails (502). The service's reaction is not documented; failing here shows a listener
/// that would break the rule what it risks there.
fn within_limit(text: &str, reply: ListenerReply) -> ListenerReply {
    match reply {
        ListenerReply::Response(head) if text.len() > CONTROL_RESPONSE_MAX => {
            ListenerReply::Invalid {
                request_id: head.request_id,
                body: head.body,
                why: format!(
                    "the response message is {} bytes, over the control channel's 32 KiB of header metadata (a larger response goes over a rendezvous)",
                    text.len()
                ),
            }
        }
        other => other,
    }
}

async fn close(sink: &mut Sink, source: &mut Source, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    };
    let sent = tokio::time::timeout(CLOSE_WAIT, sink.send(Message::Close(Some(frame)))).await;
    if let Ok(Ok(())) = sent {
        // Wait for the listener's close reply so that it sees a clean close with our code.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(_)) = source.next().await {}
        })
        .await;
    }
}

/// Runs the channel until it closes, then unregisters the listener and fails the HTTP
/// requests still waiting on it.
pub async fn run(
    ws: WebSocketStream<IoStream>,
    ctx: ControlContext,
    mut commands: mpsc::Receiver<ControlCommand>,
    frozen: watch::Receiver<bool>,
) {
    let state = &ctx.state;
    let (mut sink, mut source) = ws.split();
    let end = {
        let writer = write_commands(&mut sink, &mut commands, &ctx);
        let reader = read_messages(&mut source, frozen, &ctx);
        tokio::select! {
            e = writer => e,
            e = reader => e,
        }
    };
    let why = match end {
        End::Close { code, reason, why } => {
            close(&mut sink, &mut source, code, &reason).await;
            why
        }
        End::Gone(why) => why.to_owned(),
    };
    // In this order: no new request can pick this listener, the queued ones are dropped,
    // then every request it still owes an answer learns that it will not come.
    state
        .registry
        .remove_listener(&ctx.entity_key, ctx.listener_id);
    state.registry.hand_back_accepts(&mut commands);
    drop(commands);
    state.http.fail_listener(ctx.listener_id);
    state.emit(
        RelayEvent::new(
            "listenerClosed",
            format!("listener on {} closed: {why}", ctx.entity_name),
        )
        .hc(&ctx.entity_name),
    );
}

/// Sends what the relay asks, in order; a request's text and body messages go out back to
/// back (nothing else is written on the channel between them).
async fn write_commands(
    sink: &mut Sink,
    commands: &mut mpsc::Receiver<ControlCommand>,
    ctx: &ControlContext,
) -> End {
    loop {
        let Some(cmd) = commands.recv().await else {
            return End::Gone("relay stopped");
        };
        match cmd {
            ControlCommand::Accept { message, .. } => {
                if sink.send(Message::text(message)).await.is_err() {
                    return End::Gone("write failed");
                }
            }
            ControlCommand::Request { id, messages } => {
                // A request whose sender left (or timed out) while it was queued is not
                // worth the listener's time (its end took the messages).
                let Some(messages) = messages.take().filter(|_| ctx.state.http.contains(&id))
                else {
                    log::debug!("relay: not sending request {id}: its sender is gone");
                    continue;
                };
                for m in messages {
                    if sink.feed(m).await.is_err() {
                        return End::Gone("write failed");
                    }
                }
                if sink.flush().await.is_err() {
                    return End::Gone("write failed");
                }
            }
            ControlCommand::Drop { code, reason } => {
                return End::Close {
                    code,
                    reason,
                    why: format!("dropped with {code}"),
                }
            }
        }
    }
}

/// A response message whose body message comes next: where it goes (nowhere if its
/// request is gone), and the head to deliver with it.
struct AwaitedBody {
    deliver: Option<oneshot::Sender<Delivery>>,
    head: Option<ResponseHead>,
}

/// Reads the listener's messages until the channel ends, the token expires or a renewal
/// fails.
async fn read_messages(
    source: &mut Source,
    mut frozen: watch::Receiver<bool>,
    ctx: &ControlContext,
) -> End {
    let state = &ctx.state;
    let mut deadline = deadline_for(ctx.expires_at);
    let mut body: Option<AwaitedBody> = None;
    loop {
        let is_frozen = *frozen.borrow_and_update();
        let msg = tokio::select! {
            // A freeze (set by the registry before `freezeListeners` returns) wins over a
            // message that arrived at the same time.
            biased;
            changed = frozen.changed() => {
                if changed.is_err() {
                    return End::Gone("relay stopped");
                }
                continue;
            }
            msg = source.next(), if !is_frozen => msg,
            _ = tokio::time::sleep_until(deadline) => {
                return End::Close {
                    code: 1008,
                    reason: "The token has expired".into(),
                    why: "token expired".into(),
                };
            }
        };
        match msg {
            None => return End::Gone("listener disconnected"),
            Some(Err(WsError::Capacity(_))) => {
                return End::Close {
                    code: 1009,
                    reason: "Message too big".into(),
                    why: "a message over the control channel's limit".into(),
                }
            }
            // A peer that breaks the protocol hears why, as a WebSocket server tells it
            // (RFC 6455 7.4.1), before the channel ends.
            Some(Err(WsError::Utf8(_))) => {
                return End::Close {
                    code: 1007,
                    reason: "Invalid UTF-8 in a text message".into(),
                    why: "a text message that is not UTF-8".into(),
                }
            }
            Some(Err(WsError::Protocol(e)))
                if !matches!(e, ProtocolError::ResetWithoutClosingHandshake) =>
            {
                return End::Close {
                    code: 1002,
                    reason: "Protocol error".into(),
                    why: format!("a protocol error: {e}"),
                }
            }
            Some(Err(_)) => return End::Gone("listener disconnected"),
            Some(Ok(Message::Text(text))) => {
                if let Some(b) = body.take() {
                    log::debug!(
                        "relay: a text message where a response body was expected on the control channel of {}",
                        ctx.entity_name
                    );
                    if let Some(d) = b.deliver {
                        let _ = d.send(Delivery::Invalid(
                            "the listener sent no body after a response with body: true".into(),
                        ));
                    }
                }
                match classify(&text) {
                    ListenerMessage::Renew(token) => {
                        let access = Access {
                            right: Right::Listen,
                            host: &ctx.host,
                            path: &ctx.entity_key,
                        };
                        match auth::authorize(&state.config, Some(&token), &access, unix_now())
                        {
                            Ok(grant) => {
                                deadline = deadline_for(grant.expires_at);
                                state.emit(
                                    RelayEvent::new(
                                        "renew",
                                        format!("listener on {} renewed its token", ctx.entity_name),
                                    )
                                    .hc(&ctx.entity_name),
                                );
                            }
                            Err(denial) => {
                                return End::Close {
                                    code: 1008,
                                    reason: format!("Token renewal failed: {}", denial.message),
                                    why: "renewal failed".into(),
                                };
                            }
                        }
                    }
                    ListenerMessage::Reply(reply) => body = take_reply(reply, ctx),
                    ListenerMessage::Other(what) => {
                        log::debug!(
                            "relay: ignoring {what} on the control channel of {}",
                            ctx.entity_name
                        );
                    }
                }
            }
            Some(Ok(Message::Binary(data))) => match body.take() {
                Some(AwaitedBody {
                    deliver: Some(d),
                    head: Some(head),
                }) => {
                    let _ = d.send(Delivery::Response {
                        head,
                        body: Some(data.to_vec()),
                    });
                }
                Some(_) => {}
                None => log::debug!(
                    "relay: ignoring a binary message that follows no response on the control channel of {}",
                    ctx.entity_name
                ),
            },
            Some(Ok(Message::Close(_))) => {
                // tungstenite has queued the close reply; the next read flushes it and ends.
            }
            Some(Ok(_)) => {}
        }
    }
}

/// Hands a `response` to its waiting request. Returns what to do with a body message that
/// follows it, if one does.
fn take_reply(reply: ListenerReply, ctx: &ControlContext) -> Option<AwaitedBody> {
    let pending = &ctx.state.http;
    let waiting = |id: &Option<String>| {
        let d = id
            .as_deref()
            .and_then(|id| pending.take_response(id, ctx.listener_id));
        if d.is_none() {
            log::debug!(
                "relay: ignoring a response to no waiting request ({}) on the control channel of {}",
                id.as_deref().unwrap_or("no requestId"),
                ctx.entity_name
            );
        }
        d
    };
    match reply {
        ListenerReply::Response(head) => {
            let deliver = waiting(&head.request_id);
            if head.body {
                return Some(AwaitedBody {
                    deliver,
                    head: Some(head),
                });
            }
            if let Some(d) = deliver {
                let _ = d.send(Delivery::Response { head, body: None });
            }
            None
        }
        ListenerReply::Invalid {
            request_id,
            body,
            why,
        } => {
            log::debug!(
                "relay: an invalid response on the control channel of {}: {why}",
                ctx.entity_name
            );
            if let Some(d) = waiting(&request_id) {
                let _ = d.send(Delivery::Invalid(why));
            }
            body.then_some(AwaitedBody {
                deliver: None,
                head: None,
            })
        }
        ListenerReply::Other => None,
    }
}
