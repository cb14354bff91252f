'use strict';

/**
 * A read-through view of a module's export with more properties on top, for the package's
 * entry points: `require('hyco-ws-rs')` is ws's `WebSocket` class and `hyco-ws-rs/https` is
 * Node's `https` module, each with the relay API, as hyco-ws and hyco-https made them, but
 * without writing onto objects that every other user of `ws` or `https` in the process
 * shares.
 */

const has = (obj, key) => Object.prototype.hasOwnProperty.call(obj, key);

/**
 * A view of `target` where the keys of `overlay` win. Assignments and definitions land in
 * the overlay, never on `target`.
 *
 * @param {(Object|Function)} target The module's export underneath
 * @param {Object} overlay What the package adds
 * @return {Proxy} The view
 */
function overlayOn(target, overlay) {
  return new Proxy(target, {
    get(t, key, receiver) {
      return has(overlay, key) ? overlay[key] : Reflect.get(t, key, receiver);
    },
    has(t, key) {
      return has(overlay, key) || Reflect.has(t, key);
    },
    set(t, key, value) {
      overlay[key] = value;
      return true;
    },
    defineProperty(t, key, descriptor) {
      return Reflect.defineProperty(overlay, key, { ...descriptor, configurable: true });
    },
    deleteProperty(t, key) {
      return delete overlay[key];
    },
    ownKeys(t) {
      return [...new Set([...Reflect.ownKeys(t), ...Reflect.ownKeys(overlay)])];
    },
    getOwnPropertyDescriptor(t, key) {
      if (has(overlay, key)) {
        return { ...Reflect.getOwnPropertyDescriptor(overlay, key), configurable: true };
      }
      return Reflect.getOwnPropertyDescriptor(t, key);
    }
  });
}

module.exports = { overlayOn };
