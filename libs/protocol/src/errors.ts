/** Coded reasons a peer is told when a message or a connection is rejected. */
export const ERROR_CODES = [
  'auth_missing_token',
  'auth_unknown_token',
  'auth_protocol_mismatch',
  'auth_revoked',
  'auth_certificate_rejected',
  'rate_limited',
  'invalid_message',
  'unknown_upload',
  'chunk_out_of_order',
  'checksum_mismatch',
  'payload_too_large',
  'weights_mismatch',
  'weights_not_finite',
  'update_norm_outlier',
  'stale_round',
  'wrong_model_version',
  'not_participant',
  'duplicate_update',
  'conflicting_update',
  'unknown_model_version',
  'internal_error',
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

/** The error body carried in acknowledgements and connect errors. */
export interface ErrorBody {
  code: ErrorCode;
  message: string;
}

/** An expected, coded failure: its code and message go to the peer as they are. */
export class ProtocolError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolError';
  }

  toBody(): ErrorBody {
    return { code: this.code, message: this.message };
  }
}
