/**
 * The Hub page end to end: the real engine in web mode pointed at the local Hugging Face
 * stand-in (OVERNIGHT_HUB_URL), the built renderer in Chromium. From an empty Models page to
 * the Hub, search, see the badges, download with progress, see the model in the library.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, test } from 'node:test';
import { startHubServer, type HubServer } from '../fixtures/hub-server.ts';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { startHarness, type Harness } from './harness.ts';

describe('hub page (web mode, real engine, local hub)', () => {
  let h: Harness;
  let hub: HubServer;

  before(async () => {
    const data = readFileSync(
      (await tinyModel({ type: 'q8_0', arch: 'qwen2', vocab: 'qwen2' })).path,
    );
    const moe = readFileSync((await tinyModel({ type: 'f16', arch: 'deepseek2' })).path);
    hub = await startHubServer([
      {
        id: 'tiny/qwen-GGUF',
        downloads: 1200,
        // Slow enough that the progress bar is on screen for a while.
        files: [{ path: 'tiny-qwen-Q8_0.gguf', data, bytesPerSecond: Math.ceil(data.length / 3) }],
      },
      { id: 'tiny/moe-GGUF', downloads: 5, files: [{ path: 'moe-F16.gguf', data: moe }] },
    ]);
    process.env.OVERNIGHT_HUB_URL = hub.url;
    h = await startHarness();
  });
  after(async () => {
    await h?.close();
    await hub?.close();
    delete process.env.OVERNIGHT_HUB_URL;
  });

  test('search, badges, download with progress, the model in the library with its badge', async () => {
    const { page, errors } = await h.newPage();
    await page.goto(h.server.url);
    await page.getByTestId('models-empty').waitFor();
    await page.getByTestId('open-hub').click();
    await page.getByTestId('hub-recommended').waitFor();

    await page.getByTestId('hub-search-input').fill('tiny');
    await page.getByTestId('hub-search-button').click();
    const results = page.getByTestId('hub-result');
    await results.first().waitFor();
    assert.deepEqual(
      await results.evaluateAll((els) => els.map((e) => e.getAttribute('data-repo'))),
      ['tiny/qwen-GGUF', 'tiny/moe-GGUF'],
    );

    // The MoE repository: not trainable, with the reason.
    await page.locator('[data-repo="tiny/moe-GGUF"]').click();
    const moeFile = page.locator('[data-testid="hub-file"][data-path="moe-F16.gguf"]');
    await moeFile.waitFor();
    assert.match(await moeFile.getByTestId('hub-arch-badge').innerText(), /Not trainable/);
    assert.match(await moeFile.innerText(), /mixture-of-experts/);

    await page.locator('[data-repo="tiny/qwen-GGUF"]').click();
    const file = page.locator('[data-testid="hub-file"][data-path="tiny-qwen-Q8_0.gguf"]');
    await file.waitFor();
    assert.match(await file.getByTestId('hub-arch-badge').innerText(), /Trainable \(qwen2\)/);
    assert.equal(await file.getByTestId('fit-badge').getAttribute('data-verdict'), 'fits');
    assert.equal(await file.getByTestId('fit-badge').innerText(), 'Fits');
    await h.screenshot(page, 'hub-files');

    await file.getByTestId('hub-download-button').click();
    const row = page.locator('[data-testid="hub-download"][data-state="downloading"]');
    await row.waitFor();
    await page.getByRole('progressbar').waitFor();
    assert.match(await row.innerText(), /\d+% · .* of .* · .*\/s · .* left/);
    await h.screenshot(page, 'hub-downloading');

    const done = page.locator('[data-testid="hub-download"][data-state="completed"]');
    await done.waitFor({ timeout: 60_000 });
    assert.match(await done.innerText(), /In the library/);
    await done.getByTestId('hub-open-model').click();

    await page.getByTestId('model-detail').waitFor();
    const item = page.getByTestId('model-item');
    assert.equal(await item.count(), 1);
    assert.match(await item.innerText(), /tiny-qwen-Q8_0/);
    await item.getByTestId('fit-badge').waitFor();
    assert.equal(await item.getByTestId('fit-badge').getAttribute('data-verdict'), 'fits');
    await h.screenshot(page, 'hub-model-in-library');
    assert.deepEqual(errors, []);
  });
});
