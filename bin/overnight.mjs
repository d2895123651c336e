#!/usr/bin/env node
// The `overnight` command. The sources are TypeScript run through tsx (no build step):
// register tsx's ESM loader, then hand the arguments to core/cli/main.ts.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../core/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
