/**
 * Curated starting models for LoRA on one GPU: dense llama / qwen2 / qwen3 models (what the
 * trainer supports), small to 8B, in quantizations the trainer reads (Q8_0, Q4_K_M). Repository
 * and file names as published on Hugging Face (checked by hand; a renamed file answers
 * NOT_FOUND in plain words).
 */
import type { RecommendedModel } from '../../contract/index.ts';

const list: Omit<RecommendedModel, 'uri'>[] = [
  {
    repo: 'Qwen/Qwen2.5-0.5B-Instruct-GGUF',
    file: 'qwen2.5-0.5b-instruct-q8_0.gguf',
    parameters: '0.5B',
    architecture: 'qwen2',
    why: 'Tiny and fast: a first run finishes in minutes even on a laptop GPU or the CPU.',
  },
  {
    repo: 'bartowski/Llama-3.2-1B-Instruct-GGUF',
    file: 'Llama-3.2-1B-Instruct-Q8_0.gguf',
    parameters: '1.2B',
    architecture: 'llama',
    why: 'A capable small chat model; trains overnight on 6 GB of VRAM with room to spare.',
  },
  {
    repo: 'Qwen/Qwen2.5-1.5B-Instruct-GGUF',
    file: 'qwen2.5-1.5b-instruct-q8_0.gguf',
    parameters: '1.5B',
    architecture: 'qwen2',
    why: 'Good at following instructions and multilingual text for its size; a safe default.',
  },
  {
    repo: 'Qwen/Qwen3-1.7B-GGUF',
    file: 'Qwen3-1.7B-Q8_0.gguf',
    parameters: '1.7B',
    architecture: 'qwen3',
    why: 'The newest small Qwen, with a thinking mode; fits 8 GB GPUs.',
  },
  {
    repo: 'bartowski/Llama-3.2-3B-Instruct-GGUF',
    file: 'Llama-3.2-3B-Instruct-Q4_K_M.gguf',
    parameters: '3.2B',
    architecture: 'llama',
    why: 'Noticeably better answers than 1B models while still training on an 8 GB GPU.',
  },
  {
    repo: 'Qwen/Qwen2.5-3B-Instruct-GGUF',
    file: 'qwen2.5-3b-instruct-q4_k_m.gguf',
    parameters: '3.1B',
    architecture: 'qwen2',
    why: 'Strong at structured output (JSON, tables) for style and format tuning.',
  },
  {
    repo: 'Qwen/Qwen3-4B-GGUF',
    file: 'Qwen3-4B-Q4_K_M.gguf',
    parameters: '4.0B',
    architecture: 'qwen3',
    why: 'The best quality per GB in this list; needs about 10-12 GB for training at 512 tokens.',
  },
  {
    repo: 'bartowski/Meta-Llama-3.1-8B-Instruct-GGUF',
    file: 'Meta-Llama-3.1-8B-Instruct-Q4_K_M.gguf',
    parameters: '8.0B',
    architecture: 'llama',
    why: 'The classic 8B base for fine-tunes; for 16-24 GB GPUs.',
  },
  {
    repo: 'Qwen/Qwen3-8B-GGUF',
    file: 'Qwen3-8B-Q4_K_M.gguf',
    parameters: '8.2B',
    architecture: 'qwen3',
    why: 'The strongest model here; for 16-24 GB GPUs and longer nights.',
  },
];

export function recommendedModels(): RecommendedModel[] {
  return list.map((m) => ({ ...m, uri: `hf:${m.repo}/${m.file}` }));
}
