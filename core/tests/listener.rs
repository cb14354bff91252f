//! The listener's control loop against the emulator: tokens, renewal, reconnects,
//! keep-alive, final errors and close.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyco_core::listener::{
    self, ListenerCommand, ListenerEvent, ListenerHandle, ListenerOptions, ListenerSink, Token,
};
use hyco_core::relay::{Entities, HybridConnectionConfig, LocalRelay, RelayConfig};
use hyco_core::{sas, uri};
use tokio::sync::mpsc;

const WAIT: Duration = Duration::from_secs(15);

struct Collect(Mutex<mpsc::UnboundedSender<ListenerEvent>>);

impl ListenerSink for Collect {
    fn push(&self, event: ListenerEvent) {
        if let Ok(tx) = self.0.lock() {
            let _ = tx.send(event);
        }
    }
}

/// A listener whose token requests are answered with tokens of `life` seconds.
struct Harness {
    handle: ListenerHandle,
    events: mpsc::UnboundedReceiver<ListenerEvent>,
    relay: Arc<LocalRelay>,
    url: String,
    life: f64,
}

impl Harness {
    fn start(
        relay: Arc<LocalRelay>,
        hc: &str,
        life: f64,
        tweak: impl FnOnce(&mut ListenerOptions),
    ) -> Self {
        let url = uri::action_uri(&relay.origin(), hc, uri::Action::Listen, None, None).unwrap();
        let mut opts = ListenerOptions::new(url.clone());
        tweak(&mut opts);
        let (tx, events) = mpsc::unbounded_channel();
        let handle = listener::start(opts, Arc::new(Collect(Mutex::new(tx))));
        Harness {
            handle,
            events,
            relay,
            url,
            life,
        }
    }

    fn token(&self) -> String {
        let rule = &self.relay.config().rules[0];
        sas::create_token(
            &self.url,
            &rule.name,
            &rule.key,
            Some(self.life),
            sas::now_ms(),
        )
        .unwrap()
    }

    /// The next event other than token requests, which are answered on the way.
    async fn next(&mut self) -> ListenerEvent {
        loop {
            let ev = tokio::time::timeout(WAIT, self.events.recv())
                .await
                .expect("a listener event in time")
                .expect("the listener is running");
            match ev {
                ListenerEvent::NeedToken { request, .. } => {
                    let token = self.token();
                    self.handle.send(ListenerCommand::Token {
                        request,
                        result: Ok(Token::new(token)),
                    });
                }
                ListenerEvent::Connecting { .. } => {}
                other => return other,
            }
        }
    }

    async fn online(&mut self) {
        match self.next().await {
            ListenerEvent::Online => {}
            other => panic!("expected online, got {other:?}"),
        }
    }
}

async fn relay() -> Arc<LocalRelay> {
    LocalRelay::start(RelayConfig::default(), None)
        .await
        .unwrap()
}

#[tokio::test]
async fn goes_online_and_passes_accepts_on() {
    let relay = relay().await;
    let mut h = Harness::start(relay.clone(), "hc", 60.0, |_| {});
    h.online().await;
    assert_eq!(relay.stats().listeners, 1);
    let su = uri::action_uri(
        &relay.origin(),
        "hc/x?y=1",
        uri::Action::Connect,
        None,
        Some("trace"),
    )
    .unwrap();
    let rule = &relay.config().rules[0];
    let token = sas::create_token(&su, &rule.name, &rule.key, Some(60.0), sas::now_ms()).unwrap();
    let sender = tokio::spawn(async move {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = su.into_client_request().unwrap();
        req.headers_mut()
            .insert("ServiceBusAuthorization", token.parse().unwrap());
        let tcp = tokio::net::TcpStream::connect(req.uri().authority().unwrap().as_str())
            .await
            .unwrap();
        tokio_tungstenite::client_async(req, tcp)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    });
    match h.next().await {
        ListenerEvent::Accept(a) => {
            assert_eq!(a.id, "trace");
            assert!(
                a.address.contains("/$hc/hc/x?y=1&sb-hc-action=accept"),
                "{}",
                a.address
            );
            assert!(a.headers.iter().any(|(k, _)| k == "Sec-WebSocket-Key"));
            assert_eq!(a.remote_address.as_deref(), Some("127.0.0.1"));
            // Reject it: the sender sees the status.
            let reject = format!(
                "{}&sb-hc-statusCode=418&sb-hc-statusDescription=teapot",
                a.address
            );
            let outcome = listener::reject(&reject, Duration::from_secs(5), &[], None).await;
            assert!(outcome.is_ok(), "{outcome:?}");
        }
        other => panic!("expected an accept, got {other:?}"),
    }
    let refused = sender.await.unwrap().unwrap_err();
    assert!(refused.contains("418"), "{refused}");
    h.handle.send(ListenerCommand::Close);
    assert!(matches!(
        h.next().await,
        ListenerEvent::Closed { error: None }
    ));
    assert_eq!(relay.stats().listeners, 0);
    relay.stop().await;
}

#[tokio::test]
async fn renews_short_lived_tokens_without_dropping() {
    let relay = relay().await;
    let mut h = Harness::start(relay.clone(), "hc", 3.0, |_| {});
    h.online().await;
    let mut renewals = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(7);
    while tokio::time::Instant::now() < until {
        let left = until - tokio::time::Instant::now();
        match tokio::time::timeout(left, h.next()).await {
            Ok(ListenerEvent::Renewed) => renewals += 1,
            Ok(other) => panic!("unexpected {other:?}"),
            Err(_) => break,
        }
    }
    assert!(
        renewals >= 2,
        "{renewals} renewals in 7 s of 3-second tokens"
    );
    assert_eq!(relay.stats().listeners, 1);
    h.handle.send(ListenerCommand::Close);
    relay.stop().await;
}

#[tokio::test]
async fn reconnects_after_an_outage_with_one_channel_at_a_time() {
    let relay = relay().await;
    let mut h = Harness::start(relay.clone(), "hc", 60.0, |o| {
        o.reconnect_delays = vec![Duration::ZERO, Duration::from_millis(100)];
    });
    h.online().await;
    relay.stop().await;
    assert!(matches!(h.next().await, ListenerEvent::Offline { .. }));
    relay.resume().await.unwrap();
    h.online().await;
    assert_eq!(relay.stats().listeners, 1);
    relay.drop_listeners(None, 1011, "test");
    assert!(matches!(h.next().await, ListenerEvent::Offline { .. }));
    h.online().await;
    assert_eq!(relay.stats().listeners, 1);
    h.handle.send(ListenerCommand::Close);
    relay.stop().await;
}

#[tokio::test]
async fn replaces_a_frozen_channel() {
    let relay = relay().await;
    let mut h = Harness::start(relay.clone(), "hc", 60.0, |o| {
        o.keep_alive = Some(Duration::from_millis(300));
        o.pong_timeout = Duration::from_millis(300);
    });
    h.online().await;
    relay.freeze_listeners(None, true);
    let started = tokio::time::Instant::now();
    match h.next().await {
        ListenerEvent::Offline { error } => assert_eq!(error.code, Some("ETIMEDOUT")),
        other => panic!("expected offline, got {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    h.online().await;
    h.handle.send(ListenerCommand::Close);
    relay.stop().await;
}

#[tokio::test]
async fn stops_on_a_final_error() {
    let config = RelayConfig {
        entities: Entities::List(vec![HybridConnectionConfig {
            name: "hc".into(),
            requires_client_authorization: true,
        }]),
        ..RelayConfig::default()
    };
    let relay = LocalRelay::start(config, None).await.unwrap();
    let mut h = Harness::start(relay.clone(), "gone", 60.0, |_| {});
    match h.next().await {
        ListenerEvent::Closed { error: Some(e) } => assert_eq!(e.status_code, Some(404)),
        other => panic!("expected a final close, got {other:?}"),
    }
    relay.stop().await;
}

/// A fake service: accepts control channels on 127.0.0.1 and runs `script` on each.
async fn fake_service<F, Fut>(script: F) -> (String, Arc<std::sync::atomic::AtomicUsize>)
where
    F: Fn(tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "ws://{}/$hc/hc?sb-hc-action=listen",
        server.local_addr().unwrap()
    );
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = server.accept().await {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let script = script.clone();
            tokio::spawn(async move {
                if let Ok(ws) = tokio_tungstenite::accept_async(tcp).await {
                    script(ws).await;
                }
            });
        }
    });
    (url, accepted)
}

fn fake_token(url: &str) -> String {
    sas::create_token(url, "r", "k", Some(3600.0), sas::now_ms()).unwrap()
}

#[tokio::test]
async fn keeps_reading_the_control_channel_past_many_megabytes() {
    use futures_util::SinkExt;
    let (url, _) = fake_service(|mut ws| async move {
        let filler = format!("{{\"unknown\":\"{}\"}}", "x".repeat(64 * 1024));
        for _ in 0..400 {
            if ws.send(tokio_tungstenite::tungstenite::Message::text(filler.clone())).await.is_err() {
                return;
            }
        }
        let accept = r#"{"accept":{"address":"ws://127.0.0.1:9/$hc/hc?sb-hc-action=accept&sb-hc-id=late","id":"late","connectHeaders":{}}}"#;
        let _ = ws.send(tokio_tungstenite::tungstenite::Message::text(accept)).await;
        // Stay open until the listener goes.
        while let Some(Ok(_)) = futures_util::StreamExt::next(&mut ws).await {}
    })
    .await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut opts = ListenerOptions::new(url.clone());
    opts.keep_alive = None;
    let handle = listener::start(opts, Arc::new(Collect(Mutex::new(tx))));
    let found = tokio::time::timeout(WAIT, async {
        while let Some(ev) = events.recv().await {
            match ev {
                ListenerEvent::NeedToken { request, .. } => {
                    handle.send(ListenerCommand::Token {
                        request,
                        result: Ok(Token::new(fake_token(&url))),
                    });
                }
                ListenerEvent::Accept(a) => return a.id,
                ListenerEvent::Offline { error } => panic!("went offline: {}", error.message),
                _ => {}
            }
        }
        panic!("the listener stopped");
    })
    .await
    .expect("the accept after 25 MiB of control messages arrives");
    assert_eq!(found, "late");
    handle.send(ListenerCommand::Close);
}

#[tokio::test]
async fn a_service_that_drops_at_once_is_not_hammered() {
    let (url, accepted) = fake_service(|ws| async move { drop(ws) }).await;
    let (tx, mut events) = mpsc::unbounded_channel();
    let mut opts = ListenerOptions::new(url.clone());
    opts.reconnect_delays = vec![
        Duration::ZERO,
        Duration::from_millis(200),
        Duration::from_millis(400),
        Duration::from_secs(1),
    ];
    opts.jitter = 0.0;
    let handle = listener::start(opts, Arc::new(Collect(Mutex::new(tx))));
    let watch = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(ev) = events.recv().await {
            if let ListenerEvent::NeedToken { request, .. } = ev {
                handle.send(ListenerCommand::Token {
                    request,
                    result: Ok(Token::new(fake_token(&url))),
                });
            }
        }
    });
    let _ = watch.await;
    let n = accepted.load(std::sync::atomic::Ordering::SeqCst);
    // 0 + 0.2 + 0.4 + 1 + 1 s of delays fit in 3 s: about 5 attempts, not thousands.
    assert!((2..=8).contains(&n), "{n} control channels in 3 s");
    handle.send(ListenerCommand::Close);
}

#[tokio::test]
async fn an_expired_renewal_token_is_refused_without_a_renewal_loop() {
    let relay = relay().await;
    let url = uri::action_uri(&relay.origin(), "hc", uri::Action::Listen, None, None).unwrap();
    let rule = relay.config().rules[0].clone();
    let (tx, mut events) = mpsc::unbounded_channel();
    let handle = listener::start(
        ListenerOptions::new(url.clone()),
        Arc::new(Collect(Mutex::new(tx))),
    );
    let mut requests = 0;
    let mut errors = 0;
    let until = tokio::time::Instant::now() + Duration::from_secs(4);
    while let Ok(Some(ev)) = tokio::time::timeout_at(until, events.recv()).await {
        match ev {
            ListenerEvent::NeedToken { request, renewal } => {
                requests += 1;
                // The first token lives 2 s; every renewal offers one that expired already.
                let (life, now) = if renewal {
                    (1.0, sas::now_ms() - 60_000.0)
                } else {
                    (2.0, sas::now_ms())
                };
                let token =
                    sas::create_token(&url, &rule.name, &rule.key, Some(life), now).unwrap();
                handle.send(ListenerCommand::Token {
                    request,
                    result: Ok(Token::new(token)),
                });
            }
            ListenerEvent::TokenError { .. } => errors += 1,
            _ => {}
        }
    }
    assert!(errors >= 1, "the stale token was refused");
    assert!(requests <= 8, "{requests} token requests in 4 s");
    handle.send(ListenerCommand::Close);
    relay.stop().await;
}
