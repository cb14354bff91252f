// The hyco-ws helpers: byte-identical output for every recorded hyco-ws case, a differential
// check against hyco-ws's own algorithm on Node's url.parse, and every kind of bad input.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';

import hyco, {
  appendRelayToken,
  createRelayBaseUri,
  createRelayListenUri,
  createRelaySendUri,
  createRelayToken,
  parseConnectionString,
  parseRelayToken
} from 'hyco-ws-rs';

const require = createRequire(import.meta.url);
const native = require('../lib/native.js').loadNative();
const reference = require('../bench/baseline/hyco-ws-helpers.js');
const vectors = JSON.parse(
  readFileSync(new URL('./fixtures/hyco-ws-helpers.json', import.meta.url), 'utf8')
);

const publicUriFns = { createRelayBaseUri, createRelayListenUri, createRelaySendUri };

describe('hyco-ws vectors', () => {
  test('every URI case is byte-identical', () => {
    assert.ok(vectors.uris.length > 300);
    for (const c of vectors.uris) {
      assert.equal(publicUriFns[c.fn](...c.args), c.expected, JSON.stringify(c.args));
    }
  });

  test('every token case is byte-identical at its pinned clock', () => {
    assert.ok(vectors.tokens.length > 400);
    for (const c of vectors.tokens) {
      const [uri, keyName, key, exp] = c.args;
      assert.equal(native.createRelayToken(uri, keyName, key, exp, c.nowMs), c.expected);
    }
  });

  test('every appendRelayToken case is byte-identical at its pinned clock', () => {
    assert.equal(vectors.appended.length, 12);
    for (const c of vectors.appended) {
      const [uri, keyName, key, exp] = c.args;
      assert.equal(native.appendRelayToken(uri, keyName, key, exp, c.nowMs), c.expected);
    }
  });
});

describe('tokens at the real clock', () => {
  test('createRelayToken signs with HMAC-SHA256 and expires in an hour by default', () => {
    const before = Math.floor(Date.now() / 1000);
    const token = createRelayToken('ws://127.0.0.1:9000/$hc/x?sb-hc-action=listen', 'rule', 'k3y');
    const after = Math.floor(Date.now() / 1000);
    const fields = Object.fromEntries(
      token.slice('SharedAccessSignature '.length).split('&').map((p) => p.split('='))
    );
    const se = Number(fields.se);
    assert.ok(se >= before + 3600 && se <= after + 3600, `se=${se}`);
    assert.equal(decodeURIComponent(fields.sr), 'http://127.0.0.1:9000/x');
    const expected = crypto
      .createHmac('sha256', 'k3y')
      .update(`${fields.sr}\n${fields.se}`)
      .digest('base64');
    assert.equal(decodeURIComponent(fields.sig), expected);
    assert.equal(fields.skn, 'rule');
  });

  test('expirationSeconds 0, undefined and null mean 3600, as in hyco-ws', () => {
    const uri = 'wss://ns.example/$hc/hc';
    const se = (t) => Number(/&se=(\d+)/.exec(t)[1]);
    const now = Math.floor(Date.now() / 1000);
    for (const exp of [0, undefined, null]) {
      const v = se(createRelayToken(uri, 'r', 'k', exp));
      assert.ok(v >= now + 3600 && v <= now + 3601, `${exp}: ${v}`);
    }
    const v = se(createRelayToken(uri, 'r', 'k', 1.5));
    assert.ok(v >= now + 1 && v <= now + 3);
  });

  test('parseRelayToken reads what createRelayToken wrote', () => {
    const token = createRelayToken('sb://Contoso.example/Hyco/', 'listen rule', 'key', 120);
    const info = parseRelayToken(token);
    assert.deepEqual(Object.keys(info).sort(), ['expiresAt', 'keyName', 'resource']);
    assert.equal(info.resource, 'http://contoso.example/Hyco/');
    assert.equal(info.keyName, 'listen rule');
    assert.ok(info.expiresAt instanceof Date);
    const left = info.expiresAt.getTime() - Date.now();
    assert.ok(left > 118_000 && left <= 120_000, `${left}`);
  });

  test('appendRelayToken on a URI without a query starts one (hyco-ws wrote ?null&)', () => {
    const out = appendRelayToken('ws://127.0.0.1:9000/$hc/x', 'r', 'k', 60);
    assert.match(out, /^ws:\/\/127\.0\.0\.1:9000\/\$hc\/x\?sb-hc-token=SharedAccessSignature%20sr%3D/);
    assert.doesNotMatch(out, /null/);
  });
});

describe('namespaces with a scheme', () => {
  test('keep their scheme, host and port', () => {
    assert.equal(createRelayBaseUri('ws://127.0.0.1:9000', 'hc'), 'ws://127.0.0.1:9000/$hc/hc');
    assert.equal(
      createRelayListenUri('ws://127.0.0.1:9000', 'hc'),
      'ws://127.0.0.1:9000/$hc/hc?sb-hc-action=listen'
    );
    assert.equal(createRelaySendUri('wss://host:8443/', 'hc', null, 'i'), 'wss://host:8443/$hc/hc?sb-hc-action=connect&sb-hc-id=i');
    assert.equal(
      createRelayBaseUri('sb://ns.servicebus.windows.net/', 'hc'),
      'wss://ns.servicebus.windows.net:443/$hc/hc'
    );
  });

  test('refuse what cannot be a namespace', () => {
    for (const ns of ['ftp://h', 'ws://h/prefix', 'ws://', 'ws://h?x=1']) {
      assert.throws(() => createRelayBaseUri(ns, 'hc'), {
        name: 'TypeError',
        code: 'ERR_INVALID_URL',
        message: /"namespace"/
      }, ns);
    }
  });
});

// hyco-ws's algorithm on Node's own url.parse, over generated URIs: wherever our parser
// accepts a URI, the token must be the same; what it refuses must be something Node mangles.
describe('differential check against url.parse', () => {
  const hosts = ['ns.example', 'NS.Example.COM', '127.0.0.1', '[::1]', 'a-b_c.d', 'bücher.example', 'x'];
  const ports = ['', ':443', ':9000', ':0', ':00443'];
  const paths = [
    '', '/', '/$hc/hc', '/$hc/a/b', '/$hc/$hc/x', '/$hc/a b', "/$hc/q'uote", '/$hc/{x}|^`<>"',
    '/$hc/ünï', '/$hc/%41%zz', '/x/$hc/y', '/$HC/x', '/$hc', '/;p=1'
  ];
  const tails = ['', '?sb-hc-action=listen', '?a b#c d', '#frag', '?x=1&y=2#f'];
  const schemes = ['wss', 'ws', 'WSS', 'http', 'https', 'sb'];

  test('tokens match hyco-ws wherever a URI is accepted', () => {
    let compared = 0;
    const now = 1764288000000;
    for (const s of schemes) {
      for (const h of hosts) {
        for (const p of ports) {
          for (const path of paths) {
            for (const tail of tails) {
              const uri = `${s}://${h}${p}${path}${tail}`;
              let ours;
              try {
                ours = native.createRelayToken(uri, 'rule', 'key', 60, now);
              } catch (err) {
                assert.equal(err.code, 'ERR_INVALID_URL', uri);
                continue;
              }
              let theirs;
              try {
                theirs = reference.createRelayToken(uri, 'rule', 'key', 60, now);
              } catch {
                // hyco-ws throws on an empty path of a non-"slashed" scheme (sb://h); we
                // sign the namespace root instead.
                assert.ok(s === 'sb' && path === '', uri);
                continue;
              }
              assert.equal(ours, theirs, uri);
              compared++;
            }
          }
        }
      }
    }
    assert.ok(compared > 10000, `compared ${compared}`);
  });

  test('the URIs we refuse are ones url.parse mangles or that cannot be signed', () => {
    for (const uri of ['ns.example/$hc/x', 'ws:///$hc/x', 'ws://u:p@h/$hc/x', 'ws://h:99999/x', 'ws://h\\x/y', 'ws://a b/x']) {
      assert.throws(() => createRelayToken(uri, 'r', 'k'), { name: 'TypeError', code: 'ERR_INVALID_URL' }, uri);
    }
  });
});

describe('bad input', () => {
  const secret = 'S3cr3tK3y+/=';
  const good = {
    namespace: 'ns.example',
    path: 'hc',
    uri: 'wss://ns.example/$hc/hc',
    keyName: 'rule',
    key: secret
  };
  const badStrings = [
    [undefined, 'ERR_INVALID_ARG_TYPE', /Received undefined/],
    [null, 'ERR_INVALID_ARG_TYPE', /Received null/],
    [42, 'ERR_INVALID_ARG_TYPE', /Received type number/],
    [{}, 'ERR_INVALID_ARG_TYPE', /Received an instance of Object/],
    [Symbol('s'), 'ERR_INVALID_ARG_TYPE', /Received type symbol/],
    ['', 'ERR_INVALID_ARG_VALUE', /non-empty string/]
  ];
  const signatures = {
    createRelayBaseUri: ['namespace', 'path'],
    createRelayListenUri: ['namespace', 'path'],
    createRelaySendUri: ['namespace', 'path'],
    createRelayToken: ['uri', 'keyName', 'key'],
    appendRelayToken: ['uri', 'keyName', 'key']
  };

  for (const [fn, names] of Object.entries(signatures)) {
    test(`${fn}: each required argument missing, empty or not a string`, () => {
      names.forEach((name, i) => {
        for (const [value, code, received] of badStrings) {
          const args = names.map((n) => good[n]);
          args[i] = value;
          assert.throws(() => hyco[fn](...args), (err) => {
            assert.ok(err instanceof TypeError, `${fn} ${name}: ${err}`);
            assert.equal(err.code, code);
            assert.match(err.message, new RegExp(`"${name}"`));
            assert.match(err.message, received);
            assert.ok(!err.message.includes(secret));
            return true;
          });
        }
      });
    });
  }

  test('optional token and id must be non-empty strings when given', () => {
    for (const fn of [createRelayListenUri, createRelaySendUri]) {
      assert.throws(() => fn('ns', 'hc', 5), { name: 'TypeError', message: /"token"/ });
      assert.throws(() => fn('ns', 'hc', ''), { name: 'TypeError', message: /"token"/ });
      assert.throws(() => fn('ns', 'hc', null, {}), { name: 'TypeError', message: /"id"/ });
      assert.throws(() => fn('ns', 'hc', undefined, ''), { name: 'TypeError', message: /"id"/ });
    }
  });

  test('expirationSeconds: non-finite or negative is a RangeError, a non-number a TypeError', () => {
    for (const fn of [createRelayToken, appendRelayToken]) {
      for (const exp of [-1, -0.001, NaN, Infinity, -Infinity, 1e300]) {
        assert.throws(() => fn(good.uri, 'r', secret, exp), (err) => {
          assert.ok(err instanceof RangeError, String(exp));
          assert.equal(err.code, 'ERR_OUT_OF_RANGE');
          assert.match(err.message, /"expirationSeconds"/);
          assert.ok(!err.message.includes(secret));
          return true;
        });
      }
      for (const exp of ['60', {}, true, 10n]) {
        assert.throws(() => fn(good.uri, 'r', secret, exp), {
          name: 'TypeError',
          code: 'ERR_INVALID_ARG_TYPE',
          message: /"expirationSeconds"/
        });
      }
    }
  });

  test('an unparsable URI names the argument and never echoes its query', () => {
    for (const uri of ['not a uri', 'ws://', '://x', 'ws://h:port/', 'ws://[::1/x?sb-hc-token=T0KEN']) {
      assert.throws(() => createRelayToken(uri, 'r', secret), (err) => {
        assert.ok(err instanceof TypeError);
        assert.equal(err.code, 'ERR_INVALID_URL');
        assert.match(err.message, /"uri"/);
        assert.ok(!err.message.includes('T0KEN') && !err.message.includes(secret));
        return true;
      });
    }
  });

  test('parseRelayToken refuses malformed tokens without echoing the signature', () => {
    const sig = 'c2lnbmF0dXJl';
    for (const token of [
      'Bearer abc',
      'SharedAccessSignature ',
      `SharedAccessSignature sr=a&sig=${sig}&se=1`,
      `SharedAccessSignature sr=a&sig=${sig}&se=soon&skn=r`,
      `SharedAccessSignature sr=%E0%A4%A&sig=${sig}&se=1&skn=r`,
      `SharedAccessSignature sr=a&sig=${sig}&se=1&skn=r&se=2`,
      `SharedAccessSignature sr=a&sig=${sig}&se=99999999999999&skn=r`,
      `SharedAccessSignature ${sig}`
    ]) {
      assert.throws(() => parseRelayToken(token), (err) => {
        assert.ok(err instanceof TypeError, token);
        assert.equal(err.code, 'ERR_INVALID_TOKEN');
        assert.match(err.message, /"token"/);
        assert.ok(!err.message.includes(sig), err.message);
        return true;
      });
    }
    assert.throws(() => parseRelayToken(42), { name: 'TypeError', code: 'ERR_INVALID_ARG_TYPE' });
  });
});

describe('parseConnectionString', () => {
  const key = 'Abc123/+DEF456ghi789jkl012mno345pqr678stu90=';

  test('the Azure portal format, with and without EntityPath', () => {
    assert.deepEqual(
      parseConnectionString(
        `Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=${key}`
      ),
      {
        endpoint: 'sb://contoso.servicebus.windows.net/',
        namespace: 'contoso.servicebus.windows.net',
        entityPath: undefined,
        sharedAccessKeyName: 'RootManageSharedAccessKey',
        sharedAccessKey: key,
        sharedAccessSignature: undefined,
        operationTimeout: undefined
      }
    );
    const c = parseConnectionString(
      `Endpoint=sb://contoso.servicebus.windows.net/;SharedAccessKeyName=listen;SharedAccessKey=${key};EntityPath=hyco`
    );
    assert.equal(c.entityPath, 'hyco');
    // The namespace feeds the URI helpers directly.
    assert.equal(
      createRelayListenUri(c.namespace, c.entityPath),
      'wss://contoso.servicebus.windows.net:443/$hc/hyco?sb-hc-action=listen'
    );
  });

  test('case-insensitive keys, split at the first =, empty segments and spaces ignored', () => {
    const c = parseConnectionString(
      ` endpoint = sb://ns.example/ ;; SHAREDACCESSKEYNAME=r; sharedaccesskey=a=b==;entitypath=hc;`
    );
    assert.equal(c.namespace, 'ns.example');
    assert.equal(c.sharedAccessKey, 'a=b==');
    assert.equal(c.sharedAccessKeyName, 'r');
    assert.equal(c.entityPath, 'hc');
  });

  test('SharedAccessSignature instead of key name and key', () => {
    const token = createRelayToken('sb://ns.example/hc', 'r', 'k', 60);
    const c = parseConnectionString(`Endpoint=sb://ns.example/;SharedAccessSignature=${token};EntityPath=hc`);
    assert.equal(c.sharedAccessSignature, token);
    assert.equal(c.sharedAccessKey, undefined);
  });

  test('OperationTimeout as hh:mm:ss, d.hh:mm:ss and plain seconds, in milliseconds', () => {
    const t = (v) => parseConnectionString(`Endpoint=sb://ns/;OperationTimeout=${v}`).operationTimeout;
    assert.equal(t('00:01:00'), 60_000);
    assert.equal(t('01:00:00'), 3_600_000);
    assert.equal(t('1.00:00:30'), 86_430_000);
    assert.equal(t('00:00:02.5'), 2_500);
    assert.equal(t('45'), 45_000);
  });

  test('local endpoints keep their scheme and port for the URI helpers', () => {
    const c = parseConnectionString('Endpoint=ws://127.0.0.1:9000/;SharedAccessKeyName=r;SharedAccessKey=k');
    assert.equal(c.namespace, 'ws://127.0.0.1:9000');
    assert.equal(createRelaySendUri(c.namespace, 'hc'), 'ws://127.0.0.1:9000/$hc/hc?sb-hc-action=connect');
  });

  test('malformed strings give a TypeError that names the problem but no value', () => {
    const cases = [
      [`SharedAccessKeyName=r;SharedAccessKey=${key}`, /"Endpoint" is required/],
      [`Endpoint=contoso;SharedAccessKeyName=r;SharedAccessKey=${key}`, /absolute URI/],
      [`Endpoint=sb://ns/;SharedAccessKeyName=r;SharedAccessKey=${key};Colour=blue`, /unknown key "Colour"/],
      [`Endpoint=sb://ns/;SharedAccessKey=${key}`, /must be given together/],
      [`Endpoint=sb://ns/;SharedAccessKeyName=r`, /must be given together/],
      [`Endpoint=sb://ns/;SharedAccessSignature=x;SharedAccessKeyName=r;SharedAccessKey=${key}`, /cannot be combined/],
      [`Endpoint=sb://ns/;${key}`, /part 2 has an empty value/],
      [`Endpoint=sb://ns/;${key.slice(0, -1)}`, /part 2 has no '='/],
      [`Endpoint=sb://ns/;SharedAccessKeyName=r;SharedAccessKey=`, /"SharedAccessKey" is empty/],
      [`Endpoint=sb://ns/;OperationTimeout=soon`, /OperationTimeout/],
      [`Endpoint=sb://ns/;OperationTimeout=25:00:00`, /OperationTimeout/],
      [`Endpoint=ftp://ns/;SharedAccessKeyName=r;SharedAccessKey=${key}`, /scheme/],
      [`Endpoint=sb://ns/path;SharedAccessKeyName=r;SharedAccessKey=${key}`, /path/]
    ];
    for (const [str, message] of cases) {
      assert.throws(() => parseConnectionString(str), (err) => {
        assert.ok(err instanceof TypeError, str);
        assert.equal(err.code, 'ERR_INVALID_CONNECTION_STRING');
        assert.match(err.message, /"connectionString"/);
        assert.match(err.message, message);
        assert.ok(!err.message.includes(key), err.message);
        return true;
      });
    }
    for (const bad of [undefined, '', 5]) {
      assert.throws(() => parseConnectionString(bad), { name: 'TypeError', message: /"connectionString"/ });
    }
  });
});

describe('the module export', () => {
  test('is ws\'s WebSocket with the relay API on top, and leaves ws untouched', async () => {
    const ws = require('ws');
    const cjs = require('hyco-ws-rs');
    assert.equal(cjs, hyco);
    assert.equal(cjs.OPEN, ws.OPEN);
    assert.equal(cjs.WebSocket, ws);
    assert.equal(cjs.WebSocketServer, ws.WebSocketServer);
    assert.equal(cjs.Server, ws.Server);
    assert.equal(cjs.createWebSocketStream, ws.createWebSocketStream);
    for (const name of ['createRelayToken', 'createRelayListenUri', 'parseConnectionString']) {
      assert.equal(typeof cjs[name], 'function');
      assert.ok(!(name in ws), `${name} leaked onto ws`);
      assert.ok(Object.keys(cjs).includes(name));
    }
    cjs.userAdded = 1;
    assert.equal(ws.userAdded, undefined);
    delete cjs.userAdded;
    const esm = await import('hyco-ws-rs');
    for (const name of ['WebSocket', 'WebSocketServer', 'createWebSocketStream', 'extension', 'PerMessageDeflate', 'Receiver', 'Sender', 'subprotocol']) {
      assert.equal(esm[name], ws[name], name);
    }
    assert.equal(esm.default, cjs);
  });
});
