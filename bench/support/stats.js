'use strict';

/**
 * Small helpers shared by the benchmarks: medians and human-readable sizes and rates.
 */

/**
 * The median of a list of numbers.
 *
 * @param {Number[]} xs The numbers (at least one)
 * @return {Number} The median
 */
function median(xs) {
  if (xs.length === 0) throw new RangeError('median of an empty list');
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/**
 * The `p`-th percentile of a list of numbers, by the nearest-rank method: the smallest
 * value that at least `p` percent of the list is less than or equal to (`p = 50` of an
 * even-length list is the lower middle value, not the mean of the two).
 *
 * @param {Number[]} xs The numbers (at least one)
 * @param {Number} p The percentile, from 0 (exclusive) to 100
 * @return {Number} The percentile
 */
function percentile(xs, p) {
  if (xs.length === 0) throw new RangeError('percentile of an empty list');
  if (!(p > 0 && p <= 100)) throw new RangeError(`percentile out of range: ${p}`);
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length, Math.ceil((p / 100) * s.length)) - 1];
}

/**
 * A byte count as `64 B`, `4 KiB`, `1 MiB`, `1.5 GiB`.
 *
 * @param {Number} bytes The byte count
 * @return {String} The label
 */
function formatSize(bytes) {
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let n = bytes;
  let u = 0;
  while (n >= 1024 && u < units.length - 1) {
    n /= 1024;
    u++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[u]}`;
}

/**
 * A rate with thousands separators and a sensible number of decimals.
 *
 * @param {Number} x The rate
 * @return {String} The formatted rate
 */
function formatRate(x) {
  if (!Number.isFinite(x)) return String(x);
  const digits = x >= 100 ? 0 : x >= 10 ? 1 : 2;
  return x.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

module.exports = { median, percentile, formatSize, formatRate };
