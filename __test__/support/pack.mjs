// What the package tests install: the tarball `npm pack` makes, the per-platform package
// that carries the prebuilt addon (so that nothing compiles Rust), and projects made from
// them without the network.
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const { PREBUILT, binaryName, packageName, platformSuffix } = require('../../lib/native.js');
const { platformManifest, writePlatformPackage } = require('../../scripts/package-platform.js');
const { releaseManifest } = require('../../scripts/prepare-release.js');

/** The repository's root. */
export const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * How to run npm: the npm that runs these tests (`npm test` sets npm_execpath), started by
 * this Node.js, which needs no shell on Windows and no PATH; else `npm` from PATH.
 */
const NPM = /npm-cli\.c?js$/.test(process.env.npm_execpath || '')
  ? { command: process.execPath, prefix: [process.env.npm_execpath] }
  : { command: 'npm', prefix: [] };

/**
 * Runs npm with `args` in `cwd`; returns its stdout.
 *
 * @param {String[]} args The arguments
 * @param {String} cwd Where
 * @param {Object} [env] Extra environment (a key set to undefined is removed)
 * @return {String} stdout
 */
export function npm(args, cwd, env = {}) {
  return execFileSync(NPM.command, [...NPM.prefix, ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe']
  });
}

/**
 * Packs the package directory `dir` into `dest`.
 *
 * @param {String} dir The package
 * @param {String} dest Where the tarball goes
 * @return {String} The tarball's path
 */
function pack(dir, dest) {
  return join(dest, npm(['pack', '--pack-destination', dest, '--silent'], dir).trim().split('\n').pop());
}

/**
 * Packs the package as a release publishes it (`npm pack`, then the package.json that
 * `scripts/prepare-release.js` writes, with an optional dependency per platform package), and
 * its per-platform package (`scripts/package-platform.js`).
 *
 * @param {String} work A directory for the tarballs
 * @param {{ binary: String }} [options] The platform package's binary: by default the one
 *     `npm run build` wrote at the root
 * @return {{ main: String, platform: String }} The two tarballs' paths
 */
export function packPackages(work, { binary } = {}) {
  const staged = join(work, 'release');
  mkdirSync(staged, { recursive: true });
  // Relative paths: Windows' tar and GNU tar both read them (GNU tar takes C: for a host).
  execFileSync('tar', ['xzf', basename(pack(root, work)), '-C', 'release', '--strip-components=1'], { cwd: work });
  const manifest = JSON.parse(readFileSync(join(staged, 'package.json'), 'utf8'));
  writeFileSync(join(staged, 'package.json'), `${JSON.stringify(releaseManifest(manifest), null, 2)}\n`);
  const main = pack(staged, work);
  const platformDir = join(work, 'platform');
  writePlatformPackage({ platform: platformSuffix(), binary: binary || join(root, binaryName()), out: platformDir });
  return { main, platform: pack(platformDir, work) };
}

/**
 * The paths in a tarball made by `npm pack`.
 *
 * @param {String} tarball The tarball
 * @return {String[]} Its paths (`package/...`)
 */
export function tarballFiles(tarball) {
  return execFileSync('tar', ['tzf', basename(tarball)], { cwd: dirname(tarball), encoding: 'utf8' }).trim().split('\n');
}

/**
 * Reads a file of a tarball made by `npm pack`.
 *
 * @param {String} tarball The tarball
 * @param {String} file The path inside `package/`
 * @return {String} Its text
 */
export function fromTarball(tarball, file) {
  return execFileSync('tar', ['xzfO', basename(tarball), `package/${file}`], { cwd: dirname(tarball), encoding: 'utf8' });
}

/**
 * Makes a project in `dir` that depends on the packed tarballs and on `devDependencies`
 * taken from this repository's own, and installs it with `npm ci --offline`: everything
 * comes from the tarballs and from npm's cache, which the repository's `npm ci` filled.
 *
 * `npm install --offline` cannot do this: it asks for the registry's full package documents,
 * while `npm ci` caches only the abbreviated ones. So the project gets a package-lock.json
 * whose registry entries are this repository's (for the versions it installed) and whose
 * tarball entries list the dependencies the packed package.json declares: a package the
 * tarball does not declare is not installed. A tarball that another one lists in its
 * `optionalDependencies` (a platform package) is installed as that optional dependency, as
 * npm installs it from the registry, not as one of the project's own; optional dependencies
 * with no tarball (the other platforms' packages) are left out.
 *
 * @param {String} dir The project's directory (existing, empty)
 * @param {String[]} tarballs The packed packages
 * @param {String[]} devDependencies Names of this repository's devDependencies to add
 * @param {Object} [env] Extra environment for npm
 * @param {String[]} [npmArgs] More arguments for `npm ci`, e.g. `--omit=optional`
 * @return {{ offline: Boolean }} Whether the install did without the registry
 */
export function installOffline(dir, tarballs, devDependencies, env = {}, npmArgs = []) {
  const repoLock = JSON.parse(readFileSync(join(root, 'package-lock.json'), 'utf8'));
  const repoDevDependencies = repoLock.packages[''].devDependencies;
  const manifest = { name: 'user-app', version: '1.0.0', private: true, dependencies: {} };
  const packages = { '': manifest };
  // [where the dependent is installed, the dependency's name]
  const wanted = [];
  const packed = tarballs.map((tarball) => ({ tarball, pkg: JSON.parse(fromTarball(tarball, 'package.json')) }));
  const optional = new Set(packed.flatMap(({ pkg }) => Object.keys(pkg.optionalDependencies || {})));
  for (const { tarball, pkg } of packed) {
    const spec = `file:${basename(tarball)}`;
    copyFileSync(tarball, join(dir, basename(tarball)));
    if (!optional.has(pkg.name)) manifest.dependencies[pkg.name] = spec;
    const packaged = Object.fromEntries(
      ['dependencies', 'optionalDependencies', 'bin', 'engines', 'os', 'cpu', 'libc', 'license'].filter((k) => pkg[k]).map((k) => [k, pkg[k]])
    );
    packages[`node_modules/${pkg.name}`] = {
      version: pkg.version,
      resolved: spec,
      ...(pkg.scripts && pkg.scripts.install ? { hasInstallScript: true } : {}),
      ...(optional.has(pkg.name) ? { optional: true } : {}),
      ...packaged
    };
    for (const name of Object.keys(pkg.dependencies || {})) wanted.push([`node_modules/${pkg.name}`, name]);
  }
  // The other platforms' packages, as a lockfile lists them: npm must skip them by their `os`,
  // `cpu` and `libc` without fetching, and there is nothing to fetch at their `resolved`.
  for (const { pkg } of packed) {
    for (const [name, version] of Object.entries(pkg.optionalDependencies || {})) {
      if (packages[`node_modules/${name}`]) continue;
      const platform = Object.keys(PREBUILT).find((p) => packageName(p) === name);
      if (!platform) throw new Error(`${pkg.name}'s optional dependency ${name} is not a platform package`);
      const { os, cpu, libc } = platformManifest(platform, pkg);
      packages[`node_modules/${name}`] = { version, resolved: `file:not-packed/${name}-${version}.tgz`, optional: true, os, cpu, ...(libc ? { libc } : {}) };
    }
  }
  for (const name of devDependencies) {
    manifest.dependencies[name] = repoDevDependencies[name];
    wanted.push(['', name]);
  }
  while (wanted.length) {
    const [from, name] = wanted.shift();
    // Where Node's resolution finds `name` from `from` in the repository's tree: its own
    // node_modules, then each enclosing one.
    let key;
    for (let at = from; ; at = at.slice(0, Math.max(0, at.lastIndexOf('/node_modules/')))) {
      const candidate = `${at ? `${at}/` : ''}node_modules/${name}`;
      if (repoLock.packages[candidate]) {
        key = candidate;
        break;
      }
      if (!at) throw new Error(`${name} (needed by ${from || 'the project'}) is not in this repository's package-lock.json`);
    }
    if (packages[key]) continue;
    const { dev, devOptional, ...entry } = repoLock.packages[key];
    packages[key] = devOptional ? { ...entry, optional: true } : entry;
    for (const dep of Object.keys({ ...entry.dependencies, ...entry.optionalDependencies })) wanted.push([key, dep]);
  }
  writeFileSync(join(dir, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  writeFileSync(
    join(dir, 'package-lock.json'),
    `${JSON.stringify({ name: manifest.name, version: manifest.version, lockfileVersion: 3, requires: true, packages }, null, 2)}\n`
  );
  const args = ['ci', '--no-audit', '--no-fund', ...npmArgs];
  // Optional packages that npm was told to leave out are not missing.
  const omitted = npmArgs.includes('--omit=optional');
  try {
    npm([...args, '--offline'], dir, env);
    // npm skips an optional package it cannot fetch without a word.
    if (omitted || missingOptional(dir, packages).length === 0) return { offline: true };
  } catch (err) {
    if (!/ENOTCACHED/.test(String(err.stderr))) throw err;
  }
  // A cache that the repository's `npm ci` did not fill (after an `npm install`, or
  // cleaned): take what is missing from the registry rather than fail.
  npm([...args, '--prefer-offline'], dir, env);
  const missing = omitted ? [] : missingOptional(dir, packages);
  if (missing.length) throw new Error(`npm did not install ${missing.join(', ')}`);
  return { offline: false };
}

/**
 * The optional packages of a lockfile that fit this machine but are not installed.
 *
 * @param {String} dir The project
 * @param {Object} packages The lockfile's `packages`
 * @return {String[]} Their paths
 */
function missingOptional(dir, packages) {
  const fits = (list, value) => !list || list.includes(value);
  const libc = platformSuffix().endsWith('-musl') ? 'musl' : 'glibc';
  return Object.keys(packages).filter((key) => {
    const entry = packages[key];
    return (
      key &&
      entry.optional &&
      fits(entry.os, process.platform) &&
      fits(entry.cpu, process.arch) &&
      (process.platform !== 'linux' || fits(entry.libc, libc)) &&
      !existsSync(join(dir, key, 'package.json'))
    );
  });
}
