'use strict';

/**
 * createRelayToken: hyco-ws-rs (Rust) against hyco-ws's algorithm in plain JavaScript on
 * node:crypto (`bench/baseline/hyco-ws-helpers.js`), in one process, interleaved rounds.
 *
 * Usage: npm run build && node bench/helpers.js [calls=100000] [rounds=7]
 *
 * Prints the median time of each side per round and the ratio baseline/ours (above 1 means
 * hyco-ws-rs is faster).
 */

const { performance } = require('perf_hooks');

const { createRelayToken } = require('..');
const baseline = require('./baseline/hyco-ws-helpers');

const calls = Number(process.argv[2]) || 100000;
const rounds = Number(process.argv[3]) || 7;
const uri = 'wss://contoso.servicebus.windows.net:443/$hc/hyco?sb-hc-action=listen';
const keyName = 'RootManageSharedAccessKey';
const key = 'Abc123/+DEF456ghi789jkl012mno345pqr678stu90=';

/**
 * Runs `fn` `calls` times and returns the elapsed milliseconds.
 *
 * @param {Function} fn The token function
 * @return {Number} Milliseconds
 */
function time(fn) {
  let sink = 0;
  const start = performance.now();
  for (let i = 0; i < calls; i++) sink += fn(uri, keyName, key, 3600).length;
  const elapsed = performance.now() - start;
  if (sink === 0) throw new Error('unreachable: keeps the calls from being optimised away');
  return elapsed;
}

/**
 * The median of a list of numbers.
 *
 * @param {Number[]} xs The numbers
 * @return {Number} The median
 */
function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Same output first: a benchmark of two functions that disagree would mean nothing.
if (createRelayToken(uri, keyName, key, 60).split('&se=')[0] !== baseline.createRelayToken(uri, keyName, key, 60).split('&se=')[0]) {
  throw new Error('hyco-ws-rs and the baseline disagree');
}

// Warm-up, so that both sides are JIT-compiled before timing.
time(createRelayToken);
time(baseline.createRelayToken);

const ours = [];
const theirs = [];
for (let r = 0; r < rounds; r++) {
  ours.push(time(createRelayToken));
  theirs.push(time(baseline.createRelayToken));
}

const o = median(ours);
const t = median(theirs);
const perCall = (ms) => `${((ms * 1000) / calls).toFixed(2)} µs/call`;
console.log(`createRelayToken x ${calls}, median of ${rounds} rounds (node ${process.version})`);
console.log(`  hyco-ws-rs (Rust):        ${o.toFixed(1)} ms  (${perCall(o)})`);
console.log(`  hyco-ws algorithm (JS):   ${t.toFixed(1)} ms  (${perCall(t)})`);
console.log(`  ratio JS/Rust: ${(t / o).toFixed(2)}x ${t >= o ? '(hyco-ws-rs is faster)' : '(hyco-ws-rs is SLOWER)'}`);
