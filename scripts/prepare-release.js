'use strict';

/**
 * Readies a release for `npm publish`, as napi-rs's `prepublish` does: checks that every
 * platform of `PREBUILT` (lib/native.js) has its package in `npm/<platform>/` with its binary
 * and the main package's version, then writes the main package.json's `optionalDependencies`,
 * one exact version per platform package. npm then installs, with hyco-ws-rs, the one
 * platform package whose `os`, `cpu` and `libc` fit the machine.
 *
 * Usage: node scripts/prepare-release.js [--artifacts DIR]
 *
 * `--artifacts DIR` first makes the platform packages from the binaries found under DIR
 * (the release workflow's downloaded build artifacts, `hyco-ws-rs.<platform>.node` each).
 * The package.json written is for publishing, not for committing.
 */

const fs = require('fs');
const path = require('path');

const { PREBUILT, binaryName, packageName } = require('../lib/native');
const { option, releaseError, writePlatformPackage } = require('./package-platform');

const root = path.join(__dirname, '..');

/**
 * The main package's manifest as published: `optionalDependencies` lists every platform
 * package at exactly the main package's version.
 *
 * @param {Object} main The main package.json
 * @return {Object} A new manifest
 */
function releaseManifest(main) {
  const optionalDependencies = {};
  for (const platform of Object.keys(PREBUILT).sort()) optionalDependencies[packageName(platform)] = main.version;
  return { ...main, optionalDependencies };
}

/**
 * `main` with a `repository`: its own, or, in a GitHub Actions run, the repository the run
 * belongs to. npm checks a package's `repository.url` against the repository its provenance
 * names and refuses a package without one (E422), so a release from the workflow must carry
 * it, on the platform packages too.
 *
 * @param {Object} main The main package.json
 * @param {Object} env The environment (`GITHUB_SERVER_URL`, `GITHUB_REPOSITORY`)
 * @return {Object} `main`, or a copy with `repository`
 */
function withRepository(main, env) {
  if (main.repository || !env.GITHUB_REPOSITORY) return main;
  const server = env.GITHUB_SERVER_URL || 'https://github.com';
  return { ...main, repository: { type: 'git', url: `git+${server}/${env.GITHUB_REPOSITORY}.git` } };
}

/**
 * Finds a file by name under a directory.
 *
 * @param {String} dir The directory
 * @param {String} name The file name
 * @return {String|null} Its path, or null
 */
function findFile(dir, name) {
  for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) {
      const found = findFile(full, name);
      if (found) return found;
    } else if (entry.name === name) {
      return full;
    }
  }
  return null;
}

/**
 * Checks that each platform package in `npm/` is complete and of `version`.
 *
 * @param {String} version The main package's version
 * @param {(Object|String)} [repository] The main package's `repository`, which each must copy
 * @throws {Error} With code `ERR_HYCO_RELEASE`, naming every platform that is not ready
 */
function checkPlatformPackages(version, repository) {
  const problems = [];
  for (const platform of Object.keys(PREBUILT)) {
    const dir = path.join(root, 'npm', platform);
    const manifestFile = path.join(dir, 'package.json');
    if (!fs.existsSync(manifestFile)) {
      problems.push(`${platform}: no ${path.relative(root, manifestFile)}`);
      continue;
    }
    const manifest = JSON.parse(fs.readFileSync(manifestFile, 'utf8'));
    if (manifest.name !== packageName(platform)) problems.push(`${platform}: named ${manifest.name}`);
    if (manifest.version !== version) problems.push(`${platform}: version ${manifest.version}, not ${version}`);
    if (JSON.stringify(manifest.repository) !== JSON.stringify(repository)) {
      problems.push(`${platform}: repository ${JSON.stringify(manifest.repository)}, not the main package's`);
    }
    if (!fs.existsSync(path.join(dir, binaryName(platform)))) problems.push(`${platform}: no ${binaryName(platform)}`);
  }
  if (problems.length) throw releaseError(`the platform packages are not ready:\n  ${problems.join('\n  ')}`);
}

if (require.main === module) {
  const artifacts = option(process.argv.slice(2), '--artifacts');
  const manifestFile = path.join(root, 'package.json');
  const original = fs.readFileSync(manifestFile, 'utf8');
  try {
    const read = JSON.parse(original);
    const main = withRepository(read, process.env);
    // The platform packages copy it from package.json (see package-platform.js); put back
    // as it was if anything below fails.
    if (main !== read) fs.writeFileSync(manifestFile, `${JSON.stringify(main, null, 2)}\n`);
    if (artifacts) {
      for (const platform of Object.keys(PREBUILT)) {
        const binary = findFile(path.resolve(artifacts), binaryName(platform));
        if (!binary) throw releaseError(`no ${binaryName(platform)} under ${artifacts}`);
        writePlatformPackage({ platform, binary, out: path.join(root, 'npm', platform) });
      }
    }
    checkPlatformPackages(main.version, main.repository);
    fs.writeFileSync(manifestFile, `${JSON.stringify(releaseManifest(main), null, 2)}\n`);
    console.error(`hyco-ws-rs: package.json lists ${Object.keys(PREBUILT).length} platform packages at ${main.version}`);
  } catch (err) {
    fs.writeFileSync(manifestFile, original);
    console.error(err.message);
    process.exit(1);
  }
}

module.exports = { releaseManifest, withRepository };
