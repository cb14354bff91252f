'use strict';

/**
 * A Hybrid Connection sender: connects through the relay to listener.js (or
 * hybrid-server.js), sends messages and prints what comes back.
 *
 *   node examples/sender.js [count]    sends "hello 1" ... "hello <count>" (default 3),
 *                                      one at a time, printing each echo, then exits
 *   node examples/sender.js --stdin    sends each line of stdin; exits when stdin ends
 *                                      and every echo has arrived
 *
 * Where it connects comes from RELAY_CONNECTION_STRING, or RELAY_NAMESPACE, RELAY_PATH,
 * RELAY_KEY_RULE and RELAY_KEY (see support/target.js). Exits with status 0 once every
 * echo has arrived and the connection is closed, 1 on any failure.
 *
 * This is hyco-ws's examples/simple/sender.js with `require('hyco-ws-rs')`.
 */

const readline = require('readline');
const { parseArgs } = require('util');

const WebSocket = require('hyco-ws-rs');

const { TargetError, describeTarget, resolveTarget } = require('./support/target');

const USAGE = 'Usage: node examples/sender.js [count] | --stdin';

/**
 * Reads the command line.
 *
 * @param {String[]} argv The arguments
 * @return {{ stdin: Boolean, count: Number }} What to send
 * @throws {TargetError} On a bad argument
 */
function readArguments(argv) {
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options: { stdin: { type: 'boolean' } }, allowPositionals: true });
  } catch (err) {
    throw new TargetError(`${err.message}\n${USAGE}`);
  }
  const { values, positionals } = parsed;
  if (positionals.length > 1 || (values.stdin && positionals.length > 0)) throw new TargetError(USAGE);
  const count = positionals.length ? Number(positionals[0]) : 3;
  if (!Number.isInteger(count) || count < 1) throw new TargetError(`count must be a positive integer\n${USAGE}`);
  return { stdin: Boolean(values.stdin), count };
}

/**
 * Explains a failed connection.
 *
 * @param {Error} err The socket's error
 * @return {String} One line
 */
function explain(err) {
  if (err.code === 'ERR_UNEXPECTED_RESPONSE') {
    const reason = err.statusDescription ? ` (${err.statusDescription})` : '';
    const hint = err.statusCode === 404 ? ': is the listener running on this Hybrid Connection?' : '';
    return `${err.message}${reason}${hint}`;
  }
  return err.message;
}

/**
 * Connects and sends.
 *
 * @return {Promise<void>}
 */
async function main() {
  const { stdin, count } = readArguments(process.argv.slice(2));
  const target = await resolveTarget();
  console.log(`connecting: ${describeTarget(target)}`);

  let sent = 0;
  let echoed = 0;
  let inputEnded = false;
  let lines = null;

  const ws = WebSocket.relayedConnect(target.sendUri, target.token(), function (wss) {
    console.log('connected');
    if (!stdin) {
      sendNext();
      return;
    }
    lines = readline.createInterface({ input: process.stdin, terminal: false });
    lines.on('line', function (line) {
      sent++;
      wss.send(line);
    });
    lines.on('close', function () {
      inputEnded = true;
      if (echoed === sent) wss.close(1000, 'done');
    });
  });

  /**
   * Sends the next "hello N".
   */
  function sendNext() {
    sent++;
    ws.send(`hello ${sent}`);
  }

  ws.on('message', function (data, isBinary) {
    echoed++;
    console.log(isBinary ? `echo: <${data.length} bytes>` : `echo: ${data}`);
    if (stdin) {
      if (inputEnded && echoed === sent) ws.close(1000, 'done');
    } else if (echoed < count) {
      sendNext();
    } else {
      ws.close(1000, 'done');
    }
  });

  ws.on('error', function (err) {
    console.error(`error: ${explain(err)}`);
    process.exitCode = 1;
  });

  ws.on('close', function (code) {
    const complete = stdin ? inputEnded && echoed === sent : echoed === count;
    if (!complete) {
      if (process.exitCode !== 1) console.error(`connection closed (${code}) with ${sent - echoed} echo(es) missing`);
      process.exitCode = 1;
    }
    console.log(`closed (${code}): sent ${sent}, echoed ${echoed}`);
    if (lines) {
      lines.close();
      process.stdin.destroy();
    }
  });
}

main().catch(function (err) {
  console.error(err instanceof TargetError ? err.message : err);
  process.exit(1);
});
