export * from './version';
export * from './errors';
export * from './messages';
export * from './codec';
export * from './chunks';
export { toFloat16Bits, fromFloat16Bits, float16Table } from './float16';
export * from './histogram';
