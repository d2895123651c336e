export * from './info.ts';
export * from './llama.ts';
export * from './trainer-backends.ts';
