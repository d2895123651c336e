// ESLint flat config. Besides the usual recommended rules, it enforces the layering of
// docs/architecture.md with `no-restricted-imports`; each message says why the boundary exists.
import { builtinModules } from 'node:module';
import js from '@eslint/js';
import svelte from 'eslint-plugin-svelte';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const electronImport = {
  name: 'electron',
  message:
    'core/ and contract/ run in plain Node (CLI, web server, tests): only electron/ may import Electron.',
};

/** Rules for the renderer: the UI talks to the engine only through the contract. */
const rendererBoundary = {
  paths: [
    {
      name: 'electron',
      message:
        'The renderer runs in a browser too (web mode): reach the engine through the contract client, not Electron.',
    },
    ...builtinModules.map((name) => ({
      name,
      message:
        'The renderer has no Node (it runs in a sandboxed Electron renderer and in browsers): ask the engine over RPC.',
    })),
  ],
  patterns: [
    {
      group: ['node:*'],
      message:
        'The renderer has no Node (it runs in a sandboxed Electron renderer and in browsers): ask the engine over RPC.',
    },
    {
      group: ['**/core/**', '**/native/**'],
      message:
        'The renderer may import only contract/: engine code runs in another process (Electron main or the web server). Call it through the RPC client.',
    },
    {
      group: ['**/electron/**'],
      message:
        'The renderer may import only contract/: electron/ is the main process and preload, not UI code.',
    },
  ],
};

/** Bans `.only` so a focused test can never be committed and silently skip the rest. */
const noOnly = ['describe', 'it', 'test', 'suite'].map((object) => ({
  object,
  property: 'only',
  message: 'A committed .only skips every other test in the file; remove it.',
}));

export default tseslint.config(
  {
    ignores: [
      '**/node_modules/**',
      'dist/**',
      'native/build/**',
      'native/build-*/**',
      'native/llama.cpp/**',
      'test/.cache/**',
      'test/artifacts/**',
      'renderer/.svelte-kit/**',
      '.overnight-data/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  ...svelte.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      // Warn, not fail: several engineers land half-finished modules in one tree; tsc and review catch the rest.
      '@typescript-eslint/no-unused-vars': [
        'warn',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // `interface Emitter { on(...) } class Emitter extends EventEmitter` is the usual typed-emitter idiom.
      '@typescript-eslint/no-unsafe-declaration-merging': 'off',
      // Plain Sets/Maps in .svelte.ts are often deliberately non-reactive (listener lists, caches).
      'svelte/prefer-svelte-reactivity': 'warn',
      'no-restricted-properties': ['error', ...noOnly],
    },
  },
  // Node code: the engine, the contract, scripts, tests, the native loader, the CLI, Electron main.
  {
    files: ['**/*.{js,mjs,cjs,ts,mts,cts}'],
    ignores: ['renderer/src/**'],
    languageOptions: { globals: { ...globals.node } },
  },
  // The engine never imports Electron or UI code.
  {
    files: ['core/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [electronImport],
          patterns: [
            {
              group: ['**/renderer/**', '**/electron/**'],
              message:
                'core/ is the headless engine: it may import contract/ and native/, never UI or Electron glue (the shells depend on the engine, not the other way round).',
            },
          ],
        },
      ],
    },
  },
  // The contract is the shared spine: everyone imports it, so it imports nothing of ours but itself (and zod).
  {
    files: ['contract/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [electronImport],
          patterns: [
            {
              regex: '^(?!zod$|\\./)',
              message:
                'contract/ imports nothing but zod and its own files: the renderer, the engine and every shell import it, so anything it pulls in lands everywhere.',
            },
          ],
        },
      ],
    },
  },
  // Renderer: browser globals, contract only.
  {
    files: ['renderer/src/**/*.{ts,js,svelte}', 'renderer/src/**/*.svelte.ts'],
    languageOptions: { globals: { ...globals.browser } },
    rules: { 'no-restricted-imports': ['error', rendererBoundary] },
  },
  // Renderer unit tests run under node:test in Node; they may use Node, but still not the engine.
  {
    files: ['renderer/src/**/*.test.ts'],
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
    rules: {
      'no-restricted-imports': [
        'error',
        { paths: rendererBoundary.paths.slice(0, 1), patterns: rendererBoundary.patterns.slice(1) },
      ],
    },
  },
  {
    files: ['renderer/**/*.svelte', 'renderer/**/*.svelte.ts', 'renderer/**/*.svelte.js'],
    languageOptions: {
      parserOptions: { parser: tseslint.parser, extraFileExtensions: ['.svelte'] },
    },
  },
  // Preload: runs with both DOM and a restricted Node.
  {
    files: ['electron/preload.ts'],
    languageOptions: { globals: { ...globals.node, ...globals.browser } },
  },
);
