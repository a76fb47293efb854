"""The policy gate: a YAML file of roles and first-match rules with CEL conditions. Evaluation does no I/O."""
