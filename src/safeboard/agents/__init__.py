"""Agents (server side): join tokens, enrolled agents, their credentials and inventory.

An admin mints a one-time join token; a GPU machine exchanges it for the agent's own
credential (``sb_agent_<id>_<secret>``), which reaches the agent routes only (S9, S14).
The program that runs on that machine is ``safeboard.agent`` (client side).
"""
