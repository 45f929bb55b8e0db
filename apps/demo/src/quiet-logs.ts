// Imported first by main.ts: the demo prints its own progress, so library
// loggers in this process report warnings and errors only. The processes it
// starts get their level back from processes.ts and log in full to their files.
process.env.COVNET_LOG_LEVEL ??= 'warn';
