'use strict';

const path = require('path');

/**
 * The platform suffix of the addon's file and package names, in napi-rs's naming:
 * `linux-x64-gnu`, `linux-x64-musl`, `darwin-arm64`, `win32-x64-msvc`, ...
 *
 * @return {String} The suffix
 * @private
 */
function platformSuffix() {
  const { platform, arch } = process;
  if (platform === 'linux') {
    const report = process.report && process.report.getReport();
    const glibc = report && report.header && report.header.glibcVersionRuntime;
    return `linux-${arch}-${glibc ? 'gnu' : 'musl'}`;
  }
  if (platform === 'win32') return `win32-${arch}-msvc`;
  return `${platform}-${arch}`;
}

/**
 * The addon's file name for this platform.
 *
 * @return {String} The file name
 * @private
 */
function binaryName() {
  return `hyco-ws-rs.${platformSuffix()}.node`;
}

let cached;

/**
 * Loads the native addon: first a binary built in the package root (from source, by
 * `npm install`), then the prebuilt per-platform package `hyco-ws-rs-<suffix>`.
 *
 * @return {Object} The addon's exports
 * @throws {Error} With code `ERR_HYCO_NATIVE_MISSING` when neither can be loaded
 * @private
 */
function loadNative() {
  if (cached) return cached;
  const local = path.join(__dirname, '..', binaryName());
  const packaged = `hyco-ws-rs-${platformSuffix()}`;
  const failures = [];
  for (const candidate of [local, packaged]) {
    try {
      cached = require(candidate);
      return cached;
    } catch (err) {
      failures.push(`${candidate}: ${err.message.split('\n')[0]}`);
    }
  }
  const err = new Error(
    `hyco-ws-rs: no native binary for ${platformSuffix()}. Build it from source with ` +
      '"npm run build" (needs Rust), or install a release that ships a prebuilt binary.\n' +
      failures.join('\n')
  );
  err.code = 'ERR_HYCO_NATIVE_MISSING';
  throw err;
}

module.exports = { binaryName, loadNative, platformSuffix };
