"""What the terminal front doors (`aios chat`, `aios demo`, the CLI) share, kept light to import."""

# Where the terminal's thread lives: the Slack team and channel it speaks for.
CONSOLE_CHANNEL = "CCONSOLE"
CONSOLE_TEAM = "TCONSOLE"

INTERRUPTED = 130  # the shell's exit code for "stopped by Ctrl-C"
