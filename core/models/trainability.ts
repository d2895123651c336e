/**
 * What the native LoRA trainer can train. Two levels:
 *  - architecture: refused at `models.add` (UNSUPPORTED) when the trainer cannot run it at all;
 *  - tensor types: a model with other quant types is still added (usable for chat), but
 *    `trainable.ok` is false with the reason.
 */

/** llama.cpp architectures whose forward graph has a full backward pass in our ggml build. */
export const TRAINABLE_ARCHITECTURES: readonly string[] = ['llama', 'mistral', 'qwen2', 'qwen3'];

/** Tensor types the trainer can read (frozen base weights) and differentiate through. */
export const TRAINABLE_TENSOR_TYPES: readonly string[] = [
  'F32',
  'F16',
  'BF16',
  'Q8_0',
  'Q4_0',
  'Q4_K',
  'Q5_K',
  'Q6_K',
];

/** Architectures that are mixture-of-experts by design. */
const MOE_ARCHITECTURES = new Set([
  'deepseek2',
  'deepseek',
  'mixtral',
  'qwen2moe',
  'qwen3moe',
  'olmoe',
  'dbrx',
  'arctic',
  'grok',
  'jamba',
  'granitemoe',
  'llama4',
  'gpt-oss',
  'glm4moe',
]);

export interface ArchitectureFacts {
  architecture: string;
  /** `<arch>.expert_count` from the metadata (0 or absent for dense models). */
  expertCount: number;
  tensorNames: readonly string[];
}

/** Null when the architecture is trainable, else the reason (names the architecture and what is missing). */
export function architectureRefusal(f: ArchitectureFacts): string | null {
  const arch = f.architecture;
  const hasExpertTensors = f.tensorNames.some(
    (n) => /_exps\b|_exps\./.test(n) || n.includes('.ffn_gate_inp.'),
  );
  if (MOE_ARCHITECTURES.has(arch) || f.expertCount > 0 || hasExpertTensors) {
    return (
      `architecture ${arch} is a mixture-of-experts model, which the trainer does not support: ` +
      `ggml has no backward pass for MUL_MAT_ID (expert routing)`
    );
  }
  if (arch.startsWith('gemma')) {
    return (
      `architecture ${arch} is not supported by the trainer: ggml has no backward pass for ` +
      `its GEGLU feed-forward`
    );
  }
  if (!TRAINABLE_ARCHITECTURES.includes(arch)) {
    return (
      `architecture ${arch} is not supported by the trainer ` +
      `(supported: ${TRAINABLE_ARCHITECTURES.join(', ')})`
    );
  }
  return null;
}

/** Null when every tensor type is trainable, else the reason. */
export function tensorTypeRefusal(tensorTypes: Record<string, number>): string | null {
  const bad = Object.keys(tensorTypes).filter((t) => !TRAINABLE_TENSOR_TYPES.includes(t));
  if (bad.length === 0) return null;
  return (
    `tensor type${bad.length > 1 ? 's' : ''} ${bad.join(', ')} ${bad.length > 1 ? 'are' : 'is'} not supported by the trainer ` +
    `(supported: ${TRAINABLE_TENSOR_TYPES.join(', ')}); the model can still be used for chat`
  );
}
