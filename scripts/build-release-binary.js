'use strict';

/**
 * Builds the addon as a release ships it, for one target, and makes its platform package in
 * `npm/<platform>/` (see `scripts/package-platform.js`).
 *
 * Usage: node scripts/build-release-binary.js [--target TRIPLE]
 *
 * The default target is this machine's platform. Linux targets are built with cargo-zigbuild,
 * which links against the glibc of `GLIBC_BASELINE` (or musl) whatever the build machine's
 * glibc, so that the gnu binaries load on every Linux from that glibc on; the script then
 * checks the binary's version needs and fails if any is newer. zig and cargo-zigbuild come
 * from PyPI (pinned below), installed once with `python3 -m pip` into node_modules/.cache.
 * macOS and Windows targets are built with plain cargo on those systems.
 *
 * The build uses its own target directory, `target/release-binary` (under CARGO_TARGET_DIR
 * if set), so that it never invalidates the development build in `target/release`.
 */

const { spawnSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const { PREBUILT, binaryName, platformSuffix } = require('../lib/native');
const { compareVersions, highestGlibc } = require('./elf-glibc');
const { option, releaseError, writePlatformPackage } = require('./package-platform');

/**
 * The oldest glibc the gnu binaries load on: Rust's own minimum for Linux targets, which
 * tokio, ring and napi need nothing newer than (RHEL/CentOS 7, Ubuntu 14.04 and later).
 */
const GLIBC_BASELINE = '2.17';

/** The zig toolchain from PyPI: versions known to build this crate. */
const ZIGLANG = '0.15.2';
const CARGO_ZIGBUILD = '0.24.1';

const root = path.join(__dirname, '..');

/**
 * Runs a command, inheriting stdio; exits the process with a message when it fails.
 *
 * @param {String} command The program
 * @param {String[]} args Its arguments
 * @param {Object} env Its environment
 */
function run(command, args, env) {
  console.error(`hyco-ws-rs: ${command} ${args.join(' ')}`);
  const result = spawnSync(command, args, { cwd: root, env, stdio: 'inherit' });
  if (result.error) {
    throw releaseError(`could not run "${command}" (${result.error.code || result.error.message})`);
  }
  if (result.status !== 0) throw releaseError(`"${command} ${args.join(' ')}" failed (exit ${result.status})`);
}

/**
 * Installs zig and cargo-zigbuild from PyPI into node_modules/.cache once, and returns an
 * environment with both on PATH.
 *
 * @return {Object} The environment
 */
function zigEnvironment() {
  const dir = path.join(root, 'node_modules', '.cache', `zigbuild-${CARGO_ZIGBUILD}-zig-${ZIGLANG}`);
  const bin = path.join(dir, 'bin');
  if (!fs.existsSync(path.join(bin, 'cargo-zigbuild'))) {
    const python = process.env.PYTHON || 'python3';
    const partial = `${dir}.${process.pid}.tmp`;
    try {
      run(
        python,
        ['-m', 'pip', 'install', '--disable-pip-version-check', '--quiet', '--target', partial, `ziglang==${ZIGLANG}`, `cargo-zigbuild==${CARGO_ZIGBUILD}`],
        // --target installs into a folder of ours, so pip's warning about root is moot.
        { ...process.env, PIP_ROOT_USER_ACTION: 'ignore' }
      );
    } catch (err) {
      fs.rmSync(partial, { recursive: true, force: true });
      err.message +=
        `\nThe Linux release build takes zig and cargo-zigbuild from PyPI with "${python} -m pip"` +
        ' (Debian: apt-get install python3-pip).';
      throw err;
    }
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(partial, dir);
  }
  const PATH = [bin, path.join(dir, 'ziglang'), process.env.PATH].join(path.delimiter);
  return { ...process.env, PATH };
}

/**
 * The file name cargo gives the cdylib on a target.
 *
 * @param {String} triple The Rust target
 * @return {String} The file name
 */
function libFile(triple) {
  if (triple.includes('-apple-')) return 'libhyco_ws_rs.dylib';
  if (triple.includes('-windows-')) return 'hyco_ws_rs.dll';
  return 'libhyco_ws_rs.so';
}

/**
 * Builds the release binary of `platform` and writes its platform package.
 *
 * @param {String} platform e.g. `linux-x64-gnu`
 * @return {{ binary: String, glibc: String|null, out: String }} The package's binary, the
 *     newest glibc it needs (gnu targets), and the package directory
 */
function buildReleaseBinary(platform) {
  const triple = PREBUILT[platform];
  const targetDir = path.join(process.env.CARGO_TARGET_DIR || path.join(root, 'target'), 'release-binary');
  const args = ['--release', '--package', 'hyco-ws-rs', '--lib'];
  let env = { ...process.env, CARGO_TARGET_DIR: targetDir };
  if (triple.includes('-linux-')) {
    const zigTarget = triple.endsWith('-gnu') ? `${triple}.${GLIBC_BASELINE}` : triple;
    env = { ...zigEnvironment(), CARGO_TARGET_DIR: targetDir };
    run('cargo', ['zigbuild', ...args, '--target', zigTarget], env);
  } else {
    run('cargo', ['build', ...args, '--target', triple], env);
  }

  const built = path.join(targetDir, triple, 'release', libFile(triple));
  let glibc = null;
  if (triple.endsWith('-linux-gnu')) {
    glibc = highestGlibc(built);
    if (glibc && compareVersions(glibc, GLIBC_BASELINE) > 0) {
      throw releaseError(`${built} needs glibc ${glibc}, newer than the baseline ${GLIBC_BASELINE}`);
    }
  }
  const out = path.join(root, 'npm', platform);
  writePlatformPackage({ platform, binary: built, out });
  return { binary: path.join(out, binaryName(platform)), glibc, out };
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const triple = option(args, '--target', PREBUILT[platformSuffix()]);
  const platform = Object.keys(PREBUILT).find((p) => PREBUILT[p] === triple);
  try {
    if (!platform) {
      throw releaseError(`no release target ${triple || `for ${platformSuffix()}`} (targets: ${Object.values(PREBUILT).join(', ')})`);
    }
    const { binary, glibc } = buildReleaseBinary(platform);
    const size = (fs.statSync(binary).size / 1048576).toFixed(1);
    console.error(
      `hyco-ws-rs: wrote ${path.relative(root, binary)} (${size} MiB${glibc ? `, needs glibc ${glibc}` : ''})`
    );
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}

module.exports = { GLIBC_BASELINE, buildReleaseBinary };
