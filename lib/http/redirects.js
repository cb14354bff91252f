'use strict';

/**
 * Redirects for `relayedFetch`, followed here rather than by `fetch`: `fetch` drops the
 * standard credentials (`Authorization`, `Cookie`, …) when a redirect leaves the origin, but
 * the relay's token travels in `ServiceBusAuthorization`, which it would carry on to any
 * host a listener names.
 */

const REDIRECTS = new Set([301, 302, 303, 307, 308]);

// fetch's own limit.
const MAX_REDIRECTS = 20;

// What a redirect to another origin leaves behind: the relay's token, and what fetch drops
// itself (Node's: Authorization, Proxy-Authorization, Cookie).
const CREDENTIALS = ['servicebusauthorization', 'authorization', 'proxy-authorization', 'cookie'];

// What goes with a body a redirect turns into a GET.
const BODY_HEADERS = ['content-encoding', 'content-language', 'content-location', 'content-type', 'content-length'];

/**
 * fetch's error for a redirect it cannot follow.
 *
 * @param {String} why The cause's message
 * @return {TypeError} The error
 * @private
 */
function redirectFailed(why) {
  return new TypeError('fetch failed', { cause: new Error(why) });
}

/**
 * Whether a request body can be sent again (fetch refuses to resend a stream's).
 *
 * @param {*} body The `body` option
 * @return {Boolean} Whether it can
 * @private
 */
function canResend(body) {
  return (
    body === undefined ||
    body === null ||
    typeof body === 'string' ||
    body instanceof ArrayBuffer ||
    ArrayBuffer.isView(body) ||
    body instanceof URLSearchParams ||
    body instanceof Blob ||
    body instanceof FormData
  );
}

/**
 * Lets a redirect's body go without reading it.
 *
 * @param {Response} res The redirect
 * @return {Promise<void>}
 * @private
 */
async function discard(res) {
  if (res.body !== null) await res.body.cancel().catch(() => {});
}

/**
 * Sends a request with `send` and follows its redirects as fetch's `redirect: 'follow'`
 * does (at most 20; a 303, or a 301/302 to a POST, becomes a GET without its body), except
 * that the credentials stay with the origin they were given for: once a redirect leaves
 * it, `ServiceBusAuthorization`, `Authorization`, `Proxy-Authorization` and `Cookie` are
 * not sent again.
 *
 * @param {URL} url The address
 * @param {Object} init fetch's options, with a `Headers` object as `headers`
 * @param {function(URL, Object): Promise<Response>} send Sends one request, not following
 *     redirects (it is given `redirect: 'manual'`)
 * @return {Promise<Response>} The last response
 * @private
 */
async function followRedirects(url, init, send) {
  let current = url;
  let options = { ...init, redirect: 'manual' };
  for (let hops = 0; ; hops++) {
    const res = await send(current, options);
    const location = REDIRECTS.has(res.status) ? res.headers.get('location') : null;
    if (location === null) return res;
    await discard(res);
    if (hops === MAX_REDIRECTS) throw redirectFailed('redirect count exceeded');
    let next;
    try {
      next = new URL(location, current);
    } catch {
      throw redirectFailed('invalid redirect location');
    }
    if (next.protocol !== 'http:' && next.protocol !== 'https:') throw redirectFailed('URL scheme must be a HTTP(S) scheme');
    const headers = new Headers(options.headers);
    const method = (options.method || 'GET').toUpperCase();
    if ((res.status === 303 && method !== 'GET' && method !== 'HEAD') || (res.status <= 302 && method === 'POST')) {
      for (const name of BODY_HEADERS) headers.delete(name);
      options = { ...options, method: 'GET', body: null, headers };
    } else if (!canResend(options.body)) {
      throw redirectFailed('the request body is a stream, which cannot be sent again');
    } else {
      options = { ...options, headers };
    }
    if (next.origin !== current.origin) for (const name of CREDENTIALS) headers.delete(name);
    current = next;
  }
}

module.exports = { followRedirects };
