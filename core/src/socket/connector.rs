//! Connecting to a host, RFC 8305 style ("Happy Eyeballs"): every address it resolves to is
//! a candidate, the two families interleaved (the resolver's first family first); the
//! first attempt starts at once, each next one [`ATTEMPT_DELAY`] after the previous one
//! started or as soon as an attempt fails, whichever comes first; earlier attempts go on
//! meanwhile, and the first to connect wins (the others are dropped). Each attempt but the
//! last gives up after [`ATTEMPT_TIMEOUT`], and none outlives the handshake's deadline, so
//! one address that never answers (a broken IPv6 route) costs 250 ms, not the whole
//! handshake timeout. A total failure reports the last specific error (`connect
//! ECONNREFUSED 10.0.0.1:443`) rather than a timeout, when there is one.
//!
//! [`race`] takes the connect function, so tests run it against fake addresses.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::socket::error::{errno_code, io_error, SocketError};

/// RFC 8305's Connection Attempt Delay: how long an attempt runs alone before the next
/// address is tried too.
pub const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// How long an attempt may take when another address is left to try.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// When attempts start and end.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// The delay between two attempts' starts ([`ATTEMPT_DELAY`]).
    pub delay: Duration,
    /// An attempt's own limit, but the last's ([`ATTEMPT_TIMEOUT`]).
    pub attempt_timeout: Duration,
    /// When the handshake's time is up: every attempt ends by then.
    pub deadline: Instant,
}

impl Timing {
    /// The standard delays, with `deadline`.
    pub fn until(deadline: Instant) -> Timing {
        Timing {
            delay: ATTEMPT_DELAY,
            attempt_timeout: ATTEMPT_TIMEOUT,
            deadline,
        }
    }
}

/// The handshake ran out of time.
fn timed_out() -> SocketError {
    SocketError::coded("Opening handshake has timed out", "ETIMEDOUT")
}

/// `addrs` without repeats, the families alternating, starting with the first address's.
pub fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let mut unique: Vec<SocketAddr> = Vec::with_capacity(addrs.len());
    for a in addrs {
        if !unique.contains(&a) {
            unique.push(a);
        }
    }
    let Some(first_v6) = unique.first().map(SocketAddr::is_ipv6) else {
        return unique;
    };
    let (first, other): (Vec<SocketAddr>, Vec<SocketAddr>) =
        unique.iter().partition(|a| a.is_ipv6() == first_v6);
    let (mut first, mut other) = (first.into_iter(), other.into_iter());
    let mut out = Vec::with_capacity(unique.len());
    loop {
        match (first.next(), other.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
}

/// The error of one failed attempt, as Node.js words it: `connect ECONNREFUSED 10.0.0.1:443`
/// (`::1:443` for IPv6, unbracketed as Node writes it); for a failure with no errno name,
/// the system's text (`connect: ...`) rather than a made-up code.
fn attempt_error(e: &std::io::Error, addr: SocketAddr) -> SocketError {
    let mut err = io_error(e, "connect");
    if let Some(code) = errno_code(e) {
        err.message = format!("connect {code} {}:{}", addr.ip(), addr.port());
    }
    err
}

/// Keeps the error a total failure reports: the last one, unless it is a timeout and a
/// more specific one came before.
fn keep(best: &mut Option<SocketError>, e: SocketError) {
    let is_timeout = |e: &SocketError| e.code == Some("ETIMEDOUT");
    if best
        .as_ref()
        .is_none_or(|b| is_timeout(b) || !is_timeout(&e))
    {
        *best = Some(e);
    }
}

/// Connects to one of `addrs` (tried in this order; see the module's description) with
/// `connect`; the first connection made wins.
pub async fn race<S, C, F>(
    addrs: &[SocketAddr],
    timing: Timing,
    mut connect: C,
) -> Result<S, SocketError>
where
    C: FnMut(SocketAddr) -> F,
    F: Future<Output = std::io::Result<S>>,
{
    let mut attempts = FuturesUnordered::new();
    let mut started = 0;
    let mut next_at = Instant::now();
    let mut best: Option<SocketError> = None;
    loop {
        let now = Instant::now();
        if now >= timing.deadline {
            return Err(best
                .filter(|e| e.code != Some("ETIMEDOUT"))
                .unwrap_or_else(timed_out));
        }
        if started < addrs.len() && (attempts.is_empty() || now >= next_at) {
            let addr = addrs[started];
            started += 1;
            let limit = if started == addrs.len() {
                timing.deadline
            } else {
                (now + timing.attempt_timeout).min(timing.deadline)
            };
            log::trace!("socket: connecting to {addr}");
            let attempt = connect(addr);
            attempts.push(async move { (addr, tokio::time::timeout_at(limit, attempt).await) });
            next_at = now + timing.delay;
            continue;
        }
        if attempts.is_empty() {
            return Err(best.unwrap_or_else(|| {
                SocketError::coded("connect: no address to connect to", "ENOTFOUND")
            }));
        }
        let more = started < addrs.len();
        tokio::select! {
            biased;
            Some((addr, outcome)) = attempts.next() => match outcome {
                Ok(Ok(stream)) => return Ok(stream),
                Ok(Err(e)) => {
                    log::trace!("socket: {addr}: {e}");
                    keep(&mut best, attempt_error(&e, addr));
                    next_at = Instant::now();
                }
                Err(_) => {
                    log::trace!("socket: {addr}: no answer in time");
                    keep(&mut best, SocketError::coded(format!("connect ETIMEDOUT {addr}"), "ETIMEDOUT"));
                    next_at = Instant::now();
                }
            },
            _ = tokio::time::sleep_until(next_at), if more => {}
            _ = tokio::time::sleep_until(timing.deadline) => {}
        }
    }
}

/// Node's error for a failed lookup of `host`: `getaddrinfo CODE host`.
fn lookup_code(host: &str, code: &'static str) -> SocketError {
    SocketError::coded(format!("getaddrinfo {code} {host}"), code)
}

/// A failed lookup as Node reports it: `EAI_AGAIN` for a temporary failure (applications
/// retry it), else `ENOTFOUND`, as Node reports `EAI_NONAME` and `EAI_NODATA`.
fn lookup_error(host: &str, e: &std::io::Error) -> SocketError {
    if is_temporary(e) {
        lookup_code(host, "EAI_AGAIN")
    } else {
        lookup_code(host, "ENOTFOUND")
    }
}

/// Whether a lookup failed for now only. On Unix the standard library keeps only
/// getaddrinfo's text (`gai_strerror`): compared with that function's own text for
/// `EAI_AGAIN`, in whatever libc and locale this process has. On Windows the error is the
/// socket error itself, `WSATRY_AGAIN` (11002).
#[cfg(unix)]
fn is_temporary(e: &std::io::Error) -> bool {
    // SAFETY: gai_strerror returns a pointer to a static, NUL-terminated string for any code.
    let text = unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(libc::EAI_AGAIN)) };
    let text = text.to_string_lossy();
    !text.is_empty() && e.to_string().contains(&*text)
}

#[cfg(windows)]
fn is_temporary(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(11002)
}

#[cfg(not(any(unix, windows)))]
fn is_temporary(_: &std::io::Error) -> bool {
    false
}

/// Resolves `host` and connects to `port` on one of its addresses (see [`race`]), by
/// `deadline`.
pub async fn connect_host(
    host: &str,
    port: u16,
    deadline: Instant,
) -> Result<TcpStream, SocketError> {
    let addrs: Vec<SocketAddr> =
        tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| timed_out())?
            .map_err(|e| lookup_error(host, &e))?
            .collect();
    if addrs.is_empty() {
        return Err(lookup_code(host, "ENOTFOUND"));
    }
    let tcp = race(
        &interleave(addrs),
        Timing::until(deadline),
        TcpStream::connect,
    )
    .await?;
    tune(&tcp);
    Ok(tcp)
}

/// Idle time before TCP keep-alive probes start.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(60);
/// Time between keep-alive probes (the kernel's count of probes applies).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);

/// Every connection's TCP settings: no Nagle delay (frames go out as written), and TCP
/// keep-alive, so that a peer gone without a FIN (a crashed host, a NAT that forgot the
/// connection) is found by the kernel within minutes even on a connection that carries
/// nothing (a heartbeat, when asked for, finds it sooner).
pub fn tune(tcp: &TcpStream) {
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(KEEPALIVE_IDLE)
        .with_interval(KEEPALIVE_INTERVAL);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        log::debug!("socket: TCP keep-alive not set: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn attempt_errors_are_worded_as_node_words_them() {
        let e = |n: i32, addr: &str| {
            let err = attempt_error(&std::io::Error::from_raw_os_error(n), addr.parse().unwrap());
            (err.code.unwrap_or(""), err.message)
        };
        assert_eq!(
            e(libc::EINVAL, "[fe80::1]:9"),
            ("EINVAL", "connect EINVAL fe80::1:9".to_owned())
        );
        assert_eq!(e(libc::EPERM, "10.0.0.1:443").0, "EPERM");
        assert_eq!(e(libc::EACCES, "10.0.0.1:443").0, "EACCES");
        assert_eq!(e(libc::EHOSTUNREACH, "10.0.0.1:443").0, "EHOSTUNREACH");
        assert_eq!(e(libc::ENETUNREACH, "10.0.0.1:443").0, "ENETUNREACH");
        assert_eq!(e(libc::ENETDOWN, "10.0.0.1:443").0, "ENETDOWN");
        assert_eq!(
            e(libc::ECONNREFUSED, "[::1]:443").1,
            "connect ECONNREFUSED ::1:443"
        );
        // No errno name: the system's words, not a made-up code in the message.
        let other = attempt_error(
            &std::io::Error::other("no route"),
            "10.0.0.1:443".parse().unwrap(),
        );
        assert_eq!(other.code, Some("ERR_SOCKET"));
        assert_eq!(other.message, "connect: no route");
        let pipe = io_error(&std::io::ErrorKind::BrokenPipe.into(), "write");
        assert_eq!(pipe.code, Some("EPIPE"));
    }

    #[cfg(unix)]
    #[test]
    fn lookup_failures_as_node_names_them() {
        let gai = |text: &str| {
            let e = std::io::Error::other(format!("failed to lookup address information: {text}"));
            let err = lookup_error("relay.example", &e);
            (err.code, err.message)
        };
        // This libc's own words for EAI_AGAIN (glibc: "Temporary failure in name
        // resolution"; musl: "Try again").
        // SAFETY: as in `is_temporary`.
        let again = unsafe { std::ffi::CStr::from_ptr(libc::gai_strerror(libc::EAI_AGAIN)) };
        assert_eq!(
            gai(&again.to_string_lossy()),
            (
                Some("EAI_AGAIN"),
                "getaddrinfo EAI_AGAIN relay.example".to_owned()
            )
        );
        assert_eq!(
            gai("Name or service not known"),
            (
                Some("ENOTFOUND"),
                "getaddrinfo ENOTFOUND relay.example".to_owned()
            )
        );
    }

    #[tokio::test]
    async fn connections_get_keep_alive_and_no_delay() {
        let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = server.local_addr().unwrap().port();
        let deadline = Instant::now() + Duration::from_secs(5);
        let tcp = connect_host("127.0.0.1", port, deadline).await.unwrap();
        let sock = socket2::SockRef::from(&tcp);
        assert!(sock.keepalive().unwrap());
        // Windows sets the keep-alive times but cannot read them back.
        #[cfg(not(windows))]
        {
            assert_eq!(sock.tcp_keepalive_time().unwrap(), KEEPALIVE_IDLE);
            assert_eq!(sock.tcp_keepalive_interval().unwrap(), KEEPALIVE_INTERVAL);
        }
        assert!(tcp.nodelay().unwrap());
    }
    use std::collections::HashMap;
    use std::io::{Error, ErrorKind};
    use std::sync::{Arc, Mutex};

    /// What a fake address does when connected to.
    #[derive(Clone, Copy)]
    enum Fake {
        /// Never answers.
        BlackHole,
        /// Refuses at once.
        Refuses,
        /// Connects after this many ms.
        ConnectsAfter(u64),
    }

    fn v4(last: u8) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, last], 443))
    }

    fn v6(last: u16) -> SocketAddr {
        SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, last], 443))
    }

    /// A run of [`race`] over fake addresses.
    struct Run {
        /// The winner and when (ms after the start), or the error's message and when.
        outcome: Result<SocketAddr, String>,
        at_ms: u128,
        /// Each attempt's address and start (ms after the start).
        starts: Vec<(SocketAddr, u128)>,
        /// Attempts whose future was dropped unfinished.
        dropped: usize,
    }

    /// Counts its drops unless disarmed.
    struct Guard(Arc<Mutex<usize>>, bool);

    impl Drop for Guard {
        fn drop(&mut self) {
            if self.1 {
                if let Ok(mut n) = self.0.lock() {
                    *n += 1;
                }
            }
        }
    }

    async fn run(fakes: &[(SocketAddr, Fake)], deadline_ms: u64) -> Run {
        let t0 = Instant::now();
        let table: HashMap<SocketAddr, Fake> = fakes.iter().copied().collect();
        let order: Vec<SocketAddr> = fakes.iter().map(|(a, _)| *a).collect();
        let starts = Arc::new(Mutex::new(Vec::new()));
        let dropped = Arc::new(Mutex::new(0));
        let timing = Timing::until(t0 + Duration::from_millis(deadline_ms));
        let outcome = race(&order, timing, |addr| {
            if let Ok(mut s) = starts.lock() {
                s.push((addr, t0.elapsed().as_millis()));
            }
            let fake = table.get(&addr).copied().unwrap_or(Fake::Refuses);
            let guard = Guard(dropped.clone(), true);
            async move {
                // The whole guard moves in (not just the flag), so it drops with the attempt.
                let mut guard = guard;
                let result = match fake {
                    Fake::BlackHole => std::future::pending().await,
                    Fake::Refuses => Err(Error::from(ErrorKind::ConnectionRefused)),
                    Fake::ConnectsAfter(ms) => {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                        Ok(addr)
                    }
                };
                guard.1 = false;
                result
            }
        })
        .await
        .map_err(|e| e.message);
        let at_ms = t0.elapsed().as_millis();
        let starts = starts.lock().map(|s| s.clone()).unwrap_or_default();
        let dropped = dropped.lock().map(|n| *n).unwrap_or(0);
        Run {
            outcome,
            at_ms,
            starts,
            dropped,
        }
    }

    #[test]
    fn families_alternate_starting_with_the_first_listed() {
        assert_eq!(
            interleave(vec![v6(1), v6(2), v4(1), v4(2), v4(3)]),
            vec![v6(1), v4(1), v6(2), v4(2), v4(3)]
        );
        assert_eq!(
            interleave(vec![v4(1), v4(2), v6(1)]),
            vec![v4(1), v6(1), v4(2)]
        );
        assert_eq!(interleave(vec![v4(1), v4(1), v4(2)]), vec![v4(1), v4(2)]);
        assert_eq!(interleave(Vec::new()), Vec::<SocketAddr>::new());
    }

    #[tokio::test(start_paused = true)]
    async fn a_black_hole_costs_one_attempt_delay() {
        let r = run(
            &[(v6(1), Fake::BlackHole), (v4(1), Fake::ConnectsAfter(10))],
            30_000,
        )
        .await;
        assert_eq!(r.outcome, Ok(v4(1)));
        assert_eq!(r.starts, vec![(v6(1), 0), (v4(1), 250)]);
        assert_eq!(r.at_ms, 260);
        assert_eq!(
            r.dropped, 1,
            "the black hole's attempt is dropped once another wins"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_starts_the_next_attempt_at_once() {
        let r = run(
            &[(v6(1), Fake::Refuses), (v4(1), Fake::ConnectsAfter(5))],
            30_000,
        )
        .await;
        assert_eq!(r.outcome, Ok(v4(1)));
        assert_eq!(r.starts, vec![(v6(1), 0), (v4(1), 0)]);
        assert_eq!(r.at_ms, 5);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_first_address_keeps_going_while_others_start() {
        let r = run(
            &[
                (v6(1), Fake::ConnectsAfter(600)),
                (v4(1), Fake::BlackHole),
                (v6(2), Fake::BlackHole),
                (v4(2), Fake::BlackHole),
            ],
            30_000,
        )
        .await;
        assert_eq!(r.outcome, Ok(v6(1)));
        assert_eq!(r.starts, vec![(v6(1), 0), (v4(1), 250), (v6(2), 500)]);
        assert_eq!(r.at_ms, 600);
        assert_eq!(r.dropped, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_total_failure_reports_the_last_error() {
        let r = run(&[(v4(1), Fake::Refuses), (v4(2), Fake::Refuses)], 30_000).await;
        assert_eq!(
            r.outcome,
            Err("connect ECONNREFUSED 192.0.2.2:443".to_owned())
        );
        assert_eq!(r.starts, vec![(v4(1), 0), (v4(2), 0)]);
        assert_eq!(r.at_ms, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_more_telling_than_a_timeout() {
        // The black hole gives up after its own timeout; the refusal is what is reported.
        let r = run(&[(v6(1), Fake::BlackHole), (v4(1), Fake::Refuses)], 30_000).await;
        assert_eq!(
            r.outcome,
            Err("connect ECONNREFUSED 192.0.2.1:443".to_owned())
        );
        assert_eq!(r.starts, vec![(v6(1), 0), (v4(1), 250)]);
        assert_eq!(r.at_ms, ATTEMPT_TIMEOUT.as_millis());
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_address_gets_what_is_left_of_the_deadline() {
        let r = run(
            &[(v6(1), Fake::BlackHole), (v4(1), Fake::BlackHole)],
            30_000,
        )
        .await;
        assert_eq!(r.outcome, Err("Opening handshake has timed out".to_owned()));
        assert_eq!(r.starts, vec![(v6(1), 0), (v4(1), 250)]);
        assert_eq!(r.at_ms, 30_000);
    }

    #[tokio::test(start_paused = true)]
    async fn no_attempt_outlives_the_deadline() {
        let r = run(
            &[(v6(1), Fake::BlackHole), (v4(1), Fake::ConnectsAfter(1))],
            100,
        )
        .await;
        assert_eq!(r.outcome, Err("Opening handshake has timed out".to_owned()));
        assert_eq!(r.starts, vec![(v6(1), 0)]);
        assert_eq!(r.at_ms, 100);
        let r = run(&[(v4(1), Fake::ConnectsAfter(5_000))], 2_000).await;
        assert_eq!(r.outcome, Err("Opening handshake has timed out".to_owned()));
        assert_eq!(r.at_ms, 2_000);
    }

    #[tokio::test(start_paused = true)]
    async fn one_address_is_one_attempt() {
        let r = run(&[(v4(1), Fake::ConnectsAfter(40))], 30_000).await;
        assert_eq!(r.outcome, Ok(v4(1)));
        assert_eq!((r.starts.len(), r.at_ms, r.dropped), (1, 40, 0));
    }

    #[tokio::test]
    async fn connects_to_a_real_loopback_listener() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok();
        let port = listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port());
        let port = port.unwrap_or(1);
        let deadline = Instant::now() + Duration::from_secs(5);
        assert!(connect_host("127.0.0.1", port, deadline).await.is_ok());
        drop(listener);
        let refused = connect_host("127.0.0.1", port, deadline).await.err();
        assert_eq!(refused.and_then(|e| e.code), Some("ECONNREFUSED"));
    }
}
