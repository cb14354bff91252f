// RelayedServer (the listener) over time and under trouble, from its spec: token renewal and
// expiry warnings, reconnection after outages and service-side closes, keep-alive against a
// dead path, malformed control messages (from a fake service), several listeners on one
// Hybrid Connection, and a thousand concurrent senders. Every wait is bounded; the only
// fixed-length waits are observation windows that prove an absence.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { createRelayListenUri, createRelayToken, parseRelayToken } from 'hyco-ws-rs';

import { STEP_MS, WebSocket, expectOpen, nextMessage, waitUntil, whenClosed, withTimeout } from './support/relay-steps.mjs';
import {
  cleanup,
  countReached,
  echo,
  eventsOf,
  eventsOfType,
  history,
  listenOptions,
  markSeen,
  newServer,
  nextConnection,
  nextOf,
  parseControl,
  relayEvents,
  startFakeService,
  startServer,
  typesOf,
  whenListening,
  withServerRelay,
  wsSender,
  echoRoundTrip
} from './support/server-steps.mjs';

const RELAY = { hybridConnections: ['hc'] };


/**
 * Samples `relay.stats().listeners` every 50 ms until stopped.
 *
 * @param {any} relay The relay.
 * @returns {{ samples: number[], stop: () => void }}
 */
function sampleListeners(relay) {
  const samples = [];
  const timer = setInterval(() => samples.push(relay.stats().listeners), 50);
  return { samples, stop: () => clearInterval(timer) };
}

describe('token renewal', () => {
  // As the issue asks: 30 s of listening on 3-second tokens (ten lifetimes).
  test('3-second tokens from a provider are renewed for 30 s: no offline, one control channel, senders served', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      let calls = 0;
      const renewals = relayEvents(relay, 'renew');
      const server = echo(
        newServer({
          server: uri,
          token: () => {
            calls++;
            return createRelayToken(uri, relay.keyName, relay.key, 3);
          }
        })
      );
      await whenListening(server);
      const sampler = sampleListeners(relay);
      const t0 = Date.now();
      try {
        await waitUntil(
          () => calls >= 10 && Date.now() - t0 >= 30_000,
          45_000,
          () => `the provider to be called 10 times over 30 s (${calls} calls; events: ${history(server)})`
        );
      } finally {
        sampler.stop();
      }
      assert.equal(eventsOfType(server, 'offline').length, 0, `no 'offline' (events: ${history(server)})`);
      assert.equal(eventsOfType(server, 'online').length, 1, history(server));
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
      assert.ok(renewals.length >= 2, `the relay saw renewToken messages (${renewals.length})`);
      assert.ok(sampler.samples.length > 50, 'the listener count was sampled');
      assert.deepEqual([...new Set(sampler.samples)], [1], 'relay.stats().listeners stays 1');
      assert.equal(server.status, 'online');
      await echoRoundTrip(relay, 'a sender after 30 s of renewals');
    });
  });

  test("a provider that throws once during a renewal: 'warning' ERR_TOKEN_PROVIDER, a later renewal succeeds, no offline", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      let calls = 0;
      const renewals = relayEvents(relay, 'renew');
      // 6-second tokens: the failed renewal leaves a little room for the retry.
      const server = echo(
        newServer({
          server: uri,
          token: () => {
            calls++;
            if (calls === 2) throw new Error('the token service is down');
            return createRelayToken(uri, relay.keyName, relay.key, 6);
          }
        })
      );
      // Without a 'warning' listener the implementation may report elsewhere (a process
      // warning); the event is what is checked here.
      server.on('warning', () => {});
      await whenListening(server);
      const warning = await nextOf(server, 'warning', 10_000, "a 'warning' for the failed renewal");
      const err = warning.args[0];
      assert.ok(err instanceof Error, `the warning is an Error (${err})`);
      assert.equal(err.code, 'ERR_TOKEN_PROVIDER');
      await waitUntil(
        () => renewals.some((r) => r.at >= warning.at),
        10_000,
        () => `a successful renewal after the warning (${calls} provider calls; events: ${history(server)})`
      );
      assert.ok(calls >= 3, `the provider was asked again (${calls} calls)`);
      assert.equal(eventsOfType(server, 'offline').length, 0, `no 'offline' (events: ${history(server)})`);
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
      assert.equal(server.status, 'online');
      await echoRoundTrip(relay);
    });
  });

  test('a provider whose expiresOnTimestamp is in seconds: read as seconds (no renewal loop, no warning), online and serving', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      let calls = 0;
      // The classic mistake: Unix seconds where milliseconds are expected (as milliseconds,
      // every token looks expired in 1970, and a renewal was asked for every second).
      const server = echo(
        newServer({
          server: uri,
          token: () => {
            calls++;
            return {
              token: createRelayToken(uri, relay.keyName, relay.key, 3600),
              expiresOnTimestamp: Math.floor(Date.now() / 1000) + 3600 + calls
            };
          }
        })
      );
      const warnings = [];
      server.on('warning', (err) => warnings.push(err));
      await whenListening(server);
      await new Promise((resolve) => setTimeout(resolve, 2500)); // observation window
      assert.deepEqual(warnings, [], 'no warning');
      assert.equal(calls, 1, 'no renewal: the token has an hour to live');
      assert.equal(eventsOfType(server, 'offline').length, 0, history(server));
      await echoRoundTrip(relay);
    });
  });

  test("a credential that gives its cached token back at the renewal (MSAL, az): asked again later, quietly, while the token has time left", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      const cached = {
        token: createRelayToken(uri, relay.keyName, relay.key, 600),
        expiresOnTimestamp: Date.now() + 600_000,
        // The renewal is asked for early, so that the test sees it.
        refreshAfterTimestamp: Date.now() + 2000
      };
      let calls = 0;
      const server = echo(
        newServer({
          server: uri,
          credential: {
            getToken: async () => {
              calls++;
              return cached;
            }
          }
        })
      );
      const warnings = [];
      server.on('warning', (err) => warnings.push(err));
      await whenListening(server);
      await waitUntil(() => calls >= 2, 10_000, () => `the renewal's call (${calls} calls)`);
      await new Promise((resolve) => setTimeout(resolve, 1000)); // observation window
      assert.deepEqual(warnings.map((w) => w.message), [], 'no warning for a cached token');
      assert.equal(calls, 2, 'asked again later, not at once');
      assert.equal(server.status, 'online');
      await echoRoundTrip(relay);
    });
  });

  test("a static token about to expire: 'warning' ERR_TOKEN_EXPIRING before it expires", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      const token = createRelayToken(uri, relay.keyName, relay.key, 3);
      const expiresAt = parseRelayToken(token).expiresAt.getTime();
      const server = newServer({ server: uri, token });
      // Once expired, the static token is refused (401, terminal): expected, not checked here.
      server.on('error', () => {});
      server.on('warning', () => {});
      // The same, with no 'warning' listener: it must not crash.
      const quiet = newServer({ server: uri, token });
      quiet.on('error', () => {});
      await Promise.all([whenListening(server), whenListening(quiet)]);
      const warning = await nextOf(server, 'warning', 5000, "a 'warning' for the expiring token");
      assert.equal(warning.args[0] && warning.args[0].code, 'ERR_TOKEN_EXPIRING', String(warning.args[0]));
      assert.ok(warning.at < expiresAt, `the warning came ${warning.at - expiresAt} ms after the expiry`);
      const types = typesOf(server);
      assert.ok(!types.slice(0, types.indexOf('warning')).includes('offline'), history(server));
      // Past the expiry, both have been dropped by the relay (and refused again): no crash.
      await nextOf(quiet, 'offline', 5000, "the server without a 'warning' listener to be dropped at expiry");
    });
  });
});

describe('final errors', () => {
  test("a static token refused once it expired (final): 'error', the accepted sockets close, then the server's 'close'", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const uri = createRelayListenUri(relay.namespace, 'hc');
      const server = newServer({ server: uri, token: createRelayToken(uri, relay.keyName, relay.key, 3) });
      server.on('warning', () => {});
      const order = [];
      server.on('error', (err) => order.push(`server error ${err.statusCode}`));
      server.on('close', () => order.push('server close'));
      await whenListening(server);
      const sender = wsSender(relay, 'hc');
      const { socket } = await nextConnection(server);
      assert.equal((await withTimeout(sender.outcome, STEP_MS, 'the sender to open')).ok, true);
      socket.on('close', (code) => order.push(`socket close ${code}`));
      await nextOf(server, 'close', 10_000, "the server's 'close' once the token expired");
      assert.deepEqual(order, ['server error 401', 'socket close 1001', 'server close'], history(server));
      assert.equal(server.clients.size, 0);
    });
  });
});

describe('reconnect', () => {
  test("relay.restart(): 'offline', 'connecting', 'online' again, one control channel at every 'online'; no 'error' listener needed", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = echo(newServer(listenOptions(relay)));
      // No 'error' listener: a recoverable outage must not emit 'error'.
      const atOnline = [];
      server.on('online', () => atOnline.push(relay.stats().listeners));
      await whenListening(server);
      const before = typesOf(server).length;
      markSeen(server);
      await withTimeout(relay.restart(), 10_000, 'relay.restart()');
      const offline = await nextOf(server, 'offline', STEP_MS, "'offline' after the restart");
      assert.ok(offline.args[0] instanceof Error, `'offline' carries the error (${offline.args[0]})`);
      await nextOf(server, 'online', 10_000, "'online' again after the restart");
      const after = typesOf(server).slice(before);
      const iOff = after.indexOf('offline');
      const iConn = after.indexOf('connecting', iOff);
      const iOn = after.indexOf('online', iConn);
      assert.ok(iOff >= 0 && iConn > iOff && iOn > iConn, `offline, connecting, online in that order (${after.join(', ')})`);
      // By position in the log, not by time: events of one batch share a millisecond.
      const reconnect = eventsOf(server)
        .filter((e) => e.type !== 'newListener' && e.type !== 'removeListener')
        .slice(before)[iConn];
      assert.ok(reconnect.args[0] instanceof Error, `a reconnect's 'connecting' carries its cause (${reconnect.args[0]})`);
      assert.deepEqual(atOnline, [1, 1], "exactly one control channel at each 'online'");
      assert.equal(eventsOfType(server, 'listening').length, 1, "'listening' only the first time");
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
      assert.equal(server.status, 'online');
      assert.equal(eventsOfType(server, 'online').at(-1).status, 'online');
      await waitUntil(() => relay.stats().listeners === 1, STEP_MS, 'the relay to count one listener');
      await echoRoundTrip(relay, 'a sender after the restart');
    });
  });

  test('relay stopped for a while (two failed attempts), then started: online again', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = echo(newServer(listenOptions(relay, 'hc', { reconnectDelays: [0, 200, 400] })));
      await whenListening(server);
      const connectingBefore = eventsOfType(server, 'connecting').length;
      markSeen(server);
      await withTimeout(relay.stop(), STEP_MS, 'relay.stop()');
      await nextOf(server, 'offline', STEP_MS, "'offline' after the stop");
      await countReached(server, 'connecting', connectingBefore + 2, 10_000, "two 'connecting' events while the relay is down");
      assert.ok(['connecting', 'offline'].includes(server.status), `status while down: ${server.status}`);
      assert.ok(server.lastError instanceof Error, 'lastError is set while down');
      await withTimeout(relay.start(), STEP_MS, 'relay.start()');
      await nextOf(server, 'online', 10_000, "'online' after the relay is back");
      assert.equal(relay.stats().listeners, 1);
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
      await echoRoundTrip(relay, 'a sender after the outage');
    });
  });

  test('service-side closes (1001, 1008, 1011) reconnect at once: the first retry is immediate', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = echo(newServer(listenOptions(relay, 'hc', { reconnectDelays: [0, 200, 400] })));
      const atOnline = [];
      server.on('online', () => atOnline.push(relay.stats().listeners));
      await whenListening(server);
      for (const code of [1011, 1001, 1008]) {
        const t0 = markSeen(server);
        const dropped = await withTimeout(relay.dropListeners({ code }), STEP_MS, `dropListeners(${code})`);
        assert.equal(dropped, 1, 'one control channel dropped');
        await nextOf(server, 'offline', STEP_MS, `'offline' after a ${code} close`);
        const online = await nextOf(server, 'online', STEP_MS, `'online' after a ${code} close`);
        assert.ok(online.at - t0 < 1000, `online again ${online.at - t0} ms after the ${code} close (should be < 1 s)`);
      }
      assert.deepEqual(atOnline, [1, 1, 1, 1], "exactly one control channel at each 'online'");
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
      await echoRoundTrip(relay, 'a sender after the drops');
    });
  });
});

describe('keep-alive', () => {
  // The bound is the interval + 10 s; with an interval under 10 s the pong deadline
  // is one interval (README), so a frozen channel is replaced within two intervals plus slack.
  test("keepAliveInterval 500 against a frozen control channel: 'offline' within two intervals (+ slack), then online on a fresh channel", async (t) => {
    await withServerRelay(RELAY, async (relay) => {
      const server = echo(newServer(listenOptions(relay, 'hc', { keepAliveInterval: 500, reconnectDelays: [0, 200, 400] })));
      await whenListening(server);
      const t0 = markSeen(server);
      assert.equal(relay.freezeListeners(), 1, 'one control channel frozen');
      const offline = await nextOf(server, 'offline', 11_000, "'offline' for the frozen channel");
      assert.ok(offline.at - t0 < 4_000, `'offline' after ${offline.at - t0} ms`);
      t.diagnostic(`'offline' ${offline.at - t0} ms after the freeze (keepAliveInterval 500)`);
      await nextOf(server, 'online', 10_000, "'online' on a fresh channel");
      // The frozen channel gets no senders: a sender reaching the listener used the new one.
      await echoRoundTrip(relay, 'a sender after the keep-alive reconnect');
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
    });
  });

  test('keepAliveInterval 0 sends no pings: a frozen channel is not detected (1.5 s window)', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const server = newServer(listenOptions(relay, 'hc', { keepAliveInterval: 0 }));
      await whenListening(server);
      relay.freezeListeners();
      try {
        await new Promise((resolve) => setTimeout(resolve, 1500)); // observation window
        assert.equal(eventsOfType(server, 'offline').length, 0, history(server));
        assert.equal(server.status, 'online');
      } finally {
        // Thawed, the channel can complete close()'s closing handshake during cleanup.
        relay.freezeListeners({ frozen: false });
      }
    });
  });
});

describe('malformed control messages (fake service)', () => {
  test('garbage is ignored; a request gets a 501 response; the server stays online and keeps accepting', async () => {
    try {
      const fake = await startFakeService();
      const server = newServer({ server: fake.listenUri, token: createRelayToken(fake.listenUri, 'k', 'a2V5', 3600) });
      // No 'error' listener: nothing here may emit one.
      const control = await fake.nextControl();
      await whenListening(server);
      const garbage = [
        'not json',
        '',
        '{',
        'null',
        '42',
        '"accept"',
        '[]',
        '{}',
        '{"unknown":{"x":1}}',
        '{"accept":null}',
        '{"accept":{}}',
        '{"accept":{"id":"no-address"}}',
        '{"accept":{"address":42,"id":"bad-address"}}',
        '{"accept":{"address":"not a url","id":"bad-url"}}',
        '{"renewToken":{"token":"x"}}',
        '{"response":{"requestId":"x","statusCode":200}}'
      ];
      for (const g of garbage) control.send(g);
      control.send(Buffer.from([0, 1, 2, 3]), { binary: true });
      control.send(Buffer.from('{"accept":{"address":"ws://127.0.0.1:1/x","id":"binary"}}'), { binary: true });
      // An accept to an address where nothing listens: the accept fails, quietly.
      control.send(
        JSON.stringify({
          accept: {
            address: 'ws://127.0.0.1:1/$hc/hc?sb-hc-action=accept&sb-hc-id=nowhere',
            id: 'nowhere',
            connectHeaders: {},
            remoteEndpoint: { address: '127.0.0.1', port: 1 }
          }
        })
      );
      // A request (HTTP over the relay) is not served: 501 on the control channel.
      control.send(
        JSON.stringify({
          request: { address: fake.acceptAddress('r1'), id: 'r1', requestTarget: '/', method: 'GET', requestHeaders: {}, body: false }
        })
      );
      const reply = parseControl(await nextMessage(control, STEP_MS, 'the response to the request'));
      assert.ok(reply.response, `a response message (${JSON.stringify(reply)})`);
      assert.equal(reply.response.requestId, 'r1');
      assert.equal(reply.response.statusCode, 501);

      assert.equal(server.status, 'online');
      assert.equal(control.readyState, WebSocket.OPEN, 'the control channel is still open');
      assert.deepEqual(
        typesOf(server).filter((t) => ['offline', 'error', 'close', 'connection'].includes(t)),
        [],
        history(server)
      );
      assert.equal(fake.sockets.size, 1, 'no other connection reached the fake service');

      // Still serving: a valid accept is taken.
      control.send(
        JSON.stringify({
          accept: {
            address: fake.acceptAddress('good'),
            id: 'good',
            connectHeaders: { 'X-App': 'ok' },
            remoteEndpoint: { address: '127.0.0.1', port: 7777 }
          }
        })
      );
      const [acc, { socket, req }] = await Promise.all([fake.nextAcceptSocket(), nextConnection(server)]);
      assert.equal(req.id, 'good');
      assert.equal(req.headers['x-app'], 'ok');
      acc.send('still here');
      assert.equal((await nextMessage(socket)).data.toString(), 'still here');
    } finally {
      await cleanup();
    }
  });

  test('acceptTimeout bounds an accept handshake that never completes; the server stays online', async () => {
    const silent = new Set();
    const tcp = net.createServer((s) => {
      silent.add(s);
      s.resume(); // read (and drop) the request, so that the peer's FIN is seen
      s.on('error', () => {});
      s.on('close', () => silent.delete(s));
    });
    try {
      tcp.listen(0, '127.0.0.1');
      await withTimeout(new Promise((resolve) => tcp.once('listening', resolve)), STEP_MS, 'a silent TCP server');
      const silentPort = tcp.address().port;
      const fake = await startFakeService();
      const server = newServer({
        server: fake.listenUri,
        token: createRelayToken(fake.listenUri, 'k', 'a2V5', 3600),
        acceptTimeout: 300
      });
      const control = await fake.nextControl();
      await whenListening(server);
      control.send(
        JSON.stringify({
          accept: {
            address: `ws://127.0.0.1:${silentPort}/$hc/hc?sb-hc-action=accept&sb-hc-id=slow`,
            id: 'slow',
            connectHeaders: {},
            remoteEndpoint: { address: '127.0.0.1', port: 1 }
          }
        })
      );
      await waitUntil(() => silent.size === 1, STEP_MS, 'the accept handshake to reach the silent server');
      const t0 = Date.now();
      await waitUntil(() => silent.size === 0, 3000, 'the listener to give up the accept handshake (acceptTimeout 300 ms)');
      assert.ok(Date.now() - t0 < 3000);
      assert.equal(server.status, 'online');
      assert.equal(control.readyState, WebSocket.OPEN);
      assert.deepEqual(typesOf(server).filter((t) => ['offline', 'error', 'connection'].includes(t)), [], history(server));
    } finally {
      for (const s of silent) s.destroy();
      await new Promise((resolve) => tcp.close(() => resolve()));
      await cleanup();
    }
  });

  test('a service-side close of the fake control channel is followed by a reconnect to it', async () => {
    try {
      const fake = await startFakeService();
      const server = newServer({
        server: fake.listenUri,
        token: createRelayToken(fake.listenUri, 'k', 'a2V5', 3600),
        reconnectDelays: [0, 200, 400]
      });
      const first = await fake.nextControl();
      await whenListening(server);
      markSeen(server);
      first.close(1011, 'service error');
      await nextOf(server, 'offline', STEP_MS, "'offline' after the service closed the channel");
      await fake.nextControl(STEP_MS);
      await nextOf(server, 'online', STEP_MS, "'online' on the new channel");
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
    } finally {
      await cleanup();
    }
  });
});

describe('scale', () => {
  test('several servers on one Hybrid Connection share 20 senders', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const a = echo(await startServer(relay));
      const b = echo(await startServer(relay));
      assert.equal(relay.stats().listeners, 2);
      const senders = Array.from({ length: 20 }, () => wsSender(relay, 'hc'));
      const open = await Promise.all(senders.map((s, i) => expectOpen(s.outcome, `sender ${i}`)));
      await Promise.all(
        open.map(async (ws, i) => {
          ws.send(`m${i}`);
          assert.equal((await nextMessage(ws, STEP_MS, `the echo at sender ${i}`)).data.toString(), `m${i}`);
        })
      );
      const na = eventsOfType(a, 'connection').length;
      const nb = eventsOfType(b, 'connection').length;
      assert.equal(na + nb, 20);
      assert.ok(na >= 1 && nb >= 1, `both servers got senders (${na} and ${nb})`);
      for (const ws of open) ws.close(1000);
      await Promise.all(open.map((ws) => whenClosed(ws)));
    });
  });

  test('1,000 concurrent plain ws senders are all accepted and echoed', async (t) => {
    await withServerRelay(RELAY, async (relay) => {
      const N = 1000;
      const BATCH = 100;
      const started = Date.now();
      const server = echo(await startServer(relay));
      const open = [];
      for (let b = 0; b < N / BATCH; b++) {
        const batch = Array.from({ length: BATCH }, () => wsSender(relay, 'hc'));
        open.push(...(await Promise.all(batch.map((s, i) => expectOpen(s.outcome, `sender ${b * BATCH + i}`, 15_000)))));
      }
      await waitUntil(() => server.clients.size === N, 10_000, () => `server.clients.size to reach ${N} (${server.clients.size})`);
      assert.equal(eventsOfType(server, 'connection').length, N);
      assert.equal(relay.stats().connections, N);
      const echoed = await withTimeout(
        Promise.all(
          open.map(async (ws, i) => {
            ws.send(`sender ${i}`);
            return (await nextMessage(ws, 15_000, `the echo at sender ${i}`)).data.toString() === `sender ${i}`;
          })
        ),
        20_000,
        'every echo'
      );
      assert.equal(echoed.filter(Boolean).length, N, 'every sender got its own echo');
      for (const ws of open) ws.close(1000);
      await withTimeout(Promise.all(open.map((ws) => ws.closeInfo)), 15_000, 'every sender to close');
      await waitUntil(() => server.clients.size === 0, 10_000, () => `server.clients to empty (${server.clients.size})`);
      assert.equal(eventsOfType(server, 'offline').length, 0, history(server));
      t.diagnostic(`1,000 senders opened, echoed and closed in ${Date.now() - started} ms`);
    });
  });
});
