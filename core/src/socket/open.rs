//! Opening a connection: the handshake, then the hand-over to the connection's own task,
//! so that the handshake's state is not kept for the connection's life.

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::Poll;

use crate::io::Prefixed;
use crate::socket::api::{Command, Event, EventSink, SocketOptions};
use crate::socket::error::SocketError;
use crate::socket::handshake::{self, ConnectOptions, Spare};
use crate::socket::shared::{Handle, Shared};
use crate::socket::task::{ConnectionTask, Driver};
use crate::test_hooks::{self, Site};

/// Starts connecting on the current tokio runtime. Events go to `sink`; the last is always
/// [`Event::Closed`].
pub fn connect(options: ConnectOptions, socket: SocketOptions, sink: Arc<dyn EventSink>) -> Handle {
    let handle = Handle::new(&socket);
    handle.start(options, socket, sink);
    handle
}

/// Whether the owner has closed or terminated the connection: while it is in its handshake,
/// that aborts it.
fn abort_pending(shared: &Shared) -> bool {
    let closing = shared
        .queue
        .lock()
        .map(|q| q.iter().any(|c| matches!(c, Command::Close { .. })))
        .unwrap_or(false);
    closing || shared.cancelled()
}

/// Completes when the owner closes or terminates a connection still in its handshake.
fn abort_requested(shared: &Shared) -> impl Future<Output = ()> + '_ {
    std::future::poll_fn(move |cx| {
        shared.register(cx.waker());
        if abort_pending(shared) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
}

pub(super) fn closed(sink: &dyn EventSink, code: u16, reason: Vec<u8>, shared: &Shared) {
    shared.finished.store(true, Ordering::SeqCst);
    sink.push(Event::Closed {
        code,
        reason,
        frame_received: shared.close_received.load(Ordering::SeqCst),
        frame_sent: shared.close_sent.load(Ordering::SeqCst),
    });
}

/// The owner's `then`, called once: with the handshake's outcome, or with `false` if the
/// handshake is dropped without one (its task panicked, the runtime is shutting down, or it
/// was spawned on a runtime already closed), so that nothing waits for it for good (a
/// listener's close waits for its accepts). Dropped, it runs wherever the drop happens, on
/// any thread, possibly before the close event or with none: it must not panic, block or
/// take a lock its caller may hold.
pub(super) struct Then(pub(super) Option<Box<dyn FnOnce(bool) + Send>>);

impl Then {
    fn call(&mut self, opened: bool) {
        if let Some(then) = self.0.take() {
            then(opened);
        }
    }
}

impl Drop for Then {
    fn drop(&mut self) {
        self.call(false);
    }
}

/// The handshake; once open, the connection runs as a task of its own, so that the
/// handshake's state is not kept for the connection's life.
pub(super) async fn run(
    options: ConnectOptions,
    socket: SocketOptions,
    sink: Arc<dyn EventSink>,
    shared: Arc<Shared>,
    spare: Option<Spare>,
    mut then: Then,
) {
    let sent = || sink.request_sent();
    let aborted = || {
        Err(SocketError::new(
            "WebSocket was closed before the connection was established",
            None,
        ))
    };
    let established = tokio::select! {
        r = handshake::connect_with(&options, spare, &sent) => r,
        _ = abort_requested(&shared) => aborted(),
    };
    // A close queued as the handshake completed came before the owner could see the open
    // event, so it aborts the handshake too, as ws's: no close frame goes out (the task would
    // have framed it, and the peer seen 1005 rather than the dropped connection).
    let established = match established {
        Ok(_) if abort_pending(&shared) => aborted(),
        other => other,
    };
    let established = match established {
        Ok(e) => e,
        Err(e) => {
            log::debug!("socket: connect failed: {}", e.message);
            sink.push(Event::Error(e));
            closed(&*sink, 1006, Vec::new(), &shared);
            then.call(false);
            return;
        }
    };
    let extensions = established
        .deflate
        .as_ref()
        .map(|a| a.params.format())
        .unwrap_or_default();
    sink.push(Event::Open {
        protocol: established.protocol,
        extensions,
    });
    then.call(true);
    let guard = (sink.clone(), shared.clone());
    // The first frames, if they came with the answer, are read by the first turn as any
    // read: a lone message (a server's greeting) then offers reading to the owner as one
    // read later would; decoded here, before the task ran, it never did.
    let task = ConnectionTask::new(
        Prefixed::stream(established.initial, established.stream),
        socket,
        sink,
        shared,
        established.deflate.as_ref(),
    );
    if let Some(watch) = established.watch {
        let _ = guard.1.watch.set(watch);
    }
    let conn = Arc::new(Mutex::new(task));
    // Only this connection sets it, once.
    let _ = guard.1.conn.set(Arc::downgrade(&conn));
    let driver = Driver {
        conn,
        sink: guard.0.clone(),
    };
    tokio::spawn(guarded(driver, guard.0, guard.1));
}

pin_project_lite::pin_project! {
    /// Runs one of a connection's tasks (its handshake, or the open connection) so that a
    /// panic in it (none is known) ends the connection as any failure does, with an error and
    /// a close (1006), rather than leaving its owner waiting for a close that never comes.
    ///
    /// A struct rather than an `async fn`: an `async fn` keeps its argument in its state
    /// besides the future it awaits (rustc #62958), which tripled the handshake's spawned
    /// future (4,696 bytes against `run`'s 1,544). The owner's thread allocates that future
    /// (`tokio::spawn` boxes it where it is called) and a tokio thread frees it after the
    /// handshake: a block that size, freed between the connection's long-lived allocations,
    /// left the JavaScript thread's heap holding kilobytes per connection that it could not
    /// reuse.
    pub(super) struct Guarded<F> {
        // `None` once it finished or panicked: dropped then, before the panic's events go out.
        #[pin]
        task: Option<F>,
        sink: Arc<dyn EventSink>,
        shared: Arc<Shared>,
        started: bool,
    }
}

/// `task`, guarded (see [`Guarded`]).
pub(super) fn guarded<F: Future<Output = ()>>(
    task: F,
    sink: Arc<dyn EventSink>,
    shared: Arc<Shared>,
) -> Guarded<F> {
    Guarded {
        task: Some(task),
        sink,
        shared,
        started: false,
    }
}

impl<F: Future<Output = ()>> Future for Guarded<F> {
    type Output = ();

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut this = self.project();
        let Some(task) = this.task.as_mut().as_pin_mut() else {
            return Poll::Ready(());
        };
        let first = !std::mem::replace(this.started, true);
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            if first {
                test_hooks::fire(Site::Socket);
            }
            task.poll(cx)
        }));
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(())) => {
                this.task.set(None);
                Poll::Ready(())
            }
            Err(_) => {
                // The connection's state goes first (its socket is shut down with it, unless
                // another thread holds it for a moment), as it would after any failure, and
                // only then its owner hears of the close. Dropping it runs code of its own
                // (the owner's `then`, see `Then`): a panic there too must not keep the close
                // from going out.
                let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    this.task.set(None);
                }));
                if dropped.is_err() {
                    log::error!("socket: internal error while dropping a failed connection");
                }
                log::error!("socket: internal error; the connection is dropped");
                if !this.shared.finished.load(Ordering::SeqCst) {
                    this.sink.push(Event::Error(SocketError::coded(
                        "internal error in the connection",
                        "ERR_INTERNAL",
                    )));
                    closed(&**this.sink, 1006, Vec::new(), this.shared);
                }
                // A panic in the open connection's poll skipped the end of its turn: the sink
                // may be holding these events back until then.
                this.sink.turn_end();
                Poll::Ready(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::socket::api::Ignore;

    /// A plain connection's options to `url`: no headers, protocols, proxy or extension.
    fn plain(url: String) -> ConnectOptions {
        ConnectOptions {
            url,
            headers: Vec::new(),
            protocols: Vec::new(),
            handshake_timeout: Duration::from_secs(30),
            ca: Vec::new(),
            proxy: None,
            deflate: None,
        }
    }

    /// Records what was pushed, and whether the guarded task's state was already dropped.
    struct Record(
        std::sync::Mutex<Vec<String>>,
        Arc<std::sync::atomic::AtomicBool>,
    );

    impl EventSink for Record {
        fn turn_end(&self) {
            self.0.lock().unwrap().push("turn_end".into());
        }

        fn push(&self, e: Event) {
            let dropped = self.1.load(Ordering::SeqCst);
            let what = match e {
                Event::Error(e) => format!("error {} dropped={dropped}", e.code.unwrap_or("")),
                Event::Closed { code, .. } => format!("closed {code} dropped={dropped}"),
                _ => "other".into(),
            };
            self.0.lock().unwrap().push(what);
        }
    }

    /// Sets its flag when dropped.
    struct Flag(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for Flag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// A guarded task that is pending once, then panics; the events it caused.
    fn panicking(finished: bool) -> Vec<String> {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let sink = Arc::new(Record(Default::default(), dropped.clone()));
        let shared = Arc::new(Shared::new(Duration::from_secs(1), usize::MAX));
        shared.finished.store(finished, Ordering::SeqCst);
        let flag = Flag(dropped);
        let mut polls = 0;
        let task = std::future::poll_fn(move |_| {
            let _held = &flag;
            polls += 1;
            if polls == 2 {
                panic!("a panic in a connection's task, as a test");
            }
            Poll::<()>::Pending
        });
        let mut spawned = Box::pin(guarded(task, sink.clone(), shared));
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        assert!(spawned.as_mut().poll(&mut cx).is_pending());
        assert!(
            spawned.as_mut().poll(&mut cx).is_ready(),
            "ready after the panic"
        );
        assert!(
            spawned.as_mut().poll(&mut cx).is_ready(),
            "and never polled again"
        );
        let events = sink.0.lock().unwrap().clone();
        events
    }

    /// The owner's `then` is called once whatever happens to the handshake: with `false`
    /// when it is dropped unstarted (its task panicked at its first poll) or unfinished.
    #[test]
    fn then_is_called_with_false_when_the_handshake_is_dropped() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let quiet = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        for polled in [false, true] {
            let called = Arc::new(std::sync::Mutex::new(Vec::new()));
            let record = called.clone();
            let then = Then(Some(Box::new(move |opened| {
                record.lock().unwrap().push(opened)
            })));
            // A listener that never answers: the handshake is under way when dropped.
            let options = plain(format!("ws://{}/", quiet.local_addr().unwrap()));
            let shared = Arc::new(Shared::new(Duration::from_secs(1), usize::MAX));
            let sink: Arc<dyn EventSink> = Arc::new(Ignore);
            let mut handshake = Box::pin(run(
                options,
                SocketOptions::default(),
                sink,
                shared,
                None,
                then,
            ));
            if polled {
                let _enter = rt.enter();
                let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
                assert!(handshake.as_mut().poll(&mut cx).is_pending());
                assert!(called.lock().unwrap().is_empty(), "no outcome yet");
            }
            drop(handshake);
            assert_eq!(*called.lock().unwrap(), vec![false], "polled: {polled}");
        }
    }

    /// A panic ends the connection as a failure does: its state dropped first (its socket
    /// with it), then an error and a close (1006), once; nothing if it had already closed.
    #[test]
    fn a_panic_drops_the_task_then_reports_an_error_and_a_close_once() {
        assert_eq!(
            panicking(false),
            vec![
                "error ERR_INTERNAL dropped=true",
                "closed 1006 dropped=true",
                "turn_end"
            ]
        );
        // The sink's turn is ended after the events, so that they are not held back.
        assert_eq!(panicking(true), vec!["turn_end"]);
    }

    /// The spawned handshake is the handshake plus the guard's few fields: an `async fn`
    /// guard had tripled it (see [`Guarded`]).
    #[test]
    fn the_guard_adds_only_its_fields() {
        let options = plain("ws://127.0.0.1:1/".into());
        let sink: Arc<dyn EventSink> = Arc::new(Ignore);
        let shared = Arc::new(Shared::new(Duration::from_secs(1), usize::MAX));
        let handshake = run(
            options,
            SocketOptions::default(),
            sink.clone(),
            shared.clone(),
            None,
            Then(None),
        );
        let alone = std::mem::size_of_val(&handshake);
        let spawned = guarded(handshake, sink, shared);
        let fields = 2 * std::mem::size_of::<Arc<dyn EventSink>>() + 8;
        assert!(
            std::mem::size_of_val(&spawned) <= alone + fields,
            "{} bytes guarded against {alone} alone",
            std::mem::size_of_val(&spawned)
        );
    }
}
