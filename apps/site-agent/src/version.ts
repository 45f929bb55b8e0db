/** Version of the site agent, reported to the coordinator in `site:hello`. */
export const AGENT_VERSION = '0.1.0';
