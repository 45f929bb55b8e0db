import { AuthenticationError } from './federation/agent';
import { UsageError } from './commands/args';
import { initModelCommand } from './commands/init-model';
import { inferCommand } from './commands/infer';
import { runCommand } from './commands/run';
import { scanCommand } from './commands/scan';
import { statusCommand } from './commands/status';
import { synthCommand } from './commands/synth';
import { log } from './log';

const USAGE = `usage: site-agent <command> [options]
  scan DIR [--json] [--preview OUT_DIR] [--cache-dir DIR] [--decode-threads N]
                                              list CT series and unusable files of an archive;
                                              --preview writes PNGs of the lung mask and crop
  run --coordinator URL --token T --archive DIR [--status-file FILE] [--audit-log FILE] [--cache-dir DIR]
      [--site NAME] [--ca FILE] [--cert FILE --key FILE] [--decode-threads N]
                                              join the federation (token also from COVNET_SITE_TOKEN);
                                              --ca: consortium CA (PEM) that the coordinator's certificate
                                              must chain to; --cert/--key: the site's client certificate
                                              (scan, run) --decode-threads: DICOM decode threads, default one per core
  status --status-file FILE [--json] [--check]
                                              connection, current round and messages sent of a running agent
  infer EXAM_DIR --model CHECKPOINT [--out DIR] [--slices N] [--class NAME] [--json]
                                              class probabilities of one exam and Grad-CAM overlays
  synth OUT_DIR --exams N --seed S [--rows R] write a synthetic chest CT archive as DICOM
  init-model --out FILE [--backbone small|resnet18|resnet50] [--input-size N]
                                              write an initial global model`;

async function main(argv: string[]): Promise<number> {
  const [command, ...args] = argv;
  switch (command) {
    case 'scan':
      return scanCommand(args);
    case 'run':
      return runCommand(args, process.env);
    case 'status':
      return statusCommand(args);
    case 'infer':
      return inferCommand(args);
    case 'synth':
      return synthCommand(args);
    case 'init-model':
      return initModelCommand(args);
    case undefined:
    case '--help':
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return command === undefined ? 2 : 0;
    default:
      throw new UsageError(`unknown command "${command}"`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: Error) => {
    if (error instanceof UsageError) {
      process.stderr.write(`site-agent: ${error.message}\n${USAGE}\n`);
      process.exitCode = 2;
    } else if (error instanceof AuthenticationError) {
      process.stderr.write(`site-agent: ${error.message}\n`);
      process.exitCode = 3;
    } else {
      // The sentence is for the person at the terminal; the stack only at debug level.
      log.debug({ error: error.message, stack: error.stack }, 'command failed');
      process.stderr.write(`site-agent: ${error.message}\n`);
      process.exitCode = 1;
    }
  },
);
