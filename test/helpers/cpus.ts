// The CPUs a process or thread may run on, as Linux lists them.
import { readFileSync } from 'node:fs';

/** `Cpus_allowed_list` ("0-3,6") of /proc/<path>/status as a set: a pid, 'self', or 'self/task/<tid>'. */
export function allowedCpus(path: number | string): Set<number> {
  const line = /^Cpus_allowed_list:\s*(.*)$/m.exec(readFileSync(`/proc/${path}/status`, 'utf8'))![1];
  const out = new Set<number>();
  for (const part of line.split(',')) {
    const [a, b] = part.split('-').map(Number);
    for (let c = a; c <= (b ?? a); c++) out.add(c);
  }
  return out;
}
