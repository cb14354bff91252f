//! One listener's control channel, service side: sends `accept` messages, takes
//! `renewToken`, answers pings, and closes with 1008 when the token expires or a renewal
//! fails. Anything else the listener sends is ignored.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::relay::auth::{self, Access};
use crate::relay::config::Right;
use crate::relay::registry::{ControlCommand, IoStream};
use crate::relay::state::{RelayEvent, RelayState};

/// How long a closing control channel waits for the listener's close reply.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

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

/// What a listener's text message asks for.
enum ListenerMessage {
    Renew(String),
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
            ListenerMessage::Other("a response to no request")
        }
        None => ListenerMessage::Other("an unknown command"),
    }
}

async fn close(ws: &mut WebSocketStream<IoStream>, code: u16, reason: &str) {
    let frame = CloseFrame {
        code: CloseCode::from(code),
        reason: reason.to_owned().into(),
    };
    if ws.close(Some(frame)).await.is_ok() {
        // Wait for the listener's close reply so that it sees a clean close with our code.
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    }
}

/// Runs the channel until it closes, then unregisters the listener.
pub async fn run(
    mut ws: WebSocketStream<IoStream>,
    ctx: ControlContext,
    mut commands: mpsc::UnboundedReceiver<ControlCommand>,
) {
    let state = &ctx.state;
    let mut deadline = deadline_for(ctx.expires_at);
    let mut frozen = false;
    let reason = loop {
        tokio::select! {
            cmd = commands.recv() => match cmd {
                None => break "relay stopped".to_owned(),
                Some(ControlCommand::Accept(json)) => {
                    if ws.send(Message::text(json)).await.is_err() {
                        break "write failed".to_owned();
                    }
                }
                Some(ControlCommand::Drop { code, reason }) => {
                    close(&mut ws, code, &reason).await;
                    break format!("dropped with {code}");
                }
                Some(ControlCommand::Freeze(f)) => frozen = f,
            },
            msg = ws.next(), if !frozen => match msg {
                None | Some(Err(_)) => break "listener disconnected".to_owned(),
                Some(Ok(Message::Text(text))) => match classify(&text) {
                    ListenerMessage::Renew(token) => {
                        let access = Access { right: Right::Listen, host: &ctx.host, path: &ctx.entity_key };
                        match auth::authorize(&state.config.rules, Some(&token), &access, unix_now()) {
                            Ok(grant) => {
                                deadline = deadline_for(grant.expires_at);
                                state.emit(RelayEvent::new("renew", format!("listener on {} renewed its token", ctx.entity_name)).hc(&ctx.entity_name));
                            }
                            Err(denial) => {
                                close(&mut ws, 1008, &format!("Token renewal failed: {}", denial.message)).await;
                                break "renewal failed".to_owned();
                            }
                        }
                    }
                    ListenerMessage::Other(what) => {
                        log::debug!("relay: ignoring {what} on the control channel of {}", ctx.entity_name);
                    }
                },
                Some(Ok(Message::Close(_))) => {
                    // tungstenite has queued the close reply; the next read flushes it and ends.
                }
                Some(Ok(Message::Binary(_))) => {
                    log::debug!("relay: ignoring a binary frame on the control channel of {}", ctx.entity_name);
                }
                Some(Ok(_)) => {}
            },
            _ = tokio::time::sleep_until(deadline) => {
                close(&mut ws, 1008, "The token has expired").await;
                break "token expired".to_owned();
            }
        }
    };
    state
        .registry
        .remove_listener(&ctx.entity_key, ctx.listener_id);
    state.emit(
        RelayEvent::new(
            "listenerClosed",
            format!("listener on {} closed: {reason}", ctx.entity_name),
        )
        .hc(&ctx.entity_name),
    );
}
