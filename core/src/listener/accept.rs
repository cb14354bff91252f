//! Senders the service asks the listener to accept: accepted here (auto-accept, over the
//! spare connection when there is one) or by the owner.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::listener::spare::SparePool;
use crate::listener::{request, AcceptRequest, ListenerEvent, ListenerOptions, ListenerSink};
use crate::socket::deflate::{self, Negotiation};
use crate::socket::handshake::Endpoint;
use crate::socket::{ConnectOptions, Handle};

/// The owner's side of the loop: where events go, whether accepts may be made here, the
/// spare connection for them, and those still in their handshake.
pub(super) struct Owner<'a> {
    pub(super) sink: &'a dyn ListenerSink,
    pub(super) auto_accept: &'a AtomicBool,
    pub(super) spares: Option<&'a Arc<SparePool>>,
    pub(super) accepting: &'a Arc<InFlight>,
}

/// Accept handshakes the listener started by itself and that are not over yet: the
/// listener's close waits for them, so that the owner hears of every connection it
/// accepted before it hears that the listener is closed.
#[derive(Default)]
pub(super) struct InFlight {
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
    pub(super) async fn settled(&self, limit: Duration) {
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

/// Whether the sender offered subprotocols (then the owner chooses, as ws's server does).
fn offers_protocol(headers: &[(String, String)]) -> bool {
    headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-protocol"))
}

/// The listener's permessage-deflate answer to the sender's offer, chosen as ws's
/// `WebSocketServer` chooses: `Ok(None)` when deflate is off here or not offered, `Err`
/// when ws would refuse the handshake (400; left to the owner, which refuses it).
fn negotiate(
    opts: &ListenerOptions,
    headers: &[(String, String)],
) -> Result<Option<Negotiation>, String> {
    let Some(config) = &opts.deflate else {
        return Ok(None);
    };
    let offers: Vec<&str> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("sec-websocket-extensions"))
        .map(|(_, v)| v.as_str())
        .collect();
    if offers.is_empty() {
        return Ok(None);
    }
    Ok(deflate::accept_offer(config, &offers.join(", "))?.map(Negotiation::Answer))
}

/// Accepts a sender here, without the owner's round trip, if the owner takes it; over the
/// spare connection if there is one for this endpoint, and then makes the next spare.
fn accept_here(
    opts: &ListenerOptions,
    owner: &Owner<'_>,
    request: &AcceptRequest,
    deflate: Option<Negotiation>,
) -> bool {
    let socket = Handle::new(&opts.accept_socket);
    let Some(socket_sink) = owner.sink.accepted(request, &socket) else {
        return false;
    };
    let spare = owner.spares.and_then(|pool| {
        Endpoint::of(&request.address, opts.proxy.as_deref()).and_then(|e| pool.take(&e))
    });
    // Once this handshake is over: if it worked, the next spare is opened (then, not
    // competing with it; and not towards an endpoint that just failed), and the listener's
    // close need not wait for it any more.
    owner.accepting.start();
    let accepting = owner.accepting.clone();
    let refill = owner.spares.map(|pool| {
        let route = (opts.ca.clone(), opts.proxy.clone());
        (pool.clone(), request.address.clone(), route)
    });
    let then: Box<dyn FnOnce(bool) + Send> = Box::new(move |opened| {
        if let (true, Some((pool, address, (ca, proxy)))) = (opened, refill) {
            pool.refill(&address, &ca, proxy);
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
            deflate,
            ca: opts.ca.clone(),
            proxy: opts.proxy.clone(),
        },
        opts.accept_socket,
        socket_sink,
        spare,
        Some(then),
    );
    true
}

/// Handles the service's `accept` message (the value of its `accept` key): the sender is
/// accepted here (auto-accept) or goes to the owner.
pub(super) fn on_accept(a: &serde_json::Value, opts: &ListenerOptions, owner: &Owner<'_>) {
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
    if owner.auto_accept.load(Ordering::SeqCst) && !offers_protocol(&request.headers) {
        match negotiate(opts, &request.headers) {
            Ok(answer) => {
                if accept_here(opts, owner, &request, answer) {
                    return;
                }
            }
            Err(why) => log::debug!("listener: {}: {why}; the owner refuses it", request.id),
        }
    }
    owner.sink.push(ListenerEvent::Accept(request));
}
