#!/usr/bin/env node
'use strict';

/**
 * The hyco-ws-rs command line.
 *
 *   hyco-ws-rs relay [--port N] [--host H] [--hc NAME ...] [--tls-cert FILE --tls-key FILE]
 *                    [--accept-timeout MS] [--max-listeners N] [--request-timeout MS]
 *                    [--no-listener-status 404|502|503] [--entra-secret S [--no-local-auth]]
 *   hyco-ws-rs --version
 *
 * `relay` starts the local relay emulator, prints its namespace and a connection string,
 * then one line per event, until Ctrl-C (or SIGTERM) stops it cleanly. `--version` (`-v`)
 * prints the package's version.
 */

const fs = require('fs');
const { parseArgs } = require('util');

const USAGE = `Usage: hyco-ws-rs relay [options]
       hyco-ws-rs --version   (or -v: prints the version of hyco-ws-rs)

Starts a local Azure Relay Hybrid Connections emulator.

Options:
  --port N             port to listen on (default 0: any free port)
  --host H             address to bind (default 127.0.0.1)
  --hc NAME            a Hybrid Connection to create (repeatable; default: any path)
  --tls-cert FILE      PEM certificate chain: serve wss:// (needs --tls-key)
  --tls-key FILE       PEM private key
  --accept-timeout MS  how long a sender waits for an accept (default 30000)
  --max-listeners N    listeners per Hybrid Connection (default 25)
  --request-timeout MS how long a listener has to answer an HTTP request (default 60000)
  --no-listener-status N
                       status of an HTTP request no listener can take: 404, 502 or 503
                       (default 404)
  --entra-secret S     Entra ID mode: accept JWTs signed with the secret S (HS256), their
                       rights from a "roles" claim; prints a token to try
  --no-local-auth      with --entra-secret: refuse SAS tokens (local auth disabled)
  -h, --help           show this help
`;

/**
 * Prints an error and the usage, then exits with status 2.
 *
 * @param {String} message What is wrong
 * @private
 */
function usageError(message) {
  process.stderr.write(`hyco-ws-rs: ${message}\n\n${USAGE}`);
  process.exit(2);
}

/**
 * Parses an integer option from `min` to `max`.
 *
 * @param {String} value The text
 * @param {String} name The option
 * @param {Number} min The smallest value
 * @param {Number} max The largest value
 * @return {Number} The number
 * @private
 */
function integer(value, name, min, max) {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!(n >= min && n <= max)) usageError(`${name} must be an integer from ${min} to ${max}`);
  return n;
}

/** The longest timeout setTimeout takes, in ms (the relay's limit for its timeouts). */
const MAX_TIMEOUT = 2 ** 31 - 1;

/**
 * Runs `hyco-ws-rs relay`.
 *
 * @param {String[]} argv The arguments after `relay`
 * @return {Promise<void>}
 * @private
 */
async function relayCommand(argv) {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        port: { type: 'string' },
        host: { type: 'string' },
        hc: { type: 'string', multiple: true },
        'tls-cert': { type: 'string' },
        'tls-key': { type: 'string' },
        'accept-timeout': { type: 'string' },
        'max-listeners': { type: 'string' },
        'request-timeout': { type: 'string' },
        'no-listener-status': { type: 'string' },
        'entra-secret': { type: 'string' },
        'no-local-auth': { type: 'boolean' },
        help: { type: 'boolean', short: 'h' }
      }
    }));
  } catch (err) {
    return usageError(err.message);
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return;
  }
  const options = {};
  if (values.port !== undefined) options.port = integer(values.port, '--port', 0, 65535);
  if (values.host !== undefined) options.host = values.host;
  if (values.hc) {
    if (values.hc.some((name) => name === '')) usageError('--hc needs a name');
    options.hybridConnections = values.hc.map((name) => ({ name }));
  }
  if (values['accept-timeout'] !== undefined) {
    options.acceptTimeoutMs = integer(values['accept-timeout'], '--accept-timeout', 1, MAX_TIMEOUT);
  }
  if (values['max-listeners'] !== undefined) {
    options.maxListeners = integer(values['max-listeners'], '--max-listeners', 1, 100000);
  }
  if (values['request-timeout'] !== undefined) {
    options.requestTimeoutMs = integer(values['request-timeout'], '--request-timeout', 1, MAX_TIMEOUT);
  }
  if (values['no-listener-status'] !== undefined) {
    const status = values['no-listener-status'];
    if (!['404', '502', '503'].includes(status)) usageError('--no-listener-status must be 404, 502 or 503');
    options.noListenerStatus = Number(status);
  }
  if (values['entra-secret'] !== undefined) {
    if (values['entra-secret'] === '') usageError('--entra-secret needs a secret');
    options.entra = { secret: values['entra-secret'], localAuth: !values['no-local-auth'] };
  } else if (values['no-local-auth']) {
    usageError('--no-local-auth goes with --entra-secret');
  }
  if (Boolean(values['tls-cert']) !== Boolean(values['tls-key'])) {
    usageError('--tls-cert and --tls-key go together');
  }
  if (values['tls-cert']) {
    try {
      options.tls = {
        cert: fs.readFileSync(values['tls-cert']),
        key: fs.readFileSync(values['tls-key'])
      };
    } catch (err) {
      usageError(`cannot read the TLS files: ${err.message}`);
    }
  }

  // A closed pipe (`hyco-ws-rs relay | head`) is not a reason to die without closing the
  // relay: the output just stops.
  process.stdout.on('error', (err) => {
    if (err.code !== 'EPIPE') throw err;
  });
  let relay;
  try {
    // Loaded here, not at the top: --help and --version work without the native addon.
    const { startLocalRelay } = require('../lib/local-relay');
    relay = await startLocalRelay(options);
  } catch (err) {
    // The addon's own errors name the package already.
    const message = String(err.message);
    process.stderr.write(`${message.startsWith('hyco-ws-rs:') ? '' : 'hyco-ws-rs: '}${message}\n`);
    process.exit(1);
  }
  const example = values.hc ? values.hc[0] : 'my-hc';
  process.stdout.write(
    `Local Azure Relay emulator listening on ${relay.url}\n` +
      `namespace: ${relay.namespace}\n` +
      `connection string: ${relay.connectionString(example)}\n` +
      `Hybrid Connections: ${values.hc ? values.hc.join(', ') : 'any path (created on first listen)'}\n` +
      (options.entra
        ? `Entra ID mode${options.entra.localAuth ? '' : ' (SAS tokens refused)'}; a token to try (Azure Relay Owner, 1 h): ` +
          `${relay.createEntraToken()}\n`
        : '') +
      'Press Ctrl-C to stop.\n'
  );
  relay.on('event', (e) => {
    const hc = e.hybridConnection ? ` [${e.hybridConnection}]` : '';
    const id = e.id ? ` id=${e.id}` : '';
    process.stdout.write(`${new Date().toISOString()} ${e.type}${hc}${id} ${e.message}\n`);
  });

  let stopping = false;
  const stop = (signal) => {
    // A second signal while closing: at once (128 + the signal's number, as a shell says).
    if (stopping) process.exit(signal === 'SIGTERM' ? 143 : 130);
    stopping = true;
    process.stdout.write(`${signal}: stopping\n`);
    relay.close().then(
      () => process.stdout.write('stopped\n'),
      (err) => {
        process.stderr.write(`hyco-ws-rs: ${err.message}\n`);
        process.exitCode = 1;
      }
    );
  };
  process.on('SIGINT', () => stop('SIGINT'));
  process.on('SIGTERM', () => stop('SIGTERM'));
}

/**
 * The entry point.
 *
 * @param {String[]} argv The arguments
 * @return {Promise<void>}
 * @private
 */
async function main(argv) {
  const [command, ...rest] = argv;
  if (command === 'relay') return relayCommand(rest);
  if (command === '-v' || command === '--version') {
    process.stdout.write(`${require('../package.json').version}\n`);
    return undefined;
  }
  if (command === undefined || command === '-h' || command === '--help') {
    process.stdout.write(USAGE);
    return undefined;
  }
  return usageError(`unknown command "${command}"`);
}

main(process.argv.slice(2));
