import { describe, expect, it } from 'vitest';
import { certificateNames } from '../src/gateway/client-certificate';

describe('certificateNames', () => {
  it('lists a name in both CN and SAN once', () => {
    expect(certificateNames('site-2', 'DNS:site-2, IP Address:127.0.0.1')).toEqual(['site-2']);
  });

  it('keeps distinct names in order', () => {
    expect(certificateNames('site-2', 'DNS:site-2, DNS:site-2.example.org')).toEqual(['site-2', 'site-2.example.org']);
  });

  it('returns no names for a certificate without CN or DNS names', () => {
    expect(certificateNames(undefined, undefined)).toEqual([]);
  });
});
