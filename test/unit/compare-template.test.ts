// Compare formats every prompt exactly as the training data was formatted: for each fixture
// chat template (ChatML, Qwen 2.5, Llama 3.1, Phi-3.5, Mistral Nemo, the SPM llama fixture's
// Llama 2 format, and a custom template), the tokens a compare column actually evaluated —
// read back from the node-llama-cpp context after it answered — equal the dataset encoder's
// tokens of the same conversation up to where the last reply's trained tokens start. Also
// across turns, where the column reuses its KV cache and must drop what it generated itself.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { samplingDefaults, type Sampling } from '../../contract/index.ts';
import { ChatModel } from '../../core/compare/chat.ts';
import { RecordEncoder } from '../../core/datasets/tokenize.ts';
import type { Message } from '../../core/datasets/types.ts';
import { llamaSourceFile } from '../fixtures/llama-source.ts';
import { CHATML_TEMPLATE, tinyModel, type TinyModelOptions } from '../fixtures/tiny-model.ts';

const conv: Message[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there' },
  { role: 'assistant', content: 'Hello! How are you?' },
  { role: 'user', content: 'Fine, thanks. And 2+2?' },
  { role: 'assistant', content: 'It is 4.' },
];

/** A template of our own: plain-text markers, the model's EOS ends a reply. */
const CUSTOM_TEMPLATE =
  "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'system' %}<<{{ m['content'] }}>>\n" +
  "{% elif m['role'] == 'user' %}### Human: {{ m['content'] }}\n" +
  "{% else %}### Bot: {{ m['content'] }}{{ eos_token }}\n{% endif %}{% endfor %}" +
  '{% if add_generation_prompt %}### Bot:{% endif %}';

const templates: {
  name: string;
  opts: () => Promise<TinyModelOptions>;
  /** The system prompt is rendered only while its user turn is last. */
  movesSystem?: boolean;
}[] = [
  { name: 'ChatML', opts: async () => ({ vocab: 'qwen2', chatTemplate: CHATML_TEMPLATE }) },
  { name: 'Qwen 2.5 (ChatML family)', opts: async () => ({ vocab: 'qwen2' }) },
  { name: 'Llama 3.1', opts: async () => ({ vocab: 'llama-bpe' }) },
  { name: 'Phi-3.5', opts: async () => ({ vocab: 'phi-3' }) },
  {
    name: 'Mistral Nemo',
    opts: async () => ({
      vocab: 'llama-spm',
      chatTemplate: readFileSync(
        await llamaSourceFile('models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja'),
        'utf8',
      ),
    }),
    movesSystem: true,
  },
  { name: 'SPM llama fixture (Llama 2)', opts: async () => ({ vocab: 'llama-spm' }) },
  { name: 'custom', opts: async () => ({ vocab: 'llama-bpe', chatTemplate: CUSTOM_TEMPLATE }) },
];

const greedy: Sampling = { ...samplingDefaults, temperature: 0, maxTokens: 4 };

/**
 * The encoder's tokens of `messages` (ending in an assistant reply) before that reply's trained
 * tokens start: what a model answering the conversation so far was trained to see. A template
 * that renders earlier turns differently once a reply follows (Mistral Nemo puts the system
 * prompt into the user turn only while that turn is last) has no such prefix; the encoder flags
 * the record (unstableBoundaries) and the chat prompt is the encoder's generation-prompt
 * rendering of the conversation so far, as in llama.cpp.
 */
function trainedContext(enc: RecordEncoder, messages: Message[], unstable: boolean): number[] {
  const e = enc.encode({ messages });
  if (unstable) {
    assert.ok(e.unstableBoundaries > 0, 'the encoder flags the unstable boundary');
    return enc.promptTokens(messages.slice(0, -1));
  }
  assert.equal(e.unstableBoundaries, 0);
  let start = e.mask.length;
  while (start > 0 && !e.mask[start - 1]) start--; // skip the untrained tail
  while (start > 0 && e.mask[start - 1]) start--; // back over the last reply
  assert.ok(start > 0 && start < e.tokens.length, 'the last reply is trained');
  return e.tokens.slice(0, start);
}

let llama: Llama;
before(async () => {
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
});
after(async () => {
  await llama.dispose();
});

describe('compare renders prompts exactly as the training data', () => {
  for (const t of templates) {
    test(`${t.name}: the evaluated prompt equals the dataset encoder's tokens up to the generation prompt`, async () => {
      const path = (await tinyModel(await t.opts())).path;
      const chat = await ChatModel.load(llama, { modelPath: path, gpu: false, threads: 1 });
      try {
        const enc = new RecordEncoder(chat.vocab, 'assistant');
        const col = await chat.column(null);
        // Turn 1: system + user.
        await col.generate(conv.slice(0, 2), greedy);
        assert.deepEqual(
          col.evaluatedPrompt,
          trainedContext(enc, conv.slice(0, 3), !!t.movesSystem),
          'turn 1',
        );
        // Turn 2 on the same context: the cached prefix is reused, the column's own answer
        // (which is not the reply in the conversation) is replaced by the conversation's.
        const r = await col.generate(conv.slice(0, 4), greedy);
        assert.ok(r.tokens.length > 0, 'the column answered');
        assert.deepEqual(col.evaluatedPrompt, trainedContext(enc, conv, !!t.movesSystem), 'turn 2');
        // And without a system prompt.
        await col.generate(conv.slice(1, 4), greedy);
        assert.deepEqual(
          col.evaluatedPrompt,
          trainedContext(enc, conv.slice(1), false),
          'no system',
        );
      } finally {
        await chat.dispose();
      }
    });
  }
});
