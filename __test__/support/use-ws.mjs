// Preload (`node --import`): every `require('ws')` and `import 'ws'` in the process (this
// package's lib/ and the test files alike) loads the package named by HYCO_TEST_WS instead,
// e.g. `ws-lowest`, the devDependency alias of the lowest ws 8 the package supports. Used by
// __test__/ws-versions.test.mjs.
import Module, { register } from 'node:module';

const target = process.env.HYCO_TEST_WS;
if (!target) throw new Error('use-ws.mjs: set HYCO_TEST_WS to the package that stands in for ws');

/**
 * The specifier with `ws` replaced by the stand-in.
 *
 * @param {string} specifier A module specifier.
 * @returns {string}
 */
function swap(specifier) {
  return specifier === 'ws' || specifier.startsWith('ws/') ? target + specifier.slice(2) : specifier;
}

const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function resolveStandIn(request, ...rest) {
  return resolveFilename.call(this, swap(request), ...rest);
};
register('./use-ws-hooks.mjs', import.meta.url, { data: { target } });
