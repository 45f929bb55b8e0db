// Entry of a gradient worker thread. The package is TypeScript run without a build, and a
// worker thread starts without the parent's loaders, so this registers tsx's CommonJS
// loader before loading the worker.
require('tsx/cjs');
require('./gradient-worker.ts');
