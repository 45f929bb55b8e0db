import { readFileSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import type { SiteArchivePlan } from './synthetic-consortium';
import { SeededRandom } from '@covnet/imaging';

export interface LabelledImage {
  /** Path relative to the data set folder. */
  file: string;
  label: 'covid19' | 'non_pneumonia';
  /** Images cut from one figure of a paper share this key and stay together. */
  group: string;
}

export interface SiteAssignment {
  name: string;
  train: LabelledImage[];
  val: LabelledImage[];
}

/** Site sizes as shares of all images, and each site's share of COVID-19 images. */
export const COVID_CT_SITES = [
  { name: 'hospital-a', share: 0.28, covidShare: 0.65 },
  { name: 'hospital-b', share: 0.22, covidShare: 0.3 },
  { name: 'hospital-c', share: 0.16, covidShare: 0.5 },
  { name: 'hospital-d', share: 0.13, covidShare: 0.6 },
  { name: 'hospital-e', share: 0.11, covidShare: 0.35 },
  { name: 'hospital-f', share: 0.1, covidShare: 0.45 },
] as const;

/**
 * Reads the data set's labels.csv (`file,label,...`, label COVID or NonCOVID).
 * The figure group is the file name before `%`; a name without `%` is its own group.
 * @throws Error naming the line of an unknown label.
 */
export function readCovidCtLabels(datasetDir: string): LabelledImage[] {
  const lines = readFileSync(join(datasetDir, 'labels.csv'), 'utf8').split(/\r?\n/).filter((l) => l.length > 0);
  const header = lines[0].split(',');
  const fileColumn = header.indexOf('file');
  const labelColumn = header.indexOf('label');
  if (fileColumn < 0 || labelColumn < 0) throw new Error(`${datasetDir}/labels.csv: header lacks file or label column`);
  return lines.slice(1).map((line, i) => {
    const cells = line.split(',');
    const file = cells[fileColumn];
    const raw = cells[labelColumn];
    if (raw !== 'COVID' && raw !== 'NonCOVID') {
      throw new Error(`${datasetDir}/labels.csv line ${i + 2}: unknown label "${raw}", expected COVID or NonCOVID`);
    }
    const name = basename(file);
    const group = `${dirname(file)}/${name.includes('%') ? name.slice(0, name.indexOf('%')) : name}`;
    return { file, label: raw === 'COVID' ? 'covid19' : 'non_pneumonia', group };
  });
}

function shuffle<T>(items: T[], random: () => number): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

/**
 * Splits the images across sites of different sizes and class balance, and
 * each site's images into train and validation, moving whole figure groups
 * only, so no figure is at two sites or on both sides of a split.
 */
export function assignCovidCtSites(images: LabelledImage[], seed: number, valFraction = 0.3): SiteAssignment[] {
  // Seeded, so that the split is the same on every run.
  const generator = new SeededRandom(seed);
  const random = () => generator.next();
  const groups = new Map<string, LabelledImage[]>();
  for (const image of images) {
    const members = groups.get(image.group) ?? [];
    members.push(image);
    groups.set(image.group, members);
  }
  for (const [key, members] of groups) {
    if (new Set(members.map((m) => m.label)).size > 1) throw new Error(`figure group ${key} mixes labels`);
  }
  const pools = {
    covid19: shuffle([...groups.values()].filter((g) => g[0].label === 'covid19'), random),
    non_pneumonia: shuffle([...groups.values()].filter((g) => g[0].label === 'non_pneumonia'), random),
  };
  const total = images.length;
  const sites = COVID_CT_SITES.map((site) => ({ ...site, groups: [] as LabelledImage[][] }));

  // Fill each site's target count per class with whole groups; the last site takes what is left.
  for (const [s, site] of sites.entries()) {
    const last = s === sites.length - 1;
    for (const label of ['covid19', 'non_pneumonia'] as const) {
      const classShare = label === 'covid19' ? site.covidShare : 1 - site.covidShare;
      const target = Math.round(total * site.share * classShare);
      let taken = 0;
      while (pools[label].length > 0 && (last || taken < target)) {
        const group = pools[label].shift()!;
        site.groups.push(group);
        taken += group.length;
      }
    }
  }

  return sites.map((site) => {
    const train: LabelledImage[] = [];
    const val: LabelledImage[] = [];
    // Stratify by class: each class's groups are split on their own.
    for (const label of ['covid19', 'non_pneumonia'] as const) {
      const classGroups = shuffle(site.groups.filter((g) => g[0].label === label), random);
      const count = classGroups.reduce((n, g) => n + g.length, 0);
      let inVal = 0;
      for (const group of classGroups) {
        if (inVal < count * valFraction) {
          val.push(...group);
          inVal += group.length;
        } else {
          train.push(...group);
        }
      }
    }
    return { name: site.name, train, val };
  });
}

/**
 * Lays out each site's archive as the agent reads it: labels.csv and one
 * folder per image exam holding a symbolic link to the image, so no image is copied.
 */
export async function writeCovidCtArchives(
  workDir: string,
  datasetDir: string,
  assignments: SiteAssignment[],
): Promise<SiteArchivePlan[]> {
  const plans: SiteArchivePlan[] = [];
  for (const site of assignments) {
    const archive = join(workDir, 'sites', site.name, 'archive');
    await mkdir(archive, { recursive: true });
    const rows = ['exam,label,split'];
    const entries = [
      ...site.train.map((image) => ({ image, split: 'train' })),
      ...site.val.map((image) => ({ image, split: 'val' })),
    ];
    for (const [i, { image, split }] of entries.entries()) {
      const examId = `img${String(i + 1).padStart(4, '0')}`;
      const examDir = join(archive, examId);
      await mkdir(examDir, { recursive: true });
      const extension = image.file.slice(image.file.lastIndexOf('.')).toLowerCase();
      await symlink(join(datasetDir, image.file), join(examDir, `slice${extension}`));
      rows.push(`${examId},${image.label},${split}`);
    }
    await writeFile(join(archive, 'labels.csv'), `${rows.join('\n')}\n`);
    plans.push({ name: site.name, archive });
  }
  return plans;
}
