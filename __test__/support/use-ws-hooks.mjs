// Module resolution hooks of use-ws.mjs: `import 'ws'` resolves to the stand-in package.
let target;

/**
 * @param {{ target: string }} data From `register`.
 */
export function initialize(data) {
  target = data.target;
}

/**
 * @param {string} specifier The specifier.
 * @param {object} context The context.
 * @param {Function} next The next hook.
 * @returns {Promise<object>}
 */
export async function resolve(specifier, context, next) {
  const swapped = specifier === 'ws' || specifier.startsWith('ws/') ? target + specifier.slice(2) : specifier;
  return next(swapped, context);
}
