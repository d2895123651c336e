/**
 * The patched ggml CPU kernels the trainer spends its time in, checked outside the addon by
 * native/src/kernel_check.cpp (built with it as native/build/Release/overnight_kernel_check):
 * OUT_PROD as a blocked GEMM (native/patches/0002) against a double-precision reference on the
 * same dequantized values, for F32/F16/BF16/Q4_0/Q8_0/Q4_K/Q6_K first operands, transposed and
 * plain second operands, broadcast over heads, partial tiles, and 1-3 threads.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { addonPath } from '../../native/ts/binding.ts';

const exe = join(
  dirname(addonPath('cpu')),
  process.platform === 'win32' ? 'overnight_kernel_check.exe' : 'overnight_kernel_check',
);

test('OUT_PROD (blocked GEMM) matches the double-precision reference in every case', () => {
  assert.ok(existsSync(exe), `${exe} is missing: npm install (or npm run build:native) builds it`);
  const r = spawnSync(exe, [], { encoding: 'utf8', timeout: 120_000 });
  const lines = r.stdout.split('\n').filter((l) => l.startsWith('ok ') || l.startsWith('FAIL '));
  const failed = lines.filter((l) => l.startsWith('FAIL '));
  assert.deepEqual(failed, [], 'cases outside float rounding:\n' + failed.join('\n'));
  assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
  // every type and both operand layouts were exercised (12 cases x 3 thread counts)
  assert.equal(lines.length, 36, r.stdout);
  for (const t of ['f32', 'f16', 'bf16', 'q4_0', 'q8_0', 'q4_K', 'q6_K']) {
    assert.ok(
      lines.some((l) => l.includes(` out_prod ${t} `)),
      `no case for ${t}`,
    );
  }
  assert.ok(lines.some((l) => l.includes('transposed=1')));
  assert.ok(lines.some((l) => l.includes('dps=2')));
});
