/**
 * Whether the system can back a heap with transparent huge pages at all.
 *
 * `madvise(MADV_HUGEPAGE)` succeeds even when the system's setting is
 * `never` (the kernel records the advice and then ignores it), so the heap
 * would believe it had huge pages: it would give memory back in 2 MiB groups
 * only and leave its pages write-protected after each cycle
 * (HeapOptions.restoreWritable applies to 4 KiB pages only). The setting is
 * read once, when a heap is made.
 */
import { readFileSync } from 'node:fs';

const SETTING = '/sys/kernel/mm/transparent_hugepage/enabled';

/**
 * From the setting's text ("always [madvise] never", the bracket marking the
 * one in force): false only for `never`. Anything else, or no file (a kernel
 * without transparent huge pages, where madvise itself then fails and says
 * so), leaves it to madvise.
 */
export function hugePagesPossible(setting: string | undefined): boolean {
  return !(setting !== undefined && /\[never\]/.test(setting));
}

/** The system's setting, or undefined where it cannot be read. */
export function readHugePageSetting(path: string = SETTING): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}
