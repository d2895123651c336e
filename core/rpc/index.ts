export * from './dispatcher.ts';
export * from './errors.ts';
export * from './events.ts';
export * from './handlers.ts';
export * from './in-memory.ts';
export * from './wire.ts';
