import { LightAgent, type LightAgentOptions } from './light-agent';

// Runs one LightAgent as its own process, so that a test can kill it.
// Usage: light-agent-main.ts '<LightAgentOptions as JSON>'
const options = JSON.parse(process.argv[2] ?? '') as LightAgentOptions;
new LightAgent(options).run().then(
  () => process.exit(0),
  (error: Error) => {
    process.stderr.write(`light agent ${options.site} failed: ${error.message}\n`);
    process.exit(1);
  },
);
