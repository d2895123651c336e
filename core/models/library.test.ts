import assert from 'node:assert/strict';
import {
  copyFileSync,
  mkdtempSync,
  openSync,
  closeSync,
  ftruncateSync,
  rmSync,
  writeFileSync,
  renameSync,
  existsSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { OvernightError, type ModelInfo } from '../../contract/index.ts';
import { readGguf } from '../../test/fixtures/gguf-writer.ts';
import { tinyModel, TINY_MODEL_TYPES, type TinyModelType } from '../../test/fixtures/tiny-model.ts';
import { createEngine, type Engine } from '../engine.ts';
import { createInMemoryClient, type InMemoryClient } from '../rpc/in-memory.ts';
import { detectTemplateFamily } from './chat-template.ts';

const FILE_TYPE_NAMES: Record<TinyModelType, string> = {
  f32: 'F32',
  f16: 'F16',
  bf16: 'BF16',
  q8_0: 'Q8_0',
  q4_0: 'Q4_0',
  q4_k: 'Q4_K_S',
  q5_k: 'Q5_K_M',
  q6_k: 'Q6_K',
  q4_k_m: 'Q4_K_M',
};
const BASE_TYPE_NAMES: Record<TinyModelType, string> = {
  f32: 'F32',
  f16: 'F16',
  bf16: 'BF16',
  q8_0: 'Q8_0',
  q4_0: 'Q4_0',
  q4_k: 'Q4_K',
  q5_k: 'Q5_K',
  q6_k: 'Q6_K',
  q4_k_m: 'Q4_K',
};

let dir: string;
let engine: Engine;
let client: InMemoryClient;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  engine = createEngine({ dataDir: join(dir, 'data') });
  client = createInMemoryClient(engine);
});
after(async () => {
  client.close();
  await engine.close();
  rmSync(dir, { recursive: true, force: true });
});

async function rejects(
  p: Promise<unknown>,
  code: string,
  ...patterns: (RegExp | string)[]
): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof OvernightError, String(err));
    assert.equal(err.code, code, err.message);
    for (const pat of patterns) {
      if (typeof pat === 'string')
        assert.ok(err.message.includes(pat), `"${err.message}" should mention ${pat}`);
      else assert.match(err.message, pat);
    }
    return;
  }
  assert.fail(`expected ${code}`);
}

async function addCopy(src: string, name: string): Promise<{ path: string; model: ModelInfo }> {
  const path = join(dir, name);
  copyFileSync(src, path);
  return { path, model: await client.call('models.add', { path }) };
}

describe('models.add metadata', () => {
  for (const type of TINY_MODEL_TYPES) {
    it(`reads a ${type} model`, async () => {
      const tm = await tinyModel({ type });
      const { path, model: m } = await addCopy(tm.path, `tiny-${type}.gguf`);
      const raw = readGguf(path);
      try {
        assert.equal(m.path, path);
        assert.equal(m.name, `tiny-${type}`);
        assert.equal(m.architecture, 'llama');
        assert.equal(m.fileType, FILE_TYPE_NAMES[type]);
        assert.equal(m.layers, tm.nLayer);
        assert.equal(m.embeddingSize, tm.nEmbd);
        assert.equal(m.vocabSize, tm.nVocab);
        assert.equal(m.contextLength, tm.nCtx);
        assert.equal(m.fileSize, tm.fileSize);
        const params = raw.tensors.reduce((a, t) => a + t.shape.reduce((x, y) => x * y, 1), 0);
        assert.equal(m.parameterCount, params);
        assert.equal(
          Object.values(m.tensorTypes).reduce((a, b) => a + b, 0),
          raw.tensors.length,
        );
        assert.ok((m.tensorTypes.F32 ?? 0) > 0, 'norms are F32');
        assert.ok((m.tensorTypes[BASE_TYPE_NAMES[type]] ?? 0) > 0, JSON.stringify(m.tensorTypes));
        if (type === 'q4_k_m') assert.ok((m.tensorTypes.Q6_K ?? 0) > 0, 'q4_k_m mixes in Q6_K');
        else
          assert.deepEqual(
            Object.keys(m.tensorTypes).sort(),
            [...new Set(['F32', BASE_TYPE_NAMES[type]])].sort(),
          );
        assert.deepEqual(m.chatTemplate, { present: true, family: 'llama2' });
        assert.match(m.fingerprint, /^[0-9a-f]{64}$/);
        assert.deepEqual(m.trainable, { ok: true, reason: null });
        assert.equal(m.fileExists, true);
      } finally {
        await client.call('models.remove', { id: m.id });
      }
    });
  }

  for (const [vocab, family] of [
    ['llama-bpe', 'llama3'],
    ['qwen2', 'qwen'],
    ['phi-3', 'phi3'],
  ] as const) {
    it(`detects the ${family} chat template (${vocab} vocab)`, async () => {
      const tm = await tinyModel({ vocab, arch: vocab === 'qwen2' ? 'qwen2' : 'llama' });
      const { model } = await addCopy(tm.path, `tpl-${vocab}.gguf`);
      assert.deepEqual(model.chatTemplate, { present: true, family });
      assert.equal(model.vocabSize, tm.nVocab);
      await client.call('models.remove', { id: model.id });
    });
  }

  it('reports a model without a chat template', async () => {
    const tm = await tinyModel({ chatTemplate: null });
    const { model } = await addCopy(tm.path, 'no-template.gguf');
    assert.deepEqual(model.chatTemplate, { present: false, family: null });
    await client.call('models.remove', { id: model.id });
  });

  it('accepts qwen3 as trainable', async () => {
    const tm = await tinyModel({ arch: 'qwen3', vocab: 'qwen2' });
    const { model } = await addCopy(tm.path, 'qwen3.gguf');
    assert.equal(model.architecture, 'qwen3');
    assert.equal(model.trainable.ok, true);
    await client.call('models.remove', { id: model.id });
  });

  it('names template families from the template text', () => {
    assert.equal(detectTemplateFamily("{{ '<|im_start|>' + m.role }}"), 'chatml');
    assert.equal(detectTemplateFamily('<start_of_turn>user'), 'gemma');
    assert.equal(detectTemplateFamily('[INST] {{ x }} [/INST]'), 'mistral');
    assert.equal(detectTemplateFamily('{{ foo }}'), 'unknown');
  });
});

describe('models.add errors (nothing is stored)', () => {
  after(async () => {
    assert.deepEqual(await client.call('models.list', {}), []);
  });

  it('a missing file is FILE_NOT_FOUND naming the path', async () => {
    const path = join(dir, 'nope.gguf');
    await rejects(client.call('models.add', { path }), 'FILE_NOT_FOUND', path, 'does not exist');
  });

  it('a file that is not GGUF is INVALID_FILE naming the file and its magic bytes', async () => {
    const path = join(dir, 'notes.gguf');
    writeFileSync(path, 'hello world, not a model');
    await rejects(
      client.call('models.add', { path }),
      'INVALID_FILE',
      path,
      'is not a GGUF file',
      '68656c6c',
      '"hell"',
    );
    const empty = join(dir, 'empty.gguf');
    writeFileSync(empty, '');
    await rejects(client.call('models.add', { path: empty }), 'INVALID_FILE', empty, 'empty');
  });

  it('a truncated file is INVALID_FILE with expected vs actual size', async () => {
    const tm = await tinyModel({ type: 'q8_0' });
    const path = join(dir, 'truncated.gguf');
    copyFileSync(tm.path, path);
    const cut = Math.floor(tm.fileSize * 0.7);
    const fd = openSync(path, 'r+');
    ftruncateSync(fd, cut);
    closeSync(fd);
    await rejects(
      client.call('models.add', { path }),
      'INVALID_FILE',
      path,
      'truncated',
      `${tm.fileSize} bytes`,
      `${cut} bytes`,
    );
  });

  it('a file cut inside its header is INVALID_FILE', async () => {
    const tm = await tinyModel({ type: 'q8_0' });
    const path = join(dir, 'header-cut.gguf');
    copyFileSync(tm.path, path);
    const fd = openSync(path, 'r+');
    ftruncateSync(fd, 200);
    closeSync(fd);
    await rejects(
      client.call('models.add', { path }),
      'INVALID_FILE',
      path,
      'truncated',
      'header',
      '200 bytes',
    );
  });

  it('gemma is UNSUPPORTED: GEGLU has no backward pass', async () => {
    const tm = await tinyModel({ arch: 'gemma' });
    const path = join(dir, 'gemma.gguf');
    copyFileSync(tm.path, path);
    await rejects(
      client.call('models.add', { path }),
      'UNSUPPORTED',
      path,
      'architecture gemma',
      'GEGLU',
    );
  });

  it('deepseek2 is UNSUPPORTED: mixture of experts (MUL_MAT_ID has no backward pass)', async () => {
    const tm = await tinyModel({ arch: 'deepseek2' });
    const path = join(dir, 'deepseek2.gguf');
    copyFileSync(tm.path, path);
    await rejects(
      client.call('models.add', { path }),
      'UNSUPPORTED',
      path,
      'architecture deepseek2',
      'mixture-of-experts',
      'MUL_MAT_ID',
    );
  });
});

describe('models library', () => {
  it('list/show/remove; remove keeps the file; fileExists follows the file', async () => {
    const tm = await tinyModel({ type: 'q4_0' });
    const changed: unknown[] = [];
    const off = client.on('models.changed', (p) => changed.push(p));
    const { path, model } = await addCopy(tm.path, 'lib.gguf');
    const shown = await client.call('models.show', { id: model.id });
    assert.deepEqual(shown, model);
    assert.deepEqual(
      (await client.call('models.list', {})).map((m) => m.id),
      [model.id],
    );

    renameSync(path, `${path}.moved`);
    assert.equal((await client.call('models.show', { id: model.id })).fileExists, false);
    renameSync(`${path}.moved`, path);

    assert.deepEqual(await client.call('models.remove', { id: model.id }), { removed: true });
    assert.ok(existsSync(path), 'the file is kept');
    assert.deepEqual(await client.call('models.remove', { id: model.id }), { removed: false });
    await rejects(client.call('models.show', { id: model.id }), 'NOT_FOUND', model.id);
    await new Promise((r) => setTimeout(r, 0));
    off();
    assert.deepEqual(changed, [{ ids: [model.id] }, { ids: [model.id] }]);
  });

  it('duplicates: same path returns the entry; a copy elsewhere is CONFLICT; a moved file is relinked', async () => {
    const tm = await tinyModel({ type: 'q4_0' });
    const { path: a, model } = await addCopy(tm.path, 'dup-a.gguf');
    const again = await client.call('models.add', { path: a, name: 'other name' });
    assert.equal(again.id, model.id);

    const b = join(dir, 'dup-b.gguf');
    copyFileSync(a, b);
    await rejects(client.call('models.add', { path: b }), 'CONFLICT', b, model.id, a);

    rmSync(a);
    const relinked = await client.call('models.add', { path: b });
    assert.equal(relinked.id, model.id);
    assert.equal(relinked.path, b);
    assert.equal(relinked.fileExists, true);

    // Same path, different content.
    const other = await tinyModel({ type: 'q8_0' });
    copyFileSync(other.path, b);
    await rejects(client.call('models.add', { path: b }), 'CONFLICT', b, 'content has changed');
    await client.call('models.remove', { id: model.id });
  });

  it('--name sets the display name', async () => {
    const tm = await tinyModel({ type: 'f16' });
    const { model } = await (async () => {
      const path = join(dir, 'named.gguf');
      copyFileSync(tm.path, path);
      return { model: await client.call('models.add', { path, name: 'My model' }) };
    })();
    assert.equal(model.name, 'My model');
    await client.call('models.remove', { id: model.id });
  });
});
