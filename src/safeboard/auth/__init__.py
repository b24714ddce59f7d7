"""The authentication and authorization mechanism every domain plugs into: the principal,
permissions as data (roles, grants, key scopes, credential kinds), the identity chain that
turns a request into a principal, the authorizer, the request dependencies, CSRF and the
session binding. It knows no domain: the credentials themselves (users, sessions, API
keys) are the accounts domain's (``safeboard.accounts``)."""
