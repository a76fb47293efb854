class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file, the rule and the problem."""
