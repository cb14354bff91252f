'use strict';

/**
 * Where tokens come from: a fixed string, a token function, or an Entra ID credential (the
 * `TokenCredential` contract of `@azure/core-auth`, duck-typed: any object with
 * `getToken(scopes)`). Whatever the source, a token comes with what is known of its life:
 * a function or a credential may state its expiry (`expiresOnTimestamp`) and when to renew
 * it (`refreshAfterTimestamp`), which renewal then follows.
 */

const { codedError, describeType, invalidOption } = require('./validation');

/** The scope Microsoft's .NET and Java Relay clients ask for. */
const DEFAULT_SCOPE = 'https://relay.azure.net//.default';

/**
 * Checks the `credential` and `scope` options.
 *
 * @param {Object} options The options
 * @return {?{credential: Object, scope: String}} The credential and its scope, or `null`
 * @private
 */
function credentialOption(options) {
  const { credential, scope } = options;
  if (credential === undefined || credential === null) {
    if (scope !== undefined) invalidOption('scope', 'given only with a credential', scope);
    return null;
  }
  if (typeof credential !== 'object' && typeof credential !== 'function') {
    invalidOption('credential', 'an object with a getToken(scopes) method (a TokenCredential)', credential);
  }
  if (typeof credential.getToken !== 'function') {
    invalidOption('credential', 'an object with a getToken(scopes) method (a TokenCredential)', credential);
  }
  if (scope !== undefined && (typeof scope !== 'string' || scope === '')) {
    invalidOption('scope', 'a non-empty string', scope);
  }
  return { credential, scope: scope === undefined ? DEFAULT_SCOPE : scope };
}

/**
 * A token as a source gave it: a non-empty string, or an object with one in `token` and,
 * optionally, `expiresOnTimestamp` and `refreshAfterTimestamp` (Unix milliseconds).
 *
 * @param {*} result What the function or credential returned (resolved)
 * @param {String} what The source, for the error message
 * @return {{token: String, expiresAt: (Number|undefined), refreshAt: (Number|undefined)}}
 *     The token and its times
 * @throws {TypeError} When it is neither
 * @private
 */
function readToken(result, what) {
  if (typeof result === 'string' && result !== '') {
    return { token: result, expiresAt: undefined, refreshAt: undefined };
  }
  if (result !== null && typeof result === 'object' && typeof result.token === 'string' && result.token !== '') {
    const time = (name) => {
      const v = result[name];
      if (v === undefined || v === null) return undefined;
      if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
        throw new TypeError(`${what} returned a ${name} that is not a positive number of milliseconds`);
      }
      return v;
    };
    return { token: result.token, expiresAt: time('expiresOnTimestamp'), refreshAt: time('refreshAfterTimestamp') };
  }
  throw new TypeError(`${what} returned ${describeType(result)} instead of a token`);
}

/**
 * A function that gets a token from a source, checked.
 *
 * @param {(String|Function|null|undefined)} token The `token` argument or option
 * @param {?{credential: Object, scope: String}} credential From `credentialOption`
 * @return {?Function} `(options) => Promise<{token, expiresAt, refreshAt}>` (`options`
 *     goes to a credential's `getToken`, e.g. `{ abortSignal }`), or `null` without a
 *     source
 * @private
 */
function tokenSource(token, credential) {
  if (credential !== null) {
    if (token !== undefined && token !== null) {
      throw codedError(
        TypeError,
        'ERR_INVALID_ARG_VALUE',
        'Give either a token or a credential, not both'
      );
    }
    return async (options) => {
      const result = await credential.credential.getToken(credential.scope, options);
      if (result === null || result === undefined) {
        throw new Error(`the credential returned no token for ${credential.scope}`);
      }
      return readToken(result, 'the credential');
    };
  }
  if (typeof token === 'function') return async () => readToken(await token(), 'the token provider');
  if (typeof token === 'string' && token !== '') {
    const fixed = readToken(token, 'token');
    return async () => fixed;
  }
  return null;
}

/**
 * What a token function or credential threw or rejected with, as text for an error message:
 * its `message`, else its string form, else its type (a value such as
 * `Object.create(null)` has no string form, and `String()` of it throws).
 *
 * @param {*} err What was thrown
 * @return {String} The text
 */
function failureMessage(err) {
  try {
    if (err !== null && typeof err === 'object' && typeof err.message === 'string') return err.message;
    return String(err);
  } catch {
    try {
      return describeType(err);
    } catch {
      // A proxy whose every trap throws.
      return 'a value that cannot be described';
    }
  }
}

/**
 * The token from a token function or a credential (`source`, from `tokenSource`), waited
 * for as `relayedConnect` and `relayedFetch` wait: the source's failures are
 * `ERR_TOKEN_PROVIDER`, no answer within `ms` rejects with `timeout`, and `signal` ends the
 * wait with its reason. A credential's `getToken` gets an `abortSignal` that aborts when
 * the wait ends unanswered, by `signal` or by the timeout, so that a credential that hangs
 * (a managed-identity endpoint that does not answer) can let go of its request. The timer
 * is cleared however the wait ends, so that nothing keeps the process alive after it.
 *
 * @param {Function} source The token source
 * @param {Number} ms The time allowed, at most 2^31 - 1 ms
 * @param {Error} timeout The error for a source that does not answer in time
 * @param {?AbortSignal} signal Ends the wait
 * @return {Promise<String>} The token
 * @private
 */
function awaitToken(source, ms, timeout, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(signal.reason);
      return;
    }
    const asked = new AbortController();
    const done = (settle) => (value) => {
      clearTimeout(timer);
      if (signal) signal.removeEventListener('abort', onAbort);
      settle(value);
    };
    const giveUp = (reason) => {
      reject(reason);
      asked.abort(reason);
    };
    const onAbort = done(() => giveUp(signal.reason));
    const timer = setTimeout(
      done(() => giveUp(timeout)),
      ms
    );
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
    source({ abortSignal: asked.signal }).then(
      done(({ token }) => resolve(token)),
      done((err) => reject(codedError(Error, 'ERR_TOKEN_PROVIDER', `The token provider failed: ${failureMessage(err)}`)))
    );
  });
}

/** Why a token that a header cannot carry is refused (a provider's failure message). */
const TOKEN_NOT_A_HEADER = 'the token has characters a header cannot carry';

/**
 * The error for a token with characters a header cannot carry, without quoting it: the
 * `TypeError` Node.js throws for such a header, or the token provider's failure.
 *
 * @param {Boolean} fromProvider The token came from a function or a credential
 * @return {Error} The error
 * @private
 */
function tokenCharsError(fromProvider) {
  return fromProvider
    ? codedError(Error, 'ERR_TOKEN_PROVIDER', `The token provider failed: ${TOKEN_NOT_A_HEADER}`)
    : codedError(TypeError, 'ERR_INVALID_CHAR', 'Invalid character in header content ["ServiceBusAuthorization"]');
}

/**
 * Whether a `token` argument or option has a usable form: none (`undefined`, `null`), a
 * function, or a non-empty string.
 *
 * @param {*} token The argument
 * @return {Boolean} Whether it has
 * @private
 */
function isTokenArgument(token) {
  return token === undefined || token === null || typeof token === 'function' || (typeof token === 'string' && token !== '');
}

module.exports = {
  DEFAULT_SCOPE,
  TOKEN_NOT_A_HEADER,
  awaitToken,
  credentialOption,
  failureMessage,
  isTokenArgument,
  readToken,
  tokenCharsError,
  tokenSource
};
