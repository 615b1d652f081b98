/** Process-level samplers reading /proc (Linux only; every reader degrades to null). */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

function statusField(pid: number | 'self', field: string): number | null {
  try {
    const txt = readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s*kB`, 'm').exec(txt);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Peak resident set size of this process (VmHWM), falling back to resourceUsage().maxRSS. */
export function peakRssBytes(): number {
  return statusField('self', 'VmHWM') ?? process.resourceUsage().maxRSS * 1024;
}

export function currentRssBytes(): number {
  return statusField('self', 'VmRSS') ?? process.memoryUsage().rss;
}

/** fd number -> readlink target, for naming what leaked. */
export function openFds(): Map<number, string> {
  const out = new Map<number, string>();
  try {
    for (const e of readdirSync('/proc/self/fd')) {
      try {
        out.set(Number(e), readlinkSync(`/proc/self/fd/${e}`));
      } catch {
        /* closed meanwhile (the readdir's own fd) */
      }
    }
  } catch {
    /* not Linux */
  }
  return out;
}

export function openFdCount(): number | null {
  try {
    return readdirSync('/proc/self/fd').length;
  } catch {
    return null;
  }
}

/** Direct children of `ppid` (default: this process), from /proc/<pid>/stat. */
export function childPids(ppid: number = process.pid): number[] {
  const out: number[] = [];
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      // pid (comm) state ppid ... ; comm may contain spaces and parentheses.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(rest[1]) === ppid) out.push(Number(e));
    } catch {
      /* raced with exit */
    }
  }
  return out;
}

export function zombieChildren(ppid: number = process.pid): number[] {
  return childPids(ppid).filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      return stat.slice(stat.lastIndexOf(')') + 2)[0] === 'Z';
    } catch {
      return false;
    }
  });
}

export function readFirstLine(path: string): string | null {
  try {
    return readFileSync(path, 'utf8').split('\n')[0].trim();
  } catch {
    return null;
  }
}

export function kernelRelease(): string {
  return readFirstLine('/proc/sys/kernel/osrelease') ?? 'unknown';
}

export function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    return m ? m[1] : 'unknown';
  } catch {
    return 'unknown';
  }
}

/** The bracketed choice of /sys/kernel/mm/transparent_hugepage/enabled, e.g. "madvise". */
export function thpMode(): string {
  const line = readFirstLine('/sys/kernel/mm/transparent_hugepage/enabled');
  const m = line ? /\[(\w+)\]/.exec(line) : null;
  return m ? m[1] : 'unavailable';
}

/** A field of /proc/self/smaps_rollup in bytes (e.g. AnonHugePages), or null. */
export function smapsRollup(field: string): number | null {
  try {
    const txt = readFileSync('/proc/self/smaps_rollup', 'utf8');
    const m = new RegExp(`^${field}:\\s+(\\d+)\\s*kB`, 'm').exec(txt);
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/**
 * Time the hypervisor took from the whole machine (every CPU together) so
 * far, in ms: the steal column of /proc/stat's first line, in USER_HZ ticks
 * (100 a second on Linux); null where /proc/stat lacks it. With
 * CONFIG_PARAVIRT_TIME_ACCOUNTING (this VM's kernel has it) stolen time is
 * in no thread's run or run-queue time (lib/thread-clock.ts).
 */
export function machineStealMs(): number | null {
  const cpu = readFirstLine('/proc/stat');
  if (!cpu?.startsWith('cpu ')) return null;
  // cpu user nice system idle iowait irq softirq steal ...
  const f = cpu.split(/\s+/);
  return f.length > 8 ? Number(f[8]) * 10 : null;
}
