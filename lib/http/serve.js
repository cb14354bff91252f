'use strict';

/**
 * Turns a relayed HTTP request into what Node's `http.Server` hands its `'request'`
 * listeners: a real `http.IncomingMessage` and a real `http.ServerResponse`, over a
 * `RelayHttpSocket`. Real ones, because frameworks (Express first) replace their prototypes
 * with subclasses of Node's: objects of any other class lose their methods there.
 */

const { IncomingMessage, ServerResponse, STATUS_CODES } = require('http');

const { RelayHttpSocket } = require('./socket');

/**
 * Headers of which Node's `req.headers` keeps the first when repeated (`matchKnownFields`
 * in Node's `_http_incoming.js`).
 */
const SINGLE = new Set([
  'content-type',
  'content-length',
  'user-agent',
  'referer',
  'host',
  'authorization',
  'proxy-authorization',
  'if-modified-since',
  'if-unmodified-since',
  'from',
  'location',
  'max-forwards',
  'retry-after',
  'etag',
  'last-modified',
  'server',
  'age',
  'expires'
]);

/**
 * `req.headers` from raw headers, as Node makes it: names lowercased; `set-cookie` an
 * array; the headers in `SINGLE` first-wins; `cookie` joined with `'; '`; others with
 * `', '`.
 *
 * @param {String[]} raw Names and values, alternating
 * @return {Object} The headers
 * @private
 */
function nodeHeaders(raw) {
  const headers = {};
  for (let i = 0; i < raw.length; i += 2) {
    const name = raw[i].toLowerCase();
    const value = raw[i + 1];
    const seen = headers[name];
    if (name === 'set-cookie') {
      if (seen === undefined) headers[name] = [value];
      else seen.push(value);
    } else if (seen === undefined) {
      headers[name] = value;
    } else if (!SINGLE.has(name)) {
      headers[name] = `${seen}${name === 'cookie' ? '; ' : ', '}${value}`;
    }
  }
  return headers;
}

/** `needDrainSymbol`'s answer, found once (it is one symbol for every response). */
let kNeedDrain = null;

/**
 * The symbol of `OutgoingMessage`'s "a write returned false" flag: Node's server clears it
 * when it passes the socket's 'drain' on to the response (`socketOnDrain`), and so must this
 * server, or `res.writableNeedDrain` would stay `true` (and a later `pipe()` wait for a
 * 'drain' that never comes).
 *
 * @param {ServerResponse} res A response
 * @return {(Symbol|undefined)} The symbol, if this Node has it
 * @private
 */
function needDrainSymbol(res) {
  if (kNeedDrain === null) kNeedDrain = Object.getOwnPropertySymbols(res).find((s) => s.description === 'kNeedDrain');
  return kNeedDrain;
}

/**
 * Whether a header of that name is among `raw`.
 *
 * @param {String[]} raw Names and values, alternating
 * @param {String} name A lowercase name
 * @return {Boolean} Whether it is there
 * @private
 */
function hasHeader(raw, name) {
  for (let i = 0; i < raw.length; i += 2) if (raw[i].toLowerCase() === name) return true;
  return false;
}

/**
 * Makes `req` and `res` for a relayed request and hands them to `handler`. A body that came
 * whole is in `req` at once; one that streams follows as the socket receives it.
 *
 * The relay drops the sender's `Content-Length` and `Transfer-Encoding` (they describe its
 * connection, not the request); `req` gets the one Node's server would show for the body
 * the relay delivers (`content-length` for a whole body, `transfer-encoding: chunked` for
 * a streamed one), so that body parsers know there is a body.
 *
 * @param {Object} request The native request's fields
 * @param {Number} request.exchange The native exchange's id
 * @param {String} request.method The method
 * @param {String} request.url `req.url`
 * @param {String[]} request.headers Names and values, alternating
 * @param {String} request.id The request's tracking id
 * @param {?String} request.remoteAddress The sender's address
 * @param {?Number} request.remotePort The sender's port
 * @param {?Buffer} request.body The whole body, if it came whole
 * @param {Boolean} request.streamed The body follows in pieces
 * @param {Function} onOver Called with the socket once the native exchange is over
 * @return {{req: IncomingMessage, res: ServerResponse}} The request and the response
 */
function relayedRequest(request, onOver) {
  const socket = new RelayHttpSocket(request.exchange, request.remoteAddress, request.remotePort);
  socket._onOver = onOver;
  const raw = request.headers.slice();
  if (request.body !== null && !hasHeader(raw, 'content-length')) {
    raw.push('Content-Length', String(request.body.length));
  } else if (request.streamed && !hasHeader(raw, 'transfer-encoding')) {
    raw.push('Transfer-Encoding', 'chunked');
  }
  const req = new IncomingMessage(socket);
  req.method = request.method;
  req.url = request.url;
  req.httpVersionMajor = 1;
  req.httpVersionMinor = 1;
  req.httpVersion = '1.1';
  req.rawHeaders = raw;
  req.headers = nodeHeaders(raw);
  req.id = request.id;
  socket._req = req;
  if (!request.streamed) {
    if (request.body !== null && request.body.length > 0) req.push(request.body);
    req.complete = true;
    req.push(null);
  }

  const res = new ServerResponse(req);
  // Node would frame a body of unknown length as chunked; the relay frames bodies itself,
  // so the response is written plainly and read to its end.
  res.useChunkedEncodingByDefault = false;
  res.assignSocket(socket);
  // As Node's server: the socket's 'drain' is the response's, when the response was waiting.
  const needDrain = needDrainSymbol(res);
  socket.on('drain', () => {
    if (socket._httpMessage !== res || res.writableFinished) return;
    if (needDrain === undefined ? res.writableNeedDrain : res[needDrain]) {
      if (needDrain !== undefined) res[needDrain] = false;
      res.emit('drain');
    }
  });
  res.once('finish', () => {
    // As Node's server: a body nobody read is read and dropped (the sender's next request
    // follows it on the same connection), the socket is the response's no more, and
    // 'close' follows 'finish'.
    // Whether the application reads the body (flowing, or a 'data' or 'readable' listener,
    // as `for await` and pipe() add), before the server's own resume below.
    const reading =
      req.readableFlowing === true || req.listenerCount('data') > 0 || req.listenerCount('readable') > 0;
    if (req.readableFlowing !== true && !req.readableEnded && !req.destroyed) req.resume();
    res.detachSocket(socket);
    socket._endResponse();
    // The rest of a streamed body not yet here is dropped with the exchange (Node's server
    // would still deliver it). A reader still at it sees the body cut short ('aborted',
    // 'close'; ERR_STREAM_PREMATURE_CLOSE) rather than wait for ever; a body nobody reads
    // ends quietly, as Node's server dumps it.
    if (!req.complete && !req.destroyed) {
      if (reading) {
        req.destroy();
      } else {
        // As after Node's dump: complete (else its destroy would say 'aborted').
        req.complete = true;
        req.push(null);
      }
    }
    process.nextTick(() => {
      if (!res._closed) {
        res.destroyed = true;
        res._closed = true;
        res.emit('close');
      }
    });
  });
  return { req, res };
}

/**
 * Answers a request whose handler threw: 500 if nothing was sent yet, else the response is
 * cut short (the sender sees its connection drop); a response the handler had ended stands.
 *
 * @param {ServerResponse} res The response
 */
function failResponse(res) {
  // Ended before the throw: the response is whole (and may still be on its way out).
  if (res.writableEnded) return;
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.statusCode = 500;
  res.statusMessage = STATUS_CODES[500];
  for (const name of res.getHeaderNames()) res.removeHeader(name);
  res.end();
}

module.exports = { failResponse, nodeHeaders, relayedRequest };
