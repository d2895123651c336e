/** A compare conversation as Markdown: settings first, then each turn with every column. */
import type { CompareColumn, Conversation } from '../../contract/index.ts';

function quote(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `> ${l}` : '>'))
    .join('\n');
}

export function conversationMarkdown(c: Conversation, modelName: string): string {
  const s = c.sampling;
  const out: string[] = [`# ${c.title}`, ''];
  out.push(`- Model: ${modelName}`);
  out.push(`- Columns: ${c.columns.map((col: CompareColumn) => col.label).join(' | ')}`);
  out.push(
    `- Sampling: temperature ${s.temperature}, top-p ${s.topP}, top-k ${s.topK}, min-p ${s.minP}, repeat penalty ${s.repeatPenalty}, max tokens ${s.maxTokens}, seed ${s.seed}`,
  );
  out.push(`- Saved: ${c.updatedAt}`);
  if (c.systemPrompt) out.push('', '**System prompt**', '', quote(c.systemPrompt));
  for (const t of c.turnList) {
    out.push('', `## Turn ${t.index + 1}`, '', '**User**', '', quote(t.user));
    for (const col of c.columns) {
      const a = t.answers.find((x) => x.column === col.index);
      out.push('', `### ${col.label}`, '');
      if (!a) {
        out.push('_(no answer)_');
        continue;
      }
      out.push(a.content || '_(empty)_');
      const tail =
        a.finish === 'error'
          ? `failed: ${a.error ?? 'unknown error'}`
          : `${a.tokens} tokens, ${a.tokensPerSecond.toFixed(1)} tokens/s${a.finish && a.finish !== 'end' ? `, ${a.finish}` : ''}`;
      out.push('', `_${tail}_`);
    }
  }
  return out.join('\n') + '\n';
}

/** A file name for the export: the title's words, safe on every OS. */
export function markdownFileName(title: string): string {
  const base = title
    .toLowerCase()
    .replace(/[^a-z0-9]+/g, '-')
    .replace(/^-+|-+$/g, '')
    .slice(0, 60);
  return `${base || 'conversation'}.md`;
}
