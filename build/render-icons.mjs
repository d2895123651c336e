// Renders resources/icons/icon.svg to the PNGs electron-builder needs, with Debian's Chromium
// (CHROMIUM_PATH to override): icon.png (1024, converted to .icns / .ico by electron-builder)
// and the Linux set NxN.png. Run after editing the SVG: `node build/render-icons.mjs`.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const dir = fileURLToPath(new URL('../resources/icons/', import.meta.url));
const svg = readFileSync(join(dir, 'icon.svg'), 'utf8');
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--headless', '--no-sandbox', '--disable-gpu'],
});
try {
  const page = await browser.newPage();
  for (const [size, name] of [
    [1024, 'icon.png'],
    [512, '512x512.png'],
    [256, '256x256.png'],
    [128, '128x128.png'],
    [64, '64x64.png'],
    [32, '32x32.png'],
    [16, '16x16.png'],
  ]) {
    await page.setViewportSize({ width: size, height: size });
    await page.setContent(
      `<style>html,body{margin:0;background:transparent}svg{display:block;width:${size}px;height:${size}px}</style>${svg}`,
    );
    await page.screenshot({ path: join(dir, name), omitBackground: true });
    console.log(`resources/icons/${name}`);
  }
} finally {
  await browser.close();
}
