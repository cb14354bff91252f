// The event format between the addon and lib/ has one source (src/bindings/events.rs): the
// handlers name the events and fields they read, and a mismatch stops the package loading.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// The package first, so that every handler module has claimed its events.
require('hyco-ws-rs');
const { FIELDS, eventType, native, unclaimedEvents } = require('../lib/native-events.js');

test('every event the addon sends has a handler in lib/', () => {
  assert.deepEqual(unclaimedEvents(), []);
});

test('the table is what the dispatcher skips by', () => {
  const table = native.eventTable();
  assert.ok(table.length >= 19, `only ${table.length} events`);
  assert.deepEqual(
    FIELDS,
    table.map((e) => e.fields.length)
  );
  const names = table.map((e) => e.name);
  assert.equal(new Set(names).size, names.length, 'event names are unique');
  assert.equal(eventType('message', ['data', 'binary']), names.indexOf('message'));
});

test('a handler that reads other fields than the addon sends refuses to load', () => {
  assert.throws(() => eventType('message', ['data']), {
    code: 'ERR_HYCO_NATIVE_MISMATCH',
    message: /"message" event: the addon sends \(data, binary\), lib\/ reads \(data\)/
  });
  assert.throws(() => eventType('message', ['binary', 'data']), { code: 'ERR_HYCO_NATIVE_MISMATCH' });
  assert.throws(() => eventType('noSuchEvent', []), {
    code: 'ERR_HYCO_NATIVE_MISMATCH',
    message: /no such event/
  });
});

// initEvents is called by every copy of lib/ that loads (see module-copies.test.mjs for the
// copies themselves). Calls it refuses change nothing, so these are safe in this process.
test('initEvents refuses a lib/ without a registry, or with another event contract, before it changes anything', () => {
  assert.throws(() => native.initEvents(() => {}), {
    code: 'ERR_HYCO_NATIVE_MISMATCH',
    message: /lib\/ is older than the native addon/
  });
  assert.throws(() => native.initEvents(() => {}, 1000), {
    code: 'ERR_HYCO_NATIVE_MISMATCH',
    message: /event contract \d+; this copy's is 1000/
  });
});

test('the first lib/ on a thread must hand events over as the addon does: an older contract is refused', async () => {
  // A fresh process: the first initEvents() call of a thread is checked against the
  // addon's own contract (later ones against the first's, above).
  const { execFileSync } = await import('node:child_process');
  const script = `
    const native = require(${JSON.stringify(require.resolve('../lib/native.js'))}).loadNative();
    try {
      native.initEvents(() => {}, 1);
      console.log('ACCEPTED');
    } catch (e) {
      console.log(JSON.stringify({ code: e.code, message: e.message }));
    }
  `;
  const out = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
  const got = JSON.parse(out.trim().split('\n').pop());
  assert.equal(got.code, 'ERR_HYCO_NATIVE_MISMATCH');
  assert.match(got.message, /lib\/'s event contract 1; the addon's is \d+/);
});
