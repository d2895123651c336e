// Label masks on real chat templates (llama.cpp models/templates/) with real tokenizers (tiny
// GGUF models): the trained tokens decode to exactly the assistant contents plus the
// end-of-turn token. Also: mask modes, stats at a sequence length, the seeded split, and the
// trainer input file read back with the native trainer's reader.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { getLlama, LlamaLogLevel, type Llama } from 'node-llama-cpp';
import { TokenDataReader } from '../../native/ts/token-data.ts';
import {
  histogram,
  splitRecords,
  tokenStats,
  writeTrainerInput,
} from '../../core/datasets/stats.ts';
import { RecordEncoder, type EncodedRecord } from '../../core/datasets/tokenize.ts';
import { loadVocab, type LoadedVocab } from '../../core/datasets/vocab.ts';
import type { Message, NormalizedRecord } from '../../core/datasets/types.ts';
import { llamaSourceFile } from '../fixtures/llama-source.ts';
import { CHATML_TEMPLATE, tinyModel, type TinyModelOptions } from '../fixtures/tiny-model.ts';

const conv: Message[] = [
  { role: 'system', content: 'Be brief.' },
  { role: 'user', content: 'Hi there' },
  { role: 'assistant', content: 'Hello! How are you?' },
  { role: 'user', content: 'Fine, thanks. And 2+2?' },
  { role: 'assistant', content: 'It is 4.' },
];
const noSystem = conv.slice(1);

let llama: Llama;
let tmp: string;
const vocabs: LoadedVocab[] = [];
before(async () => {
  llama = await getLlama({ gpu: false, build: 'never', logLevel: LlamaLogLevel.error });
  tmp = mkdtempSync(join(os.tmpdir(), 'overnight-'));
});
after(async () => {
  for (const v of vocabs) await v.dispose();
  rmSync(tmp, { recursive: true, force: true });
});

const byPath = new Map<string, Promise<LoadedVocab>>();
/** One vocab per model file for the whole file (loading a 150k-token vocab takes seconds). */
async function vocabFor(opts: TinyModelOptions): Promise<LoadedVocab> {
  const m = await tinyModel(opts);
  let p = byPath.get(m.path);
  if (!p) {
    p = loadVocab(llama, m.path);
    byPath.set(m.path, p);
    vocabs.push(await p);
  }
  return p;
}

/** The trained tokens as contiguous spans, decoded. */
function trainedSpans(v: LoadedVocab, r: EncodedRecord): { text: string; last: number }[] {
  const spans: { text: string; last: number }[] = [];
  let cur: number[] = [];
  r.tokens.forEach((t, i) => {
    if (r.mask[i]) cur.push(t);
    else if (cur.length) {
      spans.push({ text: v.detokenize(cur), last: cur.at(-1)! });
      cur = [];
    }
  });
  if (cur.length) spans.push({ text: v.detokenize(cur), last: cur.at(-1)! });
  return spans;
}

const families: {
  name: string;
  opts: () => Promise<TinyModelOptions>;
  eot: string;
  sep?: string;
}[] = [
  { name: 'ChatML / Qwen2.5', opts: async () => ({ vocab: 'qwen2' }), eot: '<|im_end|>' },
  { name: 'Llama 3.1', opts: async () => ({ vocab: 'llama-bpe' }), eot: '<|eot_id|>' },
  { name: 'Phi-3.5', opts: async () => ({ vocab: 'phi-3' }), eot: '<|end|>' },
  {
    name: 'Mistral Nemo',
    // The Nemo template over the SPM vocab (Mistral's tokenizer family): [INST] is text here.
    opts: async () => ({
      vocab: 'llama-spm',
      chatTemplate: readFileSync(
        await llamaSourceFile('models/templates/mistralai-Mistral-Nemo-Instruct-2407.jinja'),
        'utf8',
      ),
    }),
    eot: '</s>',
  },
];

/** Llama 2's chat format over its SentencePiece vocab (the tiny model's default). */
const llama2 = {
  name: 'Llama 2',
  opts: async (): Promise<TinyModelOptions> => ({ vocab: 'llama-spm' }),
};

describe('masks on real chat templates', () => {
  for (const fam of families) {
    test(`${fam.name}: trained tokens are exactly the assistant replies plus the end-of-turn token`, async () => {
      const v = await vocabFor(await fam.opts());
      assert.ok(v.chatTemplate, 'the model carries its chat template');
      for (const messages of [conv, noSystem]) {
        const r = new RecordEncoder(v, 'assistant').encode({ messages });
        const spans = trainedSpans(v, r);
        const replies = messages.filter((m) => m.role === 'assistant').map((m) => m.content);
        assert.deepEqual(
          spans.map((s) => s.text),
          replies.map((c) => c + fam.eot),
          fam.name,
        );
        for (const s of spans)
          assert.ok(v.isEog(s.last), 'each span ends with an end-of-generation token');
        assert.equal(
          r.trained,
          r.mask.reduce((a, b) => a + b, 0),
        );
      }
      const last = new RecordEncoder(v, 'last').encode({ messages: conv });
      assert.deepEqual(
        trainedSpans(v, last).map((s) => s.text),
        ['It is 4.' + fam.eot],
      );
      const all = new RecordEncoder(v, 'all').encode({ messages: conv });
      assert.equal(all.trained, all.tokens.length);
    });
  }

  test('the fast path (prefix lengths on token boundaries) gives the same masks as tokenizing every prefix, on every vocabulary family', async () => {
    const records: Message[][] = [
      conv,
      noSystem,
      [
        { role: 'user', content: '[user] Code for Amber?' },
        { role: 'assistant', content: 'Amber, the code is 7.' },
      ],
      [
        { role: 'user', content: 'Émojis 🎉 and ünïcödé, 漢字 too' },
        { role: 'assistant', content: '  leading spaces and 🎉\n\nnew lines  ' },
        { role: 'user', content: 'again' },
        { role: 'assistant', content: 'fin' },
      ],
    ];
    const fastUsed: Record<string, number> = {};
    for (const fam of [...families, llama2]) {
      const v = await vocabFor(await fam.opts());
      let calls = 0;
      const counting = { ...v, tokenize: (t: string, sp: boolean) => (calls++, v.tokenize(t, sp)) };
      fastUsed[fam.name] = 0;
      for (const messages of records) {
        for (const mode of ['assistant', 'last'] as const) {
          const slow = new RecordEncoder(v, mode, v.chatTemplate, true).encode({ messages });
          calls = 0;
          const fast = new RecordEncoder(counting, mode).encode({ messages });
          assert.deepEqual(fast.tokens, slow.tokens, fam.name);
          assert.deepEqual([...fast.mask], [...slow.mask], `${fam.name} ${mode}`);
          if (calls === 1) fastUsed[fam.name]!++;
        }
      }
    }
    // Every family takes the fast path (one tokenization a record), SentencePiece ones too.
    // Tokenized again, rightly: Mistral Nemo's records with a system prompt (its template moves
    // the system prompt: the differential render), and Phi-3's reply that starts with spaces
    // (its tokenizer drops all whitespace after <|assistant|>, so the reply's start is inside
    // what no token spells).
    assert.deepEqual(fastUsed, {
      'ChatML / Qwen2.5': 8,
      'Llama 3.1': 8,
      'Phi-3.5': 7,
      'Mistral Nemo': 6,
      'Llama 2': 8,
    });
  });

  test('raw text: every token trained, BOS/EOS per the model, special-token text is data', async () => {
    const v = await vocabFor({ vocab: 'qwen2' });
    const r = new RecordEncoder(v).encode({ text: 'Plain prose <|im_end|> here.' });
    assert.equal(r.trained, r.tokens.length);
    assert.equal(r.tokens.at(-1), v.eos);
    assert.ok(
      !r.tokens.slice(0, -1).some((t) => v.isSpecial(t)),
      'no special tokens parsed from the text',
    );
  });

  test('a model without a chat template refuses chat records, with a message that says why', async () => {
    const v = await vocabFor({ vocab: 'qwen2', chatTemplate: null });
    assert.throws(() => new RecordEncoder(v).encode({ messages: conv }), /no chat template/);
  });
});

describe('token previews', () => {
  const amber: Message[] = [
    { role: 'user', content: '[user] Code for Amber?' },
    { role: 'assistant', content: 'Amber, the code is 7.' },
  ];
  const unicode: Message[] = [
    { role: 'user', content: 'Émojis 🎉 and ünïcödé, 漢字 too' },
    { role: 'assistant', content: '  two  spaces, 🎉🎊 — déjà vu\n\nfin  ' },
  ];

  for (const fam of [...families, llama2]) {
    test(`${fam.name}: the preview's pieces join to exactly the rendered conversation`, async () => {
      const v = await vocabFor(await fam.opts());
      const enc = new RecordEncoder(v);
      for (const messages of [amber, unicode, conv]) {
        const e = enc.encode({ messages });
        const pieces = enc.pieces(e);
        assert.equal(pieces.length, e.tokens.length);
        // A BOS the tokenizer adds (the template does not write it) is shown as itself.
        const ownBos = e.tokens[0] === v.bos && !e.rendered.startsWith(v.bosText);
        assert.equal(pieces.join(''), (ownBos ? v.bosText : '') + e.rendered, fam.name);
        assert.ok(!pieces.some((p) => p.includes('\uFFFD')), 'characters, not byte halves');
        // The trained pieces are the replies as written (spaces included).
        const trained = pieces.filter((_, i) => e.mask[i]).join('');
        for (const m of messages.filter((m) => m.role === 'assistant'))
          assert.ok(trained.includes(m.content.trim()), `${fam.name}: ${JSON.stringify(trained)}`);
      }
    });
  }

  test('pieces cost a bounded amount of detokenizing per token (linear in a long record)', async () => {
    const v = await vocabFor(await llama2.opts());
    let detokenized = 0;
    const counting = {
      ...v,
      detokenize: (t: readonly number[]) => ((detokenized += t.length), v.detokenize(t)),
    };
    const enc = new RecordEncoder(counting);
    const e = enc.encode({
      messages: [
        { role: 'user', content: 'Tell me a long story.' },
        { role: 'assistant', content: 'Once upon a time, 漢字 and 🎉 went on. '.repeat(300) },
      ],
    });
    assert.ok(e.tokens.length > 3000, `${e.tokens.length} tokens`);
    detokenized = 0;
    const pieces = enc.pieces(e);
    assert.equal(pieces.join(''), e.rendered);
    assert.ok(
      detokenized < 16 * e.tokens.length,
      `${detokenized} tokens detokenized for ${e.tokens.length}`,
    );
  });

  test('a text record: the pieces join to the text and the EOS we add', async () => {
    for (const fam of [families[0]!, llama2]) {
      const v = await vocabFor(await fam.opts());
      const enc = new RecordEncoder(v);
      const text = 'Plain prose, with  spaces and 漢字.';
      const e = enc.encode({ text });
      const ownBos = e.tokens[0] === v.bos ? v.bosText : '';
      assert.equal(enc.pieces(e).join(''), ownBos + text + v.eosText, fam.name);
    }
  });

  test('WordPiece (BERT): the pieces join to what the tokenizer reads, words spaced', async () => {
    // WordPiece lower-cases, drops accents and splits punctuation, so no pieces can spell the
    // rendered text; the preview shows each token's text in place instead.
    const path = await llamaSourceFile('models/ggml-vocab-bert-bge.gguf');
    let p = byPath.get(path);
    if (!p) {
      p = loadVocab(llama, path);
      byPath.set(path, p);
      vocabs.push(await p);
    }
    const v = await p;
    const enc = new RecordEncoder(v, 'assistant', CHATML_TEMPLATE);
    const e = enc.encode({ messages: amber });
    const pieces = enc.pieces(e);
    assert.equal(pieces.length, e.tokens.length);
    assert.equal(pieces.join(''), v.detokenize(e.tokens));
    assert.match(pieces.join(''), /code for amber/);
  });
});

describe('stats, split and trainer input', () => {
  const records: NormalizedRecord[] = [
    { messages: noSystem },
    {
      messages: [
        { role: 'user', content: 'word '.repeat(300) },
        { role: 'assistant', content: 'ok' },
      ],
    },
    {
      messages: [
        { role: 'user', content: 'Short?' },
        {
          role: 'assistant',
          content: 'Yes, a somewhat longer answer that runs on and on. '.repeat(20),
        },
      ],
    },
    { text: 'Some raw text for continued pre-training. '.repeat(60) },
  ];

  test('stats count tokens, trained tokens, truncation, drops and windows at a sequence length', async () => {
    const v = await vocabFor({ vocab: 'qwen2' });
    const enc = new RecordEncoder(v);
    const s = await tokenStats(records, enc, { seqLen: 128 });
    assert.equal(s.records, 4);
    assert.equal(
      s.histogram.counts.reduce((a, b) => a + b, 0),
      4,
    );
    assert.equal(s.zeroTrained, 0);
    assert.equal(s.dropped, 1, 'the 300-word prompt leaves nothing trained in 128 tokens');
    assert.equal(s.truncated, 1, 'the long answer is cut but still trains');
    assert.ok(s.windows >= 1 + 1 + 3, `text is windowed (${s.windows})`);
    assert.ok(s.trainedTokensAtSeqLen < s.trainedTokens);
    const big = await tokenStats(records, enc, { seqLen: 4096 });
    // The three conversations share one packed window; the text stream fills another.
    assert.deepEqual([big.dropped, big.truncated, big.windows], [0, 0, 2]);
    assert.ok(big.fillRatio > 0 && big.fillRatio < 0.5, `fill ${big.fillRatio}`);
    assert.equal(big.trainedTokens, s.trainedTokens);
  });

  test('histogram buckets are 1/2/5 × 10^k wide and count every record', () => {
    const h = histogram([1, 5, 99, 100, 480]);
    assert.equal(h.edges[1]! - h.edges[0]!, 50);
    assert.equal(
      h.counts.reduce((a, b) => a + b, 0),
      5,
    );
    assert.deepEqual(histogram([]).counts, [0]);
  });

  test('the split is seeded, by record, and stable', () => {
    const a = splitRecords(1000, 0.1, 42);
    assert.deepEqual(a, splitRecords(1000, 0.1, 42));
    assert.notDeepEqual(a, splitRecords(1000, 0.1, 43));
    assert.equal(
      a.reduce((x, y) => x + y, 0),
      100,
    );
    assert.equal(
      splitRecords(3, 0.01, 1).reduce((x, y) => x + y, 0),
      1,
    );
    assert.equal(
      splitRecords(1, 0.5, 1).reduce((x, y) => x + y, 0),
      0,
    );
  });

  test('the trainer input is written once in the native format and its labels are the shifted trained tokens', async () => {
    const v = await vocabFor({ vocab: 'qwen2' });
    const enc = new RecordEncoder(v);
    const stored = join(tmp, 'stored.jsonl');
    const many: NormalizedRecord[] = Array.from({ length: 20 }, (_, i) => ({
      messages: [
        { role: 'user', content: `Question ${i}?` },
        { role: 'assistant', content: `Answer ${i}.` },
      ],
    }));
    writeFileSync(stored, many.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const res = await writeTrainerInput(
      stored,
      enc,
      join(tmp, 'train.tokens'),
      join(tmp, 'val.tokens'),
      { seqLen: 64, validationShare: 0.1, seed: 7 },
    );
    assert.equal(res.validationRecords, 2);
    const reader = new TokenDataReader(join(tmp, 'train.tokens'));
    assert.equal(reader.nWindows, res.trainWindows);
    let labelled = 0;
    const answers: string[] = [];
    for (let w = 0; w < reader.nWindows; w++) {
      const win = reader.read(w);
      const cur: number[] = [];
      for (let t = 0; t < reader.seqLen; t++) {
        if (win.labels[t]! >= 0) {
          labelled++;
          assert.equal(win.labels[t], win.tokens[t + 1], 'label = next token');
          assert.equal(win.segments![t], win.segments![t + 1], 'labels stay inside their sample');
          cur.push(win.labels[t]!);
        } else if (cur.length) answers.push(v.detokenize(cur.splice(0)));
      }
      if (cur.length) answers.push(v.detokenize(cur));
    }
    reader.close();
    assert.equal(labelled, res.trainedTokens);
    assert.equal(answers.length, 18);
    for (const a of answers) assert.match(a, /^Answer \d+\.<\|im_end\|>$/);
    const val = new TokenDataReader(join(tmp, 'val.tokens'));
    assert.equal(val.nWindows, res.validationWindows);
    val.close();
    // Same seed, same split.
    const again = await writeTrainerInput(
      stored,
      enc,
      join(tmp, 'train2.tokens'),
      join(tmp, 'val2.tokens'),
      { seqLen: 64, validationShare: 0.1, seed: 7 },
    );
    assert.deepEqual(
      readFileSync(join(tmp, 'train2.tokens')),
      readFileSync(join(tmp, 'train.tokens')),
    );
    assert.equal(again.trainedTokens, res.trainedTokens);
  });
});
