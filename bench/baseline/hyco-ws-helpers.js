'use strict';

/**
 * hyco-ws 1.0.5's token helpers in plain JavaScript on `node:crypto` and Node's legacy
 * `url.parse`, with moment's arithmetic done on `Date` (same results). It is the baseline
 * of `bench/helpers.js` and the reference of the differential test in
 * `__test__/helpers.test.mjs`. It is not part of the package.
 */

const crypto = require('crypto');
const url = require('url');

/**
 * hyco-ws's `createRelayToken`, at a given clock.
 *
 * @param {String} uri The address
 * @param {String} keyName The SAS rule's name
 * @param {String} key The SAS rule's key
 * @param {Number} [expirationSeconds=3600] Lifetime; falsy means 3600
 * @param {Number} [nowMs=Date.now()] The clock
 * @return {String} The token
 */
function createRelayToken(uri, keyName, key, expirationSeconds, nowMs = Date.now()) {
  const parsed = url.parse(uri);
  parsed.protocol = 'http';
  parsed.search = parsed.hash = parsed.port = null;
  parsed.pathname = parsed.pathname.replace('$hc/', '');
  const resource = url.format(parsed);
  if (!expirationSeconds) expirationSeconds = 3600;
  const expiry = Math.floor(new Date(nowMs + expirationSeconds * 1000).valueOf() / 1000);
  const encoded = encodeURIComponent(resource);
  const signature = crypto
    .createHmac('sha256', key)
    .update(`${encoded}\n${expiry}`)
    .digest('base64');
  return (
    `SharedAccessSignature sr=${encoded}&sig=${encodeURIComponent(signature)}` +
    `&se=${expiry}&skn=${keyName}`
  );
}

module.exports = { createRelayToken };
