export * from './version';
export * from './errors';
export * from './messages';
export * from './codec';
export * from './chunks';
export { toFloat16Bits, fromFloat16Bits } from './float16';
export * from './histogram';
