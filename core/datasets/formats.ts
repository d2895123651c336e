/**
 * Dataset formats: detection from sample rows, the field mapping, and normalisation of one
 * source row into a record `{ messages }` or `{ text }` with every problem it has. Pure
 * functions over JSON values; the file readers and the import pipeline sit around them.
 */
import { datasetFormats } from '../../contract/index.ts';
import type {
  DatasetFormat,
  FieldMapping,
  FileKind,
  Message,
  NormalizedRecord,
  Problem,
  Role,
} from './types.ts';

type RowProblem = Omit<Problem, 'file' | 'line'>;

/** Source field names we recognise for each canonical field, most common first. */
const aliases: Record<keyof FieldMapping, string[]> = {
  messages: ['messages', 'conversation', 'chat'],
  role: ['role', 'from', 'speaker'],
  content: ['content', 'value', 'text'],
  conversations: ['conversations', 'conversation', 'messages'],
  from: ['from', 'role'],
  value: ['value', 'content', 'text'],
  instruction: ['instruction', 'instructions'],
  input: ['input', 'context'],
  output: ['output', 'response'],
  system: ['system', 'system_prompt'],
  prompt: ['prompt', 'question', 'query'],
  completion: ['completion', 'response', 'answer'],
  text: ['text', 'content', 'document', 'body'],
};

/** Role names each conversation format accepts, mapped to ours. */
const roleNames: Record<'openai' | 'sharegpt', Record<string, Role>> = {
  openai: { system: 'system', user: 'user', assistant: 'assistant' },
  sharegpt: {
    system: 'system',
    human: 'user',
    gpt: 'assistant',
    user: 'user',
    assistant: 'assistant',
  },
};

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** How a found value is named in a problem: "a number (42)", "null", "missing". */
export function describe(v: unknown): string {
  if (v === undefined) return 'nothing (missing)';
  if (v === null) return 'null';
  if (typeof v === 'string')
    return v === ''
      ? 'an empty string'
      : `a string ("${v.length > 40 ? v.slice(0, 40) + '…' : v}")`;
  if (typeof v === 'number' || typeof v === 'boolean') return `a ${typeof v} (${String(v)})`;
  if (Array.isArray(v)) return `an array of ${v.length}`;
  if (isObj(v)) {
    const keys = Object.keys(v);
    return `an object with keys ${keys.slice(0, 6).join(', ')}${keys.length > 6 ? ', …' : ''}`;
  }
  return typeof v;
}

/** A CSV / Parquet cell may hold a JSON array as text; read it as the array. */
function maybeJsonArray(v: unknown): unknown {
  if (typeof v === 'string' && v.trimStart().startsWith('[')) {
    try {
      return JSON.parse(v);
    } catch {
      return v;
    }
  }
  return v;
}

function conversationItemKeys(
  row: Record<string, unknown>,
  listKey: string | undefined,
): { roleKey?: string; contentKey?: string } {
  if (!listKey) return {};
  const list = maybeJsonArray(row[listKey]);
  if (!Array.isArray(list)) return {};
  const firstObj = list.find(isObj);
  if (!firstObj) return {};
  return {
    roleKey: ['role', 'from', 'speaker'].find((k) => k in firstObj),
    contentKey: ['content', 'value', 'text'].find((k) => k in firstObj),
  };
}

/** Which format one row looks like, or null. */
export function rowFormat(row: unknown): DatasetFormat | null {
  if (!isObj(row)) return null;
  const convKey = ['messages', 'conversations', 'conversation', 'chat'].find((k) =>
    Array.isArray(maybeJsonArray(row[k])),
  );
  if (convKey) {
    const { roleKey } = conversationItemKeys(row, convKey);
    if (roleKey === 'from' || convKey.startsWith('conversation')) return 'sharegpt';
    return 'openai';
  }
  if ('instruction' in row && ('output' in row || 'response' in row)) return 'alpaca';
  if (aliases.prompt.some((k) => k in row) && aliases.completion.some((k) => k in row))
    return 'completion';
  if (aliases.text.some((k) => typeof row[k] === 'string')) return 'text';
  return null;
}

export interface Detection {
  format: DatasetFormat;
  /** The mapping that was filled in from the sample rows (source field for each canonical field). */
  mapping: FieldMapping;
  /** Share of sample rows that matched the chosen format, 0..1. */
  confidence: number;
  /** How many sample rows matched each format. */
  votes: Partial<Record<DatasetFormat, number>>;
}

/** Detect the format from sample rows (text files are always raw text). */
export function detectFormat(
  samples: unknown[],
  kind: FileKind,
  override?: DatasetFormat,
  mapping: FieldMapping = {},
): Detection {
  const votes: Partial<Record<DatasetFormat, number>> = {};
  for (const s of samples) {
    const f = rowFormat(s);
    if (f) votes[f] = (votes[f] ?? 0) + 1;
  }
  let format: DatasetFormat;
  if (override) format = override;
  else if (kind === 'text') format = 'text';
  else {
    const best = (Object.entries(votes) as [DatasetFormat, number][]).sort(
      (a, b) => b[1] - a[1],
    )[0];
    format = best ? best[0] : guessFromMapping(mapping);
  }
  const confidence = samples.length === 0 ? 0 : (votes[format] ?? 0) / samples.length;
  const first = samples.find((s) => rowFormat(s) === format) ?? samples.find(isObj);
  return {
    format,
    mapping: resolveMapping(format, isObj(first) ? first : {}, mapping),
    confidence,
    votes,
  };
}

function guessFromMapping(m: FieldMapping): DatasetFormat {
  if (m.messages) return 'openai';
  if (m.conversations) return 'sharegpt';
  if (m.instruction) return 'alpaca';
  if (m.prompt || m.completion) return 'completion';
  return 'text';
}

/** The full mapping for `format`: the user's choices, then the fields found in `row`. */
export function resolveMapping(
  format: DatasetFormat,
  row: Record<string, unknown>,
  user: FieldMapping = {},
): FieldMapping {
  const out: FieldMapping = {};
  for (const k of datasetFormats[format].fields) {
    const v = user[k] ?? aliases[k].find((a) => a in row);
    if (v !== undefined) out[k] = v;
  }
  if (format === 'openai' || format === 'sharegpt') {
    const listKey = format === 'openai' ? out.messages : out.conversations;
    const found = conversationItemKeys(row, listKey);
    const rk = format === 'openai' ? 'role' : 'from';
    const ck = format === 'openai' ? 'content' : 'value';
    out[rk] = user[rk] ?? found.roleKey ?? rk;
    out[ck] = user[ck] ?? found.contentKey ?? ck;
    if (listKey === undefined) {
      if (format === 'openai') out.messages = 'messages';
      else out.conversations = 'conversations';
    }
  } else {
    const defaults: FieldMapping =
      format === 'alpaca'
        ? { instruction: 'instruction', output: 'output' }
        : format === 'completion'
          ? { prompt: 'prompt', completion: 'completion' }
          : format === 'text'
            ? { text: 'text' }
            : {};
    for (const [k, v] of Object.entries(defaults) as [keyof FieldMapping, string][]) out[k] ??= v;
  }
  return out;
}

/** Parse a CLI mapping string: `prompt=question,completion=answer`. */
export function parseMapping(s: string): FieldMapping {
  const out: FieldMapping = {};
  for (const part of s
    .split(',')
    .map((p) => p.trim())
    .filter(Boolean)) {
    const eq = part.indexOf('=');
    if (eq <= 0)
      throw new Error(`--map: expected ours=theirs pairs (e.g. prompt=question), found "${part}"`);
    const k = part.slice(0, eq).trim();
    if (!(k in aliases))
      throw new Error(`--map: unknown field "${k}"; known: ${Object.keys(aliases).join(', ')}`);
    out[k as keyof FieldMapping] = part.slice(eq + 1).trim();
  }
  return out;
}

export interface NormalizeResult {
  record: NormalizedRecord | null;
  problems: RowProblem[];
}

function err(code: Problem['code'], field: string, expected: string, found: string): RowProblem {
  return { code, severity: 'error', field, expected, found };
}
function warn(code: Problem['code'], field: string, expected: string, found: string): RowProblem {
  return { code, severity: 'warning', field, expected, found };
}

/** String content of a message: a string, or OpenAI content parts `[{ type: 'text', text }]`. */
function contentText(v: unknown): string | null {
  if (typeof v === 'string') return v;
  if (
    Array.isArray(v) &&
    v.every((p) => isObj(p) && p.type === 'text' && typeof p.text === 'string')
  ) {
    return v.map((p) => (p as { text: string }).text).join('');
  }
  return null;
}

const formatNames: Record<DatasetFormat, string> = {
  openai: 'an OpenAI chat record',
  sharegpt: 'a ShareGPT record',
  alpaca: 'an Alpaca record',
  completion: 'a prompt/completion record',
  text: 'a text record',
};

/** Normalise one source row. `record` is null when the row has an error. */
export function normalizeRow(
  value: unknown,
  format: DatasetFormat,
  mapping: FieldMapping,
): NormalizeResult {
  if (!isObj(value)) {
    return {
      record: null,
      problems: [
        err('not_an_object', '', `${formatNames[format]} (a JSON object)`, describe(value)),
      ],
    };
  }
  const other = rowFormat(value);
  const mixed = (field: string): RowProblem[] =>
    other && other !== format
      ? [
          err(
            'mixed_format',
            field,
            formatNames[format],
            `${formatNames[other]} (the file mixes formats)`,
          ),
        ]
      : [];
  switch (format) {
    case 'openai':
    case 'sharegpt':
      return normalizeConversation(value, format, mapping, mixed);
    case 'alpaca':
    case 'completion': {
      const problems: RowProblem[] = [];
      const sysKey = mapping.system;
      const userKeys =
        format === 'alpaca' ? [mapping.instruction ?? 'instruction'] : [mapping.prompt ?? 'prompt'];
      const outKey =
        format === 'alpaca' ? (mapping.output ?? 'output') : (mapping.completion ?? 'completion');
      const instr = value[userKeys[0]!];
      if (instr === undefined) {
        const m = mixed(userKeys[0]!);
        return {
          record: null,
          problems: m.length
            ? m
            : [err('missing_field', userKeys[0]!, 'a string', describe(instr))],
        };
      }
      if (typeof instr !== 'string')
        problems.push(err('wrong_type', userKeys[0]!, 'a string', describe(instr)));
      else if (instr.trim() === '')
        problems.push(err('empty_content', userKeys[0]!, 'a non-empty string', 'an empty string'));
      let input = '';
      if (format === 'alpaca') {
        const inKey = mapping.input ?? 'input';
        const iv = value[inKey];
        if (iv !== undefined && iv !== null && typeof iv !== 'string')
          problems.push(err('wrong_type', inKey, 'a string (or nothing)', describe(iv)));
        else if (typeof iv === 'string') input = iv;
      }
      const out = value[outKey];
      if (out === undefined || out === null)
        problems.push(
          err('missing_field', outKey, 'a string (the assistant reply)', describe(out)),
        );
      else if (typeof out !== 'string')
        problems.push(err('wrong_type', outKey, 'a string (the assistant reply)', describe(out)));
      else if (out.trim() === '')
        problems.push(
          err('empty_assistant', outKey, 'a non-empty assistant reply', 'an empty string'),
        );
      let system: string | null = null;
      if (sysKey !== undefined && value[sysKey] !== undefined && value[sysKey] !== null) {
        const sv = value[sysKey];
        if (typeof sv !== 'string')
          problems.push(err('wrong_type', sysKey, 'a string', describe(sv)));
        else if (sv.trim() !== '') system = sv;
      }
      if (problems.some((p) => p.severity === 'error')) return { record: null, problems };
      const messages: Message[] = [];
      if (system !== null) messages.push({ role: 'system', content: system });
      // Alpaca's own convention: the input follows the instruction after a blank line.
      messages.push({
        role: 'user',
        content: input.trim() !== '' ? `${instr as string}\n\n${input}` : (instr as string),
      });
      messages.push({ role: 'assistant', content: out as string });
      return { record: { messages }, problems };
    }
    case 'text': {
      const key = mapping.text ?? 'text';
      const t = value[key];
      if (t === undefined) {
        const m = mixed(key);
        return {
          record: null,
          problems: m.length ? m : [err('missing_field', key, 'a string', describe(t))],
        };
      }
      if (typeof t !== 'string')
        return { record: null, problems: [err('wrong_type', key, 'a string', describe(t))] };
      if (t.trim() === '')
        return {
          record: null,
          problems: [err('empty_content', key, 'non-empty text', 'an empty string')],
        };
      return { record: { text: t }, problems: [] };
    }
  }
}

function normalizeConversation(
  value: Record<string, unknown>,
  format: 'openai' | 'sharegpt',
  mapping: FieldMapping,
  mixed: (field: string) => RowProblem[],
): NormalizeResult {
  const listKey =
    (format === 'openai' ? mapping.messages : mapping.conversations) ??
    (format === 'openai' ? 'messages' : 'conversations');
  const roleKey =
    (format === 'openai' ? mapping.role : mapping.from) ?? (format === 'openai' ? 'role' : 'from');
  const contentKey =
    (format === 'openai' ? mapping.content : mapping.value) ??
    (format === 'openai' ? 'content' : 'value');
  const names = roleNames[format];
  const problems: RowProblem[] = [];
  const raw = value[listKey];
  if (raw === undefined) {
    const m = mixed(listKey);
    return {
      record: null,
      problems: m.length
        ? m
        : [err('missing_field', listKey, 'an array of messages', describe(raw))],
    };
  }
  const list = maybeJsonArray(raw);
  if (!Array.isArray(list))
    return {
      record: null,
      problems: [err('wrong_type', listKey, 'an array of messages', describe(raw))],
    };
  if (list.length === 0)
    return {
      record: null,
      problems: [
        err(
          'no_assistant',
          listKey,
          'at least one user and one assistant message',
          'an empty array',
        ),
      ],
    };
  const messages: Message[] = [];
  list.forEach((item, i) => {
    const at = `${listKey}[${i}]`;
    if (!isObj(item)) {
      problems.push(
        err('not_an_object', at, `an object with ${roleKey} and ${contentKey}`, describe(item)),
      );
      return;
    }
    const r = item[roleKey];
    let role: Role | undefined;
    if (r === undefined)
      problems.push(
        err(
          'missing_field',
          `${at}.${roleKey}`,
          `one of ${Object.keys(names).join(', ')}`,
          describe(r),
        ),
      );
    else if (typeof r !== 'string')
      problems.push(
        err(
          'wrong_type',
          `${at}.${roleKey}`,
          `one of ${Object.keys(names).join(', ')}`,
          describe(r),
        ),
      );
    else {
      role = names[r];
      if (!role)
        problems.push(
          err(
            'unknown_role',
            `${at}.${roleKey}`,
            `one of ${Object.keys(names).join(', ')}`,
            `"${r}"`,
          ),
        );
    }
    const c = item[contentKey];
    const text = contentText(c);
    if (c === undefined || (c === null && role !== 'assistant'))
      problems.push(err('missing_field', `${at}.${contentKey}`, 'a string', describe(c)));
    else if (c !== null && text === null)
      problems.push(err('wrong_type', `${at}.${contentKey}`, 'a string', describe(c)));
    else if (role === 'assistant' && (text ?? '').trim() === '')
      problems.push(
        err('empty_assistant', `${at}.${contentKey}`, 'a non-empty assistant reply', describe(c)),
      );
    else if (role && (text ?? '').trim() === '')
      problems.push(
        warn('empty_content', `${at}.${contentKey}`, 'a non-empty message', describe(c)),
      );
    if (role && text !== null) messages.push({ role, content: text });
  });
  if (problems.some((p) => p.severity === 'error')) return { record: null, problems };
  if (!messages.some((m) => m.role === 'assistant')) {
    problems.push(
      err(
        'no_assistant',
        listKey,
        'at least one assistant message (nothing would be trained)',
        `roles ${messages.map((m) => m.role).join(', ')}`,
      ),
    );
    return { record: null, problems };
  }
  const last = messages[messages.length - 1]!;
  if (last.role !== 'assistant') {
    problems.push(
      warn(
        'no_final_assistant',
        `${listKey}[${messages.length - 1}]`,
        'the conversation to end with an assistant message',
        `a final ${last.role} message (not trained)`,
      ),
    );
  }
  return { record: { messages }, problems };
}
