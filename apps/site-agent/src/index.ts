export { FederationAgent, AuthenticationError, type AgentOptions } from './federation/agent';
export { SiteArchive, loadExamInput, type InputSpec, type PreparedExam } from './archive/site-archive';
export { summariseValidation } from './evaluation/site-metrics';
export { AgentStatus, type AgentStatusRecord } from './federation/agent-status';
export { createCoordinatorSocket, describeConnectError, readAgentTls, AgentTlsError, type AgentTls, type CoordinatorEndpoint } from './federation/coordinator-socket';
export { downloadModel, uploadUntilAccepted, type UpdateHeader } from './federation/transfer';
export { RejectedError, request } from './federation/socket-call';
