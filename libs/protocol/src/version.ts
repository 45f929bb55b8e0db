/** Protocol version spoken by this build; a peer with another major version is rejected at connect. */
export const PROTOCOL_VERSION = 1;

/** Class order of every probability vector and per-class metric on the wire. */
export const CLASS_NAMES = ['covid19', 'cap', 'non_pneumonia'] as const;
export type ClassName = (typeof CLASS_NAMES)[number];

/**
 * Largest binary chunk sent in one socket.io message. socket.io's default
 * maxHttpBufferSize is 1e6 bytes and applies to the whole encoded packet, so
 * chunks stay well below it to leave room for the envelope.
 */
export const MAX_CHUNK_BYTES = 512 * 1024;
