//! The client's proxy path against a tiny proxy written here (a tokio listener that answers
//! CONNECT as each test tells it) and the local relay: the tunnel, Basic authentication,
//! each way a proxy can refuse or fail, NO_PROXY, and spare connections across proxy
//! settings. No message may carry the proxy's password.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyco_core::relay::{LocalRelay, RelayConfig};
use hyco_core::socket::handshake::{self, Endpoint, Spare};
use hyco_core::socket::{ConnectOptions, ProxyConfig, SocketError};
use hyco_core::{sas, uri};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WAIT: Duration = Duration::from_secs(10);
const PASSWORD: &str = "pa ss@word";
const PASSWORD_IN_URL: &str = "pa%20ss%40word";

/// What the tiny proxy does with a CONNECT.
#[derive(Clone, Copy)]
enum Behaviour {
    /// 200, then relays bytes both ways.
    Tunnel,
    /// Sends these bytes and closes.
    Answer(&'static str),
    /// Closes without a word.
    Close,
    /// Takes the CONNECT and never answers.
    Silent,
}

/// A proxy on 127.0.0.1, port 0, and the request heads it received.
struct TinyProxy {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
}

impl TinyProxy {
    async fn start(behaviour: Behaviour) -> TinyProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = heads.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, behaviour, seen.clone()));
            }
        });
        TinyProxy { port, heads }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn url_with_password(&self) -> String {
        format!("http://alice:{PASSWORD_IN_URL}@127.0.0.1:{}", self.port)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

async fn serve(mut client: TcpStream, behaviour: Behaviour, heads: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match client.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let target = head
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    heads.lock().unwrap().push(head);
    match behaviour {
        Behaviour::Tunnel => {
            let Ok(mut upstream) = TcpStream::connect(&target).await else {
                let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                return;
            };
            let _ = client
                .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                .await;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
        Behaviour::Answer(text) => {
            let _ = client.write_all(text.as_bytes()).await;
        }
        Behaviour::Close => {}
        Behaviour::Silent => {
            let _ = client.read(&mut byte).await;
        }
    }
}

/// A relay, and a listen address with its token (a handshake that succeeds with 101).
async fn relay() -> (Arc<LocalRelay>, String, String) {
    let relay = LocalRelay::start(RelayConfig::default(), None)
        .await
        .unwrap();
    let url = uri::action_uri(&relay.origin(), "hc", uri::Action::Listen, None, None).unwrap();
    let rule = &relay.config().rules[0];
    let token = sas::create_token(&url, &rule.name, &rule.key, Some(60.0), sas::now_ms()).unwrap();
    (relay, url, token)
}

fn options(url: &str, token: &str, proxy: Option<ProxyConfig>) -> ConnectOptions {
    ConnectOptions {
        url: url.to_owned(),
        headers: vec![("ServiceBusAuthorization".to_owned(), token.to_owned())],
        protocols: Vec::new(),
        handshake_timeout: WAIT,
        ca: Vec::new(),
        proxy: proxy.map(Arc::new),
        deflate: None,
    }
}

/// The handshake's error; fails the test if it succeeded. Checks that the password is not
/// in the message.
async fn failure(opts: &ConnectOptions) -> SocketError {
    match handshake::connect(opts).await {
        Ok(_) => panic!("the handshake succeeded"),
        Err(e) => {
            for secret in [PASSWORD, PASSWORD_IN_URL, "YWxpY2U6"] {
                assert!(!e.message.contains(secret), "{}", e.message);
            }
            e
        }
    }
}

#[tokio::test]
async fn the_handshake_runs_through_the_tunnel() {
    let (_relay, url, token) = relay().await;
    let proxy = TinyProxy::start(Behaviour::Tunnel).await;
    let opts = options(
        &url,
        &token,
        Some(ProxyConfig::explicit(&proxy.url(), None)),
    );
    let established = handshake::connect(&opts)
        .await
        .map(|_| ())
        .map_err(|e| e.message);
    assert_eq!(established, Ok(()));
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1);
    let authority = url.split('/').nth(2).unwrap();
    assert!(
        heads[0].starts_with(&format!(
            "CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        )),
        "{}",
        heads[0]
    );
    assert!(!heads[0]
        .to_ascii_lowercase()
        .contains("proxy-authorization"));
    // Nothing of the relay's request goes to the proxy in the clear: not the token.
    assert!(!heads[0].contains(&token));
}

#[tokio::test]
async fn basic_credentials_come_from_the_url() {
    let (_relay, url, token) = relay().await;
    let proxy = TinyProxy::start(Behaviour::Tunnel).await;
    let config = ProxyConfig::explicit(&proxy.url_with_password(), None);
    let opts = options(&url, &token, Some(config));
    assert!(handshake::connect(&opts).await.is_ok());
    // base64("alice:pa ss@word"): the password percent-decoded.
    assert!(
        proxy.heads()[0].contains("\r\nProxy-Authorization: Basic YWxpY2U6cGEgc3NAd29yZA==\r\n"),
        "{}",
        proxy.heads()[0]
    );
}

#[tokio::test]
async fn a_407_is_err_proxy_auth() {
    let (_relay, url, token) = relay().await;
    let proxy = TinyProxy::start(Behaviour::Answer(
        "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"p\"\r\nContent-Length: 0\r\n\r\n",
    ))
    .await;
    let without = failure(&options(
        &url,
        &token,
        Some(ProxyConfig::explicit(&proxy.url(), None)),
    ))
    .await;
    assert_eq!(without.code, Some("ERR_PROXY_AUTH"));
    assert_eq!(without.status_code, Some(407));
    assert_eq!(
        without.status_description.as_deref(),
        Some("Proxy Authentication Required")
    );
    assert!(
        without.message.contains(&proxy.url()) && without.message.contains("give a user name"),
        "{}",
        without.message
    );
    let config = ProxyConfig::explicit(&proxy.url_with_password(), None);
    let wrong = failure(&options(&url, &token, Some(config))).await;
    assert_eq!(
        (wrong.code, wrong.status_code),
        (Some("ERR_PROXY_AUTH"), Some(407))
    );
    assert!(
        wrong.message.contains("refused the user name and password"),
        "{}",
        wrong.message
    );
}

#[tokio::test]
async fn another_refusal_is_err_proxy_refused_with_its_status() {
    let (_relay, url, token) = relay().await;
    let proxy = TinyProxy::start(Behaviour::Answer(
        "HTTP/1.1 403 Forbidden\r\nContent-Length: 5\r\n\r\nnope.",
    ))
    .await;
    let config = ProxyConfig::explicit(&proxy.url_with_password(), None);
    let e = failure(&options(&url, &token, Some(config))).await;
    assert_eq!(e.code, Some("ERR_PROXY_REFUSED"));
    assert_eq!(
        (e.status_code, e.status_description.as_deref()),
        (Some(403), Some("Forbidden"))
    );
    let authority = url.split('/').nth(2).unwrap();
    assert_eq!(
        e.message,
        format!(
            "The proxy {} refused to open a tunnel to {authority}: 403 Forbidden",
            proxy.url()
        )
    );
}

#[tokio::test]
async fn a_proxy_that_hangs_up_or_babbles_is_named() {
    let (_relay, url, token) = relay().await;
    let closing = TinyProxy::start(Behaviour::Close).await;
    let config = ProxyConfig::explicit(&closing.url_with_password(), None);
    let e = failure(&options(&url, &token, Some(config))).await;
    assert_eq!(e.code, Some("ECONNRESET"));
    assert!(e.message.contains(&closing.url()), "{}", e.message);
    let babbling = TinyProxy::start(Behaviour::Answer("SSH-2.0-OpenSSH_9.2\r\n\r\n")).await;
    let e = failure(&options(
        &url,
        &token,
        Some(ProxyConfig::explicit(&babbling.url(), None)),
    ))
    .await;
    assert_eq!(e.code, Some("ERR_INVALID_HTTP_RESPONSE"));
    assert!(e.message.contains(&babbling.url()), "{}", e.message);
}

#[tokio::test]
async fn a_refusal_with_many_headers_is_read_as_node_reads_it() {
    let (_relay, url, token) = relay().await;
    // An appliance's 407 page: more headers than a fixed table holds (64 before).
    let mut answer = String::from("HTTP/1.1 407 Proxy Authentication Required\r\n");
    for i in 0..72 {
        answer.push_str(&format!("Set-Cookie: c{i}=v\r\n"));
    }
    answer.push_str("Content-Length: 0\r\n\r\n");
    let proxy = TinyProxy::start(Behaviour::Answer(Box::leak(answer.into_boxed_str()))).await;
    let e = failure(&options(
        &url,
        &token,
        Some(ProxyConfig::explicit(&proxy.url(), None)),
    ))
    .await;
    assert_eq!(
        (e.code, e.status_code),
        (Some("ERR_PROXY_AUTH"), Some(407)),
        "{}",
        e.message
    );
}

#[tokio::test]
async fn a_proxy_that_never_answers_connect_is_named_when_the_time_is_up() {
    let (_relay, url, token) = relay().await;
    let proxy = TinyProxy::start(Behaviour::Silent).await;
    let mut opts = options(
        &url,
        &token,
        Some(ProxyConfig::explicit(&proxy.url_with_password(), None)),
    );
    opts.handshake_timeout = Duration::from_millis(300);
    let e = tokio::time::timeout(WAIT, failure(&opts))
        .await
        .expect("the handshake gave up in time");
    assert_eq!(e.code, Some("ETIMEDOUT"));
    assert_eq!(
        e.message,
        format!(
            "Opening a tunnel through the proxy {} has timed out",
            proxy.url()
        )
    );
}

#[tokio::test]
async fn an_unreachable_proxy_is_named() {
    let (_relay, url, token) = relay().await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let proxy = format!("http://alice:{PASSWORD_IN_URL}@127.0.0.1:{port}");
    let e = failure(&options(
        &url,
        &token,
        Some(ProxyConfig::explicit(&proxy, None)),
    ))
    .await;
    assert_eq!(e.code, Some("ECONNREFUSED"));
    assert_eq!(
        e.message,
        format!("connect ECONNREFUSED 127.0.0.1:{port} (proxy http://127.0.0.1:{port})")
    );
}

#[tokio::test]
async fn no_proxy_connects_directly() {
    let (_relay, url, token) = relay().await;
    let proxy = TinyProxy::start(Behaviour::Tunnel).await;
    for list in ["127.0.0.1", "*", "localhost, 127.0.0.0/8"] {
        let config = ProxyConfig::new(Some(&proxy.url()), None, Some(list), true);
        assert!(handshake::connect(&options(&url, &token, Some(config)))
            .await
            .is_ok());
    }
    assert!(proxy.heads().is_empty());
}

#[tokio::test]
async fn a_spare_serves_only_handshakes_with_the_same_proxy() {
    let (_relay, url, token) = relay().await;
    let proxy = TinyProxy::start(Behaviour::Tunnel).await;
    let config = ProxyConfig::explicit(&proxy.url(), None);
    let other = ProxyConfig::explicit(&proxy.url_with_password(), None);
    assert_ne!(Endpoint::of(&url, Some(&config)), Endpoint::of(&url, None));
    assert_ne!(
        Endpoint::of(&url, Some(&config)),
        Endpoint::of(&url, Some(&other))
    );
    assert_eq!(
        Endpoint::of(&url, Some(&config)),
        Endpoint::of(&url, Some(&ProxyConfig::explicit(&proxy.url(), None)))
    );

    // A tunnelled spare is not used by a direct handshake: that one connects directly.
    let spare = Spare::open(&url, &[], Some(&config), WAIT).await.unwrap();
    assert_eq!(proxy.heads().len(), 1);
    let direct = options(&url, &token, None);
    assert!(handshake::connect_with(&direct, Some(spare), &|| {})
        .await
        .is_ok());
    assert_eq!(proxy.heads().len(), 1);

    // With the same proxy setting, the handshake runs over the spare's tunnel.
    let spare = Spare::open(&url, &[], Some(&config), WAIT).await.unwrap();
    assert_eq!(proxy.heads().len(), 2);
    let proxied = options(&url, &token, Some(config));
    assert!(handshake::connect_with(&proxied, Some(spare), &|| {})
        .await
        .is_ok());
    assert_eq!(
        proxy.heads().len(),
        2,
        "no second tunnel: the spare's was used"
    );
}
