import assert from 'node:assert/strict';
import { test } from 'node:test';
import { classifyDeath, isAllocationFailure, memoryCgroupOf, oomKillCount } from './oom.ts';
import { parseBytes } from './trainer-process.ts';

const cg = {
  version: 2 as const,
  dir: '/sys/fs/cgroup/x',
  countersFile: '/sys/fs/cgroup/x/memory.events',
};
const death = (over: Partial<Parameters<typeof classifyDeath>[0]>) =>
  classifyDeath({
    code: null,
    signal: null,
    stderrTail: '',
    cgroup: cg,
    oomKillsBefore: 0,
    oomKillsAfter: 0,
    ...over,
  });

test('SIGKILL is out of memory only when the cgroup counted an OOM kill', () => {
  const oom = death({ signal: 'SIGKILL', oomKillsAfter: 1 });
  assert.equal(oom.code, 'E_OOM');
  assert.match(
    oom.message,
    /out-of-memory killer stopped it \(memory cgroup \/sys\/fs\/cgroup\/x: oom_kill 0 -> 1\)/,
  );
  assert.equal(death({ signal: 'SIGKILL' }).code, 'E_CRASH', 'kill -9 is a crash');
  assert.equal(
    death({ signal: 'SIGKILL', oomKillsBefore: null, oomKillsAfter: null }).code,
    'E_CRASH',
  );
  // an allocation line in stderr does not turn a kill -9 into an OOM
  assert.equal(death({ signal: 'SIGKILL', stderrTail: 'failed to allocate' }).code, 'E_CRASH');
});

test('an abort after an allocation failure is out of memory; other aborts are crashes', () => {
  const badAlloc = death({
    signal: 'SIGABRT',
    stderrTail:
      "terminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc\n",
  });
  assert.equal(badAlloc.code, 'E_OOM');
  assert.match(
    badAlloc.message,
    /^the training process ran out of memory: a memory allocation failed and it was killed by SIGABRT; last output: .*std::bad_alloc/,
  );
  const ggml = death({
    signal: 'SIGABRT',
    stderrTail:
      'ggml_gallocr_reserve_n_impl: failed to allocate CPU buffer of size 434450496\nGGML_ASSERT(buf) failed\n',
  });
  assert.equal(ggml.code, 'E_OOM');
  assert.equal(
    death({
      code: 1,
      stderrTail: 'Fatal process OOM in Failed to reserve virtual memory for CodeRange',
    }).code,
    'E_OOM',
  );
  const assertion = death({
    signal: 'SIGABRT',
    stderrTail: 'GGML_ASSERT(i01 >= 0 && i01 < ne01) failed',
  });
  assert.equal(assertion.code, 'E_CRASH');
  assert.match(
    assertion.message,
    /killed by SIGABRT without reporting a result; last output: GGML_ASSERT/,
  );
});

test('allocation failure texts', () => {
  for (const t of [
    'std::bad_alloc',
    'ggml_aligned_malloc: insufficient memory (attempted to allocate 414.32 MB)',
    'RangeError: Array buffer allocation failed',
    'CUDA error: out of memory',
  ])
    assert.ok(isAllocationFailure(t), t);
  for (const t of ['GGML_ASSERT(x) failed', 'checkpoint is truncated', 'E_CONFIG: bad rank'])
    assert.ok(!isAllocationFailure(t), t);
});

test('the memory cgroup of this process, where Linux has one, has a readable oom_kill counter', (t) => {
  const own = memoryCgroupOf(process.pid);
  if (!own) return t.skip('no memory cgroup here');
  assert.equal(typeof oomKillCount(own), 'number');
  assert.equal(memoryCgroupOf(2 ** 30), null, 'no such process');
});

test('memory limits parse as bytes', () => {
  assert.equal(parseBytes('1073741824'), 2 ** 30);
  assert.equal(parseBytes('3840M'), 3840 * 2 ** 20);
  assert.equal(parseBytes('1.5G'), 1.5 * 2 ** 30);
  assert.equal(parseBytes('2GiB'), 2 * 2 ** 30);
  assert.throws(() => parseBytes('lots'), /"lots" is not a size in bytes/);
});
