"""Dispatcher, agents and the LLM interface. Agents only propose typed actions; they never execute them."""
