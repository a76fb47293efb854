"""The runtime: the message bus, its commands and events, the handlers of each step, recovery and timers.

What makes AIOS durable lives here, apart from its front doors (`bot`: Slack, the CLI, the console, the web
server): an intent stored is planned, an approved action runs exactly once, a run waiting for a person survives a
restart. The runtime talks to people only through the transport port (`runtime.transport`).
"""
