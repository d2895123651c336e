// Vite build of the renderer (Svelte 5). Root is this folder; output goes to dist/renderer at the
// repo root, which `overnight serve` serves over HTTP and Electron loads from file://.
// base './' keeps every asset URL relative so both hosts resolve them.
import { svelte } from '@sveltejs/vite-plugin-svelte';
import { defineConfig, type Plugin } from 'vite';

/**
 * The Content-Security-Policy of the built app, as a <meta> tag: Electron loads it from file://
 * (no response headers) and web mode serves the same file. Nothing from other origins; no inline
 * script or style. Build only: the dev server injects component CSS as <style> elements.
 * connect-src 'self' also covers ws:// to the same host and port (CSP level 3).
 */
const csp = [
  "default-src 'self'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "font-src 'self'",
  "connect-src 'self'",
  "object-src 'none'",
  "base-uri 'none'",
  "form-action 'none'",
].join('; ');

function cspMeta(): Plugin {
  return {
    name: 'overnight-csp',
    apply: 'build',
    transformIndexHtml: () => [
      {
        tag: 'meta',
        attrs: { 'http-equiv': 'Content-Security-Policy', content: csp },
        injectTo: 'head-prepend',
      },
    ],
  };
}

const here = new URL('.', import.meta.url).pathname;

export default defineConfig({
  root: here,
  base: './',
  plugins: [svelte(), cspMeta()],
  build: {
    outDir: new URL('../dist/renderer', import.meta.url).pathname,
    emptyOutDir: true,
    // Electron 45 ships Chromium 140; web mode targets current browsers.
    target: 'es2022',
    sourcemap: true,
  },
  server: { host: '127.0.0.1' },
});
