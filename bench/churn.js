'use strict';

/**
 * Memory and speed under churn: a listener and a sender in one process, one connection at
 * a time (connect, echo one message, close), tens of thousands of times, through the local
 * relay emulator. Reports the process's RSS every `every` cycles (the curve), V8's heap,
 * cycles per second and CPU time per cycle, against a hand-written ws 8 listener and ws 8
 * senders doing the same cycles.
 *
 * Usage: node bench/churn.js [cycles=50000] [every=5000] [rounds=1]
 *
 *   cycles  cycles per subject and round (default 50000)
 *   every   cycles between samples (default 5000)
 *   rounds  rounds, each with fresh processes, the subjects' order rotating (default 1)
 *
 * Subjects, each in a fresh child process of its own (bench/support/churn-peer.js), so that
 * the RSS measured is the subject's alone:
 *   - `RelayedServer + relayedConnect`: hyco-ws-rs on both ends, the relay emulator in a
 *     process of its own (bench/support/relay-peer.js, fresh for the subject);
 *   - `same, relay in-process`: the same with `startLocalRelay` in the subject's process
 *     (the layout in which the growth was first reported: all three in one process);
 *   - `ws 8 listener + ws 8 sender`: the baseline, on a relay process of its own.
 * Each subject runs its cycles without a pause, one subject after the other: memory that
 * is held for some seconds after each connection shows only in a continuous run (a layout
 * that alternated subjects block by block let such memory drain while a subject waited its
 * turn, and hid most of the growth this bench was written for). Cycles/s and CPU per cycle
 * are medians of the samples' intervals, then of the rounds. RSS is read from /proc without
 * forcing a GC (what the system sees); the relay process's RSS is read with each sample.
 *
 * Goal (issue 16): RSS after the last sample within 10 MB of RSS after the first (50,000
 * and 5,000 cycles at the defaults), for the hyco-ws-rs subjects: PASS or ABOVE. The
 * addon's live object counts (internal `liveCounts()`) after the first and the last sample
 * must agree (builds without them are measured too, for before/after figures). Prints a
 * markdown section for bench/RESULTS.md. Exits 1 if a cycle fails or a count grew.
 */

const fs = require('fs');
const path = require('path');
const { fork } = require('child_process');
const { once } = require('events');

const { median } = require('./support/stats');
const { runMain, withTimeout } = require('./support/run');
const { addonStamp, machine, markdownTable, table } = require('./support/report');

const USAGE = 'Usage: node bench/churn.js [cycles=50000] [every=5000] [rounds=1]';
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
 * Reads `[cycles] [every] [rounds]`.
 *
 * @return {?{cycles: Number, every: Number, rounds: Number}} The arguments, or `null` when
 *     invalid
 */
function parseArgs() {
  const [c, e, r] = process.argv.slice(2);
  const cycles = c === undefined ? 50000 : Number(c);
  const every = e === undefined ? Math.min(5000, cycles) : Number(e);
  const rounds = r === undefined ? 1 : Number(r);
  if (![cycles, every, rounds].every(Number.isInteger) || every < 1 || rounds < 1) return null;
  if (cycles < every || cycles % every !== 0) return null;
  return { cycles, every, rounds };
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
 * Runs one subject in fresh processes (its own, and a relay's unless it has the relay
 * in-process): `cycles` cycles without a pause, a sample every `every`.
 *
 * @param {Object} subject An entry of `SUBJECTS`
 * @param {Number} cycles Cycles
 * @param {Number} every Cycles between samples
 * @return {Promise<{samples: Object[], relayRss: Number[]}>} The samples (the first taken
 *     before any cycle) and the relay process's RSS at each (NaN for an in-process relay)
 */
async function runSubject(subject, cycles, every) {
  const children = [];
  try {
    let first = null;
    let relayPid = null;
    if (subject.kind !== 'rs-local') {
      const relay = await startChild(RELAY_PEER, [], 'ready', null);
      children.push(relay.child);
      relayPid = relay.info.pid;
      first = { relay: { namespace: relay.info.namespace, keyName: relay.info.keyName, key: relay.info.key } };
    }
    const { child, info: ready } = await startChild(PEER, [subject.kind], 'ready', first);
    children.push(child);
    const samples = [ready];
    const relayRss = [relayPid === null ? NaN : rssOf(relayPid)];
    const ran = new Promise((resolve, reject) => {
      child.on('message', (msg) => {
        if (msg && msg.sample) {
          samples.push(msg.sample);
          relayRss.push(relayPid === null ? NaN : rssOf(relayPid));
          const x = msg.sample;
          process.stderr.write(
            `${subject.label}: ${x.cycles} cycles, ${Math.round((every * 1000) / x.ms)} cycles/s, ` +
              `RSS ${mb(x.memory.rss)} MB, heapUsed ${mb(x.memory.heapUsed)} MB` +
              `${x.live ? `, live ${JSON.stringify(x.live)}` : ''}\n`
          );
        } else if (msg && msg.ran) resolve();
      });
      child.once('exit', (code) => reject(new Error(`${subject.label}: the process exited (${code})`)));
    });
    child.send({ run: cycles, every });
    await withTimeout(ran, 300000 + cycles * 20, `${subject.label}'s ${cycles} cycles`);
    return { samples, relayRss };
  } finally {
    await Promise.all(children.map(stopChild));
  }
}

/**
 * What one subject's run gives, for the summary.
 *
 * @param {{samples: Object[]}} run The run
 * @param {Number} every Cycles between samples
 * @return {Object} `{ rate, cpuUs, first, last, growth, liveFirst, liveLast, problem }`
 */
function summarise(run, every) {
  const timed = run.samples.slice(1);
  const first = timed[0].memory;
  const last = timed[timed.length - 1].memory;
  return {
    rate: median(timed.map((x) => (every * 1000) / x.ms)),
    cpuUs: median(timed.map((x) => (x.cpuMs * 1000) / every)),
    first,
    last,
    growth: last.rss - first.rss,
    liveFirst: timed[0].live,
    liveLast: timed[timed.length - 1].live,
    problem: timed.map((x) => x.problem).find(Boolean) || null
  };
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
  const { cycles, every, rounds } = args;
  const info = machine(ADDON);
  const failures = [];
  const loads = [];
  /** Per subject (in SUBJECTS' order): each round's run and summary. */
  const results = SUBJECTS.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (let i = 0; i < SUBJECTS.length; i++) {
      const k = (r + i) % SUBJECTS.length;
      loads.push(require('os').loadavg()[0]);
      const run = await runSubject(SUBJECTS[k], cycles, every);
      const sum = summarise(run, every);
      results[k].push({ run, sum });
      if (sum.problem) failures.push(`${SUBJECTS[k].label}: ${sum.problem}`);
      const { liveFirst, liveLast } = sum;
      if (liveFirst && liveLast) {
        // Tasks may differ by the spare connection (opening or kept) at the sample's moment.
        const grew = Object.keys(liveFirst).filter((n) => liveLast[n] > liveFirst[n] + (n === 'tasks' ? 2 : 0));
        if (grew.length) {
          failures.push(`${SUBJECTS[k].label}: live counts grew: ${grew.map((n) => `${n} ${liveFirst[n]} → ${liveLast[n]}`).join(', ')}`);
        }
      }
    }
  }

  const curves = [];
  for (let r = 0; r < rounds; r++) {
    const curve = [['cycles', ...SUBJECTS.map((s) => s.label), 'relay (first)', 'relay (ws 8)']];
    const runs = results.map((x) => x[r].run);
    const wsRun = runs[SUBJECTS.findIndex((s) => s.kind === 'ws')];
    for (let b = 0; b <= cycles / every; b++) {
      curve.push([(b * every).toLocaleString('en-US'), ...runs.map((x) => mb(x.samples[b].memory.rss)), mb(runs[0].relayRss[b]), mb(wsRun.relayRss[b])]);
    }
    curves.push(curve);
  }

  const med = (k, f) => median(results[k].map((x) => f(x.sum)));
  const wsK = SUBJECTS.findIndex((s) => s.kind === 'ws');
  const rows = [['measure', ...SUBJECTS.map((s) => s.label), 'rs/ws']];
  const row = (name, f, fmt, ratio) =>
    rows.push([name, ...SUBJECTS.map((_, k) => fmt(med(k, f))), ratio ? `${(med(0, f) / med(wsK, f)).toFixed(2)}×` : '']);
  row('cycles/s (median)', (x) => x.rate, (v) => Math.round(v).toLocaleString('en-US'), true);
  row('CPU µs per cycle (this process)', (x) => x.cpuUs, (v) => v.toFixed(0), true);
  row(`RSS after ${every.toLocaleString('en-US')}, MB`, (x) => x.first.rss, mb);
  row(`RSS after ${cycles.toLocaleString('en-US')}, MB`, (x) => x.last.rss, mb);
  row('RSS growth between them, MB', (x) => x.growth, mb);
  row(`heapUsed after ${cycles.toLocaleString('en-US')}, MB`, (x) => x.last.heapUsed, mb);
  rows.push([
    `goal: growth ≤ ${GOAL_MB} MB`,
    ...SUBJECTS.map((s, k) => (s.goal ? (med(k, (x) => x.growth) <= GOAL_MB * MB ? 'PASS' : 'ABOVE') : '')),
    ''
  ]);

  const load = `${Math.min(...loads).toFixed(2)}–${Math.max(...loads).toFixed(2)}`;
  const what = `${cycles.toLocaleString('en-US')} cycles per subject (connect, echo 1 message, close), a sample every ${every.toLocaleString('en-US')}, ${rounds} round${rounds > 1 ? 's' : ''}`;
  console.log(`churn: ${what}`);
  console.log(`${info.cpuModel}, ${info.cores} cores, ${info.memGiB} GiB, node ${info.node}, ${info.platform}; 1-min load average ${load}`);
  console.log(`addon: ${addonStamp(ADDON)}`);
  curves.forEach((curve, r) => {
    console.log(`\nRSS, MB, round ${r + 1} (each subject in its own process; the relay columns are the relay processes of the first subject and of ws 8):`);
    console.log(table(curve).join('\n'));
  });
  console.log(`\n${rounds > 1 ? 'medians of the rounds' : 'summary'}:`);
  console.log(table(rows).join('\n'));
  SUBJECTS.forEach((s, k) => {
    for (const { sum } of results[k]) if (sum.liveLast) console.log(`${s.label}: live counts ${JSON.stringify(sum.liveFirst)} → ${JSON.stringify(sum.liveLast)}`);
  });
  console.log('\n--- markdown for bench/RESULTS.md ---');
  console.log(`${info.date.slice(0, 10)}. ${what}; ${info.cpuModel}, ${info.cores} cores, node ${info.node}, load average ${load}.\n`);
  console.log(markdownTable(curves[0]).join('\n'));
  console.log('');
  console.log(markdownTable(rows).join('\n'));
  console.log('--- end ---');
  if (failures.length) {
    console.log(`\nFAILED CHECKS (${failures.length}):`);
    for (const f of failures) console.log(`  - ${f}`);
    process.exitCode = 1;
  }
}

runMain('bench/churn.js', main);
