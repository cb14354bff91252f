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
// Cargo says where it put the library (its messages on stdout; its diagnostics still on
// stderr): wherever its configuration sends the target directory (`build.target-dir`,
// `CARGO_BUILD_TARGET_DIR`, `CARGO_TARGET_DIR`).
const cargoArgs = ['build', '--package', 'hyco-ws-rs', '--lib', '--message-format=json-render-diagnostics'];
if (release) cargoArgs.push('--release');

console.error(`hyco-ws-rs: building the native addon (${release ? 'release' : 'debug'})`);
const result = spawnSync(cargo, cargoArgs, {
  cwd: root,
  stdio: ['inherit', 'pipe', 'inherit'],
  maxBuffer: 256 * 1024 * 1024
});
if (result.error) {
  console.error(`hyco-ws-rs: could not run "${cargo}" (${result.error.code || result.error.message}) to build the addon from source.`);
  console.error(
    missing
      ? missing.message
      : 'Install Rust (https://rustup.rs) and a C compiler to build from source.'
  );
  process.exit(1);
}
if (result.status !== 0) {
  // Why a build was needed at all (no prebuilt package for this platform, or it was left
  // out), after cargo's own account of what failed.
  if (missing) console.error(missing.message);
  process.exit(result.status || 1);
}

const built = builtLibrary(result.stdout.toString());
if (built === null) {
  console.error('hyco-ws-rs: cargo built the addon but did not say where (no cdylib artifact in its messages)');
  process.exit(1);
}
const dest = path.join(root, binaryName());

// Copy to a temporary name and rename, so that a running process that has the old binary
// mapped is never handed a half-written file.
const tmp = `${dest}.${process.pid}.tmp`;
fs.copyFileSync(built, tmp);
fs.renameSync(tmp, dest);
console.error(`hyco-ws-rs: wrote ${path.basename(dest)}`);

/**
 * The shared library cargo built, from its JSON messages: the `cdylib` artifact of the
 * hyco-ws-rs crate.
 *
 * @param {String} messages Cargo's stdout, one JSON message per line
 * @return {?String} Its path, or `null`
 */
function builtLibrary(messages) {
  let found = null;
  for (const line of messages.split('\n')) {
    if (!line.startsWith('{')) continue;
    let message;
    try {
      message = JSON.parse(line);
    } catch {
      continue;
    }
    const target = message.reason === 'compiler-artifact' ? message.target : null;
    if (target && target.name === 'hyco_ws_rs' && target.kind.includes('cdylib')) {
      found = message.filenames.find((f) => /\.(so|dylib|dll)$/.test(f)) || found;
    }
  }
  return found;
}
