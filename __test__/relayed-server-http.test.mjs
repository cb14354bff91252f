// HTTP over Hybrid Connections at RelayedServer: 'request' (req, res) with Node's own
// IncomingMessage and ServerResponse, against the local relay, with senders written with
// Node's `http` module.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable, pipeline } from 'node:stream';

import express from 'express';
import { createRelayedServer, relayedFetch } from 'hyco-ws-rs';

import { endAgents, httpAddress, keepAliveAgent, patterned, readBody, sendHttp, sha256 } from './support/http-steps.mjs';
import { STEP_MS, waitUntil, withTimeout } from './support/relay-steps.mjs';
import { echoRoundTrip, listenOptions, nextOf, record, whenListening, withServerRelay } from './support/server-steps.mjs';

after(endAgents);

/**
 * A recorded, listening server that serves `handler`.
 *
 * @param {any} relay
 * @param {Function} handler A 'request' listener.
 * @param {object} [extra] More options.
 * @returns {Promise<any>}
 */
async function httpServer(relay, handler, extra = {}) {
  const server = record(createRelayedServer(listenOptions(relay, 'hc', extra)));
  if (handler) server.on('request', handler);
  await whenListening(server);
  return server;
}

describe('requests and responses', () => {
  test("a GET: req has Node's surface, res's status, reason and headers reach the sender", () =>
    withServerRelay(undefined, async (relay) => {
      let seen;
      await httpServer(relay, (req, res) => {
        seen = {
          method: req.method,
          url: req.url,
          headers: req.headers,
          rawHeaders: req.rawHeaders,
          httpVersion: req.httpVersion,
          remoteAddress: req.socket.remoteAddress,
          remotePort: req.socket.remotePort,
          encrypted: req.socket.encrypted,
          id: req.id,
          isIncoming: req instanceof http.IncomingMessage,
          isResponse: res instanceof http.ServerResponse
        };
        res.statusCode = 203;
        res.statusMessage = 'Fine Thanks';
        res.setHeader('Content-Type', 'text/plain');
        res.setHeader('Set-Cookie', ['a=1', 'b=2']);
        res.setHeader('X-Gone', 'x');
        assert.equal(res.getHeader('content-type'), 'text/plain');
        assert.ok(res.hasHeader('x-gone'));
        res.removeHeader('X-Gone');
        assert.deepEqual(Object.keys(res.getHeaders()).sort(), ['content-type', 'set-cookie']);
        assert.equal(res.headersSent, false);
        res.end(`hello ${req.url}`);
        assert.equal(res.writableEnded, true);
      });
      const { url, token } = httpAddress(relay, 'hc/orders/7?x=1&sb-hc-id=trace-7');
      const r = await sendHttp(url, { token, headers: { 'X-Custom': 'yes', Cookie: 'c=1' } });
      assert.equal(r.status, 203);
      assert.equal(r.statusMessage, 'Fine Thanks');
      assert.equal(r.headers['content-type'], 'text/plain');
      assert.equal(r.body.toString(), 'hello /orders/7?x=1');
      assert.equal(r.headers['x-gone'], undefined);
      assert.ok(r.headers.via, 'the relay marks a listener response with Via');
      assert.equal(seen.method, 'GET');
      assert.equal(seen.url, '/orders/7?x=1');
      assert.equal(seen.headers['x-custom'], 'yes');
      assert.equal(seen.headers.cookie, 'c=1');
      assert.equal(seen.headers.servicebusauthorization, undefined, 'the token never reaches the listener');
      assert.ok(seen.rawHeaders.includes('X-Custom'), `${seen.rawHeaders}`);
      assert.equal(seen.httpVersion, '1.1');
      assert.equal(seen.remoteAddress, '127.0.0.1');
      assert.equal(typeof seen.remotePort, 'number');
      assert.equal(seen.encrypted, true);
      assert.equal(typeof seen.id, 'string');
      assert.ok(seen.id.length > 0);
      assert.ok(seen.isIncoming && seen.isResponse);
    }));

  test("non-ASCII in a response's reason phrase and header values reaches the sender as the characters the handler set (res.attachment('café.pdf'))", () =>
    withServerRelay(undefined, async (relay) => {
      // Node writes a head as Latin-1, except when the head and a string body go out in one
      // write (then as UTF-8): either way the sender gets what the handler set, written as
      // Node's own client reads a head (one byte per character). Content-Disposition Node
      // mangles itself (nodejs/node#46528): the sender gets what Node's own server sends.
      const handler = (req, res) => {
        res.statusMessage = 'Déjà vu';
        res.setHeader('X-Name', 'café');
        res.setHeader('Content-Disposition', 'attachment; filename="café.pdf"');
        if (req.url.endsWith('/string')) res.end('pdf');
        else res.end(Buffer.from('pdf'));
      };
      await httpServer(relay, handler);
      const direct = http.createServer(handler);
      await new Promise((resolve) => direct.listen(0, '127.0.0.1', resolve));
      try {
        for (const path of ['string', 'buffer']) {
          const { url, token } = httpAddress(relay, `hc/${path}`);
          const relayed = await sendHttp(url, { token });
          assert.equal(relayed.statusMessage, 'Déjà vu', path);
          assert.equal(relayed.headers['x-name'], 'café', path);
          assert.equal(relayed.body.toString(), 'pdf');
          const plain = await sendHttp(`http://127.0.0.1:${direct.address().port}/${path}`);
          assert.equal(relayed.headers['content-disposition'], plain.headers['content-disposition'], path);
        }
      } finally {
        await new Promise((resolve) => direct.close(resolve));
      }
    }));

  test("a small POST: the body streams into req (with a content-length), res's write()s and end() come back", () =>
    withServerRelay(undefined, async (relay) => {
      const server = await httpServer(relay, async (req, res) => {
        const body = await readBody(req);
        assert.equal(req.headers['content-length'], String(body.length));
        assert.equal(req.complete, true);
        res.writeHead(201, { 'X-Length': String(body.length) });
        res.write('got ');
        res.write(body);
        res.end();
      });
      const { url, token } = httpAddress(relay);
      const r = await sendHttp(url, { method: 'POST', token, body: 'payload', headers: { 'Content-Type': 'text/plain' } });
      assert.equal(r.status, 201);
      assert.equal(r.headers['x-length'], '7');
      assert.equal(r.body.toString(), 'got payload');
      assert.ok(server);
    }));

  test("'finish' then 'close' on res, 'close' on req", () =>
    withServerRelay(undefined, async (relay) => {
      const order = [];
      let settled;
      const done = new Promise((r) => (settled = r));
      await httpServer(relay, (req, res) => {
        res.on('finish', () => order.push('finish'));
        res.on('close', () => {
          order.push('res close');
          settled();
        });
        req.on('close', () => order.push('req close'));
        req.resume();
        res.end('x');
      });
      const { url, token } = httpAddress(relay);
      await sendHttp(url, { token });
      await withTimeout(done, STEP_MS, "res's 'close'");
      assert.deepEqual(order.slice(0, 2), ['finish', 'res close']);
      await waitUntil(() => order.includes('req close'), STEP_MS, "req's 'close'");
    }));

  test('HEAD, 204 and 304 answers carry no body', () =>
    withServerRelay(undefined, async (relay) => {
      await httpServer(relay, (req, res) => {
        const status = Number(req.url.slice(1)) || 200;
        res.writeHead(status, { 'Content-Type': 'text/plain', ETag: '"v1"' });
        res.end(status === 200 ? 'some body' : undefined);
      });
      const { token } = httpAddress(relay);
      for (const [method, path, status] of [
        ['HEAD', 'hc', 200],
        ['GET', 'hc/204', 204],
        ['GET', 'hc/304', 304]
      ]) {
        const r = await sendHttp(httpAddress(relay, path).url, { method, token });
        assert.equal(r.status, status, `${method} ${path}`);
        assert.equal(r.body.length, 0, `${method} ${path}`);
        if (status !== 204) assert.equal(r.headers.etag, '"v1"');
      }
    }));

  test('1 MiB and 20 MiB bodies go both ways, streamed (a chunked upload too)', () =>
    withServerRelay(undefined, async (relay) => {
      await httpServer(relay, async (req, res) => {
        const body = await readBody(req);
        const size = Number(req.url.slice(1));
        const out = patterned(size);
        res.setHeader('X-Received-Sha', sha256(body));
        res.setHeader('X-Received-Length', String(body.length));
        // Written in pieces, as a handler streaming a file would.
        Readable.from(chunks(out.data, 64 * 1024)).pipe(res);
      });
      const { token } = httpAddress(relay);
      for (const size of [1024 * 1024, 20 * 1024 * 1024]) {
        const up = patterned(size + 3);
        const r = await sendHttp(httpAddress(relay, `hc/${size}`).url, { method: 'POST', token, body: up.data, ms: 60_000 });
        assert.equal(r.status, 200);
        assert.equal(r.headers['x-received-length'], String(up.data.length));
        assert.equal(r.headers['x-received-sha'], up.sha);
        assert.equal(r.body.length, size);
        assert.equal(sha256(r.body), patterned(size).sha);
      }
      const up = patterned(300 * 1024);
      const r = await sendHttp(httpAddress(relay, 'hc/10').url, { method: 'PUT', token, body: chunks(up.data, 7000), ms: 30_000 });
      assert.equal(r.headers['x-received-sha'], up.sha);
    }));

  test('a slow reader holds back a large upload: it is never buffered whole', () =>
    withServerRelay(undefined, async (relay) => {
      let received = 0;
      let request;
      await httpServer(relay, (req, res) => {
        request = { req, res };
        req.once('data', (c) => {
          received += c.length;
          req.pause();
        });
      });
      const { url, token } = httpAddress(relay);
      const total = 64 * 1024 * 1024;
      let written = 0;
      let stalled = false;
      const upload = (function* () {
        while (written < total) {
          written += 256 * 1024;
          yield Buffer.alloc(256 * 1024, 1);
        }
      })();
      const response = sendHttp(url, { method: 'POST', token, body: upload, ms: 60_000 });
      // Whatever the buffers on the way hold, the sender stops well short of the total.
      let last = -1;
      while (!stalled) {
        await new Promise((r) => setTimeout(r, 300));
        stalled = written === last;
        last = written;
      }
      assert.ok(written < total / 2, `the sender wrote ${written} bytes while nothing was read`);
      assert.ok(received > 0);
      // Reading again lets it through.
      request.req.on('data', (c) => (received += c.length));
      request.req.resume();
      request.req.on('end', () => request.res.end('ok'));
      const r = await response;
      assert.equal(r.body.toString(), 'ok');
      assert.equal(received, total);
    }));

  test('many requests at once, each answered on its own; a slow one holds up none', () =>
    withServerRelay(undefined, async (relay) => {
      await httpServer(relay, (req, res) => {
        const n = Number(req.url.slice(1));
        const delay = n === 0 ? 500 : 0;
        setTimeout(() => res.end(`answer ${n}`), delay);
      });
      const { token } = httpAddress(relay);
      const finished = [];
      await Promise.all(
        Array.from({ length: 40 }, (_, n) =>
          sendHttp(httpAddress(relay, `hc/${n}`).url, { token, ms: 20_000 }).then((r) => {
            assert.equal(r.body.toString(), `answer ${n}`);
            finished.push(n);
          })
        )
      );
      assert.equal(finished[finished.length - 1], 0, 'the slow one finished last');
    }));

  test('requests on one keep-alive connection are all answered, large responses included', () =>
    withServerRelay(undefined, async (relay) => {
      await httpServer(relay, (req, res) => {
        const size = Number(req.url.slice(1));
        res.end(patterned(size).data);
      });
      const { token } = httpAddress(relay);
      const agent = keepAliveAgent();
      for (const size of [10, 200 * 1024, 10, 100 * 1024, 5]) {
        const r = await sendHttp(httpAddress(relay, `hc/${size}`).url, { token, agent });
        assert.equal(sha256(r.body), patterned(size).sha, `size ${size}`);
      }
    }));

  test('requests after a streamed body whose reader paused at its last piece, on one keep-alive connection, are all answered', () =>
    withServerRelay({ requestTimeoutMs: 5000 }, async (relay) => {
      // Bodies over 64 KiB come over a rendezvous, piece by piece; `for await` (as
      // express.json() or a pipeline into a slow stream) leaves req's buffer full at the end.
      await httpServer(
        relay,
        async (req, res) => {
          let n = 0;
          for await (const piece of req) n += piece.length;
          res.end(String(n));
        },
        { requestTimeout: 5000 }
      );
      const { token } = httpAddress(relay);
      const agent = keepAliveAgent();
      const body = patterned(100_000).data;
      for (let i = 0; i < 4; i++) {
        const r = await sendHttp(httpAddress(relay, 'hc/count').url, { method: 'POST', token, agent, body });
        assert.equal(r.status, 200, `request ${i}: ${r.status} ${r.body}`);
        assert.equal(r.body.toString(), '100000');
      }
    }));

  test("a streamed body still coming when the response has finished: req ends with 'close' (the rest is dropped), never a reader left waiting", () =>
    withServerRelay(undefined, async (relay) => {
      let reqClosed;
      const closed = new Promise((resolve) => {
        reqClosed = resolve;
      });
      await httpServer(relay, async (req, res) => {
        res.end('early');
        req.on('close', () => reqClosed(req.complete));
        // A reader at it after the response (Node's server would deliver the rest).
        try {
          for await (const piece of req) void piece;
        } catch {
          // ERR_STREAM_PREMATURE_CLOSE: what was not read is gone with the exchange.
        }
      });
      const { url, token } = httpAddress(relay);
      const r = await sendHttp(url, { method: 'POST', token, body: patterned(1_000_000).data });
      assert.equal(r.body.toString(), 'early');
      await withTimeout(closed, STEP_MS, "req's 'close'");
    }));

  test("a streamed body the handler never reads (a 401 before the upload): req ends quietly, no 'aborted', as after Node's dump; the next request on the connection is served", () =>
    withServerRelay(undefined, async (relay) => {
      const seen = [];
      await httpServer(relay, (req, res) => {
        const events = [];
        req.on('aborted', () => events.push('aborted'));
        req.on('close', () => seen.push(events));
        res.statusCode = req.method === 'POST' ? 401 : 200;
        res.end(req.method);
      });
      const { token } = httpAddress(relay);
      const agent = keepAliveAgent();
      const upload = await sendHttp(httpAddress(relay, 'hc/upload').url, { method: 'POST', token, agent, body: patterned(1_000_000).data });
      assert.equal(upload.status, 401);
      const next = await sendHttp(httpAddress(relay, 'hc/next').url, { token, agent });
      assert.equal(next.body.toString(), 'GET');
      await waitUntil(() => seen.length === 2, STEP_MS, "both requests' 'close'");
      assert.deepEqual(seen, [[], []]);
    }));

  test('a piped Readable and flushHeaders() reach the sender', () =>
    withServerRelay(undefined, async (relay) => {
      await httpServer(relay, (req, res) => {
        res.setHeader('Content-Type', 'text/event-stream');
        res.flushHeaders();
        assert.equal(res.headersSent, true);
        Readable.from(['data: 1\n\n', 'data: 2\n\n']).pipe(res);
      });
      const { url, token } = httpAddress(relay);
      const r = await sendHttp(url, { token });
      assert.equal(r.headers['content-type'], 'text/event-stream');
      assert.equal(r.body.toString(), 'data: 1\n\ndata: 2\n\n');
    }));
});

describe('frameworks', () => {
  test('an Express app is a listener: routing, JSON, cookies, redirects, error middleware, streamed files', () =>
    withServerRelay(undefined, async (relay) => {
      const app = express();
      app.use(express.json());
      app.get('/items/:id', (req, res) => res.json({ id: req.params.id, q: req.query.q, ip: req.ip, secure: req.secure }));
      app.post('/echo', (req, res) => res.status(202).json(req.body));
      app.get('/cookies', (req, res) => {
        res.cookie('a', '1', { httpOnly: true });
        res.cookie('b', '2');
        res.send('two cookies');
      });
      app.get('/old', (req, res) => res.redirect(301, '/items/1'));
      app.get('/boom', () => {
        throw new Error('route bug');
      });
      app.get('/file', (req, res) => Readable.from(chunks(patterned(300 * 1024).data, 16 * 1024)).pipe(res.type('application/octet-stream')));
      // eslint-disable-next-line no-unused-vars
      app.use((err, req, res, next) => res.status(500).json({ error: err.message }));
      await httpServer(relay, app);
      const { token } = httpAddress(relay);
      const get = (path, opts = {}) => sendHttp(httpAddress(relay, `hc${path}`).url, { token, ...opts });

      const item = await get('/items/7?q=x');
      assert.deepEqual(JSON.parse(item.body), { id: '7', q: 'x', ip: '127.0.0.1', secure: true });
      const echoed = await get('/echo', { method: 'POST', body: JSON.stringify({ n: [1, 2] }), headers: { 'Content-Type': 'application/json' } });
      assert.equal(echoed.status, 202);
      assert.deepEqual(JSON.parse(echoed.body), { n: [1, 2] });
      // The protocol's response message holds one value per header name: repeats are
      // joined, as Microsoft's .NET listener joins them (nothing is lost; see README).
      const cookies = await get('/cookies');
      assert.deepEqual(cookies.headers['set-cookie'], ['a=1; Path=/; HttpOnly, b=2; Path=/']);
      const moved = await get('/old');
      assert.equal(moved.status, 301);
      assert.equal(moved.headers.location, '/items/1');
      const boom = await get('/boom');
      assert.equal(boom.status, 500);
      assert.deepEqual(JSON.parse(boom.body), { error: 'route bug' });
      const file = await get('/file');
      assert.equal(file.headers['content-type'], 'application/octet-stream');
      assert.equal(sha256(file.body), patterned(300 * 1024).sha);
      assert.equal((await get('/nothing')).status, 404);
    }));
});

describe('failures', () => {
  test("without a 'request' listener the relay's sender gets 501; with one, requests come", () =>
    withServerRelay(undefined, async (relay) => {
      const server = await httpServer(relay, null);
      const { url, token } = httpAddress(relay);
      assert.equal((await sendHttp(url, { token })).status, 501);
      const handler = (req, res) => res.end('served');
      server.on('request', handler);
      assert.equal((await sendHttp(url, { token })).body.toString(), 'served');
      server.off('request', handler);
      assert.equal((await sendHttp(url, { token })).status, 501);
    }));

  test("a throwing handler: 500, a 'warning', and the next request is served", () =>
    withServerRelay(undefined, async (relay) => {
      const server = await httpServer(relay, (req, res) => {
        if (req.url === '/throw') throw new Error('handler bug');
        res.end('fine');
      });
      server.on('warning', () => {});
      const warning = nextOf(server, 'warning');
      const { token } = httpAddress(relay);
      const r = await sendHttp(httpAddress(relay, 'hc/throw').url, { token });
      assert.equal(r.status, 500);
      assert.ok(!r.body.toString().includes('handler bug'), 'the error text stays in the listener');
      const {
        args: [w]
      } = await warning;
      assert.equal(w.code, 'ERR_REQUEST_HANDLER');
      assert.equal(w.cause.message, 'handler bug');
      assert.equal((await sendHttp(httpAddress(relay, 'hc/ok').url, { token })).body.toString(), 'fine');
    }));

  test('a response given up before any of it went out (res.destroy(err), a failed pipeline(), a throw after write()): no uncaught error, the sender gets 500 at once', () =>
    withServerRelay(undefined, async (relay) => {
      const piped = [];
      const server = await httpServer(relay, (req, res) => {
        if (req.url === '/destroy') {
          res.destroy(new Error('disk read failed'));
        } else if (req.url === '/pipeline') {
          const source = new Readable({ read() {} });
          source.push('first part ');
          pipeline(source, res, (err) => piped.push(err && err.message));
          setImmediate(() => source.destroy(new Error('disk read failed')));
        } else {
          res.write('partial');
          throw new Error('handler bug');
        }
      });
      server.on('warning', () => {});
      const { token } = httpAddress(relay);
      // The relay's own deadline (60 s) is far beyond these waits.
      for (const path of ['destroy', 'pipeline', 'throw-after-write']) {
        const r = await sendHttp(httpAddress(relay, `hc/${path}`).url, { token });
        assert.equal(r.status, 500, path);
        assert.ok(r.headers.via, `${path}: the listener answered, not the relay`);
      }
      assert.deepEqual(piped, ['disk read failed']);
    }));

  test("a handler that ends its response and then throws: the response arrives whole, with a 'warning'", () =>
    withServerRelay(undefined, async (relay) => {
      const server = await httpServer(relay, (req, res) => {
        res.end('all of it');
        throw new Error('handler bug after end');
      });
      server.on('warning', () => {});
      const warning = nextOf(server, 'warning');
      const { url, token } = httpAddress(relay);
      const r = await sendHttp(url, { token });
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'all of it');
      assert.equal((await warning).args[0].code, 'ERR_REQUEST_HANDLER');
    }));

  test('a response with 300 headers (200 of them Set-Cookie) reaches the sender', () =>
    withServerRelay(undefined, async (relay) => {
      await httpServer(relay, (req, res) => {
        for (let i = 0; i < 100; i++) res.setHeader(`X-Header-${i}`, String(i));
        res.setHeader('Set-Cookie', Array.from({ length: 200 }, (_, i) => `c${i}=${i}`));
        res.end('many headers');
      });
      const { url, token } = httpAddress(relay);
      const r = await sendHttp(url, { token });
      assert.equal(r.status, 200);
      assert.equal(r.body.toString(), 'many headers');
      assert.equal(r.headers['x-header-99'], '99');
      // One line, joined (README: the protocol's message holds one string per name).
      assert.equal(r.headers['set-cookie'].join(', ').split(', ').length, 200);
    }));

  test("close() while a response waits for 'drain': no uncaught error, res closes without 'finish'", () =>
    withServerRelay(undefined, async (relay) => {
      let blocked;
      const waiting = new Promise((r) => (blocked = r));
      const events = [];
      const server = await httpServer(relay, (req, res) => {
        res.on('finish', () => events.push('finish'));
        res.on('close', () => events.push('close'));
        const piece = Buffer.alloc(64 * 1024, 7);
        const pump = () => {
          while (!res.destroyed) {
            if (!res.write(piece)) {
              res.once('drain', pump);
              blocked();
              return;
            }
          }
        };
        pump();
      });
      const { url, token } = httpAddress(relay);
      const sender = http.request(url, { headers: { ServiceBusAuthorization: token }, agent: false }, (res) => {
        res.pause(); // reads nothing: the response backs up to the listener
        res.on('error', () => {});
      });
      sender.on('error', () => {});
      sender.end();
      try {
        await withTimeout(waiting, STEP_MS * 2, "the response to wait for 'drain'");
        await withTimeout(new Promise((r) => server.close(r)), STEP_MS, 'close()');
        await waitUntil(() => events.includes('close'), STEP_MS, "res's 'close'");
        assert.deepEqual(events, ['close']);
      } finally {
        sender.destroy();
      }
    }));

  test('502 and 504 from a handler reach the sender as 500 (the relay reserves them)', () =>
    withServerRelay(undefined, async (relay) => {
      await httpServer(relay, (req, res) => {
        res.writeHead(Number(req.url.slice(1)));
        res.end('upstream failed');
      });
      const { token } = httpAddress(relay);
      for (const status of [502, 504]) {
        const r = await sendHttp(httpAddress(relay, `hc/${status}`).url, { token });
        assert.equal(r.status, 500);
        assert.equal(r.statusMessage, http.STATUS_CODES[status]);
        assert.equal(r.body.toString(), 'upstream failed');
      }
    }));

  test("a handler that never answers: the sender gets the relay's 504, res closes without 'finish'", () =>
    withServerRelay({ requestTimeoutMs: 400 }, async (relay) => {
      const events = [];
      let closed;
      const done = new Promise((r) => (closed = r));
      await httpServer(
        relay,
        (req, res) => {
          res.on('finish', () => events.push('finish'));
          res.on('close', () => {
            events.push('close');
            closed();
          });
        },
        { requestTimeout: 400 }
      );
      const { url, token } = httpAddress(relay);
      const r = await sendHttp(url, { token });
      assert.equal(r.status, 504);
      assert.equal(r.headers.via, undefined, 'the relay itself answered');
      await withTimeout(done, STEP_MS, "res's 'close'");
      assert.deepEqual(events, ['close']);
    }));

  test("a sender that leaves mid-body: 'aborted' and 'close' on req", () =>
    withServerRelay(undefined, async (relay) => {
      let gotData;
      const data = new Promise((r) => (gotData = r));
      const seen = [];
      let closed;
      const reqClosed = new Promise((r) => (closed = r));
      await httpServer(relay, (req) => {
        req.on('aborted', () => seen.push('aborted'));
        req.on('error', (err) => seen.push(`error ${err.code}`));
        req.on('close', () => {
          seen.push('close');
          closed();
        });
        req.once('data', () => gotData());
      });
      const { url, token } = httpAddress(relay);
      const sender = http.request(url, { method: 'POST', headers: { ServiceBusAuthorization: token }, agent: false });
      sender.on('error', () => {});
      sender.write(Buffer.alloc(200 * 1024, 1));
      await withTimeout(data, STEP_MS, 'the first piece of the body');
      sender.destroy();
      await withTimeout(reqClosed, STEP_MS, "req's 'close'");
      assert.ok(seen.includes('aborted'), `${seen}`);
    }));

  test('WebSocket senders and HTTP requests share one listener', () =>
    withServerRelay(undefined, async (relay) => {
      const server = await httpServer(relay, (req, res) => res.end('http'));
      server.on('connection', (socket) => socket.on('message', (d, b) => socket.send(d, { binary: b })));
      const { url, token } = httpAddress(relay);
      const both = await Promise.all([
        sendHttp(url, { token }),
        echoRoundTrip(relay, 'a WebSocket sender'),
        sendHttp(url, { token }),
        echoRoundTrip(relay, 'another WebSocket sender')
      ]);
      assert.equal(both[0].body.toString(), 'http');
      assert.equal(both[2].body.toString(), 'http');
    }));

  test("close() with a request in flight: its res closes without 'finish', the server closes", () =>
    withServerRelay(undefined, async (relay) => {
      let inFlight;
      const arrived = new Promise((r) => (inFlight = r));
      const server = await httpServer(relay, (req, res) => inFlight(res));
      const { url, token } = httpAddress(relay);
      const pending = sendHttp(url, { token, ms: 20_000 }).catch((err) => err);
      const res = await withTimeout(arrived, STEP_MS, 'the request');
      const resClosed = new Promise((r) => res.on('close', r));
      let finished = false;
      res.on('finish', () => (finished = true));
      await withTimeout(new Promise((r) => server.close(r)), STEP_MS, 'close()');
      await withTimeout(resClosed, STEP_MS, "res's 'close'");
      assert.equal(finished, false);
      const outcome = await pending;
      assert.ok(outcome instanceof Error || outcome.status >= 500, `the sender got ${outcome.status}`);
    }));
});

describe('relayedFetch', () => {
  test('adds the token (a string or a function) and the tracking id; returns the response', () =>
    withServerRelay(undefined, async (relay) => {
      let ids = [];
      await httpServer(relay, (req, res) => {
        ids.push(req.id);
        res.setHeader('Content-Type', 'application/json');
        res.end(JSON.stringify({ url: req.url, method: req.method }));
      });
      const { url, token } = httpAddress(relay, 'hc/items');
      const r = await relayedFetch(url, { token, method: 'POST', body: 'x', id: 'trace-42' });
      assert.equal(r.status, 200);
      assert.deepEqual(await r.json(), { url: '/items', method: 'POST' });
      assert.match(ids[0], /trace-42/);
      const r2 = await relayedFetch(new URL(url), { token: async () => token });
      assert.equal(r2.status, 200);
      await r2.arrayBuffer();
    }));

  test("the relay's refusals are errors with the status; a listener's 404 is a response", () =>
    withServerRelay(undefined, async (relay) => {
      const { url, token } = httpAddress(relay, 'nobody');
      await assert.rejects(relayedFetch(url, { token }), (err) => {
        assert.equal(err.code, 'ERR_RELAY_REFUSED');
        assert.equal(err.statusCode, 404);
        return true;
      });
      await httpServer(relay, (req, res) => {
        res.statusCode = 404;
        res.end('no such item');
      });
      const hc = httpAddress(relay);
      await assert.rejects(relayedFetch(hc.url, { token: 'SharedAccessSignature sr=x&sig=y&se=1&skn=z' }), (err) => {
        assert.equal(err.statusCode, 401);
        assert.ok(!err.message.includes('sig=y'));
        return true;
      });
      await assert.rejects(relayedFetch(hc.url, { token }), { statusCode: 403 }, 'a token for another entity');
      const r = await relayedFetch(hc.url, { token: hc.token });
      assert.equal(r.status, 404);
      assert.equal(await r.text(), 'no such item');
    }));

  test("redirects: followed with the token on the relay's origin only; a POST redirected 302 or 303 becomes a GET", () =>
    withServerRelay(undefined, async (relay) => {
      const elsewhere = [];
      const other = http.createServer((req, res) => {
        elsewhere.push(req.headers);
        if (req.url === '/missing') res.statusCode = 404;
        res.end('elsewhere');
      });
      await new Promise((resolve) => other.listen(0, '127.0.0.1', resolve));
      const away = `http://127.0.0.1:${other.address().port}/away`;
      try {
        const seen = [];
        await httpServer(relay, (req, res) => {
          seen.push(`${req.method} ${req.url}`);
          const to = {
            '/start': ['/hc/next', 302],
            '/next': [away, 303],
            '/same': ['/hc/last', 307],
            '/gone': [`${away.replace('/away', '/missing')}`, 302]
          }[req.url];
          if (to === undefined) {
            res.end(`served ${req.url}`);
            return;
          }
          res.writeHead(to[1], { Location: to[0] });
          res.end();
        });
        const { token } = httpAddress(relay);
        const r = await relayedFetch(httpAddress(relay, 'hc/start').url, {
          token,
          method: 'POST',
          body: 'an order',
          headers: { Authorization: 'Bearer app-token', Cookie: 'a=1' }
        });
        assert.equal(await r.text(), 'elsewhere');
        assert.equal(r.url, away);
        assert.deepEqual(seen, ['POST /start', 'GET /next']);
        assert.equal(elsewhere.length, 1);
        for (const name of ['servicebusauthorization', 'authorization', 'cookie']) {
          assert.equal(elsewhere[0][name], undefined, `${name} is not sent to another origin`);
        }
        // A 307 keeps the method and the body, and the token on the same origin.
        const kept = await relayedFetch(httpAddress(relay, 'hc/same').url, { token, method: 'PUT', body: 'again' });
        assert.equal(await kept.text(), 'served /last');
        assert.deepEqual(seen.slice(2), ['PUT /same', 'PUT /last']);
        // A form is sent again too, as fetch sends it.
        const form = new FormData();
        form.append('field', 'value');
        const formed = await relayedFetch(httpAddress(relay, 'hc/same').url, { token, method: 'POST', body: form });
        assert.equal(await formed.text(), 'served /last');
        // Another host's error status after a redirect is a response, not the relay's refusal.
        const missing = await relayedFetch(httpAddress(relay, 'hc/gone').url, { token });
        assert.equal(missing.status, 404);
        assert.equal(await missing.text(), 'elsewhere');
        // redirect: 'manual' is left to fetch: the redirect is the answer.
        const manual = await relayedFetch(httpAddress(relay, 'hc/start').url, { token, redirect: 'manual' });
        assert.equal(manual.status, 302);
        assert.equal(manual.headers.get('location'), '/hc/next');
      } finally {
        await new Promise((resolve) => other.close(resolve));
      }
    }));

  test("tokens as relayedConnect gets them: { token, expiresOnTimestamp } from a function, a provider's failure ERR_TOKEN_PROVIDER, a credential that never answers ends with the request's signal", () =>
    withServerRelay(undefined, async (relay) => {
      await httpServer(relay, (req, res) => res.end('ok'));
      const { url, token } = httpAddress(relay);
      const r = await relayedFetch(url, { token: () => ({ token, expiresOnTimestamp: Date.now() + 60_000 }) });
      assert.equal(await r.text(), 'ok');
      for (const failing of [() => Promise.reject(undefined), () => Promise.reject(new Error('no login')), () => null]) {
        await assert.rejects(relayedFetch(url, { token: failing }), (err) => {
          assert.equal(err.code, 'ERR_TOKEN_PROVIDER', String(err));
          assert.match(err.message, /^The token provider failed: /);
          return true;
        });
      }
      let seen;
      const stuck = {
        getToken: (scope, options) => {
          seen = options;
          return new Promise(() => {});
        }
      };
      const signal = AbortSignal.timeout(200);
      await withTimeout(
        assert.rejects(relayedFetch(url, { credential: stuck, signal }), (err) => err === signal.reason),
        STEP_MS,
        'the signal to end the wait'
      );
      // getToken's abortSignal ends with the request's (and with the wait's own timeout).
      assert.equal(seen.abortSignal.aborted, true, 'the signal reaches getToken');
      assert.equal(seen.abortSignal.reason, signal.reason);
    }));

  test('bad arguments throw at once', async () => {
    await assert.rejects(relayedFetch(42), { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(relayedFetch('not a url'), SyntaxError);
    await assert.rejects(relayedFetch('ftp://h/x'), SyntaxError);
    await assert.rejects(relayedFetch('http://h/x', null), { code: 'ERR_INVALID_ARG_TYPE' });
    await assert.rejects(relayedFetch('http://h/x', { token: 5 }), TypeError);
    await assert.rejects(relayedFetch('http://h/x', { id: '' }), TypeError);
    // A token a header cannot carry is refused without being quoted.
    const bad = 'SharedAccessSignature sr=x&sig=SECRET\r\nX-Evil: 1';
    await assert.rejects(relayedFetch('http://127.0.0.1:9/hc', { token: bad }), (err) => {
      assert.ok(err instanceof TypeError);
      assert.equal(err.code, 'ERR_INVALID_CHAR');
      assert.ok(!err.message.includes('SECRET'), err.message);
      return true;
    });
    await assert.rejects(relayedFetch('http://127.0.0.1:9/hc', { token: () => bad }), (err) => {
      assert.equal(err.code, 'ERR_TOKEN_PROVIDER');
      assert.ok(!err.message.includes('SECRET'), err.message);
      return true;
    });
  });
});

/**
 * `data` in pieces of `size`.
 *
 * @param {Buffer} data
 * @param {number} size
 * @returns {Generator<Buffer>}
 */
function* chunks(data, size) {
  for (let i = 0; i < data.length; i += size) yield data.subarray(i, i + size);
}
