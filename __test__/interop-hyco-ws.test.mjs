// Interoperability with Microsoft's hyco-ws 1.0.5 (ws 1.1 underneath), through the local
// relay emulator: their sender against our RelayedServer, our sender against theirs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

import {
  startLocalRelay,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  relayedConnect,
  RelayedServer
} from 'hyco-ws-rs';

import { nextEvent } from './support/relay-steps.mjs';

const require = createRequire(import.meta.url);
const hycoWs = require('hyco-ws');
const ours = require('hyco-ws-rs/hyco-ws');

const WAIT = 10000;


test('hyco-ws relayedConnect talks to our RelayedServer', async () => {
  const relay = await startLocalRelay();
  const lu = createRelayListenUri(relay.namespace, 'hc');
  const server = new RelayedServer({ server: lu, token: () => createRelayToken(lu, relay.keyName, relay.key) });
  try {
    server.on('connection', (ws) => ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary })));
    await nextEvent(server, 'listening', WAIT, 'our listener');
    // hyco-ws's own helpers build the address and token (a bare namespace would mean
    // wss://ns:443, so the local relay's address is given in full).
    const su = createRelaySendUri(relay.namespace, 'hc');
    const token = hycoWs.createRelayToken(su, relay.keyName, relay.key);
    const sender = await new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('hyco-ws sender did not open')), WAIT);
      const s = hycoWs.relayedConnect(su, token, (socket) => {
        clearTimeout(timer);
        resolve(socket);
      });
      s.on('error', reject);
    });
    const reply = nextEvent(sender, 'message', WAIT, 'the echo');
    sender.send('from hyco-ws');
    const [data] = await reply;
    // ws 1.1 delivers text as a string.
    assert.equal(String(data), 'from hyco-ws');
    const closed = nextEvent(sender, 'close', WAIT, 'the close');
    sender.close(1000);
    const [code] = await closed;
    assert.equal(code, 1000);
  } finally {
    await new Promise((resolve) => server.close(resolve));
    await relay.close();
  }
});

test('our relayedConnect talks to a hyco-ws RelayedServer', async () => {
  const relay = await startLocalRelay();
  const lu = createRelayListenUri(relay.namespace, 'hc');
  const theirs = hycoWs.createRelayedServer({
    server: lu,
    token: () => hycoWs.createRelayToken(lu, relay.keyName, relay.key)
  });
  try {
    // hyco-ws emits 'connection' while the socket is still connecting: echo once open.
    theirs.on('connection', (ws) => {
      ws.on('message', (data, flags) => ws.send(data, { binary: Boolean(flags && flags.binary) }));
    });
    theirs.on('error', () => {});
    await nextEvent(theirs, 'listening', WAIT, 'the hyco-ws listener');
    const su = createRelaySendUri(relay.namespace, 'hc');
    const sender = relayedConnect(su, createRelayToken(su, relay.keyName, relay.key));
    await nextEvent(sender, 'open', WAIT, 'our sender');
    const reply = nextEvent(sender, 'message', WAIT, 'the echo');
    sender.send('from hyco-ws-rs');
    const [data, isBinary] = await reply;
    assert.equal(isBinary, false);
    assert.equal(data.toString(), 'from hyco-ws-rs');
    const binReply = nextEvent(sender, 'message', WAIT, 'the binary echo');
    sender.send(Buffer.from([1, 2, 3]));
    const [bin, binFlag] = await binReply;
    assert.equal(binFlag, true);
    assert.deepEqual([...bin], [1, 2, 3]);
    const closed = nextEvent(sender, 'close', WAIT, 'the close');
    sender.close(4000, 'bye');
    assert.equal((await closed)[0], 4000);
  } finally {
    theirs.close();
    await relay.close();
  }
});

test('hyco-ws-rs/hyco-ws helpers take what hyco-ws 1.0.5 took with a well-defined result (a lifetime as a string, a Buffer key, a numeric id), and give what it gave', () => {
  const uri = 'wss://contoso.servicebus.windows.net:443/$hc/hyco?sb-hc-action=connect';
  const cases = [
    ['createRelayToken', [uri, 'rule', 'key', '120']],
    ['appendRelayToken', [uri, 'rule', 'key', ' 7200 ']],
    ['createRelayToken', [uri, 'rule', Buffer.from('a2V5'), 60]],
    ['createRelaySendUri', ['contoso.servicebus.windows.net', 'hyco', null, 42]],
    ['createRelayListenUri', ['contoso.servicebus.windows.net', 'hyco', 17, 7]]
  ];
  for (const [fn, args] of cases) {
    // The same second for both (a token's expiry counts from now): again if it turned.
    let mine;
    let theirs;
    for (let i = 0; i < 3 && (i === 0 || mine !== theirs); i++) {
      theirs = hycoWs[fn](...args);
      mine = ours[fn](...args);
    }
    assert.equal(mine, theirs, `${fn}(${args.slice(1).join(', ')})`);
  }
});
