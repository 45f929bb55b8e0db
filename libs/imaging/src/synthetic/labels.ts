/** The three COVNet classes: COVID-19, community-acquired pneumonia, non-pneumonia. */
export const EXAM_LABELS = ['covid19', 'cap', 'non_pneumonia'] as const;
export type ExamLabel = (typeof EXAM_LABELS)[number];

/** Tells whether a string is one of the COVNet class names. */
export function isExamLabel(value: string): value is ExamLabel {
  return (EXAM_LABELS as readonly string[]).includes(value);
}
