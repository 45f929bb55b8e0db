/** A stream progress is drawn on; `isTTY` decides between a redrawn bar and plain lines. */
export interface ProgressStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): unknown;
}

export interface Progress {
  /** Sets the number of items done so far. */
  update(done: number): void;
  /** Ends the bar with a final line; `summary` replaces the default "done". */
  finish(summary?: string): void;
}

const BAR_WIDTH = 24;
// Redrawing more often than this only costs terminal bandwidth.
const REDRAW_INTERVAL_MS = 100;

/**
 * Starts a progress report for `total` items (null when the total is unknown).
 * On a terminal it redraws one line with a bar; elsewhere (a log file, a
 * container's log) it writes a plain line at the start, at every quarter and
 * at the end, so logs stay readable.
 */
export function startProgress(label: string, total: number | null, stream: ProgressStream = process.stderr, now: () => number = Date.now): Progress {
  const started = now();
  let lastDraw = 0;
  let lastQuarter = 0;
  let current = 0;
  const elapsed = () => `${((now() - started) / 1000).toFixed(1)} s`;

  if (!stream.isTTY) stream.write(`${label}: started${total === null ? '' : ` (${total} items)`}\n`);

  const draw = () => {
    let line: string;
    if (total === null || total === 0) {
      line = `${label}: ${current} done, ${elapsed()}`;
    } else {
      const fraction = Math.min(1, current / total);
      const filled = Math.round(fraction * BAR_WIDTH);
      line = `${label} [${'#'.repeat(filled)}${'.'.repeat(BAR_WIDTH - filled)}] ${Math.floor(fraction * 100)}% ${current}/${total} ${elapsed()}`;
    }
    const width = stream.columns ?? 100;
    stream.write(`\r${line.slice(0, width - 1).padEnd(Math.min(width - 1, line.length + 2))}`);
  };

  return {
    update(done: number) {
      current = done;
      if (stream.isTTY) {
        if (now() - lastDraw >= REDRAW_INTERVAL_MS) {
          lastDraw = now();
          draw();
        }
        return;
      }
      if (total === null || total === 0) return;
      const quarter = Math.floor((4 * Math.min(done, total)) / total);
      if (quarter > lastQuarter && quarter < 4) {
        lastQuarter = quarter;
        stream.write(`${label}: ${done}/${total} (${quarter * 25}%), ${elapsed()}\n`);
      }
    },
    finish(summary = 'done') {
      if (stream.isTTY) {
        draw();
        stream.write(`\n${label}: ${summary} in ${elapsed()}\n`);
      } else {
        stream.write(`${label}: ${summary} in ${elapsed()}\n`);
      }
    },
  };
}
