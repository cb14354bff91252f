// Copies of the package's JavaScript in one thread, the addon loaded once: jest loads lib/
// again for every test file (each in a vm context of its own), and so do
// jest.resetModules(), a cleared require cache, and two copies of the package sharing one
// build of the addon. Every copy's objects keep getting their events, in order, whichever
// copy loaded first or last (src/bindings/hub.rs, lib/native-events.js). Each scenario runs
// in a child process (or a worker), so that the copies it loads do not outlive it; every
// step in a child has its own time limit, and the child must end by itself.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { STEP_MS, withTimeout } from './support/relay-steps.mjs';
import { PACKAGE_DIR, describeChild, runNode } from './support/socket-steps.mjs';

/** How long a child may take in all (its steps have limits of their own). */
const CHILD_MS = 60_000;

// What every child script starts with: a time limit per step, ways to load another copy of
// the package, and a listener and a sender that record what they get.
const PRELUDE = `
  'use strict';
  const fs = require('fs');
  const Module = require('module');
  const path = require('path');
  const vm = require('vm');
  const PKG = process.env.HYCO_PKG;
  const STEP_MS = ${STEP_MS};

  /** Rejects when promise p has not settled within STEP_MS. */
  function within(p, what) {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error('timed out after ' + STEP_MS + ' ms waiting for ' + what)), STEP_MS);
    });
    return Promise.race([p, late]).finally(() => clearTimeout(timer));
  }

  /** The package again, as a cleared require cache gives it (the addon too is required again). */
  function fromFreshCache(dir = PKG) {
    for (const k of Object.keys(require.cache)) {
      if (k.startsWith(dir + path.sep) && !k.includes(path.sep + 'node_modules' + path.sep)) delete require.cache[k];
    }
    return require(dir);
  }

  /**
   * The package in a new vm context, as jest loads it: the context has its own globals
   * (Object, Map, Function, ...); every JavaScript file (the package's and ws) is compiled
   * in it; built-in modules and the .node addon come from Node's own require, so the addon
   * is the one already loaded.
   */
  function inNewContext(dir = PKG) {
    const context = vm.createContext({
      console, process, Buffer, URL, URLSearchParams, TextEncoder, TextDecoder, AbortController,
      AbortSignal, queueMicrotask, setTimeout, clearTimeout, setInterval, clearInterval,
      setImmediate, clearImmediate, performance, structuredClone
    });
    const modules = new Map();
    const load = (file) => {
      const cached = modules.get(file);
      if (cached) return cached.exports;
      const module = { exports: {}, id: file, filename: file, loaded: false };
      modules.set(file, module);
      const outer = Module.createRequire(file);
      const localRequire = (id) => {
        if (Module.isBuiltin(id)) return outer(id);
        const resolved = outer.resolve(id);
        if (resolved.endsWith('.node')) return outer(resolved);
        if (resolved.endsWith('.json')) return outer(resolved);
        return load(resolved);
      };
      localRequire.resolve = outer.resolve;
      const source = fs.readFileSync(file, 'utf8');
      const wrapper = vm.runInContext(
        '(function (exports, require, module, __filename, __dirname) {' + source + '\\n})',
        context,
        { filename: file }
      );
      wrapper.call(module.exports, module.exports, localRequire, module, file, path.dirname(file));
      module.loaded = true;
      return module.exports;
    };
    const exports = load(require.resolve(dir));
    if (exports.createRelayedServer instanceof Function || vm.runInContext('Map', context) === Map) {
      throw new Error('the copy is not in a context of its own');
    }
    return exports;
  }

  /** A listener of copy h on hybrid connection hc that echoes; records what it sees. */
  function listen(h, relay, hc) {
    const lu = h.createRelayListenUri(relay.namespace, hc);
    const server = new h.RelayedServer({ server: lu, token: h.createRelayToken(lu, relay.keyName, relay.key) });
    const seen = { hc, connections: 0, closes: [], errors: [] };
    server.on('error', (e) => seen.errors.push(e.message));
    server.on('connection', (ws) => {
      seen.connections++;
      ws.on('message', (d, binary) => ws.send(d, { binary }));
      ws.on('close', (code) => seen.closes.push(code));
    });
    const listening = within(new Promise((r) => server.once('listening', r)), 'listener ' + hc + ' online');
    return { server, seen, listening };
  }

  /** A sender of copy h to hc, open. */
  async function connect(h, relay, hc) {
    const su = h.createRelaySendUri(relay.namespace, hc);
    const s = h.relayedConnect(su, h.createRelayToken(su, relay.keyName, relay.key));
    s.got = [];
    s.on('message', (d) => s.got.push(String(d)));
    await within(new Promise((resolve, reject) => {
      s.once('open', resolve);
      s.once('error', reject);
    }), 'a sender to ' + hc + ' to open');
    return s;
  }

  /** Sends each of texts on s and waits for as many echoes; returns everything s got. */
  async function exchange(s, texts, what) {
    const want = s.got.length + texts.length;
    const echoed = new Promise((resolve) => {
      const check = () => { if (s.got.length >= want) { s.off('message', check); resolve(); } };
      s.on('message', check);
    });
    for (const t of texts) s.send(t);
    await within(echoed, 'the echoes of ' + what + ' (got ' + JSON.stringify(s.got) + ')');
    return s.got;
  }

  /** Closes sender s and waits for its 'close'. */
  function closeSender(s) {
    s.close();
    return within(new Promise((r) => s.once('close', r)), "a sender's close");
  }

  /** Starts closing server now; the promise settles on its callback (within STEP_MS). */
  function closeServer(server) {
    return within(new Promise((r) => server.close(r)), "a listener's close");
  }

  /**
   * Copy A's start: a relay, A's listener on 'a' online, and a sender of A to it that has had
   * one message echoed, so that A's listener has accepted a socket (natively: no
   * verifyClient, handleProtocols or 'headers' listener) before the next copy loads.
   */
  async function firstCopyOnline(A) {
    const relay = await within(A.startLocalRelay(), 'the relay');
    const a = listen(A, relay, 'a');
    await a.listening;
    const early = await connect(A, relay, 'a');
    await exchange(early, ['e1'], "A's sender before the next copy loads");
    return { relay, a, early };
  }

  /** Closes the senders, then the servers, then the relay, each awaited. */
  async function closeAll(relay, senders, servers) {
    for (const s of senders) await closeSender(s);
    for (const server of servers) await closeServer(server);
    await within(relay.close(), 'the relay to close');
  }

  /**
   * The registry the copies share, as initEvents hands it (this installs a callback that
   * does nothing, so only at the end): whether it is a Map of this, the main, context (the
   * addon's own, not a copy's), and how many objects are still in it.
   */
  function registryNow() {
    const native = require(path.join(PKG, 'lib', 'native.js')).loadNative();
    const source = fs.readFileSync(path.join(PKG, 'lib', 'native-events.js'), 'utf8');
    const contract = Number(/const EVENT_CONTRACT = (\\d+);/.exec(source)[1]);
    const registry = native.initEvents(() => {}, contract);
    return { mainContextMap: registry instanceof Map, size: registry.size };
  }

  /**
   * Runs main; prints its result as the last line (the process must then end by itself), or
   * FAILED and the stack, and ends the process (what failed may hold it open).
   */
  function run(main) {
    main().then(
      (result) => console.log(JSON.stringify(result)),
      (e) => { console.log('FAILED ' + e.stack); process.exit(1); }
    );
  }
`;

// Two copies, each with a listener and senders, both ways. Copy A's listener goes online and
// accepts a sender (natively: no verifyClient, handleProtocols or 'headers') before copy B
// is loaded; that socket, new senders of both copies to both listeners, and B's listener all
// work afterwards. Every socket sends a burst and gets it back in order, once.
const BOTH_WAYS = `
  run(async () => {
    const load = { cache: () => fromFreshCache(), vm: () => inNewContext() };
    const A = process.env.FIRST === 'vm' ? inNewContext() : require(PKG);
    const { relay, a, early } = await firstCopyOnline(A);

    const B = load[process.env.SECOND]();
    if (A === B || A.RelayedServer === B.RelayedServer) throw new Error('the second copy is the first');
    const b = listen(B, relay, 'b');
    await b.listening;

    const got = {};
    got.early = await exchange(early, ['e2', 'e3'], "A's sender after B loaded");
    const senders = [];
    for (const [name, h, hc] of [['B>a', B, 'a'], ['A>b', A, 'b'], ['B>b', B, 'b'], ['A>a', A, 'a']]) {
      const s = await connect(h, relay, hc);
      senders.push(s);
      got[name] = await exchange(s, ['0', '1', '2', '3', '4'], name);
    }
    const closesBeforeEnd = { a: [...a.seen.closes], b: [...b.seen.closes] };
    await closeAll(relay, [early, ...senders], [a.server, b.server]);
    return {
      registry: registryNow(),
      got,
      connections: { a: a.seen.connections, b: b.seen.connections },
      closesBeforeEnd,
      errors: [...a.seen.errors, ...b.seen.errors]
    };
  });
`;

/**
 * Runs `script` (after the prelude) in a child, which must succeed and end by itself.
 *
 * @param {string} script The scenario.
 * @param {Record<string, string>} env Its settings.
 * @returns {Promise<{ result: any, child: any }>} Its result line, parsed, and the child's
 *   outcome (for failure messages).
 */
async function runChild(script, env = {}) {
  const r = await runNode(PRELUDE + script, { env, ms: CHILD_MS }).done;
  assert.equal(r.timedOut, false, `the child did not end by itself\n${describeChild(r)}`);
  assert.equal(r.code, 0, describeChild(r));
  const last = r.stdout.trim().split('\n').pop();
  return { result: JSON.parse(last), child: r };
}

/**
 * Checks the outcome of BOTH_WAYS: every socket got its own messages back, in order, once;
 * each listener saw its two senders plus (a) the early one; no accepted socket closed before
 * the end; the registry is the addon's and empty at the end.
 *
 * @param {{ result: any, child: any }} outcome
 */
function checkBothWays({ result, child }) {
  const why = describeChild(child);
  const burst = ['0', '1', '2', '3', '4'];
  assert.deepEqual(result.got, { early: ['e1', 'e2', 'e3'], 'B>a': burst, 'A>b': burst, 'B>b': burst, 'A>a': burst }, why);
  assert.deepEqual(result.connections, { a: 3, b: 2 }, why);
  assert.deepEqual(result.closesBeforeEnd, { a: [], b: [] }, why);
  assert.deepEqual(result.errors, [], why);
  // One registry, the addon's (not kept from a copy's vm context), empty once all is closed.
  assert.deepEqual(result.registry, { mainContextMap: true, size: 0 }, why);
}

describe('two copies of the package in one process', () => {
  test('a copy loaded again from a cleared require cache: both copies\' listeners and senders get their events; the first copy\'s natively accepted socket is not terminated', async () => {
    checkBothWays(await runChild(BOTH_WAYS, { FIRST: 'require', SECOND: 'cache' }));
  });

  test('the second copy in a new vm context (as jest loads each test file)', async () => {
    checkBothWays(await runChild(BOTH_WAYS, { FIRST: 'require', SECOND: 'vm' }));
  });

  test('the first copy in a vm context, the second from Node\'s require', async () => {
    checkBothWays(await runChild(BOTH_WAYS, { FIRST: 'vm', SECOND: 'cache' }));
  });

  test("a listener closed just before the next copy loads: the new copy's listener is online at once (its token request is not lost)", async () => {
    // The closed listener's last events are still queued for the first copy's callback when
    // the second copy takes over; the second listener asks for its token at once. Before
    // the fix the first callback drained both, and the token request was lost for 30 s.
    const script = `
      run(async () => {
        const A = require(PKG);
        const relay = await within(A.startLocalRelay(), 'the relay');
        const timings = [];
        let h = A;
        for (let round = 0; round < 5; round++) {
          const a = listen(h, relay, 'a');
          await a.listening;
          const aClosed = closeServer(a.server);
          h = process.env.SECOND === 'vm' ? inNewContext() : fromFreshCache();
          const t0 = Date.now();
          const b = listen(h, relay, 'b');
          await b.listening;
          timings.push(Date.now() - t0);
          await aClosed;
          const s = await connect(h, relay, 'b');
          await exchange(s, ['x'], 'a sender to the new listener');
          await closeSender(s);
          await closeServer(b.server);
        }
        await within(relay.close(), 'the relay to close');
        return { timings };
      });
    `;
    for (const second of ['cache', 'vm']) {
      const { result, child } = await runChild(script, { SECOND: second });
      assert.equal(result.timings.length, 5, describeChild(child));
      // Each within STEP_MS (5 s, the step limit above), far below the 30 s token timeout.
      assert.ok(result.timings.every((ms) => ms < STEP_MS), describeChild(child));
    }
  });
});

describe('copies elsewhere on disk', () => {
  const dirs = [];
  after(() => {
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
  });

  /**
   * A copy of the package's JavaScript in a directory of its own, with `node_modules` and
   * the addon linked to this package's (one addon file, as two installed copies resolving
   * one prebuilt binary package have), optionally with `edit` applied to
   * lib/native-events.js.
   *
   * @param {(source: string) => string} [edit]
   * @returns {string} The directory.
   */
  function copyPackage(edit) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'hyco-ws-rs-copy-'));
    dirs.push(dir);
    for (const name of ['index.js', 'package.json']) fs.copyFileSync(path.join(PACKAGE_DIR, name), path.join(dir, name));
    fs.cpSync(path.join(PACKAGE_DIR, 'lib'), path.join(dir, 'lib'), { recursive: true });
    fs.symlinkSync(path.join(PACKAGE_DIR, 'node_modules'), path.join(dir, 'node_modules'));
    const addon = fs.readdirSync(PACKAGE_DIR).find((f) => f.endsWith('.node'));
    fs.symlinkSync(path.join(PACKAGE_DIR, addon), path.join(dir, addon));
    if (edit) {
      const file = path.join(dir, 'lib', 'native-events.js');
      const source = fs.readFileSync(file, 'utf8');
      const edited = edit(source);
      assert.notEqual(edited, source, 'the edit changed nothing');
      fs.writeFileSync(file, edited);
    }
    return dir;
  }

  test('a copy in another directory sharing the addon (two installed copies, one binary) works beside this one', async () => {
    const script = `
      run(async () => {
        const A = require(PKG);
        const { relay, a, early } = await firstCopyOnline(A);
        const B = require(process.env.COPY);
        if (A === B || A.RelayedServer === B.RelayedServer) throw new Error('the second copy is the first');
        const b = listen(B, relay, 'b');
        await b.listening;
        const got = { early: await exchange(early, ['e2'], "A's sender after B loaded") };
        const s1 = await connect(B, relay, 'a');
        got['B>a'] = await exchange(s1, ['1', '2'], 'B>a');
        const s2 = await connect(A, relay, 'b');
        got['A>b'] = await exchange(s2, ['1', '2'], 'A>b');
        await closeAll(relay, [early, s1, s2], [a.server, b.server]);
        return { got, connections: { a: a.seen.connections, b: b.seen.connections } };
      });
    `;
    const { result, child } = await runChild(script, { COPY: copyPackage() });
    const why = describeChild(child);
    assert.deepEqual(result.got, { early: ['e1', 'e2'], 'B>a': ['1', '2'], 'A>b': ['1', '2'] }, why);
    assert.deepEqual(result.connections, { a: 2, b: 1 }, why);
  });

  test("a replaced callback is handed nothing: a batch queued for it when the next copy loads goes to the new one, in order", async () => {
    // Copy X's dispatch records every call. X's listener is closed (its last events on
    // their way to X's callback), then copy Y loads and takes over, and Y's listener asks
    // for its token at once: no call reaches X's callback once Y loaded (the batch, X's
    // close and Y's token request, goes to Y's callback). The hub wakes JavaScript with a
    // libuv handle that always calls the current callback (issue #14), so, unlike with the
    // ThreadsafeFunction it replaced, no call is ever pending on a replaced one.
    const recorded = copyPackage((s) =>
      s.replace(
        'function dispatch(pack, ...list) {',
        'function dispatch(pack, ...list) {\n  globalThis.__calls.push({ late: globalThis.__replaced === true, length: list.length });'
      )
    );
    const script = `
      run(async () => {
        globalThis.__calls = [];
        const X = require(process.env.RECORDED);
        const relay = await within(X.startLocalRelay(), 'the relay');
        const x = listen(X, relay, 'x');
        await x.listening;
        const xClosed = closeServer(x.server);
        globalThis.__replaced = true;
        const Y = require(PKG);
        const y = listen(Y, relay, 'y');
        await y.listening;
        await xClosed;
        const s = await connect(Y, relay, 'y');
        await exchange(s, ['1'], 'a sender to Y');
        await closeAll(relay, [s], [y.server]);
        return { late: globalThis.__calls.filter((c) => c.late) };
      });
    `;
    const { result, child } = await runChild(script, { RECORDED: recorded });
    const why = describeChild(child);
    // X's callback was not called at all once replaced, empty or not.
    assert.deepEqual(result.late, [], why);
  });

  test('a copy with another event contract is refused (ERR_HYCO_NATIVE_MISMATCH) and changes nothing for the copy already loaded', async () => {
    const other = copyPackage((s) => s.replace(/const EVENT_CONTRACT = \d+;/, 'const EVENT_CONTRACT = 999;'));
    const script = `
      run(async () => {
        const A = require(PKG);
        const { relay, a, early } = await firstCopyOnline(A);
        let refused = null;
        try {
          require(process.env.OTHER);
        } catch (e) {
          refused = { code: e.code, message: e.message };
        }
        const got = { early: await exchange(early, ['e2'], "A's sender after the refused copy") };
        const s1 = await connect(A, relay, 'a');
        got.later = await exchange(s1, ['1', '2'], 'a later sender');
        await closeAll(relay, [early, s1], [a.server]);
        return { refused, got, connections: a.seen.connections };
      });
    `;
    const { result, child } = await runChild(script, { OTHER: other });
    const why = describeChild(child);
    assert.equal(result.refused?.code, 'ERR_HYCO_NATIVE_MISMATCH', why);
    assert.match(result.refused.message, /event contract \d+; this copy's is 999/, why);
    assert.deepEqual(result.got, { early: ['e1', 'e2'], later: ['1', '2'] }, why);
    assert.equal(result.connections, 2, why);
  });
});

describe('worker threads', () => {
  test('each thread keeps its own registry: two copies in a worker both work, and so does the main thread beside it', async () => {
    const { Worker } = await import('node:worker_threads');
    const hyco = await import('hyco-ws-rs');
    const relay = await withTimeout(hyco.startLocalRelay(), STEP_MS, 'the relay');
    let worker = null;
    let server = null;
    try {
      // A listener of the test process's own copy, on the main thread.
      const lu = hyco.createRelayListenUri(relay.namespace, 'main');
      server = new hyco.RelayedServer({ server: lu, token: hyco.createRelayToken(lu, relay.keyName, relay.key) });
      server.on('connection', (ws) => ws.on('message', (d) => ws.send(d)));
      await withTimeout(new Promise((r) => server.once('listening', r)), STEP_MS, 'the main listener online');
      const script = `
        const { parentPort, workerData } = require('worker_threads');
        const relay = workerData.relay;
        (async () => {
          const A = require(PKG);
          const a = listen(A, relay, 'w1');
          await a.listening;
          const B = fromFreshCache();
          const b = listen(B, relay, 'w2');
          await b.listening;
          const got = {};
          const senders = [];
          for (const [name, h, hc] of [['A>w2', A, 'w2'], ['B>w1', B, 'w1'], ['B>main', B, 'main']]) {
            const s = await connect(h, relay, hc);
            senders.push(s);
            got[name] = await exchange(s, ['1', '2', '3'], name);
          }
          for (const s of senders) await closeSender(s);
          await closeServer(a.server);
          await closeServer(b.server);
          return got;
        })().then(
          (got) => parentPort.postMessage({ got }),
          (e) => {
            parentPort.postMessage({ failed: e.stack });
            process.exit(1);
          }
        );
      `;
      worker = new Worker(PRELUDE.replace("process.env.HYCO_PKG", JSON.stringify(PACKAGE_DIR)) + script, {
        eval: true,
        workerData: { relay: { namespace: relay.namespace, keyName: relay.keyName, key: relay.key } },
        stdout: true
      });
      let output = '';
      worker.stdout.setEncoding('utf8');
      worker.stdout.on('data', (d) => {
        output += d;
      });
      const got = new Promise((resolve) => worker.once('message', resolve));
      const exited = new Promise((resolve) => worker.once('exit', resolve));
      const [result, code] = await withTimeout(Promise.all([got, exited]), CHILD_MS, 'the worker to report and end by itself');
      assert.equal(result.failed, undefined, `${result.failed}\n${output}`);
      assert.equal(code, 0, output);
      assert.deepEqual(result.got, { 'A>w2': ['1', '2', '3'], 'B>w1': ['1', '2', '3'], 'B>main': ['1', '2', '3'] }, output);

      // The main thread's copy, after the worker's copies came and went.
      const su = hyco.createRelaySendUri(relay.namespace, 'main');
      const s = hyco.relayedConnect(su, hyco.createRelayToken(su, relay.keyName, relay.key));
      const echoed = new Promise((resolve, reject) => {
        s.once('error', reject);
        s.once('open', () => s.send('after the worker'));
        s.once('message', (d) => resolve(String(d)));
      });
      assert.equal(await withTimeout(echoed, STEP_MS, 'the main listener to echo'), 'after the worker');
      s.close();
      await withTimeout(new Promise((r) => s.once('close', r)), STEP_MS, "the sender's close");
    } finally {
      if (worker !== null) await withTimeout(worker.terminate(), STEP_MS, 'the worker to terminate');
      if (server !== null) await withTimeout(new Promise((r) => server.close(r)), STEP_MS, "the main listener's close");
      await withTimeout(relay.close(), STEP_MS, 'the relay to close');
    }
  });
});
