/** Unit normal of the slice plane: the cross product of the row and column direction cosines. */
export function sliceNormal(orientation: readonly number[]): [number, number, number] {
  const [rx, ry, rz, cx, cy, cz] = orientation;
  const nx = ry * cz - rz * cy;
  const ny = rz * cx - rx * cz;
  const nz = rx * cy - ry * cx;
  const length = Math.hypot(nx, ny, nz);
  return [nx / length, ny / length, nz / length];
}

/** Position of a slice along the normal, in mm. */
export function positionAlongNormal(position: readonly number[], normal: readonly number[]): number {
  return position[0] * normal[0] + position[1] * normal[1] + position[2] * normal[2];
}

/** Returns the median of a non-empty list. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

/** Tells whether two orientations agree to within a small angle (cosine difference). */
export function sameOrientation(a: readonly number[], b: readonly number[], tolerance = 1e-3): boolean {
  return a.every((value, index) => Math.abs(value - b[index]) <= tolerance);
}

/** Angle in degrees between a direction and a unit normal, ignoring the sign of the direction. */
export function angleDegrees(direction: readonly number[], normal: readonly number[]): number {
  const length = Math.hypot(direction[0], direction[1], direction[2]);
  if (length === 0) return 0;
  const cosine = Math.abs(positionAlongNormal(direction, normal)) / length;
  return (Math.acos(Math.min(1, cosine)) * 180) / Math.PI;
}
