// The local relay emulator, from the outside: the Hybrid Connections wire protocol
// (PROTOCOL.md) spoken by hand with plain `ws` clients: addresses and tokens, the control
// channel, rendezvous (accept and reject), end-to-end frames, expiry and renewal, stats,
// events and TLS. Only the package's token and URI helpers are used on the client side.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { execFileSync } from 'node:child_process';

import {
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  parseConnectionString,
  parseRelayToken
} from 'hyco-ws-rs';

import {
  STEP_MS,
  acceptRendezvous,
  attempt,
  connectPair,
  endClients,
  expectOpen,
  expectStatus,
  listen,
  makeCertificate,
  nextAccept,
  nextEvent,
  nextMessage,
  rejectRendezvous,
  roundTrip,
  signToken,
  startLocalRelay,
  startSender,
  tryListen,
  waitUntil,
  whenClosed,
  withRelay,
  withTimeout,
  WebSocket
} from './support/relay-steps.mjs';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * A random key in the format of Azure's.
 *
 * @returns {string}
 */
function randomKey() {
  return crypto.randomBytes(32).toString('base64');
}

/**
 * A plain (non-upgrade) HTTP GET.
 *
 * @param {string} url The address.
 * @returns {Promise<number>} The response's status.
 */
function httpGet(url) {
  const p = new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false, headers: { Connection: 'close' } }, (res) => {
      res.resume();
      res.on('end', () => req.destroy());
      resolve(res.statusCode);
    });
    req.on('error', reject);
  });
  return withTimeout(p, STEP_MS, `the answer to GET ${url}`);
}

/**
 * Answers every accept arriving on a control channel (without awaiting the answer).
 *
 * @param {WebSocket} control An open control channel.
 * @param {(accept: object) => void} handler Called with each accept's body.
 */
function onEveryAccept(control, handler) {
  control.on('message', (data, isBinary) => {
    if (isBinary) return;
    let msg;
    try {
      msg = JSON.parse(data.toString());
    } catch {
      return;
    }
    if (msg && msg.accept) handler(msg.accept);
  });
}

/**
 * The first header of `headers` whose name matches `name` case-insensitively.
 *
 * @param {object} headers A header map.
 * @param {string} name The header's name.
 * @returns {[string, string] | undefined} The header's original name and value.
 */
function findHeader(headers, name) {
  return Object.entries(headers).find(([k]) => k.toLowerCase() === name.toLowerCase());
}

/**
 * A unix expiry at least `ms` from now, on a whole second.
 *
 * @param {number} ms Milliseconds from now.
 * @returns {number} Unix seconds.
 */
function expiryIn(ms) {
  return Math.ceil((Date.now() + ms) / 1000);
}

describe('startLocalRelay', () => {
  test('reports its url, namespace, port and first rule, and starts with empty stats', async () => {
    await withRelay(undefined, async (relay) => {
      assert.equal(typeof relay.port, 'number');
      assert.ok(Number.isInteger(relay.port) && relay.port > 0 && relay.port < 65536, String(relay.port));
      assert.equal(relay.url, `ws://127.0.0.1:${relay.port}/`);
      assert.equal(relay.namespace, `ws://127.0.0.1:${relay.port}`);
      assert.equal(relay.keyName, 'RootManageSharedAccessKey');
      assert.equal(typeof relay.key, 'string');
      assert.ok(relay.key.length > 0);
      const stats = relay.stats();
      assert.deepEqual(
        {
          listeners: stats.listeners,
          pendingAccepts: stats.pendingAccepts,
          connections: stats.connections,
          bufferedBytes: stats.bufferedBytes
        },
        { listeners: 0, pendingAccepts: 0, connections: 0, bufferedBytes: 0 }
      );
      // A second relay gets its own port and its own random key.
      await withRelay(undefined, async (other) => {
        assert.notEqual(other.port, relay.port);
        assert.notEqual(other.key, relay.key);
      });
    });
  });

  test('the first of the given rules is the one reported', async () => {
    const key = randomKey();
    await withRelay(
      { rules: [{ name: 'mine', key, rights: ['Manage'] }, { name: 'other', key: randomKey(), rights: ['Send'] }] },
      async (relay) => {
        assert.equal(relay.keyName, 'mine');
        assert.equal(relay.key, key);
        await roundTrip(relay, 'hc');
      }
    );
  });

  test('connectionString(entity) parses back to the namespace, entity, key name and key', async () => {
    await withRelay(undefined, async (relay) => {
      const cs = relay.connectionString('hc1');
      assert.equal(
        cs,
        `Endpoint=ws://127.0.0.1:${relay.port}/;SharedAccessKeyName=${relay.keyName};SharedAccessKey=${relay.key};EntityPath=hc1`
      );
      const c = parseConnectionString(cs);
      assert.equal(c.namespace, relay.namespace);
      assert.equal(c.entityPath, 'hc1');
      assert.equal(c.sharedAccessKeyName, relay.keyName);
      assert.equal(c.sharedAccessKey, relay.key);
      const bare = parseConnectionString(relay.connectionString());
      assert.equal(bare.namespace, relay.namespace);
      assert.equal(bare.entityPath, undefined);
      // What the connection string gives is enough to use the relay.
      const uri = createRelayListenUri(c.namespace, c.entityPath);
      const control = await listen(relay, 'hc1', {
        namespace: c.namespace,
        token: createRelayToken(uri, c.sharedAccessKeyName, c.sharedAccessKey)
      });
      control.close();
    });
  });

  test('close() closes every socket, resolves, is idempotent, and frees the port', async () => {
    const relay = await startLocalRelay();
    try {
      const control = await listen(relay, 'hc');
      const { sender, peer } = await connectPair(relay, control, 'hc');
      const pending = startSender(relay, 'hc');
      await nextAccept(control);
      await withTimeout(relay.close(), 10_000, 'relay.close()');
      for (const [ws, name] of [[control, 'control channel'], [sender, 'sender'], [peer, 'listener side']]) {
        await whenClosed(ws, STEP_MS, `the ${name} to be closed by relay.close()`);
        assert.equal(ws.readyState, WebSocket.CLOSED, name);
      }
      const o = await withTimeout(pending.outcome, STEP_MS, 'the pending sender to fail');
      assert.equal(o.ok, false, 'a sender still waiting for an accept cannot succeed once the relay is closed');
      await withTimeout(relay.close(), STEP_MS, 'a second relay.close()');
      const after = await withTimeout(tryListen(relay, 'hc').outcome, STEP_MS, 'a listen attempt after close');
      assert.equal(after.ok, false);
      assert.equal(after.error && after.error.code, 'ECONNREFUSED', 'the port is no longer listening');
    } finally {
      await relay.close();
      endClients();
    }
  });
});

describe('handshake statuses, addresses and tokens', () => {
  const keys = { root: randomKey(), listen: randomKey(), send: randomKey() };
  const options = {
    rules: [
      { name: 'root', key: keys.root, rights: ['Manage'] },
      { name: 'listenOnly', key: keys.listen, rights: ['Listen'] },
      { name: 'sendOnly', key: keys.send, rights: ['Send'] }
    ],
    hybridConnections: [{ name: 'hc1' }, { name: 'hc10' }, { name: 'open', requiresClientAuthorization: false }],
    acceptTimeoutMs: 3000
  };

  test('the hand-signed tokens of these tests are the package\'s own format', async () => {
    await withRelay(options, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc1');
      const token = createRelayToken(uri, 'root', keys.root, 600);
      const parsed = parseRelayToken(token);
      assert.equal(parsed.resource, `http://127.0.0.1:${relay.port}/hc1`);
      assert.equal(signToken(parsed.resource, 'root', keys.root, parsed.expiresAt.getTime() / 1000), token);
    });
  });

  test('listen: 401 for a missing, malformed, expired, tampered, unknown-rule or wrongly signed token', async () => {
    await withRelay(options, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc1');
      const resource = `http://127.0.0.1:${relay.port}/hc1`;
      const now = Math.floor(Date.now() / 1000);
      const good = signToken(resource, 'root', keys.root, now + 600);
      const cases = [
        ['no token', null],
        ['a malformed token', 'SharedAccessSignature garbage'],
        ['a token of another scheme', 'Bearer abc.def.ghi'],
        ['an expired token', signToken(resource, 'root', keys.root, now - 60)],
        ['a token whose expiry was changed', good.replace(`se=${now + 600}`, `se=${now + 6000}`)],
        ['a token of an unknown rule', createRelayToken(uri, 'noSuchRule', keys.root)],
        ['a token signed with the wrong key', createRelayToken(uri, 'root', keys.listen)]
      ];
      for (const tokenIn of ['header', 'query']) {
        for (const [what, token] of cases) {
          await expectStatus(tryListen(relay, 'hc1', { token, tokenIn }).outcome, 401, `listen with ${what} (${tokenIn})`);
        }
        // Positive control: the same hand-made token, valid, opens.
        const control = await expectOpen(tryListen(relay, 'hc1', { token: good, tokenIn }).outcome, `listen (${tokenIn})`);
        control.close();
      }
    });
  });

  test('listen: 403 when the rule lacks Listen or the token covers another entity', async () => {
    await withRelay(options, async (relay) => {
      const ns = relay.namespace;
      const uri = createRelayListenUri(ns, 'hc1');
      const cases = [
        ['a Send-only rule', createRelayToken(uri, 'sendOnly', keys.send)],
        ['a token for hc10', createRelayToken(createRelayListenUri(ns, 'hc10'), 'root', keys.root)],
        ['a token for /hc (not a / boundary)', createRelayToken(`http://127.0.0.1:${relay.port}/hc`, 'root', keys.root)],
        ['a token for /hc1/sub (below the entity)', createRelayToken(`http://127.0.0.1:${relay.port}/hc1/sub`, 'root', keys.root)]
      ];
      for (const [what, token] of cases) {
        await expectStatus(tryListen(relay, 'hc1', { token }).outcome, 403, `listen with ${what}`);
      }
      const control = await listen(relay, 'hc1', { token: createRelayToken(uri, 'listenOnly', keys.listen) });
      control.close();
    });
  });

  test('connect: 401 and 403 as for listen, checked before the sender reaches a listener', async () => {
    await withRelay(options, async (relay) => {
      const ns = relay.namespace;
      const control = await listen(relay, 'hc1');
      // A sender wrongly let through reaches this listener and gets 418 instead.
      onEveryAccept(control, (accept) => {
        const url = `${accept.address}&sb-hc-statusCode=418&sb-hc-statusDescription=${encodeURIComponent('let in')}`;
        attempt(url);
      });
      const uri = createRelaySendUri(ns, 'hc1');
      const resource = `http://127.0.0.1:${relay.port}/hc1`;
      const now = Math.floor(Date.now() / 1000);
      const unauthorized = [
        ['no token', null],
        ['a malformed token', 'SharedAccessSignature sr=x&sig=y'],
        ['an expired token', signToken(resource, 'root', keys.root, now - 60)],
        ['a token of an unknown rule', createRelayToken(uri, 'noSuchRule', keys.root)],
        ['a token signed with the wrong key', createRelayToken(uri, 'root', keys.send)]
      ];
      for (const [what, token] of unauthorized) {
        await expectStatus(startSender(relay, 'hc1', { token }).outcome, 401, `connect with ${what}`);
        await expectStatus(startSender(relay, 'hc1', { token, tokenIn: 'query' }).outcome, 401, `connect with ${what} (query)`);
      }
      const forbidden = [
        ['a Listen-only rule', createRelayToken(uri, 'listenOnly', keys.listen)],
        ['a token for hc10', createRelayToken(createRelaySendUri(ns, 'hc10'), 'root', keys.root)],
        ['a token for /hc (not a / boundary)', createRelayToken(`http://127.0.0.1:${relay.port}/hc`, 'root', keys.root)]
      ];
      for (const [what, token] of forbidden) {
        await expectStatus(startSender(relay, 'hc1', { token }).outcome, 403, `connect with ${what}`);
      }
      // Positive controls: Send-only and Manage rules reach the listener (which says 418).
      for (const [rule, key] of [['sendOnly', keys.send], ['root', keys.root]]) {
        const o = await expectStatus(
          startSender(relay, 'hc1', { token: createRelayToken(uri, rule, key) }).outcome,
          418,
          `connect with the ${rule} rule`
        );
        assert.equal(o.statusMessage, 'let in');
      }
    });
  });

  test('Listen-only and Send-only rules make a working pair', async () => {
    await withRelay(options, async (relay) => {
      const ns = relay.namespace;
      const control = await listen(relay, 'hc1', {
        token: createRelayToken(createRelayListenUri(ns, 'hc1'), 'listenOnly', keys.listen)
      });
      const { sender, peer } = await connectPair(relay, control, 'hc1', {
        token: createRelayToken(createRelaySendUri(ns, 'hc1'), 'sendOnly', keys.send)
      });
      sender.send('hi');
      assert.equal((await nextMessage(peer)).data.toString(), 'hi');
    });
  });

  test('token resources compare scheme-, port-, case- and trailing-slash-insensitively; the root covers all', async () => {
    await withRelay(options, async (relay) => {
      const p = relay.port;
      const resources = [
        `http://127.0.0.1:${p}/hc1`,
        `https://127.0.0.1/hc1/`,
        `sb://127.0.0.1/HC1`,
        `ws://127.0.0.1:${p}/$hc/hc1`,
        `wss://127.0.0.1:443/Hc1/`,
        `http://127.0.0.1:${p}/`,
        `http://127.0.0.1:${p}`,
        `sb://127.0.0.1/`
      ];
      for (const resource of resources) {
        const token = createRelayToken(resource, 'root', keys.root);
        const control = await expectOpen(tryListen(relay, 'hc1', { token }).outcome, `listen with a token for ${resource}`);
        control.close();
        await whenClosed(control);
      }
      // A namespace-root token also covers another entity, for both roles.
      const root = createRelayToken(`sb://127.0.0.1/`, 'root', keys.root);
      const control = await listen(relay, 'hc10', { token: root });
      const { sender } = await connectPair(relay, control, 'hc10', { token: root });
      assert.equal(sender.readyState, WebSocket.OPEN);
    });
  });

  test('a sender token may cover the entity plus suffix, ending at a / boundary', async () => {
    await withRelay(options, async (relay) => {
      const base = `http://127.0.0.1:${relay.port}`;
      const control = await listen(relay, 'hc1');
      const ok = createRelayToken(`${base}/hc1/sub`, 'root', keys.root);
      const { sender, accept } = await connectPair(relay, control, 'hc1/sub/x', { token: ok });
      assert.equal(new URL(accept.address).pathname, '/$hc/hc1/sub/x');
      assert.equal(sender.readyState, WebSocket.OPEN);
      for (const bad of [`${base}/hc1/su`, `${base}/hc1/sub/x/y`, `${base}/hc1/other`]) {
        const token = createRelayToken(bad, 'root', keys.root);
        await expectStatus(startSender(relay, 'hc1/sub/x', { token }).outcome, 403, `connect to hc1/sub/x with a token for ${bad}`);
      }
    });
  });

  test('a token must name the host connected to', async () => {
    await withRelay(options, async (relay) => {
      for (const host of ['localhost', '127.0.0.2', 'ns.servicebus.windows.net']) {
        const token = createRelayToken(`http://${host}:${relay.port}/hc1`, 'root', keys.root);
        await expectStatus(tryListen(relay, 'hc1', { token }).outcome, [401, 403], `listen with a token for host ${host}`);
      }
    });
  });

  test('the token works in the ServiceBusAuthorization header or the sb-hc-token query', async () => {
    await withRelay(options, async (relay) => {
      for (const [listenIn, sendIn] of [['query', 'header'], ['header', 'query']]) {
        const control = await listen(relay, 'hc1', { tokenIn: listenIn });
        const { sender, peer } = await connectPair(relay, control, 'hc1', { tokenIn: sendIn });
        peer.send('via ' + sendIn);
        assert.equal((await nextMessage(sender)).data.toString(), 'via ' + sendIn);
        sender.close();
        control.close();
        await whenClosed(control);
      }
    });
  });

  test('404 for a Hybrid Connection that is not in the list', async () => {
    await withRelay(options, async (relay) => {
      await expectStatus(tryListen(relay, 'nope').outcome, 404, 'listen on an unknown entity');
      await expectStatus(startSender(relay, 'nope').outcome, 404, 'connect to an unknown entity');
    });
  });

  test('requiresClientAuthorization: false lets senders in without a token, never listeners', async () => {
    await withRelay(options, async (relay) => {
      await expectStatus(tryListen(relay, 'open', { token: null }).outcome, 401, 'listen without a token');
      const control = await listen(relay, 'open');
      const { sender, peer } = await connectPair(relay, control, 'open', { token: null });
      sender.send('anonymous');
      assert.equal((await nextMessage(peer)).data.toString(), 'anonymous');
      // hc1 still requires one.
      await expectStatus(startSender(relay, 'hc1', { token: null }).outcome, 401, 'anonymous connect to hc1');
    });
  });

  test('400 for a missing or unknown sb-hc-action, or a path not under /$hc/', async () => {
    await withRelay(options, async (relay) => {
      const ns = relay.namespace;
      const headers = { ServiceBusAuthorization: createRelayToken(`${ns}/`, 'root', keys.root) };
      for (const url of [`${ns}/$hc/hc1`, `${ns}/$hc/hc1?sb-hc-action=dance`, `${ns}/$hc/hc1?x=1`, `${ns}/hc1?sb-hc-action=listen`]) {
        await expectStatus(attempt(url, undefined, { headers }).outcome, 400, `upgrade to ${url}`);
      }
    });
  });

  test('plain HTTP requests: 404 outside a Hybrid Connection, 400 on a /$hc/ address (relayed HTTP: relay-http.test.mjs)', async () => {
    await withRelay(options, async (relay) => {
      const base = `http://127.0.0.1:${relay.port}`;
      assert.equal(await httpGet(`${base}/`), 404);
      assert.equal(await httpGet(`${base}/$hc/hc1?sb-hc-action=listen`), 400);
    });
  });

  test('maxListeners: one listener too many gets 403; the limit is per entity and slots are freed', async () => {
    await withRelay({ maxListeners: 2 }, async (relay) => {
      const first = await listen(relay, 'hc');
      await listen(relay, 'hc');
      await expectStatus(tryListen(relay, 'hc').outcome, 403, 'a third listener on hc');
      await listen(relay, 'other');
      first.close();
      await whenClosed(first);
      await waitUntil(() => relay.stats().listeners === 2, STEP_MS, () => `stats().listeners is 2 (${JSON.stringify(relay.stats())})`);
      await listen(relay, 'hc');
    });
  });
});

describe('rendezvous', () => {
  test('the accept message carries the address, id, sender headers and remote endpoint', async () => {
    await withRelay({ hybridConnections: [{ name: 'hc' }] }, async (relay) => {
      const control = await listen(relay, 'hc');
      const s = startSender(relay, 'hc/sub/x?foo=bar&baz=q%20x', {
        id: 'track-1',
        headers: { 'X-Custom-Header': 'v1' },
        protocols: ['p1', 'p2']
      });
      const accept = await nextAccept(control);
      const a = new URL(accept.address);
      assert.equal(a.protocol, 'ws:');
      assert.equal(a.host, `127.0.0.1:${relay.port}`);
      assert.equal(a.pathname, '/$hc/hc/sub/x');
      assert.equal(a.searchParams.get('foo'), 'bar');
      assert.equal(a.searchParams.get('baz'), 'q x');
      assert.deepEqual(a.searchParams.getAll('sb-hc-action'), ['accept']);
      assert.equal(a.searchParams.get('sb-hc-id'), accept.id);
      assert.equal(a.searchParams.has('sb-hc-token'), false);
      assert.equal(accept.id, 'track-1');

      assert.equal(typeof accept.connectHeaders, 'object');
      assert.equal(accept.connectHeaders['X-Custom-Header'], 'v1', 'custom header with its original case');
      assert.equal(findHeader(accept.connectHeaders, 'ServiceBusAuthorization'), undefined, 'the token header is not passed on');
      assert.ok(findHeader(accept.connectHeaders, 'Sec-WebSocket-Key'), 'Sec-WebSocket-Key is passed on');
      const protocols = findHeader(accept.connectHeaders, 'Sec-WebSocket-Protocol');
      assert.ok(protocols, 'Sec-WebSocket-Protocol is passed on');
      assert.deepEqual(protocols[1].split(/\s*,\s*/), ['p1', 'p2']);

      assert.equal(accept.remoteEndpoint.address, '127.0.0.1');
      assert.ok(Number.isInteger(accept.remoteEndpoint.port) && accept.remoteEndpoint.port > 0);

      await acceptRendezvous(accept, { protocol: 'p2' });
      const sender = await expectOpen(s.outcome, 'the sender');
      // ws keeps the client's socket in _socket: the relay saw the sender's own port.
      assert.equal(accept.remoteEndpoint.port, sender._socket.localPort);

      // A token in the query does not reach the listener either; no id means a fresh UUID.
      const s2 = startSender(relay, 'hc?k=v', { tokenIn: 'query' });
      const accept2 = await nextAccept(control);
      const a2 = new URL(accept2.address);
      assert.equal(a2.pathname, '/$hc/hc');
      assert.equal(a2.searchParams.get('k'), 'v');
      assert.equal(a2.searchParams.has('sb-hc-token'), false);
      assert.match(accept2.id, UUID);
      assert.equal(a2.searchParams.get('sb-hc-id'), accept2.id);
      assert.ok(!accept2.address.includes('SharedAccessSignature'));
      await acceptRendezvous(accept2);
      await expectOpen(s2.outcome, 'the second sender');
    });
  });

  test('an id already pending is made unique; each sender gets its own address', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      const s1 = startSender(relay, 'hc', { id: 'dup' });
      const first = await nextAccept(control);
      const s2 = startSender(relay, 'hc', { id: 'dup' });
      const second = await nextAccept(control);
      assert.equal(first.id, 'dup');
      assert.notEqual(second.id, first.id);
      assert.ok(second.id.startsWith('dup'), second.id);
      assert.notEqual(second.address, first.address);
      const p2 = await acceptRendezvous(second);
      const p1 = await acceptRendezvous(first);
      const snd1 = await expectOpen(s1.outcome, 'sender 1');
      const snd2 = await expectOpen(s2.outcome, 'sender 2');
      snd1.send('one');
      snd2.send('two');
      assert.equal((await nextMessage(p1)).data.toString(), 'one');
      assert.equal((await nextMessage(p2)).data.toString(), 'two');
    });
  });

  // Microsoft's protocol article lists 403 ("The URL is not valid") as the accept
  // handshake's error for an address that cannot be used.
  test('an accept address works once', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      const { accept } = await connectPair(relay, control, 'hc');
      await expectStatus(attempt(accept.address).outcome, 403, 'a second use of the accept address');
    });
  });

  test('the sub-protocol chosen on the accept handshake is the sender\'s protocol', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      for (const chosen of ['chat.v2', 'chat.v1']) {
        const { sender } = await connectPair(relay, control, 'hc', { protocols: ['chat.v1', 'chat.v2'], protocol: chosen });
        assert.equal(sender.protocol, chosen);
      }
    });
  });

  test('text, binary, empty and fragmented messages cross both ways, in order', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      const { sender, peer } = await connectPair(relay, control, 'hc');
      for (const [from, to, dir] of [[sender, peer, 'sender to listener'], [peer, sender, 'listener to sender']]) {
        from.send('hello');
        from.send(Buffer.from([0, 1, 2, 255]));
        from.send('');
        from.send(Buffer.alloc(0));
        from.send('frag', { fin: false });
        from.send('men', { fin: false });
        from.send('ted', { fin: true });
        from.send(Buffer.from([1, 2]), { fin: false });
        from.send(Buffer.from([3]), { fin: true });
        for (let i = 0; i < 200; i++) from.send(`#${i}`);
        const expect = [
          ['hello', false],
          [Buffer.from([0, 1, 2, 255]), true],
          ['', false],
          [Buffer.alloc(0), true],
          ['fragmented', false],
          [Buffer.from([1, 2, 3]), true],
          ...Array.from({ length: 200 }, (_, i) => [`#${i}`, false])
        ];
        for (const [i, [data, isBinary]] of expect.entries()) {
          const m = await nextMessage(to, STEP_MS, `message ${i} ${dir}`);
          assert.equal(m.isBinary, isBinary, `message ${i} ${dir}: binary flag`);
          if (isBinary) assert.deepEqual(m.data, data, `message ${i} ${dir}`);
          else assert.equal(m.data.toString(), data, `message ${i} ${dir}`);
        }
      }
    });
  });

  test('an 8 MiB message crosses each way intact', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      const { sender, peer } = await connectPair(relay, control, 'hc');
      const big = crypto.randomBytes(8 * 1024 * 1024);
      sender.send(big);
      const atListener = await nextMessage(peer, 20_000, '8 MiB at the listener');
      assert.equal(atListener.data.length, big.length);
      assert.ok(atListener.data.equals(big), '8 MiB sender to listener differ');
      peer.send(big);
      const atSender = await nextMessage(sender, 20_000, '8 MiB at the sender');
      assert.ok(atSender.data.equals(big), '8 MiB listener to sender differ');
    });
  });

  test('pings and pongs are forwarded end to end', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      const { sender, peer } = await connectPair(relay, control, 'hc');
      for (const [from, to, dir] of [[sender, peer, 'sender to listener'], [peer, sender, 'listener to sender']]) {
        const payload = Buffer.from(`ping ${dir}`);
        const pinged = nextEvent(to, 'ping', STEP_MS, `the ping ${dir}`);
        const ponged = nextEvent(from, 'pong', STEP_MS, `the pong back (${dir})`);
        from.ping(payload);
        assert.deepEqual((await pinged)[0], payload, 'ping payload');
        assert.deepEqual((await ponged)[0], payload, 'pong payload');
      }
    });
  });

  test('a close code and reason travel end to end, and both sides end CLOSED', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      const a = await connectPair(relay, control, 'hc');
      a.sender.close(4001, 'bye');
      assert.deepEqual(await whenClosed(a.peer, STEP_MS, 'the listener side to close'), { code: 4001, reason: 'bye' });
      await whenClosed(a.sender, STEP_MS, 'the sender to close');
      assert.equal(a.sender.readyState, WebSocket.CLOSED);
      assert.equal(a.peer.readyState, WebSocket.CLOSED);

      const b = await connectPair(relay, control, 'hc');
      b.peer.close(4002, 'later');
      assert.deepEqual(await whenClosed(b.sender, STEP_MS, 'the sender to close'), { code: 4002, reason: 'later' });
      await whenClosed(b.peer, STEP_MS, 'the listener side to close');
      assert.equal(b.sender.readyState, WebSocket.CLOSED);
      assert.equal(b.peer.readyState, WebSocket.CLOSED);
      await waitUntil(() => relay.stats().connections === 0, STEP_MS, 'stats().connections is back to 0');
    });
  });

  test('reject: the listener gets 410, the sender the listener\'s status and description', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      for (const [code, description] of [[403, 'go away'], [503, 'busy, try later']]) {
        const s = startSender(relay, 'hc');
        const accept = await nextAccept(control);
        await rejectRendezvous(accept, code, description);
        const o = await expectStatus(s.outcome, code, 'the rejected sender');
        assert.equal(o.statusMessage, description);
      }
      await waitUntil(() => relay.stats().pendingAccepts === 0, STEP_MS, 'no accept left pending');
    });
  });

  test('504 when no accept comes within acceptTimeoutMs; the address is then dead', async () => {
    await withRelay({ acceptTimeoutMs: 1000 }, async (relay) => {
      const control = await listen(relay, 'hc');
      const started = Date.now();
      const s = startSender(relay, 'hc');
      const accept = await nextAccept(control);
      await expectStatus(s.outcome, 504, 'the unanswered sender', 10_000);
      const elapsed = Date.now() - started;
      assert.ok(elapsed >= 900, `the relay gave up after ${elapsed} ms, before acceptTimeoutMs`);
      await expectStatus(attempt(accept.address).outcome, 403, 'an accept after the timeout');
      assert.equal(relay.stats().pendingAccepts, 0);
    });
  });

  test('a sender gets 404 when no listener is connected', async () => {
    await withRelay(undefined, async (relay) => {
      await expectStatus(startSender(relay, 'never').outcome, 404, 'connect to an entity never listened on');
      const control = await listen(relay, 'hc');
      control.close();
      await whenClosed(control);
      await waitUntil(() => relay.stats().listeners === 0, STEP_MS, 'the listener to be gone');
      await expectStatus(startSender(relay, 'hc').outcome, 404, 'connect after the listener left');
    });
  });

  test('senders are spread at random across listeners', async () => {
    await withRelay(undefined, async (relay) => {
      const controls = [await listen(relay, 'hc'), await listen(relay, 'hc')];
      const counts = [0, 0];
      controls.forEach((control, i) =>
        onEveryAccept(control, (accept) => {
          counts[i]++;
          attempt(accept.address);
        })
      );
      const senders = Array.from({ length: 20 }, () => startSender(relay, 'hc'));
      await Promise.all(senders.map((s, i) => expectOpen(s.outcome, `sender ${i}`, 10_000)));
      assert.equal(counts[0] + counts[1], 20);
      assert.ok(counts[0] > 0 && counts[1] > 0, `accepts per listener: ${counts}`);
    });
  });
});

describe('control channel', () => {
  test('answers pings', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      for (let i = 0; i < 3; i++) {
        const ponged = nextEvent(control, 'pong', STEP_MS, 'a pong on the control channel');
        control.ping(`p${i}`);
        assert.equal((await ponged)[0].toString(), `p${i}`);
      }
    });
  });

  test('ignores malformed messages and binary frames, and keeps working', async () => {
    await withRelay(undefined, async (relay) => {
      const control = await listen(relay, 'hc');
      for (const junk of ['not json', '{}', '[1,2,3]', 'null', '{"unknown":{"x":1}}', '{"accept":{}}', '{"']) {
        control.send(junk);
      }
      control.send(crypto.randomBytes(100));
      control.send(Buffer.from('{"renewToken":{"token":"x"}}'), { binary: true });
      const ponged = nextEvent(control, 'pong', STEP_MS, 'a pong after the junk');
      control.ping();
      await ponged;
      assert.equal(control.readyState, WebSocket.OPEN);
      const { sender } = await connectPair(relay, control, 'hc');
      assert.equal(sender.readyState, WebSocket.OPEN);
    });
  });

  test('renewToken with a valid token keeps the listener past its first expiry', async () => {
    await withRelay(undefined, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      const resource = `http://127.0.0.1:${relay.port}/hc`;
      const se = expiryIn(1500);
      const shortToken = signToken(resource, relay.keyName, relay.key, se);
      const renewed = await listen(relay, 'hc', { token: shortToken });
      const notRenewed = await listen(relay, 'hc', { token: shortToken });
      // Expires one second after the others: once it is dropped, the relay has passed the
      // first expiry for certain.
      const witness = await listen(relay, 'hc', { token: signToken(resource, relay.keyName, relay.key, se + 1) });
      renewed.send(JSON.stringify({ renewToken: { token: createRelayToken(uri, relay.keyName, relay.key, 60) } }));
      const first = await whenClosed(notRenewed, 10_000, 'the listener that was not renewed to be dropped');
      assert.equal(first.code, 1008);
      assert.ok(Date.now() >= se * 1000 - 500, `dropped ${se * 1000 - Date.now()} ms before its expiry`);
      const second = await whenClosed(witness, 10_000, 'the witness listener to be dropped');
      assert.equal(second.code, 1008);
      const ponged = nextEvent(renewed, 'pong', STEP_MS, 'a pong from the renewed channel');
      renewed.ping();
      await ponged;
      assert.equal(renewed.readyState, WebSocket.OPEN, 'the renewed listener is still open');
      const { sender } = await connectPair(relay, renewed, 'hc');
      assert.equal(sender.readyState, WebSocket.OPEN);
    });
  });

  test('renewToken with a bad token closes the control channel with 1008', async () => {
    await withRelay(undefined, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      for (const bad of [createRelayToken(uri, relay.keyName, randomKey(), 60), createRelayToken(uri, 'noSuchRule', relay.key, 60)]) {
        const control = await listen(relay, 'hc');
        control.send(JSON.stringify({ renewToken: { token: bad } }));
        const { code } = await whenClosed(control, STEP_MS, 'the channel to be closed after a bad renewal');
        assert.equal(code, 1008);
      }
    });
  });

  test('an expired listen token drops the control channel with 1008; relayed connections live on', async () => {
    await withRelay(undefined, async (relay) => {
      const resource = `http://127.0.0.1:${relay.port}/hc`;
      const control = await listen(relay, 'hc', { token: signToken(resource, relay.keyName, relay.key, expiryIn(1500)) });
      const { sender, peer } = await connectPair(relay, control, 'hc');
      const { code } = await whenClosed(control, 10_000, 'the control channel to be dropped at expiry');
      assert.equal(code, 1008);
      sender.send('still here');
      assert.equal((await nextMessage(peer)).data.toString(), 'still here');
      peer.send('me too');
      assert.equal((await nextMessage(sender)).data.toString(), 'me too');
      assert.equal(sender.readyState, WebSocket.OPEN);
      assert.equal(peer.readyState, WebSocket.OPEN);
    });
  });
});

describe('stats and events', () => {
  test('stats() counts listeners, pending accepts and connections', async () => {
    await withRelay(undefined, async (relay) => {
      const stats = () => JSON.stringify(relay.stats());
      const control = await listen(relay, 'hc');
      await waitUntil(() => relay.stats().listeners === 1, STEP_MS, () => `listeners is 1: ${stats()}`);
      const s = startSender(relay, 'hc');
      const accept = await nextAccept(control);
      await waitUntil(() => relay.stats().pendingAccepts === 1, STEP_MS, () => `pendingAccepts is 1: ${stats()}`);
      assert.equal(relay.stats().connections, 0);
      const peer = await acceptRendezvous(accept);
      const sender = await expectOpen(s.outcome, 'the sender');
      await waitUntil(
        () => relay.stats().connections === 1 && relay.stats().pendingAccepts === 0,
        STEP_MS,
        () => `connections 1, pendingAccepts 0: ${stats()}`
      );
      const { bufferedBytes } = relay.stats();
      assert.ok(Number.isFinite(bufferedBytes) && bufferedBytes >= 0, stats());
      sender.close();
      await whenClosed(peer);
      await waitUntil(() => relay.stats().connections === 0, STEP_MS, () => `connections is 0: ${stats()}`);
      assert.equal(relay.stats().listeners, 1);
      control.close();
      await waitUntil(() => relay.stats().listeners === 0, STEP_MS, () => `listeners is 0: ${stats()}`);
    });
  });

  test('events report listen, connect, accept, reject, timeout, denied and listenerClosed, without secrets', async () => {
    await withRelay({ acceptTimeoutMs: 1000 }, async (relay) => {
      const events = [];
      relay.on('event', (e) => events.push(e));
      const seen = (pred, what) =>
        waitUntil(() => events.some(pred), STEP_MS, () => `an event: ${what}; got ${JSON.stringify(events.map((e) => e.type))}`);
      const ns = relay.namespace;
      const listenUri = createRelayListenUri(ns, 'hc');
      const sendUri = createRelaySendUri(ns, 'hc');
      const tokens = [
        createRelayToken(listenUri, relay.keyName, relay.key),
        createRelayToken(sendUri, relay.keyName, relay.key),
        createRelayToken(listenUri, relay.keyName, randomKey())
      ];
      const [listenToken, sendToken, badToken] = tokens;

      const control = await listen(relay, 'hc', { token: listenToken });
      await seen((e) => e.type === 'listen' && (e.hybridConnection ?? 'hc') === 'hc', 'listen');

      const { sender } = await connectPair(relay, control, 'hc', { token: sendToken, tokenIn: 'query' });
      await seen((e) => e.type === 'connect', 'connect');
      await seen((e) => e.type === 'accept' && (e.hybridConnection ?? 'hc') === 'hc', 'accept');
      sender.close();

      const rejected = startSender(relay, 'hc', { token: sendToken });
      await rejectRendezvous(await nextAccept(control), 403, 'no');
      await expectStatus(rejected.outcome, 403, 'the rejected sender');
      await seen((e) => e.type === 'reject', 'reject');

      const ignored = startSender(relay, 'hc', { token: sendToken });
      await nextAccept(control);
      await expectStatus(ignored.outcome, 504, 'the unanswered sender', 10_000);
      await seen((e) => e.type === 'timeout', 'timeout');

      await expectStatus(tryListen(relay, 'hc', { token: badToken, tokenIn: 'query' }).outcome, 401, 'a bad listen token');
      await seen((e) => e.type === 'denied', 'denied');
      const denied = events.find((e) => e.type === 'denied');
      if (denied.status !== undefined) assert.equal(denied.status, 401);

      control.close();
      await seen((e) => e.type === 'listenerClosed', 'listenerClosed');

      for (const e of events) {
        assert.equal(typeof e.type, 'string');
        assert.equal(typeof e.message, 'string');
      }
      const all = JSON.stringify(events);
      assert.ok(!all.includes(relay.key), 'an event carries the key');
      for (const token of tokens) {
        const sig = /sig=([^&]+)/.exec(token)[1];
        assert.ok(!all.includes(sig) && !all.includes(decodeURIComponent(sig)), 'an event carries a signature');
      }
    });
  });
});

describe('TLS', () => {
  test('serves wss:// with the given certificate', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-tls-'));
    try {
      const keyFile = path.join(dir, 'key.pem');
      const certFile = path.join(dir, 'cert.pem');
      execFileSync(
        'openssl',
        ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1', '-days', '1', '-keyout', keyFile, '-out', certFile],
        { stdio: 'ignore' }
      );
      const certPem = fs.readFileSync(certFile, 'utf8');
      const keyPem = fs.readFileSync(keyFile);
      await withRelay({ tls: { cert: certPem, key: keyPem } }, async (relay) => {
        assert.ok(relay.namespace.startsWith('wss://'), relay.namespace);
        assert.equal(relay.namespace, `wss://127.0.0.1:${relay.port}`);
        assert.equal(relay.url, `wss://127.0.0.1:${relay.port}/`);
        const wsOptions = { ca: certPem };
        const control = await listen(relay, 'hc', { wsOptions });
        const s = startSender(relay, 'hc', { wsOptions });
        const accept = await nextAccept(control);
        assert.ok(accept.address.startsWith(`wss://127.0.0.1:${relay.port}/$hc/hc?`), accept.address);
        const peer = await acceptRendezvous(accept, { wsOptions });
        const sender = await expectOpen(s.outcome, 'the TLS sender');
        sender.send('secure');
        assert.equal((await nextMessage(peer)).data.toString(), 'secure');
        peer.send('indeed');
        assert.equal((await nextMessage(sender)).data.toString(), 'indeed');
        // Without trusting the certificate, the handshake fails.
        const untrusted = await withTimeout(tryListen(relay, 'hc').outcome, STEP_MS, 'an untrusting client');
        assert.equal(untrusted.ok, false);
        await roundTrip(relay, 'hc-check', { wsOptions });
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('accept and request addresses name the host the listener connected with, and its certificate verifies them', async () => {
    // The certificate names the host only (no IP entry), as the service's certificate
    // names the namespace: an address on the relay's bind IP would fail verification.
    const { cert, key } = makeCertificate('DNS:localhost');
    await withRelay({ tls: { cert, key }, hybridConnections: ['hc'] }, async (relay) => {
      const byName = `wss://localhost:${relay.port}`;
      const verified = { ca: cert };
      const control = await listen(relay, 'hc', { namespace: byName, wsOptions: verified });
      // The sender comes by the IP address (trusting the certificate, not checking its
      // name): the addresses follow the listener's host, not the sender's.
      const byIp = { ca: cert, checkServerIdentity: () => undefined };
      const s = startSender(relay, 'hc/suffix?app=1', { wsOptions: byIp });
      const accept = await nextAccept(control);
      assert.ok(accept.address.startsWith(`${byName}/$hc/hc/suffix?app=1&sb-hc-action=accept&sb-hc-id=`), accept.address);
      const peer = await acceptRendezvous(accept, { wsOptions: verified });
      const sender = await expectOpen(s.outcome, 'the sender');
      sender.send('by name');
      assert.equal((await nextMessage(peer)).data.toString(), 'by name');

      // An HTTP request's rendezvous address too.
      const response = new Promise((resolve, reject) => {
        const req = https.request(
          {
            host: '127.0.0.1',
            port: relay.port,
            path: '/hc/page',
            agent: false,
            ...byIp,
            headers: { ServiceBusAuthorization: createRelayToken(`https://127.0.0.1:${relay.port}/hc`, relay.keyName, relay.key) }
          },
          (res) => {
            const chunks = [];
            res.on('data', (c) => chunks.push(c));
            res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks).toString() }));
            res.on('error', reject);
          }
        );
        req.on('error', reject);
        req.end();
      });
      const { request } = JSON.parse((await nextMessage(control, STEP_MS, 'the request message')).data.toString());
      assert.ok(request.address.startsWith(`${byName}/$hc/hc?sb-hc-action=request&sb-hc-id=`), request.address);
      const rv = await expectOpen(attempt(request.address, undefined, verified).outcome, 'the request rendezvous');
      rv.send(JSON.stringify({ response: { requestId: request.id, statusCode: 200, responseHeaders: {}, body: true } }));
      rv.send(Buffer.from('over the rendezvous'), { binary: true });
      assert.deepEqual(await withTimeout(response, STEP_MS, 'the HTTP response'), { status: 200, body: 'over the rendezvous' });
    });
  });
});
