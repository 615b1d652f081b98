// Whether this process may compile code from strings (new Function). The
// hot paths compile small functions per type and size class with constants
// written in (src/api/accessors.ts, the allocator's preparers); a process run
// with --disallow-code-generation-from-strings (or a context whose embedder
// forbids it) throws EvalError at any such compile. There the heap keeps its
// generic closures, the same semantics, slower, instead of failing: the
// compiled code is an optimization, never a requirement.
let allowed: boolean | undefined;

export function codeGenerationAllowed(): boolean {
  if (allowed === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-implied-eval
      allowed = new Function('return 1')() === 1;
    } catch {
      allowed = false;
    }
  }
  return allowed;
}
