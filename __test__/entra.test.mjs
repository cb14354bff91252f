// Entra ID (Azure AD) credentials, end to end against the emulator's Entra ID mode: a
// listener, a WebSocket sender and an HTTP sender with `credential` instead of a key; the
// token on the wire (the JWT itself in ServiceBusAuthorization, as Microsoft's clients send
// it); renewal from the credential's expiresOnTimestamp / refreshAfterTimestamp on one
// control channel; a failing, refused (401/403) or never-answering credential; a namespace
// with local (SAS) authentication disabled; the emulator's token helpers and CLI flags.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';

import hyco, {
  createRelayHttpsUri,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  relayedConnect,
  relayedFetch,
  startLocalRelay
} from 'hyco-ws-rs';

import { STEP_MS, waitUntil, withTimeout } from './support/relay-steps.mjs';
import {
  echo,
  echoRoundTrip,
  eventsOfType,
  history,
  newServer,
  nextOf,
  relayEvents,
  startFakeService,
  whenListening,
  withServerRelay
} from './support/server-steps.mjs';

const SECRET = 'entra-test-secret';
const RELAY = { entra: { secret: SECRET } };
const SCOPE = 'https://relay.azure.net//.default';
const LISTENER = ['Azure Relay Listener'];
const SENDER = ['Azure Relay Sender'];

/**
 * Opens a sender with `relayedConnect` and resolves with it once open, or rejects with its
 * error.
 *
 * @param {string} url The send address.
 * @param {?string} token The token argument.
 * @param {object} options relayedConnect's options.
 * @returns {Promise<any>} The open socket.
 */
function openSender(url, token, options) {
  const ws = relayedConnect(url, token, options);
  return withTimeout(
    new Promise((resolve, reject) => {
      ws.once('open', () => resolve(ws));
      ws.once('error', reject);
    }),
    STEP_MS,
    'the sender to open'
  );
}

/**
 * A sender's failed handshake: its 'error', after which 'close' follows.
 *
 * @param {any} ws A relayedConnect socket.
 * @param {number} [ms] How long to wait.
 * @returns {Promise<{ error: Error, code: number }>}
 */
async function senderFailure(ws, ms = STEP_MS) {
  const events = [];
  ws.on('open', () => events.push('open'));
  const error = new Promise((resolve) => ws.once('error', (e) => (events.push('error'), resolve(e))));
  const closed = new Promise((resolve) => ws.once('close', (code) => (events.push('close'), resolve(code))));
  const [err, code] = await withTimeout(Promise.all([error, closed]), ms, "the sender's 'error' and 'close'");
  assert.deepEqual(events, ['error', 'close']);
  return { error: err, code };
}

/**
 * Sends one text message and waits for its echo.
 *
 * @param {any} ws An open socket.
 * @returns {Promise<void>}
 */
async function echoes(ws) {
  const text = `n-${Math.random().toString(36).slice(2)}`;
  const got = withTimeout(once(ws, 'message'), STEP_MS, 'the echo');
  ws.send(text);
  const [data] = await got;
  assert.equal(String(data), text);
}

describe('credentials end to end', () => {
  test('a listener and a sender with Entra ID credentials: getToken is asked for the Relay scope, messages flow', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const listenerCredential = relay.entraCredential({ roles: LISTENER });
      const server = echo(newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential: listenerCredential }));
      await whenListening(server);
      assert.deepEqual(listenerCredential.scopes, [SCOPE]);

      const senderCredential = relay.entraCredential({ roles: SENDER });
      const ws = await openSender(createRelaySendUri(relay.namespace, 'hc'), null, { credential: senderCredential });
      await echoes(ws);
      assert.deepEqual(senderCredential.scopes, [SCOPE]);
      ws.close();

      // The mode keeps SAS (local authentication) unless told otherwise.
      const sas = createRelayToken(createRelaySendUri(relay.namespace, 'hc'), relay.keyName, relay.key);
      const ws2 = await openSender(createRelaySendUri(relay.namespace, 'hc'), sas, {});
      await echoes(ws2);
      ws2.close();
      assert.equal(eventsOfType(server, 'warning').length, 0, history(server));
    });
  });

  test('options.scope is what getToken is asked for', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const credential = relay.entraCredential({ roles: LISTENER });
      const scope = 'https://relay.azure.net/.default';
      const server = newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential, scope });
      await whenListening(server);
      assert.deepEqual(credential.scopes, [scope]);
    });
  });

  test("the stand-in credential's token is for the scope's resource: another resource's is refused (401 InvalidAudience), as by the service", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const credential = relay.entraCredential({ roles: LISTENER });
      const server = newServer({
        server: createRelayListenUri(relay.namespace, 'hc'),
        credential,
        scope: 'https://storage.azure.com/.default',
        reconnectDelays: [50]
      });
      server.on('warning', () => {});
      const refused = (await nextOf(server, 'warning', STEP_MS, 'the refusal of a storage token')).args[0];
      assert.equal(refused.code, 'ERR_TOKEN_REFUSED');
      assert.equal(refused.statusCode, 401);
      assert.match(refused.statusDescription, /InvalidAudience/);
      server.close();

      // A sender's, with a listener there to take it.
      await whenListening(newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential: relay.entraCredential({ roles: LISTENER }) }));
      const url = createRelaySendUri(relay.namespace, 'hc');
      const typo = await senderFailure(relayedConnect(url, null, { credential: relay.entraCredential({ roles: SENDER }), scope: 'api://typo/.default' }));
      assert.equal(typo.error.statusCode, 401);
      // The relay's own resource, with or without its trailing slash, or as a list.
      for (const scope of ['https://relay.azure.net/.default', SCOPE, [SCOPE]]) {
        const { token } = await relay.entraCredential({ roles: SENDER }).getToken(scope);
        const aud = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).aud;
        assert.equal(aud, 'https://relay.azure.net', String(scope));
      }
    });
  });

  test('a connection string without a key plus a credential listens; its checks', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const keyless = relay.connectionString('hc').replace(/;SharedAccessKeyName=[^;]*;SharedAccessKey=[^;]*/, '');
      assert.doesNotMatch(keyless, /SharedAccess/);
      const credential = relay.entraCredential({ roles: LISTENER });
      const server = echo(newServer({ connectionString: keyless, credential }));
      await whenListening(server);
      await echoRoundTrip(relay, 'a SAS sender to the keyless listener');

      const { RelayedServer } = hyco;
      assert.throws(() => new RelayedServer({ connectionString: keyless }), {
        name: 'TypeError',
        code: 'ERR_INVALID_CONNECTION_STRING',
        message: /no key.*options\.credential/
      });
      assert.throws(() => new RelayedServer({ connectionString: relay.connectionString('hc'), credential }), {
        name: 'TypeError',
        code: 'ERR_INVALID_ARG_VALUE',
        message: 'Give either a credential or a connection string with a key or a SharedAccessSignature, not both'
      });
      for (const bad of [{}, { getToken: 'x' }, 'token', 42]) {
        assert.throws(() => new RelayedServer({ connectionString: keyless, credential: bad }), {
          name: 'TypeError',
          message: /options\.credential.*getToken/
        });
      }
      assert.throws(() => new RelayedServer({ connectionString: keyless, credential, scope: '' }), { name: 'TypeError' });
      assert.throws(() => new RelayedServer({ connectionString: relay.connectionString('hc'), scope: SCOPE }), {
        name: 'TypeError',
        message: /options\.scope/
      });
      assert.throws(
        () => relayedConnect(createRelaySendUri(relay.namespace, 'hc'), 'SharedAccessSignature sr=x', { credential }),
        { name: 'TypeError', code: 'ERR_INVALID_ARG_VALUE', message: 'Give either a token or a credential, not both' }
      );
      await assert.rejects(relayedFetch(createRelayHttpsUri(relay.namespace, 'hc'), { token: 'x', credential }), {
        name: 'TypeError',
        code: 'ERR_INVALID_ARG_VALUE'
      });
    });
  });
});

describe('the token on the wire', () => {
  test('the JWT itself goes in ServiceBusAuthorization (no Bearer prefix, nothing in the query), listener and sender', async () => {
    const fake = await startFakeService();
    try {
      const jwt = 'eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjQxMDI0NDQ4MDB9.c2ln';
      const credential = { getToken: async () => ({ token: jwt, expiresOnTimestamp: Date.now() + 3600_000 }) };
      const server = newServer({ server: fake.listenUri, credential });
      const control = await fake.nextControl();
      assert.equal(control.req.headers.servicebusauthorization, jwt);
      assert.equal(control.parsedUrl.searchParams.has('sb-hc-token'), false);
      assert.equal(control.req.headers.authorization, undefined);
      await whenListening(server);

      const ws = relayedConnect(`ws://127.0.0.1:${fake.port}/$hc/hc?sb-hc-action=connect`, null, { credential });
      ws.on('error', () => {});
      const sender = await fake.nextAcceptSocket();
      assert.equal(sender.req.headers.servicebusauthorization, jwt);
      assert.equal(sender.parsedUrl.searchParams.has('sb-hc-token'), false);
      ws.terminate();
    } finally {
      await fake.close();
    }
  });
});

describe('odd tokens', () => {
  test("the stand-in credential reports its token's own exp; a listener's token a header cannot carry is a provider failure, retried", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const { token, expiresOnTimestamp } = await relay.entraCredential({ roles: LISTENER, ttl: 2.9 }).getToken(SCOPE);
      const exp = JSON.parse(Buffer.from(token.split('.')[1], 'base64url').toString()).exp;
      assert.equal(expiresOnTimestamp, exp * 1000);

      const good = relay.entraCredential({ roles: LISTENER });
      let calls = 0;
      const server = echo(
        newServer({
          server: createRelayListenUri(relay.namespace, 'hc'),
          token: async () => (++calls === 1 ? 'not\u0001a header value' : (await good.getToken(SCOPE)).token),
          reconnectDelays: [50]
        })
      );
      const warnings = [];
      server.on('warning', (err) => warnings.push(err));
      await whenListening(server);
      assert.equal(warnings.length, 1, history(server));
      assert.equal(warnings[0].code, 'ERR_TOKEN_PROVIDER');
      assert.match(warnings[0].message, /characters a header cannot carry/);
    });
  });
});

describe('renewal', () => {
  // The two 30-second waits of the issue run side by side, on two Hybrid Connections of one
  // relay: 3-second tokens renewed for 30 s, and a credential whose first getToken never
  // settles (the listener gives up on it after its 30 s token timeout, and asks again).
  test('3-second tokens renewed for 30 s on one control channel; a getToken that never answers is given up after 30 s and asked again', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const renewals = relayEvents(relay, 'renew');
      const good = relay.entraCredential({ roles: LISTENER, ttl: 3 });
      const calls = [];
      const credential = {
        getToken(scope) {
          calls.push(Date.now());
          return good.getToken(scope);
        }
      };
      const server = echo(newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential }));

      let silentCalls = 0;
      const silentSignals = [];
      const fallback = relay.entraCredential({ roles: LISTENER });
      const silent = {
        getToken(scope, options) {
          silentCalls++;
          silentSignals.push(options && options.abortSignal);
          return silentCalls === 1 ? new Promise(() => {}) : fallback.getToken(scope);
        }
      };
      const patient = newServer({ server: createRelayListenUri(relay.namespace, 'hc2'), credential: silent, reconnectDelays: [50] });
      patient.on('warning', () => {});

      await whenListening(server);
      const t0 = Date.now();
      await waitUntil(
        () => calls.length >= 11 && Date.now() - t0 >= 30_000,
        45_000,
        () => `ten renewals over 30 s (${calls.length} getToken calls; events: ${history(server)})`
      );
      const gaps = calls.slice(1).map((t, i) => t - calls[i]);
      // 80 % of a 3-second life: about 2.4 s between asks, never a burst, always before expiry.
      for (const gap of gaps) assert.ok(gap >= 1500 && gap < 3000, `asked again after ${gap} ms (all: ${gaps})`);
      assert.ok(renewals.length >= 10, `the relay saw the renewals (${renewals.length})`);
      assert.equal(eventsOfType(server, 'online').length, 1, history(server));
      assert.equal(eventsOfType(server, 'offline').length, 0, history(server));
      assert.equal(eventsOfType(server, 'warning').length, 0, history(server));
      await echoRoundTrip(relay, 'a sender after 30 s of 3-second tokens');

      await whenListening(patient, 10_000, "the patient listener's 'listening' after its token timeout");
      const [warning] = eventsOfType(patient, 'warning').map((e) => e.args[0]);
      assert.equal(warning && warning.code, 'ERR_TOKEN_PROVIDER', history(patient));
      assert.equal(warning.message, 'The token provider failed: the token provider did not answer within 30000 ms');
      assert.equal(silentCalls, 2);
      // The call given up on is aborted when the listener asks again; the next is not.
      assert.ok(silentSignals[0] instanceof AbortSignal);
      assert.equal(silentSignals[0].aborted, true, 'the abandoned getToken is aborted');
      assert.equal(silentSignals[1].aborted, false);
      assert.equal(eventsOfType(patient, 'error').length, 0, history(patient));
      assert.equal(relay.stats().listeners, 2);
    });
  });

  test('refreshAfterTimestamp: the credential is asked again when it says, long before the expiry', async () => {
    await withServerRelay(RELAY, async (relay) => {
      const renewals = relayEvents(relay, 'renew');
      const calls = [];
      const credential = {
        async getToken() {
          calls.push(Date.now());
          return {
            token: relay.createEntraToken({ roles: LISTENER, ttl: 3600 }),
            expiresOnTimestamp: Date.now() + 3600_000,
            // The first token asks to be renewed after 1.5 s, the later ones after an hour.
            refreshAfterTimestamp: Date.now() + (calls.length === 1 ? 1500 : 3000_000)
          };
        }
      };
      const server = newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential });
      await whenListening(server);
      await waitUntil(() => renewals.length >= 1, 10_000, () => `a renewal (${calls.length} calls; events: ${history(server)})`);
      assert.equal(calls.length, 2);
      const after = calls[1] - calls[0];
      assert.ok(after >= 1400 && after < 8000, `asked again ${after} ms after the first token`);
      assert.equal(eventsOfType(server, 'online').length, 1, history(server));
    });
  });
});

describe('credentials that fail', () => {
  test("a credential that throws (even a value with no string form): a 'warning' ERR_TOKEN_PROVIDER per attempt, retried, then listening", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const good = relay.entraCredential({ roles: LISTENER });
      let calls = 0;
      const credential = {
        async getToken(scope) {
          calls++;
          if (calls <= 2) throw new Error(`token service down (${calls})`);
          // A rejection with no string form (String() of it throws).
          if (calls === 3) throw Object.create(null);
          return good.getToken(scope);
        }
      };
      const server = echo(newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential, reconnectDelays: [50] }));
      server.on('warning', () => {});
      await whenListening(server, 10_000);
      const warnings = eventsOfType(server, 'warning').map((e) => e.args[0]);
      assert.deepEqual(
        warnings.map((w) => [w.code, w.message]),
        [
          ['ERR_TOKEN_PROVIDER', 'The token provider failed: token service down (1)'],
          ['ERR_TOKEN_PROVIDER', 'The token provider failed: token service down (2)'],
          ['ERR_TOKEN_PROVIDER', 'The token provider failed: type object']
        ]
      );
      assert.equal(eventsOfType(server, 'error').length, 0, history(server));
      await echoRoundTrip(relay);
    });
  });

  test("refused tokens (401 bad signature, 403 missing role): 'warning' ERR_TOKEN_REFUSED, retried, no 'error'", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const other = await startLocalRelay({ entra: { secret: 'not-the-relays-secret' } });
      try {
        const wrongSigner = other.entraCredential({ roles: LISTENER });
        const wrongRole = relay.entraCredential({ roles: SENDER });
        const right = relay.entraCredential({ roles: LISTENER });
        let use = wrongSigner;
        const credential = { getToken: (scope) => use.getToken(scope) };
        const server = echo(newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential, reconnectDelays: [50] }));
        server.on('warning', () => {});
        const first = (await nextOf(server, 'warning', STEP_MS, 'a warning for the 401')).args[0];
        assert.equal(first.code, 'ERR_TOKEN_REFUSED');
        assert.equal(first.statusCode, 401);
        assert.match(first.message, /^The relay refused the listener's token \(401 .*\); retrying with a fresh one$/);
        const second = (await nextOf(server, 'warning', STEP_MS, 'a second warning: still retrying')).args[0];
        assert.equal(second.statusCode, 401);
        use = wrongRole;
        await waitUntil(
          () => eventsOfType(server, 'warning').some((w) => w.args[0].statusCode === 403),
          STEP_MS,
          () => `a 403 warning (events: ${history(server)})`
        );
        const forbidden = eventsOfType(server, 'warning').find((w) => w.args[0].statusCode === 403).args[0];
        assert.match(forbidden.statusDescription, /Listen/);
        use = right;
        await whenListening(server);
        assert.equal(eventsOfType(server, 'error').length, 0, history(server));
        await echoRoundTrip(relay);

        // A sender's refusals are its handshake's: 'error' with the status, then 'close'.
        const url = createRelaySendUri(relay.namespace, 'hc');
        const bad = await senderFailure(relayedConnect(url, null, { credential: other.entraCredential({ roles: SENDER }) }));
        assert.equal(bad.error.statusCode, 401);
        assert.equal(bad.code, 1006);
        const noRole = await senderFailure(relayedConnect(url, null, { credential: relay.entraCredential({ roles: LISTENER }) }));
        assert.equal(noRole.error.statusCode, 403);
      } finally {
        await other.close();
      }
    });
  });

  test("a sender's credential that fails or never answers: 'error' (ERR_TOKEN_PROVIDER, ETIMEDOUT) then 'close'", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const url = createRelaySendUri(relay.namespace, 'hc');
      const failing = { getToken: async () => Promise.reject(new Error('no network')) };
      const failed = await senderFailure(relayedConnect(url, null, { credential: failing }));
      assert.equal(failed.error.code, 'ERR_TOKEN_PROVIDER');
      assert.equal(failed.error.message, 'The token provider failed: no network');
      const odd = { getToken: async () => Promise.reject(Object.create(null)) };
      const oddFailure = await senderFailure(relayedConnect(url, null, { credential: odd }));
      assert.equal(oddFailure.error.code, 'ERR_TOKEN_PROVIDER');
      assert.equal(oddFailure.error.message, 'The token provider failed: type object');
      const hostile = new Proxy({}, { get: () => { throw new Error('trap'); } });
      const hostileFailure = await senderFailure(relayedConnect(url, null, { credential: { getToken: async () => Promise.reject(hostile) } }));
      assert.equal(hostileFailure.error.message, 'The token provider failed: a value that cannot be described');
      const signals = [];
      const silent = { getToken: (scopes, options) => (signals.push(options && options.abortSignal), new Promise(() => {})) };
      const timedOut = await senderFailure(relayedConnect(url, null, { credential: silent, handshakeTimeout: 300 }));
      assert.equal(timedOut.error.code, 'ETIMEDOUT');
      assert.equal(timedOut.error.message, 'Opening handshake has timed out');
      // The timeout lets the credential go too: its request is aborted, with the timeout.
      assert.ok(signals[0] instanceof AbortSignal);
      assert.equal(signals[0].aborted, true, 'the timed-out getToken is aborted');
      assert.equal(signals[0].reason.code, 'ETIMEDOUT');
      const empty = { getToken: async () => null };
      const none = await senderFailure(relayedConnect(url, null, { credential: empty }));
      assert.equal(none.error.code, 'ERR_TOKEN_PROVIDER');
      assert.match(none.error.message, /no token for https:\/\/relay\.azure\.net\/\/\.default/);
    });
  });

  test("a listener's close() aborts its credential's getToken in progress", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const signals = [];
      const silent = { getToken: (scopes, options) => (signals.push(options && options.abortSignal), new Promise(() => {})) };
      const server = newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential: silent });
      await waitUntil(() => signals.length === 1, STEP_MS, 'getToken to be called');
      assert.ok(signals[0] instanceof AbortSignal);
      assert.equal(signals[0].aborted, false);
      await withTimeout(new Promise((resolve) => server.close(resolve)), STEP_MS, "the server's close");
      assert.equal(signals[0].aborted, true, 'close() aborts the credential request');
      assert.equal(signals.length, 1);
    });
  });

  test("without a 'warning' listener, the first of a run of ERR_TOKEN_PROVIDER failures is a process warning", async () => {
    await withServerRelay(RELAY, async (relay) => {
      const good = relay.entraCredential({ roles: LISTENER });
      let failing = true;
      let calls = 0;
      const credential = {
        async getToken(scope) {
          calls++;
          if (failing) throw new Error(`CredentialUnavailableError: run az login (${calls})`);
          return good.getToken(scope);
        }
      };
      const warned = [];
      const onWarning = (w) => w.code === 'ERR_TOKEN_PROVIDER' && warned.push(w.message);
      process.on('warning', onWarning);
      try {
        const server = newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential, reconnectDelays: [20] });
        await waitUntil(() => calls >= 4, STEP_MS, () => `four attempts (${calls}; events: ${history(server)})`);
        // Process warnings are emitted on a tick of their own.
        await new Promise((resolve) => setImmediate(resolve));
        assert.deepEqual(warned, ['The token provider failed: CredentialUnavailableError: run az login (1)']);
        failing = false;
        await whenListening(server);
        assert.equal(warned.length, 1);
      } finally {
        process.off('warning', onWarning);
      }
    });
  });

  test("close() or terminate() before a sender's credential answers aborts its getToken", async () => {
    for (const end of ['close', 'terminate']) {
      const seen = [];
      const silent = { getToken: (scopes, options) => { seen.push(options && options.abortSignal); return new Promise(() => {}); } };
      const ws = relayedConnect('ws://127.0.0.1:9/$hc/hc?sb-hc-action=connect', null, { credential: silent });
      const failure = senderFailure(ws);
      await waitUntil(() => seen.length === 1, STEP_MS, 'getToken to be called');
      assert.ok(seen[0] instanceof AbortSignal, `${end}: getToken gets an abortSignal`);
      assert.equal(seen[0].aborted, false);
      ws[end]();
      const { error } = await failure;
      assert.equal(error.message, 'WebSocket was closed before the connection was established');
      assert.equal(seen[0].aborted, true, `${end}() aborts the credential's request`);
    }
  });
});

describe('local authentication disabled', () => {
  test("SAS tokens get 401: a connection-string key ends the listener ('error', 'close'); JWTs still work", async () => {
    await withServerRelay({ entra: { secret: SECRET, localAuth: false } }, async (relay) => {
      const refused = newServer({ connectionString: relay.connectionString('hc') });
      refused.on('error', () => {});
      const err = (await nextOf(refused, 'error', STEP_MS, "the keyed listener's 'error'")).args[0];
      assert.equal(err.statusCode, 401);
      assert.match(err.statusDescription, /local \(SAS\) authentication is disabled/);
      await nextOf(refused, 'close');
      assert.equal(eventsOfType(refused, 'warning').length, 0, 'a key cannot mend itself: no retries');

      // A refused listener makes no Hybrid Connection: one with a JWT does, and a sender
      // with a SAS token is then refused by it.
      const server = echo(
        newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential: relay.entraCredential({ roles: LISTENER }) })
      );
      await whenListening(server);
      const sendUri = createRelaySendUri(relay.namespace, 'hc');
      const sas = createRelayToken(sendUri, relay.keyName, relay.key);
      const failed = await senderFailure(relayedConnect(sendUri, sas));
      assert.equal(failed.error.statusCode, 401);
      assert.ok(!String(failed.error.message).includes(sas), 'the token is not echoed');

      const ws = await openSender(sendUri, null, { credential: relay.entraCredential({ roles: SENDER }) });
      await echoes(ws);
      ws.close();
    });
  });
});

describe('HTTP with a credential', () => {
  test('relayedFetch with a credential reaches a listener with one', async () => {
    await withServerRelay({ entra: { secret: SECRET, localAuth: false } }, async (relay) => {
      const server = newServer({ server: createRelayListenUri(relay.namespace, 'hc'), credential: relay.entraCredential({ roles: LISTENER }) });
      server.on('request', (req, res) => res.end(`hello ${req.url}`));
      await whenListening(server);
      const url = `${createRelayHttpsUri(relay.namespace, 'hc')}/x`;
      const credential = relay.entraCredential({ roles: SENDER });
      const res = await withTimeout(relayedFetch(url, { credential }), STEP_MS, 'the response');
      assert.equal(res.status, 200);
      assert.equal(await res.text(), 'hello /x');
      assert.deepEqual(credential.scopes, [SCOPE]);
      await assert.rejects(relayedFetch(url, { credential: relay.entraCredential({ roles: LISTENER }) }), {
        code: 'ERR_RELAY_REFUSED',
        statusCode: 403
      });
    });
  });
});

describe("the emulator's Entra ID helpers", () => {
  test('createEntraToken: a JWT with the roles and lifetime asked for; its checks; ERR_ENTRA_OFF', async () => {
    const relay = await startLocalRelay(RELAY);
    const plain = await startLocalRelay();
    try {
      const before = Math.floor(Date.now() / 1000);
      const jwt = relay.createEntraToken({ roles: SENDER, ttl: 120 });
      const [header, payload, signature] = jwt.split('.');
      assert.ok(signature.length > 0);
      assert.equal(JSON.parse(Buffer.from(header, 'base64url')).alg, 'HS256');
      const claims = JSON.parse(Buffer.from(payload, 'base64url'));
      assert.deepEqual(claims.roles, SENDER);
      assert.match(claims.aud, /^https:\/\/relay\.azure\.net\/?$/);
      assert.ok(claims.exp >= before + 120 && claims.exp <= before + 122, `exp ${claims.exp}`);
      assert.deepEqual(JSON.parse(Buffer.from(relay.createEntraToken().split('.')[1], 'base64url')).roles, ['Azure Relay Owner']);

      assert.throws(() => relay.createEntraToken({ roles: ['Reader'] }), { name: 'TypeError', message: /options\.roles/ });
      assert.throws(() => relay.createEntraToken({ roles: 'Azure Relay Owner' }), { name: 'TypeError' });
      assert.throws(() => relay.createEntraToken({ ttl: 0 }), { name: 'RangeError' });
      assert.throws(() => relay.createEntraToken({ ttl: Infinity }), { name: 'RangeError' });
      assert.throws(() => relay.createEntraToken(null), { name: 'TypeError' });
      assert.throws(() => plain.createEntraToken(), { code: 'ERR_ENTRA_OFF', message: /not in Entra ID mode/ });
      assert.throws(() => plain.entraCredential(), { code: 'ERR_ENTRA_OFF' });

      for (const entra of [null, 'secret', { secret: '' }, { secret: 42 }, { secret: 's', localAuth: 'no' }]) {
        await assert.rejects(startLocalRelay({ entra }), { name: 'TypeError' }, JSON.stringify(entra));
      }
    } finally {
      await plain.close();
      await relay.close();
    }
  });

  test('the CLI: --entra-secret prints a token the relay takes; --no-local-auth alone is a usage error', async () => {
    const cli = fileURLToPath(new URL('../bin/hyco-ws-rs.js', import.meta.url));
    const alone = spawn(process.execPath, [cli, 'relay', '--no-local-auth'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    alone.stderr.on('data', (d) => (stderr += d));
    const [code] = await withTimeout(once(alone, 'exit'), STEP_MS, 'the CLI to exit');
    assert.equal(code, 2);
    assert.match(stderr, /--no-local-auth goes with --entra-secret/);

    const child = spawn(process.execPath, [cli, 'relay', '--port', '0', '--entra-secret', 'cli-secret', '--no-local-auth'], {
      stdio: ['ignore', 'pipe', 'pipe']
    });
    child.stdout.setEncoding('utf8');
    try {
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      await waitUntil(() => /a token to try[^\n]*: \S+\n/.test(out), STEP_MS, () => `the token in the output:\n${out}`);
      const token = /a token to try[^\n]*: (\S+)\n/.exec(out)[1];
      const namespace = /namespace: (\S+)\n/.exec(out)[1];
      assert.match(out, /SAS tokens refused/);
      const server = echo(newServer({ server: createRelayListenUri(namespace, 'hc'), token }));
      await whenListening(server);
      const ws = await openSender(createRelaySendUri(namespace, 'hc'), token, {});
      await echoes(ws);
      ws.close();
      await server.close();
    } finally {
      child.kill('SIGINT');
      await withTimeout(once(child, 'exit'), STEP_MS, 'the CLI to stop');
    }
  });
});
