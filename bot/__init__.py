"""Entry points: the CLI, the Slack app and web server, the console transport, the message bus and handlers."""
