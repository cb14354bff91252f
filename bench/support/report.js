'use strict';

/**
 * What every benchmark prints about its run: the machine, the addon it measured (so that a
 * run that overlapped a rebuild can be told apart), and result tables as text and markdown.
 */

const crypto = require('crypto');
const fs = require('fs');
const os = require('os');
const path = require('path');

/**
 * What ran where, for the header and the markdown section.
 *
 * @param {String} addon The addon file measured
 * @return {Object} `{ cpuModel, cores, memGiB, node, ws, bufferutil, platform, addon, date }`
 */
function machine(addon) {
  const cpus = os.cpus();
  let bufferutil = 'no';
  try {
    require.resolve('bufferutil');
    bufferutil = process.env.WS_NO_BUFFER_UTIL ? 'installed, disabled' : 'yes';
  } catch {
    // Not installed.
  }
  return {
    cpuModel: cpus.length ? cpus[0].model.replace(/\s+/g, ' ').trim() : 'unknown CPU',
    cores: cpus.length,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    ws: require('ws/package.json').version,
    bufferutil,
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    addon: addonStamp(addon),
    date: new Date().toISOString()
  };
}

/**
 * The addon file's modification time and a hash prefix, so that a rebuild during the run
 * can be noticed.
 *
 * @param {String} addon The addon file
 * @return {String} The stamp, or `missing`
 */
function addonStamp(addon) {
  try {
    const stat = fs.statSync(addon);
    const hash = crypto.createHash('sha256').update(fs.readFileSync(addon)).digest('hex').slice(0, 12);
    return `${path.basename(addon)} ${stat.size} bytes, sha256 ${hash}…, mtime ${stat.mtime.toISOString()}`;
  } catch {
    return 'missing';
  }
}

/**
 * Lays out rows as a table with right-aligned columns (the first left-aligned).
 *
 * @param {String[][]} rows The rows, the first being the heading
 * @return {String[]} Lines
 */
function table(rows) {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => (r[c] || '').length)));
  return rows.map((r) =>
    r.map((cell, c) => (c === 0 || c === 4 ? (cell || '').padEnd(widths[c]) : (cell || '').padStart(widths[c]))).join('  ').trimEnd()
  );
}

/**
 * The same rows as a markdown table.
 *
 * @param {String[][]} rows The rows, the first being the heading
 * @return {String[]} Lines
 */
function markdownTable(rows) {
  const line = (r) => `| ${r.map((c) => c || '').join(' | ')} |`;
  const align = rows[0].map((_, c) => (c === 0 || c === 4 ? '---' : '---:'));
  return [line(rows[0]), line(align), ...rows.slice(1).map(line)];
}

module.exports = { addonStamp, machine, markdownTable, table };
