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

const { startLocalRelay } = require('../lib/local-relay');

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
 * Parses a non-negative integer option.
 *
 * @param {String} value The text
 * @param {String} name The option
 * @return {Number} The number
 * @private
 */
function integer(value, name) {
  if (!/^\d+$/.test(value)) usageError(`${name} must be a non-negative integer`);
  return Number(value);
}

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
  if (values.port !== undefined) options.port = integer(values.port, '--port');
  if (values.host !== undefined) options.host = values.host;
  if (values.hc) options.hybridConnections = values.hc.map((name) => ({ name }));
  if (values['accept-timeout'] !== undefined) {
    options.acceptTimeoutMs = integer(values['accept-timeout'], '--accept-timeout');
  }
  if (values['max-listeners'] !== undefined) {
    options.maxListeners = integer(values['max-listeners'], '--max-listeners');
  }
  if (values['request-timeout'] !== undefined) {
    options.requestTimeoutMs = integer(values['request-timeout'], '--request-timeout');
  }
  if (values['no-listener-status'] !== undefined) {
    options.noListenerStatus = integer(values['no-listener-status'], '--no-listener-status');
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

  let relay;
  try {
    relay = await startLocalRelay(options);
  } catch (err) {
    process.stderr.write(`hyco-ws-rs: ${err.message}\n`);
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
    if (stopping) return;
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
