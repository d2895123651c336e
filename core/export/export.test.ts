// Export rules that need no model: user names, derived names, half floats, the RoPE row
// permutation's inverse, and PEFT's refusal of an architecture it cannot map.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { OvernightError } from '../../contract/index.ts';
import { checkName, nameProblem, safeName } from './files.ts';
import type { ExportContext } from './format.ts';
import { peftFormat, permuteRows } from './formats/peft.ts';
import { f16ToF32, f32ToF16 } from './gguf.ts';

describe('export names', () => {
  test('names that could leave the folder or are not portable are refused, saying why', () => {
    const cases: [string, RegExp][] = [
      ['../x', /path separator/],
      ['..', /"\.\."/],
      ['a..b', /"\.\."/],
      ['x\\y', /path separator/],
      ['/abs', /absolute/],
      ['C:evil', /absolute/],
      ['a\0b', /NUL/],
      ['a\nb', /control character/],
      ['aux.gguf', /reserved device name/],
      ['LPT1', /reserved device name/],
      ['.x', /hidden/],
      ['x.', /ends with a dot/],
      ['a?b', /one of/],
      ['x'.repeat(121), /longer than 120/],
    ];
    for (const [name, why] of cases) {
      assert.match(nameProblem(name) ?? 'accepted', why, JSON.stringify(name));
      assert.throws(
        () => checkName(name),
        (e: unknown) => e instanceof OvernightError && e.code === 'INVALID_INPUT',
      );
    }
    for (const ok of ['my-adapter', 'Codes v2', 'run_1.step40', 'ünïcode'])
      assert.equal(nameProblem(ok), null, ok);
  });

  test('derived names are sanitized into safe ones', () => {
    assert.equal(
      safeName('My Run: v2/../x', 'Qwen2.5 0.5B', 'step40'),
      'my-run-v2-.-x-qwen2.5-0.5b-step40',
    );
    assert.equal(nameProblem(safeName('My Run: v2/../x', 'Qwen2.5 0.5B')), null);
    assert.equal(safeName('///', ''), 'adapter');
    assert.equal(safeName('con'), 'con-export');
    for (const s of ['..', '../../etc', 'a\0b', '.hidden', 'x'.repeat(500)])
      assert.equal(nameProblem(safeName(s, 'm')), null, s);
  });
});

describe('export numbers', () => {
  test('F16 conversion rounds to nearest and round-trips F16 values exactly', () => {
    for (const v of [0, 1, -2, 0.5, 65504, 6.103515625e-5, 5.960464477539063e-8, 0.333251953125])
      assert.equal(f16ToF32(f32ToF16(v)), v, String(v));
    assert.equal(f16ToF32(f32ToF16(1 + 2 ** -11)), 1, 'ties to even');
    assert.equal(f16ToF32(f32ToF16(1e6)), Infinity);
    for (const v of [0.1, -3.14159, 1e-3, 1234.5678]) {
      const r = f16ToF32(f32ToF16(v));
      assert.ok(Math.abs(r - v) <= Math.abs(v) * 2 ** -11, `${v} -> ${r}`);
    }
  });

  test('the RoPE row permutation: GGUF row h*d+2i+j is HF row h*d+j*d/2+i, and back', () => {
    const heads = 2;
    const d = 4;
    const cols = 3;
    const gguf = Float32Array.from({ length: heads * d * cols }, (_, k) => k);
    const hf = permuteRows(gguf, cols, heads, true);
    // head 0: GGUF rows 0,1,2,3 = (i0 j0),(i0 j1),(i1 j0),(i1 j1) -> HF rows 0,2,1,3
    const row = (m: Float32Array, r: number) => [...m.subarray(r * cols, (r + 1) * cols)];
    assert.deepEqual(row(hf, 0), row(gguf, 0));
    assert.deepEqual(row(hf, 2), row(gguf, 1));
    assert.deepEqual(row(hf, 1), row(gguf, 2));
    assert.deepEqual(row(hf, 5), row(gguf, 6), 'second head');
    assert.deepEqual(permuteRows(hf, cols, heads, false), gguf);
  });

  test('PEFT refuses an architecture it has no mapping for, naming the supported ones', () => {
    const ctx = {
      model: { architecture: 'gemma', path: '/m.gguf' },
      adapter: {
        tensors: [{ name: 'blk.0.attn_q.weight.lora_a', ne: [8, 2], type: 0, offset: 0 }],
      },
    } as unknown as ExportContext;
    assert.throws(
      () => peftFormat.check!(ctx),
      (e: unknown) =>
        e instanceof OvernightError &&
        e.code === 'UNSUPPORTED' &&
        /architecture gemma \(supported: llama, mistral, qwen2, qwen3\)/.test(e.message),
    );
  });
});
