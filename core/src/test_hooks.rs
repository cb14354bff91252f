//! Test hooks: panics on demand, to prove that a panic in a connection or a listener ends
//! as an error on that object (an `'error'` and a close), never as an abort of the process
//! or a socket that never closes. Nothing here fires unless a test armed it (the napi side
//! arms hooks only when `HYCO_WS_RS_TEST_HOOKS=1` is set).

use std::sync::atomic::{AtomicBool, Ordering};

/// Where an armed panic fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    /// The next connection task (a socket's handshake or its open connection) to start.
    Socket,
    /// The next listener loop to start.
    Listener,
    /// The next socket whose reading the owner's thread takes over (inline reads), as it
    /// reads it for the first time.
    Inline,
}

static SOCKET: AtomicBool = AtomicBool::new(false);
static LISTENER: AtomicBool = AtomicBool::new(false);
static INLINE: AtomicBool = AtomicBool::new(false);

fn flag(site: Site) -> &'static AtomicBool {
    match site {
        Site::Socket => &SOCKET,
        Site::Listener => &LISTENER,
        Site::Inline => &INLINE,
    }
}

/// Makes the next task at `site` panic.
pub fn arm(site: Site) {
    flag(site).store(true, Ordering::SeqCst);
}

/// Panics if a test armed `site` (once per arming).
pub fn fire(site: Site) {
    if flag(site).swap(false, Ordering::SeqCst) {
        panic!("hyco-ws-rs test hook: a panic at {site:?}, as asked");
    }
}
