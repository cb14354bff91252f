// Responses sent inline by the owner's thread (#12): a small response written whole in one
// call (`res.end(body)`) to a request that came on the control channel goes out from the JS
// thread itself, and its exchange's task is told to end by the listener's tokio threads.
// What must hold: every response reaches its sender whole, whichever way it went (inline at
// once, or through the exchange's task: written in pieces, large, HEAD, 204), with many at
// once on one control channel; and the tasks of exchanges answered inline end soon after,
// not at the relay's 60-second deadline (counted with the addon's liveCounts(), as
// churn.test.mjs does).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import { createRelayedServer } from 'hyco-ws-rs';

import { httpAddress, patterned, sendHttp, sha256 } from './support/http-steps.mjs';
import { waitUntil } from './support/relay-steps.mjs';
import { listenOptions, record, whenListening, withServerRelay } from './support/server-steps.mjs';

const require = createRequire(import.meta.url);
const { native } = require('../lib/native-events.js');

/** Below the relay's 60 s deadline, which would end a forgotten task by itself. */
const SETTLE_MS = 10000;

/**
 * Sends `count` requests, `parallel` at a time, each on a connection of its own (so that the
 * relay's connections end with them).
 *
 * @param {number} count Requests
 * @param {number} parallel At most this many at once
 * @param {(i: number) => Promise<void>} one Sends request `i` and checks its response
 * @returns {Promise<void>}
 */
async function inWaves(count, parallel, one) {
  let next = 0;
  const worker = async () => {
    while (next < count) await one(next++);
  };
  await Promise.all(Array.from({ length: parallel }, worker));
}

test('many responses at once on one control channel, inline and through their tasks, each whole', () =>
  withServerRelay(undefined, async (relay) => {
    const large = patterned(100 * 1024);
    const server = record(createRelayedServer(listenOptions(relay, 'hc')));
    server.on('request', (req, res) => {
      const kind = req.url.split('/')[1];
      if (kind === 'small') {
        res.setHeader('X-Kind', 'small');
        res.end(`small ${req.url}`);
      } else if (kind === 'pieces') {
        res.setHeader('Content-Type', 'text/plain');
        res.write('first ');
        setImmediate(() => res.end(`then ${req.url}`));
      } else if (kind === 'large') {
        res.end(large.data);
      } else if (kind === 'empty') {
        res.statusCode = 204;
        res.end();
      } else {
        res.statusCode = 404;
        res.end();
      }
    });
    await whenListening(server);
    const kinds = ['small', 'pieces', 'small', 'large', 'small', 'empty', 'head'];
    await inWaves(140, 20, async (i) => {
      const kind = kinds[i % kinds.length];
      const { url, token } = httpAddress(relay, `hc/${kind === 'head' ? 'small' : kind}/${i}`);
      const r = await sendHttp(url, { token, method: kind === 'head' ? 'HEAD' : 'GET' });
      const what = `request ${i} (${kind})`;
      if (kind === 'small') {
        assert.equal(r.status, 200, what);
        assert.equal(r.headers['x-kind'], 'small', what);
        assert.equal(r.body.toString(), `small /small/${i}`, what);
      } else if (kind === 'head') {
        assert.equal(r.status, 200, what);
        assert.equal(r.headers['x-kind'], 'small', what);
        assert.equal(r.body.length, 0, what);
      } else if (kind === 'pieces') {
        assert.equal(r.status, 200, what);
        assert.equal(r.body.toString(), `first then /pieces/${i}`, what);
      } else if (kind === 'large') {
        assert.equal(r.status, 200, what);
        assert.equal(sha256(r.body), large.sha, what);
      } else {
        assert.equal(r.status, 204, what);
        assert.equal(r.body.length, 0, what);
      }
    });
  }));

test('the tasks of exchanges answered inline end soon after, not at the relay deadline', () =>
  withServerRelay(undefined, async (relay) => {
    const server = record(createRelayedServer(listenOptions(relay, 'hc')));
    server.on('request', (req, res) => res.end('ok'));
    await whenListening(server);
    const { url, token } = httpAddress(relay, 'hc/x');
    const send = async () => {
      const r = await sendHttp(url, { token });
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'ok');
    };
    const before = native.liveCounts().tasks;
    await inWaves(300, 10, send);
    await waitUntil(
      () => native.liveCounts().tasks <= before,
      SETTLE_MS,
      () => `the 300 exchanges' tasks to end: ${native.liveCounts().tasks} tasks, ${before} before`
    );
  }));
