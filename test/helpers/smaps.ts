/** Reading one mapping's entry in /proc/self/smaps. */
import { readFileSync } from 'node:fs';

/** The lines of the smaps entry of the mapping that holds `address` (none if unmapped). */
function entryAt(address: bigint): string[] {
  const out: string[] = [];
  let inside = false;
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const range = /^([0-9a-f]+)-([0-9a-f]+) /.exec(line);
    if (range) {
      if (inside) break;
      inside = BigInt(`0x${range[1]}`) <= address && address < BigInt(`0x${range[2]}`);
      continue;
    }
    if (inside) out.push(line);
  }
  return out;
}

/** The VmFlags of the mapping that holds `address` (`nh`: no huge pages, `hg`: huge pages advised). */
export function vmFlagsAt(address: bigint): string[] {
  const line = entryAt(address).find((l) => l.startsWith('VmFlags:'));
  return line ? line.slice('VmFlags:'.length).trim().split(/\s+/) : [];
}

/** AnonHugePages (bytes) of the mapping that holds `address`. */
export function anonHugeBytesAt(address: bigint): number {
  for (const line of entryAt(address)) {
    const huge = /^AnonHugePages:\s+(\d+) kB/.exec(line);
    if (huge) return Number(huge[1]) * 1024;
  }
  return 0;
}
