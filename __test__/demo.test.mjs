// `npm run demo` works offline, prints what happened and exits 0 by itself.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const demo = fileURLToPath(new URL('../examples/demo.js', import.meta.url));

test('the demo exchanges messages through the local relay and exits 0', async () => {
  const child = spawn(process.execPath, [demo, '--messages', '3'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (out += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (err += d));
  const code = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`the demo did not exit by itself:\n${out}\n${err}`));
    }, 30000);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  assert.equal(code, 0, err);
  assert.match(out, /namespace ws:\/\/127\.0\.0\.1:\d+/);
  assert.match(out, /listener: status online/);
  assert.match(out, /listener: connection from 127\.0\.0\.1:\d+, url \/chat\?room=1/);
  for (let i = 1; i <= 3; i++) assert.match(out, new RegExp(`sender: echo "hello ${i}" after [\\d.]+ ms`));
  assert.match(out, /round trips: min [\d.]+ ms, median [\d.]+ ms/);
  assert.match(out, /sender: closed 1000 demo done/);
  assert.doesNotMatch(out, /SharedAccessKey=[A-Za-z0-9+/]{20,}/, 'the demo must not print the key');
});
