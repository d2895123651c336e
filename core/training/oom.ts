/**
 * Telling an out-of-memory death of the training process from any other crash, so the
 * supervisor can take the OOM path (a plain message; with `oomFallback`, a retry with less
 * memory) instead of retrying the same thing.
 *
 * Three ways a real OOM shows up, all handled here or in worker.ts:
 *  - The trainer reports it: the addon returns E_OOM when ggml cannot allocate a buffer
 *    (graph reserve, LoRA buffers); a C++ `std::bad_alloc` or a JS allocation failure that
 *    reaches worker.ts as an exception is mapped to E_OOM there (`isAllocationFailure`).
 *  - The process aborts: an allocation failure deep in ggml / llama.cpp / the C++ runtime ends
 *    in abort() (SIGABRT) after printing why; a child that dies by a signal or a non-zero exit
 *    with such a line in its stderr is E_OOM.
 *  - The kernel kills it: the OOM killer sends SIGKILL, which looks exactly like `kill -9`.
 *    The evidence is the `oom_kill` counter of the child's memory cgroup (cgroup v2
 *    `memory.events`, v1 `memory.oom_control`), read when the child starts and after it died:
 *    SIGKILL and a counter that went up is E_OOM; SIGKILL without it stays E_CRASH.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { TrainerErrorCode } from '../../contract/training.ts';

/** Lines that allocation failures print before an abort (ggml, llama.cpp, libstdc++, V8, libc). */
const ALLOCATION_FAILURE = [
  /std::bad_alloc/,
  /\bfailed to allocate\b/i,
  /\binsufficient memory\b/i,
  /\bcannot allocate memory\b/i,
  /\bout of memory\b/i,
  /\bArray buffer allocation failed\b/,
  /\bFatal process OOM\b/,
  /\bAllocation failed\b.*\bheap\b/i,
];

/** Does this text (stderr, an error message) report a failed memory allocation? */
export function isAllocationFailure(text: string): boolean {
  return ALLOCATION_FAILURE.some((re) => re.test(text));
}

/** The memory cgroup of a process: the file with its `oom_kill` counter. */
export interface MemoryCgroup {
  /** cgroup v2 or v1 (the `memory` controller of a v1 hierarchy). */
  version: 1 | 2;
  dir: string;
  /** v2: memory.events; v1: memory.oom_control (both have an `oom_kill N` line). */
  countersFile: string;
}

interface Mount {
  root: string;
  point: string;
  fstype: string;
  superOptions: string[];
}

function mounts(): Mount[] {
  const out: Mount[] = [];
  let text: string;
  try {
    text = readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return out;
  }
  for (const line of text.split('\n')) {
    // id parent major:minor root mountpoint options [optional fields] - fstype source superoptions
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const left = line.slice(0, sep).split(' ');
    const right = line.slice(sep + 3).split(' ');
    const unescape = (s: string) =>
      s.replace(/\\(\d{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
    out.push({
      root: unescape(left[3] ?? ''),
      point: unescape(left[4] ?? ''),
      fstype: right[0] ?? '',
      superOptions: (right[2] ?? '').split(','),
    });
  }
  return out;
}

function under(m: Mount, cgPath: string): string | null {
  if (m.root === '/') return join(m.point, cgPath);
  if (cgPath === m.root || cgPath.startsWith(`${m.root}/`))
    return join(m.point, cgPath.slice(m.root.length));
  return null;
}

/**
 * The memory cgroup a process is in (Linux), from /proc/<pid>/cgroup and the cgroup mounts:
 * the v1 `memory` hierarchy when there is one (hybrid systems keep the controller there), else
 * the v2 group. Null where there is none or it cannot be read (macOS, Windows, no /proc).
 */
export function memoryCgroupOf(pid: number): MemoryCgroup | null {
  let lines: string[];
  try {
    lines = readFileSync(`/proc/${pid}/cgroup`, 'utf8').trim().split('\n');
  } catch {
    return null;
  }
  const all = mounts();
  for (const line of lines) {
    // hierarchy-id:controllers:path
    const [, controllers = '', path = ''] = line.split(/:(.*?):/);
    if (!controllers.split(',').includes('memory')) continue;
    for (const m of all) {
      if (m.fstype !== 'cgroup' || !m.superOptions.includes('memory')) continue;
      const dir = under(m, path);
      if (dir && existsSync(join(dir, 'memory.oom_control')))
        return { version: 1, dir, countersFile: join(dir, 'memory.oom_control') };
    }
  }
  const v2 = lines.find((l) => l.startsWith('0::'));
  if (v2) {
    const path = v2.slice(3);
    for (const m of all) {
      if (m.fstype !== 'cgroup2') continue;
      const dir = under(m, path);
      if (dir && existsSync(join(dir, 'memory.events')))
        return { version: 2, dir, countersFile: join(dir, 'memory.events') };
    }
  }
  return null;
}

/** The cgroup's count of processes the OOM killer killed, or null when it cannot be read. */
export function oomKillCount(cg: MemoryCgroup | null): number | null {
  if (!cg) return null;
  try {
    const m = /^oom_kill (\d+)$/m.exec(readFileSync(cg.countersFile, 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

export interface Death {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** The end of the child's stderr. */
  stderrTail: string;
  /** The child's cgroup and its oom_kill counter when the child started and after it died. */
  cgroup: MemoryCgroup | null;
  oomKillsBefore: number | null;
  oomKillsAfter: number | null;
}

/** E_OOM or E_CRASH, with a message in plain words, for a child that died without a result. */
export function classifyDeath(d: Death): { code: TrainerErrorCode; message: string } {
  const last = d.stderrTail.trim().split('\n').slice(-3).join(' | ');
  const output = last ? `; last output: ${last}` : '';
  if (
    d.signal === 'SIGKILL' &&
    d.oomKillsBefore !== null &&
    d.oomKillsAfter !== null &&
    d.oomKillsAfter > d.oomKillsBefore
  ) {
    return {
      code: 'E_OOM',
      message:
        `the training process ran out of memory: the kernel's out-of-memory killer stopped it ` +
        `(memory cgroup ${d.cgroup?.dir}: oom_kill ${d.oomKillsBefore} -> ${d.oomKillsAfter})`,
    };
  }
  const why = d.signal ? `was killed by ${d.signal}` : `exited with code ${d.code}`;
  // Only the end of stderr: what it printed just before dying, not an old, handled failure.
  if (d.signal !== 'SIGKILL' && isAllocationFailure(d.stderrTail.slice(-4096))) {
    return {
      code: 'E_OOM',
      message: `the training process ran out of memory: a memory allocation failed and it ${why}${output}`,
    };
  }
  return {
    code: 'E_CRASH',
    message: `the training process ${why} without reporting a result${output}`,
  };
}
