/** The datasets domain: import pipeline, formats, token views, library + handlers. */
export * from './types.ts';
export * from './formats.ts';
export * from './import.ts';
export * from './library.ts';
export * from './problems.ts';
export * from './records.ts';
export * from './stats.ts';
export * from './tokenize.ts';
export * from './vocab.ts';
