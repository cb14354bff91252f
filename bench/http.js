'use strict';

/**
 * HTTP over Hybrid Connections: hyco-ws-rs's RelayedServer ('request') against Microsoft's
 * hyco-https 1.4.5 as the listener, through the local relay emulator, with the sender, the
 * relay and each listener in processes of their own.
 *
 *   node bench/http.js [rounds=5] [scale=1]
 *   HYCO_BENCH_BASELINE=/path/to/package node bench/http.js ...  (adds that build's listener)
 *
 * For each listener, in interleaved rounds (the order alternates):
 *   - a small GET, one at a time (latency p50/p99) and over 16 keep-alive connections at
 *     once (requests/s);
 *   - a 1 MiB POST over 4 connections at once (MB/s of request bodies, latency p50/p99);
 *   - a small GET at a fixed 1,000 requests/s over 16 connections (below saturation);
 *   - the listener process's CPU per request (process.cpuUsage(), all its threads), in each.
 * Targets (issue #12): >= 3x hyco-https's requests/s for small requests, >= 2x its MB/s for
 * 1 MiB bodies, a lower p99.
 */

const { fork } = require('child_process');
const path = require('path');

const { createRelayHttpsUri, createRelayToken } = require('..');
const { addonStamp, machine, markdownTable, table } = require('./support/report');
const { parseRoundsAndScale, runMain, withTimeout } = require('./support/run');
const { formatRate, median, percentile } = require('./support/stats');

const USAGE = 'Usage: node bench/http.js [rounds=5] [scale=1]';
const PEER = path.join(__dirname, 'support', 'http-peer.js');
const ADDON = require('../lib/native').binaryName();
const STEP_MS = 120000;

const KINDS = [
  { key: 'hyco', label: 'hyco-https 1.4.5' },
  { key: 'rs', label: 'hyco-ws-rs' }
];
// Another build of this package (a directory holding its lib/ and addon), measured in the
// same rounds, so that two builds compare in one run.
if (process.env.HYCO_BENCH_BASELINE) KINDS.push({ key: 'base', label: 'baseline build' });

/** The measures, with their request counts at scale 1. */
const GET_SERIAL = 1500;
const GET_PARALLEL = 4000;
const GET_CONCURRENCY = 16;
const POST_SIZE = 1024 * 1024;
const POST_COUNT = 48;
const POST_CONCURRENCY = 4;
const WARMUP = 200;
/** A fixed rate, below what any listener serves, for CPU per request unskewed by saturation. */
const PACED_RATE = 1000;
const PACED_COUNT = 2000;

/**
 * Forks a peer; its problems are printed.
 *
 * @param {String[]} args The role and its arguments
 * @return {ChildProcess} The peer
 */
function forkPeer(args) {
  const child = fork(PEER, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  child.on('message', (msg) => {
    if (msg && msg.problem) console.error(`  ${args.join(' ')}: ${msg.problem}`);
  });
  return child;
}

/**
 * Forks a peer and waits for its first message.
 *
 * @param {String[]} args The role and its arguments
 * @param {Function} isReady Tells the awaited first message
 * @return {Promise<{child: ChildProcess, first: Object}>}
 */
function startPeer(args, isReady) {
  const child = forkPeer(args);
  const ready = new Promise((resolve, reject) => {
    const onMessage = (msg) => {
      if (isReady(msg)) {
        child.off('message', onMessage);
        resolve(msg);
      }
    };
    child.on('message', onMessage);
    child.once('exit', (code) => reject(new Error(`${args.join(' ')} exited (${code}) before it was ready`)));
  });
  return withTimeout(ready, STEP_MS, `${args.join(' ')} to be ready`).then((first) => ({ child, first }));
}

let nextId = 1;

/**
 * Sends a request to a peer and waits for its reply.
 *
 * @param {ChildProcess} child The peer
 * @param {Object} msg The message, without its id (the id goes in `msg[key].id` or `msg[key]`)
 * @param {String} what What is awaited
 * @return {Promise<Object>} The reply
 */
function ask(child, msg, what) {
  const id = nextId++;
  const [key] = Object.keys(msg);
  const body = typeof msg[key] === 'object' ? { ...msg[key], id } : id;
  const reply = new Promise((resolve) => {
    const onMessage = (m) => {
      if (m && m.reply && m.reply.id === id) {
        child.off('message', onMessage);
        resolve(m.reply);
      }
    };
    child.on('message', onMessage);
  });
  child.send({ [key]: body });
  return withTimeout(reply, STEP_MS, what);
}

/**
 * Runs one job at the sender and measures the listener's CPU over it.
 *
 * @param {Object} peers The sender and the listeners
 * @param {Object} kind The listener
 * @param {Object} job The job
 * @return {Promise<Object>} The job's result, with `cpuUsPerRequest`
 */
async function measure(peers, kind, job) {
  const listener = peers[kind.key];
  const before = await ask(listener, { cpu: true }, 'the listener\'s CPU');
  const result = await ask(peers.sender, { run: { ...job, url: peers.urls[kind.key], token: peers.tokens[kind.key] } }, `${kind.label} ${job.method}`);
  const after = await ask(listener, { cpu: true }, 'the listener\'s CPU');
  const cpuUs = after.cpu.user + after.cpu.system - before.cpu.user - before.cpu.system;
  const served = after.requests - before.requests;
  if (result.errors > 0) throw new Error(`${kind.label}: ${result.errors} failed request(s) of ${job.count}`);
  if (served !== job.count) throw new Error(`${kind.label}: the listener served ${served} requests of ${job.count}`);
  return { ...result, cpuUsPerRequest: cpuUs / job.count };
}

/**
 * The benchmark.
 *
 * @return {Promise<void>}
 */
async function main() {
  const args = parseRoundsAndScale();
  if (!args) {
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  const { rounds, scale } = args;
  const m = machine(ADDON);
  const begun = performance.now();
  console.log('HTTP: hyco-ws-rs RelayedServer vs hyco-https 1.4.5 as the listener; sender, relay and listeners in processes of their own');
  console.log(`  node ${m.node}, ${m.platform}, ${m.cores} CPUs (${m.cpuModel}), ${m.memGiB} GiB, ${m.date}; addon ${m.addon}`);
  console.log(`  ${rounds} interleaved round(s), scale ${scale}`);

  const children = [];
  try {
    const relay = await startPeer(['relay'], (msg) => msg && msg.ready);
    children.push(relay.child);
    const { namespace, keyName, key } = relay.first.ready;
    const peers = { urls: {}, tokens: {} };
    for (const kind of KINDS) {
      // A listener says nothing until it is started (below).
      peers[kind.key] = forkPeer(['listener', kind.key]);
      children.push(peers[kind.key]);
    }
    const sender = await startPeer(['sender'], (msg) => msg && msg.ready);
    children.push(sender.child);
    peers.sender = sender.child;
    for (const kind of KINDS) {
      const online = new Promise((resolve) => {
        const onMessage = (msg) => {
          if (msg && msg.online) {
            peers[kind.key].off('message', onMessage);
            resolve();
          }
        };
        peers[kind.key].on('message', onMessage);
      });
      peers[kind.key].send({ start: { namespace, keyName, key } });
      await withTimeout(online, STEP_MS, `the ${kind.label} listener to be online`);
      peers.urls[kind.key] = createRelayHttpsUri(namespace, `bench-http-${kind.key}/x`);
      peers.tokens[kind.key] = createRelayToken(peers.urls[kind.key], keyName, key);
    }

    const n = (x) => Math.max(10, Math.round(x * scale));
    const jobs = {
      serial: { method: 'GET', bodySize: 0, concurrency: 1, count: n(GET_SERIAL) },
      parallel: { method: 'GET', bodySize: 0, concurrency: GET_CONCURRENCY, count: n(GET_PARALLEL) },
      post: { method: 'POST', bodySize: POST_SIZE, concurrency: POST_CONCURRENCY, count: Math.max(8, Math.round(POST_COUNT * scale)) },
      paced: { method: 'GET', bodySize: 0, concurrency: GET_CONCURRENCY, count: n(PACED_COUNT), rate: PACED_RATE }
    };
    for (const kind of KINDS) {
      await measure(peers, kind, { ...jobs.serial, count: WARMUP });
      await measure(peers, kind, { ...jobs.post, count: 8 });
    }
    const res = {};
    for (const kind of KINDS) res[kind.key] = { serial: [], parallel: [], post: [], paced: [] };
    for (let r = 0; r < rounds; r++) {
      const order = KINDS.map((_, i) => KINDS[(i + r) % KINDS.length]);
      for (const [name, job] of Object.entries(jobs)) {
        for (const kind of order) res[kind.key][name].push(await measure(peers, kind, job));
      }
    }

    // Per round: the rates; latencies pooled over rounds.
    const rps = (x) => (x.latencies.length * 1000) / x.ms;
    const mbps = (x) => (x.latencies.length * POST_SIZE) / 1e6 / (x.ms / 1000);
    const stat = (kindKey, name, fn) => res[kindKey][name].map(fn);
    const pooled = (kindKey, name) => res[kindKey][name].flatMap((x) => x.latencies);
    const spread = (xs, f = formatRate) => `${f(Math.min(...xs))}–${f(Math.max(...xs))}`;
    const base = res.base !== undefined;
    const rows = [['measure', 'hyco-https', 'hyco-ws-rs', 'rs/hyco', 'target', ...(base ? ['baseline build', 'rs/base'] : [])]];
    // One row: `of(kind key)` is the figure of a listener.
    const line = (label, of, target) => {
      const row = [label, formatRate(of('hyco')), formatRate(of('rs')), `${(of('rs') / of('hyco')).toFixed(2)}x`, target];
      if (base) row.push(formatRate(of('base')), `${(of('rs') / of('base')).toFixed(2)}x`);
      rows.push(row);
    };
    line('small GET, serial: p50 µs', (k) => percentile(pooled(k, 'serial'), 50) * 1000, '');
    line('small GET, serial: p99 µs', (k) => percentile(pooled(k, 'serial'), 99) * 1000, '< 1x');
    line(`small GET, ${GET_CONCURRENCY} connections: requests/s`, (k) => median(stat(k, 'parallel', rps)), '>= 3x');
    line(`small GET, ${GET_CONCURRENCY} connections: p99 µs`, (k) => percentile(pooled(k, 'parallel'), 99) * 1000, '< 1x');
    line(`1 MiB POST, ${POST_CONCURRENCY} connections: MB/s`, (k) => median(stat(k, 'post', mbps)), '>= 2x');
    line('1 MiB POST: p50 ms', (k) => percentile(pooled(k, 'post'), 50), '');
    line('1 MiB POST: p99 ms', (k) => percentile(pooled(k, 'post'), 99), '< 1x');
    line('listener CPU per small GET, µs', (k) => median(stat(k, 'parallel', (x) => x.cpuUsPerRequest)), '');
    line('listener CPU per 1 MiB POST, µs', (k) => median(stat(k, 'post', (x) => x.cpuUsPerRequest)), '');
    line(`listener CPU per small GET at ${formatRate(PACED_RATE)}/s, µs`, (k) => median(stat(k, 'paced', (x) => x.cpuUsPerRequest)), '');
    line(`small GET at ${formatRate(PACED_RATE)}/s: p50 µs`, (k) => percentile(pooled(k, 'paced'), 50) * 1000, '');

    const each = (fn) => KINDS.map((k) => `${k.label} ${fn(k.key)}`).join('; ');
    const perRound = [
      `requests/s per round: ${each((k) => stat(k, 'parallel', rps).map((x) => formatRate(x)).join(' '))}`,
      `MB/s per round: ${each((k) => stat(k, 'post', mbps).map((x) => formatRate(x)).join(' '))}`,
      `spread of requests/s: ${each((k) => spread(stat(k, 'parallel', rps)))}; of MB/s: ${each((k) => spread(stat(k, 'post', mbps)))}`
    ];
    // A paced round that ran late did not keep its rate: its CPU figure is a saturated one.
    const late = KINDS.filter((k) => res[k.key].paced.some((x) => x.ms > (jobs.paced.count / PACED_RATE) * 1000 * 1.2));
    const notes = [
      'Rates: medians of rounds; latencies: percentiles over all requests of all rounds; CPU: the listener',
      'process (all threads) per request, medians of rounds. Sender: Node http, keep-alive agents.',
      `Counts per round: serial GET ${jobs.serial.count}, parallel GET ${jobs.parallel.count}, POST ${jobs.post.count} x 1 MiB, ` +
        `paced GET ${jobs.paced.count} at ${PACED_RATE}/s over ${GET_CONCURRENCY} connections.`,
      ...(late.length ? [`The paced rate was not kept in some rounds of: ${late.map((k) => k.label).join(', ')}.`] : []),
      ...perRound
    ];
    console.log('');
    console.log(table(rows).join('\n'));
    console.log('');
    console.log(notes.join('\n'));
    console.log(`total run ${((performance.now() - begun) / 1000).toFixed(1)} s`);
    const stampAfter = addonStamp(ADDON);
    if (stampAfter !== m.addon) console.log(`WARNING: the addon changed during the run (now ${stampAfter}); re-run.`);
    const md = [
      '## HTTP: `node bench/http.js` (`bench/http.js`)',
      '',
      `${m.date.slice(0, 10)}. Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memGiB} GiB, ${m.platform}; Node.js ${m.node}. Addon: ${m.addon}.`,
      `Sender (Node http) → local relay emulator → listener, each in a process of its own. ${rounds} interleaved round(s), scale ${scale}.`,
      '',
      ...markdownTable(rows),
      '',
      ...notes
    ];
    console.log('');
    console.log('----- BEGIN markdown for bench/RESULTS.md -----');
    console.log(md.join('\n'));
    console.log('----- END markdown for bench/RESULTS.md -----');
  } finally {
    // The sender and the listeners first (they leave when their channel to this process
    // closes), the relay last: a listener left without its relay would try to reconnect.
    for (const c of children.slice(1)) {
      if (c.connected) c.disconnect();
    }
    await Promise.all(
      children.slice(1).map((c) =>
        c.exitCode !== null
          ? null
          : withTimeout(new Promise((resolve) => c.once('exit', resolve)), 10000, 'a peer to exit').catch(() => c.kill('SIGKILL'))
      )
    );
    if (children[0] && children[0].connected) children[0].send({ shutdown: true });
    await Promise.all(
      children.slice(0, 1).map((c) =>
        c.exitCode !== null
          ? null
          : withTimeout(new Promise((resolve) => c.once('exit', resolve)), 10000, 'a peer to exit').catch(() => c.kill('SIGKILL'))
      )
    );
  }
}

runMain('bench/http.js', main);
