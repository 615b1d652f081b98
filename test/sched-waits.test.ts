// The scheduler-trace reader behind bench/sched-waits.ts: it must pick the
// benchmark's main thread (the tid equal to the busiest process's id, not a
// busier thread of it) and charge each stretch off the CPU to the state the
// thread left in.
import { describe, expect, it } from 'vitest';
import { mainThread, offCpu, parse } from '../bench/sched-waits.js';

// perf script -F comm,pid,tid,cpu,time,event,trace
const sw = (tgid: number, tid: number, cpu: number, s: number, state: string, nextComm: string, next: number) =>
  `            node ${tgid}/${tid}  [00${cpu}] ${s.toFixed(6)}: sched:sched_switch: prev_comm=node prev_pid=${tid} ` +
  `prev_prio=120 prev_state=${state} ==> next_comm=${nextComm} next_pid=${next} next_prio=120`;

const trace = [
  // main (100) is preempted by a helper thread (101) for 2 ms
  sw(100, 100, 0, 1.000, 'R', 'node', 101),
  sw(100, 101, 0, 1.002, 'S', 'node', 100),
  // main blocks in the kernel (D) for 5 ms while the helper runs
  sw(100, 100, 0, 1.010, 'D', 'node', 101),
  sw(100, 101, 0, 1.015, 'S', 'node', 100),
  // the helper switches often on the other CPU (it must not be taken for main)
  ...Array.from({ length: 6 }, (_, i) => sw(100, 102, 1, 1.02 + i * 0.001, 'S', 'swapper/1', 0)),
  // main sleeps 1 ms
  sw(100, 100, 0, 1.030, 'S', 'swapper/0', 0),
  `         swapper     0/0     [000] 1.031000: sched:sched_switch: prev_comm=swapper/0 prev_pid=0 prev_prio=120 prev_state=R ==> next_comm=node next_pid=100 next_prio=120`,
  'a line that is not a switch',
].join('\n');

describe('sched-waits', () => {
  const ev = parse(trace);

  it('reads every switch and only switches', () => {
    expect(ev).toHaveLength(12);
    expect(ev[0]).toMatchObject({ tgid: 100, cpu: 0, prevPid: 100, state: 'R', nextPid: 101 });
    expect(ev[0].t).toBeCloseTo(1000, 6);
  });

  it("finds the main thread by its process, not by the busiest thread", () => {
    expect(mainThread(ev)).toBe(100);
  });

  it('charges each stretch off the CPU to the state the thread left in', () => {
    const { byState, longest } = offCpu(ev, 100);
    expect(byState.get('R')?.ms).toBeCloseTo(2, 6);
    expect(byState.get('D')?.ms).toBeCloseTo(5, 6);
    expect(byState.get('S')?.ms).toBeCloseTo(1, 6);
    expect(byState.get('D')?.over1).toBe(1);
    expect(longest[0]).toMatchObject({ state: 'D' });
  });
});
