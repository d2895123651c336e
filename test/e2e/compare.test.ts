/**
 * Compare end to end: in Chromium against the real engine in web mode. A tiny model is trained
 * (real trainer) on four question/answer conversations; from the run's page, "Compare with base"
 * opens a comparison of the base and the run's adapter; with greedy sampling set in the shared
 * controls, both columns answer a training question: the tuned column gives the trained answer,
 * the base does not. After a reload the conversation reopens with the same answers.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { codePairs, trainCodes } from '../integration/compare-fixture.ts';
import { useHarness } from './harness.ts';

const pairs = codePairs;

describe(
  'compare page (web mode, real engine, real trainer, real chat)',
  { timeout: 600_000 },
  () => {
    const env = useHarness();

    test('base and tuned columns answer a trained prompt; the conversation reopens after a reload', async () => {
      const { h, scratch } = env;
      const { run } = await trainCodes(h.engine, scratch);
      const { page, errors } = await h.newPage();
      await page.goto(`${h.server.url}`);
      await page
        .getByTestId('connection-status')
        .and(page.locator('[data-state="open"]'))
        .waitFor();
      await page.goto(`${h.server.url.split('#')[0]}#/runs/${run.id}`);
      await page.locator('[data-testid="run-live"][data-state="completed"]').waitFor();

      await page.getByTestId('run-compare-base').click();
      await page.getByTestId('compare-setup').waitFor();
      // Prefilled: the run's model, the base in column 1, the run's adapter in column 2.
      const v0 = page.getByTestId('compare-variant-0');
      const v1 = page.getByTestId('compare-variant-1');
      for (const t0 = Date.now(); (await v1.inputValue()) === '';) {
        if (Date.now() - t0 > 10_000) throw new Error('the run was not preselected');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(await v0.locator('option:checked').innerText(), 'base');
      assert.equal(await v1.locator('option:checked').innerText(), 'codes');
      await page.getByTestId('compare-start').click();
      await page.getByTestId('compare-chat').waitFor();
      assert.match(page.url(), /#\/compare\/[0-9a-f-]+$/);
      const convUrl = page.url();

      // Shared sampling: greedy, short answers.
      await page.locator('details.settings summary').click();
      await page.getByTestId('compare-sampling-temperature').fill('0');
      await page.getByTestId('compare-sampling-temperature').dispatchEvent('change');
      await page.getByTestId('compare-sampling-maxTokens').fill('8');
      await page.getByTestId('compare-sampling-maxTokens').dispatchEvent('change');
      for (const t0 = Date.now(); ;) {
        const c = await h.engine.dispatcher.call('compare.list', {});
        const conv = await h.engine.dispatcher.call('compare.show', { id: c[0]!.id });
        if (conv.sampling.temperature === 0 && conv.sampling.maxTokens === 8) break;
        if (Date.now() - t0 > 10_000) throw new Error('the sampling controls did not apply');
        await new Promise((r) => setTimeout(r, 100));
      }

      await page.getByTestId('compare-input').fill(pairs[0]!.q);
      await page.getByTestId('compare-send').click();
      // Where the GPU has no room for the chat model, the page says so and offers the CPU.
      const answered = page.locator('[data-testid="compare-answer-1"][data-finish="end"]');
      const noRoom = page.getByTestId('compare-error-use-cpu');
      await answered.or(noRoom).first().waitFor({ timeout: 120_000 });
      if (await noRoom.isVisible()) {
        await noRoom.click();
        await page.getByTestId('compare-device').and(page.getByText('CPU')).waitFor();
        await page.getByTestId('compare-send').click();
      }
      await answered.waitFor({ timeout: 120_000 });
      await page
        .locator('[data-testid="compare-answer-0"][data-finish]:not([data-finish=""])')
        .waitFor();
      const text = async (col: number) =>
        (
          await page
            .getByTestId(`compare-answer-${col}`)
            .getByTestId('compare-answer-text')
            .innerText()
        ).trim();
      assert.equal(await text(1), pairs[0]!.a, 'the tuned column gives the trained answer');
      assert.notEqual(await text(0), pairs[0]!.a, 'the base does not');
      assert.match(await page.getByTestId('compare-answer-1').innerText(), /tokens\/s/);
      assert.deepEqual(await page.getByTestId('compare-column-head').allInnerTexts(), [
        'base',
        'codes',
      ]);
      const base = await text(0);
      await h.screenshot(page, 'compare');

      // Reload: the conversation reopens, listed and with the same answers.
      await page.reload();
      await page.getByTestId('compare-chat').waitFor();
      assert.equal(page.url(), convUrl);
      await page.getByTestId('compare-turn').first().waitFor();
      assert.equal(await text(1), pairs[0]!.a);
      assert.equal(await text(0), base);
      assert.equal(await page.getByTestId('compare-user').first().innerText(), pairs[0]!.q);
      assert.equal(await page.getByTestId('compare-saved-item').count(), 1);

      // Regenerate: the same seed and sampling answer the same way. (The engine's answer
      // events say when both columns have answered again.)
      const answered2 = (action: () => Promise<void>) =>
        new Promise<void>((resolve, reject) => {
          let n = 0;
          const off = h.engine.events.subscribe('compare.answer', () => {
            if (++n < 2) return;
            off();
            resolve();
          });
          action().catch(reject);
        });
      await answered2(() => page.getByTestId('compare-regenerate').click());
      const settled = (col: number) =>
        page.locator(`[data-testid="compare-answer-${col}"][data-finish]:not([data-finish=""])`);
      await settled(1).waitFor();
      await settled(0).waitFor();
      assert.equal(await text(1), pairs[0]!.a);
      assert.equal(await text(0), base);

      // Edit the last message: the answers follow the new question.
      await page.getByTestId('compare-edit-last').click();
      assert.equal(await page.getByTestId('compare-input').inputValue(), pairs[0]!.q);
      await page.getByTestId('compare-input').fill(pairs[1]!.q);
      await answered2(() => page.getByTestId('compare-send').click());
      await page.getByTestId('compare-user').getByText(pairs[1]!.q).waitFor();
      await settled(1).waitFor();
      await settled(0).waitFor();
      assert.equal(await page.getByTestId('compare-turn').count(), 1);
      assert.equal(await text(1), pairs[1]!.a);

      // Export as Markdown: a download with the turn and both columns.
      const [download] = await Promise.all([
        page.waitForEvent('download'),
        page.getByTestId('compare-export').click(),
      ]);
      assert.match(download.suggestedFilename(), /\.md$/);
      const md = readFileSync((await download.path())!, 'utf8');
      assert.ok(md.includes(`> ${pairs[1]!.q}`) && md.includes('### codes'), md);

      // Clear: the turns go, the columns stay.
      await page.getByTestId('compare-clear').click();
      for (const t0 = Date.now(); (await page.getByTestId('compare-turn').count()) > 0;) {
        if (Date.now() - t0 > 10_000) throw new Error('the turns stayed after Clear');
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.equal(await page.getByTestId('compare-column-head').count(), 2);
      assert.deepEqual(errors, []);
    });
  },
);
