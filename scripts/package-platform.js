'use strict';

/**
 * Makes the per-platform npm package that carries a prebuilt addon, napi-rs style:
 * `hyco-ws-rs-<platform>` (e.g. `hyco-ws-rs-linux-x64-gnu`) with `os`, `cpu` and `libc`
 * fields so that npm installs it only where it runs. `lib/native.js` loads it when no
 * binary was built in the package itself, and `npm install` then skips the source build.
 *
 * Usage: npm run build && node scripts/package-platform.js [--out DIR]
 *
 * Release: publish each platform package, then the main package with an
 * `optionalDependencies` entry per platform package at the same version. Users without Rust
 * get the binary for their platform; elsewhere `npm install` builds from source.
 */

const fs = require('fs');
const path = require('path');

const { binaryName, platformSuffix } = require('../lib/native');

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const outIndex = args.indexOf('--out');
const suffix = platformSuffix();
const out = outIndex >= 0 ? path.resolve(args[outIndex + 1]) : path.join(root, 'npm', suffix);

const binary = path.join(root, binaryName());
if (!fs.existsSync(binary)) {
  console.error(`hyco-ws-rs: ${binaryName()} is missing: run "npm run build" first`);
  process.exit(1);
}

const main = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const [os, cpu, libc] = suffix.split('-');
const manifest = {
  name: `${main.name}-${suffix}`,
  version: main.version,
  description: `The prebuilt ${suffix} addon of ${main.name}`,
  main: binaryName(),
  files: [binaryName()],
  os: [os],
  cpu: [cpu],
  license: main.license,
  engines: main.engines
};
if (libc === 'gnu') manifest.libc = ['glibc'];
else if (libc === 'musl') manifest.libc = ['musl'];

fs.mkdirSync(out, { recursive: true });
fs.copyFileSync(binary, path.join(out, binaryName()));
fs.writeFileSync(path.join(out, 'package.json'), `${JSON.stringify(manifest, null, 2)}\n`);
fs.writeFileSync(
  path.join(out, 'README.md'),
  `# ${manifest.name}\n\nThe prebuilt ${suffix} binary of [${main.name}](https://www.npmjs.com/package/${main.name}). Install ${main.name}, not this.\n`
);
console.error(`hyco-ws-rs: wrote ${manifest.name} in ${path.relative(process.cwd(), out) || '.'}`);
