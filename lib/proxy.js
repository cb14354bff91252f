'use strict';

/**
 * The `proxy` option of `relayedConnect` and `RelayedServer`: the proxy settings handed to
 * the native side, which chooses per connection (by the address's scheme and `NO_PROXY`).
 *
 * - a URL (string or `URL`), `http://[user:password@]host:port` or `https://…`: that proxy
 *   for every address, still leaving out the hosts of `NO_PROXY`/`no_proxy` (as curl's
 *   `--proxy` does);
 * - `false`: no proxy, whatever the environment says;
 * - absent: the environment, read now (so each object keeps what it was made with):
 *   `http_proxy`/`HTTP_PROXY` for `ws:` addresses, `https_proxy`/`HTTPS_PROXY` for `wss:`
 *   ones, `no_proxy`/`NO_PROXY`; the lower-case name wins when both are set, as in curl.
 *
 * `relayedFetch` takes the same option: it asks `proxyFor()` which proxy a request uses.
 */

const { loadNative } = require('./native');
const { codedError, describeType } = require('./validation');

const native = loadNative();

/**
 * An environment variable by its lower-case name, else its upper-case one; an empty one
 * counts as unset (so an empty `no_proxy` leaves `NO_PROXY` in force, as in curl).
 *
 * @param {Object} env The environment
 * @param {String} name The lower-case name
 * @return {(String|undefined)} The value
 * @private
 */
function envValue(env, name) {
  const lower = present(env[name]);
  return lower !== undefined ? lower : present(env[name.toUpperCase()]);
}

/**
 * A value of the environment as the native side takes it: a non-empty string, or
 * `undefined`.
 *
 * @param {(String|undefined)} value The value
 * @return {(String|undefined)} The value, or `undefined` when empty
 * @private
 */
function present(value) {
  return typeof value === 'string' && value.trim() !== '' ? value : undefined;
}

/**
 * Reads the `proxy` option.
 *
 * @param {*} value The option: `undefined` (the environment), `false` (none), or a proxy
 *     URL (a string or a `URL`)
 * @param {Object} [env=process.env] The environment to read when the option is absent,
 *     and for `NO_PROXY`
 * @return {(Object|undefined)} The native settings `{ http, https, noProxy, fromEnv }`, or
 *     `undefined` to connect directly (the native side takes no `null` for an object)
 * @throws {TypeError} When the option is neither a proxy URL nor `false` (the message
 *     never repeats the URL, which may hold a password)
 * @private
 */
function proxyOption(value, env = process.env) {
  if (value === false) return undefined;
  const noProxy = present(envValue(env, 'no_proxy'));
  if (value === undefined) {
    const http = present(envValue(env, 'http_proxy'));
    const https = present(envValue(env, 'https_proxy'));
    if (http === undefined && https === undefined) return undefined;
    return { http, https, noProxy, fromEnv: true };
  }
  const url = value instanceof URL ? value.href : value;
  if (typeof url !== 'string') {
    throw codedError(
      TypeError,
      'ERR_INVALID_ARG_TYPE',
      `The "options.proxy" property must be a proxy URL (a string or a URL) or false. Received ${describeType(value)}`
    );
  }
  const problem = native.checkProxyUrl(url);
  if (problem !== null && problem !== undefined) {
    throw codedError(TypeError, 'ERR_INVALID_ARG_VALUE', `The "options.proxy" property ${problem}`);
  }
  return { http: url, https: url, noProxy, fromEnv: false };
}

/**
 * The proxy for a connection to `url`, by settings from `proxyOption()`: the native side
 * chooses, by the rules of every other connection (the scheme's proxy, `NO_PROXY`), so
 * that the package reads proxy settings one way only.
 *
 * @param {(Object|undefined)} settings What `proxyOption()` returned
 * @param {URL} url Where the connection goes (`http:`/`ws:`, or `https:`/`wss:`)
 * @return {?Object} `null` to connect directly, else the proxy: `url` (as messages name
 *     it, without credentials), `tls`, `host` (IPv6 without brackets), `port`, and
 *     `authorization` (the `Proxy-Authorization` value, if any: never to be shown)
 * @throws {Error} `ERR_PROXY_INVALID` when the setting that applies is not a proxy URL
 *     (an environment variable; the message never repeats it)
 * @private
 */
function proxyFor(settings, url) {
  if (settings === undefined) return null;
  const tls = url.protocol === 'https:' || url.protocol === 'wss:';
  const port = url.port !== '' ? Number(url.port) : tls ? 443 : 80;
  const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname;
  const choice = native.selectProxy(settings, tls, host, port);
  if (choice.invalid !== undefined && choice.invalid !== null) {
    throw codedError(Error, 'ERR_PROXY_INVALID', choice.invalid);
  }
  return choice.proxy === undefined ? null : choice.proxy;
}

module.exports = { proxyFor, proxyOption };
