// The release tooling: the Linux gnu release binary needs no glibc newer than the baseline
// (read from its ELF version needs by scripts/elf-glibc.js, whose reading is held against
// binutils' readelf), the platform packages' manifests, the release workflow building and
// testing every platform that the loader knows, and the loader's errors for a platform
// without a prebuilt binary and for a platform package of another version.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { PREBUILT, binaryName, missingAddonError, packageName, platformSuffix } = require('../lib/native.js');
const { compareVersions, highestGlibc, versionNeeds } = require('../scripts/elf-glibc.js');
const { GLIBC_BASELINE } = require('../scripts/build-release-binary.js');
const { platformManifest } = require('../scripts/package-platform.js');
const { withRepository } = require('../scripts/prepare-release.js');

const root = fileURLToPath(new URL('..', import.meta.url));
const main = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const PLATFORM = platformSuffix();
const RELEASE_BINARY = join(root, 'npm', PLATFORM, binaryName(PLATFORM));
const GNU = process.platform === 'linux' && PLATFORM.endsWith('-gnu');
const READELF = spawnSync('readelf', ['--version']).status === 0;
let work;

before(() => {
  work = mkdtempSync(join(tmpdir(), 'hyco-ws-rs-release-'));
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/**
 * The version needs as `readelf -V` prints them.
 *
 * @param {String} file The ELF file
 * @return {String[]} `library GLIBC_x.y` lines, sorted
 */
function readelfNeeds(file) {
  const out = execFileSync('readelf', ['-V', '-W', file], { encoding: 'utf8', maxBuffer: 1 << 30 });
  const section = out.slice(out.indexOf("Version needs section '.gnu.version_r'"));
  const needs = [];
  let library = null;
  for (const line of section.split('\n')) {
    const fileMatch = /File: (\S+)/.exec(line);
    if (fileMatch) library = fileMatch[1];
    const nameMatch = /Name: (\S+)/.exec(line);
    if (nameMatch && library) needs.push(`${library} ${nameMatch[1]}`);
  }
  return needs.sort();
}

test(`the Linux release binary needs no glibc newer than ${GLIBC_BASELINE}`, { skip: !GNU && 'not a glibc Linux' }, () => {
  assert.ok(existsSync(RELEASE_BINARY), `${RELEASE_BINARY} is missing: run "npm run build:release-binary" first`);
  const needs = versionNeeds(RELEASE_BINARY);
  assert.ok(needs.some((n) => n.library === 'libc.so.6'), 'it links glibc');
  const highest = highestGlibc(RELEASE_BINARY);
  const newer = needs.filter((n) => /^GLIBC_[\d.]+$/.test(n.version) && compareVersions(n.version.slice(6), GLIBC_BASELINE) > 0);
  assert.deepEqual(newer, [], `needs glibc ${highest}`);
  assert.ok(compareVersions(highest, GLIBC_BASELINE) <= 0, `needs glibc ${highest}`);
  // The README promises the same baseline.
  assert.match(readFileSync(join(root, 'README.md'), 'utf8'), new RegExp(`glibc ${GLIBC_BASELINE.replace('.', '\\.')} or later`));
});

test('the ELF reader sees what readelf sees', { skip: (!GNU && 'not a glibc Linux') || (!READELF && 'no readelf on PATH') }, () => {
  const files = [RELEASE_BINARY, process.execPath, join(root, binaryName())].filter(existsSync);
  assert.ok(files.length >= 2, files.join(', '));
  for (const file of files) {
    const ours = versionNeeds(file).map((n) => `${n.library} ${n.version}`).sort();
    assert.ok(ours.length > 0, `${file} has version needs`);
    assert.deepEqual(ours, readelfNeeds(file), file);
  }
});

test('the ELF reader refuses a file that is not ELF', () => {
  assert.throws(() => versionNeeds(join(root, 'package.json')), { code: 'ERR_HYCO_ELF', message: /not an ELF file/ });
});

test('the ELF reader refuses an ELF file cut short', { skip: process.platform !== 'linux' && 'Node.js is not an ELF file here' }, () => {
  const cut = join(work, 'cut.so');
  writeFileSync(cut, readFileSync(process.execPath).subarray(0, 4096));
  assert.throws(() => versionNeeds(cut), { code: 'ERR_HYCO_ELF', message: /cut short or malformed/ });
});

test('glibc versions compare as numbers', () => {
  assert.ok(compareVersions('2.17', '2.3.4') > 0);
  assert.ok(compareVersions('2.28', '2.17') > 0);
  assert.ok(compareVersions('2.3', '2.3.2') < 0);
  assert.equal(compareVersions('2.17', '2.17.0'), 0);
});

test('each platform package is named, and limited to its os, cpu and libc, as napi-rs does', () => {
  const expected = {
    'linux-x64-gnu': ['linux', 'x64', 'glibc'],
    'linux-arm64-gnu': ['linux', 'arm64', 'glibc'],
    'linux-x64-musl': ['linux', 'x64', 'musl'],
    'linux-arm64-musl': ['linux', 'arm64', 'musl'],
    'darwin-x64': ['darwin', 'x64', undefined],
    'darwin-arm64': ['darwin', 'arm64', undefined],
    'win32-x64-msvc': ['win32', 'x64', undefined]
  };
  assert.deepEqual(Object.keys(PREBUILT).sort(), Object.keys(expected).sort());
  for (const [platform, [os, cpu, libc]] of Object.entries(expected)) {
    const manifest = platformManifest(platform, main);
    assert.equal(manifest.name, `hyco-ws-rs-${platform}`);
    assert.equal(manifest.name, packageName(platform));
    assert.equal(manifest.version, main.version);
    assert.equal(manifest.main, `hyco-ws-rs.${platform}.node`);
    assert.deepEqual(manifest.files, [manifest.main]);
    assert.deepEqual(manifest.os, [os]);
    assert.deepEqual(manifest.cpu, [cpu]);
    assert.deepEqual(manifest.libc, libc && [libc]);
    assert.deepEqual(manifest.engines, main.engines);
  }
});

test("a release from the workflow carries the repository npm's provenance checks, on every platform package", () => {
  const env = { GITHUB_SERVER_URL: 'https://github.com', GITHUB_REPOSITORY: 'owner/hyco-ws-rs' };
  const bare = { ...main };
  delete bare.repository;
  const filled = withRepository(bare, env);
  assert.deepEqual(filled.repository, { type: 'git', url: 'git+https://github.com/owner/hyco-ws-rs.git' });
  for (const platform of Object.keys(PREBUILT)) {
    assert.deepEqual(platformManifest(platform, filled).repository, filled.repository, platform);
  }
  // Its own, when package.json names one; none outside a workflow run.
  const named = { ...bare, repository: 'github:someone/else' };
  assert.equal(withRepository(named, env), named);
  assert.equal(withRepository(bare, {}).repository, undefined);
});

test('the release workflow builds and tests every platform, and publishes', () => {
  const workflow = readFileSync(join(root, '.github', 'workflows', 'release.yml'), 'utf8');
  for (const [platform, triple] of Object.entries(PREBUILT)) {
    assert.match(workflow, new RegExp(`platform: ${platform}, target: ${triple},`), `builds ${platform}`);
    assert.match(workflow, new RegExp(`- platform: ${platform}\\b`), `tests ${platform}`);
  }
  for (const node of ['18', '20', '22']) assert.match(workflow, new RegExp(`node: \\[.*'${node}'.*\\]`));
  assert.match(workflow, /node scripts\/build-release-binary\.js --target \$\{\{ matrix\.target \}\}/);
  assert.match(workflow, /npm run test:release/);
  assert.match(workflow, /node scripts\/prepare-release\.js --artifacts/);
});

test('a platform without a prebuilt binary gets an error that says so and how to build', () => {
  const err = missingAddonError('freebsd-x64', [{ from: '/x/hyco-ws-rs.freebsd-x64.node', problem: 'not built' }], false);
  assert.equal(err.code, 'ERR_HYCO_NATIVE_MISSING');
  assert.equal(err.platform, 'freebsd-x64');
  assert.equal(err.packageName, null);
  assert.match(err.message, /no prebuilt binary is published for freebsd-x64 \(there are for linux-x64-gnu, /);
  assert.match(err.message, /install Rust \(https:\/\/rustup\.rs\) and a C compiler, then run "npm rebuild hyco-ws-rs"/);
  assert.match(err.message, /\/x\/hyco-ws-rs\.freebsd-x64\.node: not built/);
});

test('a platform package of another version is not loaded, and the error says so', () => {
  const modules = join(work, 'app', 'node_modules');
  mkdirSync(join(modules, 'hyco-ws-rs', 'lib'), { recursive: true });
  copyFileSync(join(root, 'package.json'), join(modules, 'hyco-ws-rs', 'package.json'));
  copyFileSync(join(root, 'lib', 'native.js'), join(modules, 'hyco-ws-rs', 'lib', 'native.js'));
  const platformDir = join(modules, packageName(PLATFORM));
  mkdirSync(platformDir);
  // No binary: a package of the wrong version must be refused before it is loaded.
  writeFileSync(join(platformDir, 'package.json'), JSON.stringify({ name: packageName(PLATFORM), version: '0.0.1-old', main: binaryName(PLATFORM) }));
  const result = spawnSync(
    process.execPath,
    ['-e', "try { require('./node_modules/hyco-ws-rs/lib/native.js').loadNative(); } catch (err) { console.log(JSON.stringify({ code: err.code, message: err.message })); }"],
    { cwd: join(work, 'app'), encoding: 'utf8', timeout: 30000 }
  );
  assert.equal(result.status, 0, result.stderr);
  const err = JSON.parse(result.stdout);
  assert.equal(err.code, 'ERR_HYCO_NATIVE_MISSING');
  assert.match(err.message, new RegExp(`the prebuilt binary in ${packageName(PLATFORM)} could not be loaded`));
  assert.match(err.message, new RegExp(`version 0\\.0\\.1-old, where hyco-ws-rs ${main.version.replace(/\./g, '\\.')} needs`));
});
