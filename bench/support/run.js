'use strict';

/**
 * What every benchmark script needs to run: bounded waits, the `[rounds] [scale]`
 * arguments, and a `main()` runner that reports failures and never hangs at exit.
 */

/**
 * Rejects with an error naming `what` if `promise` does not settle within `ms`.
 *
 * @param {Promise} promise The promise
 * @param {Number} ms Milliseconds
 * @param {String} what What is being waited for
 * @return {Promise} The promise's outcome
 */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * Resolves when `ws` (a ws 8 or hyco-ws-rs socket) is open; rejects on an error or a close
 * before that, or after `ms`. Its listeners are removed once it settles, whichever way: a
 * benchmark that keeps its sockets open (the idle-memory measure) must not keep three
 * listeners and a promise per socket of its own besides the socket. A socket with no other
 * 'error' listener gets a shared one that ignores errors, as the settled promise did.
 *
 * @param {WebSocket} ws The socket
 * @param {String} what The socket's role, for messages
 * @param {Number} ms Milliseconds
 * @param {Function} [annotate] Called with the rejection's error and the socket's, to add
 *     to the former
 * @return {Promise<void>}
 */
function opened(ws, what, ms, annotate) {
  if (ws.readyState === ws.OPEN) return Promise.resolve();
  let onOpen;
  let onError;
  let onClose;
  const p = new Promise((resolve, reject) => {
    onOpen = resolve;
    onError = (err) => {
      const e = new Error(`${what}: ${err.message}`);
      if (annotate) annotate(e, err);
      reject(e);
    };
    onClose = (code) => reject(new Error(`${what}: closed (${code}) before opening`));
    ws.once('open', onOpen);
    ws.once('error', onError);
    ws.once('close', onClose);
  });
  return withTimeout(p, ms, `${what} to open`).finally(() => {
    ws.removeListener('open', onOpen);
    ws.removeListener('error', onError);
    ws.removeListener('close', onClose);
    if (ws.listenerCount('error') === 0) ws.on('error', ignoreError);
  });
}

/**
 * An 'error' listener that ignores the error (see `opened`).
 *
 * @private
 */
function ignoreError() {}

/**
 * Milliseconds on the system's monotonic clock (`process.hrtime`, CLOCK_MONOTONIC on
 * Linux): unlike `performance.now()`, whose origin is the process's start, it can compare
 * moments taken in different processes of one machine.
 *
 * @return {Number} Milliseconds
 */
function monoMs() {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * Reads `[rounds=5] [scale=1]` from the command line.
 *
 * @return {?{rounds: Number, scale: Number}} The arguments, or `null` when invalid
 */
function parseRoundsAndScale() {
  const [r, s] = process.argv.slice(2);
  const rounds = r === undefined ? 5 : Number(r);
  const scale = s === undefined ? 1 : Number(s);
  if (!Number.isInteger(rounds) || rounds < 1) return null;
  if (!Number.isFinite(scale) || scale <= 0) return null;
  return { rounds, scale };
}

/**
 * Runs a benchmark's `main`: a failure sets exit status 1, and a handle left open after
 * cleanup is reported and the process ended instead of hanging.
 *
 * @param {String} name The script, for messages (`bench/relay.js`)
 * @param {Function} main The async main function
 */
function runMain(name, main) {
  main()
    .catch((err) => {
      console.error(`${name} failed: ${err.stack || err.message}`);
      process.exitCode = 1;
    })
    .finally(() => {
      // Everything is closed by now and the process should exit at once; if some handle
      // still holds it, say so instead of hanging.
      setTimeout(() => {
        console.error(`${name}: a handle is still open after cleanup; exiting`);
        process.exit(process.exitCode || 1);
      }, 10000).unref();
    });
}

module.exports = { monoMs, opened, parseRoundsAndScale, runMain, withTimeout };
