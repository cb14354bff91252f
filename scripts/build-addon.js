'use strict';

/**
 * Builds the native addon from source with cargo and puts it where `lib/native.js` looks
 * for it: `hyco-ws-rs.<platform>-<arch>[-<libc>].node` in the package root.
 *
 * Usage: node scripts/build-addon.js [--release|--debug] [--if-missing]
 *
 * `--if-missing` (used by the npm `install` script) does nothing when a binary can already be
 * loaded, e.g. from the prebuilt platform package that npm installed as an optional
 * dependency, so users without Rust are not asked to build: building from source is only the
 * fallback for platforms without a prebuilt package.
 */

const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const { binaryName, loadNative } = require('../lib/native');

const root = path.join(__dirname, '..');
const args = new Set(process.argv.slice(2));
const release = !args.has('--debug');

// Why no binary could be loaded, when asked to build only if none can: printed if cargo is
// missing too, since it names the platform package that should have been installed.
let missing = null;
if (args.has('--if-missing')) {
  try {
    loadNative();
    process.exit(0);
  } catch (err) {
    missing = err;
  }
}

const cargo = process.env.CARGO || 'cargo';
const cargoArgs = ['build', '--package', 'hyco-ws-rs', '--lib'];
if (release) cargoArgs.push('--release');

console.error(`hyco-ws-rs: building the native addon (${release ? 'release' : 'debug'})`);
const result = spawnSync(cargo, cargoArgs, { cwd: root, stdio: 'inherit' });
if (result.error) {
  console.error(`hyco-ws-rs: could not run "${cargo}" (${result.error.code || result.error.message}) to build the addon from source.`);
  console.error(
    missing
      ? missing.message
      : 'Install Rust (https://rustup.rs) and a C compiler to build from source.'
  );
  process.exit(1);
}
if (result.status !== 0) process.exit(result.status || 1);

const targetDir = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
const libFile = {
  darwin: 'libhyco_ws_rs.dylib',
  win32: 'hyco_ws_rs.dll'
}[process.platform] || 'libhyco_ws_rs.so';
const built = path.join(targetDir, release ? 'release' : 'debug', libFile);
const dest = path.join(root, binaryName());

// Copy to a temporary name and rename, so that a running process that has the old binary
// mapped is never handed a half-written file.
const tmp = `${dest}.${process.pid}.tmp`;
fs.copyFileSync(built, tmp);
fs.renameSync(tmp, dest);
console.error(`hyco-ws-rs: wrote ${path.basename(dest)}`);
