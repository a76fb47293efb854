"""The front doors: the CLI, the Slack app and web server, Block Kit, the console transport, and the composition
root (`bot.bootstrap`) that wires the runtime to them."""
