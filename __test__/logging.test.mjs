// Logs of the Rust core: off by default, on with HYCO_WS_RS_LOG or DEBUG=hyco-ws-rs*, on
// stderr, and never with a key, token or signature in them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
// A file: URL, not a path: `import` takes no absolute Windows path.
const entry = new URL('../wrapper.mjs', import.meta.url).href;

// Starts a relay and a listener, renews a token, accepts a sender, closes everything, and
// prints the secrets it used so that the test can look for them in the logs.
const script = `
import { startLocalRelay, createRelayListenUri, createRelaySendUri, createRelayToken, RelayedServer, relayedConnect } from ${JSON.stringify(entry)};
const relay = await startLocalRelay();
const lu = createRelayListenUri(relay.namespace, 'hc');
const tokens = [];
const server = new RelayedServer({ server: lu, token: () => { const t = createRelayToken(lu, relay.keyName, relay.key, 2); tokens.push(t); return t; } });
server.on('connection', (ws) => ws.close());
await new Promise((r) => server.once('listening', r));
const su = createRelaySendUri(relay.namespace, 'hc');
const sendToken = createRelayToken(su, relay.keyName, relay.key);
tokens.push(sendToken);
const s = relayedConnect(su + '&sb-hc-token=' + encodeURIComponent(sendToken), sendToken);
await new Promise((r) => s.on('close', r));
while (tokens.length < 3) await new Promise((r) => setImmediate(r));
await new Promise((r) => server.close(r));
await relay.close();
process.stdout.write(JSON.stringify({ key: relay.key, sigs: tokens.map((t) => /sig=([^&]+)/.exec(t)[1]) }));
`;

/**
 * Runs the script with `env` added; resolves with its stdout, stderr and exit code.
 *
 * @param {Object} env Extra environment
 * @return {Promise<{stdout: String, stderr: String, code: Number}>}
 */
function run(env) {
  return new Promise((resolve, reject) => {
    const clean = { ...process.env };
    delete clean.HYCO_WS_RS_LOG;
    delete clean.DEBUG;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...clean, ...env },
      stdio: ['ignore', 'pipe', 'pipe']
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`the child did not finish; stderr:\n${stderr}`));
    }, 30000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ stdout, stderr, code });
    });
  });
}

/**
 * Checks that no secret of the run appears in its logs.
 *
 * @param {String} stdout The child's report
 * @param {String} stderr Its logs
 */
function assertNoSecrets(stdout, stderr) {
  const { key, sigs } = JSON.parse(stdout);
  assert.ok(!stderr.includes(key), 'the key appears in the logs');
  for (const sig of sigs) {
    assert.ok(!stderr.includes(sig) && !stderr.includes(decodeURIComponent(sig)), 'a signature appears in the logs');
  }
  assert.doesNotMatch(stderr, /SharedAccessSignature sr=/);
}

test('HYCO_WS_RS_LOG=debug logs state changes, renewals and accepts, without secrets', async () => {
  const { stdout, stderr, code } = await run({ HYCO_WS_RS_LOG: 'debug' });
  assert.equal(code, 0, stderr);
  assert.match(stderr, /hyco-ws-rs INFO +hyco_core::listener::channel: listener: online/);
  assert.match(stderr, /listener: token renewed/);
  assert.match(stderr, /listener: accept request/);
  assert.match(stderr, /relay: listen: listener connected to hc/);
  assert.match(stderr, /listener: closed/);
  assertNoSecrets(stdout, stderr);
});

test('DEBUG=hyco-ws-rs* turns logs on, as the debug package does', async () => {
  const { stdout, stderr, code } = await run({ DEBUG: 'express,hyco-ws-rs*' });
  assert.equal(code, 0, stderr);
  assert.match(stderr, /listener: online/);
  assertNoSecrets(stdout, stderr);
});

test('no logs without the variables', async () => {
  const { stderr, code } = await run({});
  assert.equal(code, 0, stderr);
  assert.doesNotMatch(stderr, /hyco-ws-rs (INFO|DEBUG|WARN)/);
});
