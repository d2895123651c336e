/**
 * Physical CPU cores this process may run on: what a run's `threads: 0` (auto) trains with.
 * ggml's matmuls keep a core's vector units busy, so a second hardware thread on the same core
 * (SMT / Hyper-Threading) adds contention rather than speed; one thread per physical core is
 * the usual best for llama.cpp CPU work (docs/runs.md "Threads" has this machine's numbers).
 *
 * Linux: the CPUs in this process's affinity mask (/proc/self/status Cpus_allowed_list: a
 * container or `taskset` may allow fewer than the machine has), grouped by
 * /sys/devices/system/cpu/cpuN/topology/{physical_package_id, core_id}; distinct pairs are the
 * cores. Elsewhere, or when those files cannot be read: os.availableParallelism().
 */
import { readFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';

/** "0-3,8,10-11" -> [0, 1, 2, 3, 8, 10, 11]; null when it does not parse. */
export function parseCpuList(list: string): number[] | null {
  const out: number[] = [];
  for (const part of list.trim().split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim());
    if (!m) return null;
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    if (b < a) return null;
    for (let i = a; i <= b; i++) out.push(i);
  }
  return out;
}

export interface CpuTopologySource {
  /** /sys/devices/system/cpu */
  sysCpuDir: string;
  /** Contents of /proc/self/status (for Cpus_allowed_list); null = all online CPUs. */
  procStatus: string | null;
  /** Fallback: logical CPUs this process may use. */
  fallback: number;
}

function defaultSource(): CpuTopologySource {
  let procStatus: string | null = null;
  try {
    procStatus = readFileSync('/proc/self/status', 'utf8');
  } catch {
    /* not Linux */
  }
  return {
    sysCpuDir: '/sys/devices/system/cpu',
    procStatus,
    fallback: os.availableParallelism(),
  };
}

export function physicalCores(src: CpuTopologySource = defaultSource()): number {
  const read = (p: string): string | null => {
    try {
      return readFileSync(p, 'utf8').trim();
    } catch {
      return null;
    }
  };
  const allowedLine = src.procStatus ? /^Cpus_allowed_list:\s*(.+)$/m.exec(src.procStatus) : null;
  const online = read(join(src.sysCpuDir, 'online'));
  const cpus =
    (allowedLine ? parseCpuList(allowedLine[1]!) : null) ??
    (online !== null ? parseCpuList(online) : null);
  if (!cpus || cpus.length === 0) return src.fallback;
  const cores = new Set<string>();
  for (const c of cpus) {
    const dir = join(src.sysCpuDir, `cpu${c}`, 'topology');
    const pkg = read(join(dir, 'physical_package_id'));
    const core = read(join(dir, 'core_id'));
    if (core === null) {
      // An allowed CPU that is offline has no topology; one that is online but unreadable
      // means the topology is unknown.
      if (read(join(src.sysCpuDir, `cpu${c}`, 'online')) === '0') continue;
      return src.fallback;
    }
    cores.add(`${pkg ?? '0'}:${core}`);
  }
  return cores.size > 0 ? cores.size : src.fallback;
}
