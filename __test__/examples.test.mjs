// The examples in examples/, run as a user runs them (child processes, environment
// variables, stdout), against the package's local relay emulator, so that they cannot rot:
// listener.js + sender.js (counted and --stdin, across a relay restart), hybrid-server.js through the relay and on
// its local port, typescript/listener.ts type-checked (strict) and run, listener.js with
// nothing set (its own relay), sender.js's errors, http-express.js, and entra-listener.js
// (its own relay in Entra ID mode, and DefaultAzureCredential through a stand-in
// @azure/identity). Every wait has a timeout; every child
// is killed in `finally`.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import ts from 'typescript';
import {
  WebSocket,
  createRelayHttpsUri,
  createRelaySendUri,
  createRelayToken,
  relayedConnect,
  relayedFetch,
  startLocalRelay
} from 'hyco-ws-rs';

const root = fileURLToPath(new URL('..', import.meta.url));
const example = (name) => path.join(root, 'examples', name);

/** Time allowed for one step (a line of output, an exit, a message). */
const STEP_MS = 10000;

/** The Hybrid Connection the examples use. */
const HC = 'examples';

let relay;
before(async () => {
  relay = await withTimeout(
    startLocalRelay({ hybridConnections: [HC, 'nobody-listens'] }),
    STEP_MS,
    'startLocalRelay()'
  );
});
after(() => relay && withTimeout(relay.close(), STEP_MS, 'relay.close()'));

/**
 * Races `promise` against a timer.
 *
 * @param {Promise} promise What to wait for
 * @param {Number} ms How long
 * @param {String|Function} what What is awaited (a function is called on failure)
 * @return {Promise} The promise's value
 */
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms waiting for ${typeof what === 'function' ? what() : what}`));
    }, ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/**
 * The environment of an example: this one without any RELAY_* variable (so that a
 * developer's settings cannot leak in) or PORT, plus `extra`.
 *
 * @param {Object} extra Variables to set
 * @return {Object} The environment
 */
function envWith(extra) {
  const env = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('RELAY_') && key !== 'PORT') env[key] = value;
  }
  return { ...env, ...extra };
}

/**
 * Spawns node with `args`, collecting stdout and stderr.
 *
 * @param {String[]} args Node's arguments (a script and its arguments)
 * @param {Set} children Where to record the child, for the test's `finally`
 * @param {Object} [options]
 * @param {Object} [options.env] Extra environment variables
 * @param {Boolean} [options.stdin=false] Give the child a stdin pipe
 * @param {String} [options.cwd] The working directory (default: the repository's root)
 * @return {ChildProcess} The child, with `out`, `err`, `describe()` and `exited`
 */
function run(args, children, { env = {}, stdin = false, cwd = root } = {}) {
  const child = spawn(process.execPath, args, {
    cwd,
    env: envWith(env),
    stdio: [stdin ? 'pipe' : 'ignore', 'pipe', 'pipe']
  });
  children.add(child);
  child.out = '';
  child.err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => {
    child.out += d;
    child.emit('output');
  });
  child.stderr.setEncoding('utf8').on('data', (d) => {
    child.err += d;
    child.emit('output');
  });
  child.exited = new Promise((resolve) => {
    child.on('exit', (code, signal) => resolve({ code, signal }));
  });
  child.describe = () =>
    `${path.relative(root, args[0]) || args[0]}:\n--- stdout\n${child.out}--- stderr\n${child.err}---`;
  return child;
}

/**
 * Waits until the child's stdout matches `pattern`; fails early if it exits first.
 *
 * @param {ChildProcess} child From `run`
 * @param {RegExp} pattern What to wait for (tested against the whole stdout so far)
 * @return {Promise<RegExpMatchArray>} The match
 */
function outputMatching(child, pattern) {
  let onOutput;
  let onExit;
  const found = new Promise((resolve, reject) => {
    onOutput = () => {
      const m = pattern.exec(child.out);
      if (m) resolve(m);
    };
    onExit = (code, signal) => {
      // Output may still be in the pipe at 'exit': 'close' comes after all of it.
      child.once('close', () => {
        const m = pattern.exec(child.out);
        if (m) resolve(m);
        else reject(new Error(`exited (${code ?? signal}) before printing ${pattern}; ${child.describe()}`));
      });
    };
    child.on('output', onOutput);
    child.once('exit', onExit);
    onOutput();
  });
  return withTimeout(found, STEP_MS, () => `${pattern} from ${child.describe()}`).finally(() => {
    child.off('output', onOutput);
    child.off('exit', onExit);
  });
}

/**
 * Waits for the child to exit and for all its output.
 *
 * @param {ChildProcess} child From `run`
 * @return {Promise<{ code: Number|null, signal: String|null }>}
 */
function exitOf(child) {
  const closed = child.stdout.closed && child.stderr.closed ? Promise.resolve() : once(child, 'close');
  return withTimeout(
    Promise.all([child.exited, closed]).then(([result]) => result),
    STEP_MS,
    () => `the exit of ${child.describe()}`
  );
}

/**
 * Kills every child still running.
 *
 * @param {Set} children The children of a test
 */
function killAll(children) {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

/**
 * Runs sender.js to completion and checks its echoes.
 *
 * @param {String} connectionString RELAY_CONNECTION_STRING
 * @param {Set} children The test's children
 * @return {Promise<ChildProcess>} The finished sender
 */
async function sendThreeHellos(connectionString, children) {
  const sender = run([example('sender.js')], children, { env: { RELAY_CONNECTION_STRING: connectionString } });
  const { code } = await exitOf(sender);
  assert.equal(code, 0, sender.describe());
  assert.match(sender.out, /^echo: hello 1\necho: hello 2\necho: hello 3\n/m, sender.describe());
  assert.match(sender.out, /^closed \(1000\): sent 3, echoed 3$/m);
  return sender;
}

/**
 * Sends SIGINT to a server example and checks that it closes and exits with status 0.
 *
 * @param {ChildProcess} child The example
 */
async function interruptAndExpectCleanExit(child) {
  child.kill('SIGINT');
  const { code, signal } = await exitOf(child);
  assert.equal(signal, null, child.describe());
  assert.equal(code, 0, child.describe());
  assert.match(child.out, /^SIGINT: closing$/m, child.describe());
  assert.match(child.out, /^closed$/m, child.describe());
}

/**
 * One text round trip on an open socket.
 *
 * @param {WebSocket} ws The socket
 * @param {String} text What to send
 * @return {Promise<String>} What came back
 */
async function roundTrip(ws, text) {
  const reply = withTimeout(once(ws, 'message'), STEP_MS, `the echo of ${text}`);
  ws.send(text);
  const [data, isBinary] = await reply;
  assert.equal(isBinary, false);
  return data.toString();
}

test('listener.js and sender.js: messages echoed through the relay, --stdin, a relay restart, SIGINT exits 0', async () => {
  const children = new Set();
  const connectionString = relay.connectionString(HC);
  try {
    const listener = run([example('listener.js')], children, { env: { RELAY_CONNECTION_STRING: connectionString } });
    await outputMatching(listener, /^listening: Hybrid Connection "examples" on ws:\/\/127\.0\.0\.1:\d+ \(RELAY_CONNECTION_STRING\)$/m);
    assert.doesNotMatch(listener.out, /started a local relay/);

    await sendThreeHellos(connectionString, children);
    await outputMatching(listener, /^message: hello 3$/m);
    assert.match(listener.out, /^connection accepted: \/ from 127\.0\.0\.1\nmessage: hello 1\nmessage: hello 2\nmessage: hello 3$/m);
    await outputMatching(listener, /^connection closed \(1000\)$/m);

    const lines = run([example('sender.js'), '--stdin'], children, {
      env: { RELAY_CONNECTION_STRING: connectionString },
      stdin: true
    });
    await outputMatching(lines, /^connected$/m);
    lines.stdin.end('first line\nsecond line\n');
    const { code } = await exitOf(lines);
    assert.equal(code, 0, lines.describe());
    assert.match(lines.out, /^echo: first line\necho: second line\nclosed \(1000\): sent 2, echoed 2$/m);
    await outputMatching(listener, /^message: second line$/m);

    // A relay outage: the listener reconnects by itself and serves again.
    await withTimeout(relay.restart(), STEP_MS, 'relay.restart()');
    await outputMatching(listener, /^online again$/m);
    assert.match(listener.err, /^reconnecting after: /m);
    await sendThreeHellos(connectionString, children);

    await interruptAndExpectCleanExit(listener);
    assert.doesNotMatch(listener.err, /^(error|connection error):/m, listener.describe());
  } finally {
    killAll(children);
  }
});

test('hybrid-server.js: one echo handler, through the relay and on the local port', async () => {
  const children = new Set();
  let local;
  try {
    const server = run([example('hybrid-server.js')], children, {
      env: { RELAY_CONNECTION_STRING: relay.connectionString(HC), PORT: '0' }
    });
    const [, port] = await outputMatching(server, /^local: ws:\/\/localhost:(\d+)\/$/m);
    await outputMatching(server, /^listening$/m);
    assert.match(server.out, /^relay: Hybrid Connection "examples" on ws:\/\/127\.0\.0\.1:\d+ \(RELAY_CONNECTION_STRING\)$/m);

    // Through the relay, as any sender would.
    const uri = createRelaySendUri(relay.namespace, HC);
    const relayed = relayedConnect(uri, createRelayToken(uri, relay.keyName, relay.key));
    await withTimeout(once(relayed, 'open'), STEP_MS, 'the relayed socket to open');
    assert.equal(await roundTrip(relayed, 'via the relay'), 'via the relay');
    relayed.close();
    await withTimeout(once(relayed, 'close'), STEP_MS, 'the relayed socket to close');

    // Directly, with a plain ws client; left open to see the server close it on SIGINT.
    local = new WebSocket(`ws://127.0.0.1:${port}/direct?x=1`);
    await withTimeout(once(local, 'open'), STEP_MS, 'the local socket to open');
    assert.equal(await roundTrip(local, 'direct'), 'direct');

    await outputMatching(server, /^\[local\] message: direct$/m);
    assert.match(server.out, /^\[relay\] connection accepted: \/ from 127\.0\.0\.1\n\[relay\] message: via the relay$/m);
    assert.match(server.out, /^\[local\] connection accepted: \/direct\?x=1 from \S+\n\[local\] message: direct$/m);

    const closed = withTimeout(once(local, 'close'), STEP_MS, 'the server to close the local socket');
    await interruptAndExpectCleanExit(server);
    const [code] = await closed;
    assert.equal(code, 1001);
  } finally {
    local?.terminate();
    killAll(children);
  }
});

test('typescript/listener.ts: passes tsc --strict --noEmit, and runs as the JS listener does', async () => {
  const children = new Set();
  try {
    const tsc = path.join(root, 'node_modules', 'typescript', 'bin', 'tsc');
    const check = run([tsc, '--noEmit', '-p', path.join('examples', 'typescript')], children);
    const { code } = await withTimeout(check.exited, 60000, () => check.describe());
    await exitOf(check);
    assert.equal(code, 0, check.describe());
    const config = JSON.parse(fs.readFileSync(example('typescript/tsconfig.json'), 'utf8'));
    assert.equal(config.compilerOptions.strict, true);

    // Compiled in memory (CommonJS, as tsc emits it here) and run with `node -e` from the
    // example's directory, so that require('hyco-ws-rs') resolves as it does for tsc's output.
    const source = fs.readFileSync(example('typescript/listener.ts'), 'utf8');
    const { outputText } = ts.transpileModule(source, {
      compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 }
    });
    const connectionString = relay.connectionString(HC);
    const listener = run(['-e', outputText], children, {
      env: { RELAY_CONNECTION_STRING: connectionString },
      cwd: example('typescript')
    });
    await outputMatching(listener, /^listening: Hybrid Connection "examples" on ws:\/\/127\.0\.0\.1:\d+ \(RELAY_CONNECTION_STRING\)$/m);
    await sendThreeHellos(connectionString, children);
    await outputMatching(listener, /^message: hello 3$/m);
    assert.match(listener.out, /^connection accepted: \/ from 127\.0\.0\.1\nmessage: hello 1\n/m);
    await interruptAndExpectCleanExit(listener);
  } finally {
    killAll(children);
  }
});

test('listener.js with nothing set starts its own relay; sender.js works with the printed connection string', async () => {
  const children = new Set();
  try {
    const listener = run([example('listener.js')], children);
    const [, connectionString] = await outputMatching(listener, /^connection string: (Endpoint=ws:\/\/127\.0\.0\.1:\d+\/;\S+;EntityPath=examples)$/m);
    assert.ok(!connectionString.includes(`:${relay.port}/`), 'a relay of its own, not the test relay');
    const [, printed] = await outputMatching(listener, /^ {2}RELAY_CONNECTION_STRING='([^']+)' node examples\/sender\.js$/m);
    assert.equal(printed, connectionString);
    await outputMatching(listener, /^listening: Hybrid Connection "examples" on ws:\/\/127\.0\.0\.1:\d+ \(local relay\)$/m);

    await sendThreeHellos(connectionString, children);
    await outputMatching(listener, /^message: hello 3$/m);

    // SIGINT closes the listener and then its relay; the process exits by itself.
    await interruptAndExpectCleanExit(listener);
  } finally {
    killAll(children);
  }
});

test('http-express.js: the Express app answers through the relay (JSON bodies, params, 404s); SIGINT exits 0', async () => {
  const children = new Set();
  try {
    const app = run([example('http-express.js')], children, { env: { RELAY_CONNECTION_STRING: relay.connectionString(HC) } });
    await outputMatching(app, /^listening: Hybrid Connection "examples" on ws:\/\/127\.0\.0\.1:\d+ \(RELAY_CONNECTION_STRING\)$/m);
    const address = (suffix) => {
      const url = createRelayHttpsUri(relay.namespace, `${HC}${suffix}`);
      return { url, token: createRelayToken(url, relay.keyName, relay.key) };
    };
    const hello = address('/hello?name=tester');
    const r1 = await relayedFetch(hello.url, { token: hello.token });
    assert.equal(r1.status, 200);
    assert.deepEqual(await r1.json(), { hello: 'tester', from: '127.0.0.1', protocol: 'https' });
    const orders = address('/orders');
    const r2 = await relayedFetch(orders.url, {
      token: orders.token,
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ item: 'widget', count: 3 })
    });
    assert.equal(r2.status, 201);
    assert.equal(r2.headers.get('location'), '/orders/1');
    assert.deepEqual(await r2.json(), { id: 1, item: 'widget', count: 3 });
    const one = address('/orders/1');
    assert.deepEqual(await (await relayedFetch(one.url, { token: one.token })).json(), { id: 1, item: 'widget', count: 3 });
    const none = address('/orders/9');
    const r4 = await relayedFetch(none.url, { token: none.token });
    assert.equal(r4.status, 404, "Express's 404 is a response, not a refusal");
    await r4.arrayBuffer();
    await interruptAndExpectCleanExit(app);
  } finally {
    killAll(children);
  }
});

test('http-express.js with nothing set starts its own relay and prints a curl that works', async () => {
  const children = new Set();
  try {
    const app = run([example('http-express.js')], children);
    const [, token, url] = await outputMatching(app, /^try: curl -H 'ServiceBusAuthorization: ([^']+)' '([^']+)'$/m);
    const r = await relayedFetch(url, { token });
    assert.deepEqual(await r.json(), { hello: 'relay', from: '127.0.0.1', protocol: 'https' });
    await interruptAndExpectCleanExit(app);
  } finally {
    killAll(children);
  }
});

test('sender.js: nothing set, no listener, partial variables: a message and status 1', async () => {
  const children = new Set();
  try {
    const unset = run([example('sender.js')], children);
    assert.equal((await exitOf(unset)).code, 1, unset.describe());
    assert.match(unset.err, /RELAY_CONNECTION_STRING/);
    assert.match(unset.err, /RELAY_NAMESPACE/);
    assert.match(unset.err, /npx hyco-ws-rs relay --hc examples/);

    const nobody = run([example('sender.js')], children, {
      env: { RELAY_CONNECTION_STRING: relay.connectionString('nobody-listens') }
    });
    assert.equal((await exitOf(nobody)).code, 1, nobody.describe());
    assert.match(nobody.err, /^error: Unexpected server response: 404\b.*is the listener running/m);

    const partial = run([example('sender.js')], children, { env: { RELAY_NAMESPACE: relay.namespace, RELAY_PATH: HC } });
    assert.equal((await exitOf(partial)).code, 1, partial.describe());
    assert.match(partial.err, /RELAY_NAMESPACE, RELAY_PATH set but not RELAY_KEY_RULE, RELAY_KEY/);

    // The four variables work as the connection string does (a key never printed).
    const listener = run([example('listener.js')], children, {
      env: { RELAY_NAMESPACE: relay.namespace, RELAY_PATH: HC, RELAY_KEY_RULE: relay.keyName, RELAY_KEY: relay.key }
    });
    await outputMatching(listener, /^listening: .*\(RELAY_NAMESPACE\)$/m);
    const sender = run([example('sender.js'), '2'], children, {
      env: { RELAY_NAMESPACE: relay.namespace, RELAY_PATH: HC, RELAY_KEY_RULE: relay.keyName, RELAY_KEY: relay.key }
    });
    assert.equal((await exitOf(sender)).code, 0, sender.describe());
    assert.match(sender.out, /^echo: hello 1\necho: hello 2\nclosed \(1000\): sent 2, echoed 2$/m);
    await interruptAndExpectCleanExit(listener);
    for (const child of [listener, sender]) assert.ok(!(child.out + child.err).includes(relay.key), 'no key printed');
  } finally {
    killAll(children);
  }
});

test('entra-listener.js: its own relay in Entra ID mode, a sender with the printed token; with RELAY_NAMESPACE, DefaultAzureCredential', async () => {
  const children = new Set();
  const entraRelay = await withTimeout(startLocalRelay({ entra: { secret: 'examples-secret', localAuth: false } }), STEP_MS, 'startLocalRelay()');
  try {
    const own = run([example('entra-listener.js')], children);
    const [, token] = await outputMatching(own, /^a sender token \(Azure Relay Sender, 1 h\): (\S+)$/m);
    const [, namespace] = await outputMatching(own, /^listening: Hybrid Connection "examples" on (ws:\/\/127\.0\.0\.1:\d+) \(Entra ID\)$/m);
    await echoOnce(createRelaySendUri(namespace, 'examples'), token);
    await outputMatching(own, /^message: hello entra$/m);
    await interruptAndExpectCleanExit(own);

    // With the variables: @azure/identity's DefaultAzureCredential, here the stand-in of
    // __test__/fixtures/azure-identity (found through NODE_PATH), which has tokens for
    // Relay's scope only.
    const standIn = {
      NODE_PATH: path.join(root, '__test__', 'fixtures', 'azure-identity'),
      ENTRA_STAND_IN_SECRET: 'examples-secret',
      ENTRA_STAND_IN_ROLES: 'Azure Relay Listener',
      RELAY_NAMESPACE: entraRelay.namespace,
      RELAY_PATH: HC
    };
    const azure = run([example('entra-listener.js')], children, { env: standIn });
    await outputMatching(azure, /^listening: Hybrid Connection "examples" on ws:\/\/127\.0\.0\.1:\d+ \(Entra ID\)$/m);
    await echoOnce(createRelaySendUri(entraRelay.namespace, HC), entraRelay.createEntraToken({ roles: ['Azure Relay Sender'] }));
    await interruptAndExpectCleanExit(azure);

    // A missing role assignment: a 403 'warning' per attempt, no exit.
    const noRole = run([example('entra-listener.js')], children, { env: { ...standIn, ENTRA_STAND_IN_ROLES: 'Azure Relay Sender' } });
    await waitForStderr(noRole, /^warning: ERR_TOKEN_REFUSED: The relay refused the listener's token \(403 /m);
    assert.equal(noRole.exitCode, null, 'still running, retrying');
    await interruptAndExpectCleanExit(noRole);

    const missing = run([example('entra-listener.js')], children, { env: { RELAY_NAMESPACE: entraRelay.namespace, RELAY_PATH: HC } });
    assert.equal((await exitOf(missing)).code, 1, missing.describe());
    assert.match(missing.err, /@azure\/identity is not installed: run `npm install @azure\/identity`/);
  } finally {
    killAll(children);
    await withTimeout(entraRelay.close(), STEP_MS, 'relay.close()');
  }
});

/**
 * Sends `hello entra` with a fixed token and waits for its echo.
 *
 * @param {String} url The send address
 * @param {String} token The token
 * @return {Promise<void>}
 */
async function echoOnce(url, token) {
  const ws = relayedConnect(url, token);
  await withTimeout(once(ws, 'open'), STEP_MS, 'the sender to open');
  const echoed = withTimeout(once(ws, 'message'), STEP_MS, 'the echo');
  ws.send('hello entra');
  assert.equal(String((await echoed)[0]), 'hello entra');
  ws.close();
  await withTimeout(once(ws, 'close'), STEP_MS, 'the sender to close');
}

/**
 * Waits until the child's stderr matches `pattern`.
 *
 * @param {ChildProcess} child From `run`
 * @param {RegExp} pattern What to wait for
 * @return {Promise<void>}
 */
async function waitForStderr(child, pattern) {
  await withTimeout(
    new Promise((resolve) => {
      const check = () => {
        if (pattern.test(child.err)) {
          child.off('output', check);
          resolve();
        }
      };
      child.on('output', check);
      check();
    }),
    STEP_MS,
    () => `${pattern} on stderr; ${child.describe()}`
  );
}
