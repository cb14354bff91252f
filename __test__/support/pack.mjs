// What the package tests install: the tarball `npm pack` makes, and the per-platform package
// that carries the prebuilt addon (so that nothing compiles Rust).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root. */
export const root = fileURLToPath(new URL('../..', import.meta.url));

/**
 * Runs npm with `args` in `cwd`; returns its stdout.
 *
 * @param {String[]} args The arguments
 * @param {String} cwd Where
 * @param {Object} [env] Extra environment
 * @return {String} stdout
 */
export function npm(args, cwd, env = {}) {
  return execFileSync('npm', args, {
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
 * Packs the package as `npm publish` would, and its per-platform package from the addon
 * built at the root (`scripts/package-platform.js`).
 *
 * @param {String} work A directory for the tarballs
 * @return {{ main: String, platform: String }} The two tarballs' paths
 */
export function packPackages(work) {
  const main = pack(root, work);
  const platformDir = join(work, 'platform');
  execFileSync(process.execPath, [join(root, 'scripts', 'package-platform.js'), '--out', platformDir], { stdio: 'ignore' });
  return { main, platform: pack(platformDir, work) };
}
