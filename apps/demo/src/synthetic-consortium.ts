import { join } from 'node:path';
import { writeSyntheticArchive } from '@covnet/imaging';

export interface SiteArchivePlan {
  name: string;
  archive: string;
}

/**
 * Six hospitals of different sizes and class mixes, so that the federation
 * sees data that is not identically distributed across sites.
 */
export const SYNTHETIC_SITES = [
  { name: 'hospital-a', exams: 60, classMix: { covid19: 0.5, cap: 0.25, non_pneumonia: 0.25 } },
  { name: 'hospital-b', exams: 48, classMix: { covid19: 0.2, cap: 0.4, non_pneumonia: 0.4 } },
  { name: 'hospital-c', exams: 40, classMix: { covid19: 0.34, cap: 0.33, non_pneumonia: 0.33 } },
  { name: 'hospital-d', exams: 32, classMix: { covid19: 0.55, cap: 0.1, non_pneumonia: 0.35 } },
  { name: 'hospital-e', exams: 28, classMix: { covid19: 0.25, cap: 0.25, non_pneumonia: 0.5 } },
  { name: 'hospital-f', exams: 24, classMix: { covid19: 0.4, cap: 0.4, non_pneumonia: 0.2 } },
] as const;

/** Writes one synthetic DICOM archive per hospital under `workDir/sites`. */
export async function writeSyntheticConsortium(workDir: string, seed: number): Promise<SiteArchivePlan[]> {
  const plans: SiteArchivePlan[] = [];
  for (const [i, site] of SYNTHETIC_SITES.entries()) {
    const archive = join(workDir, 'sites', site.name, 'archive');
    await writeSyntheticArchive(archive, {
      exams: site.exams,
      seed: seed * 1000 + i,
      classMix: { ...site.classMix },
      valFraction: 0.3,
      rows: 128,
      siteName: site.name,
    });
    plans.push({ name: site.name, archive });
  }
  return plans;
}
