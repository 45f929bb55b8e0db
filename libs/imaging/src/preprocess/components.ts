// Connected-component helpers on binary masks stored slice-major (index = (slice * rows + row) * columns + column).

/** Labels the 4-connected components of set pixels in one slice; returns labels (0 = background) and each label's size. */
export function labelComponents2d(mask: Uint8Array, offset: number, rows: number, columns: number): { labels: Int32Array; sizes: number[] } {
  const count = rows * columns;
  const labels = new Int32Array(count);
  const sizes = [0];
  const queue = new Int32Array(count);
  for (let seed = 0; seed < count; seed++) {
    if (mask[offset + seed] === 0 || labels[seed] !== 0) continue;
    const label = sizes.length;
    let head = 0;
    let tail = 0;
    queue[tail++] = seed;
    labels[seed] = label;
    while (head < tail) {
      const pixel = queue[head++];
      const col = pixel % columns;
      if (col > 0 && mask[offset + pixel - 1] === 1 && labels[pixel - 1] === 0) {
        labels[pixel - 1] = label;
        queue[tail++] = pixel - 1;
      }
      if (col < columns - 1 && mask[offset + pixel + 1] === 1 && labels[pixel + 1] === 0) {
        labels[pixel + 1] = label;
        queue[tail++] = pixel + 1;
      }
      if (pixel >= columns && mask[offset + pixel - columns] === 1 && labels[pixel - columns] === 0) {
        labels[pixel - columns] = label;
        queue[tail++] = pixel - columns;
      }
      if (pixel < count - columns && mask[offset + pixel + columns] === 1 && labels[pixel + columns] === 0) {
        labels[pixel + columns] = label;
        queue[tail++] = pixel + columns;
      }
    }
    sizes.push(tail);
  }
  return { labels, sizes };
}

/** Labels 6-connected components of set voxels; label 0 is background. */
export function labelComponents3d(mask: Uint8Array, slices: number, rows: number, columns: number): { labels: Int32Array; sizes: number[] } {
  const labels = new Int32Array(mask.length);
  const sizes = [0];
  const sliceSize = rows * columns;
  const total = mask.length;
  const queue = new Int32Array(total);

  const visit = (index: number, label: number, tail: number): number => {
    if (mask[index] === 1 && labels[index] === 0) {
      labels[index] = label;
      queue[tail++] = index;
    }
    return tail;
  };

  for (let seed = 0; seed < total; seed++) {
    if (mask[seed] === 0 || labels[seed] !== 0) continue;
    const label = sizes.length;
    let head = 0;
    let tail = 0;
    queue[tail++] = seed;
    labels[seed] = label;
    while (head < tail) {
      const index = queue[head++];
      const inSlice = index % sliceSize;
      const col = inSlice % columns;
      if (col > 0) tail = visit(index - 1, label, tail);
      if (col < columns - 1) tail = visit(index + 1, label, tail);
      if (inSlice >= columns) tail = visit(index - columns, label, tail);
      if (inSlice < sliceSize - columns) tail = visit(index + columns, label, tail);
      if (index >= sliceSize) tail = visit(index - sliceSize, label, tail);
      if (index < total - sliceSize) tail = visit(index + sliceSize, label, tail);
    }
    sizes.push(tail);
  }
  return { labels, sizes };
}

/** Sets every unset pixel of one slice that the slice border cannot reach through unset pixels (4-connected). */
export function fillHoles2d(mask: Uint8Array, offset: number, rows: number, columns: number): void {
  const count = rows * columns;
  const outside = new Uint8Array(count);
  const queue = new Int32Array(count);
  let tail = 0;
  const visit = (pixel: number) => {
    if (outside[pixel] === 0 && mask[offset + pixel] === 0) {
      outside[pixel] = 1;
      queue[tail++] = pixel;
    }
  };
  for (let col = 0; col < columns; col++) {
    visit(col);
    visit((rows - 1) * columns + col);
  }
  for (let row = 0; row < rows; row++) {
    visit(row * columns);
    visit(row * columns + columns - 1);
  }
  for (let head = 0; head < tail; head++) {
    const pixel = queue[head];
    const col = pixel % columns;
    if (col > 0) visit(pixel - 1);
    if (col < columns - 1) visit(pixel + 1);
    if (pixel >= columns) visit(pixel - columns);
    if (pixel < count - columns) visit(pixel + columns);
  }
  for (let pixel = 0; pixel < count; pixel++) if (outside[pixel] === 0) mask[offset + pixel] = 1;
}

/** Grows the set pixels of one slice by `radius` pixels (4-connected steps), in place. */
export function dilate2d(mask: Uint8Array, offset: number, rows: number, columns: number, radius: number): void {
  const count = rows * columns;
  for (let step = 0; step < radius; step++) {
    const before = mask.slice(offset, offset + count);
    for (let pixel = 0; pixel < count; pixel++) {
      if (before[pixel] === 1) continue;
      const col = pixel % columns;
      const near =
        (col > 0 && before[pixel - 1] === 1) ||
        (col < columns - 1 && before[pixel + 1] === 1) ||
        (pixel >= columns && before[pixel - columns] === 1) ||
        (pixel < count - columns && before[pixel + columns] === 1);
      if (near) mask[offset + pixel] = 1;
    }
  }
}
