/**
 * Export end to end in Chromium against the real engine: a tiny model is trained (real
 * trainer, a checkpoint kept at step 40); from the run page's Export action the final adapter is
 * exported as a GGUF adapter and shown verified with its command lines; from a checkpoint row's
 * Export action the checkpoint is preselected and exported as an Ollama package; a second export
 * under the same name is refused until "Replace" is ticked.
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { trainCodes } from '../integration/compare-fixture.ts';
import { useHarness } from './harness.ts';

describe('export page (web mode, real engine, real trainer)', { timeout: 600_000 }, () => {
  const env = useHarness();

  test("a run's adapter and a checkpoint's Ollama package, verified, with command lines", async () => {
    const { h, scratch } = env;
    const { run } = await trainCodes(h.engine, scratch, {
      probePrompts: ['Code for Amber?'],
      checkpointInterval: 40,
    });
    const out = join(scratch, 'exports');
    const { page, errors } = await h.newPage();
    await page.goto(`${h.server.url}`);
    await page.getByTestId('connection-status').and(page.locator('[data-state="open"]')).waitFor();
    const runPage = `${h.server.url.split('#')[0]}#/runs/${run.id}`;
    await page.goto(runPage);
    await page.locator('[data-testid="run-live"][data-state="completed"]').waitFor();
    await page.getByTestId('run-export').click();
    await page.getByTestId('export-form').waitFor();
    await page.getByTestId('export-format-adapter').waitFor();
    assert.equal(await page.getByTestId('export-run').inputValue(), run.id);
    await page.getByTestId('export-out').fill(out);
    await page.getByTestId('export-name').fill('codes-final');
    await page.getByTestId('export-format-adapter').check();
    await page.getByTestId('export-start').click();
    await page.getByTestId('export-result').waitFor({ timeout: 300_000 });
    const result = await page.getByTestId('export-result').innerText();
    assert.match(result, /Exported and verified/);
    assert.equal(await page.getByTestId('export-path').innerText(), join(out, 'codes-final.gguf'));
    assert.ok(existsSync(join(out, 'codes-final.gguf')), 'the file is there');
    const checks = await page.getByTestId('export-check').allInnerTexts();
    assert.ok(checks.length >= 2, 'checks.length >= 2');
    assert.ok(
      checks.every((c) => c.startsWith('✓')),
      checks.join('\n'),
    );
    assert.ok(
      checks.some((c) => /run's adapter "apple ?"/.test(c)),
      checks.join('\n'),
    );
    const model = h.engine.models.get(run.modelId)!;
    const commands = await page.getByTestId('export-command').allInnerTexts();
    assert.ok(
      commands.some((c) =>
        c.includes(`llama-cli -m ${model.path} --lora ${join(out, 'codes-final.gguf')}`),
      ),
      commands.join('\n'),
    );
    assert.ok(
      commands.some((c) => c.includes('llama-server -m ')),
      "commands.some((c) => c.includes('llama-server -m '))",
    );

    // The same name again: refused, the file kept; with "Replace", written again.
    await page.getByTestId('export-start').click();
    await page.getByTestId('export-error').waitFor();
    assert.match(await page.getByTestId('export-error').innerText(), /already exists/);
    await page.getByTestId('export-overwrite').check();
    await page.getByTestId('export-start').click();
    await page.getByTestId('export-result').waitFor({ timeout: 300_000 });

    // A checkpoint row's Export action: the checkpoint is chosen; an Ollama package.
    await page.goto(runPage);
    await page.getByTestId('checkpoint-export').first().click();
    await page.getByTestId('export-form').waitFor();
    await page.getByTestId('export-format-ollama').waitFor();
    await page
      .locator('[data-testid="export-checkpoint"] option[value="40"]')
      .waitFor({ state: 'attached' });
    assert.equal(await page.getByTestId('export-checkpoint').inputValue(), '40');
    await page.getByTestId('export-out').fill(out);
    await page.getByTestId('export-format-ollama').check();
    await page.getByTestId('export-start').click();
    await page.getByTestId('export-result').waitFor({ timeout: 300_000 });
    assert.match(await page.getByTestId('export-result').innerText(), /Exported and verified/);
    const pkg = await page.getByTestId('export-path').innerText();
    assert.match(readFileSync(join(pkg, 'Modelfile'), 'utf8'), /^PARAMETER stop "<\/s>"$/m);
    const cmds = await page.getByTestId('export-command').allInnerTexts();
    assert.ok(
      cmds.some((c) => /ollama create \S+ -f Modelfile/.test(c)),
      cmds.join('\n'),
    );
    await h.screenshot(page, 'export');
    assert.deepEqual(errors, []);
  });
});
