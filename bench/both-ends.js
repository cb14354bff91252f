'use strict';

/**
 * Both ends the same client, through the local relay: hyco-ws-rs at both ends
 * (`RelayedServer` and `relayedConnect`, default options) against ws 8 at both ends (a
 * hand-written listener: a control channel and one ws 8 accept socket per sender; a ws 8
 * sender), as a user who swaps hyco-ws for this package on both sides sees it. One run,
 * interleaved rounds, medians and spreads.
 *
 * Usage: node bench/both-ends.js [rounds=5] [scale=1]
 *        HYCO_BENCH_BASELINE=/path/to/package node bench/both-ends.js ...
 *
 *   rounds  rounds per kind (the order of the kinds rotates from round to round)
 *   scale   multiplies every per-round budget: 50 connects, 2,000 round trips per echo size,
 *           200,000 x 64 B and 256 MiB of 4 KiB, 64 KiB and 1 MiB messages (a shorter window
 *           is noise on a shared two-core machine), 2 s at the
 *           fixed rate, 1,000 idle connections; `node bench/both-ends.js 1 0.05` is a quick
 *           smoke run
 *   HYCO_BENCH_BASELINE  a directory holding another build of this package (its lib/, its
 *           addon, a node_modules with ws): measured as a third kind, `base`, in the same
 *           rounds, so that two builds compare in one run
 *
 * Process layout: the relay, the listener and the sender each run in a child process of
 * their own (`bench/support/both-ends-peer.js`); the listener and the sender are fresh for
 * every kind and round.
 *
 * Measures, per kind and round:
 *   - connect: from the sender's constructor to 'open', p50 and p99 (each connection is
 *     proven with an echo and closed before the next);
 *   - echo round trip at 32 B and 4 KiB, one message in flight, after a warm-up: p50 and
 *     p99, and the sender's CPU per round trip by thread (JS thread, tokio threads, others);
 *   - one-way throughput at 64 B, 4 KiB, 64 KiB and 1 MiB (binary), from the first send to
 *     the listener's report that it has every message: msgs/s and MB/s (10^6 bytes), and
 *     CPU per message at the sender and at the listener;
 *   - 64 B messages at a fixed 20,000 msgs/s for 2 s: event-loop utilisation and CPU per
 *     message, at the sender and at the listener;
 *   - RSS per idle connection, listener and sender: in fresh processes, (RSS after - RSS
 *     before) / connections, with every connection proven by a 32 B echo, after garbage
 *     collection and 1 s of idling.
 * Each figure is the median of its rounds' figures, with their range; the ratio is
 * hyco-ws-rs / ws 8 on those medians. Load averages are printed at the start and the end.
 * Prints a table, the per-round figures, and a markdown section for bench/RESULTS.md.
 */

const os = require('os');
const path = require('path');

const { call, cpuBetween, eluBetween, startPair, startRelay, stopPair } = require('./support/peers');
const { median, percentile } = require('./support/stats');
const { addonStamp, machine, markdownTable, table } = require('./support/report');
const { runMain } = require('./support/run');

const USAGE = 'Usage: node bench/both-ends.js [rounds=5] [scale=1]';
const PEER_SCRIPT = path.join(__dirname, 'support', 'both-ends-peer.js');
const ADDON = path.join(__dirname, '..', 'hyco-ws-rs.linux-x64-gnu.node');

const KINDS = { rs: 'hyco-ws-rs (both ends)', ws: 'ws 8 (both ends)', base: 'baseline build (both ends)' };
const CONNECTS = 50;
const ECHO = [
  { label: '32 B', size: 32, count: 2000, warmup: 200 },
  { label: '4 KiB', size: 4096, count: 2000, warmup: 200 }
];
const THROUGHPUT = [
  { label: '64 B', size: 64, count: 200000 },
  { label: '4 KiB', size: 4096, count: 65536 },
  { label: '64 KiB', size: 65536, count: 4096 },
  { label: '1 MiB', size: 1048576, count: 256 }
];
const RATE = { size: 64, perSecond: 20000, seconds: 2 };
const IDLE = 1000;
const SETTLE_MS = 1000;

/**
 * Goals (hyco-ws-rs / ws 8), by row key: `max` at most, `min` at least.
 */
const GOALS = {
  'echo 32 B p50': { max: 0.9 },
  'echo 32 B p99': { max: 1.0 },
  'echo 4 KiB p50': { max: 0.9 },
  'echo 4 KiB p99': { max: 1.0 },
  'msgs/s 64 B': { min: 3 },
  'MB/s 1 MiB': { min: 3 },
  'connect p50': { max: 0.5 },
  'RSS listener': { max: 0.3 },
  'RSS sender': { max: 0.3 },
  'ELU sender': { max: 0.3 },
  'ELU listener': { max: 0.3 }
};

/**
 * One round of one kind's speed measures, in a fresh listener and sender.
 *
 * @param {Object} relay The relay
 * @param {String} kind `rs`, `ws` or `base`
 * @param {Number} scale The budget multiplier
 * @return {Promise<Object>} Figures by row key
 */
async function speedRound(relay, kind, scale) {
  const pair = await startPair(PEER_SCRIPT, relay, kind);
  const out = {};
  const n = (x, min) => Math.max(min, Math.round(x * scale));
  try {
    const c = await call(pair.sender, 'connect', { count: n(CONNECTS, 5) });
    out['connect p50'] = percentile(c.us, 50);
    out['connect p99'] = percentile(c.us, 99);
    for (const e of ECHO) {
      const count = n(e.count, 50);
      const l0 = await call(pair.listener, 'usage');
      const r = await call(pair.sender, 'echo', { size: e.size, count, warmup: n(e.warmup, 10) });
      const l1 = await call(pair.listener, 'usage');
      const per = (s) => (s * 1e6) / count;
      out[`echo ${e.label} p50`] = percentile(r.us, 50);
      out[`echo ${e.label} p99`] = percentile(r.us, 99);
      out[`echo ${e.label} sender JS µs`] = per(r.threads.js);
      out[`echo ${e.label} sender tokio µs`] = per(r.threads.rust);
      out[`echo ${e.label} sender queued µs`] = per(r.threads.queued);
      // The listener's counters include its warm-up round trips: near enough for a split.
      const lt = (k) => per(l1.threads[k] - l0.after.threads[k]) * (count / (count + n(e.warmup, 10)));
      out[`echo ${e.label} listener JS µs`] = lt('js');
      out[`echo ${e.label} listener tokio µs`] = lt('rust');
      out[`echo ${e.label} listener queued µs`] = lt('queued');
    }
    for (const t of THROUGHPUT) {
      const count = n(t.count, 4);
      const l0 = await call(pair.listener, 'usage');
      const r = await call(pair.sender, 'throughput', { size: t.size, count });
      const l1 = await call(pair.listener, 'usage');
      out[`msgs/s ${t.label}`] = (count * 1000) / r.ms;
      out[`MB/s ${t.label}`] = (count * t.size) / 1000 / r.ms;
      out[`sender CPU µs/msg ${t.label}`] = r.cpuUs / count;
      out[`listener CPU µs/msg ${t.label}`] = cpuBetween(l0, l1) / count;
    }
    const seconds = Math.max(0.25, RATE.seconds * scale);
    const perSecond = RATE.perSecond;
    const l0 = await call(pair.listener, 'usage');
    const r = await call(pair.sender, 'rate', { size: RATE.size, perSecond, seconds });
    const l1 = await call(pair.listener, 'usage');
    out['ELU sender'] = r.elu;
    out['ELU listener'] = eluBetween(l0, l1);
    out['rate sender CPU µs/msg'] = r.cpuUs / r.count;
    out['rate listener CPU µs/msg'] = cpuBetween(l0, l1) / r.count;
    out['rate kept'] = r.ms <= seconds * 1000 * 1.2 ? 1 : 0;
  } finally {
    await stopPair(pair);
  }
  return out;
}

/**
 * One round of the memory measure: fresh processes, `count` idle connections.
 *
 * @param {Object} relay The relay
 * @param {String} kind `rs`, `ws` or `base`
 * @param {Number} count Connections
 * @return {Promise<Object>} `{ 'RSS listener', 'RSS sender' }`: bytes per connection
 */
async function memoryRound(relay, kind, count) {
  const pair = await startPair(PEER_SCRIPT, relay, kind);
  try {
    await call(pair.sender, 'open', { count: 20 });
    await call(pair.sender, 'close');
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const l0 = await call(pair.listener, 'usage');
    const s0 = await call(pair.sender, 'usage');
    const opened = await call(pair.sender, 'open', { count });
    if (opened.open !== count) throw new Error(`${opened.open} connections open, not ${count}`);
    await new Promise((resolve) => setTimeout(resolve, SETTLE_MS));
    const l1 = await call(pair.listener, 'usage');
    const s1 = await call(pair.sender, 'usage');
    if (l1.open !== count) throw new Error(`the listener holds ${l1.open} connections, not ${count}`);
    return {
      'RSS listener': (l1.memory.rss - l0.memory.rss) / count,
      'RSS sender': (s1.memory.rss - s0.memory.rss) / count
    };
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
 * The rows of the result table: key, label, formatter, and whether larger is better.
 *
 * @return {Array<[String, String, Function]>} The rows
 */
function rowSpecs() {
  const num = (d) => (x) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });
  const ms = (x) => (x / 1000).toFixed(2);
  const pct = (x) => `${(x * 100).toFixed(1)}%`;
  const kib = (x) => (x / 1024).toFixed(1);
  const rows = [
    ['connect p50', 'connect p50 ms', ms],
    ['connect p99', 'connect p99 ms', ms]
  ];
  for (const e of ECHO) {
    rows.push([`echo ${e.label} p50`, `echo ${e.label} p50 µs`, num(0)]);
    rows.push([`echo ${e.label} p99`, `echo ${e.label} p99 µs`, num(0)]);
    for (const side of ['sender', 'listener']) {
      rows.push([`echo ${e.label} ${side} JS µs`, `echo ${e.label}: ${side} JS-thread CPU µs per round trip`, num(1)]);
      rows.push([`echo ${e.label} ${side} tokio µs`, `echo ${e.label}: ${side} tokio-thread CPU µs per round trip`, num(1)]);
      rows.push([`echo ${e.label} ${side} queued µs`, `echo ${e.label}: ${side} threads' run-queue wait µs per round trip`, num(1)]);
    }
  }
  for (const t of THROUGHPUT) rows.push([`msgs/s ${t.label}`, `msgs/s ${t.label}`, num(0)]);
  for (const t of THROUGHPUT) rows.push([`MB/s ${t.label}`, `MB/s ${t.label}`, num(1)]);
  for (const t of THROUGHPUT) rows.push([`sender CPU µs/msg ${t.label}`, `sender CPU µs/msg ${t.label}`, num(t.size >= 65536 ? 1 : 2)]);
  for (const t of THROUGHPUT) rows.push([`listener CPU µs/msg ${t.label}`, `listener CPU µs/msg ${t.label}`, num(t.size >= 65536 ? 1 : 2)]);
  rows.push(['ELU sender', `sender event-loop util. @ ${RATE.perSecond / 1000}k msgs/s`, pct]);
  rows.push(['ELU listener', `listener event-loop util. @ ${RATE.perSecond / 1000}k msgs/s`, pct]);
  rows.push(['rate sender CPU µs/msg', `sender CPU µs/msg @ ${RATE.perSecond / 1000}k msgs/s`, num(2)]);
  rows.push(['rate listener CPU µs/msg', `listener CPU µs/msg @ ${RATE.perSecond / 1000}k msgs/s`, num(2)]);
  rows.push(['RSS listener', 'RSS KiB per idle connection (listener)', kib]);
  rows.push(['RSS sender', 'RSS KiB per idle connection (sender)', kib]);
  return rows;
}

/**
 * A goal's verdict for a ratio.
 *
 * @param {String} key The row key
 * @param {Number} ratio hyco-ws-rs / ws 8
 * @return {String} `≤ 0.9×: MET`, or `''` without a goal
 */
function verdict(key, ratio) {
  const g = GOALS[key];
  if (!g) return '';
  const met = g.max !== undefined ? ratio <= g.max : ratio >= g.min;
  return `${g.max !== undefined ? `≤ ${g.max}` : `≥ ${g.min}`}×: ${met ? 'MET' : 'NOT MET'}`;
}

/**
 * Runs the benchmark.
 *
 * @return {Promise<void>}
 */
async function main() {
  const [r, s] = process.argv.slice(2);
  const rounds = r === undefined ? 5 : Number(r);
  const scale = s === undefined ? 1 : Number(s);
  if (!Number.isInteger(rounds) || rounds < 1 || !Number.isFinite(scale) || scale <= 0) {
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  const kinds = process.env.HYCO_BENCH_BASELINE ? ['rs', 'ws', 'base'] : ['rs', 'ws'];
  const info = machine(ADDON);
  const load0 = os.loadavg();
  console.error(`bench/both-ends.js: ${rounds} round(s), scale ${scale}, kinds ${kinds.join(', ')}; ${info.cpuModel}, ${info.cores} cores; load ${load0.map((x) => x.toFixed(2)).join(' ')}`);
  const relay = await startRelay(PEER_SCRIPT, ['relay', 'rs']);
  const figures = Object.fromEntries(kinds.map((k) => [k, []]));
  const idle = Math.max(20, Math.round(IDLE * scale));
  try {
    for (let round = 0; round < rounds; round++) {
      const order = kinds.map((_, i) => kinds[(i + round) % kinds.length]);
      console.error(`round ${round + 1}/${rounds}: ${order.join(', ')}`);
      for (const kind of order) {
        const f = await speedRound(relay, kind, scale);
        figures[kind].push(f);
        console.error(`  ${kind}: echo 32 B p50 ${f['echo 32 B p50'].toFixed(0)} µs p99 ${f['echo 32 B p99'].toFixed(0)} µs, ` +
          `4 KiB p50 ${f['echo 4 KiB p50'].toFixed(0)} µs; 64 B ${f['msgs/s 64 B'].toFixed(0)} msgs/s; 1 MiB ${f['MB/s 1 MiB'].toFixed(0)} MB/s; ` +
          `connect p50 ${(f['connect p50'] / 1000).toFixed(2)} ms; ELU ${(f['ELU sender'] * 100).toFixed(1)}%/${(f['ELU listener'] * 100).toFixed(1)}%`);
      }
      for (const kind of order) {
        const m = await memoryRound(relay, kind, idle);
        Object.assign(figures[kind][figures[kind].length - 1], m);
        console.error(`  ${kind}: RSS per idle connection ${(m['RSS listener'] / 1024).toFixed(1)} KiB (listener), ${(m['RSS sender'] / 1024).toFixed(1)} KiB (sender)`);
      }
    }
  } finally {
    relay.child.send({ shutdown: true });
  }
  const load1 = os.loadavg();
  const stamp = addonStamp(ADDON);

  const heading = ['measure', KINDS.rs, KINDS.ws, 'rs/ws', 'goal'];
  if (kinds.includes('base')) heading.push(KINDS.base, 'rs/base');
  const rows = [heading];
  for (const [key, label, f] of rowSpecs()) {
    const col = (k) => figures[k].map((x) => x[key]);
    const ratio = median(col('rs')) / median(col('ws'));
    const times = (x) => (Number.isFinite(x) ? `${x.toFixed(2)}×` : '–');
    const row = [label, spread(col('rs'), f), spread(col('ws'), f), times(ratio), verdict(key, ratio)];
    if (kinds.includes('base')) row.push(spread(col('base'), f), times(median(col('rs')) / median(col('base'))));
    rows.push(row);
  }
  const kept = kinds.filter((k) => figures[k].some((x) => !x['rate kept']));
  const load = `load average ${load0.map((x) => x.toFixed(2)).join(' ')} at the start, ${load1.map((x) => x.toFixed(2)).join(' ')} at the end`;
  const notes = [
    `Medians of ${rounds} interleaved round(s) per kind (min–max of the rounds in brackets); ratios of the medians.`,
    'Echo and connect: percentiles within a round, then the median over rounds. MB = 10^6 payload bytes.',
    `CPU: process.cpuUsage() of the sender's or the listener's process (all threads); thread split from /proc.`,
    `RSS: ${idle} idle connections, fresh processes. ${load}.`
  ];
  if (kept.length) notes.push(`The fixed rate was not kept in some rounds of: ${kept.join(', ')} (their ELU is not comparable).`);
  if (stamp !== info.addon) notes.push(`WARNING: the addon changed during the run (now ${stamp}); re-run.`);

  console.log(`bench/both-ends.js: ${rounds} round(s), scale ${scale}`);
  console.log(`${info.cpuModel}, ${info.cores} cores, ${info.memGiB} GiB, ${info.platform}, Node.js ${info.node}, ws ${info.ws}`);
  for (const line of table(rows)) console.log(line);
  console.log('');
  for (const n of notes) console.log(n);
  console.log('\nper round:');
  for (const k of kinds) {
    const fmt = (key, d = 0) => figures[k].map((x) => x[key].toFixed(d)).join(' ');
    console.log(`  ${k}: echo 32 B p50 [${fmt('echo 32 B p50')}] p99 [${fmt('echo 32 B p99')}]; 4 KiB p50 [${fmt('echo 4 KiB p50')}] p99 [${fmt('echo 4 KiB p99')}]; 64 B msgs/s [${fmt('msgs/s 64 B')}]; 1 MiB MB/s [${fmt('MB/s 1 MiB')}]`);
  }
  console.log('\n--- markdown for bench/RESULTS.md ---');
  console.log(`### Both ends (\`npm run bench:both-ends\`, ${rounds} rounds, scale ${scale})\n`);
  console.log(`${info.date}; ${info.cpuModel}, ${info.cores} cores, ${info.memGiB} GiB; ${info.platform}; Node.js ${info.node}; ws ${info.ws}; addon ${info.addon}\n`);
  for (const line of markdownTable(rows)) console.log(line);
  console.log('');
  for (const n of notes) console.log(n);
  console.log('--- end ---');
}

runMain('bench/both-ends.js', main);
