'use strict';

/**
 * Memory and speed under churn: a listener and a sender in one process, one connection at
 * a time (connect, echo one message, close), tens of thousands of times, through the local
 * relay emulator. Reports the process's RSS every `every` cycles (the curve), V8's heap,
 * cycles per second and CPU time per cycle, against a hand-written ws 8 listener and ws 8
 * senders doing the same cycles.
 *
 * Usage: node bench/churn.js [cycles=50000] [every=5000]
 *
 *   cycles  cycles per subject (default 50000)
 *   every   cycles per block: a sample is taken after each (default 5000)
 *
 * Subjects, each in a fresh child process of its own (bench/support/churn-peer.js), so that
 * the RSS measured is the subject's alone:
 *   - `RelayedServer + relayedConnect`: hyco-ws-rs on both ends, the relay emulator in a
 *     process of its own (bench/support/relay-peer.js);
 *   - `same, relay in-process`: the same with `startLocalRelay` in the subject's process
 *     (the layout in which the growth was first reported: all three in one process);
 *   - `ws 8 listener + ws 8 sender`: the baseline, on the separate relay.
 * The subjects run block by block in turn (the order rotates each round), so that each
 * block of one runs under the machine's load of the moment as the others' do; cycles/s and
 * CPU per cycle are medians of the blocks. RSS is read from /proc without forcing a GC
 * (what the system sees); the relay process's RSS is read after each round (it serves both
 * separate-relay subjects, so its cycles are twice theirs).
 *
 * Goal (issue 16): RSS after the last block within 10 MB of RSS after the first (after
 * 5,000 cycles at the defaults), for the hyco-ws-rs subjects: PASS or ABOVE. After the
 * blocks the addon's live object counts (internal `liveCounts()`) are printed, and must be
 * what they were after the first block. Prints a markdown section for bench/RESULTS.md.
 * Exits 1 if a cycle fails or a count did not come back.
 */

const fs = require('fs');
const path = require('path');
const { fork } = require('child_process');
const { once } = require('events');

const { median } = require('./support/stats');
const { runMain, withTimeout } = require('./support/run');
const { addonStamp, machine, markdownTable, table } = require('./support/report');

const USAGE = 'Usage: node bench/churn.js [cycles=50000] [every=5000]';
const PEER = path.join(__dirname, 'support', 'churn-peer.js');
const RELAY_PEER = path.join(__dirname, 'support', 'relay-peer.js');
const ADDON = path.join(__dirname, '..', 'hyco-ws-rs.linux-x64-gnu.node');
const START_TIMEOUT_MS = 30000;
const GOAL_MB = 10;
const MB = 1024 * 1024;

/** The subjects, in the first round's order. */
const SUBJECTS = [
  { kind: 'rs', label: 'RelayedServer + relayedConnect', goal: true },
  { kind: 'rs-local', label: 'same, relay in-process', goal: true },
  { kind: 'ws', label: 'ws 8 listener + ws 8 sender', goal: false }
];

/**
 * Reads `[cycles] [every]`.
 *
 * @return {?{cycles: Number, every: Number}} The arguments, or `null` when invalid
 */
function parseArgs() {
  const [c, e] = process.argv.slice(2);
  const cycles = c === undefined ? 50000 : Number(c);
  const every = e === undefined ? Math.min(5000, cycles) : Number(e);
  if (!Number.isInteger(cycles) || !Number.isInteger(every) || every < 1 || cycles < every) return null;
  if (cycles % every !== 0) return null;
  return { cycles, every };
}

/**
 * A process's resident set, in bytes.
 *
 * @param {Number} pid The process
 * @return {Number} Bytes (NaN if it cannot be read)
 */
function rssOf(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch {
    return NaN;
  }
}

/**
 * Forks `script` and waits for its message carrying `key`.
 *
 * @param {String} script The script
 * @param {String[]} args Its arguments
 * @param {String} key The ready message's key
 * @param {?Object} first A message to send once it is forked
 * @return {Promise<{child: ChildProcess, info: Object}>} The child and that message's value
 */
async function startChild(script, args, key, first) {
  const child = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const ready = new Promise((resolve, reject) => {
    child.on('message', (msg) => msg && msg[key] && resolve(msg[key]));
    child.once('exit', (code) => reject(new Error(`${path.basename(script)} ${args.join(' ')} exited (${code}) before it was ready`)));
  });
  if (first) child.send(first);
  const info = await withTimeout(ready, START_TIMEOUT_MS, `${path.basename(script)} ${args.join(' ')}`);
  return { child, info };
}

/**
 * Sends `msg` to `child` and waits for its answer carrying `key`.
 *
 * @param {ChildProcess} child The child
 * @param {Object} msg The request
 * @param {String} key The answer's key
 * @param {Number} ms How long it may take
 * @param {String} what What is awaited, for messages
 * @return {Promise<Object>} The answer's value
 */
function ask(child, msg, key, ms, what) {
  let onMessage;
  let onExit;
  const answer = new Promise((resolve, reject) => {
    onMessage = (m) => m && m[key] && resolve(m[key]);
    onExit = (code) => reject(new Error(`${what}: the process exited (${code})`));
    child.on('message', onMessage);
    child.once('exit', onExit);
  });
  child.send(msg);
  return withTimeout(answer, ms, what).finally(() => {
    child.removeListener('message', onMessage);
    child.removeListener('exit', onExit);
  });
}

/**
 * Ends a child: asks it to shut down, and kills it if it has not exited in time.
 *
 * @param {ChildProcess} child The child
 * @return {Promise<void>}
 */
async function stopChild(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  if (child.connected) child.send({ shutdown: true });
  try {
    await withTimeout(exited, 15000, 'a child to exit');
  } catch {
    child.kill('SIGKILL');
    await exited;
  }
}

/**
 * Megabytes, one decimal.
 *
 * @param {Number} bytes Bytes
 * @return {String} e.g. `61.8`
 */
function mb(bytes) {
  return (bytes / MB).toFixed(1);
}

/**
 * The benchmark.
 *
 * @return {Promise<void>}
 */
async function main() {
  const args = parseArgs();
  if (args === null) {
    console.error(USAGE);
    process.exitCode = 2;
    return;
  }
  const { cycles, every } = args;
  const blocks = cycles / every;
  const info = machine(ADDON);
  const failures = [];
  const children = [];
  try {
    const relay = await startChild(RELAY_PEER, [], 'ready', null);
    children.push(relay.child);
    const relayInfo = { namespace: relay.info.namespace, keyName: relay.info.keyName, key: relay.info.key };
    const subjects = [];
    for (const s of SUBJECTS) {
      const first = s.kind === 'rs-local' ? null : { relay: relayInfo };
      const { child, info: ready } = await startChild(PEER, [s.kind], 'ready', first);
      children.push(child);
      subjects.push({ ...s, child, samples: [ready] });
    }
    const relayRss = [rssOf(relay.info.pid)];
    const blockMs = 120000 + every * 20;
    for (let b = 0; b < blocks; b++) {
      for (let i = 0; i < subjects.length; i++) {
        const s = subjects[(b + i) % subjects.length];
        const sample = await ask(s.child, { run: every }, 'ran', blockMs, `${s.label}, block ${b + 1}`);
        if (sample.problem) failures.push(`${s.label}: ${sample.problem}`);
        s.samples.push(sample);
        process.stderr.write(
          `block ${b + 1}/${blocks} ${s.label}: ${sample.cycles} cycles, ` +
            `${Math.round((every * 1000) / sample.ms)} cycles/s, RSS ${mb(sample.memory.rss)} MB, ` +
            `heapUsed ${mb(sample.memory.heapUsed)} MB${sample.live ? `, live ${JSON.stringify(sample.live)}` : ''}\n`
        );
      }
      relayRss.push(rssOf(relay.info.pid));
    }

    const curve = [['cycles', ...subjects.map((s) => s.label), 'relay process']];
    for (let b = 0; b <= blocks; b++) {
      curve.push([
        (b * every).toLocaleString('en-US'),
        ...subjects.map((s) => mb(s.samples[b].memory.rss)),
        mb(relayRss[b])
      ]);
    }

    const stats = subjects.map((s) => {
      const runs = s.samples.slice(1);
      const first = runs[0].memory;
      const last = runs[runs.length - 1].memory;
      return {
        rate: median(runs.map((r) => (every * 1000) / r.ms)),
        cpuUs: median(runs.map((r) => (r.cpuMs * 1000) / every)),
        first,
        last,
        growth: last.rss - first.rss,
        liveFirst: runs[0].live,
        liveLast: runs[runs.length - 1].live
      };
    });
    const ws = stats[subjects.findIndex((s) => s.kind === 'ws')];
    const rows = [['measure', ...subjects.map((s) => s.label), 'rs/ws']];
    const row = (name, f, ratio) => rows.push([name, ...stats.map(f), ratio ? `${ratio(stats[0], ws).toFixed(2)}×` : '']);
    row('cycles/s (median of blocks)', (x) => Math.round(x.rate).toLocaleString('en-US'), (a, b) => a.rate / b.rate);
    row('CPU µs per cycle (this process)', (x) => x.cpuUs.toFixed(0), (a, b) => a.cpuUs / b.cpuUs);
    row(`RSS after ${every.toLocaleString('en-US')}, MB`, (x) => mb(x.first.rss));
    row(`RSS after ${cycles.toLocaleString('en-US')}, MB`, (x) => mb(x.last.rss));
    row('RSS growth between them, MB', (x) => mb(x.growth));
    row(`heapUsed after ${cycles.toLocaleString('en-US')}, MB`, (x) => mb(x.last.heapUsed));
    rows.push([
      `goal: growth ≤ ${GOAL_MB} MB`,
      ...stats.map((x, i) => (subjects[i].goal ? (x.growth <= GOAL_MB * MB ? 'PASS' : 'ABOVE') : '')),
      ''
    ]);

    for (let i = 0; i < subjects.length; i++) {
      const { liveFirst, liveLast } = stats[i];
      if (!liveFirst) continue;
      // Tasks may differ by the spare connection (opening or kept) at the sample's moment.
      const grew = Object.keys(liveFirst).filter((k) => liveLast[k] > liveFirst[k] + (k === 'tasks' ? 2 : 0));
      if (grew.length) {
        failures.push(`${subjects[i].label}: live counts grew: ${grew.map((k) => `${k} ${liveFirst[k]} → ${liveLast[k]}`).join(', ')}`);
      }
    }

    const load = require('os').loadavg().map((x) => x.toFixed(2)).join(' ');
    console.log(`churn: ${cycles.toLocaleString('en-US')} cycles per subject (connect, echo 1 message, close), blocks of ${every.toLocaleString('en-US')}, subjects in turn`);
    console.log(`${info.cpuModel}, ${info.cores} cores, ${info.memGiB} GiB, node ${info.node}, ${info.platform}; load average ${load}`);
    console.log(`addon: ${addonStamp(ADDON)}`);
    console.log('\nRSS, MB (each subject in its own process; the relay process serves the two separate-relay subjects):');
    console.log(table(curve).join('\n'));
    console.log('');
    console.log(table(rows).join('\n'));
    for (let i = 0; i < subjects.length; i++) {
      if (stats[i].liveLast) console.log(`${subjects[i].label}: live counts ${JSON.stringify(stats[i].liveFirst)} → ${JSON.stringify(stats[i].liveLast)}`);
    }
    console.log('\n--- markdown for bench/RESULTS.md ---');
    console.log(`${info.date.slice(0, 10)}. ${cycles.toLocaleString('en-US')} cycles per subject in blocks of ${every.toLocaleString('en-US')}, subjects in turn; ${info.cpuModel}, ${info.cores} cores, node ${info.node}, load average ${load}.\n`);
    console.log(markdownTable(curve).join('\n'));
    console.log('');
    console.log(markdownTable(rows).join('\n'));
    console.log('--- end ---');
  } finally {
    await Promise.all(children.map(stopChild));
  }
  if (failures.length) {
    console.log(`\nFAILED CHECKS (${failures.length}):`);
    for (const f of failures) console.log(`  - ${f}`);
    process.exitCode = 1;
  }
}

runMain('bench/churn.js', main);
