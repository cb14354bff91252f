'use strict';

/**
 * The listener: hyco-ws-rs's `new RelayedServer({ server, token })` (control channel and
 * accepted sockets in Rust; 'connection' fires once the socket is open) against a
 * hand-written plain ws 8 Hybrid Connections listener (a ws 8 control channel; on each
 * `{accept}` it opens `new WebSocket(accept.address)`, and its "connection" moment is that
 * socket's 'open'), both on the project's local relay emulator. Both listeners are in
 * `bench/support/listeners.js`. One run, interleaved rounds, medians.
 *
 * Usage: node bench/listener.js [rounds=3] [connections=1000]
 *        HYCO_BENCH_PREWARM=0 node bench/listener.js ...   (RelayedServer with prewarm: false)
 *
 *   rounds       rounds per listener kind and measure (default 3; the kind order rotates)
 *   connections  idle relayed connections held open for the memory measure (default
 *                1000); `node bench/listener.js 1 100` is a quick smoke run
 *
 * Process layout: the relay emulator always runs in a child process of its own
 * (`bench/support/relay-peer.js`). Each listener kind has a Hybrid Connection of its own
 * (`bench-rs`, `bench-ws`), so that exactly one listener serves each; the bench checks the
 * relay's listener count before each phase.
 *
 * Measures, for each listener kind:
 *   1. Connect time: from `new WebSocket(createRelaySendUri(ns, entity), { headers: {
 *      ServiceBusAuthorization }, perMessageDeflate: false })` (a plain ws 8 sender) to the
 *      listener-side 'connection' (RelayedServer) or accept-socket 'open' (ws 8 listener).
 *      Both listeners run in THIS process, the relay in its child. The senders run in two
 *      layouts, one after the other:
 *        - apart (the target's figure): in a child process of their own
 *          (`bench/support/connect-sender-peer.js`), as in a deployment, where a sender never
 *          shares the listener's JavaScript thread. Both ends are taken on the machine's
 *          monotonic clock (`process.hrtime`), which is one clock for every process.
 *        - together: in THIS process. The sender's own handshake work then shares the
 *          listener's JavaScript thread, and it lands unevenly: the ws 8 listener reads its
 *          accept socket's 101 on that thread, before the relay has even answered the
 *          sender, so the sender's 'open' comes after the ws listener's connection; the
 *          RelayedServer's socket reads its 101 on a Rust thread and the event reaches
 *          JavaScript a thread hop later, by when the sender's 101 is there too and is
 *          handled first (about 0.1 ms on this machine). Reported for comparison.
 *      200 sequential connects per kind and layout, split across the rounds, alternating
 *      kinds connect by connect (the order rotates), after 50 untimed connects per kind and
 *      layout; p50 and p99 over all of them. The sender's own 'open' time is reported too,
 *      for context. Each connection then proves itself with an echo (not timed): the sender sends
 *      16 bytes starting with its number `n` (also in its address's query, which the listener
 *      sees), the listener checks the number and echoes, the sender compares; then the sender
 *      closes (1000) and the bench waits for both ends' 'close' (the listener side must see
 *      1000) before the next connect.
 *   2. Memory per idle relayed connection: the listener under test runs alone in a FRESH child
 *      process per kind and round (`bench/support/listener-peer.js`, with `--expose-gc`); the
 *      senders are plain ws 8 clients in this process. Once the control channel is online,
 *      20 connections are opened, echoed and closed (warm-up), then the child collects garbage
 *      and reads `process.memoryUsage()` (before). This process opens `connections` senders in
 *      batches of 100 (each batch waits for every 'open'), the child confirms that as many
 *      are open on its side, everything idles for 1 s, and the child collects garbage and
 *      reads memory again (after). Per connection: (after - before) / connections, for rss
 *      (the whole process, Rust threads and allocations included), heapUsed and external
 *      (V8's view; Rust's own allocations are not in it). Then every connection is proven
 *      with an echo, the listener closes (RelayedServer's `close()`; the ws 8 listener closes
 *      its control channel with 1000 and each socket with 1001, as RelayedServer does), every
 *      sender must see the close, and the child must then exit by itself once this process
 *      disconnects from it (nothing of the listener may keep it alive).
 *
 * Prints one table (RelayedServer, ws 8 listener, their ratio, the target) and a markdown
 * section for bench/RESULTS.md between clearly marked lines. Targets: RelayedServer / ws 8
 * at most 0.7x the connect p50 and at most 0.3x the RSS per connection (PASS/BELOW).
 * Progress and per-round figures go to stderr. Exits 1 if anything fails a check (each is
 * listed under "FAILED CHECKS"); the figures are still printed when they were measured.
 *
 * File descriptors: with the default 1,000 connections the run holds about 4,000 at once
 * (1,000 senders here, 1,000 accept sockets in the listener child, 2,000 plus the control
 * channels in the relay child). Node cannot raise its own limit, so the bench reads the
 * soft limit (`ulimit -n`, from /proc/self/limits), warns when a process may need more, and
 * says so plainly when connections fail with EMFILE.
 */

const fs = require('fs');
const path = require('path');
const { fork } = require('child_process');
const { once } = require('events');
const { performance } = require('perf_hooks');

const { createRelaySendUri, createRelayToken, WebSocket } = require('..');
const { median, percentile } = require('./support/stats');
const { addonStamp, machine, markdownTable, table } = require('./support/report');
const { KINDS, startListener, isFdExhaustion, withTimeout } = require('./support/listeners');
const { monoMs, opened: openedWithin, runMain } = require('./support/run');
const { closeAll, closeSocket, closed, openSender, probe } = require('./support/senders');

const USAGE = 'Usage: node bench/listener.js [rounds=3] [connections=1000]';
const RELAY_SCRIPT = path.join(__dirname, 'support', 'relay-peer.js');
const LISTENER_SCRIPT = path.join(__dirname, 'support', 'listener-peer.js');
const SENDER_SCRIPT = path.join(__dirname, 'support', 'connect-sender-peer.js');
const ADDON = path.join(__dirname, '..', 'hyco-ws-rs.linux-x64-gnu.node');

/** The listener kinds, in their first round's order. */
const KIND_ORDER = ['rs', 'ws'];

/**
 * Where the connect measure's senders run: `apart`, in a process of their own (as in a
 * deployment; the target applies to it), and `together`, in this process, sharing the
 * listener's JavaScript thread.
 */
const LAYOUTS = ['apart', 'together'];

const CONNECTS = 200;
const CONNECT_WARMUP = 50;
const BATCH = 100;
const WARM_CONNECTIONS = 20;
/** Sender numbers of warm-up connections start here, apart from the measured ones. */
const WARM_BASE = 1000000;
const SETTLE_MS = 1000;

const TARGETS = { connectP50: 0.7, rssPerConnection: 0.3 };

const STEP_TIMEOUT_MS = 10000;
const START_TIMEOUT_MS = 20000;
const BATCH_TIMEOUT_MS = 15000;
const LISTENER_CLOSE_TIMEOUT_MS = 15000;
const SENDER_CLOSE_TIMEOUT_MS = 10000;
const EXIT_TIMEOUT_MS = 5000;
const RELAY_SETTLE_MS = 3000;
const IPC_TIMEOUT_MS = 30000;

/** Every child process, so that all of them are stopped whatever happens. */
const children = new Set();
/** Checks that failed, in the order seen. */
const failures = [];

/**
 * Records a failed check (the run goes on; it exits 1 at the end).
 *
 * @param {String} message What failed
 */
function fail(message) {
  failures.push(message);
  console.error(`  CHECK FAILED: ${message}`);
}

/**
 * Reads `[rounds] [connections]` from argv.
 *
 * @return {({rounds: Number, connections: Number}|null)} The arguments, or `null` when invalid
 */
function parseArgs() {
  const [r, c] = process.argv.slice(2);
  const rounds = r === undefined ? 3 : Number(r);
  const connections = c === undefined ? 1000 : Number(c);
  if (!Number.isInteger(rounds) || rounds < 1) return null;
  if (!Number.isInteger(connections) || connections < 1) return null;
  return { rounds, connections };
}

/**
 * Resolves after `ms` milliseconds.
 *
 * @param {Number} ms Milliseconds
 * @return {Promise<void>}
 */
function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * The kinds in round `r`'s order (rotated by one each round).
 *
 * @param {Number} r The round
 * @return {String[]} The kinds
 */
function roundOrder(r) {
  const k = r % KIND_ORDER.length;
  return [...KIND_ORDER.slice(k), ...KIND_ORDER.slice(0, k)];
}

/**
 * This process's soft limit on open files (what `ulimit -n` says; children inherit it).
 *
 * @return {?Number} The limit, or `null` when unknown or unlimited
 */
function fdLimit() {
  try {
    const line = fs.readFileSync('/proc/self/limits', 'utf8').split('\n').find((l) => l.startsWith('Max open files'));
    const soft = Number(line.trim().split(/\s+/)[3]);
    return Number.isFinite(soft) ? soft : null;
  } catch {
    return null;
  }
}

/**
 * The plain message for running out of file descriptors.
 *
 * @param {Number} connections Connections asked for
 * @return {String} The message
 */
function fdAdvice(connections) {
  const limit = fdLimit();
  return `out of file descriptors (EMFILE). ${connections} idle connections need about ${4 * connections} ` +
    `descriptors in all and about ${2 * connections + 50} in the relay process alone (the most of any process); ` +
    `the soft limit here is ${limit === null ? 'unknown' : limit}. Raise it (\`ulimit -n ${Math.max(8192, 4 * connections)}\`) ` +
    'in the shell that runs the bench, or pass fewer connections.';
}

/**
 * Forks `script` and waits for its first message carrying `readyKey`.
 *
 * @param {String} script The script
 * @param {String[]} args Its arguments
 * @param {String[]} execArgv Node options for it
 * @param {String} name Its name, for messages
 * @param {?Object} startMessage Sent right after the fork, if any
 * @param {String} readyKey The key of the message that says it is ready
 * @return {Promise<{child: ChildProcess, info: Object}>} The child and that message's value
 */
async function startChild(script, args, execArgv, name, startMessage, readyKey) {
  const child = fork(script, args, { execArgv, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.benchName = name;
  child.stopping = false;
  children.add(child);
  child.once('exit', (code, signal) => {
    children.delete(child);
    if (!child.stopping) fail(`${name}: the process exited unexpectedly (${signal || code})`);
  });
  const ready = new Promise((resolve, reject) => {
    child.on('message', (msg) => {
      if (msg && msg[readyKey]) resolve(msg[readyKey]);
      else if (msg && msg.failed) {
        const e = new Error(`${name} failed to start: ${msg.failed.message}`);
        e.fdExhausted = msg.failed.fdExhausted;
        reject(e);
      }
    });
    child.once('error', reject);
    child.once('exit', (code, signal) => reject(new Error(`${name} exited (${signal || code}) before it was ready`)));
  });
  if (startMessage) child.send(startMessage);
  try {
    const info = await withTimeout(ready, START_TIMEOUT_MS, `${name} to start`);
    return { child, info };
  } catch (err) {
    await killChild(child);
    throw err;
  }
}

/**
 * Kills a child process that is still running and waits for its exit.
 *
 * @param {ChildProcess} child The child
 * @return {Promise<void>}
 */
async function killChild(child) {
  child.stopping = true;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGKILL');
  await exited;
}

/**
 * Asks a child process to finish (it exits when the IPC channel closes) and waits for its
 * exit; kills it if it does not exit in time.
 *
 * @param {ChildProcess} child The child
 * @return {Promise<void>}
 */
async function stopChild(child) {
  child.stopping = true;
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  if (child.connected) child.disconnect();
  try {
    await withTimeout(exited, EXIT_TIMEOUT_MS, `${child.benchName} to exit`);
  } catch {
    await killChild(child);
  }
}

let nextRequestId = 1;

/**
 * Sends `{ [type]: { id, ...body } }` to a child and waits for the answer carrying that id
 * (`{ reply: { id, ... } }` from the listener peer, `{ stats: { id, ... } }` from the relay).
 *
 * @param {ChildProcess} child The child
 * @param {String} type The request type
 * @param {Object} body The request
 * @param {String} replyKey The key of the answer
 * @param {Number} [timeoutMs] How long to wait
 * @return {Promise<Object>} The answer
 */
function request(child, type, body, replyKey, timeoutMs = IPC_TIMEOUT_MS) {
  const id = nextRequestId++;
  const answer = new Promise((resolve, reject) => {
    const onMessage = (msg) => {
      if (msg && msg[replyKey] && msg[replyKey].id === id) {
        cleanup();
        resolve(msg[replyKey]);
      }
    };
    const onExit = (code, signal) => {
      cleanup();
      reject(new Error(`${child.benchName} exited (${signal || code}) before answering '${type}'`));
    };
    const cleanup = () => {
      child.removeListener('message', onMessage);
      child.removeListener('exit', onExit);
    };
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
  child.send(type === 'stats' ? { stats: id } : { [type]: { id, ...body } });
  return withTimeout(answer, timeoutMs, `${child.benchName} to answer '${type}'`);
}

/**
 * Starts the relay child.
 *
 * @return {Promise<Object>} `{ child, namespace, keyName, key, pid }`
 */
async function startRelay() {
  const { child, info } = await startChild(RELAY_SCRIPT, [], [], 'the relay process', null, 'ready');
  return { child, ...info };
}

/**
 * The relay's stats and event counts.
 *
 * @param {Object} relay The relay (see `startRelay`)
 * @return {Promise<Object>} `{ hybridConnections, listeners, pendingAccepts, connections,
 *     bufferedBytes, events, fdErrors, firstFdError }`
 */
function relayStats(relay) {
  return request(relay.child, 'stats', null, 'stats');
}

/**
 * Waits until the relay holds no relayed connection, no pending accept and exactly
 * `listeners` control channels; fails a check if it does not get there in time.
 *
 * @param {Object} relay The relay (see `startRelay`)
 * @param {Number} listeners Control channels expected
 * @param {String} when When this is, for the message
 * @return {Promise<Object>} The last stats
 */
async function settleRelay(relay, listeners, when) {
  const deadline = performance.now() + RELAY_SETTLE_MS;
  for (;;) {
    const s = await relayStats(relay);
    if (s.connections === 0 && s.pendingAccepts === 0 && s.listeners === listeners) return s;
    if (performance.now() > deadline) {
      fail(`${when}: after ${RELAY_SETTLE_MS} ms the relay still counts ${s.connections} relayed connection(s), ` +
        `${s.pendingAccepts} pending accept(s) and ${s.listeners} control channel(s) (expected 0, 0, ${listeners})`);
      return s;
    }
    await sleep(50);
  }
}

/**
 * The send address and token of a kind's Hybrid Connection.
 *
 * @param {Object} relay The relay (see `startRelay`)
 * @param {String} kind `rs` or `ws`
 * @return {{uri: Function, token: String}} `uri(n)` gives sender `n`'s address
 */
function sendTarget(relay, kind) {
  const { entity } = KINDS[kind];
  const base = createRelaySendUri(relay.namespace, entity);
  // The token's resource has no query: one token serves every sender number.
  const token = createRelayToken(base, relay.keyName, relay.key);
  return { uri: (n) => createRelaySendUri(relay.namespace, `${entity}?n=${n}`), token };
}

/**
 * Resolves when `ws` is open; rejects on an error (marked `fdExhausted` when it is the
 * process running out of file descriptors) or a close before that (`support/run.js`'s
 * `opened()`, which removes its listeners once it settles).
 *
 * @param {WebSocket} ws The socket
 * @param {String} what The socket's role, for messages
 * @param {Number} [timeoutMs] How long to wait
 * @return {Promise<void>}
 */
function opened(ws, what, timeoutMs = STEP_TIMEOUT_MS) {
  return openedWithin(ws, what, timeoutMs, (e, err) => {
    e.fdExhausted = isFdExhaustion(err);
  });
}

/**
 * Measure 1: sequential connects to both listeners (in this process), first from senders
 * in a process of their own, then from senders in this process.
 *
 * @param {Object} relay The relay (see `startRelay`)
 * @param {Number} rounds Rounds
 * @return {Promise<Object>} `{ apart: { rs: [{us, senderUs}], ws: [...], perRound },
 *     together: { ... }, closeMs }`
 */
async function measureConnect(relay, rounds) {
  const opens = new Map(); // n -> resolve(t) at the listener-side 'connection'/'open'
  const closes = new Map(); // n -> resolve(code) at the listener-side 'close'
  const hooks = {
    connection: (ws, n, t) => {
      const resolve = opens.get(n);
      if (resolve) {
        opens.delete(n);
        resolve(t);
      } else {
        fail(`connect: a listener-side connection for sender ${n}, which is not waiting for one`);
      }
    },
    closed: (ws, n, code) => {
      const resolve = closes.get(n);
      if (resolve) {
        closes.delete(n);
        resolve(code);
      } else {
        fail(`connect: the listener side of sender ${n} closed (${code}) unasked`);
      }
    },
    problem: (message) => fail(`connect: ${message}`)
  };
  const listeners = {};
  let senderChild = null;
  try {
    senderChild = (await startChild(SENDER_SCRIPT, [], [], 'the sender process', null, 'ready')).child;
    for (const kind of KIND_ORDER) listeners[kind] = await startListener(kind, relay, hooks);
    await settleRelay(relay, KIND_ORDER.length, 'before the connects');
    const targets = Object.fromEntries(KIND_ORDER.map((k) => [k, sendTarget(relay, k)]));
    let nextN = 0;

    /**
     * Connects once to `kind`'s listener from a sender in this process and times it;
     * proves the connection with an echo, closes it and waits for both ends.
     *
     * @param {String} kind `rs` or `ws`
     * @param {Number} n The sender's number
     * @param {String} what The connect, for messages
     * @return {Promise<{us: Number, senderUs: Number}>} Microseconds from the constructor
     *     to the listener-side connection, and to the sender's 'open'
     */
    const connectHere = async (kind, n, what) => {
      const listenerOpen = new Promise((resolve) => opens.set(n, resolve));
      const listenerClosed = new Promise((resolve) => closes.set(n, resolve));
      let tSender = 0;
      const t0 = monoMs();
      const ws = openSender(targets[kind].uri(n), targets[kind].token);
      ws.once('open', () => {
        tSender = monoMs();
      });
      try {
        const [tListener] = await withTimeout(
          Promise.all([listenerOpen, opened(ws, what)]),
          STEP_TIMEOUT_MS,
          `${what}: the listener-side connection`
        );
        const result = { us: (tListener - t0) * 1000, senderUs: (tSender - t0) * 1000 };
        await probe(ws, n, what, STEP_TIMEOUT_MS);
        ws.close(1000);
        const [code] = await withTimeout(Promise.all([listenerClosed, closed(ws)]), STEP_TIMEOUT_MS, `${what}: both ends to close`);
        if (code !== 1000) fail(`${what}: the listener side closed with ${code}, the sender sent 1000`);
        return result;
      } finally {
        await closeSocket(ws, SENDER_CLOSE_TIMEOUT_MS);
      }
    };

    /**
     * The same from a sender in the sender process: it takes the start on the monotonic
     * clock, proves and closes the connection, and answers only after that, so nothing
     * reaches this process's JavaScript thread but the listener's own work while a
     * connect is timed.
     *
     * @param {String} kind `rs` or `ws`
     * @param {Number} n The sender's number
     * @param {String} what The connect, for messages
     * @return {Promise<{us: Number, senderUs: Number}>} As `connectHere`
     */
    const connectApart = async (kind, n, what) => {
      const listenerOpen = new Promise((resolve) => opens.set(n, resolve));
      const listenerClosed = new Promise((resolve) => closes.set(n, resolve));
      const done = request(senderChild, 'connect', { uri: targets[kind].uri(n), token: targets[kind].token, n }, 'done', 3 * STEP_TIMEOUT_MS);
      const [tListener, answer] = await withTimeout(Promise.all([listenerOpen, done]), 3 * STEP_TIMEOUT_MS, `${what}: the connection`);
      if (answer.error) throw new Error(`${what}: ${answer.error}`);
      const code = await withTimeout(listenerClosed, STEP_TIMEOUT_MS, `${what}: the listener side to close`);
      if (code !== 1000 || answer.code !== 1000) {
        fail(`${what}: the listener side closed with ${code} and the sender saw ${answer.code}; the sender sent 1000`);
      }
      return { us: (tListener - answer.t0) * 1000, senderUs: answer.openMs * 1000 };
    };

    /**
     * One connect of `kind` in `layout`.
     *
     * @param {String} layout `apart` or `together`
     * @param {String} kind `rs` or `ws`
     * @return {Promise<{us: Number, senderUs: Number}>} As `connectHere`
     */
    const connectOnce = async (layout, kind) => {
      const n = nextN++;
      const what = `${KINDS[kind].label}, connect ${n} (sender ${layout === 'apart' ? 'in its own process' : 'here'})`;
      try {
        return await (layout === 'apart' ? connectApart : connectHere)(kind, n, what);
      } finally {
        opens.delete(n);
        closes.delete(n);
      }
    };

    const res = {};
    for (const layout of LAYOUTS) {
      for (let i = 0; i < CONNECT_WARMUP; i++) for (const kind of KIND_ORDER) await connectOnce(layout, kind);
      const out = { rs: [], ws: [], perRound: { rs: [], ws: [] } };
      const perRound = Math.ceil(CONNECTS / rounds);
      for (let r = 0; r < rounds; r++) {
        const mine = { rs: [], ws: [] };
        const count = Math.min(perRound, CONNECTS - r * perRound);
        for (let i = 0; i < count; i++) {
          for (const kind of roundOrder(r + i)) mine[kind].push(await connectOnce(layout, kind));
        }
        for (const kind of KIND_ORDER) {
          out[kind].push(...mine[kind]);
          if (mine[kind].length) out.perRound[kind].push(percentile(mine[kind].map((x) => x.us), 50) / 1000);
        }
      }
      console.error(`  connect, sender ${layout}, x ${CONNECTS} per kind (${rounds} round(s)), p50 ms per round: ` +
        KIND_ORDER.map((k) => `${k} [${out.perRound[k].map((x) => x.toFixed(2)).join(' ')}]`).join(', ') +
        `; max ms: ${KIND_ORDER.map((k) => `${k} ${(Math.max(...out[k].map((x) => x.us)) / 1000).toFixed(2)}`).join(', ')}`);
      res[layout] = out;
    }

    // Everything is back to where it started: no sockets, no errors, no strays.
    for (const kind of KIND_ORDER) {
      const l = listeners[kind];
      const s = l.state();
      if (s.open) fail(`connect: ${l.label} still holds ${s.open} open socket(s) after the last close`);
      if (s.errors) fail(`connect: ${l.label}: ${s.errors} socket error(s), first: ${s.errorMessages.join('; ')}`);
      if (s.acceptFailures) fail(`connect: ${l.label}: ${s.acceptFailures} failed accept handshake(s)`);
      if (s.mismatches) fail(`connect: ${l.label}: ${s.mismatches} probe(s) reached the wrong connection`);
      const expected = LAYOUTS.length * (CONNECTS + CONNECT_WARMUP);
      if (s.accepted !== expected) fail(`connect: ${l.label} accepted ${s.accepted} connections, ${expected} were made`);
      if (kind === 'rs' && l.server.clients.size) fail(`connect: RelayedServer.clients still holds ${l.server.clients.size} socket(s)`);
    }
    await settleRelay(relay, KIND_ORDER.length, 'after the connects');

    res.closeMs = {};
    for (const kind of KIND_ORDER) {
      const c = await listeners[kind].close(LISTENER_CLOSE_TIMEOUT_MS);
      res.closeMs[kind] = c.ms;
      if (!c.clean) fail(`connect: ${listeners[kind].label}'s close did not finish within ${LISTENER_CLOSE_TIMEOUT_MS} ms`);
      delete listeners[kind];
    }
    await settleRelay(relay, 0, 'after closing the connect listeners');
    return res;
  } finally {
    for (const l of Object.values(listeners)) await l.close(LISTENER_CLOSE_TIMEOUT_MS);
    if (senderChild) await stopChild(senderChild);
  }
}

/**
 * Opens one sender per number in `ns` to `kind`'s listener, in batches of `BATCH` (each
 * batch waits for every 'open').
 *
 * @param {Object} relay The relay (see `startRelay`), for the diagnosis of a failure
 * @param {Object} target See `sendTarget`
 * @param {Number[]} ns The sender numbers
 * @param {String} what For messages
 * @param {Number} connections The measure's connection count, for the EMFILE advice
 * @return {Promise<WebSocket[]>} The open senders
 */
async function openMany(relay, target, ns, what, connections) {
  const all = [];
  for (let i = 0; i < ns.length; i += BATCH) {
    const batch = ns.slice(i, i + BATCH).map((n) => {
      const ws = openSender(target.uri(n), target.token);
      all.push(ws);
      return opened(ws, `${what}, sender ${n}`, BATCH_TIMEOUT_MS);
    });
    const results = await Promise.allSettled(batch);
    const failed = results.filter((x) => x.status === 'rejected');
    if (failed.length) {
      const fd = failed.some((x) => x.reason.fdExhausted);
      const first = failed[0].reason.message;
      let relayState = '';
      try {
        const s = await relayStats(relay);
        relayState = `; the relay counts ${s.connections} relayed connection(s), ${s.pendingAccepts} pending accept(s)`;
      } catch (e) {
        relayState = `; the relay did not answer: ${e.message}`;
      }
      const limit = fdLimit();
      // The relay's accept() failing with EMFILE is not reported to JavaScript: its senders
      // just wait in the kernel's backlog until they time out. Say so when the limit is short.
      const short = !fd && limit !== null && limit < 2 * connections + 100;
      const err = new Error(`${what}: ${failed.length} of ${batch.length} senders in the batch from ${i} failed to open ` +
        `(${all.length - failed.length} open so far); first: ${first}${relayState}` +
        (fd ? `\n  ${fdAdvice(connections)}` : '') +
        (short ? `\n  Most likely the relay process ran out of file descriptors (its accept() fails with EMFILE, which ` +
          `the emulator does not report to JavaScript; the senders wait in the backlog): ${fdAdvice(connections)}` : ''));
      err.fdExhausted = fd || short;
      throw err;
    }
  }
  return all;
}

/**
 * Measure 2, one round for one kind: a fresh listener child, `connections` idle senders,
 * memory before and after, then the close and the child's own exit.
 *
 * @param {Object} relay The relay (see `startRelay`)
 * @param {String} kind `rs` or `ws`
 * @param {Number} connections Connections
 * @return {Promise<Object>} The round's figures
 */
async function memoryRound(relay, kind, connections) {
  const { label } = KINDS[kind];
  const target = sendTarget(relay, kind);
  const name = `the ${label} child`;
  const relayInfo = { namespace: relay.namespace, keyName: relay.keyName, key: relay.key };
  const { child, info } = await startChild(LISTENER_SCRIPT, [kind], ['--expose-gc'], name, { start: relayInfo }, 'online');
  child.on('message', (msg) => {
    if (msg && msg.problem) fail(`memory, ${msg.problem}`);
  });
  const ask = (type, body, timeoutMs) => request(child, type, body, 'reply', timeoutMs);
  let senders = [];
  try {
    if (!info.gc) fail(`${name} runs without --expose-gc: memory figures include garbage`);
    await settleRelay(relay, 1, `${label}, before the memory round`);

    // Warm-up: exercise the accept path once, then leave nothing open.
    const warmNs = Array.from({ length: WARM_CONNECTIONS }, (_, i) => WARM_BASE + i);
    const warm = await openMany(relay, target, warmNs, `${label} warm-up`, connections);
    await Promise.all(warm.map((ws, i) => probe(ws, warmNs[i], `${label} warm-up ${warmNs[i]}`, STEP_TIMEOUT_MS)));
    await Promise.all(warm.map((ws) => closeSocket(ws, SENDER_CLOSE_TIMEOUT_MS)));
    const drained = await ask('waitOpen', { count: 0, timeoutMs: STEP_TIMEOUT_MS });
    if (!drained.ok) fail(`${label}: ${drained.state.open} warm-up socket(s) still open on the listener side`);
    await sleep(SETTLE_MS);

    const before = await ask('measure', { reset: true });
    const t0 = performance.now();
    const ns = Array.from({ length: connections }, (_, i) => i);
    senders = await openMany(relay, target, ns, label, connections);
    const openMs = performance.now() - t0;
    const w = await ask('waitOpen', { count: connections, timeoutMs: BATCH_TIMEOUT_MS }, BATCH_TIMEOUT_MS + 5000);
    if (!w.ok) {
      throw new Error(`${label}: all ${connections} senders are open, but the listener holds ${w.state.open} ` +
        `connection(s) after ${BATCH_TIMEOUT_MS} ms (${w.state.errors} error(s): ${w.state.errorMessages.join('; ')})` +
        (w.state.fdExhausted ? `\n  ${fdAdvice(connections)}` : ''));
    }
    await sleep(SETTLE_MS);
    const after = await ask('measure', {});
    const s = after.state;
    if (s.accepted !== connections) fail(`${label}: the listener accepted ${s.accepted} connections, ${connections} were made`);
    if (s.distinct !== connections || s.duplicates) {
      fail(`${label}: the listener saw ${s.distinct} distinct sender numbers and ${s.duplicates} duplicate(s), expected ${connections} and 0`);
    }
    const rs = await relayStats(relay);
    if (rs.connections !== connections) fail(`${label}: the relay counts ${rs.connections} relayed connections, expected ${connections}`);

    // Every connection still works end to end (after the measurement, so that it measured idle sockets).
    await Promise.all(senders.map((ws, i) => probe(ws, i, `${label}, sender ${i}`, STEP_TIMEOUT_MS)));

    // The listener closes; every sender must see it (1001), and the child must then end by itself.
    const senderCodes = senders.map((ws) => closed(ws));
    const c = await ask('close', { timeoutMs: LISTENER_CLOSE_TIMEOUT_MS }, LISTENER_CLOSE_TIMEOUT_MS + IPC_TIMEOUT_MS);
    if (!c.close.clean) {
      fail(`${label}: closing the listener with ${connections} connections did not finish within ` +
        `${LISTENER_CLOSE_TIMEOUT_MS} ms (${c.close.left} listener-side socket(s) still open)`);
    }
    let codes = null;
    try {
      codes = await withTimeout(Promise.all(senderCodes), SENDER_CLOSE_TIMEOUT_MS, `${label}: every sender to see the close`);
    } catch {
      const left = senders.filter((ws) => ws.readyState !== WebSocket.CLOSED).length;
      fail(`${label}: ${left} of ${connections} senders had not seen the listener's close ${SENDER_CLOSE_TIMEOUT_MS} ms after it`);
    }
    const codeCounts = {};
    if (codes) for (const code of codes) codeCounts[code] = (codeCounts[code] || 0) + 1;
    if (codes && codeCounts[1001] !== connections) {
      fail(`${label}: senders saw close codes ${JSON.stringify(codeCounts)}, expected ${connections} x 1001`);
    }
    const cs = c.state;
    if (cs.mismatches) fail(`${label}: ${cs.mismatches} probe(s) reached the wrong connection`);
    if (cs.errors) fail(`${label}: ${cs.errors} error(s) on the listener side, first: ${cs.errorMessages.join('; ')}`);
    if (cs.acceptFailures) fail(`${label}: ${cs.acceptFailures} failed accept handshake(s)`);

    // Nothing of the listener may keep its process alive once it is closed.
    child.stopping = true;
    const exited = child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : once(child, 'exit');
    const t1 = performance.now();
    child.disconnect();
    let exitMs = null;
    try {
      await withTimeout(exited, EXIT_TIMEOUT_MS, `${name} to exit`);
      exitMs = performance.now() - t1;
      if (child.exitCode !== 0) fail(`${name} exited with ${child.signalCode || child.exitCode} after the close`);
    } catch {
      fail(`${name} did not exit by itself within ${EXIT_TIMEOUT_MS} ms of the close and the IPC disconnect: ` +
        'something still holds its event loop; killed');
      await killChild(child);
    }
    await settleRelay(relay, 0, `${label}, after the memory round`);

    const per = (key, m) => (m[key] - before.memory[key]) / connections;
    return {
      rssBefore: before.memory.rss,
      heapBefore: before.memory.heapUsed,
      rss: per('rss', after.memory),
      heapUsed: per('heapUsed', after.memory),
      heapTotal: per('heapTotal', after.memory),
      external: per('external', after.memory),
      arrayBuffers: per('arrayBuffers', after.memory),
      heapLeft: per('heapUsed', c.memory),
      rssLeft: per('rss', c.memory),
      openMs,
      closeMs: c.close.ms,
      exitMs
    };
  } finally {
    await Promise.all(senders.map((ws) => closeSocket(ws, SENDER_CLOSE_TIMEOUT_MS)));
    if (children.has(child)) await killChild(child);
  }
}





/**
 * A verdict against an at-most target.
 *
 * @param {Number} ratio RelayedServer / ws 8
 * @param {Number} target The target
 * @return {String} `PASS (<= 0.7x)` or `BELOW (<= 0.7x)`
 */
function verdict(ratio, target) {
  return `${ratio <= target ? 'PASS' : 'BELOW'} (<= ${target}x)`;
}

/**
 * Builds the result rows: measure, RelayedServer, ws 8 listener, ratio, target.
 *
 * @param {Object} res The collected results
 * @param {Number} connections Connections of the memory measure
 * @return {String[][]} The rows, heading first
 */
function resultRows(res, connections) {
  const rows = [['measure', 'RelayedServer', 'ws 8 listener', 'rs/ws', 'target']];
  const add = (label, values, fmt, target) => {
    // A ratio of deltas near or below zero says nothing: leave it out.
    const ratio = values.rs >= 0 && values.ws > 0 ? values.rs / values.ws : NaN;
    rows.push([
      label,
      fmt(values.rs),
      fmt(values.ws),
      Number.isFinite(ratio) ? `${ratio.toFixed(2)}x` : 'n/a',
      target ? verdict(ratio, target) : ''
    ]);
  };
  const each = (fn) => Object.fromEntries(KIND_ORDER.map((k) => [k, fn(k)]));
  const fixed = (d) => (x) => (x === null ? 'n/a' : x.toFixed(d));
  const kib = (x) => `${(x / 1024).toFixed(1)}`;
  const mib = (x) => `${(x / 2 ** 20).toFixed(1)}`;

  if (res.connect) {
    const { apart, together } = res.connect;
    const p = (c, field, q) => each((k) => percentile(c[k].map((x) => x[field]), q) / 1000);
    add('connect p50 ms (sender start -> listener connection)', p(apart, 'us', 50), fixed(2), TARGETS.connectP50);
    add('connect p99 ms', p(apart, 'us', 99), fixed(2));
    add('sender \'open\' p50 ms (same connects)', p(apart, 'senderUs', 50), fixed(2));
    add('connect p50 ms, sender in the listener\'s process', p(together, 'us', 50), fixed(2));
    add('connect p99 ms, sender in the listener\'s process', p(together, 'us', 99), fixed(2));
  }
  if (res.memory) {
    const m = (k, key) => median(res.memory[k].map((x) => x[key]));
    add(`RSS per idle connection, KiB (${connections} open)`, each((k) => m(k, 'rss')), kib, TARGETS.rssPerConnection);
    add('heapUsed per connection, KiB', each((k) => m(k, 'heapUsed')), kib);
    add('heapTotal per connection, KiB', each((k) => m(k, 'heapTotal')), kib);
    add('external per connection, KiB', each((k) => m(k, 'external')), kib);
    add('listener process RSS before, MiB', each((k) => m(k, 'rssBefore')), mib);
    add(`open ${connections} senders (batches of ${BATCH}), ms`, each((k) => m(k, 'openMs')), fixed(0));
    add(`listener close with ${connections} open, ms`, each((k) => m(k, 'closeMs')), fixed(0));
    add('heapUsed left after close, KiB per conn.', each((k) => m(k, 'heapLeft')), kib);
    add('RSS left after close, KiB per conn.', each((k) => m(k, 'rssLeft')), kib);
  }
  return rows;
}

/**
 * Runs the benchmark.
 *
 * @return {Promise<void>}
 */
async function main() {
  const args = parseArgs();
  if (!args) {
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  const { rounds, connections } = args;
  const begun = performance.now();
  const m = { ...machine(ADDON), fds: fdLimit() };
  console.log('Listener: hyco-ws-rs RelayedServer vs a hand-written ws 8 listener, ws 8 senders -> local relay (child process) -> listener');
  console.log(`  node ${m.node}, ${m.platform}, ${m.cores} CPUs (${m.cpuModel}), ${m.memGiB} GiB, ${m.date}`);
  console.log(`  ws ${m.ws}, bufferutil: ${m.bufferutil}, permessage-deflate off; addon ${m.addon}`);
  console.log(`  ${rounds} interleaved round(s) per kind and measure (order rotates); ${CONNECTS} connects per kind; ` +
    `${connections} idle connections; open-files limit (ulimit -n) ${m.fds === null ? 'unknown' : m.fds}`);
  if (m.fds !== null && m.fds < 2 * connections + 100) {
    console.log(`  WARNING: the relay process will need about ${2 * connections + 50} file descriptors and the limit is ${m.fds}; ` +
      'expect EMFILE (raise `ulimit -n`, or pass fewer connections)');
  }

  let relay = null;
  const res = {};
  try {
    relay = await startRelay();

    // 1. Connect time, both listeners in this process.
    res.connect = await measureConnect(relay, rounds);

    // 2. Memory per idle connection, a fresh listener child per kind and round.
    const mem = { rs: [], ws: [] };
    for (let r = 0; r < rounds; r++) {
      for (const kind of roundOrder(r)) {
        const x = await memoryRound(relay, kind, connections);
        mem[kind].push(x);
        console.error(`  memory round ${r + 1}, ${kind}: rss ${(x.rss / 1024).toFixed(1)} KiB/conn, heapUsed ` +
          `${(x.heapUsed / 1024).toFixed(1)}, heapTotal ${(x.heapTotal / 1024).toFixed(1)}, external ${(x.external / 1024).toFixed(1)}, arrayBuffers ` +
          `${(x.arrayBuffers / 1024).toFixed(1)}; before ${(x.rssBefore / 2 ** 20).toFixed(1)} MiB rss; open ` +
          `${x.openMs.toFixed(0)} ms, close ${x.closeMs.toFixed(0)} ms, exit ${x.exitMs === null ? 'none' : `${x.exitMs.toFixed(0)} ms`}; ` +
          `left after close: heap ${(x.heapLeft / 1024).toFixed(2)}, rss ${(x.rssLeft / 1024).toFixed(1)} KiB/conn`);
      }
    }
    res.memory = mem;

    const rstats = await relayStats(relay);
    for (const type of ['timeout', 'denied', 'reject']) {
      if (rstats.events[type]) fail(`the relay reported ${rstats.events[type]} '${type}' event(s)`);
    }
    if (rstats.fdErrors) fail(`the relay ran out of file descriptors ${rstats.fdErrors} time(s): ${rstats.firstFdError}`);
    console.error(`  relay events: ${JSON.stringify(rstats.events)}`);
  } catch (err) {
    const fd = err.fdExhausted || isFdExhaustion(err);
    fail(`${err.message}${fd && !/ulimit/.test(err.message) ? `\n  ${fdAdvice(connections)}` : ''}`);
  } finally {
    await closeAll(SENDER_CLOSE_TIMEOUT_MS);
    for (const child of [...children]) {
      if (relay && child === relay.child) continue;
      await killChild(child);
    }
    if (relay && children.has(relay.child)) {
      relay.child.stopping = true;
      const exited = once(relay.child, 'exit');
      relay.child.send({ shutdown: true });
      try {
        await withTimeout(exited, EXIT_TIMEOUT_MS, 'the relay process to exit');
      } catch {
        await killChild(relay.child);
      }
    }
  }

  // Report.
  const complete = res.connect && res.memory;
  if (res.connect || res.memory) {
    const rows = resultRows(res, connections);
    const notes = [
      'rs/ws = RelayedServer / ws 8 listener (below 1 is better everywhere).',
      `Connect: listeners in the bench process, relay in a child, senders in another child (the first three connect`,
      `rows; the clock is the machine's monotonic clock) or in the bench process (the last two); ${CONNECTS} sequential`,
      `connects per kind and layout over ${rounds} round(s), alternating kinds; time from the sender's constructor to the`,
      "listener-side 'connection' (RelayedServer) or accept-socket 'open' (ws 8); percentiles over all connects.",
      `Memory: the listener alone in a fresh child process per kind and round (--expose-gc, GC before each reading),`,
      `(after - before) / ${connections}, before = control channel online after a 20-connection warm-up, after =`,
      `${connections} idle connections open for 1 s; medians of ${rounds} round(s). external is V8's view only (Rust's`,
      'own allocations are in RSS, not in external).'
    ];
    if (res.connect) {
      notes.push(`Listener close() after the connects: RelayedServer ${res.connect.closeMs.rs.toFixed(1)} ms, ws 8 ${res.connect.closeMs.ws.toFixed(1)} ms.`);
    }
    console.log('');
    console.log(table(rows).join('\n'));
    console.log('');
    console.log(notes.join('\n'));
    console.log(`total run ${((performance.now() - begun) / 1000).toFixed(1)} s`);
    const stampAfter = addonStamp(ADDON);
    if (stampAfter !== m.addon) console.log(`WARNING: the addon changed during the run (now ${stampAfter}); re-run.`);

    const md = [
      '## Listener: `node bench/listener.js` (`bench/listener.js`)',
      '',
      `${m.date.slice(0, 10)}. Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memGiB} GiB, ${m.platform}; Node.js ${m.node}, ` +
        `ws ${m.ws} (bufferutil: ${m.bufferutil}); open-files limit ${m.fds}. Addon: ${m.addon}.`,
      `hyco-ws-rs's \`RelayedServer\` (prewarm: ${process.env.HYCO_BENCH_PREWARM !== '0'}) against a hand-written plain ws 8 listener (control channel + one \`WebSocket\` per`,
      '`accept`), plain ws 8 senders, the local relay emulator in a child process. ' +
        `${rounds} interleaved round(s) per kind and measure, ${connections} idle connections.` +
        (complete ? '' : ' INCOMPLETE RUN: see the failed checks.'),
      '',
      ...markdownTable(rows),
      '',
      ...notes.map((n) => n.replace(/`/g, ''))
    ];
    if (failures.length) md.push('', `Failed checks in this run: ${failures.length} (see the bench output).`);
    console.log('');
    console.log('----- BEGIN markdown for bench/RESULTS.md -----');
    console.log(md.join('\n'));
    console.log('----- END markdown for bench/RESULTS.md -----');
  }
  if (failures.length) {
    console.log('');
    console.log(`FAILED CHECKS (${failures.length}):`);
    for (const f of failures) console.log(`  - ${f}`);
    process.exitCode = 1;
  }
}

runMain('bench/listener.js', main);
