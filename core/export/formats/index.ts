/**
 * The table of export formats: one module per format, keyed by its contract id. The record's
 * type makes TypeScript refuse a format id in the contract without a module here.
 */
import type { ExportFormat } from '../../../contract/index.ts';
import type { ExportFormatModule } from '../format.ts';
import { adapterFormat } from './adapter.ts';
import { mergedFormat } from './merged.ts';
import { ollamaFormat } from './ollama.ts';
import { peftFormat } from './peft.ts';

export const formatModules: Record<ExportFormat, ExportFormatModule> = {
  adapter: adapterFormat,
  ollama: ollamaFormat,
  peft: peftFormat,
  merged: mergedFormat,
};
