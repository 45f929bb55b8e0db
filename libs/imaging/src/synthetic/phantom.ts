import type { ExamLabel } from './labels';
import { SeededRandom } from './prng';

/** Options of synthesizeExam; anything left out is drawn from the seed. */
export interface SynthesizeOptions {
  seed: number;
  label: ExamLabel;
  /** Number of axial slices (default: 12 to 24). */
  slices?: number;
  /** Rows and columns of each slice (default 128). */
  size?: number;
  /** Gap between slice centres in mm (default: 5 to 10). */
  sliceSpacing?: number;
  /** Patient size relative to the field of view (default: 0.82 to 1.0). */
  patientScale?: number;
}

/** A synthetic chest CT exam in whole Hounsfield units, slice-major from inferior to superior. */
export interface SyntheticExam {
  label: ExamLabel;
  seed: number;
  hu: Float32Array;
  slices: number;
  rows: number;
  columns: number;
  /** Row spacing then column spacing, in mm. */
  pixelSpacing: [number, number];
  sliceSpacing: number;
  sliceThickness: number;
  /** Ground truth lung parenchyma, 1 inside a lung (lesions and vessels included). */
  lungMask: Uint8Array;
  /**
   * Ground truth pneumonia lesions (ground-glass opacity or consolidation): 1 where a lesion's
   * blending weight in the voxel exceeds 0.05, all 0 for non_pneumonia. Nodules are not lesions here.
   */
  lesionMask: Uint8Array;
  /** Number of voxels set in lesionMask. */
  lesionVoxels: number;
}

// Field of view of the synthetic scanner in mm, about that of an adult chest protocol.
const FIELD_OF_VIEW_MM = 360;
// Whole-HU range a 16-bit CT with intercept -1024 and 12 useful bits stores.
const HU_MIN = -1024;
const HU_MAX = 3071;

const HU = {
  air: -1000,
  fat: -100,
  softTissue: 40,
  lung: -850,
  bone: 700,
  vessel: 40,
  airBronchogram: -900,
} as const;

interface Ellipsoid {
  x: number;
  y: number;
  z: number;
  rx: number;
  ry: number;
  rz: number;
}

interface Lesion extends Ellipsoid {
  hu: number;
  /** Normalized distance (0..1) inside which the lesion reaches full strength; smaller is softer. */
  core: number;
}

interface Segment {
  from: [number, number, number];
  to: [number, number, number];
  radius: number;
  hu: number;
}

interface Anatomy {
  scale: number;
  bodyRx: number;
  bodyRy: number;
  fat: number;
  lungHu: number;
  noiseSigma: number;
  heightMm: number;
}

/**
 * Synthesizes a chest CT phantom. Every exam has an elliptical body with a fat layer, two
 * lungs whose size follows the cranio-caudal position, heart, trachea and main bronchi in
 * upper slices, spine, ribs, random branching vessels and Gaussian noise.
 * The findings depend on the class. covid19 gets bilateral peripheral ground-glass
 * opacities, cap a lobar consolidation in one lung with air bronchograms, and
 * non_pneumonia at most two small nodules. The same options always give the same volume.
 */
export function synthesizeExam(opts: SynthesizeOptions): SyntheticExam {
  const random = new SeededRandom(opts.seed);
  const size = opts.size ?? 128;
  const slices = opts.slices ?? random.integer(12, 24);
  const sliceSpacing = opts.sliceSpacing ?? Math.round(random.uniform(5, 10) * 4) / 4;
  const pixelSpacing = FIELD_OF_VIEW_MM / size;

  const scale = opts.patientScale ?? random.uniform(0.82, 1.0);
  const anatomy: Anatomy = {
    scale,
    bodyRx: 0.86 * scale * (FIELD_OF_VIEW_MM / 2),
    bodyRy: 0.6 * scale * (FIELD_OF_VIEW_MM / 2),
    fat: random.uniform(6, 16),
    lungHu: HU.lung + random.normal(0, 15),
    noiseSigma: random.uniform(20, 35),
    heightMm: (slices - 1) * sliceSpacing,
  };

  const vessels = [...makeVessels(random, anatomy, -1), ...makeVessels(random, anatomy, 1)];
  const lesions = makeLesions(random, anatomy, opts.label);
  const bronchograms = opts.label === 'cap' ? makeBronchograms(random, lesions[0]) : [];
  const nodules = opts.label === 'non_pneumonia' ? makeNodules(random, anatomy) : [];
  const dependentDensity = random.next() < 0.3 ? random.uniform(100, 180) : 0;

  const hu = new Float32Array(slices * size * size);
  const lungMask = new Uint8Array(slices * size * size);
  const lesionMask = new Uint8Array(slices * size * size);
  let lesionVoxels = 0;

  for (let k = 0; k < slices; k++) {
    const z = k * sliceSpacing;
    const t = anatomy.heightMm === 0 ? 0.5 : z / anatomy.heightMm;
    for (let row = 0; row < size; row++) {
      const y = (row + 0.5 - size / 2) * pixelSpacing;
      for (let col = 0; col < size; col++) {
        const x = (col + 0.5 - size / 2) * pixelSpacing;
        const index = (k * size + row) * size + col;
        let value = tissueAt(x, y, t, anatomy);

        const lung = lungAt(x, y, t, anatomy);
        if (lung !== 0 && !insideHeart(x, y, t, anatomy)) {
          lungMask[index] = 1;
          value = anatomy.lungHu + 25 * (y / anatomy.bodyRy);
          if (dependentDensity > 0 && y > 0.7 * anatomy.bodyRy * lungExtent(t) && t < 0.5) value += dependentDensity;

          let lesionWeight = 0;
          let lesionHu = value;
          for (const lesion of lesions) {
            const weight = softWeight(normalizedDistance(lesion, x, y, z), lesion.core);
            if (weight > lesionWeight) {
              lesionWeight = weight;
              lesionHu = lesion.hu;
            }
          }
          if (lesionWeight > 0.05) {
            lesionMask[index] = 1;
            lesionVoxels++;
          }
          value += lesionWeight * (lesionHu - value);

          for (const tube of bronchograms) {
            const weight = lesionWeight * tubeWeight(tube, x, y, z, pixelSpacing);
            value += weight * (tube.hu - value);
          }
          for (const nodule of nodules) {
            const weight = softWeight(normalizedDistance(nodule, x, y, z), nodule.core);
            value += weight * (nodule.hu - value);
          }
          for (const vessel of vessels) {
            const weight = tubeWeight(vessel, x, y, z, pixelSpacing);
            if (weight > 0) value += weight * (vessel.hu - value);
          }
        }

        value += random.normal(0, anatomy.noiseSigma);
        // `|| 0` turns a rounded -0 into 0, so the volume matches its DICOM round trip bit for bit.
        hu[index] = Math.min(HU_MAX, Math.max(HU_MIN, Math.round(value) || 0));
      }
    }
  }

  return {
    label: opts.label,
    seed: opts.seed,
    hu,
    slices,
    rows: size,
    columns: size,
    pixelSpacing: [pixelSpacing, pixelSpacing],
    sliceSpacing,
    sliceThickness: sliceSpacing,
    lungMask,
    lesionMask,
    lesionVoxels,
  };
}

// Relative in-plane size of the lungs along the body axis: small at the apex, widest near the base.
function lungExtent(t: number): number {
  if (t < 0.15) return 0.65 + (0.35 * t) / 0.15;
  if (t < 0.6) return 1;
  return 1 - 0.6 * Math.pow((t - 0.6) / 0.4, 1.3);
}

function lungCentre(side: number, anatomy: Anatomy): [number, number] {
  return [side * 0.42 * anatomy.bodyRx, -0.05 * anatomy.bodyRy];
}

function lungAt(x: number, y: number, t: number, anatomy: Anatomy): number {
  const extent = lungExtent(t);
  for (const side of [-1, 1]) {
    // The patient's right lung (image left) is a little larger than the left one.
    const sideScale = side < 0 ? 1.04 : 0.96;
    const [cx, cy] = lungCentre(side, anatomy);
    const rx = 0.3 * anatomy.bodyRx * extent * sideScale;
    const ry = 0.72 * anatomy.bodyRy * extent * sideScale;
    if (((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1) return side;
  }
  return 0;
}

function insideHeart(x: number, y: number, t: number, anatomy: Anatomy): boolean {
  if (t > 0.55) return false;
  const cx = 0.12 * anatomy.bodyRx;
  const cy = -0.15 * anatomy.bodyRy;
  const r = (0.3 - 0.2 * t) * anatomy.bodyRx;
  return ((x - cx) / r) ** 2 + ((y - cy) / (0.75 * r)) ** 2 <= 1;
}

// Tissue outside the lungs: air, fat layer, soft tissue, trachea and bronchi, spine, ribs, sternum.
function tissueAt(x: number, y: number, t: number, anatomy: Anatomy): number {
  const { bodyRx, bodyRy, fat } = anatomy;
  const outer = (x / bodyRx) ** 2 + (y / bodyRy) ** 2;
  if (outer > 1) return HU.air;

  const inner = (x / (bodyRx - fat)) ** 2 + (y / (bodyRy - fat)) ** 2;
  if (inner > 1) return HU.fat;

  const airway = airwayAt(x, y, t, anatomy);
  if (airway) return HU.air;

  const spineY = 0.62 * bodyRy;
  const spineR = 0.09 * bodyRx;
  if (x * x + (y - spineY) ** 2 <= spineR * spineR) return HU.bone;
  if (x * x + (y - spineY - 1.4 * spineR) ** 2 <= (0.4 * spineR) ** 2) return 20;
  if (t < 0.85 && Math.abs(x) < 0.04 * bodyRx && Math.abs(y + 0.9 * (bodyRy - fat)) < 0.04 * bodyRy) return HU.bone;

  // Ribs cut obliquely appear as small bony ovals just inside the fat layer.
  for (let rib = 0; rib < 10; rib++) {
    const angle = Math.PI * (0.12 + 0.09 * rib + 0.03 * t);
    for (const side of [-1, 1]) {
      const rx = side * Math.cos(angle) * (bodyRx - fat - 8);
      const ry = Math.sin(angle - Math.PI / 2) * -(bodyRy - fat - 8);
      if ((x - rx) ** 2 + (y - ry) ** 2 <= 25) return HU.bone;
    }
  }
  return HU.softTissue;
}

function airwayAt(x: number, y: number, t: number, anatomy: Anatomy): boolean {
  const cy = -0.3 * anatomy.bodyRy;
  const radius = 0.055 * anatomy.bodyRx;
  if (t >= 0.72) return x * x + (y - cy) ** 2 <= radius * radius;
  if (t >= 0.55) {
    // The main bronchi diverge below the carina and stay medial to the lungs.
    const offset = ((0.72 - t) / 0.17) * 0.05 * anatomy.bodyRx;
    const r = 0.7 * radius;
    return (x - offset) ** 2 + (y - cy) ** 2 <= r * r || (x + offset) ** 2 + (y - cy) ** 2 <= r * r;
  }
  return false;
}

function makeVessels(random: SeededRandom, anatomy: Anatomy, side: number): Segment[] {
  const [cx, cy] = lungCentre(side, anatomy);
  const vessels: Segment[] = [];
  const count = random.integer(10, 18);
  for (let i = 0; i < count; i++) {
    const hilumZ = anatomy.heightMm * random.uniform(0.35, 0.6);
    const hilum: [number, number, number] = [cx - side * 0.2 * anatomy.bodyRx, cy + random.normal(0, 8), hilumZ];
    const angle = random.uniform(0, 2 * Math.PI);
    const reach = random.uniform(0.4, 0.9);
    const end: [number, number, number] = [
      cx + reach * 0.3 * anatomy.bodyRx * Math.cos(angle),
      cy + reach * 0.72 * anatomy.bodyRy * Math.sin(angle),
      anatomy.heightMm * random.uniform(0.05, 0.95),
    ];
    const radius = random.uniform(1.2, 2.8);
    vessels.push({ from: hilum, to: end, radius, hu: HU.vessel + random.normal(0, 15) });

    // One side branch from the middle of each vessel, thinner and shorter.
    const middle: [number, number, number] = [(hilum[0] + end[0]) / 2, (hilum[1] + end[1]) / 2, (hilum[2] + end[2]) / 2];
    const branchEnd: [number, number, number] = [middle[0] + random.normal(0, 20), middle[1] + random.normal(0, 20), middle[2] + random.normal(0, 15)];
    vessels.push({ from: middle, to: branchEnd, radius: radius * 0.6, hu: HU.vessel });
  }
  return vessels;
}

function makeLesions(random: SeededRandom, anatomy: Anatomy, label: ExamLabel): Lesion[] {
  switch (label) {
    case 'covid19':
      return makeGroundGlass(random, anatomy);
    case 'cap':
      return [makeConsolidation(random, anatomy)];
    case 'non_pneumonia':
      return [];
  }
}

// COVID-19: several soft-edged ground-glass patches near the pleura of both lungs.
function makeGroundGlass(random: SeededRandom, anatomy: Anatomy): Lesion[] {
  const count = random.integer(4, 8);
  const lesions: Lesion[] = [];
  for (let i = 0; i < count; i++) {
    // The first two patches go to the right and left lung, so both lungs are always involved.
    let side = random.next() < 0.5 ? -1 : 1;
    if (i === 0) side = -1;
    if (i === 1) side = 1;
    const t = random.uniform(0.15, 0.8);
    const extent = lungExtent(t);
    const [cx, cy] = lungCentre(side, anatomy);
    // Mostly lateral and posterior, where subpleural opacities are typical.
    const angle = side > 0 ? random.uniform(-0.6 * Math.PI, 0.6 * Math.PI) : random.uniform(0.4 * Math.PI, 1.6 * Math.PI);
    const radial = random.uniform(0.7, 0.95);
    lesions.push({
      x: cx + radial * 0.3 * anatomy.bodyRx * extent * Math.cos(angle),
      y: cy + radial * 0.72 * anatomy.bodyRy * extent * Math.sin(angle),
      z: t * anatomy.heightMm,
      rx: random.uniform(20, 45),
      ry: random.uniform(20, 45),
      rz: random.uniform(20, 40),
      // Ground glass of -550 to -350 HU: hazy but below soft tissue, so vessels stay visible.
      hu: random.uniform(-550, -350),
      core: random.uniform(0.3, 0.6),
    });
  }
  return lesions;
}

// CAP: one large, denser consolidation in one lobe of one lung.
function makeConsolidation(random: SeededRandom, anatomy: Anatomy): Lesion {
  const side = random.next() < 0.5 ? -1 : 1;
  const lowerLobe = random.next() < 0.65;
  const t = lowerLobe ? random.uniform(0.15, 0.4) : random.uniform(0.55, 0.75);
  const [cx, cy] = lungCentre(side, anatomy);
  const ry = 0.72 * anatomy.bodyRy;
  return {
    x: cx + random.normal(0, 8),
    y: cy + (lowerLobe ? random.uniform(0.2, 0.5) : random.uniform(-0.5, -0.2)) * ry,
    z: t * anatomy.heightMm,
    rx: random.uniform(30, 50),
    ry: random.uniform(35, 60),
    rz: random.uniform(25, 50),
    hu: random.uniform(0, 50),
    core: random.uniform(0.75, 0.9),
  };
}

function makeBronchograms(random: SeededRandom, consolidation: Lesion): Segment[] {
  const tubes: Segment[] = [];
  const count = random.integer(1, 3);
  for (let i = 0; i < count; i++) {
    const angle = random.uniform(0, 2 * Math.PI);
    tubes.push({
      from: [consolidation.x, consolidation.y, consolidation.z],
      to: [
        consolidation.x + 0.8 * consolidation.rx * Math.cos(angle),
        consolidation.y + 0.8 * consolidation.ry * Math.sin(angle),
        consolidation.z + random.normal(0, consolidation.rz / 3),
      ],
      radius: random.uniform(1.5, 2.5),
      hu: HU.airBronchogram,
    });
  }
  return tubes;
}

function makeNodules(random: SeededRandom, anatomy: Anatomy): Lesion[] {
  const nodules: Lesion[] = [];
  const count = random.integer(0, 2);
  for (let i = 0; i < count; i++) {
    const side = random.next() < 0.5 ? -1 : 1;
    const t = random.uniform(0.2, 0.8);
    const [cx, cy] = lungCentre(side, anatomy);
    const radius = random.uniform(3, 6);
    nodules.push({
      x: cx + random.uniform(-0.5, 0.5) * 0.3 * anatomy.bodyRx,
      y: cy + random.uniform(-0.5, 0.5) * 0.72 * anatomy.bodyRy,
      z: t * anatomy.heightMm,
      rx: radius,
      ry: radius,
      rz: radius,
      hu: random.uniform(20, 60),
      core: 0.85,
    });
  }
  return nodules;
}

function normalizedDistance(shape: Ellipsoid, x: number, y: number, z: number): number {
  return Math.sqrt(((x - shape.x) / shape.rx) ** 2 + ((y - shape.y) / shape.ry) ** 2 + ((z - shape.z) / shape.rz) ** 2);
}

// 1 inside `core`, falling smoothly to 0 at the ellipsoid surface (distance 1).
function softWeight(distance: number, core: number): number {
  if (distance >= 1) return 0;
  if (distance <= core) return 1;
  const s = (1 - distance) / (1 - core);
  return s * s * (3 - 2 * s);
}

// Partial-volume weight of a tube: 1 inside its radius, fading over one pixel.
function tubeWeight(tube: Segment, x: number, y: number, z: number, pixelSpacing: number): number {
  const [ax, ay, az] = tube.from;
  // Cheap rejection by the segment's bounding box before the exact distance.
  const reach = tube.radius + pixelSpacing;
  if (x < Math.min(ax, tube.to[0]) - reach || x > Math.max(ax, tube.to[0]) + reach) return 0;
  if (y < Math.min(ay, tube.to[1]) - reach || y > Math.max(ay, tube.to[1]) + reach) return 0;
  if (z < Math.min(az, tube.to[2]) - reach || z > Math.max(az, tube.to[2]) + reach) return 0;
  const dx = tube.to[0] - ax;
  const dy = tube.to[1] - ay;
  const dz = tube.to[2] - az;
  const lengthSquared = dx * dx + dy * dy + dz * dz;
  const along = lengthSquared === 0 ? 0 : Math.min(1, Math.max(0, ((x - ax) * dx + (y - ay) * dy + (z - az) * dz) / lengthSquared));
  const distance = Math.hypot(x - ax - along * dx, y - ay - along * dy, z - az - along * dz);
  if (distance <= tube.radius) return 1;
  return Math.max(0, 1 - (distance - tube.radius) / pixelSpacing);
}
