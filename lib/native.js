'use strict';

/**
 * Finds and loads the native addon, in napi-rs's layout: first a binary built from source in
 * the package root (`hyco-ws-rs.<platform>.node`, what `npm install` builds where no prebuilt
 * binary fits), then the prebuilt per-platform package (`hyco-ws-rs-<platform>`), which a
 * release lists in its `optionalDependencies` so that npm installs only the one that fits.
 */

const fs = require('fs');
const path = require('path');

const { name: PACKAGE, version: VERSION } = require('../package.json');

/**
 * The platforms that a release ships prebuilt, in napi-rs's names, each with the Rust target
 * it is built for. `scripts/prepare-release.js` lists one optional dependency per entry and
 * `.github/workflows/release.yml` builds and tests each.
 */
const PREBUILT = Object.freeze({
  'linux-x64-gnu': 'x86_64-unknown-linux-gnu',
  'linux-arm64-gnu': 'aarch64-unknown-linux-gnu',
  'linux-x64-musl': 'x86_64-unknown-linux-musl',
  'linux-arm64-musl': 'aarch64-unknown-linux-musl',
  'darwin-x64': 'x86_64-apple-darwin',
  'darwin-arm64': 'aarch64-apple-darwin',
  'win32-x64-msvc': 'x86_64-pc-windows-msvc'
});

let suffix;
let cached;

/**
 * Which C library this Linux runs on: glibc's `ldd` is a script that never names musl, while
 * musl's runs its loader (`ld-musl-*`). Where there is no `ldd`, Node's own report says
 * whether Node was linked against glibc.
 *
 * @return {String} `gnu` or `musl`
 * @private
 */
function linuxLibc() {
  try {
    return fs.readFileSync('/usr/bin/ldd', 'latin1').includes('musl') ? 'musl' : 'gnu';
  } catch {
    const report = process.report && process.report.getReport();
    const glibc = report && report.header && report.header.glibcVersionRuntime;
    return glibc ? 'gnu' : 'musl';
  }
}

/**
 * This machine's platform in napi-rs's naming: `linux-x64-gnu`, `linux-arm64-musl`,
 * `darwin-arm64`, `win32-x64-msvc`, ...
 *
 * @return {String} The platform
 * @private
 */
function platformSuffix() {
  if (suffix) return suffix;
  const { platform, arch } = process;
  if (platform === 'linux') suffix = `linux-${arch}-${linuxLibc()}`;
  else if (platform === 'win32') suffix = `win32-${arch}-msvc`;
  else suffix = `${platform}-${arch}`;
  return suffix;
}

/**
 * The addon's file name for a platform.
 *
 * @param {String} [platform] The platform, this machine's by default
 * @return {String} The file name, e.g. `hyco-ws-rs.linux-x64-gnu.node`
 * @private
 */
function binaryName(platform = platformSuffix()) {
  return `${PACKAGE}.${platform}.node`;
}

/**
 * The name of the package that carries the prebuilt addon for a platform.
 *
 * @param {String} [platform] The platform, this machine's by default
 * @return {String} The package name, e.g. `hyco-ws-rs-linux-x64-gnu`
 * @private
 */
function packageName(platform = platformSuffix()) {
  return `${PACKAGE}-${platform}`;
}

/**
 * The first line of an error's message (a failed `dlopen` repeats the path below it).
 *
 * @param {Error} err The error
 * @return {String} The line
 * @private
 */
function firstLine(err) {
  return String(err && err.message).split('\n')[0];
}

/**
 * The error for a platform whose addon could not be loaded: it names the platform and the
 * package that should have carried the binary, and says how to get one.
 *
 * @param {String} platform The platform, e.g. `linux-x64-gnu`
 * @param {Array<{ from: String, problem: String }>} attempts Where the addon was looked for,
 *     and what went wrong there
 * @param {Boolean} installed Whether the platform package is installed (but failed)
 * @return {Error} The error, with `code` `ERR_HYCO_NATIVE_MISSING`, `platform` and
 *     `packageName` (null where no package is published for the platform)
 * @private
 */
function missingAddonError(platform, attempts, installed) {
  const pkg = packageName(platform);
  const published = Object.prototype.hasOwnProperty.call(PREBUILT, platform);
  let why;
  if (!published) {
    why =
      `no prebuilt binary is published for ${platform} (there are for ` +
      `${Object.keys(PREBUILT).join(', ')}), and none was built from source.`;
  } else if (installed) {
    why = `the prebuilt binary in ${pkg} could not be loaded (see below).`;
  } else {
    why =
      `its prebuilt binary comes in the optional dependency ${pkg}, which is not installed. ` +
      'npm leaves optional dependencies out under --omit=optional (--no-optional, or ' +
      'omit=optional in .npmrc), and may when package-lock.json was written on another ' +
      'platform (npm/cli#4828): install again without that option, or remove node_modules ' +
      `and package-lock.json and run "npm install" (or add it yourself: "npm install ${pkg}@${VERSION}").`;
  }
  const err = new Error(
    `${PACKAGE}: no native addon for ${platform}: ${why}\n` +
      `To build it from source instead, install Rust (https://rustup.rs) and a C compiler, then run "npm rebuild ${PACKAGE}" ` +
      '(with install scripts off, as with ignore-scripts in .npmrc: "npm rebuild ' +
      `${PACKAGE} --ignore-scripts=false"; pnpm runs a package's build only once it is listed in onlyBuiltDependencies).\n` +
      `Looked in:\n${attempts.map((a) => `  ${a.from}: ${a.problem}`).join('\n')}`
  );
  err.code = 'ERR_HYCO_NATIVE_MISSING';
  err.platform = platform;
  err.packageName = published ? pkg : null;
  return err;
}

/**
 * Loads the native addon: the binary built in the package root if there is one, else the
 * one in the platform package, which must be of this package's version.
 *
 * @return {Object} The addon's exports
 * @throws {Error} With code `ERR_HYCO_NATIVE_MISSING` (see `missingAddonError`) when
 *     neither can be loaded
 * @private
 */
function loadNative() {
  if (cached) return cached;
  const platform = platformSuffix();
  const attempts = [];
  const local = path.join(__dirname, '..', binaryName(platform));
  if (fs.existsSync(local)) {
    try {
      cached = require(local);
      return cached;
    } catch (err) {
      attempts.push({ from: local, problem: firstLine(err) });
    }
  } else {
    attempts.push({ from: local, problem: 'not built' });
  }

  const pkg = packageName(platform);
  let manifest;
  try {
    manifest = require.resolve(`${pkg}/package.json`);
  } catch {
    attempts.push({ from: pkg, problem: 'not installed' });
    throw missingAddonError(platform, attempts, false);
  }
  const { version } = JSON.parse(fs.readFileSync(manifest, 'utf8'));
  if (version !== VERSION) {
    attempts.push({ from: path.dirname(manifest), problem: `version ${version}, where ${PACKAGE} ${VERSION} needs ${VERSION}` });
    throw missingAddonError(platform, attempts, true);
  }
  try {
    cached = require(pkg);
    return cached;
  } catch (err) {
    attempts.push({ from: path.dirname(manifest), problem: firstLine(err) });
    throw missingAddonError(platform, attempts, true);
  }
}

module.exports = { PREBUILT, binaryName, loadNative, missingAddonError, packageName, platformSuffix };
