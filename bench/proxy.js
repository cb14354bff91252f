'use strict';

/**
 * Connect time through an HTTP proxy against a direct connection: `relayedConnect()` from
 * its call to 'open' (DNS, TCP, the proxy's CONNECT when there is one, the upgrade, the
 * relay's rendezvous with the listener and the listener's accept), against the local relay
 * emulator and an echoing `RelayedServer`, which run with the proxy (the npm `proxy`
 * package) in a child process (`bench/support/proxy-peer.js`). The two ways alternate
 * within each round, their order swapped from round to round; every connection proves
 * itself with an echo (not timed) and is closed before the next.
 *
 * Usage: node bench/proxy.js [rounds=7] [scale=1]
 *
 *   rounds  timed rounds (default 7)
 *   scale   multiplies the connects per way and round (40 at scale 1)
 *
 * Prints, per way, the median of the round medians, the spread of the round medians
 * (min–max), and p50/p90 over all connects; the ratio proxy/direct of the medians; and a
 * markdown section for bench/RESULTS.md. Exits 1 if a connect fails, or if the proxy did
 * not see one CONNECT per proxied connect.
 */

const path = require('path');
const { fork } = require('child_process');

const { createRelaySendUri, createRelayToken, relayedConnect } = require('..');
const { median, percentile } = require('./support/stats');
const { monoMs, opened, parseRoundsAndScale, runMain, withTimeout } = require('./support/run');
const { addonStamp, machine, markdownTable, table } = require('./support/report');

const USAGE = 'Usage: node bench/proxy.js [rounds=7] [scale=1]';
const PEER_SCRIPT = path.join(__dirname, 'support', 'proxy-peer.js');
const ADDON = path.join(__dirname, '..', 'hyco-ws-rs.linux-x64-gnu.node');
const ENTITY = 'bench';
const CONNECTS = 40;
const WARMUP = 5;
const STEP_TIMEOUT_MS = 10000;

/** The two ways, in the first round's order. */
const WAYS = [
  { key: 'direct', label: 'direct' },
  { key: 'proxy', label: 'through the proxy' }
];

/**
 * Starts the peer and waits for its `ready` message.
 *
 * @return {Promise<{ child: ChildProcess, ready: Object }>} The child and what it sent
 */
async function startPeer() {
  const child = fork(PEER_SCRIPT, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = await withTimeout(
    new Promise((resolve, reject) => {
      child.on('message', (msg) => msg && msg.ready && resolve(msg.ready));
      child.once('exit', (code) => reject(new Error(`the peer exited (${code}) before it was ready`)));
    }),
    30000,
    'the peer to be ready'
  );
  return { child, ready };
}

/**
 * Asks the peer how many CONNECTs its proxy served.
 *
 * @param {ChildProcess} child The peer
 * @return {Promise<Number>} The count
 */
function proxyConnects(child) {
  const p = new Promise((resolve) => {
    const onMessage = (msg) => {
      if (msg && typeof msg.connects === 'number') {
        child.removeListener('message', onMessage);
        resolve(msg.connects);
      }
    };
    child.on('message', onMessage);
  });
  child.send({ connects: true });
  return withTimeout(p, STEP_TIMEOUT_MS, "the proxy's CONNECT count");
}

/**
 * Opens one sender, times its connect, proves it with an echo and closes it.
 *
 * @param {Object} peer What the peer sent: namespace, keys, the proxy's URL
 * @param {String} way `direct` or `proxy`
 * @param {Number} n A number for the echo and messages
 * @return {Promise<Number>} The connect time, ms
 */
async function connectOnce(peer, way, n) {
  const uri = createRelaySendUri(peer.namespace, ENTITY);
  const token = createRelayToken(uri, peer.keyName, peer.key);
  const what = `sender ${n} (${way})`;
  const t0 = monoMs();
  const ws = relayedConnect(uri, token, { proxy: way === 'proxy' ? peer.proxyUrl : false });
  await opened(ws, what, STEP_TIMEOUT_MS);
  const ms = monoMs() - t0;
  const echo = new Promise((resolve, reject) => {
    ws.once('message', (data) => (String(data) === `n${n}` ? resolve() : reject(new Error(`${what}: wrong echo ${data}`))));
  });
  ws.send(`n${n}`);
  await withTimeout(echo, STEP_TIMEOUT_MS, `${what}'s echo`);
  const closed = new Promise((resolve) => ws.once('close', resolve));
  ws.close(1000);
  await withTimeout(closed, STEP_TIMEOUT_MS, `${what} to close`);
  return ms;
}

/**
 * Formats milliseconds.
 *
 * @param {Number} ms Milliseconds
 * @return {String} e.g. `1.23 ms`
 */
function fmt(ms) {
  return `${ms.toFixed(2)} ms`;
}

/**
 * The benchmark.
 *
 * @return {Promise<void>}
 */
async function main() {
  const args = parseRoundsAndScale();
  if (args === null) {
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  const rounds = process.argv[2] === undefined ? 7 : args.rounds;
  const perRound = Math.max(1, Math.round(CONNECTS * args.scale));
  const info = machine(ADDON);
  const { child, ready } = await startPeer();
  try {
    let n = 0;
    for (const way of WAYS) {
      for (let i = 0; i < WARMUP; i++) await connectOnce(ready, way.key, n++);
    }
    const before = await proxyConnects(child);
    const samples = { direct: [], proxy: [] };
    const roundMedians = { direct: [], proxy: [] };
    for (let r = 0; r < rounds; r++) {
      const order = r % 2 === 0 ? WAYS : [...WAYS].reverse();
      for (const way of order) {
        const times = [];
        for (let i = 0; i < perRound; i++) times.push(await connectOnce(ready, way.key, n++));
        samples[way.key].push(...times);
        roundMedians[way.key].push(median(times));
        process.stderr.write(`round ${r + 1}/${rounds} ${way.label}: median ${fmt(median(times))}\n`);
      }
    }
    const connects = (await proxyConnects(child)) - before;
    const expected = rounds * perRound;
    if (connects !== expected) throw new Error(`the proxy saw ${connects} CONNECTs for ${expected} proxied connects`);

    const m = { direct: median(roundMedians.direct), proxy: median(roundMedians.proxy) };
    const rows = [['way', 'median', 'round medians', 'p50 (all)', 'p90 (all)']];
    for (const way of WAYS) {
      const rm = roundMedians[way.key];
      rows.push([
        way.label,
        fmt(m[way.key]),
        `${Math.min(...rm).toFixed(2)}–${Math.max(...rm).toFixed(2)} ms`,
        fmt(percentile(samples[way.key], 50)),
        fmt(percentile(samples[way.key], 90))
      ]);
    }
    const ratio = m.proxy / m.direct;
    console.log(`relayedConnect connect time (call to 'open'), ${rounds} rounds x ${perRound} connects per way`);
    console.log(`${info.cpuModel}, ${info.cores} cores, ${info.memGiB} GiB, node ${info.node}, ${info.platform}`);
    console.log(`addon: ${addonStamp(ADDON)}`);
    console.log(table(rows).join('\n'));
    console.log(`proxy/direct (medians): ${ratio.toFixed(2)}x, +${fmt(m.proxy - m.direct)}; CONNECTs seen: ${connects}`);
    console.log('\n--- markdown for bench/RESULTS.md ---');
    console.log(`${info.date.slice(0, 10)}. ${rounds} interleaved rounds x ${perRound} connects per way; ${info.cpuModel}, ${info.cores} cores, node ${info.node}.\n`);
    console.log(markdownTable(rows).join('\n'));
    console.log(`\nproxy/direct: **${ratio.toFixed(2)}×** (+${fmt(m.proxy - m.direct)} per connect).`);
    console.log('--- end ---');
  } finally {
    child.send({ shutdown: true });
    await withTimeout(new Promise((resolve) => child.once('exit', resolve)), STEP_TIMEOUT_MS, 'the peer to exit').catch(() => child.kill());
  }
}

runMain('bench/proxy.js', main);
