/**
 * A model's vocabulary for the masker, over node-llama-cpp: the GGUF is loaded vocab-only
 * (`vocabOnly: true`: the tokenizer and metadata, no weight tensors, so a 4 GB model costs a
 * few MB and no GPU memory). Tokenization is llama.cpp's own (`common_tokenize`), the same
 * code the trainer's runtime uses, so the tokens match what training sees.
 */
import type { Llama, LlamaModel, Token } from 'node-llama-cpp';
import type { Vocab } from './tokenize.ts';

export interface LoadedVocab extends Vocab {
  /** The token's text for display (special tokens written out). */
  pieceOf(token: number): string;
  dispose(): Promise<void>;
}

export async function loadVocab(llama: Llama, modelPath: string): Promise<LoadedVocab> {
  const model: LlamaModel = await llama.loadModel({ modelPath, vocabOnly: true, gpuLayers: 0 });
  const tpl = model.fileInfo.metadata?.tokenizer?.chat_template;
  const t = model.tokens;
  const pieces = new Map<number, string>();
  const pieceOf = (token: number): string => {
    let p = pieces.get(token);
    if (p === undefined) {
      p = model.detokenize([token as Token], true);
      if (pieces.size < 400_000) pieces.set(token, p);
    }
    return p;
  };
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
    chatTemplate: typeof tpl === 'string' && tpl.trim() !== '' ? tpl : null,
    pieceOf,
    piece: pieceOf,
    dispose: () => model.dispose(),
  };
}
