/** Version of the coordinator, as reported in the OpenAPI document. */
export const COORDINATOR_VERSION = '0.1.0';
