// The whole engine in a temp folder with a tiny model and a chat dataset imported through the real
// datasets domain: the set-up shared by the integration tests that train through `createEngine`.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Run } from '../../contract/index.ts';
import { createEngine, type Engine } from '../../core/engine.ts';
import { tinyModel, type TinyModelType } from '../fixtures/tiny-model.ts';

/** One JSONL line: a user turn and the assistant's answer. */
export function chatLine(user: string, assistant: string): string {
  return JSON.stringify({
    messages: [
      { role: 'user', content: user },
      { role: 'assistant', content: assistant },
    ],
  });
}

/**
 * Adds a tiny generated model (default vocab: SentencePiece with Llama 2's chat template) and
 * imports `lines` (written to `folder/name`) as a dataset; asserts the import went through.
 */
export async function addModelAndChat(
  e: Engine,
  folder: string,
  name: string,
  lines: string[],
  type: TinyModelType = 'q8_0',
): Promise<{ modelId: string; datasetId: string }> {
  const modelId = (await e.models.add((await tinyModel({ type })).path)).id;
  const file = join(folder, name);
  writeFileSync(file, lines.join('\n') + '\n');
  const r = await e.datasets.import({ path: file });
  assert.ok(r.status === 'imported');
  return { modelId, datasetId: r.dataset.id };
}

export interface EngineWithChat {
  dir: string;
  engine: Engine;
  modelId: string;
  datasetId: string;
  /** Closes the engine and removes the temp folder. */
  close(): Promise<void>;
}

/** A fresh engine (data under a new temp folder) with `addModelAndChat` done. */
export async function openEngineWithChat(name: string, lines: string[]): Promise<EngineWithChat> {
  const dir = mkdtempSync(join(tmpdir(), 'overnight-'));
  const engine = createEngine({ dataDir: join(dir, 'data') });
  const { modelId, datasetId } = await addModelAndChat(engine, dir, name, lines);
  return {
    dir,
    engine,
    modelId,
    datasetId,
    async close() {
      await engine.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Creates a run and resolves with it once it ends: completed, failed, cancelled or interrupted. */
export async function runToEnd(e: Engine, config: unknown, name?: string): Promise<Run> {
  let id = '';
  const settled = new Promise<Run>((resolve) => {
    const off = e.events.subscribe('runs.state', (x) => {
      if (x.id !== id || !['completed', 'failed', 'cancelled', 'interrupted'].includes(x.state))
        return;
      off();
      resolve(x);
    });
  });
  id = (await e.runs.create(config, name)).id;
  return settled;
}
