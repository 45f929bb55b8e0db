// Entry of a DICOM decode worker thread. The package is TypeScript run without a build, and a
// worker thread starts without the parent's loaders, so this registers tsx's CommonJS loader first.
require('tsx/cjs');
require('./decode-worker.ts');
