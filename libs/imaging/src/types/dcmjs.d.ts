// Minimal typings for the parts of dcmjs 0.49 that this library uses; dcmjs ships none.
declare module 'dcmjs' {
  namespace data {
    interface DicomElement {
      vr: string;
      Value: unknown[];
    }
    type DenaturalizedDataset = Record<string, DicomElement>;

    class DicomDict {
      constructor(meta: DenaturalizedDataset);
      meta: DenaturalizedDataset;
      dict: DenaturalizedDataset;
      write(options?: Record<string, unknown>): ArrayBuffer;
    }

    class DicomMessage {
      static readFile(
        buffer: ArrayBuffer,
        options?: { ignoreErrors?: boolean; untilTag?: string; includeUntilTagValue?: boolean; noCopy?: boolean },
      ): DicomDict;
    }

    class DicomMetaDictionary {
      static naturalizeDataset(dataset: DenaturalizedDataset): Record<string, unknown>;
      static denaturalizeDataset(dataset: Record<string, unknown>): DenaturalizedDataset;
    }
  }

  interface Logger {
    setLevel(level: string): void;
    getLevel(): number;
  }
  const log: Logger & { getLogger(name: string): Logger };
}
