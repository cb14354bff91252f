// The types as a TypeScript user gets them. `npm pack`'s tarball (not the source tree) is
// installed, with its prebuilt platform package and offline, into an empty project that
// depends on it and on typescript and nothing else: no @types package of its own. Then
// `tsc --strict` checks, in each module mode and with each TypeScript this repository
// installs (the lowest supported, the current 5.x, the newest): a program using the whole
// API, code written for @types/hyco-ws, the README's TypeScript, the examples' TypeScript,
// and uses that must not compile. The README's JavaScript is checked too (checkJs, as Node
// runs it). attw and publint look at the same tarball, and the ES module declarations are
// compared with the CommonJS ones and with what wrapper.mjs exports; the same for the
// `hyco-ws-rs/hyco-ws` entry point (hyco-ws.d.ts, hyco-ws.d.mts, hyco-ws.mjs), whose
// deprecation notes are asked of the language service.
import { after, before, describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { basename, join, relative } from 'node:path';

import ts from 'typescript';
import { publint } from 'publint';
import { formatMessage } from 'publint/utils';

import * as esm from 'hyco-ws-rs';
import * as esmCompat from 'hyco-ws-rs/hyco-ws';
import { installOffline, packPackages, root } from './support/pack.mjs';

const require = createRequire(import.meta.url);
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));

/** Time allowed for one tsc, attw or publint run. */
const RUN_MS = 120000;

/** The compilers: `typescript` and each `typescript-X` alias among the devDependencies. */
const COMPILERS = Object.keys(pkg.devDependencies)
  .filter((name) => name === 'typescript' || name.startsWith('typescript-'))
  .map((name) => ({ name, version: require(`${name}/package.json`).version }))
  .sort((a, b) => a.version.localeCompare(b.version, 'en', { numeric: true }));

/** The lowest TypeScript tested, which the README states. */
const LOWEST = COMPILERS[0].version;

/**
 * The module modes. `styles` are the import styles that the mode allows (a fixture file's
 * name starts with its style); `entry` is the declaration file the mode must resolve.
 */
const MODES = [
  {
    name: 'commonjs + node10',
    dir: 'commonjs',
    compilerOptions: { module: 'commonjs', moduleResolution: 'node10' },
    ext: '.ts',
    styles: ['named', 'namespace', 'require'],
    entry: 'index.d.ts'
  },
  {
    name: 'commonjs + node10 + esModuleInterop',
    dir: 'commonjs-interop',
    compilerOptions: { module: 'commonjs', moduleResolution: 'node10', esModuleInterop: true },
    ext: '.ts',
    styles: ['named', 'namespace', 'require', 'default'],
    entry: 'index.d.ts'
  },
  {
    name: 'nodenext from .ts (CommonJS)',
    dir: 'nodenext-cts',
    compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext' },
    ext: '.ts',
    styles: ['named', 'namespace', 'require', 'default'],
    entry: 'index.d.ts'
  },
  {
    // With the options `tsc --init` writes since TypeScript 5.9 (an ES module file, as
    // verbatimModuleSyntax wants for `import` syntax).
    name: 'nodenext from .mts (ES module), tsc --init\'s options',
    dir: 'nodenext-mts',
    compilerOptions: {
      module: 'nodenext',
      moduleResolution: 'nodenext',
      types: [],
      noUncheckedIndexedAccess: true,
      exactOptionalPropertyTypes: true,
      verbatimModuleSyntax: true,
      isolatedModules: true,
      noUncheckedSideEffectImports: true,
      moduleDetection: 'force'
    },
    ext: '.mts',
    styles: ['named', 'default'],
    entry: 'index.d.mts'
  },
  {
    name: 'bundler',
    dir: 'bundler',
    compilerOptions: { module: 'esnext', moduleResolution: 'bundler' },
    ext: '.ts',
    styles: ['named', 'default'],
    entry: 'index.d.mts'
  }
];

/**
 * The README's placeholders for a namespace, a Hybrid Connection and a SAS rule, and the
 * little of Express its HTTP example uses (Express is not installed in the fixture: an app
 * is a function of Node's req and res).
 */
const PLACEHOLDERS = `declare var ns: string, path: string, keyName: string, key: string;
declare module 'express' {
  import { IncomingMessage, ServerResponse } from 'http';
  interface App {
    (req: IncomingMessage, res: ServerResponse, next?: (err?: unknown) => void): void;
    use(...handlers: unknown[]): App;
    post(path: string, ...handlers: Array<(req: any, res: any) => void>): App;
  }
  function express(): App;
  namespace express {
    function json(): (req: IncomingMessage, res: ServerResponse, next: () => void) => void;
  }
  export = express;
}
// @azure/identity's credentials, as @azure/core-auth declares TokenCredential.
declare module '@azure/identity' {
  interface AccessToken { token: string; expiresOnTimestamp: number; refreshAfterTimestamp?: number; tokenType?: 'Bearer' | 'pop' }
  interface GetTokenOptions { abortSignal?: AbortSignal; tenantId?: string; claims?: string }
  class DefaultAzureCredential {
    constructor(options?: object);
    getToken(scopes: string | string[], options?: GetTokenOptions): Promise<AccessToken>;
  }
}
`;

/** Options of every TypeScript check. */
const BASE_OPTIONS = { strict: true, noEmit: true, skipLibCheck: false, target: 'es2022', forceConsistentCasingInFileNames: true };

/**
 * Why `compiler` cannot run `mode`, if it cannot.
 *
 * @param {{ version: String }} compiler The compiler
 * @param {Object} mode The mode
 * @return {String|false} The reason, or `false`
 */
function unsupported(compiler, mode) {
  const major = Number(compiler.version.split('.')[0]);
  if (major >= 6 && mode.compilerOptions.moduleResolution === 'node10') {
    return 'TypeScript 6 deprecates moduleResolution node10, and 7 removed it';
  }
  return false;
}

/**
 * The import style of a piece of TypeScript: the most demanding form it uses.
 *
 * @param {String} source The code
 * @return {String} `require`, `namespace`, `default` or `named`
 */
function styleOf(source) {
  if (/^\s*import\s+\w+\s*=\s*require\(/m.test(source)) return 'require';
  if (/^\s*import\s+\*\s+as\s/m.test(source)) return 'namespace';
  if (/^\s*import\s+(type\s+)?\w+\s*(,|from\b)/m.test(source)) return 'default';
  return 'named';
}

/**
 * The fenced code blocks of the README in `languages`, with where they start.
 *
 * @param {String[]} languages The info strings to take (`ts`, `js`, ...)
 * @param {String} [section] Only the blocks under this `## ` heading
 * @return {{ code: String, line: Number }[]}
 */
function readmeBlocks(languages, section) {
  const lines = readFileSync(join(root, 'README.md'), 'utf8').split('\n');
  const blocks = [];
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    if (lines[i].startsWith('## ')) heading = lines[i].slice(3).trim();
    const open = /^```(\w+)\s*$/.exec(lines[i]);
    if (!open) continue;
    const end = lines.indexOf('```', i + 1);
    if (languages.includes(open[1]) && (section === undefined || heading === section)) {
      blocks.push({ code: lines.slice(i + 1, end).join('\n'), line: i + 1 });
    }
    i = end;
  }
  return blocks;
}

/**
 * Every TypeScript file the checks take, with its style and its name in the project.
 *
 * @return {{ name: String, style: String, code: String }[]}
 */
function sources() {
  const files = [];
  const userDir = join(root, '__test__', 'types', 'user');
  for (const file of readdirSync(userDir).filter((f) => f.endsWith('.ts')).sort()) {
    files.push({ name: basename(file, '.ts'), style: file.split('-')[0], code: readFileSync(join(userDir, file), 'utf8') });
  }
  const examples = join(root, 'examples');
  for (const file of readdirSync(examples, { recursive: true }).filter((f) => /\.m?ts$/.test(f) && !f.includes('dist')).sort()) {
    const code = readFileSync(join(examples, file), 'utf8');
    files.push({ name: `example-${file.replace(/\.m?ts$/, '').replace(/[/\\]/g, '-')}`, style: styleOf(code), code });
  }
  for (const { code, line } of readmeBlocks(['ts', 'typescript'], 'TypeScript')) {
    files.push({ name: `readme-line-${line}`, style: styleOf(code), code: `${code}\nexport {};\n` });
  }
  return files;
}

/**
 * Runs a command; resolves with its exit code and output (it never rejects on a failure
 * status, only on a timeout).
 *
 * @param {String} file The executable
 * @param {String[]} args Its arguments
 * @param {String} cwd Where
 * @return {Promise<{ code: Number, output: String }>}
 */
function run(file, args, cwd) {
  return new Promise((resolve, reject) => {
    execFile(file, args, { cwd, timeout: RUN_MS, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err && err.killed) reject(new Error(`${basename(args[0] || file)} did not finish in ${RUN_MS} ms:\n${stdout}${stderr}`));
      else resolve({ code: err ? err.code : 0, output: `${stdout}${stderr}` });
    });
  });
}

let work;
let tarballs;
let project;
let offline;
const files = sources();

before(() => {
  work = mkdtempSync(join(tmpdir(), 'hyco-ws-rs-types-'));
  tarballs = packPackages(work);
  project = join(work, 'user-app');
  mkdirSync(project);
  // No cargo anywhere: a source build would fail loudly.
  ({ offline } = installOffline(
    project,
    [tarballs.platform, tarballs.main],
    COMPILERS.map((c) => c.name),
    { CARGO: join(work, 'no-cargo-here') }
  ));

  for (const mode of MODES) {
    const dir = join(project, mode.dir);
    mkdirSync(dir);
    const names = ['placeholders.d.ts'];
    writeFileSync(join(dir, 'placeholders.d.ts'), PLACEHOLDERS);
    for (const file of files.filter((f) => mode.styles.includes(f.style))) {
      names.push(`${file.name}${mode.ext}`);
      writeFileSync(join(dir, `${file.name}${mode.ext}`), file.code);
    }
    const compilerOptions = { ...BASE_OPTIONS, ...mode.compilerOptions };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: names }, null, 2));
  }

  // The README's JavaScript, as Node runs it: CommonJS in .cjs, ES modules in .mjs, checked
  // against the same declarations. Not strict: the snippets pass values that may be
  // undefined (`process.env.X`) as JavaScript users do.
  const js = join(project, 'readme-js');
  mkdirSync(js);
  const names = ['placeholders.d.ts'];
  writeFileSync(join(js, 'placeholders.d.ts'), PLACEHOLDERS);
  for (const { code, line } of readmeBlocks(['js'])) {
    const name = `line-${line}${/^\s*import\s/m.test(code) ? '.mjs' : '.cjs'}`;
    writeFileSync(join(js, name), code);
    names.push(name);
  }
  const compilerOptions = {
    ...BASE_OPTIONS,
    strict: false,
    allowJs: true,
    checkJs: true,
    module: 'nodenext',
    moduleResolution: 'nodenext'
  };
  writeFileSync(join(js, 'tsconfig.json'), JSON.stringify({ compilerOptions, files: names }, null, 2));
});

after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

test("the tarball brings the types its declarations need, @types/ws of the ws 8 it accepts", (t) => {
  if (!offline) t.diagnostic('npm\'s cache lacked a package: the project was installed with --prefer-offline');
  const packed = JSON.parse(readFileSync(join(project, 'node_modules', 'hyco-ws-rs', 'package.json'), 'utf8'));
  // ws 8's types for every ws the package accepts: @types/ws's ws 8 releases stop at 8.18,
  // below the lowest ws (8.20) the package accepts, so its range starts lower.
  const lowest = (range) => range.match(/^\^(\d+)\.(\d+)\.\d+$/).slice(1).map(Number);
  const [typesMajor, typesMinor] = lowest(packed.dependencies['@types/ws']);
  const [wsMajor, wsMinor] = lowest(packed.dependencies.ws);
  assert.equal(typesMajor, wsMajor, 'the @types/ws range is the ws major');
  assert.ok(typesMinor <= wsMinor, 'the @types/ws range takes the types of the lowest ws');
  assert.ok(packed.dependencies['@types/node'], '@types/node is a dependency');
  const app = JSON.parse(readFileSync(join(project, 'package.json'), 'utf8'));
  const platform = `hyco-ws-rs-${require('../lib/native').platformSuffix()}`;
  assert.deepEqual(Object.keys(app.dependencies).sort(), ['hyco-ws-rs', ...COMPILERS.map((c) => c.name)].sort());
  // The platform package comes as hyco-ws-rs's optional dependency, as a release installs it.
  assert.equal(packed.optionalDependencies[platform], packed.version);
  assert.ok(readdirSync(join(project, 'node_modules', platform)).includes('package.json'), `${platform} was installed`);
  for (const name of ['@types/ws', '@types/node']) {
    assert.ok(readdirSync(join(project, 'node_modules', ...name.split('/'))).includes('package.json'), `${name} was installed`);
  }
  const shipped = readdirSync(join(project, 'node_modules', 'hyco-ws-rs'));
  const entries = Object.values(pkg.exports).filter((e) => typeof e === 'object');
  const declarations = [pkg.types, 'ws-interop.d.cts', ...entries.flatMap((e) => [e.import.types, e.require.types])];
  assert.ok(declarations.includes('./hyco-ws.d.ts') && declarations.includes('./hyco-ws.d.mts'));
  for (const file of declarations) {
    assert.ok(shipped.includes(file.replace(/^\.\//, '')), `${file} ships`);
  }
  assert.ok(files.some((f) => f.name.startsWith('readme-')), 'the README has TypeScript blocks under "TypeScript"');
  assert.ok(files.some((f) => f.name.startsWith('example-')), 'examples/ has TypeScript');
});

test(`the README states the lowest TypeScript tested (${LOWEST}) and lists each one tested`, () => {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## TypeScript\n'), readme.indexOf('\n## ', readme.indexOf('\n## TypeScript\n') + 1));
  const minor = (version) => version.split('.').slice(0, 2).join('\\.');
  assert.match(section, new RegExp(`^TypeScript ${minor(LOWEST)} or later`, 'm'));
  for (const { version } of COMPILERS) assert.match(section, new RegExp(`\\b${minor(version)}\\b`), `${version} is listed`);
});

// The lowest TypeScript checks the way `tsc --init` sets a project up, with `skipLibCheck`;
// the others check every declaration file too (ours, ws's and Node's), as with
// `skipLibCheck: false`.
describe('tsc --strict over the installed package', { concurrency: 2 }, () => {
  for (const compiler of COMPILERS) {
    const skipLibCheck = compiler.version === LOWEST;
    for (const mode of MODES) {
      const skip = unsupported(compiler, mode);
      it(`TypeScript ${compiler.version}${skipLibCheck ? ' (skipLibCheck)' : ''}, ${mode.name}`, { skip }, async () => {
        const dir = join(project, mode.dir);
        const tsc = join(project, 'node_modules', compiler.name, 'bin', 'tsc');
        const args = [tsc, '-p', dir, '--listFiles', ...(skipLibCheck ? ['--skipLibCheck'] : [])];
        const { code, output } = await run(process.execPath, args, dir);
        const diagnostics = output.split('\n').filter((l) => !l.startsWith('/')).join('\n');
        assert.equal(code, 0, `tsc failed in ${relative(project, dir)}:\n${diagnostics}`);
        const listed = new Set(output.split('\n').map((l) => l.trim()));
        const installed = (...path) => join(project, 'node_modules', ...path);
        assert.ok(listed.has(installed('hyco-ws-rs', mode.entry)), `${mode.name} reads ${mode.entry}`);
        const compatEntry = mode.entry.replace(/^index/, 'hyco-ws');
        assert.ok(listed.has(installed('hyco-ws-rs', compatEntry)), `${mode.name} reads ${compatEntry} for hyco-ws-rs/hyco-ws`);
        assert.ok(listed.has(installed('hyco-ws-rs', 'ws-interop.d.cts')));
        assert.ok(
          listed.has(installed('@types', 'ws', 'index.d.ts')) || listed.has(installed('@types', 'ws', 'index.d.mts')),
          'ws\'s types come from the @types/ws that hyco-ws-rs brings'
        );
        const { files: checked } = JSON.parse(readFileSync(join(dir, 'tsconfig.json'), 'utf8'));
        for (const name of checked) assert.ok(listed.has(join(dir, name)), `${name} was checked`);
        const expected = ['named-api', 'named-negative', 'example-typescript-listener', 'readme-line-'];
        expected.push('named-compat', 'named-compat-negative', 'named-compat-deprecated');
        if (mode.styles.includes('namespace')) expected.push('namespace-hyco-ws', 'namespace-compat');
        if (mode.styles.includes('require')) expected.push('require-compat');
        if (mode.styles.includes('default')) expected.push('default-compat');
        for (const name of expected) assert.ok(checked.some((f) => f.startsWith(name)), `${name} is checked in ${mode.name}`);
      });
    }
  }
  it(`TypeScript ${COMPILERS.find((c) => c.name === 'typescript').version}, the README's JavaScript (checkJs, nodenext)`, async () => {
    const dir = join(project, 'readme-js');
    const tsc = join(project, 'node_modules', 'typescript', 'bin', 'tsc');
    const { code, output } = await run(process.execPath, [tsc, '-p', dir, '--skipLibCheck'], dir);
    assert.equal(code, 0, output);
  });
});

test('a broken use fails the check: the harness is not vacuous', async () => {
  const dir = join(project, 'canary');
  mkdirSync(dir);
  const mode = MODES.find((m) => m.dir === 'nodenext-cts');
  copyFileSync(join(project, mode.dir, `named-negative${mode.ext}`), join(dir, 'negative.ts'));
  // The first refused use, with its @ts-expect-error removed, is an error again.
  const source = readFileSync(join(dir, 'negative.ts'), 'utf8').replace(/\/\/ @ts-expect-error[^\n]*\n/, '');
  writeFileSync(join(dir, 'negative.ts'), source);
  writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { ...BASE_OPTIONS, ...mode.compilerOptions }, files: ['negative.ts'] }));
  const tsc = join(project, 'node_modules', 'typescript', 'bin', 'tsc');
  const { code, output } = await run(process.execPath, [tsc, '-p', dir, '--skipLibCheck'], dir);
  assert.notEqual(code, 0);
  assert.match(output, /negative\.ts\(\d+,\d+\): error TS2322: Type 'string' is not assignable to type 'number'/);
});

test('ws 8\'s \'message\' listener on a relayed socket of hyco-ws-rs/hyco-ws is struck out as deprecated, and nothing else is', () => {
  // The language service's suggestion diagnostics, as an editor shows them, over the
  // installed package: every line of the fixture marked `// deprecated`, and no other.
  const mode = MODES.find((m) => m.dir === 'nodenext-cts');
  const dir = join(project, mode.dir);
  const file = join(dir, `named-compat-deprecated${mode.ext}`);
  const { options, errors } = ts.convertCompilerOptionsFromJson({ ...BASE_OPTIONS, ...mode.compilerOptions }, dir);
  assert.deepEqual(errors, []);
  const service = ts.createLanguageService({
    getScriptFileNames: () => [file],
    getScriptVersion: () => '1',
    getScriptSnapshot: (name) => (ts.sys.fileExists(name) ? ts.ScriptSnapshot.fromString(ts.sys.readFile(name)) : undefined),
    getCurrentDirectory: () => dir,
    getCompilationSettings: () => options,
    getDefaultLibFileName: (o) => ts.getDefaultLibFilePath(o),
    fileExists: ts.sys.fileExists,
    readFile: ts.sys.readFile,
    readDirectory: ts.sys.readDirectory,
    directoryExists: ts.sys.directoryExists,
    getDirectories: ts.sys.getDirectories
  });
  const lineOf = (d) => d.file.getLineAndCharacterOfPosition(d.start).line + 1;
  assert.deepEqual(service.getSemanticDiagnostics(file).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n')), []);
  const deprecated = service.getSuggestionDiagnostics(file).filter((d) => d.reportsDeprecated);
  const marked = readFileSync(file, 'utf8')
    .split('\n')
    .flatMap((line, i) => (/\/\/ deprecated$/.test(line) ? [i + 1] : []));
  assert.ok(marked.length >= 4, 'the fixture marks its ws 8 listeners');
  assert.deepEqual(deprecated.map(lineOf), marked);
  for (const d of deprecated) assert.equal(d.code, 6387, ts.flattenDiagnosticMessageText(d.messageText, '\n'));
});

test('attw: no problem in any resolution mode (node10, node16 from CJS and from ESM, bundler)', async () => {
  const attw = join(root, 'node_modules', '@arethetypeswrong', 'cli', 'dist', 'index.js');
  const { code, output } = await run(process.execPath, [attw, tarballs.main, '--format', 'json', '--no-definitely-typed'], work);
  const result = JSON.parse(output);
  const problems = Array.isArray(result.problems) ? result.problems : Object.values(result.problems || {}).flat();
  assert.deepEqual(problems, [], output.slice(0, 4000));
  assert.equal(code, 0);
  const typesOf = (entrypoint) => {
    assert.ok(result.analysis.entrypoints[entrypoint], `attw analysed ${entrypoint}`);
    const resolutions = result.analysis.entrypoints[entrypoint].resolutions;
    return Object.fromEntries(Object.entries(resolutions).map(([kind, r]) => [kind, basename(r.resolution.fileName)]));
  };
  assert.deepEqual(typesOf('.'), { node10: 'index.d.ts', 'node16-cjs': 'index.d.ts', 'node16-esm': 'index.d.mts', bundler: 'index.d.mts' });
  assert.deepEqual(typesOf('./hyco-ws'), {
    node10: 'hyco-ws.d.ts',
    'node16-cjs': 'hyco-ws.d.ts',
    'node16-esm': 'hyco-ws.d.mts',
    bundler: 'hyco-ws.d.mts'
  });
});

test('publint: no error, warning or suggestion', async () => {
  const tarball = readFileSync(tarballs.main);
  const { messages, pkg: linted } = await publint({
    pack: { tarball: tarball.buffer.slice(tarball.byteOffset, tarball.byteOffset + tarball.byteLength) },
    level: 'suggestion'
  });
  assert.deepEqual(messages.map((m) => `${m.type}: ${formatMessage(m, linted)}`), []);
});

let declarations;

/**
 * The declarations of the `index` and `hyco-ws` entry points, in one program (made once):
 * its diagnostics; `exportsOf(file)`, the names a declaration file exports, which of them are
 * values, and the members of the type a name names; `mirrored(name, …)`, which asserts that
 * a `.d.mts` mirrors its `.d.ts` and the ES module entry point.
 *
 * @return {{ diagnostics: String[], exportsOf: Function, mirrored: Function }}
 */
function declared() {
  if (!declarations) {
    const files = ['index', 'hyco-ws'].flatMap((name) => [join(root, `${name}.d.ts`), join(root, `${name}.d.mts`)]);
    const program = ts.createProgram(files, {
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      strict: true,
      noEmit: true,
      types: ['node']
    });
    const diagnostics = ts.getPreEmitDiagnostics(program).map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
    const checker = program.getTypeChecker();
    const exportsOf = (file) => {
      const symbols = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(join(root, file))));
      const resolved = (s) => (s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s);
      const isValue = (s) => Boolean(resolved(s).flags & ts.SymbolFlags.Value);
      return {
        all: symbols.map((s) => s.name).filter((n) => n !== 'prototype' && n !== 'default').sort(),
        values: symbols.filter(isValue).map((s) => s.name).filter((n) => n !== 'prototype' && n !== 'default').sort(),
        names: new Set(symbols.map((s) => s.name)),
        /** The names of the members of the type that `name` names. */
        members: (name) => {
          const symbol = resolved(symbols.find((s) => s.name === name));
          return checker.getPropertiesOfType(checker.getDeclaredTypeOfSymbol(symbol)).map((p) => p.name).sort();
        }
      };
    };
    /**
     * Asserts that `${name}.d.mts` exports every name of `${name}.d.ts`, the default too, and
     * that its values are the names the ES module entry point exports.
     */
    const mirrored = (name, esmExports, esmFile) => {
      const cjs = exportsOf(`${name}.d.ts`);
      const mjs = exportsOf(`${name}.d.mts`);
      assert.deepEqual(mjs.all, cjs.all, `${name}.d.mts lists every name of ${name}.d.ts`);
      assert.deepEqual(mjs.values, cjs.values);
      assert.ok(mjs.names.has('default'));
      assert.deepEqual(mjs.values, Object.keys(esmExports).filter((n) => n !== 'default').sort(), `the values are ${esmFile}'s exports`);
      return cjs;
    };
    declarations = { diagnostics, exportsOf, mirrored };
  }
  return declarations;
}

test('index.d.mts exports every name of index.d.ts, and its values are what wrapper.mjs exports', () => {
  const { diagnostics, mirrored } = declared();
  assert.deepEqual(diagnostics, []);
  const cjs = mirrored('index', esm, 'wrapper.mjs');
  const hyco = require('hyco-ws-rs');
  for (const name of cjs.values) assert.ok(name in hyco, `require('hyco-ws-rs').${name} exists`);
  assert.ok(!('HybridConnectionWebSocketServer' in hyco) && !cjs.values.includes('HybridConnectionWebSocketServer'), 'a type only');
  assert.ok(cjs.all.includes('HybridConnectionWebSocketServer'));
  assert.ok(!('RelayedControlChannel' in hyco) && !cjs.values.includes('RelayedControlChannel'), 'a type only');
  assert.ok(cjs.all.includes('RelayedControlChannel'));
});

test('hyco-ws.d.mts exports every name of hyco-ws.d.ts, its values are what hyco-ws.mjs and hyco-ws.js export, and it has the main entry point\'s names and members', () => {
  const { diagnostics, exportsOf, mirrored } = declared();
  assert.deepEqual(diagnostics, []);
  const cjs = mirrored('hyco-ws', esmCompat, 'hyco-ws.mjs');
  const compat = require('hyco-ws-rs/hyco-ws');
  const values = Object.keys(compat).sort();
  assert.deepEqual(cjs.values, values, 'the values are require(\'hyco-ws-rs/hyco-ws\')\'s enumerable exports');
  assert.ok(!('HybridConnectionWebSocketServer' in compat) && cjs.all.includes('HybridConnectionWebSocketServer'), 'a type only');
  // The same API as the main entry point: every name, and every member of the listener and
  // of the relayed socket (the subpath declares its own listener class: a drift check).
  const main = exportsOf('index.d.ts');
  assert.deepEqual(main.all.filter((n) => !cjs.names.has(n)), [], 'hyco-ws.d.ts has every name of index.d.ts');
  assert.deepEqual(main.values.filter((n) => !cjs.values.includes(n)), []);
  for (const name of ['RelayedServer', 'RelayedWebSocket', 'WebSocket', 'WebSocketServer']) {
    const missing = main.members(name).filter((m) => !cjs.members(name).includes(m));
    assert.deepEqual(missing, [], `hyco-ws.d.ts's ${name} has every member of index.d.ts's`);
    assert.ok(cjs.members(name).length > 10, `${name} has members`);
  }
});
