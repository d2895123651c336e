// A small synthetic instruction set: "Q: what is the code word of <thing>?\nA:" -> " <word>".
// Each training prompt maps to its own answer, so a model that learned them reproduces the
// answers exactly; held-out prompts share the format and the answer vocabulary.
import { buildWindows, writeTokenData } from '../../native/ts/token-data.ts';
import type { Sample } from '../../native/ts/token-data.ts';

const THINGS = [
  'the moon',
  'a river',
  'the bakery',
  'my cat',
  'the ocean',
  'a castle',
  'the forest',
  'a violin',
  'the garden',
  'a rocket',
  'the library',
  'a lighthouse',
  'the volcano',
  'a penguin',
  'the desert',
  'a clock',
  'the harbor',
  'a tiger',
  'the bridge',
  'a candle',
  'the glacier',
  'a dragon',
  'the market',
  'a comet',
];
const WORDS = ['apple', 'banana', 'cherry', 'orange', 'lemon', 'grape', 'melon', 'peach'];

export interface QaPair {
  prompt: string;
  answer: string;
}

export function qaPairs(n: number, offset = 0): QaPair[] {
  const out: QaPair[] = [];
  for (let i = 0; i < n; i++) {
    const k = i + offset;
    out.push({
      prompt: `Q: what is the code word of ${THINGS[k % THINGS.length]}?\nA:`,
      answer: `${WORDS[(k * 5 + 3) % WORDS.length]}`,
    });
  }
  return out;
}

/** tokenize(text, addSpecial) must be the model's tokenizer; eos its end-of-generation token. */
export function qaSamples(
  pairs: QaPair[],
  tokenize: (t: string, special: boolean) => ArrayLike<number>,
  eos: number,
): Sample[] {
  return pairs.map(({ prompt, answer }) => {
    const p = Array.from(tokenize(prompt, true));
    const a = Array.from(tokenize(answer, false));
    const tokens = [...p, ...a, eos];
    const trainMask = tokens.map((_, i) => i >= p.length);
    return { tokens, trainMask };
  });
}

export function writeQa(
  path: string,
  samples: Sample[],
  seqLen: number,
  mode: 'single' | 'pack' = 'single',
): number {
  return writeTokenData(path, seqLen, buildWindows(samples, seqLen, mode, 0), true);
}

export interface QaFiles {
  train: string;
  eval: string;
  trainPairs: QaPair[];
  evalPairs: QaPair[];
  /** BOS + prompt tokens of each training pair, as node-llama-cpp tokenizes them. */
  trainPrompts: number[][];
  eos: number;
}

/**
 * Tokenizes the QA set with node-llama-cpp (the runtime that will load the adapter) and writes
 * train/eval token data files. Only call this in a process that does not load the native trainer.
 */
export async function makeQaFiles(
  modelPath: string,
  dir: string,
  o: { nTrain: number; nEval: number; seqLen: number; mode?: 'single' | 'pack' },
): Promise<QaFiles> {
  const { getLlama } = await import('node-llama-cpp');
  const llama = await getLlama({ gpu: false, build: 'never' });
  const model = await llama.loadModel({ modelPath });
  try {
    const bos = model.tokens.bos!;
    const eos = model.tokens.eos!;
    const tok = (t: string, special: boolean) =>
      [...(special ? [bos] : []), ...model.tokenize(t)].map(Number);
    const trainPairs = qaPairs(o.nTrain);
    const evalPairs = qaPairs(o.nEval, o.nTrain);
    const train = `${dir}/train.tok`;
    const ev = `${dir}/eval.tok`;
    writeQa(train, qaSamples(trainPairs, tok, Number(eos)), o.seqLen, o.mode ?? 'single');
    writeQa(ev, qaSamples(evalPairs, tok, Number(eos)), o.seqLen, o.mode ?? 'single');
    return {
      train,
      eval: ev,
      trainPairs,
      evalPairs,
      trainPrompts: trainPairs.map((p) => tok(p.prompt, true)),
      eos: Number(eos),
    };
  } finally {
    await model.dispose();
    await llama.dispose();
  }
}
