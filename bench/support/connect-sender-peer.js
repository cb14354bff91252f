'use strict';

/**
 * The senders of `bench/listener.js`'s connect measure "sender in another process": plain
 * ws 8 senders in a child process of their own, as they are in a deployment (a sender
 * never shares the listener's JavaScript thread). The bench process holds the listeners;
 * both take their moments on the machine's monotonic clock (`monoMs()`), so the interval
 * spans the two processes.
 *
 * Usage: started by bench/listener.js with child_process.fork(); not meant to be run by hand.
 *
 * IPC: sends `{ ready: { pid } }` at start. On `{ connect: { id, uri, token, n } }` it
 * takes `t0 = monoMs()`, opens `new WebSocket(uri, { headers: { ServiceBusAuthorization:
 * token }, perMessageDeflate: false })`, waits for 'open', proves the connection with a
 * 16-byte echo starting with `n`, closes it (1000), waits for its 'close' and answers
 * `{ done: { id, t0, openMs, code, error } }` (`code`: the close code it saw; `error`: a
 * message, or `null`). Nothing is sent to the bench process while a connect is being
 * timed. Exits when the bench process goes away, closing what is left.
 */

const { monoMs, withTimeout } = require('./run');
const { closeAll, closeSocket, closed, openSender, probe } = require('./senders');

const STEP_TIMEOUT_MS = 10000;

/**
 * Opens, proves and closes one sender.
 *
 * @param {Object} req `{ id, uri, token, n }`
 * @return {Promise<Object>} The answer: `{ id, t0, openMs, code, error }`
 */
async function connect(req) {
  const what = `sender ${req.n}`;
  const t0 = monoMs();
  const ws = openSender(req.uri, req.token);
  let openMs = null;
  try {
    await withTimeout(
      new Promise((resolve, reject) => {
        ws.once('open', () => {
          openMs = monoMs() - t0;
          resolve();
        });
        ws.once('close', (code) => reject(new Error(`${what}: closed (${code}) before opening${ws.lastError ? `: ${ws.lastError.message}` : ''}`)));
      }),
      STEP_TIMEOUT_MS,
      `${what} to open`
    );
    await probe(ws, req.n, what, STEP_TIMEOUT_MS);
    const code = closed(ws);
    ws.close(1000);
    return { id: req.id, t0, openMs, code: await withTimeout(code, STEP_TIMEOUT_MS, `${what} to close`), error: null };
  } catch (err) {
    return { id: req.id, t0, openMs, code: null, error: err.message };
  } finally {
    await closeSocket(ws, STEP_TIMEOUT_MS);
  }
}

process.on('message', (msg) => {
  if (msg && msg.connect) connect(msg.connect).then((done) => process.connected && process.send({ done }));
});
process.on('disconnect', () => {
  closeAll(STEP_TIMEOUT_MS).then(() => process.exit(0));
});
process.send({ ready: { pid: process.pid } });
