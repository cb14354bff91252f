'use strict';

/**
 * permessage-deflate, compressed both ways, through the local relay: hyco-ws-rs at both ends
 * (`relayedConnect` with its default offer, `RelayedServer` with `perMessageDeflate: true`)
 * against ws 8 at both ends (a ws 8 sender with its default offer; a hand-written ws 8
 * listener whose accept socket answers `permessage-deflate`). Every message is JSON-like
 * text, compressed by the sender, inflated and echoed (compressed again) by the listener,
 * and inflated by the sender. One run, interleaved rounds, medians and spreads.
 *
 * Usage: node bench/deflate.js [rounds=3] [connections=500]
 *        HYCO_BENCH_DEFLATE_LEVEL=1 node bench/deflate.js ...   (every end at level 1)
 *
 * Process layout: the relay, the listener and the sender each run in a child process of
 * their own (`bench/support/relay-peer.js`, `bench/support/deflate-peer.js`), fresh for
 * every kind and round, so that each one's CPU time, event-loop utilisation and memory are
 * its own.
 *
 * Measures, per kind, for 4 KiB and 64 KiB messages:
 *   - throughput: on one connection, 20,000 (4 KiB) or 2,000 (64 KiB) echoed messages with
 *     at most 64 (4 KiB) or 16 (64 KiB) unanswered: messages per second, and MB/s of
 *     payload echoed (one direction's bytes);
 *   - CPU per message: the sender's and the listener's CPU time (user + system) during that
 *     run, divided by the messages;
 *   - event-loop utilisation at a fixed rate (2,000 msgs/s at 4 KiB, 200 at 64 KiB, for
 *     3 s), of the sender's and of the listener's process;
 * and RSS per idle compressed connection: in fresh processes, `connections` connections are
 * opened, each sends one 4 KiB compressed message and gets its echo, then everything idles
 * for 1 s; (RSS after - RSS before) / connections, after garbage collection, in the
 * listener's process and in the sender's.
 *
 * Goals (hyco-ws-rs / ws 8): at least 3x the throughput, at most 0.5x the RSS per idle
 * compressed connection. Prints a table and a markdown section for bench/RESULTS.md.
 */

const path = require('path');

const { call, cpuBetween, eluBetween, startPair, startRelay, stopPair } = require('./support/peers');
const { median } = require('./support/stats');
const { addonStamp, machine, markdownTable, table } = require('./support/report');
const { runMain } = require('./support/run');

const USAGE = 'Usage: node bench/deflate.js [rounds=3] [connections=500]';
const RELAY_SCRIPT = path.join(__dirname, 'support', 'relay-peer.js');
const PEER_SCRIPT = path.join(__dirname, 'support', 'deflate-peer.js');
const ADDON = path.join(__dirname, '..', 'hyco-ws-rs.linux-x64-gnu.node');

const KINDS = { rs: 'hyco-ws-rs (both ends)', ws: 'ws 8 (both ends)' };
const SIZES = [
  { label: '4 KiB', size: 4096, count: 20000, window: 64, perSecond: 2000 },
  { label: '64 KiB', size: 65536, count: 2000, window: 16, perSecond: 200 }
];
const RATE_SECONDS = 3;
const IDLE_SIZE = 4096;
const SETTLE_MS = 1000;
const GOALS = { throughput: 3, rss: 0.5 };

/** Fixed-rate runs that did not keep their rate (their utilisation is not comparable). */
const unsustained = [];

/**
 * One round of one kind: throughput and CPU per message, then event-loop utilisation at a
 * fixed rate, for each size.
 *
 * @param {Object} relay The relay
 * @param {String} kind `rs` or `ws`
 * @return {Promise<Object>} Figures by size label
 */
async function speedRound(relay, kind) {
  const pair = await startPair(PEER_SCRIPT, relay, kind);
  const out = {};
  try {
    for (const s of SIZES) {
      const l0 = await call(pair.listener, 'usage');
      const t = await call(pair.sender, 'throughput', { size: s.size, count: s.count, window: s.window, seed: 1 });
      const l1 = await call(pair.listener, 'usage');
      const listenerCpuUs = cpuBetween(l0, l1);
      // The rate's window starts where the throughput's ended, after its collections.
      const r = await call(pair.sender, 'rate', { size: s.size, perSecond: s.perSecond, seconds: RATE_SECONDS });
      const lb = await call(pair.listener, 'usage');
      const listenerElu = eluBetween(l1, lb);
      // The fixed rate must have been kept (the echoes done within 20 % of the time), or
      // utilisation at that rate means nothing.
      const sustained = r.ms <= RATE_SECONDS * 1000 * 1.2;
      if (!sustained) unsustained.push(`${KINDS[kind]} ${s.label}: ${s.perSecond} msgs/s took ${r.ms.toFixed(0)} ms`);
      out[s.label] = {
        msgsPerSec: (s.count / t.ms) * 1000,
        mbPerSec: t.bytes / 1e6 / (t.ms / 1000),
        senderCpuUs: t.cpuUs / s.count,
        listenerCpuUs: listenerCpuUs / s.count,
        senderElu: r.elu,
        listenerElu
      };
      console.error(`  ${KINDS[kind]} ${s.label}: ${out[s.label].msgsPerSec.toFixed(0)} msgs/s, sender ${out[s.label].senderCpuUs.toFixed(1)} µs/msg, listener ${out[s.label].listenerCpuUs.toFixed(1)} µs/msg, ELU ${r.elu.toFixed(3)} / ${listenerElu.toFixed(3)}`);
    }
  } finally {
    await stopPair(pair);
  }
  return out;
}

/**
 * One round of the memory measure for `kind`: fresh processes, `connections` idle
 * compressed connections.
 *
 * @param {Object} relay The relay
 * @param {String} kind `rs` or `ws`
 * @param {Number} connections Connections
 * @return {Promise<Object>} `{ listener, sender }`: RSS bytes per connection
 */
async function memoryRound(relay, kind, connections) {
  const pair = await startPair(PEER_SCRIPT, relay, kind);
  try {
    await call(pair.sender, 'open', { count: 20, size: IDLE_SIZE });
    await call(pair.sender, 'close');
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const l0 = await call(pair.listener, 'usage');
    const s0 = await call(pair.sender, 'usage');
    const opened = await call(pair.sender, 'open', { count: connections, size: IDLE_SIZE });
    if (opened.open !== connections) throw new Error(`${opened.open} connections open, not ${connections}`);
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const l1 = await call(pair.listener, 'usage');
    const s1 = await call(pair.sender, 'usage');
    if (l1.open !== connections) throw new Error(`the listener holds ${l1.open} connections, not ${connections}`);
    const out = {
      listener: (l1.memory.rss - l0.memory.rss) / connections,
      sender: (s1.memory.rss - s0.memory.rss) / connections
    };
    console.error(`  ${KINDS[kind]}: RSS per idle compressed connection ${(out.listener / 1024).toFixed(1)} KiB (listener), ${(out.sender / 1024).toFixed(1)} KiB (sender)`);
    return out;
  } finally {
    await stopPair(pair);
  }
}

/**
 * `median (min–max)` of a list, formatted by `f`.
 *
 * @param {Number[]} xs The values
 * @param {Function} f The formatter
 * @return {String} The cell
 */
function spread(xs, f) {
  return `${f(median(xs))} (${f(Math.min(...xs))}–${f(Math.max(...xs))})`;
}

/**
 * Runs the benchmark.
 *
 * @return {Promise<void>}
 */
async function main() {
  const [r, c] = process.argv.slice(2);
  const rounds = r === undefined ? 3 : Number(r);
  const connections = c === undefined ? 500 : Number(c);
  if (!Number.isInteger(rounds) || rounds < 1 || !Number.isInteger(connections) || connections < 1) {
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  const info = machine(ADDON);
  const level = process.env.HYCO_BENCH_DEFLATE_LEVEL || 'zlib default (6)';
  console.error(`bench/deflate.js: ${rounds} round(s), ${connections} idle connections; ${info.cpuModel}, ${info.cores} cores`);
  const relay = await startRelay(RELAY_SCRIPT, []);
  const speed = { rs: [], ws: [] };
  const memory = { rs: [], ws: [] };
  try {
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? ['rs', 'ws'] : ['ws', 'rs'];
      console.error(`round ${round + 1}/${rounds}`);
      for (const kind of order) speed[kind].push(await speedRound(relay, kind));
      for (const kind of order) memory[kind].push(await memoryRound(relay, kind, connections));
    }
  } finally {
    relay.child.send({ shutdown: true });
  }
  const stamp = addonStamp(ADDON);
  if (stamp !== info.addon) console.error('bench/deflate.js: the addon changed during the run');

  const num = (d) => (x) => x.toFixed(d);
  const kib = (x) => (x / 1024).toFixed(1);
  const rows = [['measure', 'hyco-ws-rs', 'ws 8', 'ratio', 'goal']];
  const ratios = {};
  const pick = (kind, label, key) => speed[kind].map((s) => s[label][key]);
  for (const s of SIZES) {
    const metrics = [
      ['msgs/s (echoed)', 'msgsPerSec', num(0), 'throughput'],
      ['MB/s of payload', 'mbPerSec', num(1), null],
      ['sender CPU µs/msg', 'senderCpuUs', num(1), null],
      ['listener CPU µs/msg', 'listenerCpuUs', num(1), null],
      [`sender ELU at ${s.perSecond} msgs/s`, 'senderElu', num(3), null],
      [`listener ELU at ${s.perSecond} msgs/s`, 'listenerElu', num(3), null]
    ];
    for (const [name, key, f, goal] of metrics) {
      const a = pick('rs', s.label, key);
      const b = pick('ws', s.label, key);
      const ratio = median(a) / median(b);
      if (goal) ratios[`${goal} ${s.label}`] = ratio;
      rows.push([
        `${s.label} ${name}`,
        spread(a, f),
        spread(b, f),
        `${ratio.toFixed(2)}x`,
        goal ? `>= ${GOALS.throughput}x: ${ratio >= GOALS.throughput ? 'MET' : 'NOT MET'}` : ''
      ]);
    }
  }
  for (const side of ['listener', 'sender']) {
    const a = memory.rs.map((m) => m[side]);
    const b = memory.ws.map((m) => m[side]);
    const ratio = median(a) / median(b);
    ratios[`rss ${side}`] = ratio;
    rows.push([
      `RSS KiB per idle compressed connection (${side})`,
      spread(a, kib),
      spread(b, kib),
      `${ratio.toFixed(2)}x`,
      `<= ${GOALS.rss}x: ${ratio <= GOALS.rss ? 'MET' : 'NOT MET'}`
    ]);
  }
  console.log(`bench/deflate.js: ${rounds} round(s), ${connections} idle connections, level ${level}, medians (min–max)`);
  console.log(`${info.cpuModel}, ${info.cores} cores, ${info.memGiB} GiB, ${info.platform}, Node.js ${info.node}, ws ${info.ws}`);
  for (const line of table(rows)) console.log(line);
  console.log('\n--- markdown for bench/RESULTS.md ---');
  console.log(`### permessage-deflate (\`npm run bench:deflate\`, ${rounds} rounds, ${connections} idle connections, level ${level})\n`);
  console.log(`${info.date}; ${info.cpuModel}, ${info.cores} cores, ${info.memGiB} GiB; ${info.platform}; Node.js ${info.node}; ws ${info.ws}; addon ${info.addon}\n`);
  for (const line of markdownTable(rows)) console.log(line);
  console.log('--- end ---');
  if (unsustained.length) {
    console.log(`\nfixed rates not kept (their ELU is not comparable):\n  ${unsustained.join('\n  ')}`);
  }
}

runMain('bench/deflate.js', main);
