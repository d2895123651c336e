// Dataset import: the malformed-file corpus (each file gives its specific error, none crashes,
// nothing is stored unless accepted), and format equivalence (every format of the same records
// imports to the same normalised records, hence the same content hash).
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { datasetFormats } from '../../contract/datasets.ts';
import { OvernightError } from '../../contract/errors.ts';
import { importDataset, inspectDataset, type InspectResult } from '../../core/datasets/import.ts';
import { loadStoredRecords } from '../../core/datasets/records.ts';
import { parseMapping } from '../../core/datasets/formats.ts';
import type { ProblemCode } from '../../core/datasets/types.ts';

const fixtures = new URL('../fixtures/datasets/', import.meta.url).pathname;
let tmp: string;
before(() => {
  tmp = mkdtempSync(join(os.tmpdir(), 'overnight-'));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

function write(name: string, data: string | Buffer): string {
  const p = join(tmp, name);
  writeFileSync(p, data);
  return p;
}
const chat = (u: string, a: string) =>
  JSON.stringify({
    messages: [
      { role: 'user', content: u },
      { role: 'assistant', content: a },
    ],
  });

function codes(r: InspectResult): ProblemCode[] {
  return r.problems.items.map((p) => p.code);
}
function storedFiles(dataDir: string): string[] {
  try {
    return readdirSync(join(dataDir, 'datasets'));
  } catch {
    return [];
  }
}

describe('malformed files', () => {
  test('a broken JSON line is reported with its line number; the other lines are fine', async () => {
    const p = write('broken.jsonl', [chat('a', 'b'), '{"messages": [', chat('c', 'd')].join('\n'));
    const r = await inspectDataset({ path: p });
    assert.equal(r.counts.valid, 2);
    assert.equal(r.problems.items.length, 1);
    const e = r.problems.items[0]!;
    assert.equal(e.code, 'invalid_json');
    assert.equal(e.line, 2);
    assert.equal(e.file, 'broken.jsonl');
    assert.match(e.found, /invalid JSON/);
  });

  test('wrong types name the field, what was expected and what was found', async () => {
    const p = write(
      'types.jsonl',
      [
        JSON.stringify({
          messages: [
            { role: 'user', content: 42 },
            { role: 'assistant', content: 'x' },
          ],
        }),
        JSON.stringify({ messages: 'hello' }),
        JSON.stringify({ messages: [{ role: 7, content: 'x' }] }),
      ].join('\n'),
    );
    const r = await inspectDataset({ path: p, format: 'openai' });
    const [a, b, c] = r.problems.items;
    assert.deepEqual(
      [a!.line, a!.field, a!.code, a!.expected, a!.found],
      [1, 'messages[0].content', 'wrong_type', 'a string', 'a number (42)'],
    );
    assert.deepEqual([b!.line, b!.field, b!.code], [2, 'messages', 'wrong_type']);
    assert.deepEqual([c!.line, c!.field, c!.code], [3, 'messages[0].role', 'wrong_type']);
    assert.equal(r.counts.valid, 0);
  });

  test('missing fields are reported per record', async () => {
    const p = write(
      'missing.jsonl',
      [
        JSON.stringify({ instruction: 'a', output: 'b' }),
        JSON.stringify({ instruction: 'c' }),
        JSON.stringify({ output: 'd', note: 1 }),
      ].join('\n'),
    );
    const r = await inspectDataset({ path: p });
    assert.equal(r.detection.format, 'alpaca');
    assert.deepEqual(
      r.problems.items.map((x) => [x.line, x.code, x.field]),
      [
        [2, 'missing_field', 'output'],
        [3, 'missing_field', 'instruction'],
      ],
    );
  });

  test('a BOM and CRLF line ends are handled, not reported', async () => {
    const p = write(
      'bom.jsonl',
      Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from(`${chat('a', 'b')}\r\n${chat('c', 'd')}\r\n`),
      ]),
    );
    const r = await inspectDataset({ path: p });
    assert.equal(r.problems.items.length, 0);
    assert.equal(r.counts.valid, 2);
    const csv = write(
      'bom.csv',
      Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from('prompt,completion\r\nhi,there\r\n'),
      ]),
    );
    const rc = await inspectDataset({ path: csv });
    assert.equal(rc.detection.format, 'completion');
    assert.deepEqual(rc.preview[0]!.record, {
      messages: [
        { role: 'user', content: 'hi' },
        { role: 'assistant', content: 'there' },
      ],
    });
    const json = write(
      'bom.json',
      Buffer.concat([
        Buffer.from([0xef, 0xbb, 0xbf]),
        Buffer.from(`[\r\n${chat('a', 'b')},\r\n${chat('c', 'd')}\r\n]\r\n`),
      ]),
    );
    const rj = await inspectDataset({ path: json });
    assert.equal(rj.problems.items.length, 0);
    assert.equal(rj.counts.valid, 2);
  });

  test('an empty file, and a whitespace-only file, say so', async () => {
    for (const [name, body] of [
      ['empty.jsonl', ''],
      ['blank.json', '  \n\n'],
      ['empty.csv', ''],
    ] as const) {
      const r = await inspectDataset({ path: write(name, body) });
      assert.deepEqual(codes(r), ['empty_file'], name);
    }
    const header = await inspectDataset({ path: write('header-only.csv', 'prompt,completion\n') });
    assert.deepEqual(codes(header), ['empty_file']);
  });

  test('binary junk is refused as binary, with the offset of the first NUL byte', async () => {
    const junk = Buffer.alloc(4096);
    for (let i = 0; i < junk.length; i++) junk[i] = (i * 7919) % 256;
    const r = await inspectDataset({ path: write('junk.jsonl', junk) });
    assert.deepEqual(codes(r), ['binary_file']);
    assert.match(r.problems.items[0]!.found, /NUL byte at offset 0/);
  });

  test('mixed formats: rows of another format are named as such', async () => {
    const p = write(
      'mixed.jsonl',
      [chat('a', 'b'), chat('c', 'd'), JSON.stringify({ instruction: 'x', output: 'y' })].join(
        '\n',
      ),
    );
    const r = await inspectDataset({ path: p });
    assert.equal(r.detection.format, 'openai');
    assert.equal(r.problems.items[0]!.code, 'mixed_format');
    assert.equal(r.problems.items[0]!.line, 3);
    assert.match(r.problems.items[0]!.found, /Alpaca/);
  });

  test('a huge single line is skipped past the cap, without holding it', async () => {
    const big = JSON.stringify({
      messages: [
        { role: 'user', content: 'x'.repeat(3 << 20) },
        { role: 'assistant', content: 'y' },
      ],
    });
    const p = write('huge.jsonl', [chat('a', 'b'), big, chat('c', 'd')].join('\n'));
    const r = await inspectDataset({ path: p, maxRecordBytes: 1 << 20 });
    assert.deepEqual(codes(r), ['line_too_long']);
    assert.equal(r.problems.items[0]!.line, 2);
    assert.equal(r.counts.valid, 2);
    // Same file under the default cap reads fine.
    const ok = await inspectDataset({ path: p });
    assert.equal(ok.counts.valid, 3);
  });

  test('invalid UTF-8 is reported by line with the bad byte', async () => {
    const bad = Buffer.concat([
      Buffer.from(chat('a', 'b') + '\n'),
      Buffer.from('{"messages":[{"role":"user","content":"caf'),
      Buffer.from([0xe9]),
      Buffer.from('"}]}\n'),
      Buffer.from(chat('c', 'd')),
    ]);
    const r = await inspectDataset({ path: write('latin1.jsonl', bad) });
    assert.deepEqual(codes(r), ['invalid_utf8']);
    assert.equal(r.problems.items[0]!.line, 2);
    assert.match(r.problems.items[0]!.found, /0xe9/);
    const csv = Buffer.concat([
      Buffer.from('prompt,completion\nok,fine\nbad,'),
      Buffer.from([0xff, 0xfe]),
      Buffer.from('\n'),
    ]);
    const rc = await inspectDataset({ path: write('bad.csv', csv) });
    assert.deepEqual(codes(rc), ['invalid_utf8']);
    assert.equal(rc.problems.items[0]!.line, 3);
  });

  test('CSV ragged rows and unterminated quotes are errors with line numbers', async () => {
    const p = write('ragged.csv', 'prompt,completion\na,b\nc,d,e\n"multi\nline",f\ng\n');
    const r = await inspectDataset({ path: p });
    assert.deepEqual(
      r.problems.items.map((x) => [x.line, x.code, x.expected, x.found]),
      [
        [3, 'ragged_row', '2 fields (as in the header)', '3 fields'],
        [6, 'ragged_row', '2 fields (as in the header)', '1 fields'],
      ],
    );
    assert.equal(r.counts.valid, 2);
    const q = await inspectDataset({
      path: write('quote.csv', 'prompt,completion\na,"never closed\n'),
    });
    assert.deepEqual(codes(q), ['csv_quote']);
    assert.equal(q.problems.items[0]!.line, 2);
  });

  test('conversation checks: unknown roles, empty assistant turns, no final assistant, duplicates', async () => {
    const p = write(
      'conv.jsonl',
      [
        JSON.stringify({
          messages: [
            { role: 'user', content: 'a' },
            { role: 'bot', content: 'b' },
          ],
        }),
        JSON.stringify({
          messages: [
            { role: 'user', content: 'a' },
            { role: 'assistant', content: '  ' },
          ],
        }),
        JSON.stringify({
          messages: [
            { role: 'user', content: 'a' },
            { role: 'assistant', content: 'b' },
            { role: 'user', content: 'c' },
          ],
        }),
        chat('x', 'y'),
        chat('x', 'y'),
        JSON.stringify({ messages: [{ role: 'user', content: 'only a question' }] }),
      ].join('\n'),
    );
    const r = await inspectDataset({ path: p });
    assert.deepEqual(
      r.problems.items.map((x) => [x.line, x.code, x.severity, x.field]),
      [
        [1, 'unknown_role', 'error', 'messages[1].role'],
        [2, 'empty_assistant', 'error', 'messages[1].content'],
        [3, 'no_final_assistant', 'warning', 'messages[2]'],
        [5, 'duplicate', 'error', ''],
        [6, 'no_assistant', 'error', 'messages'],
      ],
    );
    assert.match(r.problems.items[3]!.found, /line 4/);
    assert.deepEqual(r.counts, { rows: 6, valid: 2, invalid: 3, duplicates: 1 });
  });

  test('a JSON array that is truncated or has junk after it', async () => {
    const r = await inspectDataset({
      path: write('trunc.json', `[${chat('a', 'b')},\n${chat('c', 'd')},\n{"messages": [`),
    });
    assert.equal(r.counts.valid, 2);
    assert.deepEqual(codes(r), ['invalid_json']);
    assert.equal(r.problems.items[0]!.line, 3);
    const j = await inspectDataset({
      path: write('junk-after.json', `[${chat('a', 'b')}]\nhello`),
    });
    assert.deepEqual(codes(j), ['invalid_json']);
    assert.equal(j.problems.items[0]!.line, 2);
  });

  test('JSON: a single top-level object, and concatenated objects, are records too', async () => {
    const one = await inspectDataset({ path: write('one.json', `  ${chat('a', 'b')}\n`) });
    assert.equal(one.counts.valid, 1);
    assert.equal(one.problems.items.length, 0);
    const many = await inspectDataset({
      path: write('many.json', `${chat('a', 'b')}\n${chat('c', 'd')}`),
    });
    assert.equal(many.counts.valid, 2);
    const pretty = await inspectDataset({
      path: write('pretty.jsonl', JSON.stringify([JSON.parse(chat('a', 'b'))], null, 2)),
    });
    assert.equal(pretty.kind, 'json', 'a .jsonl holding one JSON array is read as JSON');
    assert.equal(pretty.counts.valid, 1);
    const strings = await inspectDataset({ path: write('strings.json', '["a ] b", "c"]') });
    assert.deepEqual(codes(strings), ['not_an_object', 'not_an_object']);
  });

  test('problems are capped with an exact summary', async () => {
    const lines = Array.from({ length: 500 }, (_, i) =>
      i % 2 ? chat(`q${i}`, `a${i}`) : `not json ${i}`,
    );
    const r = await inspectDataset({ path: write('many.jsonl', lines.join('\n')), problemCap: 20 });
    assert.equal(r.problems.items.length, 20);
    assert.equal(r.problems.errors, 250);
    assert.equal(r.problems.truncated, true);
    assert.deepEqual(r.problems.summary, [
      { code: 'invalid_json', severity: 'error', count: 250, firstLine: 1 },
    ]);
  });

  test('no file in the corpus crashes the reader, and none with only bad rows stores anything', async () => {
    const dataDir = join(tmp, 'data-corpus');
    for (const name of readdirSync(tmp)) {
      if (!/\.(jsonl|json|csv)$/.test(name)) continue;
      try {
        const r = await importDataset({ path: join(tmp, name), dataDir });
        if (r.status === 'imported') assert.equal(r.problems.errors, 0, name);
      } catch (e) {
        assert.ok(e instanceof OvernightError, `${name}: ${String(e)}`);
        assert.equal(e.code, 'INVALID_FILE');
      }
    }
    for (const f of storedFiles(dataDir)) assert.match(f, /^[0-9a-f]{64}\.jsonl$/);
  });
});

describe('import and storage', () => {
  test('a file with errors is not imported until the problems are accepted', async () => {
    const dataDir = join(tmp, 'data-accept');
    const p = write('accept.jsonl', [chat('a', 'b'), 'oops', chat('c', 'd')].join('\n'));
    const r1 = await importDataset({ path: p, dataDir });
    assert.equal(r1.status, 'needs_confirmation');
    assert.deepEqual(storedFiles(dataDir), []);
    const r2 = await importDataset({ path: p, dataDir, acceptProblems: true });
    assert.equal(r2.status, 'imported');
    assert.ok(r2.status === 'imported');
    assert.deepEqual(storedFiles(dataDir), [`${r2.hash}.jsonl`]);
    assert.equal(r2.counts.valid, 2);
    assert.deepEqual(await loadStoredRecords(r2.storedPath), [
      JSON.parse(chat('a', 'b')),
      JSON.parse(chat('c', 'd')),
    ]);
    assert.equal(
      readFileSync(p, 'utf8'),
      [chat('a', 'b'), 'oops', chat('c', 'd')].join('\n'),
      'the source is untouched',
    );
  });

  test('cancelling stores nothing', async () => {
    const dataDir = join(tmp, 'data-cancel');
    const lines = Array.from({ length: 20000 }, (_, i) => chat(`question ${i}`, `answer ${i}`));
    const p = write('cancel.jsonl', lines.join('\n'));
    const ac = new AbortController();
    await assert.rejects(
      importDataset({
        path: p,
        dataDir,
        signal: ac.signal,
        maxRecordBytes: 1 << 20,
        onProgress: (pr) => pr.records > 100 && ac.abort(),
      }),
      (e: unknown) => e instanceof OvernightError && e.code === 'CANCELLED',
    );
    assert.deepEqual(storedFiles(dataDir), []);
  });

  test('progress reports bytes read up to the file size', async () => {
    const p = write(
      'progress.jsonl',
      Array.from({ length: 1000 }, (_, i) => chat(`q${i}`, `a${i}`)).join('\n'),
    );
    const seen: number[] = [];
    const r = await importDataset({
      path: p,
      dataDir: join(tmp, 'data-progress'),
      onProgress: (pr) => seen.push(pr.bytesRead),
    });
    assert.equal(r.status, 'imported');
    assert.equal(seen.at(-1), r.size);
  });

  test('text and markdown become text records in paragraph chunks', async () => {
    const md =
      '# Title\n\nFirst paragraph\nstill first.\n\nSecond paragraph.\n\n' +
      Array.from({ length: 2000 }, (_, i) => `w${i}`).join(' ');
    const r = await importDataset({
      path: write('notes.md', md),
      dataDir: join(tmp, 'data-text'),
      textChunkChars: 1000,
    });
    assert.ok(r.status === 'imported');
    assert.equal(r.detection.format, 'text');
    const recs = await loadStoredRecords(r.storedPath);
    assert.ok(recs.length >= 10);
    assert.deepEqual(recs[0], {
      text: '# Title\n\nFirst paragraph\nstill first.\n\nSecond paragraph.',
    });
    for (const rec of recs) assert.ok('text' in rec && rec.text.length <= 1000);
  });

  test('--map maps other column names', async () => {
    const p = write('qa.csv', 'q,a\nWhy?,Because.\n');
    const r = await inspectDataset({
      path: p,
      format: 'completion',
      mapping: parseMapping('prompt=q,completion=a'),
    });
    assert.deepEqual(r.preview[0]!.record, {
      messages: [
        { role: 'user', content: 'Why?' },
        { role: 'assistant', content: 'Because.' },
      ],
    });
    assert.throws(() => parseMapping('nonsense=x'), /unknown field "nonsense"/);
  });

  test("detection maps exactly the contract's fields for the format (the wizard's mapping rows)", async () => {
    const p = write(
      'alpaca.jsonl',
      JSON.stringify({ instruction: 'Add', context: '1 and 2', response: '3', system: 'Be brief' }),
    );
    const r = await inspectDataset({ path: p });
    assert.equal(r.detection.format, 'alpaca');
    assert.deepEqual(r.detection.mapping, {
      instruction: 'instruction',
      input: 'context',
      output: 'response',
      system: 'system',
    });
    assert.deepEqual(Object.keys(r.detection.mapping), datasetFormats.alpaca.fields);
  });
});

describe('format equivalence', () => {
  test('a text file and a JSONL of text records import to the same records', async () => {
    const paras = ['First paragraph,\nwith two lines.', 'Second paragraph.', '# A heading'];
    const txt = write('doc.txt', paras.join('\n\n') + '\n');
    const jsonl = write('doc.jsonl', JSON.stringify({ text: paras.join('\n\n') }) + '\n');
    const dataDir = join(tmp, 'data-text-equiv');
    const a = await importDataset({ path: txt, dataDir });
    const b = await importDataset({ path: jsonl, dataDir });
    assert.ok(a.status === 'imported' && b.status === 'imported');
    assert.equal(a.detection.format, 'text');
    assert.equal(b.detection.format, 'text');
    assert.equal(a.hash, b.hash);
  });

  test('OpenAI JSONL, ShareGPT JSON, Alpaca CSV, completion TSV and Parquet import to the same records and hash', async () => {
    const rows = readFileSync(join(fixtures, 'equiv.openai.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { messages: { role: string; content: string }[] });
    // Parquet: the alpaca columns, written at test time.
    const sys = rows.map((r) => r.messages.find((m) => m.role === 'system')?.content ?? null);
    const pq = parquetWriteBuffer({
      columnData: [
        { name: 'system', data: sys, type: 'STRING' },
        {
          name: 'instruction',
          data: ['What is 2+2?', 'Name a colour, with a comma.', 'Translate to French'],
          type: 'STRING',
        },
        { name: 'input', data: ['', '', 'cat'], type: 'STRING' },
        {
          name: 'output',
          data: ['4.', 'Red, "crimson" even.\nTwo lines.', 'chat'],
          type: 'STRING',
        },
      ],
    });
    const pqPath = write('equiv.alpaca.parquet', Buffer.from(pq));
    const files = [
      'equiv.openai.jsonl',
      'equiv.sharegpt.json',
      'equiv.alpaca.csv',
      'equiv.completion.tsv',
    ].map((f) => join(fixtures, f));
    const dataDir = join(tmp, 'data-equiv');
    const hashes = new Set<string>();
    for (const f of [...files, pqPath]) {
      const r = await importDataset({ path: f, dataDir });
      assert.ok(r.status === 'imported', f);
      assert.equal(r.problems.errors + r.problems.warnings, 0, f);
      assert.deepEqual(await loadStoredRecords(r.storedPath), rows, f);
      hashes.add(r.hash);
    }
    assert.equal(hashes.size, 1);
  });
});
