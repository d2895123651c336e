/**
 * Evaluate end to end in Chromium against the real engine: a tiny model is trained (real
 * trainer); an evaluation of base vs the run over a prompt file is started from the page,
 * answers arrive with progress, every item is voted with the keyboard (1 2 3 4) without the
 * variants being named, the votes survive a reload, and after reveal the win rate and its
 * interval shown are the ones the votes give; perplexity and the general-ability check show.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { wilson } from '../../core/eval/stats.ts';
import { codePairs, trainCodes } from '../integration/compare-fixture.ts';
import { useHarness } from './harness.ts';

describe('evaluate page (web mode, real engine, real trainer)', { timeout: 600_000 }, () => {
  const env = useHarness();

  test('blind vote with the keyboard, reveal, win rate with its interval; votes survive a reload', async () => {
    const { h, scratch } = env;
    const { run } = await trainCodes(h.engine, scratch);
    const prompts = join(scratch, 'prompts.jsonl');
    writeFileSync(
      prompts,
      [
        ...codePairs.map((p) => ({ prompt: p.q, reference: p.a })),
        { prompt: 'Say hello.' },
        { prompt: 'Name a colour.' },
      ]
        .map((l) => JSON.stringify(l))
        .join('\n') + '\n',
    );
    const { page, errors } = await h.newPage();
    await page.goto(`${h.server.url}`);
    await page.getByTestId('connection-status').and(page.locator('[data-state="open"]')).waitFor();
    await page.getByTestId('nav-evaluate').click();
    await page.getByTestId('eval-new').waitFor();
    await page.getByTestId('eval-run').selectOption(run.id);
    // A and B default to the base and the run's adapter (any variant of the model can be picked).
    await page.getByTestId('eval-variant-b').waitFor();
    assert.equal(
      await page.getByTestId('eval-variant-a').locator('option:checked').innerText(),
      'base',
    );
    assert.equal(
      await page.getByTestId('eval-variant-b').locator('option:checked').innerText(),
      'codes',
    );
    await page.getByTestId('eval-prompts').fill(prompts);
    await page.getByTestId('eval-max').fill('6');
    await page.getByTestId('eval-cpu').check();
    await page.getByTestId('eval-start').click();
    await page.locator('[data-testid="eval-detail"][data-state="completed"]').waitFor({
      timeout: 300_000,
    });
    assert.match(await page.getByTestId('eval-progress').innerText(), /^6\/6 answered · 0 voted/);
    const detail = await page.getByTestId('eval-detail').innerText();
    assert.ok(!detail.includes('codes') && !detail.includes('base'), 'no variant is named');

    // Vote every item with the keys 1 2 3 4 (left, right, tie, both bad) in turn.
    const keys = ['1', '2', '3', '4', '1', '2'];
    for (let k = 0; k < keys.length; k++) {
      await page.locator(`[data-testid="eval-vote"][data-index="${k}"]`).waitFor();
      await page.keyboard.press(keys[k]!);
    }
    await page.getByTestId('eval-all-voted').waitFor();
    assert.match(await page.getByTestId('eval-progress').innerText(), /6 voted/);
    await h.screenshot(page, 'evaluate-vote');

    await page.reload();
    await page.getByTestId('eval-detail').waitFor();
    await page.getByTestId('eval-all-voted').waitFor();
    assert.match(await page.getByTestId('eval-progress').innerText(), /6 voted/);

    await page.getByTestId('eval-reveal').click();
    await page.getByTestId('eval-scores').waitFor();
    const id = page.url().split('/').at(-1)!;
    const { set, items } = await h.engine.dispatcher.call('eval.show', { id });
    let a = 0;
    let b = 0;
    for (const i of items) {
      const w = i.vote === 'left' ? i.leftVariant : i.vote === 'right' ? 1 - i.leftVariant! : null;
      if (w === 1) b++;
      else if (w === 0) a++;
    }
    assert.equal(set.winRate.winsB, b);
    assert.equal(set.winRate.winsA, a);
    const shown = await page.getByTestId('eval-winrate').innerText();
    if (a + b > 0) {
      const ci = wilson(b, a + b);
      const p = (x: number) => `${(x * 100).toFixed(1)}%`;
      assert.equal(shown, `${p(b / (a + b))} (95% CI ${p(ci.low)}–${p(ci.high)})`);
    }
    assert.match(await page.getByTestId('eval-exact').innerText(), /base 0\.0% · codes 100\.0%/);
    assert.equal(await page.getByTestId('eval-row').count(), 6);

    await page.getByTestId('eval-perplexity').click();
    await page.getByTestId('eval-general').waitFor({ timeout: 300_000 });
    assert.match(await page.getByTestId('eval-general').innerText(), /^[-+]\d+\.\d%$/);
    await h.screenshot(page, 'evaluate');
    assert.deepEqual(errors, []);
  });
});
