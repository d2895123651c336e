/**
 * Walking skeleton, end to end: the real engine in web mode, the built renderer in Chromium.
 * Add a generated GGUF by path and read its metadata; a non-GGUF file gets the engine's specific
 * error; remove asks first and keeps the file; the System page shows RAM; a page without (or
 * with a wrong) token says how to get in.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { tinyModel } from '../fixtures/tiny-model.ts';
import { useHarness } from './harness.ts';

describe('models and system pages (web mode, real engine)', () => {
  const env = useHarness();

  test('adds a GGUF by path and shows every metadata field; remove keeps the file', async () => {
    const { h } = env;
    const model = await tinyModel({ type: 'q8_0', arch: 'llama' });
    const { page, errors } = await h.newPage();
    await page.goto(h.server.url);

    // The token moved out of the address bar into sessionStorage.
    await page.getByTestId('connection-status').and(page.locator('[data-state="open"]')).waitFor();
    assert.ok(!page.url().includes('token='), `token still in the URL: ${page.url()}`);

    await page.getByTestId('models-empty').waitFor();
    await h.screenshot(page, 'models-empty');

    await page.getByTestId('model-path-input').fill(model.path);
    await page.getByTestId('add-model-button').click();

    const detail = page.getByTestId('model-detail');
    await detail.waitFor();
    const field = async (key: string) =>
      (await page.getByTestId(`detail-${key}`).innerText()).trim();
    assert.equal(await field('architecture'), 'llama');
    assert.equal(await field('file-type'), 'Q8_0');
    assert.equal(await field('layers'), String(model.nLayer));
    assert.equal(await field('embedding-size'), String(model.nEmbd));
    assert.match(
      await field('context-length'),
      new RegExp(`^${model.nCtx.toLocaleString('en-US')} tokens`),
    );
    assert.match(
      await field('vocab-size'),
      new RegExp(`^${model.nVocab.toLocaleString('en-US')} tokens`),
    );
    assert.match(await field('parameters'), /\d/);
    assert.match(await field('chat-template'), /^Yes/);
    assert.match(await field('tensor-types'), /Q8_0/);
    assert.match(await field('tensor-types'), /F32/);
    assert.match(
      await field('file-size'),
      new RegExp(`${model.fileSize.toLocaleString('en-US')} bytes`),
    );
    assert.equal(await field('path'), model.path);
    assert.match(await field('fingerprint'), /^[0-9a-f]{64}$/);
    assert.match(await field('trainable'), /Trainable/);

    // The list row and the URL follow the new model.
    const row = page.getByTestId('model-item');
    assert.equal(await row.count(), 1);
    assert.match(await row.innerText(), /llama/);
    assert.match(await row.innerText(), /Q8_0/);
    assert.match(page.url(), /#\/models\/.+/);
    await page.setViewportSize({ width: 1280, height: 1180 }); // the whole detail card
    await h.screenshot(page, 'models');
    await page.setViewportSize({ width: 1280, height: 820 });

    // Remove: a confirmation that says the file stays, then an empty library and the file intact.
    await page.getByTestId('remove-button').click();
    const dialog = page.getByTestId('confirm-dialog');
    await dialog.waitFor();
    assert.match(await dialog.innerText(), /file on disk is kept/i);
    await h.screenshot(page, 'models-remove-confirm');
    await page.getByTestId('confirm-button').click();
    await page.getByTestId('models-empty').waitFor();
    assert.ok(existsSync(model.path), 'removing from the library must keep the file');

    assert.deepEqual(errors, []);
  });

  test('a file that is not GGUF gets the engine’s specific error, inline', async () => {
    const { h, scratch } = env;
    const notGguf = join(scratch, 'notes.txt');
    writeFileSync(notGguf, 'these are my notes, not a model\n');
    const { page, errors } = await h.newPage();
    await page.goto(h.server.url);
    await page.getByTestId('model-path-input').fill(notGguf);
    await page.getByTestId('add-model-button').click();

    const error = page.getByTestId('add-model-error');
    await error.waitFor();
    const text = await error.innerText();
    assert.match(text, /Not a usable GGUF file/);
    assert.ok(text.includes('notes.txt'), `the message should name the file: ${text}`);
    assert.equal(await page.getByTestId('model-path-input').getAttribute('aria-invalid'), 'true');
    await h.screenshot(page, 'models-error');

    // A path that does not exist is a different, equally specific error.
    const missing = join(scratch, 'nowhere.gguf');
    await page.getByTestId('model-path-input').fill(missing);
    await page.getByTestId('add-model-button').click();
    await page.getByTestId('add-model-error').getByText('File not found').waitFor();
    assert.ok((await page.getByTestId('add-model-error').innerText()).includes('nowhere.gguf'));

    assert.deepEqual(errors, []);
  });

  test('a model whose file disappeared is marked missing', async () => {
    const { h, scratch } = env;
    const source = await tinyModel({ type: 'q4_0', arch: 'llama' });
    const copy = join(scratch, 'moved-away.gguf');
    copyFileSync(source.path, copy);
    const { page, errors } = await h.newPage();
    await page.goto(h.server.url);
    await page.getByTestId('model-path-input').fill(copy);
    await page.getByTestId('add-model-button').click();
    await page.getByTestId('model-detail').waitFor();
    assert.equal((await page.getByTestId('detail-file-type').innerText()).trim(), 'Q4_0');

    rmSync(copy);
    await page.reload();
    await page.getByTestId('file-missing').waitFor();
    assert.match(await page.getByTestId('model-item').innerText(), /File missing/);
    await h.screenshot(page, 'models-file-missing');

    await page.getByTestId('remove-button').click();
    await page.getByTestId('confirm-button').click();
    await page.getByTestId('models-empty').waitFor();
    assert.deepEqual(errors, []);
  });

  test('the System page shows memory, backends and the data folder', async () => {
    const { h } = env;
    const { page, errors } = await h.newPage();
    await page.goto(h.server.url);
    await page.getByTestId('nav-system').click();
    const ram = page.getByTestId('system-ram');
    await ram.waitFor();
    assert.match(await ram.innerText(), /free of [\d.]+ GiB/);
    assert.match(await page.getByTestId('system-trainer-backends').innerText(), /cpu/);
    assert.equal((await page.getByTestId('system-data-dir').innerText()).trim(), h.dataDir);
    assert.match(page.url(), /#\/system$/);
    await h.screenshot(page, 'system');
    assert.deepEqual(errors, []);
  });

  test('without a token the page says it is not authorised and how to get in', async () => {
    const { h } = env;
    const { page } = await h.newPage();
    await page.goto(`http://127.0.0.1:${h.server.port}/`);
    const box = page.getByTestId('unauthorized');
    await box.waitFor();
    const text = await box.innerText();
    assert.match(text, /Not authorised/);
    assert.match(text, /overnight serve/);
    assert.equal(
      await page.getByTestId('connection-status').getAttribute('data-state'),
      'unauthorized',
    );
    await h.screenshot(page, 'unauthorized');
  });

  test('with a wrong token the page says the engine refused it', async () => {
    const { h } = env;
    const { page } = await h.newPage();
    await page.goto(`http://127.0.0.1:${h.server.port}/#token=not-the-token`);
    const box = page.getByTestId('unauthorized');
    await box.waitFor();
    assert.match(await box.innerText(), /refused/);
  });
});
