import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { parseCpuList, physicalCores } from './cpu.ts';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A sysfs-like tree: cpu i has [package, core] = topo[i]; null = no topology (offline). */
function sysfs(topo: ([number, number] | null)[]): string {
  const root = mkdtempSync(join(tmpdir(), 'overnight-cpu-'));
  dirs.push(root);
  writeFileSync(join(root, 'online'), `0-${topo.length - 1}\n`);
  topo.forEach((t, i) => {
    const dir = join(root, `cpu${i}`);
    mkdirSync(dir, { recursive: true });
    if (t === null) {
      writeFileSync(join(dir, 'online'), '0\n');
      return;
    }
    mkdirSync(join(dir, 'topology'));
    writeFileSync(join(dir, 'topology', 'physical_package_id'), `${t[0]}\n`);
    writeFileSync(join(dir, 'topology', 'core_id'), `${t[1]}\n`);
  });
  return root;
}

test('CPU lists parse as the kernel writes them', () => {
  assert.deepEqual(parseCpuList('0-3,8,10-11\n'), [0, 1, 2, 3, 8, 10, 11]);
  assert.equal(parseCpuList('0-x'), null);
  assert.equal(parseCpuList('3-1'), null);
});

test('physical cores: hardware threads of one core count once, per package', () => {
  // 8 logical CPUs: two packages of two cores, two threads each (Linux numbers siblings apart).
  const smt = sysfs([
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
    [0, 0],
    [0, 1],
    [1, 0],
    [1, 1],
  ]);
  assert.equal(physicalCores({ sysCpuDir: smt, procStatus: null, fallback: 8 }), 4);
  // An affinity mask of two siblings is one core.
  const status = 'Name:\tnode\nCpus_allowed_list:\t0,4\n';
  assert.equal(physicalCores({ sysCpuDir: smt, procStatus: status, fallback: 2 }), 1);
  // No SMT: one core per CPU; an offline CPU is not counted.
  const plain = sysfs([[0, 0], [0, 1], [0, 2], null]);
  assert.equal(physicalCores({ sysCpuDir: plain, procStatus: null, fallback: 3 }), 3);
});

test('physical cores fall back to the logical count when the topology cannot be read', () => {
  assert.equal(
    physicalCores({ sysCpuDir: join(tmpdir(), 'no-such-sysfs'), procStatus: null, fallback: 6 }),
    6,
  );
  // Online but without topology files: unknown, not zero.
  const broken = sysfs([[0, 0]]);
  mkdirSync(join(broken, 'cpu1'));
  writeFileSync(join(broken, 'online'), '0-1\n');
  assert.equal(physicalCores({ sysCpuDir: broken, procStatus: null, fallback: 2 }), 2);
  // This machine: at least one core, at most its logical CPUs.
  const here = physicalCores();
  assert.ok(here >= 1 && here <= availableParallelism(), `${here} cores`);
});
