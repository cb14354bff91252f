'use strict';

/**
 * Where the CPU goes when 1 MiB messages cross the relayed path: the sender (this process:
 * its JS thread and its Rust threads) against the far side (a child process running the
 * local relay emulator and a plain ws 8 listener: its JS thread and the relay's threads),
 * for hyco-ws-rs's `relayedConnect` and a plain ws 8 client. Reads per-thread CPU times
 * from /proc (Linux only).
 *
 * Usage: npm run build && node bench/cpu-split.js [count=400] [clients=hyco,ws,hyco,ws]
 *
 * It explains bench/sender.js's 1 MiB figure: when the sender stops being the bottleneck,
 * the two cores of the machine are shared by the sender, the relay and the listener.
 */

const { fork } = require('child_process');
const fs = require('fs');
const path = require('path');

const { relayedConnect, createRelaySendUri, createRelayToken, WebSocket } = require('..');

const SIZE = 1 << 20;
const TICKS_PER_SECOND = 100;

/**
 * CPU seconds of a process by kind of thread: `js` (the main thread), `rust` (tokio
 * workers), `other` (libuv and V8 helpers).
 *
 * @param {Number} pid The process
 * @return {Object} Seconds per kind
 */
function cpuByThread(pid) {
  const out = { js: 0, rust: 0, other: 0 };
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    let stat;
    try {
      stat = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
    } catch {
      continue; // The thread ended meanwhile.
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const seconds = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
    const kind = name.startsWith('tokio') ? 'rust' : Number(tid) === pid ? 'js' : 'other';
    out[kind] += seconds;
  }
  return out;
}

/**
 * The difference of two `cpuByThread()` readings, rounded to 10 ms.
 *
 * @param {Object} before The first reading
 * @param {Object} after The second reading
 * @return {Object} Seconds per kind
 */
function delta(before, after) {
  const out = {};
  for (const k of Object.keys(after)) out[k] = Math.round((after[k] - before[k]) * 100) / 100;
  return out;
}

/**
 * Sends `count` 1 MiB messages with one client and reports rate and CPU split.
 *
 * @param {String} kind `hyco` or `ws`
 * @param {Object} peer The child's `ready` message
 * @param {Number} childPid The child's pid
 * @param {Number} count Messages to send
 * @return {Promise<void>}
 */
async function run(kind, peer, childPid, count) {
  const uri = createRelaySendUri(peer.namespace, 'bench?mode=sink');
  const token = createRelayToken(uri, peer.keyName, peer.key);
  const ws =
    kind === 'hyco'
      ? relayedConnect(uri, token)
      : new WebSocket(uri, { headers: { ServiceBusAuthorization: token }, perMessageDeflate: false });
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  const msg = Buffer.alloc(SIZE);
  for (let i = 1; i < SIZE; i++) msg[i] = (i * 31 + 7) & 0xff;
  const report = new Promise((resolve) => {
    ws.on('message', (data) => {
      const m = JSON.parse(data);
      if (m.report) resolve(m.report);
    });
  });
  ws.send(JSON.stringify({ expect: { id: 1, count, size: SIZE } }));
  const child0 = cpuByThread(childPid);
  const self0 = cpuByThread(process.pid);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    msg[0] = i & 0xff;
    if (ws.bufferedAmount > 8 * SIZE) await new Promise((resolve) => ws.send(msg, resolve));
    else ws.send(msg);
  }
  const r = await report;
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  if (r.received !== count || r.errors !== 0) throw new Error(`${kind}: bad transfer ${JSON.stringify(r)}`);
  const sender = delta(self0, cpuByThread(process.pid));
  const far = delta(child0, cpuByThread(childPid));
  const busy = Object.values(sender).concat(Object.values(far)).reduce((a, b) => a + b, 0);
  console.log(
    `${kind.padEnd(4)} ${((count * SIZE) / 1e6 / seconds).toFixed(0).padStart(5)} MB/s  ` +
      `sender js ${sender.js.toFixed(2)}s rust ${sender.rust.toFixed(2)}s | ` +
      `relay+listener: listener js ${far.js.toFixed(2)}s relay ${far.rust.toFixed(2)}s | ` +
      `cores busy ${(busy / seconds).toFixed(2)} of 2 over ${seconds.toFixed(2)}s`
  );
  ws.close();
  await new Promise((resolve) => ws.once('close', resolve));
}

/**
 * Runs the clients in turn.
 *
 * @return {Promise<void>}
 */
async function main() {
  const count = Number(process.argv[2]) || 400;
  const clients = (process.argv[3] || 'hyco,ws,hyco,ws').split(',');
  const child = fork(path.join(__dirname, 'support', 'sender-peer.js'));
  try {
    const peer = await new Promise((resolve) => child.on('message', (m) => m.ready && resolve(m.ready)));
    console.log(`${count} x 1 MiB through the local relay, ${new Date().toISOString()}, node ${process.version}`);
    for (const kind of clients) await run(kind, peer, child.pid, count);
  } finally {
    child.send({ shutdown: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
