'use strict';

/**
 * Makes the npm package that carries a prebuilt addon for one platform, in napi-rs's layout:
 * `npm/<platform>/` holding `package.json` (named `hyco-ws-rs-<platform>`, at the main
 * package's version, with `os`, `cpu` and, on Linux, `libc`, so that npm installs it only
 * where it runs), the binary and a README.
 *
 * Usage: node scripts/package-platform.js [--platform P] [--binary FILE] [--out DIR]
 *
 * By default: this machine's platform, the binary that `npm run build` wrote at the root, and
 * `npm/<platform>`. A release makes these from the binaries of
 * `scripts/build-release-binary.js` (see `scripts/prepare-release.js`).
 */

const fs = require('fs');
const path = require('path');

const { PREBUILT, binaryName, packageName, platformSuffix } = require('../lib/native');

const root = path.join(__dirname, '..');

/** napi-rs's platform words, as npm's `libc` field spells them. */
const LIBC = { gnu: 'glibc', musl: 'musl' };

/**
 * The platform package's package.json.
 *
 * @param {String} platform e.g. `linux-x64-gnu`
 * @param {Object} main The main package's package.json
 * @return {Object} The manifest
 */
function platformManifest(platform, main) {
  const [os, cpu, abi] = platform.split('-');
  const manifest = {
    name: packageName(platform),
    version: main.version,
    description: `The ${platform} binary of ${main.name} (installed by ${main.name}, not by hand)`,
    main: binaryName(platform),
    files: [binaryName(platform)],
    os: [os],
    cpu: [cpu]
  };
  if (LIBC[abi]) manifest.libc = [LIBC[abi]];
  for (const key of ['license', 'engines', 'repository', 'homepage']) {
    if (main[key]) manifest[key] = main[key];
  }
  return manifest;
}

/**
 * Writes the platform package for `platform` into `out`, with `binary` copied in.
 *
 * @param {{ platform: String, binary: String, out: String }} options What and where
 * @return {Object} The manifest written
 * @throws {Error} With code `ERR_HYCO_RELEASE` when the platform is not a release platform
 *     or the binary is missing
 */
function writePlatformPackage({ platform, binary, out }) {
  if (!Object.prototype.hasOwnProperty.call(PREBUILT, platform)) {
    throw releaseError(`${platform} is not a release platform (${Object.keys(PREBUILT).join(', ')})`);
  }
  if (!fs.existsSync(binary)) throw releaseError(`${binary} is missing`);
  const main = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
  const manifest = platformManifest(platform, main);
  fs.mkdirSync(out, { recursive: true });
  const dest = path.join(out, manifest.main);
  if (path.resolve(binary) !== path.resolve(dest)) fs.copyFileSync(binary, dest);
  fs.writeFileSync(path.join(out, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  fs.writeFileSync(
    path.join(out, 'README.md'),
    `# ${manifest.name}\n\nThe prebuilt ${platform} addon of [${main.name}](https://www.npmjs.com/package/${main.name}), ` +
      `which lists it as an optional dependency. Install ${main.name}, not this.\n`
  );
  return manifest;
}

/**
 * An error of the release scripts.
 *
 * @param {String} message What is wrong
 * @return {Error} The error, with code `ERR_HYCO_RELEASE`
 */
function releaseError(message) {
  const err = new Error(`hyco-ws-rs: ${message}`);
  err.code = 'ERR_HYCO_RELEASE';
  return err;
}

/**
 * The value after `flag` in `args`, or `fallback`.
 *
 * @param {String[]} args The arguments
 * @param {String} flag e.g. `--out`
 * @param {String} [fallback] The default
 * @return {String|undefined} The value
 */
function option(args, flag, fallback) {
  const i = args.indexOf(flag);
  return i >= 0 && args[i + 1] !== undefined ? args[i + 1] : fallback;
}

if (require.main === module) {
  const args = process.argv.slice(2);
  const platform = option(args, '--platform', platformSuffix());
  const binary = path.resolve(option(args, '--binary', path.join(root, binaryName(platform))));
  const out = path.resolve(option(args, '--out', path.join(root, 'npm', platform)));
  try {
    const manifest = writePlatformPackage({ platform, binary, out });
    console.error(`hyco-ws-rs: wrote ${manifest.name}@${manifest.version} in ${path.relative(process.cwd(), out) || '.'}`);
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}

module.exports = { option, platformManifest, releaseError, writePlatformPackage };
