/**
 * Datasets end to end: the real engine in web mode, the built renderer in Chromium. Import the
 * sample dataset through the wizard (detected format, preview, no problems), then see its token
 * stats, the histogram and the mask preview under a real tiny chat model; a broken file shows
 * its problems with line numbers and stores nothing until confirmed.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { root, useHarness } from './harness.ts';

describe('datasets page (web mode, real engine)', () => {
  const env = useHarness();

  test('imports the sample dataset and shows stats, histogram and the mask preview', async () => {
    const { h } = env;
    const model = await tinyModel({ vocab: 'qwen2' });
    await h.engine.models.add(model.path, 'Tiny Qwen');
    const { page, errors } = await h.newPage();
    await page.goto(h.server.url);
    await page.getByTestId('connection-status').and(page.locator('[data-state="open"]')).waitFor();
    await page.getByTestId('nav-datasets').click();
    await page.getByTestId('datasets-empty').waitFor();

    await page
      .getByTestId('dataset-path-input')
      .fill(join(root, 'resources', 'sample-dataset.jsonl'));
    await page.getByTestId('inspect-button').click();
    await page.getByTestId('import-preview').waitFor();
    assert.match(await page.getByTestId('detected-format').innerText(), /openai/);
    assert.match(
      await page.getByTestId('inspect-counts').innerText(),
      /50\s+valid records of 50 rows/,
    );
    await page.getByTestId('no-problems').waitFor();
    assert.equal(await page.getByTestId('import-preview').locator('li').count(), 5);
    await h.screenshot(page, 'datasets-wizard');

    await page.getByTestId('import-button').click();
    await page.getByTestId('import-done').waitFor();
    await page.getByTestId('dataset-item').click();
    await page.getByTestId('dataset-detail').waitFor();
    assert.equal((await page.getByTestId('dataset-records').innerText()).trim(), '50');

    // The token view picks the model and tokenizes every record with its chat template.
    await page.getByTestId('token-stats').waitFor();
    assert.equal((await page.getByTestId('stat-records').innerText()).trim(), '50');
    const trained = Number((await page.getByTestId('stat-trained').innerText()).replace(/\D/g, ''));
    const total = Number((await page.getByTestId('stat-total').innerText()).replace(/\D/g, ''));
    assert.ok(trained > 0 && trained < total, `trained ${trained} of ${total}`);
    const hist = page.getByTestId('token-histogram');
    await hist.waitFor();
    assert.ok(Number(await hist.getAttribute('data-buckets')) >= 1);
    assert.ok((await hist.locator('canvas').boundingBox())!.height > 50);

    const preview = page.getByTestId('mask-preview');
    await preview.waitFor();
    const trainedText = (await preview.locator('[data-trained="1"]').allInnerTexts()).join('');
    assert.equal(trainedText, 'Water boils at 100 °C (212 °F) at sea level.<|im_end|>');
    assert.ok((await preview.locator('.special').count()) > 0, 'special tokens are marked');
    assert.equal(await page.getByTestId('mask-warning').count(), 0);
    await page.setViewportSize({ width: 1280, height: 1500 });
    await h.screenshot(page, 'datasets');

    // The packed windows and how full they are (core/datasets/pack.ts).
    assert.match(await page.getByTestId('stat-windows').innerText(), /^[1-9]\d*$/);
    assert.match(await page.getByTestId('stat-fill').innerText(), /^\d{1,3}\.\d% full$/);

    // A tiny sequence length drops records: the page says so.
    await page.getByTestId('seq-len-input').fill('16');
    await page.getByTestId('seq-len-input').dispatchEvent('change');
    await page.getByTestId('stats-warning').first().waitFor();
    assert.match(await page.getByTestId('stat-dropped').innerText(), /[1-9]/);
    assert.deepEqual(errors, []);
  });

  test('a broken file lists its problems by line and imports only when confirmed', async () => {
    const { h, scratch } = env;
    const bad = join(scratch, 'broken.jsonl');
    writeFileSync(
      bad,
      [
        '{"messages":[{"role":"user","content":"hi"},{"role":"assistant","content":"hello"}]}',
        '{"messages":[{"role":"user","content":"hi"},{"role":"bot","content":"x"}]}',
        '{not json',
      ].join('\n'),
    );
    const { page } = await h.newPage();
    await page.goto(h.server.url);
    await page.getByTestId('connection-status').and(page.locator('[data-state="open"]')).waitFor();
    await page.getByTestId('nav-datasets').click();
    await page.getByTestId('import-wizard').waitFor();
    const before = (await h.engine.datasets.list()).length;
    await page.getByTestId('dataset-path-input').fill(bad);
    await page.getByTestId('inspect-button').click();
    const problems = page.getByTestId('problems');
    await problems.waitFor();
    const text = await problems.innerText();
    assert.match(text, /broken\.jsonl:2 · messages\[1\]\.role/);
    assert.match(text, /"bot"/);
    assert.match(text, /broken\.jsonl:3/);
    assert.equal((await h.engine.datasets.list()).length, before, 'inspect stores nothing');
    assert.match(
      await page.getByTestId('import-button').innerText(),
      /Import 1 valid record \(leave out 2\)/,
    );
    await h.screenshot(page, 'datasets-problems');
    await page.getByTestId('cancel-import').click();
    assert.equal((await h.engine.datasets.list()).length, before, 'cancel stores nothing');
  });
});
