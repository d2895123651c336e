// Svelte compiler options for the renderer (read by vite-plugin-svelte and svelte-check).
export default {
  compilerOptions: {
    // Runes everywhere: no legacy reactive statements.
    runes: true,
  },
};
