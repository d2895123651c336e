/**
 * Runs end to end: in Chromium against the real engine in web mode, create a run from the
 * New-run page (with the optimizer's advanced settings), watch the loss and gradient-norm charts
 * gain points, see a probe sample, the run completes and its adapter file exists. The REAL training process trains a tiny generated model.
 */
import assert from 'node:assert/strict';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { useHarness } from './harness.ts';

describe('runs pages (web mode, real engine, real trainer)', { timeout: 600_000 }, () => {
  const env = useHarness();

  test('create a run, watch the chart gain points, see a probe sample, the run completes with an adapter', async () => {
    const { h, scratch } = env;
    const model = await tinyModel({ type: 'q8_0' });
    const call = h.engine.dispatcher.call;
    const m = await call('models.add', { path: model.path });
    const datasetFile = join(scratch, 'chat.jsonl');
    writeFileSync(
      datasetFile,
      Array.from({ length: 40 }, (_, i) =>
        JSON.stringify({
          messages: [
            { role: 'user', content: `Say ${i}` },
            { role: 'assistant', content: `${i} ${i} ${i}` },
          ],
        }),
      ).join('\n') + '\n',
    );

    const { page, errors } = await h.newPage();
    await page.goto(`${h.server.url}`);
    await page.getByTestId('connection-status').and(page.locator('[data-state="open"]')).waitFor();
    await page.getByTestId('nav-runs').click();
    await page.getByTestId('runs-empty').waitFor();
    await page.getByTestId('new-run-link').click();
    await page.getByTestId('new-run').waitFor();

    await page.getByTestId('run-model').selectOption(m.id);
    await page.getByTestId('run-dataset').fill(datasetFile);
    await page.getByTestId('preset-quick').click();
    await page.locator('[data-testid="preset-quick"].active').waitFor();
    await page.getByTestId('toggle-advanced').click();
    await page.getByTestId('f-maxSteps').fill('80');
    await page.getByTestId('f-evalInterval').fill('10');
    await page.getByTestId('f-sequenceLength').fill('64');
    // The optimizer settings of the advanced section reach the run.
    await page.getByTestId('f-gradClipNorm').fill('0.5');
    await page.getByTestId('f-weightDecay').fill('0.01');
    await page.getByTestId('run-probes').fill('Say 7');
    // Micro-batch: the quick preset's effective batch of 4 is not whole micro-batches of 3.
    await page.getByTestId('f-microBatch').fill('3');
    assert.match(
      await page.getByTestId('help-microBatch').innerText(),
      /must be a multiple of the micro-batch/,
    );
    await page.getByTestId('run-estimate').click();
    await page.getByTestId('run-error').waitFor();
    assert.match(
      await page.getByTestId('run-error').innerText(),
      /effectiveBatch \(4\) must be a multiple of microBatch \(3\)/,
    );
    await page.getByTestId('f-microBatch').fill('2');
    assert.match(await page.getByTestId('help-microBatch').innerText(), /\(2 here\)/);
    await page.getByTestId('f-checkpointing').selectOption('on');
    assert.match(await page.getByTestId('help-checkpointing').innerText(), /recomputes the layer/);

    await page.getByTestId('run-estimate').click();
    await page.getByTestId('estimate-verdict').waitFor();
    assert.match(await page.getByTestId('estimate').innerText(), /80 steps/);
    assert.match(await page.getByTestId('estimate-fill').innerText(), /^\d{1,3}\.\d% full$/);
    assert.match(
      await page.getByTestId('estimate-checkpointing').innerText(),
      /activation checkpointing on$/,
    );

    await page.getByTestId('run-start').click();
    await page.getByTestId('run-live').waitFor();
    assert.match(page.url(), /#\/runs\/[0-9a-f]+$/);

    const chart = page.getByTestId('loss-chart');
    const points = async () => Number(await chart.getAttribute('data-points'));
    const until = async (ok: (n: number) => boolean, ms = 300_000) => {
      const t0 = Date.now();
      while (!ok(await points())) {
        if (Date.now() - t0 > ms)
          throw new Error(`the loss chart stayed at ${await points()} points`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    await until((n) => n > 0);
    const early = await points();
    await until((n) => n > early);
    assert.ok((await points()) > early, 'the chart gains points while the run trains');
    const gradChart = page.getByTestId('grad-norm-chart');
    const gradPoints = async () => Number(await gradChart.getAttribute('data-points'));
    assert.ok((await gradPoints()) > 0, 'the gradient-norm chart has points while the run trains');
    assert.equal(
      await page.getByTestId('grad-clip').innerText(),
      'clipped to 0.5 before each update',
    );

    // Close and reopen the page mid-run: the backfill by step plus live events lose nothing.
    assert.equal(
      await page.getByTestId('run-live').getAttribute('data-state'),
      'running',
      'reloaded mid-run',
    );
    await page.reload();
    await page.getByTestId('run-live').waitFor();

    await page.getByTestId('probe-sample').first().waitFor({ timeout: 300_000 });
    assert.match(await page.getByTestId('probe-sample').first().innerText(), /Say 7/);

    await page
      .locator('[data-testid="run-live"][data-state="completed"]')
      .waitFor({ timeout: 300_000 });
    assert.match(await page.getByTestId('run-step').innerText(), /^80 \/ 80$/);
    // raw + smoothed train loss (80 points each) + validation loss at steps 10, 20, ..., 80
    await until((n) => n === 168, 10_000);
    // one gradient norm per step
    for (const t0 = Date.now(); (await gradPoints()) !== 80;) {
      if (Date.now() - t0 > 10_000)
        throw new Error(`the gradient-norm chart has ${await gradPoints()} points, not 80`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const runId = page.url().split('/').at(-1)!;
    const { run: shown } = await call('runs.show', { id: runId });
    assert.equal(shown.config.gradClipNorm, 0.5);
    assert.equal(shown.config.weightDecay, 0.01);
    assert.equal(shown.config.microBatch, 2);
    assert.equal(shown.config.checkpointing, 'on');
    // The measured peak beside the estimate made before the run started.
    assert.match(await page.getByTestId('run-peak').innerText(), /\d/);
    assert.match(
      await page.getByTestId('run-estimate-memory').innerText(),
      /^estimated .*checkpointing$/,
    );
    const adapter = (await page.getByTestId('run-adapter').innerText()).trim();
    assert.ok(existsSync(adapter), `the adapter ${adapter} exists`);
    await h.screenshot(page, 'run-live');

    await page.getByTestId('nav-runs').click();
    await page.getByTestId('run-row').first().waitFor();
    assert.equal(await page.getByTestId('run-row').count(), 1);
    assert.deepEqual(errors, []);
  });
});
