"""The front doors and what only they do: the CLI, the Slack app and web server, Socket Mode, the console, Block
Kit drawing, the App Home and its refresher, the scheduler's jobs, explain/why, the digest, replay, the MCP
server, the undo command, the transport that keeps secrets out of every message, and the composition root
(`bot.bootstrap`) that wires the runtime to them."""
