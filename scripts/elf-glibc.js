'use strict';

/**
 * Reads which symbol versions an ELF shared object needs from the libraries it links
 * (its `.gnu.version_r` section, what `readelf -V` prints under "Version needs"), and so the
 * oldest glibc it loads on: the highest `GLIBC_x.y` among them.
 *
 * Usage: node scripts/elf-glibc.js FILE [--max X.Y]
 *
 * Prints the highest `GLIBC_` version FILE needs; with `--max`, exits 1 when that is newer.
 */

const fs = require('fs');

/** The section type of version needs (SHT_GNU_verneed). */
const SHT_GNU_VERNEED = 0x6ffffffe;

/**
 * An error about a file that is not the ELF this reads.
 *
 * @param {String} file The file
 * @param {String} why What is wrong
 * @return {Error} The error, with code `ERR_HYCO_ELF`
 */
function elfError(file, why) {
  const err = new Error(`${file}: ${why}`);
  err.code = 'ERR_HYCO_ELF';
  return err;
}

/**
 * The symbol versions that an ELF file needs, per library.
 *
 * @param {String} file The ELF file (32 or 64 bits, either byte order)
 * @return {Array<{ library: String, version: String }>} e.g.
 *     `{ library: 'libc.so.6', version: 'GLIBC_2.17' }`, in the file's order
 * @throws {Error} With code `ERR_HYCO_ELF` when the file is not ELF or is cut short
 */
function versionNeeds(file) {
  const bytes = fs.readFileSync(file);
  if (bytes.length < 52 || bytes.readUInt32BE(0) !== 0x7f454c46) throw elfError(file, 'not an ELF file');
  const is64 = bytes[4] === 2;
  const le = bytes[5] === 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u16 = (at) => view.getUint16(at, le);
  const u32 = (at) => view.getUint32(at, le);
  // Offsets of a section header's fields that this reads: 32-bit and 64-bit layouts.
  const word = (at) => (is64 ? Number(view.getBigUint64(at, le)) : u32(at));
  const sh = is64 ? { type: 4, offset: 24, size: 32, link: 40, info: 44 } : { type: 4, offset: 16, size: 20, link: 24, info: 28 };

  try {
    const shoff = word(is64 ? 0x28 : 0x20);
    const shentsize = u16(is64 ? 0x3a : 0x2e);
    const shnum = u16(is64 ? 0x3c : 0x30);
    const section = (i) => {
      const at = shoff + i * shentsize;
      return { type: u32(at + sh.type), offset: word(at + sh.offset), size: word(at + sh.size), link: u32(at + sh.link), info: u32(at + sh.info) };
    };
    const needs = [];
    for (let i = 0; i < shnum; i++) {
      const verneed = section(i);
      if (verneed.type !== SHT_GNU_VERNEED) continue;
      const strings = section(verneed.link);
      const string = (at) => {
        const start = strings.offset + at;
        const end = bytes.indexOf(0, start);
        if (end < 0 || at >= strings.size) throw new RangeError('string out of bounds');
        return bytes.toString('latin1', start, end);
      };
      // Elf_Verneed: vn_version, vn_cnt, vn_file, vn_aux, vn_next; Elf_Vernaux: vna_hash,
      // vna_flags, vna_other, vna_name, vna_next. Offsets are relative to their entry.
      let entry = verneed.offset;
      for (let n = 0; n < verneed.info; n++) {
        const library = string(u32(entry + 4));
        let aux = entry + u32(entry + 8);
        for (let k = 0; k < u16(entry + 2); k++) {
          needs.push({ library, version: string(u32(aux + 8)) });
          aux += u32(aux + 12);
        }
        const next = u32(entry + 12);
        if (next === 0) break;
        entry += next;
      }
    }
    return needs;
  } catch (err) {
    if (err instanceof RangeError) throw elfError(file, `cut short or malformed ELF (${err.message})`);
    throw err;
  }
}

/**
 * Compares two dotted version numbers.
 *
 * @param {String} a e.g. `2.17`
 * @param {String} b e.g. `2.3.4`
 * @return {Number} Negative, zero or positive, as `a` is older, the same or newer
 */
function compareVersions(a, b) {
  const x = a.split('.').map(Number);
  const y = b.split('.').map(Number);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] || 0) - (y[i] || 0);
    if (d) return d;
  }
  return 0;
}

/**
 * The newest glibc version that an ELF file needs a symbol of (`GLIBC_PRIVATE` aside).
 *
 * @param {String} file The ELF file
 * @return {String|null} e.g. `2.17`, or null when it needs no versioned glibc symbol
 */
function highestGlibc(file) {
  let highest = null;
  for (const { version } of versionNeeds(file)) {
    const m = /^GLIBC_(\d+(?:\.\d+)*)$/.exec(version);
    if (m && (highest === null || compareVersions(m[1], highest) > 0)) highest = m[1];
  }
  return highest;
}

if (require.main === module) {
  const [file, flag, max] = process.argv.slice(2);
  if (!file || (flag && (flag !== '--max' || !max))) {
    console.error('Usage: node scripts/elf-glibc.js FILE [--max X.Y]');
    process.exit(2);
  }
  try {
    const highest = highestGlibc(file);
    console.log(highest || 'none');
    if (max && highest && compareVersions(highest, max) > 0) {
      console.error(`${file} needs glibc ${highest}, newer than ${max}`);
      process.exit(1);
    }
  } catch (err) {
    console.error(err.message);
    process.exit(1);
  }
}

module.exports = { compareVersions, highestGlibc, versionNeeds };
