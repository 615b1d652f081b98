/** Fault counts of the calling thread, from /proc. */
import { readFileSync } from 'node:fs';

/** This thread's minor faults so far (field 10 of /proc/thread-self/stat). */
export function threadMinorFaults(): number {
  const stat = readFileSync('/proc/thread-self/stat', 'utf8');
  // The fields after the command name (which may hold spaces) start at field 3.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[7]);
}
