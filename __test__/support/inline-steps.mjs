// What the inline-read tests count: the sockets this JS thread reads itself, and this
// process's open descriptors (each read inline holds a duplicate of its socket's).
import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const { native } = require('../../lib/native-events.js');

/**
 * Sockets (a listener's control channel among them) this thread reads inline now.
 *
 * @returns {number}
 */
export function watched() {
  return native.liveCounts().watched;
}

/**
 * Open descriptors of this process (Linux).
 *
 * @returns {number}
 */
export function openFds() {
  return fs.readdirSync('/proc/self/fd').length;
}
