// The package as a release publishes it, installed without Rust: hyco-ws-rs with an optional
// dependency per platform package, and this platform's package holding the release binary
// (`npm run build:release-binary`, or a build artifact in the release workflow). Installed
// offline into an empty project with no cargo on PATH, require loads the binary from the
// platform package and a relay round trip works; with the platform package left out, require
// and the install fail with an error that names the package and the ways out.
//
// Nothing here loads the repository's own addon, so the release workflow runs this file
// (`npm run test:release`) on each platform with only the downloaded binary.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { delimiter, join, relative } from 'node:path';

import { fromTarball, installOffline, packPackages, root, tarballFiles } from './support/pack.mjs';

const require = createRequire(import.meta.url);
const { PREBUILT, binaryName, packageName, platformSuffix } = require('../lib/native.js');

const WAIT = 30000;
const PLATFORM = platformSuffix();
/** The binary a release ships for this platform. */
const RELEASE_BINARY = join(root, 'npm', PLATFORM, binaryName(PLATFORM));
/** The environment's name for PATH (Windows spells it Path). */
const PATH_KEY = Object.keys(process.env).find((key) => key.toUpperCase() === 'PATH') || 'PATH';
/** PATH without any directory that holds cargo, and no CARGO: nothing can build Rust. */
const NO_RUST = {
  [PATH_KEY]: process.env[PATH_KEY].split(delimiter)
    .filter((dir) => dir && !existsSync(join(dir, 'cargo')) && !existsSync(join(dir, 'cargo.exe')))
    .join(delimiter),
  CARGO: undefined
};
let work;
let mainTarball;
let platformTarball;

/**
 * Runs Node.js with `args` in `cwd`; resolves with its exit code and output.
 *
 * @param {String} cwd The project
 * @param {String[]} args The arguments
 * @return {Promise<{ code: Number, stdout: String, stderr: String }>} How it ended
 */
function runNode(cwd, args) {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, ...NO_RUST }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d) => (stderr += d));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill();
      reject(new Error(`node ${args.join(' ')} did not finish:\n${stdout}\n${stderr}`));
    }, WAIT);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

before(() => {
  work = mkdtempSync(join(tmpdir(), 'hyco-ws-rs-prebuilt-'));
  assert.ok(existsSync(RELEASE_BINARY), `${RELEASE_BINARY} is missing: run "npm run build:release-binary" first`);
  ({ main: mainTarball, platform: platformTarball } = packPackages(work, { binary: RELEASE_BINARY }));
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test('the release lists every platform package as an optional dependency, at its own version', () => {
  const main = JSON.parse(fromTarball(mainTarball, 'package.json'));
  const expected = Object.fromEntries(Object.keys(PREBUILT).map((platform) => [`hyco-ws-rs-${platform}`, main.version]));
  assert.deepEqual(main.optionalDependencies, expected);
  assert.equal(main.optionalDependencies['hyco-ws-rs-linux-x64-gnu'], main.version);
  assert.equal(main.scripts.install, 'node scripts/build-addon.js --release --if-missing', 'a source build only as the fallback');
  const platform = JSON.parse(fromTarball(platformTarball, 'package.json'));
  assert.equal(platform.name, packageName(PLATFORM));
  assert.equal(platform.version, main.version);
  assert.equal(platform.main, binaryName(PLATFORM));
  assert.deepEqual(tarballFiles(platformTarball).sort(), ['package/README.md', `package/${binaryName(PLATFORM)}`, 'package/package.json']);
});

test('without Rust: npm installs the platform package, require loads its binary, a round trip works', { timeout: 120000 }, async () => {
  const dir = join(work, 'prebuilt');
  mkdirSync(dir);
  assert.ok(!NO_RUST[PATH_KEY].split(delimiter).some((d) => existsSync(join(d, 'cargo')) || existsSync(join(d, 'cargo.exe'))), 'cargo is off PATH');
  // The platform package comes in as hyco-ws-rs's optional dependency, as from the registry.
  installOffline(dir, [mainTarball, platformTarball], [], NO_RUST);
  const lock = JSON.parse(readFileSync(join(dir, 'package-lock.json'), 'utf8'));
  assert.deepEqual(Object.keys(lock.packages[''].dependencies), ['hyco-ws-rs']);
  const installed = readdirSync(join(dir, 'node_modules', 'hyco-ws-rs'));
  assert.ok(!installed.some((f) => f.endsWith('.node')), `nothing was built next to the main package: ${installed.join(', ')}`);

  copyFileSync(join(root, '__test__', 'support', 'round-trip.cjs'), join(dir, 'round-trip.cjs'));
  const run = await runNode(dir, ['round-trip.cjs']);
  assert.equal(run.code, 0, run.stderr);
  const { reply, fetched, binaries } = JSON.parse(run.stdout);
  assert.equal(reply, 'echo:hi');
  assert.equal(fetched, 'true 200 fetched:/x 1', 'relayedFetch through a proxy, with the installed undici');
  assert.equal(binaries.length, 1, `one binary loaded: ${binaries.join(', ')}`);
  assert.equal(
    relative(realpathSync.native(dir), realpathSync.native(binaries[0])),
    join('node_modules', packageName(PLATFORM), binaryName(PLATFORM))
  );
});

test('without the platform package, require throws an error that names it and the ways out', { timeout: 120000 }, async () => {
  const dir = join(work, 'omitted');
  mkdirSync(dir);
  // --ignore-scripts as well, as pnpm installs by default: no source build is attempted.
  installOffline(dir, [mainTarball, platformTarball], [], NO_RUST, ['--omit=optional', '--ignore-scripts']);
  assert.ok(existsSync(join(dir, 'node_modules', 'hyco-ws-rs', 'package.json')));
  assert.ok(!existsSync(join(dir, 'node_modules', packageName(PLATFORM))), 'npm left the platform package out');
  const result = await runNode(dir, [
    '-e',
    "try { require('hyco-ws-rs'); } catch (err) { console.log(JSON.stringify({ code: err.code, platform: err.platform, packageName: err.packageName, message: err.message })); process.exit(3); }"
  ]);
  assert.equal(result.code, 3, `require did not throw: ${result.stdout}${result.stderr}`);
  const err = JSON.parse(result.stdout);
  assert.equal(err.code, 'ERR_HYCO_NATIVE_MISSING');
  assert.doesNotMatch(err.message, /Cannot find module/);
  assert.equal(err.platform, PLATFORM);
  assert.equal(err.packageName, `hyco-ws-rs-${PLATFORM}`);
  assert.match(err.message, new RegExp(`^hyco-ws-rs: no native addon for ${PLATFORM}: `));
  assert.match(err.message, new RegExp(`optional dependency hyco-ws-rs-${PLATFORM}, which is not installed`));
  assert.match(err.message, /--omit=optional/);
  assert.match(err.message, /https:\/\/rustup\.rs/);
  assert.match(err.message, /npm rebuild hyco-ws-rs/);
});

test('without the platform package and without Rust, npm install fails and names the package', { timeout: 120000 }, () => {
  const dir = join(work, 'omitted-install');
  mkdirSync(dir);
  assert.throws(
    () => installOffline(dir, [mainTarball, platformTarball], [], NO_RUST, ['--omit=optional']),
    (err) => {
      const stderr = String(err.stderr);
      assert.match(stderr, /could not run "cargo" \(ENOENT\) to build the addon from source/);
      assert.match(stderr, new RegExp(`optional dependency hyco-ws-rs-${PLATFORM}, which is not installed`));
      assert.match(stderr, /--omit=optional/);
      return true;
    }
  );
});
