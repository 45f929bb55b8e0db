/** COVNet output classes, in the order of the softmax outputs. */
export const CLASSES = ['covid19', 'cap', 'non_pneumonia'] as const;

export type CovnetClass = (typeof CLASSES)[number];

/** Index into CLASSES: 0 covid19, 1 community-acquired pneumonia (CAP), 2 non-pneumonia. */
export type ClassLabel = 0 | 1 | 2;
