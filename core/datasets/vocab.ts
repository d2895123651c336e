/**
 * A model's vocabulary for the masker, over node-llama-cpp: the GGUF is loaded vocab-only
 * (`vocabOnly: true`: the tokenizer and metadata, no weight tensors, so a 4 GB model costs a
 * few MB and no GPU memory). Tokenization is llama.cpp's own (`common_tokenize`), the same
 * code the trainer's runtime uses, so the tokens match what training sees.
 */
import type { Llama, LlamaModel, Token } from 'node-llama-cpp';
import type { Vocab } from './tokenize.ts';

export interface LoadedVocab extends Vocab {
  dispose(): Promise<void>;
}

export async function loadVocab(llama: Llama, modelPath: string): Promise<LoadedVocab> {
  const model: LlamaModel = await llama.loadModel({ modelPath, vocabOnly: true, gpuLayers: 0 });
  return { ...modelVocab(model), dispose: () => model.dispose() };
}

/** The vocabulary of a loaded model (vocab-only or with weights: chat uses the latter). */
export function modelVocab(model: LlamaModel): Vocab {
  const tpl = model.fileInfo.metadata?.tokenizer?.chat_template;
  const t = model.tokens;
  // SentencePiece's add_space_prefix: text after a special token gets a space written before
  // it ("a" after "b" reads " a" although the text had no space).
  const a = model.tokenize('a', false);
  const b = model.tokenize('b', false);
  const spacePrefix = model.detokenize(a, false, b).startsWith(' ');
  return {
    tokenize: (text, special) => model.tokenize(text, special).map(Number),
    detokenize: (tokens) => model.detokenize(tokens as Token[], true),
    isEog: (token) => model.isEogToken(token as Token),
    isSpecial: (token) => model.isSpecialToken(token as Token),
    bos: t.bos === null ? null : Number(t.bos),
    eos: t.eos === null ? null : Number(t.eos),
    bosText: t.bosString ?? '',
    eosText: t.eosString ?? '',
    addBos: t.shouldPrependBosToken,
    spacePrefix,
    chatTemplate: typeof tpl === 'string' && tpl.trim() !== '' ? tpl : null,
  };
}
