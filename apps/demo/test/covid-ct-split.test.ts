import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COVID_CT_SITES, assignCovidCtSites, readCovidCtLabels } from '../src/covid-ct-consortium';

const DATASET = join(__dirname, '..', '..', '..', '..', 'shared', 'data', 'covid-ct-ucsd');
const present = existsSync(join(DATASET, 'labels.csv'));
if (!present) console.warn(`skipping COVID-CT split tests: ${DATASET} is absent`);

describe.skipIf(!present)('COVID-CT consortium split', () => {
  const images = present ? readCovidCtLabels(DATASET) : [];
  const sites = assignCovidCtSites(images, 7);

  it('reads every labelled image', () => {
    // The data set's README: 349 COVID-19 and 397 non-COVID images.
    expect(images.filter((i) => i.label === 'covid19')).toHaveLength(349);
    expect(images.filter((i) => i.label === 'non_pneumonia')).toHaveLength(397);
  });

  it('places every image exactly once', () => {
    const placed = sites.flatMap((s) => [...s.train, ...s.val]).map((i) => i.file);
    expect(placed).toHaveLength(images.length);
    expect(new Set(placed).size).toBe(images.length);
  });

  it('keeps each figure group at one site and one side', () => {
    const home = new Map<string, string>();
    for (const site of sites) {
      for (const [side, list] of [['train', site.train], ['val', site.val]] as const) {
        for (const image of list) {
          const where = `${site.name}/${side}`;
          expect(home.get(image.group) ?? where, `group ${image.group}`).toBe(where);
          home.set(image.group, where);
        }
      }
    }
  });

  it('groups by the file-name prefix before %', () => {
    const group = images.filter((i) => i.file.includes('2020.02.25.20021568-p24-111%'));
    expect(group.length).toBeGreaterThan(1);
    expect(new Set(group.map((i) => i.group)).size).toBe(1);
  });

  it('gives sites different sizes and class balance', () => {
    expect(sites).toHaveLength(COVID_CT_SITES.length);
    const sizes = sites.map((s) => s.train.length + s.val.length);
    const covidShares = sites.map((s) => [...s.train, ...s.val].filter((i) => i.label === 'covid19').length / (s.train.length + s.val.length));
    expect(new Set(sizes).size).toBe(sites.length);
    expect(Math.max(...covidShares) - Math.min(...covidShares)).toBeGreaterThan(0.2);
  });

  it('holds out both classes for validation at every site', () => {
    for (const site of sites) {
      expect(site.val.some((i) => i.label === 'covid19'), site.name).toBe(true);
      expect(site.val.some((i) => i.label === 'non_pneumonia'), site.name).toBe(true);
    }
  });
});
