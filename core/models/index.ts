export * from './gguf-info.ts';
export * from './library.ts';
export * from './trainability.ts';
export { detectTemplateFamily } from './chat-template.ts';
