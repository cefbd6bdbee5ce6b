export * from './frame.js';
export * from './events.js';
export * from './keysyms.js';
export * from './api.js';
export * from './templates.js';
export * from './palette.js';
export * from './wire.js';
export * from './files.js';
