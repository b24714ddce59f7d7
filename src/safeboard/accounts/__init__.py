"""Accounts: users, sessions, API keys and the sign-in routes. The mechanism they plug
into (principal, permissions, identity chain, authorizer, request dependencies) is
``safeboard.auth``, below every domain."""
