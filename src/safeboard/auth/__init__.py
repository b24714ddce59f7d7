"""Authentication and authorization: credentials (passwords, sessions, API keys, one-time
tokens), the identity chain that turns a request into a principal, and the authorizer."""
