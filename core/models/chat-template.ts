/**
 * Names the chat-template family from the template text (the Jinja in `tokenizer.chat_template`).
 * The names match what the dataset renderer and chat wrappers key on. Order matters: more
 * specific markers first.
 */
export function detectTemplateFamily(template: string): string {
  const t = template;
  if (t.includes('<|im_start|>')) {
    return /qwen/i.test(t) || t.includes('<tool_call>') || t.includes('<think>')
      ? 'qwen'
      : 'chatml';
  }
  if (t.includes('<|start_header_id|>')) return 'llama3';
  if (t.includes('<|channel|>') && t.includes('<|start|>')) return 'harmony';
  if (t.includes('<start_of_turn>')) return 'gemma';
  if (t.includes('<|START_OF_TURN_TOKEN|>')) return 'command-r';
  if (t.includes('<｜User｜>') || t.includes('<｜Assistant｜>')) return 'deepseek';
  if (t.includes('<|user|>') && t.includes('<|end|>')) return 'phi3';
  if (t.includes('<|user|>') || t.includes('<|system|>')) return 'zephyr';
  if (t.includes('[INST]')) return t.includes('<<SYS>>') ? 'llama2' : 'mistral';
  if (t.includes('### Instruction')) return 'alpaca';
  if (/GPT4 Correct/.test(t)) return 'openchat';
  return 'unknown';
}
