/**
 * Peers in other languages, built into bench/results/tmp/ when their toolchain is
 * present; otherwise a clear `skipped peer ...` line (never silently):
 *   - D (ldc2): binary-trees with druntime's GC, default and `--DRT-gcopt=fork:1`
 *     (druntime's own fork()ed concurrent marking — the closest relative of forkgc).
 *   - C with the Boehm-Demers-Weiser GC (libgc-dev): binary-trees and GCBench.
 * Each peer prints the workload's output lines and `@@PEER {json}` with its GC's
 * own pause figures and getrusage maxrss.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { resolve } from 'node:path';
import type { Params } from './workloads/types.js';

export interface PeerBinary {
  id: string;
  /** Human name for skip lines. */
  name: string;
  source: string;
  binary: string;
  available: boolean;
  skipReason?: string;
}

export interface PeerRun {
  workload: string;
  system: string;
  binary: PeerBinary;
  args(p: Params): string[];
}

function hasCommand(cmd: string, args: string[] = ['--version']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

function newer(a: string, b: string): boolean {
  return existsSync(a) && statSync(a).mtimeMs >= statSync(b).mtimeMs;
}

function build(cmd: string, args: string[]): string | null {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.error) return r.error.message;
  if (r.status !== 0) return (r.stderr || r.stdout || `exit ${r.status}`).trim().split('\n').slice(-3).join(' | ');
  return null;
}

/** Builds what can be built. Returns every peer binary, available or with a skip reason. */
export function buildPeers(root: string): PeerBinary[] {
  const src = resolve(root, 'bench/peers');
  const out = resolve(root, 'bench/results/tmp');
  mkdirSync(out, { recursive: true });
  const peers: PeerBinary[] = [];

  const dSrc = resolve(src, 'binarytrees.d');
  const dBin = resolve(out, 'binarytrees_d');
  const d: PeerBinary = { id: 'd', name: 'D', source: dSrc, binary: dBin, available: false };
  if (!hasCommand('ldc2')) {
    d.skipReason = 'ldc2 not installed: apt-get install ldc';
  } else if (!newer(dBin, dSrc)) {
    const err = build('ldc2', ['-O3', '-release', `-of=${dBin}`, `-od=${out}`, dSrc]);
    if (err) d.skipReason = `ldc2 build failed: ${err}`;
  }
  d.available = !d.skipReason;
  peers.push(d);

  const gcHeader = ['/usr/include/gc.h', '/usr/include/gc/gc.h', '/usr/local/include/gc.h'].some(existsSync);
  const cc = process.env.CC ?? 'cc';
  for (const [id, file] of [
    ['boehm-binarytrees', 'binarytrees_boehm.c'],
    ['boehm-gcbench', 'gcbench_boehm.c'],
  ] as const) {
    const s = resolve(src, file);
    const bin = resolve(out, file.replace(/\.c$/, ''));
    const p: PeerBinary = { id, name: `C/Boehm (${file})`, source: s, binary: bin, available: false };
    if (!hasCommand(cc)) {
      p.skipReason = `no C compiler (${cc}): apt-get install gcc`;
    } else if (!gcHeader) {
      p.skipReason = 'Boehm GC headers not installed: apt-get install libgc-dev';
    } else if (!newer(bin, s) || !newer(bin, resolve(src, 'boehm_common.h'))) {
      const err = build(cc, ['-O2', '-o', bin, s, '-lgc']);
      if (err) p.skipReason = `cc -lgc build failed: ${err}`;
    }
    p.available = !p.skipReason;
    peers.push(p);
  }
  return peers;
}

export function peerRuns(peers: PeerBinary[]): PeerRun[] {
  const byId = new Map(peers.map((p) => [p.id, p]));
  return [
    { workload: 'binary-trees', system: 'd-gc', binary: byId.get('d')!, args: (p) => [String(p.depth)] },
    {
      workload: 'binary-trees',
      system: 'd-gc-fork',
      binary: byId.get('d')!,
      args: (p) => [String(p.depth), '--DRT-gcopt=fork:1'],
    },
    { workload: 'binary-trees', system: 'boehm', binary: byId.get('boehm-binarytrees')!, args: (p) => [String(p.depth)] },
    {
      workload: 'gcbench',
      system: 'boehm',
      binary: byId.get('boehm-gcbench')!,
      args: (p) =>
        [p.stretchTreeDepth, p.longLivedTreeDepth, p.arraySize, p.minTreeDepth, p.maxTreeDepth].map(String),
    },
  ];
}
