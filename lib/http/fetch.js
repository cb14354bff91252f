'use strict';

/**
 * `relayedFetch`: an HTTP request through the relay with Node's own `fetch`, plus what the
 * relay needs: the token in `ServiceBusAuthorization`, a tracking id, the service's own
 * refusals turned into errors, and the proxy of the `proxy` option or the environment.
 */

const { appendParam, redact } = require('../connect');
const { proxyFor, proxyOption } = require('../proxy');
const { fetchThroughProxy } = require('./proxy-fetch');
const { followRedirects } = require('./redirects');
const { awaitToken, credentialOption, isTokenArgument, tokenCharsError, tokenSource } = require('../tokens');
const { codedError, describeType, invalidOption, isHeaderValue, validateOptionsObject } = require('../validation');

// Time allowed for a token function or a credential: the listener's own wait for one.
const TOKEN_TIMEOUT_MS = 30000;

/**
 * The error for a token source that does not answer within `TOKEN_TIMEOUT_MS`.
 *
 * @return {Error} The error
 * @private
 */
function tokenTimeout() {
  return codedError(Error, 'ETIMEDOUT', `The token provider did not answer within ${TOKEN_TIMEOUT_MS} ms`);
}

/**
 * Sends a request to a Hybrid Connection through the relay, with Node's `fetch`.
 *
 * Through an HTTP proxy when one applies, as for every connection of the package (the
 * `proxy` option, else `HTTPS_PROXY`/`HTTP_PROXY` by the address's scheme, less `NO_PROXY`):
 * then with the `undici` package's `fetch` in a `CONNECT` tunnel, and the response is still
 * Node's `Response`. A `dispatcher` of the caller's wins: it is used, and no proxy is.
 *
 * The relay's own answers (no listener, a bad token, no response in time) come without the
 * `Via` header that marks a listener's response: those with an error status reject with an
 * `Error` whose `code` is `ERR_RELAY_REFUSED`, with `statusCode` and `statusDescription`.
 * A listener's responses, whatever their status, resolve as fetch's `Response`.
 *
 * @param {(String|URL)} address The address, from `createRelayHttpsUri()`
 * @param {Object} [init] fetch's options, plus:
 * @param {(String|Function|null)} [init.token] A SAS token (or Entra ID token), or a
 *     function returning one or a Promise of one; sent as `ServiceBusAuthorization`
 * @param {Object} [init.credential] An Entra ID `TokenCredential`, instead of `token`
 * @param {String} [init.scope='https://relay.azure.net//.default'] Its scope
 * @param {String} [init.id] A tracking id, sent as `sb-hc-id` (unless the address has one)
 * @param {(String|URL|Boolean)} [init.proxy] An HTTP proxy URL, or `false` for none; by
 *     default the environment's proxy variables, read at each call
 * @return {Promise<Response>} The listener's response
 * @public
 */
async function relayedFetch(address, init = {}) {
  validateOptionsObject(init, 'init');
  let url;
  if (typeof address === 'string' || address instanceof URL) {
    try {
      url = new URL(address);
    } catch {
      throw new SyntaxError(`Invalid URL: ${redact(String(address))}`);
    }
  } else {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "address" argument must be of type string or an instance of URL. Received ${describeType(address)}`
    );
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') {
    throw new SyntaxError('The URL\'s protocol must be one of "http:" or "https:"');
  }
  const { token, id, credential, scope, proxy, ...rest } = init;
  const settings = proxyOption(proxy);
  const entra = credentialOption({ credential, scope });
  if (entra !== null && token !== undefined && token !== null) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', 'Give either a token or a credential, not both');
  }
  if (id !== undefined) {
    if (typeof id !== 'string' || id === '') invalidOption('id', 'a non-empty string', id);
    if (!url.searchParams.has('sb-hc-id')) appendParam(url, 'sb-hc-id', id);
  }
  // Before the token: a request that cannot be sent asks for none.
  if (rest.dispatcher === undefined) proxyFor(settings, url);
  const headers = new Headers(rest.headers);
  if (!isTokenArgument(token)) invalidOption('token', 'a non-empty string, or a function that returns one', token);
  const source = tokenSource(token, entra);
  const value = source === null ? null : await awaitToken(source, TOKEN_TIMEOUT_MS, tokenTimeout(), rest.signal);
  if (value !== null) {
    // Checked here, as relayedConnect checks it: fetch's own error would quote the token.
    if (!isHeaderValue(value)) throw tokenCharsError(typeof token !== 'string');
    headers.set('ServiceBusAuthorization', value);
  }
  const options = { ...rest, headers };
  const send = (to, opts) => {
    const via = opts.dispatcher === undefined ? proxyFor(settings, to) : null;
    return via === null ? fetch(to, opts) : fetchThroughProxy(to, opts, via);
  };
  // fetch would follow a redirect with the token to any host: followed here instead.
  const follow = rest.redirect === undefined || rest.redirect === 'follow';
  const res = follow ? await followRedirects(url, options, send) : await send(url, options);
  // Only the relay's own answers: a redirect may have led elsewhere.
  if (res.status >= 400 && !res.headers.has('via') && new URL(res.url || url.href).origin === url.origin) {
    // The relay answered, not the listener. The body says the same as the status line.
    await res.arrayBuffer().catch(() => {});
    const err = codedError(
      Error,
      'ERR_RELAY_REFUSED',
      `The relay refused the request: ${res.status} ${res.statusText}`.trim()
    );
    err.statusCode = res.status;
    err.statusDescription = res.statusText;
    throw err;
  }
  return res;
}

module.exports = { relayedFetch };
